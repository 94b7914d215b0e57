"""Payload capture: the published copy, the writer on its own, and inside a real Triton."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from drift.capture import Capture, CaptureSettings, model_id, read_capture
from export.config import MODEL_REPOSITORY, PUBLISHED_CONTRACT
from preprocess_ensemble.client import CreditScoringClient, ScoringError
from preprocess_ensemble.triton_server import TritonServer, TritonServerError

N_FEATURES = 23


def test_capture_is_off_by_default_in_the_committed_config() -> None:
    config = (MODEL_REPOSITORY / "preprocess" / "config.pbtxt").read_text()
    assert re.search(r'key: "capture_dir"\s*value: \{ string_value: "" \}', config)
    assert CaptureSettings.from_params({"capture_dir": "  "}) is None
    assert CaptureSettings.from_params({}) is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"capture_sample_rate": "0"}, "capture_sample_rate"),
        ({"capture_sample_rate": "1.5"}, "capture_sample_rate"),
        ({"capture_max_bytes": "10"}, "capture_max_bytes"),
    ],
)
def test_bad_capture_parameters_fail_the_model_load(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CaptureSettings.from_params({"capture_dir": "/tmp/x", **params})


def rows_like(holdout: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    return holdout[start : start + n].astype(np.float32)


def make_capture(directory: Path, logs: list[str], **kwargs: object) -> Capture:
    settings = CaptureSettings(directory=directory, **kwargs)  # type: ignore[arg-type]
    return Capture(settings, "1", "abc123", log=logs.append)


def test_capture_writes_every_row_with_metadata_and_rotates(
    tmp_path: Path, holdout: np.ndarray
) -> None:
    logs: list[str] = []
    capture = make_capture(tmp_path / "cap", logs, max_bytes=4096)
    batches = [rows_like(holdout, n, s) for n, s in [(1, 0), (100, 1), (7, 101), (300, 108)]]
    for batch in batches:
        capture.record([batch])
    capture.record([], rejected=2)
    capture.close()
    captured = read_capture(tmp_path / "cap", N_FEATURES)
    np.testing.assert_array_equal(captured.features, np.vstack(batches))
    assert set(captured.model_versions) == {"1"} and set(captured.model_ids) == {"abc123"}
    assert len(captured.files) > 5
    assert all(p.stat().st_size <= 4096 for p in captured.files)
    assert captured.torn_lines == 0
    assert capture.counts == {
        "rows_written": 408,
        "rows_failed": 0,
        "rows_dropped": 0,
        "requests_rejected": 2,
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", captured.timestamps[0])


def test_sampling_is_seeded_and_close_to_the_rate(tmp_path: Path, holdout: np.ndarray) -> None:
    kept = []
    for run in range(2):
        capture = make_capture(tmp_path / f"run{run}", [], sample_rate=0.25)
        for start in range(0, 4000, 400):
            capture.record([rows_like(holdout, 400, start)])
        capture.close()
        kept.append(read_capture(tmp_path / f"run{run}", N_FEATURES).features)
    np.testing.assert_array_equal(kept[0], kept[1])  # same seed, same sample
    assert 900 < len(kept[0]) < 1100
    sent = {tuple(r) for r in holdout[:4000].astype(np.float64)}
    assert all(tuple(r) in sent for r in kept[0])


def test_an_unwritable_directory_is_counted_and_logged_never_raised(
    tmp_path: Path, holdout: np.ndarray
) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a regular file where the capture directory's parent should be")
    logs: list[str] = []
    capture = make_capture(blocker / "capture", logs)
    for start in range(0, 50, 10):
        capture.record([rows_like(holdout, 10, start)])  # must not raise
    capture.close()
    assert capture.counts["rows_failed"] == 50 and capture.counts["rows_written"] == 0
    assert any("50 row(s) not written" in line and "NotADirectoryError" in line for line in logs)


def test_a_torn_last_line_is_skipped_and_counted(tmp_path: Path, holdout: np.ndarray) -> None:
    capture = make_capture(tmp_path, [])
    capture.record([rows_like(holdout, 3)])
    capture.close()
    (path,) = read_capture(tmp_path, N_FEATURES).files
    with path.open("a") as handle:
        handle.write('{"ts":"2025-01-01T00:00:00.000Z","model_ver')  # disk filled mid-line
    captured = read_capture(tmp_path, N_FEATURES)
    assert len(captured.labels) == 3 and captured.torn_lines == 1


def test_record_never_waits_for_the_disk(
    tmp_path: Path, holdout: np.ndarray, monkeypatch: pytest.MonkeyPatch, figures: dict[str, str]
) -> None:
    """A stuck writer (a hung disk) costs the request path nothing: rows are dropped, counted."""
    disk, writing = threading.Event(), threading.Event()

    def stuck_write(self: Capture, lines: list[bytes]) -> None:
        writing.set()
        disk.wait()

    monkeypatch.setattr(Capture, "_write_lines", stuck_write)
    capture = make_capture(tmp_path, [], queue_batches=8)
    batch = rows_like(holdout, 64)
    capture.record([batch])
    assert writing.wait(timeout=60)  # the writer now holds this batch and hangs
    caller = threading.Thread(target=lambda: [capture.record([batch]) for _ in range(199)])
    start = time.perf_counter()
    caller.start()
    caller.join(timeout=60)  # a hang guard, not a latency limit
    elapsed = time.perf_counter() - start
    assert not caller.is_alive(), "record() blocked on a stuck writer"
    # The writer holds one batch, the queue eight; everything else was dropped and counted.
    assert capture.counts["rows_dropped"] == (200 - 1 - 8) * 64
    disk.set()
    capture.close()
    figures["capture record() per 64-row batch, writer stuck"] = f"{elapsed / 199 * 1e6:.0f} µs"


# --- inside a real Triton --------------------------------------------------------------------


def repository_with_capture(tmp_path: Path, capture_dir: Path, max_bytes: int) -> Path:
    """A copy of model_repository/ whose preprocess config captures every row to capture_dir."""
    repo = tmp_path / "model_repository"
    shutil.copytree(MODEL_REPOSITORY, repo, ignore=shutil.ignore_patterns("__pycache__"))
    config = repo / "preprocess" / "config.pbtxt"
    text = config.read_text()
    for key, value in {
        "capture_dir": str(capture_dir),
        "capture_sample_rate": "1.0",
        "capture_max_bytes": str(max_bytes),
    }.items():
        text, n = re.subn(
            rf'(key: "{key}"\s*value: \{{ string_value: )"[^"]*"', rf'\1"{value}"', text
        )
        assert n == 1, key
    config.write_text(text)
    return repo


def start_server(repo: Path, log: Path) -> TritonServer:
    try:
        server = TritonServer(repo, log_path=log)
    except TritonServerError as error:
        pytest.skip(f"no tritonserver binary: {error}")
    return server.start()


def capture_metrics(server: TritonServer) -> dict[str, float]:
    with urllib.request.urlopen(server.metrics_url, timeout=5) as response:
        text = response.read().decode()
    pattern = r'credit_capture_events_total\{event="(\w+)"\}\s+([0-9.e+]+)'
    return {name: float(value) for name, value in re.findall(pattern, text)}


def send(server: TritonServer, batches: list[np.ndarray], bad: np.ndarray) -> list[np.ndarray]:
    """Score the batches one request each, with a rejected request after every other one."""
    scores = []
    with CreditScoringClient(server.http_url) as client:
        for i, batch in enumerate(batches):
            scores.append(client.score(batch))
            if i % 2 == 0:
                with pytest.raises(ScoringError, match="SEX"):
                    client.score(bad, check=False)
        time.sleep(1.2)  # counters reach Prometheus at most once a second, on the next batch
        scores.append(client.score(batches[0]))
    return scores


@pytest.mark.triton
def test_triton_captures_what_it_scored_rotates_and_survives_an_unwritable_dir(
    tmp_path: Path, holdout: np.ndarray, reference, figures: dict[str, str]
) -> None:
    capture_dir = tmp_path / "captured"
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    good_repo = repository_with_capture(tmp_path / "good", capture_dir, max_bytes=8192)
    bad_repo = repository_with_capture(tmp_path / "bad", blocker / "capture", max_bytes=8192)
    batches = [rows_like(holdout, n, s) for n, s in [(1, 0), (64, 1), (200, 65), (3, 265)]]
    bad = rows_like(holdout, 2, 300).copy()
    bad[1, 1] = 3  # SEX = 3: the request is rejected, none of its rows is captured
    sent = np.vstack([*batches, batches[0]]).astype(np.float64)
    servers = {
        "good": start_server(good_repo, tmp_path / "good.log"),
        "bad": start_server(bad_repo, tmp_path / "bad.log"),
    }
    try:
        for server in servers.values():
            server.wait_ready()
        results = {name: send(server, batches, bad) for name, server in servers.items()}
        metrics = {name: capture_metrics(server) for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.stop()
    for scores in results.values():  # capture on or failing, scoring is the same
        np.testing.assert_array_equal(
            np.concatenate(scores), reference.score(sent.astype(np.float32))[:, 0]
        )

    captured = read_capture(capture_dir, N_FEATURES)
    np.testing.assert_array_equal(captured.features, sent)
    assert set(captured.model_ids) == {model_id(PUBLISHED_CONTRACT)}
    assert set(captured.model_versions) == {"1"}
    assert len(captured.files) > 1 and all(p.stat().st_size <= 8192 for p in captured.files)
    assert metrics["good"]["requests_rejected"] == 2
    assert metrics["good"]["rows_written"] >= len(sent) - len(batches[0])
    assert metrics["good"].get("rows_failed", 0) == 0

    assert metrics["bad"]["rows_failed"] >= len(sent) - len(batches[0])
    assert metrics["bad"].get("rows_written", 0) == 0
    log = (tmp_path / "bad.log").read_text(errors="replace")
    assert "capture:" in log and "NotADirectoryError" in log
    figures["capture files written (8 KiB rotation)"] = str(len(captured.files))
    first = json.loads(captured.files[0].read_text().splitlines()[0])
    assert set(first) == {"ts", "model_version", "model_id", "features"}
