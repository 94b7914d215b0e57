"""`make serve`'s CLI: starts, prints the endpoints, stops on SIGINT/SIGTERM, clear errors."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from export.config import MODEL_REPOSITORY, ROOT
from preprocess_ensemble.triton_server import free_port


def serve(*args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "preprocess_ensemble.serve", *args]
    return subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_for_line(process: subprocess.Popen[str], text: str, timeout: float = 90) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        if text in line:
            return lines
    process.kill()
    pytest.fail(f"{text!r} not printed; output:\n{''.join(lines)}")


@pytest.mark.triton
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_serve_prints_endpoints_serves_and_stops_cleanly(stop_signal: signal.Signals) -> None:
    ports = [free_port() for _ in range(3)]
    process = serve(
        "--model-repository",
        str(MODEL_REPOSITORY),
        "--http-port",
        str(ports[0]),
        "--grpc-port",
        str(ports[1]),
        "--metrics-port",
        str(ports[2]),
        "--log-file",
        str(ROOT / ".cache" / f"test-serve-{ports[0]}.log"),
    )
    output = "".join(wait_for_line(process, "Press Ctrl-C"))
    assert f"http://127.0.0.1:{ports[0]}" in output
    assert "credit_scoring:1" in output
    with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/v2/health/ready") as response:
        assert response.status == 200
    process.send_signal(stop_signal)
    assert process.wait(timeout=60) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", ports[0]), timeout=1).close()


def test_serve_refuses_a_taken_port_with_exit_code_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = serve("--http-port", str(port), "--grpc-port", "0", "--metrics-port", "0")
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 2, output
    assert f"port {port} is already in use" in output


def test_serve_reports_a_missing_binary_with_exit_code_2() -> None:
    process = serve("--tritonserver", "/nonexistent/tritonserver", "--http-port", "0")
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2, output
    assert "/nonexistent/tritonserver" in output
