"""perf_analyzer against the ensemble and the single model: a concurrency sweep over HTTP and gRPC.

Finding the binary (:func:`find_command`), in order: ``$PERF_ANALYZER``; the ``perf-analyzer``
wheel if it is the real one (2.58+, ``perf_analyzer/bin/perf_analyzer``); the project cache
made by ``fetch``. The PyPI wheels need glibc >= 2.38. On older systems (Debian 12 has 2.36)
``pip install perf-analyzer`` silently installs an empty 0.1.0 placeholder, which is detected
here and reported.

``python -m loadtest.perf_analyzer install`` does what this system allows:

* glibc >= 2.38: ``pip install "perf-analyzer>=2.58,<2.61"`` into the running environment;
* otherwise (the helper, also ``... fetch``): download the 2.60.0 wheel for manylinux_2_38
  (``pip download --platform``), fetch Debian 13's ``libc6``, ``libstdc++6`` and ``libgcc-s1``
  with ``apt-get download`` under a private apt configuration in ``.cache/perf_analyzer/apt``
  (its own sources list, lists, cache and empty status; the system's apt state and
  configuration are never read or written), extract them with ``dpkg-deb -x`` into
  ``.cache/perf_analyzer/root`` and run the binary through that root's
  ``ld-linux-x86-64.so.2 --library-path ...`` (system libraries such as libssl still come from
  the normal search path). Nothing is installed system-wide.

``python -m loadtest.perf_analyzer run`` sweeps concurrency (default 1, 8, 32) for
``credit_scoring`` (raw holdout rows) and ``credit_model`` (the same rows standardized), over
HTTP and gRPC, against ``--url`` or a local Triton it starts; it writes perf_analyzer's CSV per
run and ``summary.csv`` under ``reports/perf_analyzer``. When no binary can be had it prints
why and exits 0 (skipped), unless ``--require``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from export.config import MODEL_REPOSITORY, ROOT
from loadtest.rows import holdout_rows
from preprocess_ensemble.triton_server import TritonServer

CACHE = ROOT / ".cache" / "perf_analyzer"
WHEEL_VERSION = "2.60.0"
WHEEL_PLATFORM = "manylinux_2_38_x86_64"
MIN_GLIBC = (2, 38)
DEBIAN_SUITE = "trixie"  # Debian 13: glibc 2.41
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
DEBIAN_PACKAGES = ("libc6", "libstdc++6", "libgcc-s1")
LIBDIR = "usr/lib/x86_64-linux-gnu"
MODELS = {"credit_scoring": "features", "credit_model": "features"}


class Unavailable(RuntimeError):
    """perf_analyzer cannot be run here; the message says why and what to do."""


def glibc_version() -> tuple[int, int]:
    """The running glibc's (major, minor), or (0, 0) when not glibc."""
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        return (0, 0)
    parts = text.split()[-1].split(".") if text.startswith("glibc") else []
    return (int(parts[0]), int(parts[1])) if len(parts) >= 2 else (0, 0)


def wheel_binary() -> Path | None:
    """The installed wheel's binary, or None (not installed, or the empty 0.1.0 placeholder)."""
    spec = importlib.util.find_spec("perf_analyzer")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "perf_analyzer"
    return binary if binary.is_file() else None


def cached_command(cache: Path | None = None) -> list[str] | None:
    """The fetched binary run through Debian 13's dynamic loader, if ``fetch`` ran."""
    cache = cache or CACHE
    binary = cache / "bin" / "perf_analyzer"
    libdir = cache / "root" / LIBDIR
    loader = libdir / "ld-linux-x86-64.so.2"
    if binary.is_file() and loader.is_file():
        return [str(loader), "--library-path", str(libdir), str(binary)]
    return None


def find_command() -> list[str]:
    """The command prefix that runs perf_analyzer here; raises :class:`Unavailable`."""
    explicit = os.environ.get("PERF_ANALYZER")
    if explicit:
        return [explicit]
    binary = wheel_binary()
    if binary is not None and glibc_version() >= MIN_GLIBC:
        return [str(binary)]
    cached = cached_command()
    if cached:
        return cached
    major, minor = glibc_version()
    installed = importlib.util.find_spec("perf_analyzer") is not None
    placeholder = (
        " (the installed perf-analyzer is the empty 0.1.0 placeholder)" if installed else ""
    )
    if (major, minor) >= MIN_GLIBC:
        hint = 'pip install "perf-analyzer>=2.58,<2.61"'
    else:
        hint = (
            "python -m loadtest.perf_analyzer fetch (Debian 13 libraries in .cache/perf_analyzer)"
        )
    raise Unavailable(
        f"perf_analyzer not found{placeholder}; glibc {major}.{minor} here, the wheels need "
        f"{MIN_GLIBC[0]}.{MIN_GLIBC[1]}; run: {hint}"
    )


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:  # noqa: ANN003
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise Unavailable(
            f"{' '.join(command[:4])} ... failed: {(done.stderr or done.stdout)[-800:]}"
        )
    return done


def apt_options(apt: Path) -> list[str]:
    """apt-get options that use only the private configuration under ``apt``."""
    return [
        f"-o=Dir::Etc::SourceList={apt / 'sources.list'}",
        f"-o=Dir::Etc::SourceParts={apt / 'sources.list.d'}",
        f"-o=Dir::Etc::Parts={apt / 'apt.conf.d'}",
        f"-o=Dir::Etc::Preferences={apt / 'preferences'}",
        f"-o=Dir::Etc::PreferencesParts={apt / 'preferences.d'}",
        f"-o=Dir::State={apt / 'state'}",
        f"-o=Dir::State::status={apt / 'status'}",
        f"-o=Dir::Cache={apt / 'cache'}",
        "-o=Debug::NoLocking=1",
        "-o=APT::Architecture=amd64",
        "-o=APT::Sandbox::User=root",
        "-o=Acquire::Languages=none",
    ]


def fetch(cache: Path | None = None) -> list[str]:
    """Fetch the wheel's binary and Debian 13's C/C++ runtime into ``cache``; return the command.

    Uses pip (``pip download``, no install) and ``apt-get download`` + ``dpkg-deb -x`` under a
    private apt configuration. Raises :class:`Unavailable` when a tool or download is missing.
    """
    cache = cache or CACHE
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} not found: the helper needs a Debian-based system")
    if not DEBIAN_KEYRING.is_file():
        raise Unavailable(f"{DEBIAN_KEYRING} not found (package debian-archive-keyring)")
    wheels = cache / "wheel"
    wheels.mkdir(parents=True, exist_ok=True)
    steps = tqdm(total=4, desc="perf_analyzer runtime", unit="step")
    _run(
        [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            f"--platform={WHEEL_PLATFORM}", "--python-version=3.11", f"--dest={wheels}",
            f"perf-analyzer=={WHEEL_VERSION}",
        ]
    )  # fmt: skip
    (wheel,) = wheels.glob(f"perf_analyzer-{WHEEL_VERSION}-*.whl")
    binary = cache / "bin" / "perf_analyzer"
    binary.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        binary.write_bytes(archive.read("perf_analyzer/bin/perf_analyzer"))
    binary.chmod(0o755)
    steps.update()

    apt = cache / "apt"
    for folder in ("sources.list.d", "apt.conf.d", "preferences.d", "state/lists/partial"):
        (apt / folder).mkdir(parents=True, exist_ok=True)
    (apt / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "status").touch()
    (apt / "sources.list").write_text(
        f"deb [signed-by={DEBIAN_KEYRING}] {DEBIAN_MIRROR} {DEBIAN_SUITE} main\n"
    )
    options = apt_options(apt)
    _run(["apt-get", *options, "update"])
    steps.update()
    debs = cache / "debs"
    shutil.rmtree(debs, ignore_errors=True)
    debs.mkdir(parents=True)
    _run(["apt-get", *options, "download", *DEBIAN_PACKAGES], cwd=debs)
    steps.update()
    root = cache / "root"
    shutil.rmtree(root, ignore_errors=True)
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(root)])
    steps.update()
    steps.close()
    command = cached_command(cache)
    if command is None:
        raise Unavailable(f"the Debian packages did not provide {LIBDIR}/ld-linux-x86-64.so.2")
    _run([*command, "--version"])
    return command


def install() -> list[str]:
    """Make perf_analyzer runnable here (pip on glibc >= 2.38, else the fetch helper)."""
    with contextlib.suppress(Unavailable):
        return find_command()
    if glibc_version() >= MIN_GLIBC:
        _run([sys.executable, "-m", "pip", "install", "perf-analyzer>=2.58,<2.61"])
        return find_command()
    print(f"glibc {'.'.join(map(str, glibc_version()))} < 2.38: fetching Debian 13's runtime")
    return fetch()


def write_input_data(path: Path, model: str, rows: np.ndarray) -> Path:
    """perf_analyzer ``--input-data`` JSON: one single-row request per holdout row."""
    name = MODELS[model]  # raw contract rows for every model: the encoder is in the graphs
    data = [{name: {"content": [float(v) for v in row], "shape": [len(row)]}} for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": data}))
    return path


def read_perf_csv(path: Path) -> dict[str, str]:
    """The single result row of perf_analyzer's ``-f`` CSV; ValueError if malformed."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    needed = {"Concurrency", "Inferences/Second", "p50 latency", "p99 latency", "Server Queue"}
    if len(rows) != 1 or not needed <= set(rows[0]):
        raise ValueError(f"{path}: expected one row with {sorted(needed)}, got {rows}")
    return rows[0]


@contextlib.contextmanager
def _server(url: str, grpc_url: str, out: Path) -> Iterator[tuple[str, str]]:
    if url:
        yield url, grpc_url or f"{url.rsplit(':', 1)[0]}:8001"
        return
    with TritonServer(MODEL_REPOSITORY, log_path=out / "tritonserver.log") as server:
        yield server.http_url, server.grpc_url


def sweep(
    command: list[str],
    http_url: str,
    grpc_url: str,
    out: Path,
    models: list[str],
    protocols: list[str],
    concurrency: list[int],
    interval_ms: int,
    stability: int = 100,
) -> list[dict[str, str]]:
    """Run perf_analyzer once per (model, protocol, concurrency); return the summary rows."""
    rows = holdout_rows()
    summary = []
    runs = [(m, p, c) for m in models for p in protocols for c in concurrency]
    for model, protocol, level in tqdm(runs, desc="perf_analyzer", unit="run"):
        data = write_input_data(out / f"input_{model}.json", model, rows)
        csv_path = out / f"{model}_{protocol}_c{level}.csv"
        url = http_url if protocol == "http" else grpc_url
        done = subprocess.run(
            [
                *command, "-m", model, "-u", url, "-i", protocol, "-b", "1",
                f"--input-data={data}", f"--concurrency-range={level}:{level}",
                f"--measurement-interval={interval_ms}", "--max-trials=10",
                f"--stability-percentage={stability}", "-f", str(csv_path),
            ],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        (out / f"{model}_{protocol}_c{level}.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            output = done.stdout[-1500:] + done.stderr[-1500:]
            raise RuntimeError(f"perf_analyzer failed ({model}, {protocol}, c={level}):\n{output}")
        result = read_perf_csv(csv_path)
        summary.append(
            {
                "model": model,
                "protocol": protocol,
                "concurrency": result["Concurrency"],
                "infer_per_s": result["Inferences/Second"],
                "p50_us": result["p50 latency"],
                "p99_us": result["p99 latency"],
                "server_queue_us": result["Server Queue"],
                "server_compute_infer_us": result.get("Server Compute Infer", ""),
            }
        )
    with open(out / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    """CLI: check, install, fetch or run."""
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.perf_analyzer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="say whether and how perf_analyzer runs here")
    commands.add_parser("install", help="pip install the wheel, or fetch (glibc < 2.38)")
    commands.add_parser("fetch", help="the helper: wheel binary + Debian 13 runtime in .cache")
    run = commands.add_parser("run", help="concurrency sweep, HTTP and gRPC, CSV per run")
    run.add_argument("--url", default="", help="Triton HTTP host:port; empty: start a local one")
    run.add_argument("--grpc-url", default="", help="Triton gRPC host:port (host:8001)")
    run.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    run.add_argument("--protocols", nargs="+", default=["http", "grpc"], choices=["http", "grpc"])
    run.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 32])
    run.add_argument("--interval-ms", type=int, default=2000, help="measurement window")
    run.add_argument(
        "--stability", type=int, default=100, help="allowed %% change between windows (noisy hosts)"
    )
    run.add_argument("--install", action="store_true", help="install or fetch when missing")
    run.add_argument("--require", action="store_true", help="exit 1 instead of skipping")
    run.add_argument("--out", type=Path, default=ROOT / "reports" / "perf_analyzer")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            print(" ".join(find_command()))
            return 0
        if args.command in ("install", "fetch"):
            command = install() if args.command == "install" else fetch()
            print("perf_analyzer runs as: " + " ".join(command))
            return 0
        command = install() if args.install else find_command()
    except Unavailable as error:
        if args.command == "run" and not args.require:
            print(f"SKIPPED perf_analyzer: {error}")
            return 0
        print(f"error: {error}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    with _server(args.url, args.grpc_url, args.out) as (http_url, grpc_url):
        summary = sweep(
            command, http_url, grpc_url, args.out, args.models, args.protocols,
            args.concurrency, args.interval_ms, args.stability,
        )  # fmt: skip
    print("model,protocol,concurrency,infer/s,p50 µs,p99 µs,server queue µs")
    for row in summary:
        print(
            f"{row['model']},{row['protocol']},{row['concurrency']},{float(row['infer_per_s']):.0f},"
            f"{row['p50_us']},{row['p99_us']},{row['server_queue_us']}"
        )
    print(f"CSV files in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
