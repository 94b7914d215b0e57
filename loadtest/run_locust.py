"""Run the Locust load test headless, bounded in users and time (``make loadtest``).

With ``--host`` it points at any Triton (``http://host:8000``; gRPC users go to
``--grpc-host``, default the same host on port 8001). Without it a local Triton serving
``model_repository/`` is started on free loopback ports and stopped afterwards. Locust runs as
its own process (it monkey-patches ssl and the socket module on import), with a hard timeout.

Output under ``--out`` (default ``reports/locust``): ``locust_stats.csv``,
``locust_stats_history.csv``, ``locust_failures.csv``, ``locust_exceptions.csv`` and
``locust.html``. The exit code is Locust's (1 when any request failed) or 2 for bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from export.config import MODEL_REPOSITORY, ROOT
from preprocess_ensemble.triton_server import TritonServer, TritonServerError

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
USER_CLASSES = {"http": ["HttpScoringUser"], "grpc": ["GrpcScoringUser"]}
USER_CLASSES["both"] = USER_CLASSES["http"] + USER_CLASSES["grpc"]
MAX_USERS = 1000
MAX_SECONDS = 3600


def parse_run_time(text: str) -> int:
    """Seconds of a Locust run time such as ``30s``, ``2m``, ``1h30m`` or ``45``."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    parts = re.fullmatch(r"(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?", text)
    if not parts or not any(parts.groups()):
        raise ValueError(f"run time {text!r} is not like 30s, 2m or 1h30m")
    hours, minutes, seconds = (int(v or 0) for v in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


def read_stats(path: Path) -> list[dict[str, str]]:
    """Rows of Locust's ``*_stats.csv``; raises ValueError if the file is not well formed."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    needed = {"Type", "Name", "Request Count", "Failure Count", "50%", "99%", "Requests/s"}
    if not rows or not needed <= set(rows[0]):
        raise ValueError(f"{path} lacks the columns {sorted(needed)}")
    if rows[-1]["Name"] != "Aggregated":
        raise ValueError(f"{path} has no Aggregated row")
    return rows


@contextlib.contextmanager
def target(host: str, grpc_host: str, out: Path) -> Iterator[tuple[str, str]]:
    """Yield (HTTP URL, gRPC host:port): the given ones, or a local Triton's."""
    if host:
        parsed = urlparse(host if "://" in host else f"http://{host}")
        yield parsed.geturl(), grpc_host or f"{parsed.hostname}:8001"
        return
    print("no --host given: starting a local Triton on free loopback ports", file=sys.stderr)
    with TritonServer(MODEL_REPOSITORY, log_path=out / "tritonserver.log") as server:
        yield f"http://{server.http_url}", server.grpc_url


def main(argv: list[str] | None = None) -> int:
    """Run Locust headless and summarise its CSV."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.run_locust", description=__doc__)
    parser.add_argument("--host", default="", help="Triton HTTP URL; empty: start a local one")
    parser.add_argument("--grpc-host", default="", help="Triton gRPC host:port (host:8001)")
    parser.add_argument("--users", type=int, default=8, help="peak users (%(default)s)")
    parser.add_argument("--spawn-rate", type=float, default=4, help="users started per second")
    parser.add_argument("--run-time", default="30s", help="run time, e.g. 30s or 2m")
    parser.add_argument("--protocol", choices=sorted(USER_CLASSES), default="both")
    parser.add_argument("--model", default="credit_scoring")
    parser.add_argument("--batch-rows", type=int, default=256, help="rows per batch request")
    parser.add_argument("--rows-file", default="", help=".npy or CSV of raw rows (holdout)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "locust")
    args = parser.parse_args(argv)
    try:
        seconds = parse_run_time(args.run_time)
    except ValueError as error:
        parser.error(str(error))
    if not 1 <= args.users <= MAX_USERS or not 1 <= seconds <= MAX_SECONDS:
        parser.error(f"--users must be 1..{MAX_USERS} and --run-time 1 s..{MAX_SECONDS} s")
    if importlib.util.find_spec("locust") is None:
        print(
            "error: locust is not installed; run `make loadtest` (installs .[loadtest])",
            file=sys.stderr,
        )
        return 2

    args.out.mkdir(parents=True, exist_ok=True)
    prefix = args.out / "locust"
    try:
        with target(args.host, args.grpc_host, args.out) as (host, grpc_host):
            command = [
                sys.executable,
                "-m",
                "locust",
                f"--locustfile={LOCUSTFILE}",
                "--headless",
                f"--host={host}",
                f"--grpc-host={grpc_host}",
                f"--users={args.users}",
                f"--spawn-rate={args.spawn_rate}",
                f"--run-time={seconds}s",
                "--stop-timeout=10",
                f"--csv={prefix}",
                "--csv-full-history",
                f"--html={prefix}.html",
                f"--model={args.model}",
                f"--batch-rows={args.batch_rows}",
                "--only-summary",
                "--loglevel=WARNING",
            ]
            if args.rows_file:
                command.append(f"--rows-file={args.rows_file}")
            command += USER_CLASSES[args.protocol]
            print(
                f"locust: {args.users} users, {seconds} s, {args.protocol} -> {host} / {grpc_host}"
            )
            try:
                done = subprocess.run(command, cwd=ROOT, timeout=seconds + 120)
            except subprocess.TimeoutExpired:
                print("error: locust did not stop within run time + 120 s", file=sys.stderr)
                return 1
    except TritonServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rows = read_stats(Path(f"{prefix}_stats.csv"))
    total = rows[-1]
    print(
        f"{total['Request Count']} requests, {total['Failure Count']} failures, "
        f"{float(total['Requests/s']):.0f} req/s, p50 {total['50%']} ms, p99 {total['99%']} ms; "
        f"reports in {args.out}"
    )
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
