"""The model pipeline: gate on the committed artifacts, split, ONNX interface, reproducibility,
model behaviour and the benchmark's smoke path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto

import export.pipeline
from export.bench import MAX_TORCH_DIFF, run_bench, torch_from_onnx
from export.config import (
    MODEL_CARD_JSON,
    ONNX_INPUT,
    ONNX_OPSET,
    ONNX_OUTPUT,
    PUBLISHED_CALIBRATION,
    PUBLISHED_CAPTURE_PY,
    PUBLISHED_CONTRACT,
    PUBLISHED_DECISION_SCALER,
    PUBLISHED_FEATURES_PY,
    PUBLISHED_ONNX,
    PUBLISHED_SCALER,
    REFERENCE_FP32,
    RETRAIN_TOLERANCES,
    ROOT,
    SPLIT_JSON,
    QuantizeConfig,
    card_tolerance,
)
from export.data import Dataset, load_dataset, make_split, read_split
from export.pipeline import calibration_rows, load_parts, validate_published
from export.publish import PUBLISHED_SOURCES, sha256_file
from export.quantize import MAX_ADJACENT_WEIGHT_PAIR, max_adjacent_weight_pair, quantize
from export.validate import GateReport, run_gate, score, session
from preprocess_ensemble.features import FeatureContract, Standardizer

GATED_METRICS = (
    "auc_holdout_fp32",
    "auc_holdout_int8",
    "max_abs_diff_int8_vs_fp32",
    "batch_invariance_max_diff",
    "brier_int8",
)
DEFAULT_RATE = 6636 / 30000  # 0.2212, data/README.md
N_FEATURES = 23


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(MODEL_CARD_JSON.read_text())


@pytest.fixture(scope="module")
def parts() -> tuple[FeatureContract, dict[str, Dataset], dict]:
    return load_parts()


@pytest.fixture(scope="module")
def contract(parts: tuple[FeatureContract, dict[str, Dataset], dict]) -> FeatureContract:
    return parts[0]


@pytest.fixture(scope="module")
def holdout(parts: tuple[FeatureContract, dict[str, Dataset], dict]) -> Dataset:
    return parts[1]["holdout"]


@pytest.fixture(scope="module")
def scaler() -> Standardizer:
    return Standardizer.from_json(PUBLISHED_SCALER)


@pytest.fixture(scope="module")
def published_report() -> GateReport:
    return validate_published()


# --- the gate on the committed artifacts ------------------------------------------------------


def test_gate_passes_on_committed_artifacts(published_report: GateReport, card: dict) -> None:
    assert published_report.failures == []
    assert published_report.passed
    assert card["gate"]["passed"] is True
    for name in GATED_METRICS:
        assert name in card["metrics"], name
        limit = card_tolerance(name)
        assert published_report.metrics[name] == pytest.approx(card["metrics"][name], abs=limit)
    assert card["metrics"]["auc_holdout_int8"] >= card["gate"]["min_auc"]
    assert card["metrics"]["batch_invariance_max_diff"] <= card["gate"]["max_batch_variation"]


def test_model_card_hashes_match_the_files(card: dict) -> None:
    expected = {
        REFERENCE_FP32,
        PUBLISHED_ONNX,
        PUBLISHED_SCALER,
        PUBLISHED_CONTRACT,
        PUBLISHED_FEATURES_PY,
        PUBLISHED_CAPTURE_PY,
        PUBLISHED_DECISION_SCALER,
        PUBLISHED_CALIBRATION,
        *(target for _, target in PUBLISHED_SOURCES),
    }
    assert set(card["artifacts"]) == {p.relative_to(ROOT).as_posix() for p in expected}
    for name, digest in card["artifacts"].items():
        assert sha256_file(ROOT / name) == digest, name
    assert card["split"]["sha256"] == sha256_file(SPLIT_JSON)


def test_tampered_model_card_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, card: dict
) -> None:
    tampered = json.loads(json.dumps(card))
    onnx_name = PUBLISHED_ONNX.relative_to(ROOT).as_posix()
    features_name = PUBLISHED_FEATURES_PY.relative_to(ROOT).as_posix()
    tampered["artifacts"][onnx_name] = "0" * 64
    del tampered["artifacts"][features_name]
    tampered["metrics"]["auc_holdout_int8"] += 0.01
    tampered["metrics"]["brier_int8"] -= 2 * card_tolerance("brier_int8")
    tampered["metrics"]["auc_holdout_fp32"] += card_tolerance("auc_holdout_fp32") / 2  # allowed
    tampered["metrics"]["approval_rate"] += card_tolerance("approval_rate") / 2  # allowed
    path = tmp_path / "model_card.json"
    path.write_text(json.dumps(tampered))
    monkeypatch.setattr(export.pipeline, "MODEL_CARD_JSON", path)

    report = validate_published()
    assert not report.passed
    assert len(report.failures) == 4, report.failures
    joined = "\n".join(report.failures)
    actual = sha256_file(PUBLISHED_ONNX)
    assert f"{onnx_name}: sha256 {actual} differs from the model card's {'0' * 64}" in joined
    assert f"{features_name} is missing from the model card" in joined
    auc = card["metrics"]["auc_holdout_int8"]
    assert (
        f"metric auc_holdout_int8: measured {auc:.6g}, model card says {auc + 0.01:.6g} "
        "(tolerance 1e-05)" in joined
    )
    assert "metric brier_int8: measured" in joined


@pytest.fixture(scope="module")
def calibration(parts: tuple[FeatureContract, dict[str, Dataset], dict]) -> np.ndarray:
    return calibration_rows(
        parts[1]["train"], Standardizer.from_json(PUBLISHED_SCALER), QuantizeConfig()
    )


def gate(int8_path: Path, contract: FeatureContract, holdout: Dataset) -> GateReport:
    scaler = Standardizer.from_json(PUBLISHED_SCALER)
    return run_gate(int8_path, REFERENCE_FP32, scaler, contract, holdout.features, holdout.target)


def test_gate_rejects_dynamic_quantization(
    tmp_path: Path, calibration: np.ndarray, contract: FeatureContract, holdout: Dataset
) -> None:
    int8 = quantize(REFERENCE_FP32, tmp_path / "dynamic.onnx", calibration, "dynamic")
    report = gate(int8, contract, holdout)
    assert not report.passed
    invariance = [f for f in report.failures if f.startswith("batch invariance")]
    assert invariance, report.failures
    assert any("(alone vs batch)" in f for f in invariance)
    assert all("dynamic quantization does this; use static INT8" in f for f in invariance)
    assert report.metrics["batch_invariance_max_diff"] > 1e-6


@pytest.mark.parametrize("mode", ["static-qdq", "static-qoperator"])
def test_gate_accepts_static_quantization(
    tmp_path: Path,
    mode: str,
    calibration: np.ndarray,
    contract: FeatureContract,
    holdout: Dataset,
    card: dict,
) -> None:
    int8 = quantize(REFERENCE_FP32, tmp_path / f"{mode}.onnx", calibration, mode)
    report = gate(int8, contract, holdout)
    assert report.failures == []
    assert report.metrics["batch_invariance_max_diff"] == 0.0
    if mode == card["quantization"]["mode"]:
        assert sha256_file(int8) == sha256_file(PUBLISHED_ONNX)  # quantization is deterministic


@pytest.mark.parametrize(
    ("source", "copy"),
    PUBLISHED_SOURCES,
    ids=[f"{t.parent.parent.name}/{t.name}" for _, t in PUBLISHED_SOURCES],
)
def test_published_sources_are_byte_identical(source: Path, copy: Path) -> None:
    """The copies Triton loads from model_repository/ are current (`make publish-sources`)."""
    assert copy.read_bytes() == source.read_bytes()


def test_decision_step_uses_the_published_scaler_and_calibration(card: dict) -> None:
    assert PUBLISHED_DECISION_SCALER.read_bytes() == PUBLISHED_SCALER.read_bytes()
    calibration = json.loads(PUBLISHED_CALIBRATION.read_text())
    assert calibration["method"] == card["calibration"]["method"] == "platt"
    assert (calibration["a"], calibration["b"]) == (
        card["calibration"]["a"],
        card["calibration"]["b"],
    )
    holdout = card["calibration"]["holdout"]
    assert holdout["brier_after"] <= holdout["brier_before"]
    assert card["fairness_audit"] and card["protected_attributes"]["choice"]
    markdown = MODEL_CARD_JSON.with_suffix(".md").read_text()
    for section in ("## Calibration", "## Decision policy", "## Fairness audit", "## SEX and"):
        assert section in markdown, section


# --- the split ---------------------------------------------------------------------------------


def test_committed_split_is_what_the_code_makes(card: dict) -> None:
    data = load_dataset()
    split = read_split()
    assert split == make_split(data)
    parts = {name: set(split[name]) for name in ("train", "validation", "holdout")}
    assert {name: len(ids) for name, ids in parts.items()} == {
        name: len(split[name]) for name in parts
    }  # no duplicates within a part
    assert not parts["train"] & parts["validation"]
    assert not parts["train"] & parts["holdout"]
    assert not parts["validation"] & parts["holdout"]
    union = parts["train"] | parts["validation"] | parts["holdout"]
    assert union == set(data.ids.tolist()) == set(range(1, 30_001))
    assert {name: len(ids) for name, ids in parts.items()} == {
        name: card["split"][name] for name in parts
    }
    target = dict(zip(data.ids.tolist(), data.target.tolist(), strict=True))
    assert data.target.mean() == pytest.approx(DEFAULT_RATE, abs=1e-12)
    for name, ids in parts.items():
        rate = np.mean([target[i] for i in ids])
        assert abs(rate - 0.2212) <= 0.005, (name, rate)


# --- the ONNX interface -----------------------------------------------------------------------


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


@pytest.mark.parametrize("path", [REFERENCE_FP32, PUBLISHED_ONNX], ids=["fp32", "int8"])
def test_onnx_interface(path: Path, holdout: Dataset, scaler: Standardizer) -> None:
    model = onnx.load(str(path))
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    assert opsets["ai.onnx"] == ONNX_OPSET == 17
    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert inp.name == ONNX_INPUT == "input"
    assert out.name == ONNX_OUTPUT == "probability"
    assert inp.type.tensor_type.elem_type == TensorProto.FLOAT
    assert out.type.tensor_type.elem_type == TensorProto.FLOAT
    in_dims, out_dims = _dims(inp), _dims(out)
    assert isinstance(in_dims[0], str) and in_dims[0]  # symbolic batch dimension
    assert in_dims == [in_dims[0], N_FEATURES]
    assert out_dims == [in_dims[0], 1]
    sess = session(path)
    x = scaler.transform(holdout.features[:37])
    for n in (1, 2, 37):
        (p,) = sess.run(None, {ONNX_INPUT: x[:n]})
        assert p.shape == (n, 1) and p.dtype == np.float32
        assert ((p > 0) & (p < 1)).all()


# --- reproducibility ---------------------------------------------------------------------------


def _retrain(build_dir: Path, capability: str | None = None) -> dict:
    """``python -m export model --no-publish`` in a fresh process; its gate verdict and metrics.

    A fresh process per run: PyTorch reads ATEN_CPU_CAPABILITY (which kernels to use, as on
    another CPU) once, at import.
    """
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    if capability:
        env["ATEN_CPU_CAPABILITY"] = capability
    result = subprocess.run(
        [sys.executable, "-m", "export", "model", "--no-publish", "--build-dir", str(build_dir)]
        + ["--metrics-json", str(build_dir / "gate.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads((build_dir / "gate.json").read_text())


RETRAINED_FILES = ("model_fp32.onnx", "model_int8_static-qoperator.onnx", "scaler.json")


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    """Retrains with this CPU's own kernels (twice) and with each ATEN_CPU_CAPABILITY."""
    committed = {p: sha256_file(p) for p in (REFERENCE_FP32, PUBLISHED_ONNX, PUBLISHED_SCALER)}
    runs = {}
    for name, capability in (
        ("native", None),
        ("native again", None),
        ("default", "default"),
        ("avx2", "avx2"),
        ("avx512", "avx512"),
    ):
        build_dir = tmp_path_factory.mktemp(name.replace(" ", "_"))
        runs[name] = (build_dir, _retrain(build_dir, capability))
    assert {p: sha256_file(p) for p in committed} == committed  # nothing was published
    return runs


@pytest.mark.slow
def test_retraining_on_the_same_machine_is_byte_identical(
    retrained: dict[str, tuple[Path, dict]],
) -> None:
    (first, _), (second, _) = retrained["native"], retrained["native again"]
    for name in RETRAINED_FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


@pytest.mark.slow
@pytest.mark.parametrize("run", ["native", "default", "avx2", "avx512"])
def test_retraining_with_any_cpu_kernels_reproduces_the_card_within_tolerance(
    run: str, retrained: dict[str, tuple[Path, dict]], card: dict, figures: dict[str, str]
) -> None:
    _, gate = retrained[run]
    assert gate["passed"], gate["failures"]
    measured = gate["metrics"]
    for name, limit in RETRAIN_TOLERANCES.items():
        assert abs(measured[name] - card["metrics"][name]) <= limit, (name, measured[name])
    figures[f"retrain ({run} kernels) holdout AUC INT8 / FP32"] = (
        f"{measured['auc_holdout_int8']:.6f} / {measured['auc_holdout_fp32']:.6f} "
        f"(card {card['metrics']['auc_holdout_int8']:.6f} / "
        f"{card['metrics']['auc_holdout_fp32']:.6f}, tolerance "
        f"{RETRAIN_TOLERANCES['auc_holdout_int8']})"
    )


def test_card_tolerances_are_stated_for_every_retrain_metric(card: dict) -> None:
    assert set(RETRAIN_TOLERANCES) <= set(card["metrics"])
    assert all(0 < limit <= 0.03 for limit in RETRAIN_TOLERANCES.values())
    assert card_tolerance("auc_holdout_int8") < RETRAIN_TOLERANCES["auc_holdout_int8"]


def test_model_card_records_where_the_artifacts_were_built(card: dict) -> None:
    env = card["build_environment"]
    assert env["machine"] and env["cpu_model"]
    assert "avx2" in env["isa_flags"] or env["machine"] != "x86_64"
    assert env["kernel_settings"]["MKL_CBWR"] == "COMPATIBLE"
    assert env["torch_cpu_capability"]
    assert {"torch", "onnxruntime", "onnx", "numpy"} <= set(card["packages"])


# --- scores that cannot depend on the CPU ------------------------------------------------------


def test_published_int8_weights_cannot_saturate_avx2_int16_sums(card: dict) -> None:
    assert max_adjacent_weight_pair(PUBLISHED_ONNX) <= MAX_ADJACENT_WEIGHT_PAIR
    assert card["metrics"]["max_adjacent_weight_pair"] <= MAX_ADJACENT_WEIGHT_PAIR


def _integer_product(weights: np.ndarray, op: str, path: Path) -> Path:
    """A one-node model multiplying UINT8 rows by ``weights`` [K, N] (INT8)."""
    k, n = weights.shape
    inits = [onnx.numpy_helper.from_array(weights.astype(np.int8), "w")]
    if op == "MatMulInteger":
        inits.append(onnx.numpy_helper.from_array(np.zeros(n, np.int8), "wz"))
        node = onnx.helper.make_node("MatMulInteger", ["a", "w", "", "wz"], ["y"])
        out = TensorProto.INT32
    else:
        for name, value in (("s", np.float32(1)), ("z", np.uint8(0)), ("wz", np.int8(0))):
            inits.append(onnx.numpy_helper.from_array(np.array(value), name))
        node = onnx.helper.make_node(
            "QLinearMatMul", ["a", "s", "z", "w", "s", "wz", "s", "z"], ["y"]
        )
        out = TensorProto.UINT8
    graph = onnx.helper.make_graph(
        [node],
        "g",
        [onnx.helper.make_tensor_value_info("a", TensorProto.UINT8, [1, k])],
        [onnx.helper.make_tensor_value_info("y", out, [1, n])],
        inits,
    )
    onnx.save(onnx.helper.make_model(graph), path)
    return path


@pytest.mark.parametrize("op", ["MatMulInteger", "QLinearMatMul"])
def test_the_saturation_bound_sees_a_pair_that_would_saturate(op: str, tmp_path: Path) -> None:
    weights = np.zeros((5, 3), np.int8)
    weights[2, 1], weights[3, 1] = 127, -100  # adjacent along K (rows 2 and 3): 227
    weights[4, 2] = -128  # odd K: the last row pairs with zero padding
    assert max_adjacent_weight_pair(_integer_product(weights, op, tmp_path / "m.onnx")) == 227
    weights[3, 1] = 0
    assert max_adjacent_weight_pair(_integer_product(weights, op, tmp_path / "m.onnx")) == 128
    weights[1, 1] = 127  # rows 1 and 2 are not a pair: 2 is paired with 3
    assert max_adjacent_weight_pair(_integer_product(weights, op, tmp_path / "m.onnx")) == 128


@pytest.mark.parametrize("mode", ["static-qdq", "static-qoperator"])
def test_gate_fails_a_file_whose_weights_can_saturate(
    mode: str, tmp_path: Path, calibration: np.ndarray, holdout: Dataset, contract: FeatureContract
) -> None:
    full_range = tmp_path / "full_range.onnx"
    quantize(REFERENCE_FP32, full_range, calibration, mode, reduce_range=False)
    pair = max_adjacent_weight_pair(full_range)
    assert pair > MAX_ADJACENT_WEIGHT_PAIR
    report = gate(full_range, contract, holdout)
    assert any("adjacent pair" in f and str(pair) in f for f in report.failures)


# --- behaviour of the served INT8 model --------------------------------------------------------


def _pd(contract: FeatureContract, scaler: Standardizer, raw: np.ndarray) -> np.ndarray:
    contract.validate(raw)
    return score(session(PUBLISHED_ONNX), scaler.transform(raw))


def test_delinquency_in_pay_0_raises_the_pd(
    contract: FeatureContract, holdout: Dataset, scaler: Standardizer
) -> None:
    """Directional: PAY_0 from paid-duly/revolving (-1, 0) to 2..8 months late raises the PD.

    It holds for 99.9% of holdout rows (3 of 3,059 drop by at most 0.021 at 2 months: rows that
    were already 2-3 months late in August), so the per-row rule allows a small fraction.
    """
    j = contract.names.index("PAY_0")
    rows = holdout.features[np.isin(holdout.features[:, j], (-1, 0))]
    assert len(rows) > 1000
    base = _pd(contract, scaler, rows)
    previous_mean = base.mean()
    for months in range(2, 9):
        late = rows.copy()
        late[:, j] = months
        pd_late = _pd(contract, scaler, late)
        assert (pd_late >= base).mean() >= 0.995, months
        assert (pd_late - base).mean() > 0.2, months
        assert pd_late.mean() >= previous_mean, months
        previous_mean = pd_late.mean()


def test_good_payer_scores_below_delinquent(
    contract: FeatureContract, scaler: Standardizer
) -> None:
    """Minimum functionality: clear cases land on the right side of the base rate."""
    common = {"SEX": 2, "EDUCATION": 2, "MARRIAGE": 1, "AGE": 40}
    good = {"LIMIT_BAL": 500_000, **common}
    good |= {f"PAY_{i}": -1 for i in (0, 2, 3, 4, 5, 6)}
    good |= {f"BILL_AMT{i}": 5_000 for i in range(1, 7)}
    good |= {f"PAY_AMT{i}": 5_000 for i in range(1, 7)}  # paid in full
    bad = {"LIMIT_BAL": 20_000, **common}
    bad |= {f"PAY_{i}": 3 for i in (0, 2, 3, 4, 5, 6)}
    bad |= {f"BILL_AMT{i}": 19_500 for i in range(1, 7)}
    bad |= {f"PAY_AMT{i}": 0 for i in range(1, 7)}
    raw = np.array([[row[name] for name in contract.names] for row in (good, bad)], float)
    p_good, p_bad = _pd(contract, scaler, raw)
    assert p_good < DEFAULT_RATE < 0.5 < p_bad


# --- the benchmark -----------------------------------------------------------------------------


def test_torch_rebuild_reproduces_the_fp32_onnx(
    card: dict, holdout: Dataset, scaler: Standardizer
) -> None:
    model = torch_from_onnx(REFERENCE_FP32, card)
    x = scaler.transform(holdout.features)
    with torch.inference_mode():
        p_torch = model(torch.from_numpy(x)).numpy()[:, 0]
    assert np.abs(p_torch - score(session(REFERENCE_FP32), x)).max() <= MAX_TORCH_DIFF


def test_bench_refuses_a_model_that_differs(
    monkeypatch: pytest.MonkeyPatch, card: dict, tmp_path: Path
) -> None:
    def perturbed(path: Path, card: dict) -> torch.nn.Module:
        model = torch_from_onnx(path, card)
        with torch.no_grad():
            model.members[0].net[0].bias += 0.05
        return model

    monkeypatch.setattr("export.bench.torch_from_onnx", perturbed)
    with pytest.raises(RuntimeError, match="refusing to time a different model"):
        run_bench(repeats=1, max_rows=64, report_dir=tmp_path, progress=False)
    assert not (tmp_path / "benchmark.md").exists()


def test_bench_smoke(tmp_path: Path, card: dict) -> None:
    threads_before = torch.get_num_threads()
    text = run_bench(
        repeats=1,
        max_rows=64,
        batch_sizes=(1, 8),
        target_seconds=0.002,
        report_dir=tmp_path,
        progress=False,
    )
    assert torch.get_num_threads() == threads_before
    published = f"ORT INT8 {card['quantization']['mode']} (published)"
    engines = ["PyTorch eager", "ORT FP32", "ORT INT8 static-qoperator", "ORT INT8 static-qdq"]
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["engine", "threads", "batch"]
    table = lines[2 : lines.index("")]
    threads = {line.split()[-6] for line in table}
    assert "1" in threads
    assert len(table) == len(engines) * 2 * len(threads)
    for engine in engines:
        assert sum(line.startswith(engine) for line in table) == 2 * len(threads), engine
    assert sum(published in line for line in table) == 2 * len(threads)
    assert "byte-identical" in text and "bytes" in text
    for line in table:
        if line.startswith("PyTorch"):
            assert line.split()[-2] == "1.00x"
    markdown = (tmp_path / "benchmark.md").read_text(encoding="utf-8")
    page = (tmp_path / "benchmark.html").read_text(encoding="utf-8")
    for engine in engines:
        assert engine in markdown and engine in page
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
