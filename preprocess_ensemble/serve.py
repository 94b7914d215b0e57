"""Serve a model repository with a local tritonserver (nvidia-pytriton wheel, CPU, no Docker).

Usage::

    python -m preprocess_ensemble.serve [--model-repository model_repository]
        [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002] [--host 127.0.0.1]
        [--tritonserver PATH] [--log-file .cache/tritonserver.log] [--ready-timeout 120]

The first start builds Triton's native onnxruntime backend into ``.cache/triton_backends/``
(about 40 s, :mod:`preprocess_ensemble.onnxruntime_backend`); later starts reuse it.
Prints the endpoints and the ready models once ``/v2/health/ready`` is 200, then waits.
Ctrl-C / SIGTERM stop tritonserver (SIGTERM forwarded, SIGKILL after a timeout), exit code 0.
Exit code 2: port taken, binary or repository missing, backend not buildable; 1: not ready in
time or server died.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from preprocess_ensemble.triton_server import (
    PortInUseError,
    TritonServer,
    TritonServerError,
    default_backend_dir,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = PROJECT_ROOT / ".cache"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m preprocess_ensemble.serve", description=__doc__
    )
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--http-port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--grpc-port", type=int, default=8001, help="0 picks a free port")
    parser.add_argument("--metrics-port", type=int, default=8002, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 for all)")
    parser.add_argument("--tritonserver", help="tritonserver binary (default: auto-detect)")
    parser.add_argument("--log-file", type=Path, default=CACHE_DIR / "tritonserver.log")
    parser.add_argument("--ready-timeout", type=float, default=120.0, help="seconds")
    return parser.parse_args(argv)


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into the same clean shutdown path as Ctrl-C."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until interrupted; return the process exit code."""
    args = parse_args(argv)
    if not args.model_repository.is_dir():
        print(f"error: model repository not found: {args.model_repository}", file=sys.stderr)
        return 2
    try:
        server = TritonServer(
            args.model_repository,
            backend_dir=default_backend_dir(),  # the native onnxruntime backend, built once
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            tritonserver=args.tritonserver,
            log_path=args.log_file,
            host=args.host,
        )
        server.start()
    except (PortInUseError, TritonServerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    started = time.monotonic()
    try:
        server.wait_ready(args.ready_timeout)
        print(f"tritonserver ready in {time.monotonic() - started:.1f}s ({server.binary})")
        print(f"  HTTP:    http://{server.http_url}")
        print(f"  gRPC:    {server.grpc_url}")
        print(f"  Metrics: {server.metrics_url}")
        print(f"  Log:     {server.log_path}")
        print(f"  Models ready: {', '.join(server.ready_models()) or '(none)'}")
        print("Press Ctrl-C to stop.", flush=True)
        code = server.process.wait() if server.process else -1
        print(
            f"error: tritonserver exited with code {code}; log {server.log_path}", file=sys.stderr
        )
        return 1
    except TritonServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping tritonserver ...", file=sys.stderr, flush=True)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan it
        code = server.stop()
        if code:  # e.g. clients kept connections open past --exit-timeout-secs
            print(f"tritonserver exited with code {code}; see {server.log_path}", file=sys.stderr)
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
