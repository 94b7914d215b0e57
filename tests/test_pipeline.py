"""The model pipeline: gate on the committed artifacts, split, ONNX interface, reproducibility,
model behaviour."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

import export.pipeline
from export.config import (
    CALIBRATION_JSON,
    ENCODING_JSON,
    MODEL_CARD_JSON,
    ONNX_OPSET,
    ONNX_OUTPUT,
    POLICY_CARD_JSON,
    POLICY_CARD_MD,
    POLICY_JSON,
    PUBLISHED_ONNX,
    PUBLISHED_POLICY_ONNX,
    PUBLISHED_REASONS_ONNX,
    REASON_CODES_JSON,
    REFERENCE_FP32,
    RETRAIN_TOLERANCES,
    ROOT,
    SPLIT_JSON,
    QuantizeConfig,
    TrainConfig,
    card_tolerance,
)
from export.data import Dataset, load_dataset, make_split, read_split
from export.encoding import RAW_INPUT, Encoding
from export.graphs import REASONS_OUTPUT, compose, extract_network
from export.pipeline import MONOTONE_FEATURES, calibration_rows, load_parts, validate_published
from export.publish import PUBLISHED_SOURCES, sha256_file
from export.quantize import MAX_ADJACENT_WEIGHT_PAIR, max_adjacent_weight_pair, quantize
from export.validate import GateReport, run_gate, score, session
from preprocess_ensemble.features import FeatureContract
from preprocess_ensemble.scoring import InProcessScorer

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
def encoding(contract: FeatureContract) -> Encoding:
    return Encoding.from_json(ENCODING_JSON, contract.names)


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
        PUBLISHED_REASONS_ONNX,
        ENCODING_JSON,
        CALIBRATION_JSON,
        REASON_CODES_JSON,
        *(target for _, target in PUBLISHED_SOURCES),
    }
    assert set(card["artifacts"]) == {p.relative_to(ROOT).as_posix() for p in expected}
    for name, digest in card["artifacts"].items():
        assert sha256_file(ROOT / name) == digest, name
    assert card["split"]["sha256"] == sha256_file(SPLIT_JSON)
    policy = json.loads(POLICY_CARD_JSON.read_text())
    assert set(policy["artifacts"]) == {
        p.relative_to(ROOT).as_posix() for p in (PUBLISHED_POLICY_ONNX, POLICY_JSON)
    }
    for name, digest in policy["artifacts"].items():
        assert sha256_file(ROOT / name) == digest, name


def test_tampered_model_card_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, card: dict
) -> None:
    tampered = json.loads(json.dumps(card))
    onnx_name = PUBLISHED_ONNX.relative_to(ROOT).as_posix()
    features_name = PUBLISHED_SOURCES[1][1].relative_to(ROOT).as_posix()  # features.py
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
    assert f"{onnx_name}: sha256 {actual} differs from the card's {'0' * 64}" in joined
    assert f"{features_name} is missing from the model card" in joined
    auc = card["metrics"]["auc_holdout_int8"]
    assert (
        f"metric auc_holdout_int8: measured {auc:.6g}, model card says {auc + 0.01:.6g} "
        "(tolerance 1e-05)" in joined
    )
    assert "metric brier_int8: measured" in joined


@pytest.fixture(scope="module")
def calibration(
    parts: tuple[FeatureContract, dict[str, Dataset], dict], encoding: Encoding
) -> np.ndarray:
    return calibration_rows(parts[1]["train"], encoding, QuantizeConfig())


@pytest.fixture(scope="module")
def network_fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The FP32 network inside the committed reference (encoded rows in)."""
    return extract_network(REFERENCE_FP32, tmp_path_factory.mktemp("net") / "network_fp32.onnx")


def gate(network_int8: Path, encoding: Encoding, holdout: Dataset) -> GateReport:
    """The gate on a quantized network, composed and served with the published policy."""
    folder = network_int8.parent
    scorer = InProcessScorer(
        compose(encoding, network_int8, folder / "model.onnx"),
        compose(encoding, network_int8, folder / "reasons.onnx", reasons=True),
        PUBLISHED_POLICY_ONNX,
    )
    return run_gate(
        scorer,
        REFERENCE_FP32,
        holdout.features,
        holdout.target,
        unseen_features=TrainConfig().exclude_from_model,
        monotone_features=MONOTONE_FEATURES,
    )


def test_gate_rejects_dynamic_quantization(
    tmp_path: Path, calibration: np.ndarray, network_fp32: Path, encoding: Encoding, holdout
) -> None:
    int8 = quantize(network_fp32, tmp_path / "dynamic.onnx", calibration, "dynamic")
    report = gate(int8, encoding, holdout)
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
    network_fp32: Path,
    encoding: Encoding,
    holdout: Dataset,
    card: dict,
) -> None:
    int8 = quantize(network_fp32, tmp_path / f"{mode}.onnx", calibration, mode)
    report = gate(int8, encoding, holdout)
    assert report.failures == []
    assert report.metrics["batch_invariance_max_diff"] == 0.0
    if mode == card["quantization"]["mode"]:  # quantization is deterministic
        published = score(session(PUBLISHED_ONNX), holdout.features)
        rebuilt = score(session(tmp_path / "model.onnx"), holdout.features)
        np.testing.assert_array_equal(rebuilt, published)


@pytest.mark.parametrize(
    ("source", "copy"),
    PUBLISHED_SOURCES,
    ids=[f"{t.parent.parent.name}/{t.name}" for _, t in PUBLISHED_SOURCES],
)
def test_published_sources_are_byte_identical(source: Path, copy: Path) -> None:
    """The copies Triton loads from model_repository/ are current (`make publish-sources`)."""
    assert copy.read_bytes() == source.read_bytes()


def test_cards_hold_the_calibration_policy_and_reviewer_sections(card: dict) -> None:
    calibration = json.loads(CALIBRATION_JSON.read_text())
    assert calibration["method"] == card["calibration"]["method"] == "platt"
    assert (calibration["a"], calibration["b"]) == (
        card["calibration"]["a"],
        card["calibration"]["b"],
    )
    holdout = card["calibration"]["holdout"]
    assert holdout["brier_after"] <= holdout["brier_before"]
    assert card["features_not_seen"]["choice"] and card["changelog"] and card["owner"]
    assert set(card["features_not_seen"]["excluded_from_model"]) == {"SEX", "MARRIAGE", "AGE"}
    markdown = MODEL_CARD_JSON.with_suffix(".md").read_text()
    for section in (
        "## Intended use",
        "## What default means",
        "## Holdout performance",
        "## Calibration",
        "## Decision policy",
        "Score bands on the holdout",
        "## Fairness audit",
        "## Features the model does not see",
        "## Adverse-action reason codes",
        "## Limitations",
        "## Changelog",
    ):
        assert section in markdown, section
    for key in ("auc_holdout_int8", "min_adverse_impact_ratio", "approval_rate"):
        assert key not in markdown, key  # readable labels, not JSON keys
    policy = POLICY_CARD_MD.read_text()
    for section in ("## Decision policy", "Why these cut-offs", "## Fairness audit"):
        assert section in policy, section
    assert "`refer` counts as not approved" in policy


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


@pytest.mark.parametrize(
    ("path", "output", "width"),
    [
        (REFERENCE_FP32, ONNX_OUTPUT, 1),
        (PUBLISHED_ONNX, ONNX_OUTPUT, 1),
        (PUBLISHED_REASONS_ONNX, REASONS_OUTPUT, 1 + N_FEATURES),
    ],
    ids=["fp32", "int8", "int8-reasons"],
)
def test_onnx_interface(path: Path, output: str, width: int, holdout: Dataset) -> None:
    """Raw features in (the encoder is in the graph); NGC 24.10's ONNX Runtime reads the file."""
    model = onnx.load(str(path))
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    assert opsets["ai.onnx"] == ONNX_OPSET == 17
    assert model.ir_version <= 10
    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert (inp.name, out.name) == (RAW_INPUT, output) == ("features", output)
    assert inp.type.tensor_type.elem_type == TensorProto.FLOAT
    assert out.type.tensor_type.elem_type == TensorProto.FLOAT
    in_dims, out_dims = _dims(inp), _dims(out)
    assert isinstance(in_dims[0], str) and in_dims[0]  # symbolic batch dimension
    assert in_dims == [in_dims[0], N_FEATURES]
    assert out_dims[1] == width
    sess = session(path)
    x = holdout.features[:37].astype(np.float32)
    for n in (1, 2, 37):
        (p,) = sess.run(None, {RAW_INPUT: x[:n]})
        assert p.shape == (n, width) and p.dtype == np.float32
        assert ((p > 0) & (p < 1)).all()


def test_reasons_network_scores_the_applicant_exactly_as_credit_model(holdout: Dataset) -> None:
    """Column 0 of credit_model_reasons is credit_model's probability, bit for bit."""
    x = holdout.features.astype(np.float32)
    (with_reasons,) = session(PUBLISHED_REASONS_ONNX).run(None, {RAW_INPUT: x})
    np.testing.assert_array_equal(with_reasons[:, :1], score(session(PUBLISHED_ONNX), x)[:, None])


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


RETRAINED_FILES = (
    "model_fp32.onnx",
    "model_int8_static-qoperator.onnx",
    "model_reasons.onnx",
    "policy.onnx",
    "encoding.json",
    "calibration.json",
)
COMMITTED = (
    REFERENCE_FP32,
    PUBLISHED_ONNX,
    PUBLISHED_REASONS_ONNX,
    PUBLISHED_POLICY_ONNX,
    ENCODING_JSON,
    CALIBRATION_JSON,
)


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    """Retrains with this CPU's own kernels (twice) and with each ATEN_CPU_CAPABILITY."""
    committed = {p: sha256_file(p) for p in COMMITTED}
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
    mode: str,
    tmp_path: Path,
    calibration: np.ndarray,
    network_fp32: Path,
    encoding: Encoding,
    holdout: Dataset,
) -> None:
    full_range = tmp_path / "full_range.onnx"
    quantize(network_fp32, full_range, calibration, mode, reduce_range=False)
    pair = max_adjacent_weight_pair(full_range)
    assert pair > MAX_ADJACENT_WEIGHT_PAIR
    report = gate(full_range, encoding, holdout)
    assert any("adjacent pair" in f and str(pair) in f for f in report.failures)


# --- behaviour of the served INT8 model --------------------------------------------------------


def _pd(contract: FeatureContract, raw: np.ndarray) -> np.ndarray:
    contract.validate(raw)
    return InProcessScorer.published().decide(raw, reasons=False)["pd"][:, 0]


def test_delinquency_in_pay_0_raises_the_pd(contract: FeatureContract, holdout: Dataset) -> None:
    """Directional: PAY_0 from paid-duly/revolving (-1, 0) to 2..8 months late raises the PD.

    -1 and 0 are status codes, not months, so the monotone constraint does not cover this
    move; it holds for nearly every holdout row and on average by a wide margin.
    """
    j = contract.names.index("PAY_0")
    rows = holdout.features[np.isin(holdout.features[:, j], (-1, 0))]
    assert len(rows) > 1000
    base = _pd(contract, rows)
    previous_mean = base.mean()
    for months in range(2, 9):
        late = rows.copy()
        late[:, j] = months
        pd_late = _pd(contract, late)
        assert (pd_late >= base).mean() >= 0.995, months
        assert (pd_late - base).mean() > 0.2, months
        assert pd_late.mean() >= previous_mean, months
        previous_mean = pd_late.mean()


def test_good_payer_scores_below_delinquent(contract: FeatureContract) -> None:
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
    p_good, p_bad = _pd(contract, raw)
    assert p_good < DEFAULT_RATE < 0.5 < p_bad
