"""Payload capture for the Triton ``preprocess`` step: sample validated rows to JSON Lines files.

Standard library and numpy only, no project imports: ``make publish-sources`` copies this file
byte for byte into ``model_repository/preprocess/1/`` (the NGC image has only the repository)
and a test fails when the copy is stale. The drift job reads the files back with
:func:`read_capture`.

Hot path (``Capture.record``, called once per dynamic batch): a seeded Bernoulli sample of the
accepted rows, one copy and a non-blocking ``put`` on a bounded queue. A background thread
formats the lines and appends them with ``os.write`` to
``<dir>/capture-v<version>-<UTC start>-<pid>-<seq>.jsonl``, starting a new file before one would
pass ``max_bytes``. Nothing here raises into a request: a full queue drops the rows and a failed
write (disk full, unwritable directory) loses them; both are counted, logged and reported.

One line per captured row::

    {"ts":"2025-01-31T12:00:00.123Z","model_version":"1","model_id":"3f1c...","features":[...]}

``ts`` is when the batch was scored (UTC), ``model_version`` the preprocess version Triton
loaded, ``model_id`` the first 16 hex digits of the published contract's sha256 (the model
card lists the full hash) and ``features`` the 23 raw values in contract order, as integers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

PREFIX, SUFFIX = "capture-", ".jsonl"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# Counters, as reported to the ``report`` callback (and so to Prometheus by model.py).
COUNTS = ("rows_written", "rows_failed", "rows_dropped", "requests_rejected")


@dataclass(frozen=True)
class CaptureSettings:
    """Where and how much to capture; built from the model config's parameters."""

    directory: Path
    sample_rate: float = 1.0
    max_bytes: int = DEFAULT_MAX_BYTES
    seed: int = 0
    queue_batches: int = 256  # batches waiting for the writer before rows are dropped
    report_interval: float = 1.0  # seconds between reports of the counters

    def __post_init__(self) -> None:
        if not 0.0 < self.sample_rate <= 1.0:
            raise ValueError(f"capture_sample_rate must be in (0, 1], got {self.sample_rate}")
        if self.max_bytes < 1024:
            raise ValueError(f"capture_max_bytes must be at least 1024, got {self.max_bytes}")

    @classmethod
    def from_params(cls, params: dict[str, str]) -> CaptureSettings | None:
        """Settings from ``capture_dir`` / ``capture_sample_rate`` / ``capture_max_bytes``.

        Returns None (capture off) when ``capture_dir`` is empty or absent. A bad rate or size
        raises ValueError, so a misconfigured model fails to load instead of capturing wrongly.
        """
        directory = params.get("capture_dir", "").strip()
        if not directory:
            return None
        return cls(
            directory=Path(directory),
            sample_rate=float(params.get("capture_sample_rate", "") or 1.0),
            max_bytes=int(params.get("capture_max_bytes", "") or DEFAULT_MAX_BYTES),
        )


def model_id(path: str | Path) -> str:
    """First 16 hex digits of a file's sha256: ties captured rows to the contract they passed."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class Capture:
    """Sampled, append-only, size-rotated capture of validated rows (see the module docstring)."""

    def __init__(
        self,
        settings: CaptureSettings,
        model_version: str,
        identity: str,
        log: Callable[[str], None] = print,
        report: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        """Start the writer thread; nothing touches the disk until the first rows arrive."""
        self.settings = settings
        self.counts = dict.fromkeys(COUNTS, 0)
        self._reported = dict.fromkeys(COUNTS, 0)
        self._log, self._report = log, report
        self._rng = np.random.default_rng(settings.seed)
        self._queue: queue.Queue[tuple[float, np.ndarray] | None] = queue.Queue(
            settings.queue_batches
        )
        self._meta = json.dumps({"model_version": str(model_version), "model_id": identity})[1:-1]
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self._stem = f"{PREFIX}v{model_version}-{stamp}-{os.getpid()}-"
        self._fd: int | None = None
        self._size, self._seq = 0, 0
        self._error = ""  # last write error, logged from the caller's thread
        self._logged_failures = 0
        self._next_report = time.monotonic() + settings.report_interval
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()

    # --- the caller's thread (Triton's execute) ----------------------------------------------

    def record(self, parts: Sequence[np.ndarray], rejected: int = 0) -> None:
        """Sample rows of accepted requests for capture; count rejected requests. Never raises."""
        self.counts["requests_rejected"] += rejected
        if parts:
            rows = np.concatenate(parts) if len(parts) > 1 else np.array(parts[0])
            if self.settings.sample_rate < 1.0:
                rows = rows[self._rng.random(len(rows)) < self.settings.sample_rate]
            if len(rows):
                try:
                    self._queue.put_nowait((time.time(), rows))
                except queue.Full:
                    self.counts["rows_dropped"] += len(rows)
        if time.monotonic() >= self._next_report:
            self.flush_counts()

    def flush_counts(self) -> None:
        """Log new write failures and pass counter increments to ``report``."""
        self._next_report = time.monotonic() + self.settings.report_interval
        deltas = {k: v - self._reported[k] for k, v in self.counts.items()}
        self._reported.update((k, self._reported[k] + d) for k, d in deltas.items())
        if deltas["rows_failed"] or deltas["rows_dropped"]:
            self._log(
                f"capture: {deltas['rows_failed']} row(s) not written, {deltas['rows_dropped']}"
                f" dropped (queue full) since the last report; scoring is unaffected. "
                f"Last error: {self._error or 'none'}"
            )
        if self._report is not None and any(deltas.values()):
            self._report({k: d for k, d in deltas.items() if d})

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, stop the writer, close the file and report the counters."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        self._close_file()
        self.flush_counts()
        self._log(f"capture: closed; totals {self.counts}")

    # --- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            stamp, rows = item
            try:
                self._write_lines(self._format(stamp, rows))
            except Exception as error:  # the writer must never die
                self._error = f"{type(error).__name__}: {error}"
                self.counts["rows_failed"] += len(rows)

    def _format(self, stamp: float, rows: np.ndarray) -> list[bytes]:
        ts = datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds")
        head = f'{{"ts":"{ts.replace("+00:00", "Z")}",{self._meta},"features":['
        values = rows.astype(np.int64).tolist()
        return [f"{head}{','.join(map(str, row))}]}}\n".encode() for row in values]

    def _write_lines(self, lines: list[bytes]) -> None:
        """Append lines in chunks that keep each file within ``max_bytes``; count the outcome."""
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            if chunk and self._size + size + len(line) > self.settings.max_bytes:
                self._append(chunk, size)
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            self._append(chunk, size)

    def _append(self, chunk: list[bytes], size: int) -> None:
        try:
            if self._fd is None or (self._size and self._size + size > self.settings.max_bytes):
                self._rotate()
            data = memoryview(b"".join(chunk))
            while data:  # a short write only happens when the disk fills: the next one raises
                written = os.write(self._fd, data)
                data = data[written:]
                self._size += written
        except OSError as error:
            self._error = f"{type(error).__name__}: {error}"
            self.counts["rows_failed"] += len(chunk)
            self._close_file()  # a torn line can only ever be the last line of a file
            return
        self.counts["rows_written"] += len(chunk)

    def _rotate(self) -> None:
        self._close_file()
        self.settings.directory.mkdir(parents=True, exist_ok=True)
        while True:
            self._seq += 1
            path = self.settings.directory / f"{self._stem}{self._seq:05d}{SUFFIX}"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
            try:
                self._fd = os.open(path, flags, 0o644)
            except FileExistsError:
                continue
            self._size = 0
            return

    def _close_file(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


@dataclass
class CapturedRows:
    """Rows read back from a capture directory, with where each came from."""

    features: np.ndarray  # float64 [n, n_features]
    timestamps: list[str]
    model_versions: list[str]
    model_ids: list[str]
    labels: list[str]  # "file:line" per row, for error messages
    files: list[Path] = field(default_factory=list)
    torn_lines: int = 0  # unterminated last lines (a write cut short by a full disk)


class CaptureFormatError(ValueError):
    """A capture file is not what :class:`Capture` writes; the message names file and line."""


def read_capture(directory: str | Path, n_features: int) -> CapturedRows:
    """Read every ``capture-*.jsonl`` file under ``directory`` (sorted by name).

    An unterminated last line is a write cut short by a full disk: it is skipped and counted.
    Anything else malformed raises CaptureFormatError. The values are not checked against the
    contract here (the caller does that, naming ``labels[i]``).
    """
    directory = Path(directory)
    files = sorted(directory.rglob(f"{PREFIX}*{SUFFIX}"))
    rows: list[list[float]] = []
    out = CapturedRows(np.empty((0, n_features)), [], [], [], [], files)
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        lines = text.split("\n")
        if lines[-1]:
            out.torn_lines += 1
        for number, line in enumerate(lines[:-1], start=1):
            label = f"{path.name}:{number}"
            try:
                record = json.loads(line)
                values = [float(v) for v in record["features"]]
                stamp, version = str(record["ts"]), str(record["model_version"])
                identity = str(record["model_id"])
            except (ValueError, KeyError, TypeError) as error:
                raise CaptureFormatError(f"{label}: not a capture record ({error})") from None
            if len(values) != n_features:
                raise CaptureFormatError(
                    f"{label}: {len(values)} feature values, expected {n_features}"
                )
            rows.append(values)
            out.timestamps.append(stamp)
            out.model_versions.append(version)
            out.model_ids.append(identity)
            out.labels.append(label)
    if rows:
        out.features = np.asarray(rows, dtype=np.float64)
    return out
