"""Raw HTTP/gRPC clients, outcomes and process figures shared by the reliability tests.

The clients send exactly the bytes (HTTP) or protobuf fields (gRPC) a test built, so hostile
requests that tritonclient refuses to build (wrong sizes, truncated tensors, bogus parameters)
reach the server as written.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from preprocess_ensemble.triton_server import TritonServer

MODEL = "credit_scoring"
INFER_PATH = f"/v2/models/{MODEL}/infer"
TOLERANCE = 1e-6
GRPC_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
# gRPC codes that are the client's fault (the 4xx of gRPC).
GRPC_CLIENT_ERRORS = {"INVALID_ARGUMENT", "NOT_FOUND", "OUT_OF_RANGE", "FAILED_PRECONDITION"}


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request, sent as is."""

    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    path: str = INFER_PATH


@dataclass(frozen=True)
class SocketRequest:
    """Raw bytes written to a fresh TCP connection (hostile framing); ``hang_up`` closes early."""

    data: bytes
    hang_up: bool = False


@dataclass
class Outcome:
    """What came back: a status (HTTP code, gRPC code name or ``"transport"``) and its payload."""

    protocol: str
    status: int | str
    message: str = ""
    probabilities: np.ndarray | None = None
    seconds: float = 0.0

    @property
    def scored(self) -> bool:
        """True when the server returned probabilities."""
        return self.probabilities is not None

    @property
    def client_error(self) -> bool:
        """True for an HTTP 4xx or a gRPC client-error code."""
        if isinstance(self.status, int):
            return 400 <= self.status < 500
        return self.status in GRPC_CLIENT_ERRORS

    @property
    def server_error(self) -> bool:
        """True for an HTTP 5xx or a gRPC server-side error code."""
        if isinstance(self.status, int):
            return self.status >= 500
        return self.status not in GRPC_CLIENT_ERRORS | {"OK", "transport", "closed"}


def _decode_http(status: int, headers: http.client.HTTPMessage, payload: bytes) -> Outcome:
    """Parse a KServe v2 HTTP response (JSON or binary outputs) into an Outcome."""
    header_length = headers.get("Inference-Header-Content-Length")
    text = payload[: int(header_length)] if header_length else payload
    try:
        document = json.loads(text)
    except ValueError:
        return Outcome("http", status, payload[:300].decode(errors="replace"))
    if status != 200 or not isinstance(document, dict):
        return Outcome("http", status, str(document.get("error", document))[:500])
    # Binary outputs follow the JSON header in the header's order; find probability's slice.
    start = int(header_length or 0)
    for output in document["outputs"]:
        size = int(output.get("parameters", {}).get("binary_data_size", 0))
        if output["name"] == "probability":
            break
        start += size
    else:
        return Outcome("http", status, "the response holds no probability output")
    if "data" in output:
        values = np.asarray(output["data"], dtype=np.float32)
    else:
        values = np.frombuffer(payload[start : start + size], dtype=np.float32)
    return Outcome("http", status, probabilities=values)


class HttpClient:
    """A keep-alive HTTP connection per thread; reconnects after any transport error."""

    def __init__(self, host: str, port: int, timeout: float = 60.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.connection = connection
        return connection

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
        self._local.connection = None

    def send(self, request: HttpRequest) -> Outcome:
        """POST ``request``; a transport failure is an Outcome with status ``"transport"``."""
        headers = {"Content-Type": "application/json", **request.headers}
        start = time.perf_counter()
        try:
            connection = self._connection()
            connection.request("POST", request.path, body=request.body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            if response.getheader("Connection", "").lower() == "close":
                self._drop()
        except (OSError, http.client.HTTPException) as error:
            self._drop()
            return Outcome("http", "transport", repr(error), seconds=time.perf_counter() - start)
        outcome = _decode_http(response.status, response.headers, payload)
        outcome.seconds = time.perf_counter() - start
        return outcome

    def send_socket(self, request: SocketRequest) -> Outcome:
        """Write raw bytes on a fresh connection and read whatever comes back."""
        with socket.create_connection((self.host, self.port), timeout=5) as sock:
            try:
                sock.sendall(request.data)
                if request.hang_up:
                    return Outcome("http", "closed", "client hung up mid-body")
                reply = sock.recv(4096)
            except OSError as error:
                return Outcome("http", "closed", repr(error))
        if not reply:
            return Outcome("http", "closed", "server closed the connection without a response")
        head, _, body = reply.partition(b"\r\n\r\n")
        try:
            status = int(head.split(b" ", 2)[1])
        except (IndexError, ValueError):
            return Outcome("http", "closed", reply[:200].decode(errors="replace"))
        return Outcome("http", status, body[:500].decode(errors="replace"))


class GrpcClient:
    """The generated gRPC stub, without tritonclient's request building or checks."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.channel = grpc.insecure_channel(url, options=GRPC_OPTIONS)
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        self.timeout = timeout

    def send(self, request: service_pb2.ModelInferRequest) -> Outcome:
        """Call ModelInfer; errors become an Outcome carrying the gRPC code name."""
        start = time.perf_counter()
        try:
            response = self.stub.ModelInfer(request, timeout=self.timeout)
        except grpc.RpcError as error:
            code = error.code().name if error.code() else "transport"
            if code == "UNAVAILABLE":  # nothing listening / connection dropped
                code = "transport"
            return Outcome("grpc", code, error.details() or "", seconds=time.perf_counter() - start)
        index = [o.name for o in response.outputs].index("probability")
        values = np.frombuffer(response.raw_output_contents[index], dtype=np.float32)
        return Outcome("grpc", "OK", probabilities=values, seconds=time.perf_counter() - start)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()


def binary_request(rows: np.ndarray, parameters: dict | None = None) -> HttpRequest:
    """A well-formed tritonclient-style binary HTTP request for ``rows`` [n, 23]."""
    raw = np.ascontiguousarray(rows, dtype=np.float32).tobytes()
    tensor = {
        "name": "features",
        "shape": list(rows.shape),
        "datatype": "FP32",
        "parameters": {"binary_data_size": len(raw)},
    }
    header = json.dumps({"inputs": [tensor], **({"parameters": parameters} if parameters else {})})
    head = header.encode()
    return HttpRequest(head + raw, {"Inference-Header-Content-Length": str(len(head))})


def grpc_request(rows: np.ndarray) -> service_pb2.ModelInferRequest:
    """A well-formed gRPC request for ``rows`` [n, 23] with raw input contents."""
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "features", "FP32"
    tensor.shape.extend(rows.shape)
    request.raw_input_contents.append(np.ascontiguousarray(rows, dtype=np.float32).tobytes())
    return request


def wrong_scores(outcome: Outcome, expected: np.ndarray) -> int:
    """Number of probabilities that differ from ``expected`` by more than 1e-6 (or all)."""
    if outcome.probabilities is None:
        return 0
    got, want = outcome.probabilities.ravel(), np.asarray(expected, dtype=np.float32).ravel()
    if got.shape != want.shape:
        return max(len(got), len(want))
    return int((np.abs(got - want) > TOLERANCE).sum())


def percentile_ms(seconds: Iterable[float], q: float) -> float:
    """The q-th percentile of durations, in milliseconds (NaN when empty)."""
    values = list(seconds)
    return float(np.percentile(values, q) * 1e3) if values else float("nan")


def children(pid: int) -> dict[int, list[str]]:
    """Live (non-zombie) child processes of ``pid`` with their command lines (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        argv = [part.decode(errors="replace") for part in cmdline if part]
        if int(parent) == pid and state != "Z" and argv:
            found[int(entry.name)] = argv
    return found


def stub_pid(server: TritonServer, model: str) -> int | None:
    """PID of the python backend stub serving ``model`` under ``server``, if running."""
    assert server.process is not None
    for pid, argv in children(server.process.pid).items():
        if "triton_python_backend_stub" in argv[0] and len(argv) > 1 and f"/{model}/" in argv[1]:
            return pid
    return None


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` in MiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def server_rss_mib(server: TritonServer) -> tuple[float, float]:
    """(tritonserver RSS, tritonserver + python stubs RSS) in MiB."""
    assert server.process is not None
    own = rss_mib(server.process.pid)
    return own, own + sum(rss_mib(pid) for pid in children(server.process.pid))


class Load:
    """Steady closed-loop traffic from ``workers`` threads until stopped; keeps every outcome.

    ``make_request(i)`` returns (send, expected probabilities) for request number ``i``.
    """

    def __init__(
        self,
        workers: int,
        make_request: Callable[[int], tuple[Callable[[], Outcome], np.ndarray]],
    ) -> None:
        self.make_request = make_request
        self.records: list[tuple[float, Outcome, int]] = []  # (start, outcome, wrong scores)
        self._stop = threading.Event()
        self._counter = iter(range(10**12))
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                i = next(self._counter)
            send, expected = self.make_request(i)
            start = time.monotonic()
            outcome = send()
            wrong = wrong_scores(outcome, expected)
            with self._lock:
                self.records.append((start, outcome, wrong))
            if outcome.status == "transport":
                time.sleep(0.01)  # a dead endpoint refuses at once: do not spin

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop and wait for the in-flight requests to finish."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> list[tuple[float, Outcome, int]]:
        """A copy of the records so far."""
        with self._lock:
            return list(self.records)


def steady_requests(
    holdout: np.ndarray, score: Callable[[np.ndarray], np.ndarray], server: TritonServer
) -> Callable[[int], tuple[Callable[[], Outcome], np.ndarray]]:
    """A request factory for Load: 1-8 holdout rows, HTTP binary and gRPC alternating."""
    http = HttpClient(server.host, server.http_port, timeout=30)
    grpc = GrpcClient(server.grpc_url, timeout=30)
    batches = [holdout[i : i + 1 + i % 8] for i in range(0, 512, 8)]
    expected = [score(b) for b in batches]

    def make(i: int) -> tuple[Callable[[], Outcome], np.ndarray]:
        rows = batches[i % len(batches)]
        if i % 2:
            return (lambda: grpc.send(grpc_request(rows))), expected[i % len(batches)]
        return (lambda: http.send(binary_request(rows))), expected[i % len(batches)]

    return make


def markdown_table(
    rows: list[tuple[str, str]], header: tuple[str, str] = ("figure", "value")
) -> str:
    """A two-column Markdown table."""
    lines = [f"| {header[0]} | {header[1]} |", "| --- | --- |"]
    return "\n".join(lines + [f"| {a} | {b} |" for a, b in rows])
