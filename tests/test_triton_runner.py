"""Tests of the local Triton runner against the real tritonserver from the nvidia-pytriton wheel.

Each server runs on free ports with a tiny model repository built in a temp dir: a toy ONNX
scorer (``input`` FP32 [-1, 23] -> ``probability`` = sigmoid(x @ w + b)) served by Triton's
native ``onnxruntime`` backend (built once, cached), and a python model reporting the stub's
interpreter.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto, helper, numpy_helper
from tritonclient.utils import InferenceServerException

from preprocess_ensemble.triton_server import (
    PortInUseError,
    TritonServer,
    TritonServerError,
    find_tritonserver,
    free_port,
)

pytestmark = pytest.mark.triton
N_FEATURES = 23

TOY_CONFIG = """
name: "{name}"
backend: "onnxruntime"
max_batch_size: 1024
input [{{ name: "{input}" data_type: TYPE_FP32 dims: [ {n} ] }}]
output [{{ name: "probability" data_type: TYPE_FP32 dims: [ 1 ] }}]
instance_group [{{ kind: KIND_CPU count: 1 }}]
dynamic_batching {{ max_queue_delay_microseconds: 20000 }}
parameters {{ key: "intra_op_thread_count" value: {{ string_value: "1" }} }}
parameters {{ key: "inter_op_thread_count" value: {{ string_value: "1" }} }}
"""

PROBE_CONFIG = """
name: "env_probe"
backend: "python"
max_batch_size: 0
input [{ name: "dummy" data_type: TYPE_INT32 dims: [ 1 ] }]
output [{ name: "info" data_type: TYPE_STRING dims: [ 1 ] }]
"""

PROBE_MODEL = """
import json
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        import numpy
        import onnxruntime

        maps = {line.split()[-1] for line in open("/proc/self/maps") if "libpython" in line}
        info = {
            "version": sys.version,
            "prefix": sys.prefix,
            "path": sys.path,
            "libpython": sorted(maps),
            "numpy": numpy.__file__,
            "onnxruntime": onnxruntime.__file__,
        }
        out = np.array([json.dumps(info).encode()], dtype=object)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("info", out)]) for _ in requests]
"""


def _toy_onnx(path: Path) -> None:
    """Write sigmoid(input @ w + b) with fixed random weights."""
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.normal(size=(N_FEATURES, 1)).astype(np.float32), "w")
    bias = numpy_helper.from_array(np.array([-0.3], dtype=np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "w"], ["logit0"]),
            helper.make_node("Add", ["logit0", "b"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], ["probability"]),
        ],
        "toy_scorer",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, N_FEATURES])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, [None, 1])],
        initializer=[weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, path)


def _add_model(repo: Path, name: str, config: str, files: dict[str, str | bytes]) -> Path:
    """Create ``repo/name`` with config.pbtxt and version-1 files; return the version dir."""
    version = repo / name / "1"
    version.mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(config)
    for filename, content in files.items():
        target = version / filename
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    return version


def _start(repo: Path, log_name: str) -> TritonServer:
    """Start a server on free ports (not waiting for readiness)."""
    try:
        find_tritonserver()
    except TritonServerError as exc:
        pytest.skip(str(exc))
    server = TritonServer(repo, log_path=repo.parent / log_name)
    server.start()
    return server


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the toy ONNX model."""
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    _toy_onnx(path)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, toy_model: Path) -> Iterator[TritonServer]:
    """A ready server with the toy scorer and the environment probe."""
    repo = tmp_path_factory.mktemp("good") / "model_repository"
    config = TOY_CONFIG.format(name="toy", input="input", n=N_FEATURES)
    _add_model(repo, "toy", config, {"model.onnx": toy_model.read_bytes()})
    _add_model(repo, "env_probe", PROBE_CONFIG, {"model.py": PROBE_MODEL})
    started = time.monotonic()
    srv = _start(repo, "good.log")
    try:
        srv.wait_ready(timeout=120)
        print(f"\ntritonserver ready in {time.monotonic() - started:.2f}s")
        yield srv
    finally:
        code = srv.stop()
        assert code == 0, srv.log_tail()


@pytest.fixture(scope="module")
def broken_server(
    tmp_path_factory: pytest.TempPathFactory, toy_model: Path
) -> Iterator[TritonServer]:
    """A live server whose models fail to load: corrupt model.onnx, wrong input name."""
    repo = tmp_path_factory.mktemp("broken") / "model_repository"
    config = TOY_CONFIG.format(name="corrupt", input="input", n=N_FEATURES)
    _add_model(repo, "corrupt", config, {"model.onnx": b"\x08\x07this is not an onnx model"})
    config = TOY_CONFIG.format(name="bad_io", input="features", n=N_FEATURES)
    _add_model(repo, "bad_io", config, {"model.onnx": toy_model.read_bytes()})
    srv = _start(repo, "broken.log")
    try:
        srv.wait_live(timeout=120)
        yield srv
    finally:
        srv.stop()


def _reference(model: Path, rows: np.ndarray) -> np.ndarray:
    """Score ``rows`` in-process with onnxruntime."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(["probability"], {"input": rows})[0]


def _http_score(client: httpclient.InferenceServerClient, rows: np.ndarray) -> np.ndarray:
    inp = httpclient.InferInput("input", list(rows.shape), "FP32")
    inp.set_data_from_numpy(rows)
    return client.infer("toy", [inp]).as_numpy("probability")


def test_server_ready_and_endpoints(server: TritonServer) -> None:
    assert server.is_live() and server.is_ready()
    assert set(server.ready_models()) == {"toy:1", "env_probe:1"}
    with httpclient.InferenceServerClient(server.http_url) as client:
        assert client.is_server_ready()
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        assert client.is_model_ready("toy")


def test_stub_uses_this_virtualenv(server: TritonServer) -> None:
    dummy = httpclient.InferInput("dummy", [1], "INT32")
    dummy.set_data_from_numpy(np.zeros(1, dtype=np.int32))
    with httpclient.InferenceServerClient(server.http_url) as client:
        info = json.loads(client.infer("env_probe", [dummy]).as_numpy("info")[0])
    assert info["version"] == sys.version
    assert info["prefix"] == sys.prefix
    assert Path(info["numpy"]).is_relative_to(sys.prefix)
    assert Path(info["onnxruntime"]).is_relative_to(sys.prefix)
    assert all(Path(lib).is_relative_to(sys.base_prefix) for lib in info["libpython"])


def test_http_and_grpc_match_onnxruntime(server: TritonServer, toy_model: Path) -> None:
    rows = np.random.default_rng(1).normal(size=(257, N_FEATURES)).astype(np.float32)
    expected = _reference(toy_model, rows)
    with httpclient.InferenceServerClient(server.http_url) as client:
        got = _http_score(client, rows)
    assert got.shape == (257, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)

    inp = grpcclient.InferInput("input", list(rows.shape), "FP32")
    inp.set_data_from_numpy(rows)
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        got = client.infer("toy", [inp])
    np.testing.assert_allclose(got.as_numpy("probability"), expected, rtol=0, atol=1e-6)


def _stats(server: TritonServer) -> tuple[int, int]:
    with httpclient.InferenceServerClient(server.http_url) as client:
        stats = client.get_inference_statistics("toy")
    entry = stats["model_stats"][0]
    return int(entry["inference_count"]), int(entry["execution_count"])


def test_concurrent_requests_are_batched_per_row_exact(
    server: TritonServer, toy_model: Path
) -> None:
    rng = np.random.default_rng(2)
    batches = [
        rng.normal(size=(int(rng.integers(1, 6)), N_FEATURES)).astype(np.float32) for _ in range(48)
    ]
    inferences_before, executions_before = _stats(server)
    with httpclient.InferenceServerClient(server.http_url, concurrency=len(batches)) as client:
        pending = []
        for rows in batches:
            inp = httpclient.InferInput("input", list(rows.shape), "FP32")
            inp.set_data_from_numpy(rows)
            pending.append(client.async_infer("toy", [inp]))
        results = [request.get_result().as_numpy("probability") for request in pending]
    for rows, got in zip(batches, results, strict=True):
        np.testing.assert_allclose(got, _reference(toy_model, rows), rtol=0, atol=1e-6)
    inferences, executions = _stats(server)
    assert inferences - inferences_before == sum(len(rows) for rows in batches)
    assert executions - executions_before < len(batches)  # several requests per session run


def test_wrong_shape_is_a_client_error(server: TritonServer) -> None:
    inp = httpclient.InferInput("input", [2, N_FEATURES - 1], "FP32")
    inp.set_data_from_numpy(np.zeros((2, N_FEATURES - 1), dtype=np.float32))
    with (
        httpclient.InferenceServerClient(server.http_url) as client,
        pytest.raises(InferenceServerException, match="shape"),
    ):
        client.infer("toy", [inp])


def test_broken_models_keep_server_live_but_not_ready(broken_server: TritonServer) -> None:
    assert broken_server.is_live()
    assert not broken_server.is_ready()
    assert broken_server.ready_models() == []
    states = {m["name"]: m for m in broken_server.models()}
    assert states["corrupt"]["state"] == "UNAVAILABLE"
    # The words of the native backend and its ONNX Runtime.
    assert "corrupt/1/model.onnx failed:Protobuf parsing failed" in states["corrupt"]["reason"]
    assert "unexpected inference input 'features'" in states["bad_io"]["reason"]
    inp = httpclient.InferInput("input", [1, N_FEATURES], "FP32")
    inp.set_data_from_numpy(np.zeros((1, N_FEATURES), dtype=np.float32))
    with (
        httpclient.InferenceServerClient(broken_server.http_url) as client,
        pytest.raises(InferenceServerException, match="corrupt"),
    ):
        client.infer("corrupt", [inp])


def test_wait_ready_fails_fast_with_reasons(broken_server: TritonServer) -> None:
    started = time.monotonic()
    expected = r"model loading failed:\n(.|\n)*corrupt:1: .*Protobuf parsing failed"
    with pytest.raises(TritonServerError, match=expected):
        broken_server.wait_ready(timeout=60)
    assert time.monotonic() - started < 5


def test_taken_port_gives_clear_error(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = TritonServer(tmp_path / "repo", http_port=port, grpc_port=free_port())
        with pytest.raises(PortInUseError, match=rf"port {port} is already in use; pass --http"):
            server.start()
    assert server.process is None


def test_find_tritonserver_nonexistent_path() -> None:
    with pytest.raises(TritonServerError, match="/nonexistent.*nvidia-pytriton==0.7.0"):
        find_tritonserver("/nonexistent")
