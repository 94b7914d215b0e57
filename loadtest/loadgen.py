"""Closed-loop load generator used by the serving benchmark: one engine, one concurrency, one run.

Runs as its own process (``python -m loadtest.loadgen ...``) so gevent, gRPC threads and the
in-process session never share an interpreter with the orchestrator. ``concurrency`` requests
are kept in flight; each completion sends the next request (rows cycle through the given
``.npy`` file in order). Requests that complete during the warmup are not counted. Prints one
JSON object: requests, rows, errors, seconds, latency percentiles (ms).

Engines (the same rows, each request pre-encoded once):

* ``http``: KServe v2 binary tensors over HTTP/1.1 keep-alive (geventhttpclient, one connection
  per in-flight request), to any Triton model with input ``features``.
* ``grpc``: KServe v2 gRPC ``ModelInfer`` with raw tensor contents (grpcio futures).
* ``fastapi``: JSON ``{"rows": ...}`` to the FastAPI + ONNX Runtime baseline.
* ``inproc``: contract check + standardize + ONNX Runtime in this process (threads).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from loadtest.protocol import (
    HEADER_LENGTH,
    check_probabilities,
    http_binary_body,
    parse_http_binary,
)

ENGINES = ("http", "grpc", "fastapi", "inproc")


class Recorder:
    """Latencies of requests that completed inside the measured window."""

    def __init__(self, warmup: float, duration: float) -> None:
        now = time.perf_counter()
        self.start = now + warmup
        self.stop = self.start + duration
        self.latencies: list[float] = []
        self.errors = 0
        self.first_error = ""
        self.lock = threading.Lock()

    def running(self) -> bool:
        """True until the measured window is over."""
        return time.perf_counter() < self.stop

    def record(self, sent: float, error: str | None = None) -> None:
        """Count one completed request sent at ``sent``."""
        done = time.perf_counter()
        if done < self.start or done > self.stop:
            return
        with self.lock:
            if error is None:
                self.latencies.append(done - sent)
            else:
                self.errors += 1
                self.first_error = self.first_error or error

    def summary(self, rows_per_request: int) -> dict[str, float | int | str]:
        """Counts, throughput and latency percentiles (ms)."""
        seconds = self.stop - self.start
        lat = np.asarray(self.latencies) * 1e3
        pct = (lambda q: float(np.percentile(lat, q))) if lat.size else (lambda q: float("nan"))
        return {
            "requests": int(lat.size),
            "rows": int(lat.size) * rows_per_request,
            "errors": self.errors,
            "first_error": self.first_error,
            "seconds": seconds,
            "requests_per_s": lat.size / seconds,
            "rows_per_s": lat.size * rows_per_request / seconds,
            "p50_ms": pct(50),
            "p90_ms": pct(90),
            "p99_ms": pct(99),
            "mean_ms": float(lat.mean()) if lat.size else float("nan"),
        }


def _batches(rows: np.ndarray, batch: int, limit: int = 64) -> list[np.ndarray]:
    """Up to ``limit`` consecutive requests of ``batch`` rows each (wrapping around)."""
    count = max(1, min(limit, len(rows) // batch))
    index = np.arange(count * batch) % len(rows)
    return [rows[index[i * batch : (i + 1) * batch]] for i in range(count)]


def run_http(args: argparse.Namespace, batches: list[np.ndarray], rec: Recorder) -> None:
    """Greenlets with one keep-alive connection each, KServe v2 binary tensors."""
    import gevent
    from geventhttpclient import HTTPClient

    bodies = [http_binary_body(b) for b in batches]
    host, port = args.url.rsplit(":", 1)
    path = f"/v2/models/{args.model}/infer"

    def worker(k: int) -> None:
        client = HTTPClient(
            host, int(port), concurrency=1, connection_timeout=10, network_timeout=60
        )
        i = k
        while rec.running():
            body, header_length = bodies[i % len(bodies)]
            headers = {
                HEADER_LENGTH: str(header_length),
                "Content-Type": "application/octet-stream",
            }
            sent = time.perf_counter()
            try:
                response = client.post(path, body=body, headers=headers)
                payload = response.read()
                if response.status_code != 200:
                    raise RuntimeError(f"HTTP {response.status_code}: {payload[:200]!r}")
                length = response.get(HEADER_LENGTH)
                parse_http_binary(payload, int(length) if length else None, len(batches[0]))
                rec.record(sent)
            except Exception as exc:  # noqa: BLE001 - every failure is counted, none stops the run
                rec.record(sent, f"{type(exc).__name__}: {exc}")
            i += args.concurrency
        client.close()

    gevent.joinall([gevent.spawn(worker, k) for k in range(args.concurrency)])


def run_fastapi(args: argparse.Namespace, batches: list[np.ndarray], rec: Recorder) -> None:
    """Greenlets with one keep-alive connection each, JSON rows in and out."""
    import gevent
    from geventhttpclient import HTTPClient

    bodies = [json.dumps({"rows": b.tolist()}).encode() for b in batches]
    # --model decide: credit_scoring's work (POST /decide); else the network only (/predict)
    route, key = (
        ("/decide", "probability") if args.model == "decide" else ("/predict", "probabilities")
    )
    host, port = args.url.rsplit(":", 1)

    def worker(k: int) -> None:
        client = HTTPClient(
            host, int(port), concurrency=1, connection_timeout=10, network_timeout=60
        )
        i = k
        while rec.running():
            sent = time.perf_counter()
            try:
                response = client.post(
                    route,
                    body=bodies[i % len(bodies)],
                    headers={"Content-Type": "application/json"},
                )
                payload = response.read()
                if response.status_code != 200:
                    raise RuntimeError(f"HTTP {response.status_code}: {payload[:200]!r}")
                values = np.asarray(json.loads(payload)[key], dtype=np.float32)
                check_probabilities(values, len(batches[0]))
                rec.record(sent)
            except Exception as exc:  # noqa: BLE001
                rec.record(sent, f"{type(exc).__name__}: {exc}")
            i += args.concurrency
        client.close()

    gevent.joinall([gevent.spawn(worker, k) for k in range(args.concurrency)])


def run_grpc(args: argparse.Namespace, batches: list[np.ndarray], rec: Recorder) -> None:
    """``concurrency`` chains of ModelInfer futures; each completion sends the next request."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    requests = []
    for b in batches:
        request = service_pb2.ModelInferRequest(model_name=args.model)
        tensor = request.inputs.add(name="features", datatype="FP32", shape=list(b.shape))
        del tensor  # the data travels in raw_input_contents
        request.outputs.add(name="probability")
        request.raw_input_contents.append(b.tobytes())
        requests.append(request)
    channel = grpc.insecure_channel(
        args.url,
        options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
    )
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    n_rows = len(batches[0])
    finished = threading.Semaphore(0)

    def send(i: int) -> None:
        if not rec.running():
            finished.release()
            return
        sent = time.perf_counter()
        future = stub.ModelInfer.future(requests[i % len(requests)], timeout=60)
        future.add_done_callback(lambda f: done(f, i, sent))

    def done(future: grpc.Future, i: int, sent: float) -> None:
        try:
            response = future.result()
            values = np.frombuffer(response.raw_output_contents[0], dtype=np.float32)
            check_probabilities(values, n_rows)
            rec.record(sent)
        except Exception as exc:  # noqa: BLE001
            rec.record(sent, f"{type(exc).__name__}: {exc}")
        send(i + args.concurrency)

    for k in range(args.concurrency):
        send(k)
    for _ in range(args.concurrency):
        finished.acquire()
    channel.close()


def run_inproc(args: argparse.Namespace, batches: list[np.ndarray], rec: Recorder) -> None:
    """Threads scoring in this process with the served files.

    ``--model credit_scoring`` or ``credit_pd`` runs that ensemble's steps
    (InProcessScorer.decide); anything else the contract check and the network alone (the floor).
    """
    from preprocess_ensemble.scoring import InProcessScorer

    scorer = InProcessScorer.published()
    network = scorer.model

    def worker(k: int) -> None:
        i = k
        while rec.running():
            rows = batches[i % len(batches)]
            sent = time.perf_counter()
            try:
                if args.model in ("credit_scoring", "credit_pd"):  # the ensemble's whole work
                    out = scorer.decide(rows, reasons=args.model == "credit_scoring")
                    out = out["probability"]
                else:  # the network alone
                    out = network.run(None, {"features": scorer.check(rows)})[0]
                check_probabilities(out, len(rows))
                rec.record(sent)
            except Exception as exc:  # noqa: BLE001
                rec.record(sent, f"{type(exc).__name__}: {exc}")
            i += args.concurrency

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


RUNNERS: dict[str, Callable[[argparse.Namespace, list[np.ndarray], Recorder], None]] = {
    "http": run_http,
    "grpc": run_grpc,
    "fastapi": run_fastapi,
    "inproc": run_inproc,
}


def main(argv: list[str] | None = None) -> int:
    """Run one measurement and print its summary as JSON."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.loadgen", description=__doc__)
    parser.add_argument("engine", choices=ENGINES)
    parser.add_argument("--url", default="127.0.0.1:8000", help="host:port of the server")
    parser.add_argument("--model", default="credit_scoring", help="Triton model name")
    parser.add_argument("--rows", type=Path, required=True, help=".npy file of raw rows [n, 23]")
    parser.add_argument("--batch", type=int, default=1, help="rows per request")
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight")
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds not counted")
    args = parser.parse_args(argv)
    rows = np.load(args.rows).astype(np.float32)
    batches = _batches(rows, args.batch)
    rec = Recorder(args.warmup, args.duration)
    RUNNERS[args.engine](args, batches, rec)
    json.dump(rec.summary(args.batch), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
