"""Load tests and the serving benchmark: the tools' parts, the FastAPI baseline, short real runs."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export.config import ROOT
from loadtest import perf_analyzer
from loadtest.protocol import (
    DECISION_OUTPUTS,
    BadResponse,
    check_decisions,
    check_probabilities,
    http_binary_body,
    parse_http_binary,
    parse_http_outputs,
)
from loadtest.repository import NETWORK, Variant, build_repository, read_config
from loadtest.rows import holdout_rows
from loadtest.run_locust import parse_run_time, read_stats

TOLERANCE = 1e-6


def need(*modules: str) -> None:
    """Skip unless the loadtest extra is installed (found without importing: Locust patches ssl)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing and not os.environ.get("CI"):
        pytest.skip(f"{', '.join(missing)} not installed (pip install -e '.[loadtest]')")


def run(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


# --- no server -------------------------------------------------------------------------------


def test_holdout_rows_match_the_test_fixture(holdout) -> None:
    np.testing.assert_array_equal(holdout_rows(), holdout)


def test_fastapi_baseline_does_credit_scorings_work_with_the_same_artifacts(
    holdout, reference
) -> None:
    """POST /decide equals InProcessScorer (credit_scoring's outputs); /predict the network."""
    need("fastapi", "httpx")
    from fastapi.testclient import TestClient

    from loadtest.baselines.fastapi_ort.app import app

    client = TestClient(app)
    rows = holdout[:50].astype(float).tolist()
    decided = client.post("/decide", json={"rows": rows})
    assert decided.status_code == 200, decided.text
    body, expected = decided.json(), reference.decide(holdout[:50])
    assert body["score"] == expected["score"].tolist()
    assert body["decision"] == expected["decision"].tolist()
    assert body["reason_codes"] == expected["reason_codes"].tolist()
    np.testing.assert_array_equal(np.float32(body["pd"]), expected["pd"])
    predicted = client.post("/predict", json={"rows": rows}).json()["probabilities"]
    np.testing.assert_array_equal(np.float32(predicted), reference.score(holdout[:50])[:, 0])
    bad = [list(rows[0]), list(rows[1])]
    bad[1][1] = 3  # SEX = 3
    refused = client.post("/decide", json={"rows": bad})
    assert refused.status_code == 422 and "row 1" in refused.text and "SEX" in refused.text


def test_perf_analyzer_input_rows_are_raw_contract_rows(tmp_path: Path, holdout) -> None:
    for model in ("credit_scoring", NETWORK):
        path = perf_analyzer.write_input_data(tmp_path / f"{model}.json", model, holdout[:3])
        data = json.loads(path.read_text())["data"]
        assert [d["features"]["content"] for d in data] == holdout[:3].astype(float).tolist()


def test_bench_repository_applies_a_variant_and_leaves_the_product_alone(tmp_path: Path) -> None:
    product = read_config(ROOT / "model_repository" / "credit_model" / "config.pbtxt")
    variant = Variant.parse("delay=0,model_delay=50,instances=2,preferred=4+16")
    repository = build_repository(variant, dest=tmp_path / "repo")
    model = read_config(repository / "credit_model" / "config.pbtxt")
    preprocess = read_config(repository / "preprocess" / "config.pbtxt")
    policy = read_config(repository / "credit_policy" / "config.pbtxt")
    assert model.dynamic_batching.max_queue_delay_microseconds == 50
    assert policy.dynamic_batching.max_queue_delay_microseconds == 50
    assert preprocess.dynamic_batching.max_queue_delay_microseconds == 0
    assert list(model.dynamic_batching.preferred_batch_size) == [4, 16]
    assert [g.count for g in preprocess.instance_group] == [2]
    assert (repository / "credit_model_reasons" / "1" / "model.onnx").is_file()
    assert read_config(ROOT / "model_repository" / "credit_model" / "config.pbtxt") == product
    with pytest.raises(ValueError, match="unknown variant setting"):
        Variant.parse("delays=0")
    labelled = Variant.parse("fast:pre_delay=0,features=/x/features.py")
    assert labelled.name == "fast" and labelled.preprocess_delay_us == 0
    assert labelled.features == Path("/x/features.py") and labelled.delay_us is None
    assert Variant.parse("product") == Variant()


def test_binary_request_and_response_checks() -> None:
    rows = np.arange(46, dtype=np.float32).reshape(2, 23)
    body, header_length = http_binary_body(rows)
    header = json.loads(body[:header_length])
    assert header["inputs"][0]["shape"] == [2, 23]
    assert np.array_equal(np.frombuffer(body[header_length:], dtype=np.float32), rows.ravel())
    answer = b'{"outputs":[]}' + np.array([0.25, 1.0], dtype=np.float32).tobytes()
    assert parse_http_binary(answer, 14, 2).tolist() == [0.25, 1.0]
    for values, n in (([0.5], 2), ([0.5, 1.5], 2), ([np.nan, 0.1], 2), ([-0.1, 0.1], 2)):
        with pytest.raises(BadResponse):
            check_probabilities(np.array(values, dtype=np.float32), n)


def _bytes_tensor(values: list[bytes]) -> bytes:
    return b"".join(len(v).to_bytes(4, "little") + v for v in values)


def test_decision_outputs_are_requested_parsed_and_checked() -> None:
    rows = np.zeros((2, 23), dtype=np.float32)
    body, length = http_binary_body(rows, outputs=DECISION_OUTPUTS)
    assert [o["name"] for o in json.loads(body[:length])["outputs"]] == list(DECISION_OUTPUTS)
    tensors = {
        "probability": ("FP32", [2, 1], np.array([0.2, 0.7], np.float32).tobytes()),
        "pd": ("FP32", [2, 1], np.array([0.21, 0.69], np.float32).tobytes()),
        "score": ("INT32", [2, 1], np.array([530, 470], np.int32).tobytes()),
        "decision": ("BYTES", [2, 1], _bytes_tensor([b"approve", b"decline"])),
        "reason_codes": ("BYTES", [2, 4], _bytes_tensor([b"R01", b"", b"", b"", *[b"R06"] * 4])),
        "policy": ("BYTES", [2, 1], _bytes_tensor([b"p@1", b"p@1"])),
    }
    header = {
        "outputs": [
            {"name": n, "datatype": d, "shape": s, "parameters": {"binary_data_size": len(b)}}
            for n, (d, s, b) in tensors.items()
        ]
    }
    head = json.dumps(header).encode()
    arrays = parse_http_outputs(head + b"".join(b for _, _, b in tensors.values()), len(head))
    check_decisions(arrays, 2)
    assert arrays["reason_codes"][0].tolist() == [b"R01", b"", b"", b""]
    assert arrays["score"][:, 0].tolist() == [530, 470]
    for broken in (
        {"decision": np.array([[b"approve"], [b"maybe"]], dtype=object)},
        {"score": arrays["score"].astype(np.float32)},
        {"reason_codes": arrays["reason_codes"][:, :3]},
        {"pd": np.array([[0.2], [1.2]], np.float32)},
        {"policy": None},
    ):
        with pytest.raises(BadResponse):
            check_decisions(arrays | broken, 2)


def test_run_time_and_stats_parsing(tmp_path: Path) -> None:
    assert [parse_run_time(t) for t in ("45", "30s", "2m", "1h30m")] == [45, 30, 120, 5400]
    with pytest.raises(ValueError):
        parse_run_time("soon")
    broken = tmp_path / "broken_stats.csv"
    broken.write_text("Type,Name\nPOST,x\n")
    with pytest.raises(ValueError):
        read_stats(broken)


def test_perf_analyzer_placeholder_and_glibc_detection(monkeypatch, tmp_path: Path) -> None:
    major, minor = perf_analyzer.glibc_version()
    assert major >= 2, "this project runs on glibc"
    monkeypatch.delenv("PERF_ANALYZER", raising=False)
    monkeypatch.setattr(perf_analyzer, "CACHE", tmp_path)  # no fetched runtime
    monkeypatch.setattr(perf_analyzer, "wheel_binary", lambda: None)  # the 0.1.0 placeholder
    with pytest.raises(perf_analyzer.Unavailable, match="glibc"):
        perf_analyzer.find_command()
    options = " ".join(perf_analyzer.apt_options(tmp_path / "apt"))
    assert "/etc/apt" not in options and "/var/lib" not in options


# --- against a real local Triton --------------------------------------------------------------


@pytest.mark.triton
@pytest.mark.slow
def test_short_locust_run_has_zero_failures_and_well_formed_csvs(triton, tmp_path: Path) -> None:
    need("locust")
    out = tmp_path / "locust"
    done = run(
        [
            sys.executable, "-m", "loadtest.run_locust", f"--host=http://{triton.http_url}",
            f"--grpc-host={triton.grpc_url}", "--users=4", "--spawn-rate=4", "--run-time=5s",
            "--batch-rows=64", f"--out={out}",
        ],
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = read_stats(out / "locust_stats.csv")
    names = {r["Name"] for r in rows}
    assert {"http single", "grpc single"} <= names, names
    total = int(rows[-1]["Request Count"])
    if total > 400:  # 1 in 10 requests is a batch: with this many, both kinds must show up
        assert {"http batch 64", "grpc batch 64"} <= names, names
    assert names <= {"http single", "grpc single", "http batch 64", "grpc batch 64", "Aggregated"}
    assert all(r["Failure Count"] == "0" for r in rows), rows
    assert total > 20
    with open(out / "locust_stats_history.csv", newline="") as handle:
        assert list(csv.DictReader(handle)), "empty history"
    assert (out / "locust.html").stat().st_size > 1000


@pytest.mark.triton
def test_load_generator_counts_every_failed_request(triton, tmp_path: Path) -> None:
    rows = tmp_path / "rows.npy"
    np.save(rows, holdout_rows()[:64])
    for engine, url in (("http", triton.http_url), ("grpc", triton.grpc_url)):
        base = [sys.executable, "-m", "loadtest.loadgen", engine, f"--url={url}", f"--rows={rows}"]
        timing = ["--duration=1.5", "--warmup=0.2", "--concurrency=2"]
        done = run([*base, *timing], timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        good = json.loads(done.stdout)
        assert good["errors"] == 0 and good["requests"] > 0, good
        bad = json.loads(run([*base, *timing, "--model=no_such_model"], timeout=60).stdout)
        assert bad["requests"] == 0 and bad["errors"] > 0, bad


@pytest.mark.triton
@pytest.mark.slow
def test_short_perf_analyzer_run(triton, tmp_path: Path) -> None:
    try:
        perf_analyzer.find_command()
    except perf_analyzer.Unavailable as reason:
        pytest.skip(str(reason))
    out = tmp_path / "pa"
    done = run(
        [
            sys.executable, "-m", "loadtest.perf_analyzer", "run", f"--url={triton.http_url}",
            f"--grpc-url={triton.grpc_url}", "--concurrency", "2", "--interval-ms=400",
            "--stability=1000",
            "--require", f"--out={out}",
        ],
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with open(out / "summary.csv", newline="") as handle:
        summary = list(csv.DictReader(handle))
    assert {(r["model"], r["protocol"]) for r in summary} == {
        (m, p) for m in ("credit_scoring", "credit_model") for p in ("http", "grpc")
    }
    assert all(float(r["infer_per_s"]) > 0 for r in summary), summary


@pytest.mark.triton
@pytest.mark.slow
def test_bench_serving_smoke_runs_end_to_end(tmp_path: Path) -> None:
    need("fastapi", "uvicorn")
    done = run(
        [sys.executable, "-m", "loadtest.bench_serving", "--smoke", f"--out={tmp_path}"],
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = (tmp_path / "serving_benchmark.md").read_text()
    for engine in ("in-process ORT", "Triton ensemble HTTP", "Triton ensemble gRPC",
                   "Triton credit_model HTTP", "Triton credit_model gRPC",
                   "Triton credit_pd HTTP", "Triton credit_pd gRPC", "FastAPI + ORT",
                   "FastAPI + ORT same work", "in-process credit_scoring",
                   "in-process credit_pd"):  # fmt: skip
        assert f"| {engine} |" in report, engine
    assert "## Ratios" in report and "queue µs" in report
    written = json.loads((tmp_path / "serving_benchmark.json").read_text())
    cells = written["cells"]
    assert all(
        run["errors"] == 0 and run["requests"] > 0 for c in cells.values() for run in c["runs"]
    )
    keys = {
        f"{kind}_{protocol}_{what}"
        for protocol in ("http", "grpc")
        for kind, what in (
            ("full", "c1_p50_vs_fastapi"),
            ("full", "c8_rps_vs_fastapi"),
            ("full", "batch_rows_vs_inprocess"),
            ("pd", "batch_rows_vs_inprocess"),
        )
    } | {"full_vs_pd_batch_rows"}
    assert set(written["ratios"]) == keys
    for ratio in written["ratios"].values():
        assert ratio["value"] > 0 and ratio["target"] and isinstance(ratio["met"], bool)
    assert "<svg" in (tmp_path / "serving_benchmark.html").read_text()
