#!/usr/bin/env python3
"""Liveness and readiness probe: one real inference through the credit_scoring ensemble.

Triton 2.51 never restarts a python backend stub that died, and /v2/health/{live,ready} and the
model's own ready endpoint keep answering 200 while every request through that step fails. This
probe sends one fixed, valid applicant to the ensemble over HTTP on localhost and checks that
every output comes back with the declared type and shape and a plausible value. Any error,
timeout or malformed answer exits 1 with one line on stderr (the kubelet keeps it in the pod's
events); success exits 0 and prints nothing.

Standard library only, and Python 3.10 compatible: the NGC image runs it with its own python3
(``python3 -I -S``: no environment variables, no site-packages). The image carries it as
/usr/local/bin/triton-probe (Dockerfile); k8s/base/deployment.yaml runs it for both probes.

    python3 -I -S deploy/probe.py --url http://127.0.0.1:8000 --timeout 2
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import signal
import sys
import urllib.parse

MODEL = "credit_scoring"
# A valid applicant (README's example), in the feature contract's order.
APPLICANT = [
    20000, 2, 2, 1, 24, 2, 2, -1, -1, -2, -2, 3913, 3102, 689, 0, 0, 0, 0, 689, 0, 0, 0, 0,
]  # fmt: skip
# The ensemble's outputs: name -> (KServe datatype, per-row shape). tests/test_deploy.py keeps
# this equal to model_repository/credit_scoring/config.pbtxt.
OUTPUTS: dict[str, tuple[str, list[int]]] = {
    "probability": ("FP32", [1]),
    "pd": ("FP32", [1]),
    "score": ("INT32", [1]),
    "decision": ("BYTES", [1]),
    "reason_codes": ("BYTES", [4]),
    "policy": ("BYTES", [1]),
}
DECISIONS = {"approve", "refer", "decline"}


class ProbeFailed(Exception):
    """The answer is missing, late or not what the ensemble promises."""


def _deadline(_signum: int, _frame: object) -> None:
    raise TimeoutError("no complete answer before the probe's deadline")


def infer(url: str, model: str, timeout: float) -> dict[str, object]:
    """POST the applicant to ``<url>/v2/models/<model>/infer``; return the parsed JSON answer."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ProbeFailed(f"not an http:// URL: {url}")
    tensor = {"name": "features", "shape": [1, 23], "datatype": "FP32", "data": APPLICANT}
    body = json.dumps({"inputs": [tensor]}).encode()
    connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        connection.request(
            "POST",
            f"{parts.path.rstrip('/')}/v2/models/{model}/infer",
            body=body,
            headers={"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    try:
        answer = json.loads(payload)
    except ValueError:
        raise ProbeFailed(f"HTTP {response.status}, not JSON: {payload[:80]!r}") from None
    if not isinstance(answer, dict):
        raise ProbeFailed(f"HTTP {response.status}, not a JSON object")
    if response.status != 200:
        raise ProbeFailed(f"HTTP {response.status}: {answer.get('error', answer)}")
    return answer


def check(answer: dict[str, object]) -> None:
    """Raise :class:`ProbeFailed` unless every output has its datatype, shape and a sane value."""
    outputs = answer.get("outputs")
    if not isinstance(outputs, list):
        raise ProbeFailed("answer has no outputs")
    got = {o.get("name"): o for o in outputs if isinstance(o, dict)}
    missing = sorted(set(OUTPUTS) - set(got))
    if missing:
        raise ProbeFailed(f"outputs missing: {', '.join(missing)}")
    for name, (datatype, dims) in OUTPUTS.items():
        tensor = got[name]
        if tensor.get("datatype") != datatype or tensor.get("shape") != [1, *dims]:
            raise ProbeFailed(
                f"{name}: {tensor.get('datatype')} {tensor.get('shape')}, "
                f"expected {datatype} {[1, *dims]}"
            )
        data = tensor.get("data")
        if not isinstance(data, list) or len(data) != math.prod(dims):
            raise ProbeFailed(f"{name}: data {str(data)[:60]} does not fit shape {[1, *dims]}")
        for value in data:
            if datatype == "BYTES" and not isinstance(value, str):
                raise ProbeFailed(f"{name}: {value!r} is not a string")
            if datatype == "INT32" and (isinstance(value, bool) or not isinstance(value, int)):
                raise ProbeFailed(f"{name}: {value!r} is not an integer")
            if datatype == "FP32" and not (
                isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0
            ):
                raise ProbeFailed(f"{name}: {value!r} is not a probability")
    decision = got["decision"]["data"][0]
    if decision not in DECISIONS:
        raise ProbeFailed(f"decision {decision!r} is not one of {sorted(DECISIONS)}")
    if not got["policy"]["data"][0]:
        raise ProbeFailed("policy is empty")


def main(argv: list[str] | None = None) -> int:
    """Run the probe; 0 when the ensemble answered correctly, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="Triton's HTTP endpoint")
    parser.add_argument("--model", default=MODEL, help="the ensemble to score through")
    parser.add_argument(
        "--timeout",
        type=float,
        default=2.0,
        help="seconds for the whole request; keep it below the probe's timeoutSeconds",
    )
    args = parser.parse_args(argv)
    # One deadline for connect, send and the whole answer (a socket timeout is per operation).
    signal.signal(signal.SIGALRM, _deadline)
    signal.setitimer(signal.ITIMER_REAL, args.timeout)
    try:
        check(infer(args.url, args.model, args.timeout))
    except Exception as error:  # noqa: BLE001 - whatever goes wrong, the probe fails
        signal.setitimer(signal.ITIMER_REAL, 0)
        text = " ".join(f"{type(error).__name__}: {error}".split())
        text = "".join(c if c.isascii() and c.isprintable() else "?" for c in text)
        print(f"probe: {args.model} at {args.url}: {text}"[:400], file=sys.stderr)
        return 1
    signal.setitimer(signal.ITIMER_REAL, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
