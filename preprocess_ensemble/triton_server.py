"""Run a real Triton server locally from the nvidia-pytriton wheel (no Docker, CPU only).

The wheel ``nvidia-pytriton==0.7.0`` ships Triton 2.51 (``pytriton/tritonserver/bin``), its
shared libraries (``nvidia_pytriton.libs``, must be on ``LD_LIBRARY_PATH``), the python backend
and one python backend stub per Python minor version. It has no onnxruntime backend, so
:func:`build_backend_dir` adds Triton's own C++ onnxruntime backend, built once from the r24.10
sources NGC 24.10 ships and cached (:mod:`preprocess_ensemble.onnxruntime_backend`): the same
model repository and backend code run here and on ``nvcr.io/nvidia/tritonserver:24.10-py3``.

How the python backend stub finds Python packages (checked on this machine, Triton 2.51):

* The python backend starts ``<backend-dir>/python/triton_python_backend_stub`` as a child of
  tritonserver with tritonserver's environment (``EXECUTION_ENV_PATH`` is the only per-model
  override: it sources ``<env>/bin/activate`` of a conda-pack archive).
* The stub embeds CPython through pybind11 with ``PyConfig_InitIsolatedConfig`` (visible in
  ``strings triton_python_backend_stub``), so ``PYTHONPATH``, ``PYTHONHOME``, ``VIRTUAL_ENV``
  and user site-packages are all ignored.
* Its program name is the default ``python3``; CPython's getpath therefore looks up ``python3``
  on ``PATH`` and derives ``sys.prefix`` from it. If the first ``python3`` on ``PATH`` is
  ``.venv/bin/python3``, ``pyvenv.cfg`` is found and ``sys.path`` = base stdlib +
  ``.venv/lib/python3.11/site-packages``; otherwise (e.g. PATH without the venv) it is
  ``/usr/lib/python3.11`` + ``/usr/lib/python3/dist-packages`` and ``import numpy`` fails
  inside ``triton_python_backend_utils``.
* The stub links ``libpython3.11.so.1.0`` with an RPATH to the wheel libs only, so it resolves
  to the first match on ``LD_LIBRARY_PATH`` or else the system one (here Debian's
  ``/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0``, Python 3.11.2), which then runs the
  venv's 3.11.7 stdlib: it works, but mixes patch releases.

:func:`stub_environment` makes this deterministic: it puts the running interpreter's
``<sys.prefix>/bin`` (the venv's ``bin``, which holds ``python3``) first on ``PATH`` and the
base interpreter's ``LIBDIR`` (holding its own shared ``libpython3.X.so.1.0``) after the wheel
libs on ``LD_LIBRARY_PATH``. The stub then reports ``sys.version`` 3.11.7, ``sys.prefix`` =
``.venv`` and imports numpy / onnxruntime from ``.venv`` (see ``tests/test_triton_runner.py``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from preprocess_ensemble.onnxruntime_backend import (
    BACKENDS_DIR,
    BackendBuildError,
    ensure_backend,
)

INSTALL_HINT = "install nvidia-pytriton==0.7.0 or pass --tritonserver PATH"
_PY_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"


class TritonServerError(RuntimeError):
    """Tritonserver could not be found, started or made ready."""


class PortInUseError(TritonServerError):
    """A port requested for tritonserver is already taken."""


def _pytriton_root() -> Path | None:
    """Return ``site-packages/pytriton/tritonserver`` of the installed wheel, if any."""
    spec = importlib.util.find_spec("pytriton")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    return root if root.is_dir() else None


def _wheel_libs() -> Path | None:
    """Return the wheel's ``nvidia_pytriton.libs`` directory, if installed."""
    root = _pytriton_root()
    libs = root.parent.parent / "nvidia_pytriton.libs" if root else None
    return libs if libs and libs.is_dir() else None


def find_tritonserver(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Locate the tritonserver binary.

    Order: ``explicit``, env ``TRITONSERVER_BIN``, the nvidia-pytriton wheel, ``tritonserver``
    on PATH, ``/opt/tritonserver/bin/tritonserver``.

    Args:
        explicit: A path given by the caller; when set, nothing else is tried.

    Returns:
        Absolute path of an executable tritonserver.

    Raises:
        TritonServerError: Nothing usable was found; the message lists what was tried.
    """
    if explicit is not None:
        candidates = [("explicit path", Path(explicit))]
    else:
        candidates = []
        if os.environ.get("TRITONSERVER_BIN"):
            candidates.append(("$TRITONSERVER_BIN", Path(os.environ["TRITONSERVER_BIN"])))
        root = _pytriton_root()
        if root is not None:
            candidates.append(("nvidia-pytriton wheel", root / "bin" / "tritonserver"))
        on_path = shutil.which("tritonserver")
        candidates.append(("PATH", Path(on_path) if on_path else Path("tritonserver")))
        candidates.append(("default", Path("/opt/tritonserver/bin/tritonserver")))
    for _, path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path.resolve()
    tried = "; ".join(f"{label}: {path}" for label, path in candidates)
    raise TritonServerError(f"tritonserver binary not found (tried {tried}); {INSTALL_HINT}")


def _copy_if_changed(src: Path, folder: Path) -> None:
    """Copy ``src`` into ``folder`` unless an equal file (size, mtime) is already there."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / src.name
    stat = src.stat()
    if target.exists():
        current = target.stat()
        if (current.st_size, current.st_mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            return
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copy2(src, tmp)
    os.replace(tmp, target)  # atomic, so concurrent builders never see partial files


def build_backend_dir(dest: str | os.PathLike[str]) -> Path:
    """Assemble a Triton backend directory with ``python/`` and ``onnxruntime/`` (idempotent).

    ``python/`` gets libtriton_python.so, triton_python_backend_utils.py and the stub for the
    running Python's major.minor from the wheel; ``onnxruntime/`` is Triton's native backend
    (``libtriton_onnxruntime.so`` + the onnxruntime wheel's ``libonnxruntime.so.1``) from
    :func:`~preprocess_ensemble.onnxruntime_backend.ensure_backend`, which builds it on first
    use (about 40 s) and afterwards only checks its cache key.

    Args:
        dest: Directory to fill (created if needed). For :func:`default_backend_dir`,
            ``onnxruntime/`` is the build cache itself; elsewhere it is a copy of it.

    Returns:
        ``dest`` as an absolute path, to pass as ``--backend-directory``.

    Raises:
        TritonServerError: The wheel's files are missing or the backend cannot be built (one
            line saying what to install, and the build log).
    """
    root = _pytriton_root()
    if root is None:
        raise TritonServerError(f"python backend files not found; {INSTALL_HINT}")
    stub = root / "python_backend_stubs" / _PY_VERSION / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonServerError(f"the wheel has no python backend stub for Python {_PY_VERSION}")
    dest = Path(dest).resolve()
    python = root / "backends" / "python"
    for src in (python / "libtriton_python.so", python / "triton_python_backend_utils.py", stub):
        _copy_if_changed(src, dest / "python")
    (dest / "python" / stub.name).chmod(0o755)
    try:
        native = ensure_backend().directory
    except BackendBuildError as exc:
        raise TritonServerError(str(exc)) from exc
    target = dest / "onnxruntime"
    if target.resolve() != native:
        for src in native.iterdir():
            _copy_if_changed(src, target)
        for stale in set(target.iterdir()) - {target / src.name for src in native.iterdir()}:
            if stale.is_dir():  # e.g. left by an older layout of this directory
                shutil.rmtree(stale)
            else:
                stale.unlink()
    return dest


def stub_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Return an environment in which tritonserver's python stubs use this interpreter's venv.

    See the module docstring for why PATH and LD_LIBRARY_PATH (not PYTHONPATH) are the levers.

    Args:
        base: Environment to extend; defaults to ``os.environ``.
    """
    env = dict(os.environ if base is None else base)
    venv_bin = Path(sys.prefix) / "bin"
    if not (venv_bin / "python3").exists():  # e.g. a python without a python3 alias
        raise TritonServerError(f"{venv_bin}/python3 not found; the python stub needs it")
    env["PATH"] = os.pathsep.join([str(venv_bin), env.get("PATH", os.defpath)])
    lib_dirs = [str(p) for p in [_wheel_libs()] if p]
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    shared = sysconfig.get_config_var("Py_ENABLE_SHARED")
    if shared and libdir and soname and (Path(libdir) / soname).exists():
        lib_dirs.append(libdir)  # same libpython as the venv's base interpreter
    if env.get("LD_LIBRARY_PATH"):
        lib_dirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_dirs)
    env["VIRTUAL_ENV"] = sys.prefix
    return env


def default_backend_dir() -> Path:
    """Return ``.cache/triton_backends/py3.X``, whose ``onnxruntime/`` is the native build cache."""
    return BACKENDS_DIR / f"py{_PY_VERSION}"


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Return True if ``host:port`` cannot be bound (someone is listening on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT leftovers
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def check_ports_free(ports: dict[str, int], host: str = "127.0.0.1") -> None:
    """Raise :class:`PortInUseError` naming the CLI flag if any port is taken.

    Args:
        ports: Maps a kind (``http``, ``grpc``, ``metrics``) to a port.
        host: Address tritonserver will bind.
    """
    if len(set(ports.values())) != len(ports):
        raise PortInUseError(f"ports must differ, got {ports}")
    for kind, port in ports.items():
        if port_in_use(port, host):
            raise PortInUseError(
                f"port {port} is already in use; pass --{kind}-port with a free port "
                f"(or stop the process holding it)"
            )


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET ``url``; return (status, body), with status 0 if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


class TritonServer:
    """A tritonserver child process, usable as a context manager.

    Example:
        >>> with TritonServer("model_repository") as server:  # doctest: +SKIP
        ...     print(server.http_url, server.ready_models())
    """

    def __init__(
        self,
        model_repository: str | os.PathLike[str],
        *,
        backend_dir: str | os.PathLike[str] | None = None,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        tritonserver: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        extra_args: Sequence[str] = (),
    ) -> None:
        """Configure the server; ports left as None are picked free; nothing starts yet."""
        self.model_repository = Path(model_repository).resolve()
        self.binary = find_tritonserver(tritonserver)
        self.backend_dir = Path(backend_dir) if backend_dir else default_backend_dir()
        # None: a fresh temp dir is made at start(), so failed starts leave nothing behind.
        self.log_path: Path | None = Path(log_path) if log_path else None
        self.host = host
        self.http_port = http_port or free_port(host)
        self.grpc_port = grpc_port or free_port(host)
        self.metrics_port = metrics_port or free_port(host)
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        """``host:port`` of the HTTP/REST endpoint (tritonclient.http style)."""
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC endpoint."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """Full URL of the Prometheus metrics endpoint."""
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        """Return the tritonserver command line."""
        return [
            str(self.binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={self.backend_dir}",
            f"--cache-directory={self.binary.parent.parent / 'caches'}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--model-control-mode=none",
            "--strict-readiness=true",
            "--exit-on-error=false",
            "--disable-auto-complete-config",
            "--allow-gpu-metrics=false",
            "--pinned-memory-pool-byte-size=0",
            "--exit-timeout-secs=10",
            *self.extra_args,
        ]

    def start(self) -> TritonServer:
        """Build the backend directory, check ports and launch tritonserver (non-blocking)."""
        if self.process is not None:
            raise TritonServerError("server already started")
        if not self.model_repository.is_dir():
            raise TritonServerError(f"model repository not found: {self.model_repository}")
        check_ports_free(
            {"http": self.http_port, "grpc": self.grpc_port, "metrics": self.metrics_port},
            self.host,
        )
        build_backend_dir(self.backend_dir)
        if self.log_path is None:
            self.log_path = Path(tempfile.mkdtemp(prefix="tritonserver-")) / "tritonserver.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=stub_environment(),
                start_new_session=True,  # own process group: stubs die with it on SIGKILL
            )
        return self

    def log_tail(self, lines: int = 40) -> str:
        """Return the last ``lines`` lines of the server log."""
        if self.log_path is None:
            return ""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _health(self, what: str) -> int:
        return _get(f"http://{self.http_url}/v2/health/{what}")[0]

    def is_live(self) -> bool:
        """Return True if ``/v2/health/live`` answers 200."""
        return self._health("live") == 200

    def is_ready(self) -> bool:
        """Return True if ``/v2/health/ready`` answers 200 (all models loaded)."""
        return self._health("ready") == 200

    def _wait(self, check: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None:
                raise TritonServerError("server not started")
            code = self.process.poll()
            if code is not None:
                raise TritonServerError(
                    f"tritonserver exited with code {code} before it was {check}; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if self._health(check) == 200:
                return
            # Ask "ready" again after seeing "live": the first answer may predate the endpoint.
            if check == "ready" and self._loading_is_over() and self._health("ready") != 200:
                raise TritonServerError(
                    "tritonserver is live but will not become ready, model loading failed:\n"
                    + "\n".join(self._load_errors())
                )
            if time.monotonic() > deadline:
                raise TritonServerError(
                    f"tritonserver not {check} after {timeout:.0f}s "
                    f"(live={self._health('live')}, ready={self._health('ready')}); "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _loading_is_over(self) -> bool:
        """True once live under --model-control-mode=none: Triton loads every model first."""
        return "--model-control-mode=none" in self.command() and self._health("live") == 200

    def _load_errors(self) -> list[str]:
        """UNAVAILABLE models with their reasons, else the log's model-loading error lines."""
        try:
            models = self.models()
        except (OSError, ValueError):
            models = []
        errors = [
            f"  {m['name']}:{m.get('version', '')}: {m.get('reason', '')}"
            for m in models
            if m.get("state") == "UNAVAILABLE"
        ]
        if not errors:  # e.g. an ensemble whose version folder is missing is not in the index
            log = self.log_path.read_text(errors="replace") if self.log_path else ""
            lines = log.splitlines()
            errors = [f"  {line}" for line in lines if line.startswith("E") and "load" in line]
        return errors or [f"  see {self.log_path}"]

    def wait_live(self, timeout: float = 60.0) -> None:
        """Block until ``/v2/health/live`` is 200 (models may still be loading or broken)."""
        self._wait("live", timeout)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until ``/v2/health/ready`` is 200.

        Raises:
            TritonServerError: The process exited, a model failed to load (raised as soon as
                the server is live, with each model's reason) or ``timeout`` passed.
        """
        self._wait("ready", timeout)

    def models(self) -> list[dict[str, str]]:
        """Return the repository index (name, version, state, reason) via the HTTP API."""
        request = urllib.request.Request(
            f"http://{self.http_url}/v2/repository/index", data=b"{}", method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return list(json.loads(response.read()))

    def ready_models(self) -> list[str]:
        """Return ``name:version`` of every READY model."""
        return [
            f"{m['name']}:{m.get('version', '')}"
            for m in self.models()
            if m.get("state") == "READY"
        ]

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM tritonserver, SIGKILL its process group after ``timeout``; return exit code."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        return process.returncode

    def __enter__(self) -> Self:
        """Start and wait until ready; stop on failure."""
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()
