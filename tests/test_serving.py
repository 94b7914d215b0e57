"""The credit_scoring and credit_pd ensembles on a real local Triton: parity with the same
artifacts in process, batch invariance, bad input."""

from __future__ import annotations

import ast
import http.client
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from export.config import CONTRACT_JSON, MODEL_REPOSITORY
from export.validate import extreme_rows
from preprocess_ensemble.features import FeatureContract
from preprocess_ensemble.triton_server import TritonServer

MODEL = "credit_scoring"
BATCH_MODEL = "credit_pd"
NATIVE_MODELS = ("credit_model", "credit_model_reasons", "credit_policy")
TOLERANCE = 1e-6
CONTRACT = FeatureContract.from_json(CONTRACT_JSON)


def read_config(name: str) -> model_config_pb2.ModelConfig:
    text = (MODEL_REPOSITORY / name / "config.pbtxt").read_text()
    return text_format.Parse(text, model_config_pb2.ModelConfig())


# --- configs (no server) -------------------------------------------------------------------


@pytest.mark.parametrize("ensemble_name", [MODEL, BATCH_MODEL])
def test_ensemble_maps_name_real_tensors(ensemble_name: str) -> None:
    ensemble = read_config(ensemble_name)
    assert ensemble.max_batch_size >= 1024
    python_steps = 0
    for step in ensemble.ensemble_scheduling.step:
        config = read_config(step.model_name)
        assert config.max_batch_size == ensemble.max_batch_size, step.model_name
        inputs = {t.name for t in config.input}
        outputs = {t.name for t in config.output}
        assert set(step.input_map) <= inputs, (step.model_name, step.input_map)
        assert set(step.output_map) <= outputs, (step.model_name, step.output_map)
        python_steps += config.backend == "python"
        if config.backend == "onnxruntime":
            graph = onnx.load(str(MODEL_REPOSITORY / step.model_name / "1" / "model.onnx")).graph
            assert {t.name for t in graph.input} == inputs, step.model_name
            assert {t.name for t in graph.output} == outputs, step.model_name
    assert python_steps == 1  # the contract check; everything after it runs natively
    declared = [t.name for t in ensemble.output]
    mapped = [v for step in ensemble.ensemble_scheduling.step for v in step.output_map.values()]
    assert set(declared) <= set(mapped)


def test_credit_pd_is_credit_scoring_without_reason_codes() -> None:
    full, batch = read_config(MODEL), read_config(BATCH_MODEL)
    assert [t.name for t in batch.input] == [t.name for t in full.input] == ["features"]
    assert [t for t in full.output if t.name != "reason_codes"] == list(batch.output)
    assert [s.model_name for s in batch.ensemble_scheduling.step] == [
        "preprocess",
        "credit_model",
        "credit_policy",
    ]


@pytest.mark.parametrize("name", NATIVE_MODELS)
def test_native_models_are_tuned_for_a_cpu_pod(name: str) -> None:
    config = read_config(name)
    assert config.backend == "onnxruntime"
    assert config.HasField("dynamic_batching")
    assert all(
        g.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU for g in config.instance_group
    )
    assert {"intra_op_thread_count", "inter_op_thread_count"} <= set(config.parameters)
    assert config.model_warmup, "ready must mean warmed up"


def test_repository_code_does_not_import_the_project() -> None:
    # The NGC image has the standard library, numpy and the python backend's utils; nothing else.
    allowed = set(sys.stdlib_module_names) | {
        "numpy",
        "triton_python_backend_utils",
        "features",
        "capture",
    }
    for path in MODEL_REPOSITORY.rglob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add((node.module or "").split(".")[0])
        assert imported <= allowed, (path, imported - allowed)


# --- parity and invariance ------------------------------------------------------------------


def clients(server: TritonServer) -> dict:
    return {
        "http": (httpclient, httpclient.InferenceServerClient(server.http_url)),
        "grpc": (grpcclient, grpcclient.InferenceServerClient(server.grpc_url)),
    }


def infer(module, client, rows: np.ndarray) -> np.ndarray:
    tensor = module.InferInput("features", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
    return client.infer(MODEL, [tensor]).as_numpy("probability")


@pytest.mark.triton
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_every_holdout_row_matches_in_process_onnxruntime(
    triton, holdout, reference, figures, protocol
) -> None:
    module, client = clients(triton)[protocol]
    served = np.concatenate(
        [infer(module, client, holdout[i : i + 1024]) for i in range(0, len(holdout), 1024)]
    )
    expected = reference.score(holdout)
    error = float(np.abs(served - expected).max())
    figures[f"parity max |p_triton - p_onnxruntime| over {len(holdout)} rows ({protocol})"] = (
        f"{error:.3g}"
    )
    assert served.shape == (len(holdout), 1)
    assert error <= TOLERANCE, f"Triton differs from in-process ONNX Runtime by {error}"


@pytest.mark.triton
def test_a_row_scores_the_same_alone_in_a_batch_and_under_concurrent_load(
    triton, holdout, reference
) -> None:
    module, client = clients(triton)["http"]
    rows = holdout[:64]
    alone = np.concatenate([infer(module, client, rows[i : i + 1]) for i in range(len(rows))])
    in_big_request = infer(module, client, holdout[:1024])[:64]
    outliers = extreme_rows(CONTRACT).astype(np.float32)
    # Many concurrent requests (single rows and extreme outliers) so Triton batches them together.
    pool = httpclient.InferenceServerClient(triton.http_url, concurrency=16)
    pending = []
    for i in range(len(rows)):
        for payload in (rows[i : i + 1], outliers, rows[i : i + 1]):
            tensor = httpclient.InferInput("features", list(payload.shape), "FP32")
            tensor.set_data_from_numpy(payload)
            pending.append((i, len(payload), pool.async_infer(MODEL, [tensor])))
    under_load = np.zeros((len(rows), 1), dtype=np.float32)
    for i, size, future in pending:
        result = future.get_result().as_numpy("probability")
        if size == 1:
            assert abs(result[0, 0] - alone[i, 0]) <= TOLERANCE
            under_load[i] = result[0]
    pool.close()
    np.testing.assert_allclose(in_big_request, alone, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(alone, reference.score(rows), atol=TOLERANCE, rtol=0)
    stats = client.get_inference_statistics("credit_model")["model_stats"][0]
    assert int(stats["execution_count"]) < int(stats["inference_count"]), "nothing was batched"


# --- decisioning outputs --------------------------------------------------------------------

DECISION_OUTPUTS = ("probability", "pd", "score", "decision", "reason_codes", "policy")


def infer_all(module, client, rows: np.ndarray, model: str = MODEL) -> dict[str, np.ndarray]:
    tensor = module.InferInput("features", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
    result = client.infer(model, [tensor])
    names = DECISION_OUTPUTS if model == MODEL else PD_OUTPUTS
    return {name: result.as_numpy(name) for name in names}


PD_OUTPUTS = tuple(name for name in DECISION_OUTPUTS if name != "reason_codes")


def text(values: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else v, otypes=[object])(
        values
    )


@pytest.mark.triton
@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", [MODEL, BATCH_MODEL])
def test_every_holdout_decision_equals_the_same_artifacts_in_process(
    triton, holdout, reference, figures, protocol, model
) -> None:
    """All 4,500 holdout applicants: every output of the ensemble equals InProcessScorer's."""
    module, client = clients(triton)[protocol]
    parts = [infer_all(module, client, holdout[i : i + 1024], model) for i in range(0, 4500, 1024)]
    served = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    expected = reference.decide(holdout, reasons=model == MODEL)
    n = len(holdout)
    assert served["pd"].shape == (n, 1) and served["pd"].dtype == np.float32
    assert served["score"].shape == (n, 1) and served["score"].dtype == np.int32
    if model == MODEL:
        assert served["reason_codes"].shape == (n, 4)
        np.testing.assert_array_equal(text(served["reason_codes"]), expected["reason_codes"])
    error = float(np.abs(served["pd"][:, 0] - expected["pd"]).max())
    figures[f"{model} max |pd_triton - pd_in_process| over {n} rows ({protocol})"] = f"{error:.3g}"
    assert error <= TOLERANCE
    np.testing.assert_allclose(served["probability"][:, 0], expected["probability"], atol=TOLERANCE)
    np.testing.assert_array_equal(served["score"][:, 0], expected["score"])
    np.testing.assert_array_equal(text(served["decision"][:, 0]), expected["decision"])
    assert set(text(served["policy"][:, 0])) == {reference.policy.label}
    assert {"approve", "refer", "decline"} == set(expected["decision"])


@pytest.mark.triton
def test_reason_codes_do_not_depend_on_batch_mates(triton, holdout) -> None:
    module, client = clients(triton)["grpc"]
    rows = holdout[:40]
    in_batch = infer_all(module, client, np.vstack([holdout[500:1000], rows]))
    for i in range(len(rows)):
        alone = infer_all(module, client, rows[i : i + 1])
        for name in DECISION_OUTPUTS:
            assert np.array_equal(alone[name][0], in_batch[name][500 + i]), (i, name)


# --- bad input ------------------------------------------------------------------------------

GOOD_ROW = [20000, 2, 2, 1, 24, 2, 2, -1, -1, -2, -2, 3913, 3102, 689, 0, 0, 0, 0, 689, 0, 0, 0, 0]


def with_value(column: str, value: float) -> np.ndarray:
    row = np.array([GOOD_ROW, GOOD_ROW], dtype=np.float32)
    row[1, CONTRACT.names.index(column)] = value
    return row


CONTRACT_CASES = {
    "nan": (with_value("BILL_AMT2", np.nan), ["row 1", "BILL_AMT2", "NaN"]),
    "plus_inf": (with_value("PAY_AMT1", np.inf), ["row 1", "PAY_AMT1", "finite"]),
    "minus_inf": (with_value("BILL_AMT1", -np.inf), ["row 1", "BILL_AMT1", "finite"]),
    "sex_3": (with_value("SEX", 3), ["row 1", "SEX", "allowed"]),
    "age_5": (with_value("AGE", 5), ["row 1", "AGE", "range"]),
    "negative_limit": (with_value("LIMIT_BAL", -1000), ["row 1", "LIMIT_BAL", "range"]),
    "fractional_age": (with_value("AGE", 30.5), ["row 1", "AGE", "whole number"]),
}


@pytest.mark.triton
@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("case", sorted(CONTRACT_CASES))
def test_contract_violations_get_a_4xx_naming_row_and_feature(triton, protocol, case) -> None:
    module, client = clients(triton)[protocol]
    rows, expected_words = CONTRACT_CASES[case]
    with pytest.raises(InferenceServerException) as caught:
        infer(module, client, rows)
    message = caught.value.message()
    for word in expected_words:
        assert word in message, message
    status = str(caught.value.status())
    assert status in ("400", "StatusCode.INVALID_ARGUMENT"), status
    assert triton.is_ready()


def post(server: TritonServer, body: bytes | str, path: str = f"/v2/models/{MODEL}/infer"):
    connection = http.client.HTTPConnection(server.host, server.http_port, timeout=10)
    connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    payload = response.read().decode()
    connection.close()
    return response.status, payload


def json_request(shape: list[int], data: list, datatype: str = "FP32") -> str:
    tensor = {"name": "features", "shape": shape, "datatype": datatype, "data": data}
    return json.dumps({"inputs": [tensor]})


PROTOCOL_CASES = {
    "22_columns": (json_request([1, 22], GOOD_ROW[:22]), "Expected [-1,23], got [1,22]"),
    "24_columns": (json_request([1, 24], [*GOOD_ROW, 0]), "Expected [-1,23], got [1,24]"),
    "fp64": (json_request([1, 23], GOOD_ROW, "FP64"), "expects 'FP32'"),
    "int64": (json_request([1, 23], GOOD_ROW, "INT64"), "expects 'FP32'"),
    "bytes": (json_request([1, 23], [str(v) for v in GOOD_ROW], "BYTES"), "expects 'FP32'"),
    "missing_input": (json.dumps({"inputs": []}), "missing required input(s) ['features']"),
    "zero_rows": (json_request([0, 23], []), "features"),
    "over_max_batch": (json_request([1025, 23], GOOD_ROW * 1025), "batch-size must be <= 1024"),
}


@pytest.mark.triton
@pytest.mark.parametrize("case", sorted(PROTOCOL_CASES))
def test_malformed_requests_get_a_4xx_and_the_server_stays_ready(triton, case) -> None:
    body, expected = PROTOCOL_CASES[case]
    status, payload = post(triton, body)
    assert 400 <= status < 500, (status, payload)
    assert expected in payload, payload
    assert triton.is_ready()


@pytest.mark.triton
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_declared_shape_that_does_not_match_binary_data_gets_a_4xx(triton, protocol) -> None:
    module, client = clients(triton)[protocol]
    tensor = module.InferInput("features", [1, 23], "FP32")
    tensor.set_data_from_numpy(np.array([GOOD_ROW], dtype=np.float32))
    tensor.set_shape([2, 23])  # claims two rows, carries one
    with pytest.raises(InferenceServerException) as caught:
        client.infer(MODEL, [tensor])
    assert str(caught.value.status()) in ("400", "StatusCode.INVALID_ARGUMENT"), caught.value
    assert "features" in caught.value.message()
    assert triton.is_ready()


@pytest.mark.triton
def test_unparseable_json_is_answered_and_the_server_stays_ready(triton) -> None:
    """Triton 2.51's HTTP frontend answers JSON it cannot parse with 500, not 400.

    An upstream limitation (triton-inference-server/server#8762); the message still names the
    parse error and the server keeps serving. This test fails when an upgrade changes that.
    """
    bodies = (
        '{"inputs": [',
        "null",
        json_request([1, 23], [*GOOD_ROW[:22], "x"]),
        json_request([2, 23], GOOD_ROW),  # declared shape does not match the JSON data
    )
    for body in bodies:
        status, payload = post(triton, body)
        assert status == 500 and "parse" in payload, (status, payload)
        assert triton.is_ready()


@pytest.mark.triton
def test_bad_requests_do_not_disturb_concurrent_good_ones(triton, holdout, reference) -> None:
    good = holdout[:256]
    bad = with_value("SEX", 3)
    pool = httpclient.InferenceServerClient(triton.http_url, concurrency=8)
    pending = []
    for i in range(0, len(good), 8):
        for payload in (good[i : i + 8], bad):
            tensor = httpclient.InferInput("features", list(payload.shape), "FP32")
            tensor.set_data_from_numpy(payload)
            pending.append((i, payload is bad, pool.async_infer(MODEL, [tensor])))
    for i, is_bad, future in pending:
        if is_bad:
            with pytest.raises(InferenceServerException, match="SEX"):
                future.get_result()
        else:
            result = future.get_result().as_numpy("probability")
            np.testing.assert_allclose(result, reference.score(good[i : i + 8]), atol=TOLERANCE)
    pool.close()


# --- health and latency ---------------------------------------------------------------------


@pytest.mark.triton
def test_health_endpoints_and_model_metadata(triton) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{MODEL}/ready"):
        connection = http.client.HTTPConnection(triton.host, triton.http_port, timeout=5)
        connection.request("GET", path)
        assert connection.getresponse().status == 200, path
    metadata = httpclient.InferenceServerClient(triton.http_url).get_model_metadata(MODEL)
    assert metadata["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 23]}]
    outputs = [
        {"name": "probability", "datatype": "FP32", "shape": [-1, 1]},
        {"name": "pd", "datatype": "FP32", "shape": [-1, 1]},
        {"name": "score", "datatype": "INT32", "shape": [-1, 1]},
        {"name": "decision", "datatype": "BYTES", "shape": [-1, 1]},
        {"name": "reason_codes", "datatype": "BYTES", "shape": [-1, 4]},
        {"name": "policy", "datatype": "BYTES", "shape": [-1, 1]},
    ]
    assert metadata["outputs"] == outputs
    batch = httpclient.InferenceServerClient(triton.http_url).get_model_metadata(BATCH_MODEL)
    assert batch["inputs"] == metadata["inputs"]
    assert batch["outputs"] == [o for o in outputs if o["name"] != "reason_codes"]


@pytest.mark.triton
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sequential_single_applicants_are_exact(
    triton, holdout, reference, figures, protocol
) -> None:
    """300 one-applicant requests in a row each score exactly; their latency is a figure."""
    module, client = clients(triton)[protocol]
    for i in range(20):
        infer(module, client, holdout[i : i + 1])
    timings, served = [], []
    for i in range(300):
        start = time.perf_counter()
        served.append(infer(module, client, holdout[i : i + 1]))
        timings.append(time.perf_counter() - start)
    error = float(np.abs(np.concatenate(served) - reference.score(holdout[:300])).max())
    assert error <= TOLERANCE, f"a single-applicant request differs by {error}"
    p50 = statistics.median(timings) * 1e3
    p99 = float(np.percentile(timings, 99)) * 1e3
    figures[f"single-applicant request latency ({protocol}, 300 sequential)"] = (
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"
    )


# --- readiness with a broken model ----------------------------------------------------------


@pytest.mark.triton
def test_a_corrupt_model_keeps_the_server_not_ready_and_never_scores(tmp_path: Path) -> None:
    repository = tmp_path / "model_repository"
    shutil.copytree(MODEL_REPOSITORY, repository)
    onnx_file = repository / "credit_model_reasons" / "1" / "model.onnx"  # credit_scoring's
    onnx_file.write_bytes(onnx_file.read_bytes()[:1000])
    server = TritonServer(repository, log_path=tmp_path / "triton.log").start()
    try:
        server.wait_live(timeout=60)
        time.sleep(1.0)
        assert server.is_live()
        assert not server.is_ready()
        assert f"{MODEL}:1" not in server.ready_models()
        status, payload = post(server, json_request([1, 23], GOOD_ROW))
        assert status >= 400 and "probability" not in payload, (status, payload)
    finally:
        server.stop()
