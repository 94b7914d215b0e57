"""Triton's native onnxruntime backend: built from the r24.10 sources once, reused from .cache,
served by the local Triton with the pinned onnxruntime wheel's library.

The first test builds it if the cache is cold (about 40 s; CI points TRITON_SOURCE_DIR at the
shared checkouts). Failures of the build are one line each, which the last tests check.
"""

from __future__ import annotations

import filecmp
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from preprocess_ensemble.onnxruntime_backend import (
    LIBRARY,
    ORT_LIBRARY,
    TOOLS_VENV,
    BackendBuildError,
    backend_cache_dir,
    ensure_backend,
    fetch_sources,
    onnxruntime_library,
)
from preprocess_ensemble.triton_server import TritonServer, TritonServerError, build_backend_dir

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "preprocess_ensemble.onnxruntime_backend", "build"]


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in directory.iterdir()}


def test_build_once_then_reuse_the_cache() -> None:
    first = ensure_backend()
    assert first.directory == backend_cache_dir()
    before = _snapshot(first.directory)
    second = ensure_backend()
    assert not second.built, "the second call rebuilt although no input changed"
    assert (second.key, second.directory) == (first.key, first.directory)
    assert _snapshot(second.directory) == before, "cached files were rewritten"
    info = json.loads((first.directory / "build.json").read_text())
    assert info["key"] == first.key
    # The backend runs the same ONNX Runtime as the gate: the pinned wheel's library, unchanged.
    wheel_library, version = onnxruntime_library()
    assert version == importlib.metadata.version("onnxruntime") == first.onnxruntime_version
    assert info["onnxruntime"]["library_version"] == version
    assert filecmp.cmp(first.directory / ORT_LIBRARY, wheel_library, shallow=False)


def test_cli_reports_the_cache() -> None:
    ensure_backend()
    done = subprocess.run(CLI, cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"cached: {backend_cache_dir() / LIBRARY}"), done.stdout


def test_a_backend_dir_elsewhere_mirrors_the_cache(tmp_path: Path) -> None:
    stale = tmp_path / "backends" / "onnxruntime" / "model.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("# left by an older layout\n")
    dest = build_backend_dir(tmp_path / "backends")
    cached = sorted(p.name for p in backend_cache_dir().iterdir())
    assert sorted(p.name for p in (dest / "onnxruntime").iterdir()) == cached
    assert (dest / "python" / "triton_python_backend_stub").is_file()


@pytest.mark.triton
def test_credit_model_served_natively_matches_in_process_onnxruntime(
    triton: TritonServer, holdout: np.ndarray, reference
) -> None:
    rows = np.ascontiguousarray(holdout, dtype=np.float32)  # raw: the encoder is in the graph
    expected = reference.score(rows)
    got = []
    with httpclient.InferenceServerClient(triton.http_url) as client:
        for start in range(0, len(rows), 1024):  # max_batch_size
            batch = rows[start : start + 1024]
            inp = httpclient.InferInput("features", list(batch.shape), "FP32")
            inp.set_data_from_numpy(batch)
            got.append(client.infer("credit_model", [inp]).as_numpy("probability"))
    np.testing.assert_allclose(
        np.concatenate(got),
        expected,
        rtol=0,
        atol=1e-6,
        err_msg="credit_model on the native backend vs in-process onnxruntime (atol 1e-6)",
    )
    native = triton.backend_dir.resolve() / "onnxruntime"
    log = triton.log_path.read_text()
    assert f"| onnxruntime | {native / LIBRARY} |" in log, "backend table names another library"
    assert "onnxruntime.cc" in log and "TRITONBACKEND_ModelInstanceInitialize: credit_model" in log
    assert not (native / "model.py").exists()
    maps = Path(f"/proc/{triton.process.pid}/maps").read_text()
    assert str(native / ORT_LIBRARY) in maps, "tritonserver did not map the shipped ONNX Runtime"


def _empty_source_dir(tmp_path: Path) -> Path:
    empty = tmp_path / "empty"
    empty.mkdir()
    return empty


def test_empty_triton_source_dir_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = _empty_source_dir(tmp_path)
    monkeypatch.setenv("TRITON_SOURCE_DIR", str(empty))
    with pytest.raises(BackendBuildError) as caught:
        ensure_backend(tmp_path / "cache")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"TRITON_SOURCE_DIR={empty} lacks onnxruntime_backend/CMakeLists.txt")
    assert "unset it to let CMake fetch them" in message
    assert not (tmp_path / "cache").exists()
    # The runner reports the same line as its own error (make serve prints it, exit 2).
    with pytest.raises(TritonServerError, match=f"^TRITON_SOURCE_DIR={empty} lacks"):
        build_backend_dir(tmp_path / "backends")


def test_cli_error_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    env = dict(os.environ, TRITON_SOURCE_DIR=str(_empty_source_dir(tmp_path)))
    command = [*CLI, "--cache-dir", str(tmp_path / "cache")]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("error: TRITON_SOURCE_DIR="), done.stderr


def test_missing_compiler_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no compiler on it (nor anything else)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(BackendBuildError) as caught:
        ensure_backend(tmp_path / "cache", force=True)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("no C or C++ compiler found")
    assert "apt-get install g++" in message


def _cmake() -> str:
    found = shutil.which("cmake") or shutil.which("cmake", path=str(TOOLS_VENV / "bin"))
    if not found or not shutil.which("git"):
        pytest.skip("needs git and cmake (the backend build gets cmake from PyPI when missing)")
    return found


def _git(*args: str, cwd: Path) -> str:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    done = subprocess.run(["git", *identity, *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_cmake_fetches_the_pinned_commits_when_no_source_dir_is_set(tmp_path: Path) -> None:
    """The GitHub path, against local repositories: pinned commits that are not branch tips."""
    cmake = _cmake()
    commits = {}
    for repo in ("onnxruntime_backend", "backend"):
        remote = tmp_path / "remotes" / f"{repo}.git"
        remote.mkdir(parents=True)
        _git("init", "-q", cwd=remote)
        (remote / "CMakeLists.txt").write_text(f"# {repo} pinned\n")
        _git("add", "CMakeLists.txt", cwd=remote)
        _git("commit", "-qm", "pinned", cwd=remote)
        commits[repo] = _git("rev-parse", "HEAD", cwd=remote)
        (remote / "CMakeLists.txt").write_text(f"# {repo} later\n")
        _git("commit", "-qam", "later", cwd=remote)
    organization = f"file://{tmp_path / 'remotes'}"
    log = tmp_path / "fetch.log"
    dest = fetch_sources(
        tmp_path / "src", organization=organization, commits=commits, cmake=cmake, log=log
    )
    for repo, commit in commits.items():
        assert (dest / repo / "CMakeLists.txt").read_text() == f"# {repo} pinned\n"
        assert _git("rev-parse", "HEAD", cwd=dest / repo) == commit
    assert json.loads((dest / ".commits.json").read_text()) == commits

    with pytest.raises(BackendBuildError) as caught:
        fetch_sources(
            tmp_path / "nowhere", organization="file:///nonexistent", cmake=cmake, log=log
        )
    assert "\n" not in str(caught.value) and f"log {log}" in str(caught.value)
    assert not (tmp_path / "nowhere").exists()
