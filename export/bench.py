"""Latency benchmark: PyTorch eager vs ONNX Runtime FP32 vs INT8 (QOperator and QDQ), one run.

Every engine runs the network on the same encoded holdout rows (the encoder graph runs once,
untimed, before): the ONNX engines run the network part of the committed files
(``export.graphs.extract_network``). The PyTorch model is rebuilt from the committed FP32
network's initializers and must reproduce it within ``MAX_TORCH_DIFF`` before anything is
timed, so every engine runs the same model. Engines are interleaved round by round (in a
rotating order) so machine noise hits them all alike; each configuration reports the median
over rounds.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from tqdm import tqdm

from export.config import (
    CONTRACT_JSON,
    ENCODING_JSON,
    MODEL_CARD_JSON,
    ONNX_INPUT,
    PUBLISHED_ONNX,
    REFERENCE_FP32,
    ROOT,
    QuantizeConfig,
)
from export.data import Dataset
from export.encoding import Encoding, encode
from export.graphs import extract_network
from export.quantize import quantize
from export.train import AveragedMLP, CreditMLP
from export.validate import session
from preprocess_ensemble.features import FeatureContract

REPORTS_DIR = ROOT / "reports"
BATCH_SIZES = (1, 64, 1024)
MAX_TORCH_DIFF = 1e-5
TORCH = "PyTorch eager"
ORT_FP32 = "ORT FP32"
INT8_MODES = ("static-qoperator", "static-qdq")


@dataclass(frozen=True)
class Timing:
    """Median seconds per call of one engine at one thread count and batch size."""

    engine: str
    threads: int
    batch: int
    seconds_per_call: float
    spread: float  # (max - min) / median over rounds

    @property
    def us_per_row(self) -> float:
        """Median latency per row in microseconds."""
        return self.seconds_per_call / self.batch * 1e6

    @property
    def rows_per_second(self) -> float:
        """Throughput at the median latency."""
        return self.batch / self.seconds_per_call


def torch_from_onnx(network_path: str | Path, card: dict, encoding: Encoding) -> AveragedMLP:
    """An ``AveragedMLP`` whose parameters are the FP32 network file's initializers.

    Every parameter must come from the file; only the constructor-made column index buffer of
    the two-tower members may be absent from it.
    """
    training = card["training"]
    model = onnx.load(str(network_path))
    weights = {
        init.name: torch.from_numpy(numpy_helper.to_array(init).copy())
        for init in model.graph.initializer
    }
    monotone = tuple(encoding.monotone_columns) if training["monotone_delays"] else ()
    members = [
        CreditMLP(encoding.width, tuple(training["hidden"]), training["dropout"], monotone)
        for _ in range(training["ensemble_size"])
    ]
    rebuilt = AveragedMLP(members)
    wanted = rebuilt.state_dict()
    found = {k: v for k, v in weights.items() if k in wanted}
    missing = [k for k in wanted if k not in found and not k.endswith("free_columns")]
    if missing:
        raise RuntimeError(f"{network_path} lacks {len(missing)} parameters, e.g. {missing[:3]}")
    rebuilt.load_state_dict(found, strict=False)
    return rebuilt.eval()


def _torch_runner(model: AveragedMLP) -> Callable[[np.ndarray], np.ndarray]:
    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return run


def _ort_runner(sess: ort.InferenceSession) -> Callable[[np.ndarray], np.ndarray]:
    def run(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {ONNX_INPUT: x})[0]

    return run


def _time_block(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, calls: int) -> float:
    """Seconds per call, averaged over ``calls`` back-to-back calls."""
    start = time.perf_counter_ns()
    for _ in range(calls):
        run(x)
    return (time.perf_counter_ns() - start) / calls / 1e9


def _holdout_and_train() -> tuple[Dataset, Dataset]:
    from export.pipeline import load_parts

    _, parts, _ = load_parts()
    return parts["holdout"], parts["train"]


def _build_int8(
    work_dir: Path, network_fp32: Path, train: Dataset, encoding: Encoding, config: QuantizeConfig
) -> dict[str, Path]:
    """Quantize the FP32 network into both static INT8 formats, as the pipeline does."""
    from export.pipeline import calibration_rows

    rows = calibration_rows(train, encoding, config)
    return {
        mode: quantize(network_fp32, work_dir / f"network_int8_{mode}.onnx", rows, mode)
        for mode in INT8_MODES
    }


def run_bench(
    repeats: int = 5,
    max_rows: int | None = None,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    target_seconds: float = 0.1,
    report_dir: str | Path | None = REPORTS_DIR,
    progress: bool = True,
) -> str:
    """Time every engine at every batch size and thread count; return the text report.

    ``max_rows`` limits the holdout rows used (batches larger than that tile the rows) and
    ``target_seconds`` is the length of one timed block; small values give a fast smoke run.
    The Markdown and HTML reports go to ``report_dir`` (None writes nothing).
    """
    if repeats < 1 or (max_rows is not None and max_rows < 1):
        raise ValueError("repeats and max_rows must be at least 1")
    torch_threads = torch.get_num_threads()
    try:
        timings, notes = _bench(repeats, max_rows, batch_sizes, target_seconds, progress)
    finally:
        torch.set_num_threads(torch_threads)  # leave the caller's process as it was
    text = format_text(timings, notes)
    if report_dir is not None:
        report_dir = Path(report_dir)
        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / "benchmark.md").write_text(format_markdown(timings, notes), encoding="utf-8")
        (report_dir / "benchmark.html").write_text(format_html(timings, notes), encoding="utf-8")
    return text


def _bench(
    repeats: int,
    max_rows: int | None,
    batch_sizes: Sequence[int],
    target_seconds: float,
    progress: bool,
) -> tuple[list[Timing], list[str]]:
    """Check the PyTorch rebuild, build the INT8 variants, time everything."""
    card = json.loads(MODEL_CARD_JSON.read_text())
    published_mode = card["quantization"]["mode"]
    encoding = Encoding.from_json(ENCODING_JSON, FeatureContract.from_json(CONTRACT_JSON).names)
    holdout, train = _holdout_and_train()
    x_all = encode(encoding, holdout.features[:max_rows])
    work = Path(tempfile.mkdtemp(prefix="bench_int8_"))
    network_fp32 = extract_network(REFERENCE_FP32, work / "network_fp32.onnx")
    published_network = extract_network(PUBLISHED_ONNX, work / "network_published.onnx")

    model = torch_from_onnx(network_fp32, card, encoding)
    torch.set_num_threads(1)
    with torch.inference_mode():
        p_torch = model(torch.from_numpy(x_all)).numpy()
    p_onnx = session(network_fp32, 1).run(None, {ONNX_INPUT: x_all})[0]
    torch_diff = float(np.abs(p_torch - p_onnx).max())
    if torch_diff > MAX_TORCH_DIFF:
        raise RuntimeError(
            f"the PyTorch rebuild differs from {REFERENCE_FP32.name} by {torch_diff:.3g} "
            f"(limit {MAX_TORCH_DIFF:g}); refusing to time a different model"
        )

    load_before = os.getloadavg()[0]
    many = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    thread_counts = sorted({1, int(many or 1)})
    batches = {b: np.ascontiguousarray(np.resize(x_all, (b, x_all.shape[1]))) for b in batch_sizes}

    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, work, True)
        config = QuantizeConfig(published_mode)
        int8_paths = _build_int8(work, network_fp32, train, encoding, config)
        rebuilt = session(int8_paths[published_mode], 1).run(None, {ONNX_INPUT: x_all})[0]
        served = session(published_network, 1).run(None, {ONNX_INPUT: x_all})[0]
        rebuilt_identical = bool(np.array_equal(rebuilt, served))
        # The published network itself is timed; the other format is the temp build.
        int8_paths[published_mode] = published_network
        files = {ORT_FP32: network_fp32}
        files.update({_int8_name(m, published_mode): int8_paths[m] for m in INT8_MODES})
        sizes = {name: path.stat().st_size for name, path in files.items()}
        runners: dict[tuple[str, int], Callable[[np.ndarray], np.ndarray]] = {}
        for threads in thread_counts:
            runners[TORCH, threads] = _torch_runner(model)
            for name, path in files.items():
                runners[name, threads] = _ort_runner(session(path, threads))
        engines = [TORCH, *files]
        samples = _measure(
            runners, engines, thread_counts, batches, repeats, target_seconds, progress
        )

    timings = [
        Timing(e, t, b, statistics.median(s), (max(s) - min(s)) / statistics.median(s))
        for (e, t, b), s in samples.items()
    ]
    notes = _notes(
        card, published_mode, sizes, torch_diff, rebuilt_identical, len(x_all), repeats, many
    )
    notes.append(
        f"1-minute load average before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f} "
        f"on {many} CPU(s); other work on the machine inflates the spread and the multi-thread rows"
    )
    return timings, notes


def _int8_name(mode: str, published_mode: str) -> str:
    suffix = " (published)" if mode == published_mode else ""
    return f"ORT INT8 {mode}{suffix}"


def _measure(
    runners: dict[tuple[str, int], Callable[[np.ndarray], np.ndarray]],
    engines: list[str],
    thread_counts: list[int],
    batches: dict[int, np.ndarray],
    repeats: int,
    target_seconds: float,
    progress: bool,
) -> dict[tuple[str, int, int], list[float]]:
    """Warm up, size each block to ``target_seconds``, then time round by round."""
    calls: dict[tuple[str, int, int], int] = {}
    for (engine, threads), run in runners.items():
        torch.set_num_threads(threads)  # outside the timed block; a no-op for ORT
        for b, x in batches.items():
            run(x)  # warm-up: allocations, thread pools
            once = _time_block(run, x, 3)
            calls[engine, threads, b] = max(1, round(target_seconds / max(once, 1e-9)))
    samples: dict[tuple[str, int, int], list[float]] = {key: [] for key in calls}
    for round_index in tqdm(
        range(repeats), desc="bench rounds", unit="round", disable=not progress
    ):
        shift = round_index % len(engines)
        order = engines[shift:] + engines[:shift]  # rotate so no engine always runs first
        for threads in thread_counts:
            torch.set_num_threads(threads)
            for b, x in batches.items():
                for engine in order:
                    key = (engine, threads, b)
                    samples[key].append(_time_block(runners[engine, threads], x, calls[key]))
    return samples


def _notes(
    card: dict,
    published_mode: str,
    sizes: dict[str, int],
    torch_diff: float,
    rebuilt_identical: bool,
    rows: int,
    repeats: int,
    many: int,
) -> list[str]:
    fp32 = sizes[ORT_FP32]
    lines = [
        f"rows: {rows} committed holdout rows, encoded once by the published encoder graph "
        "(untimed: every engine runs the network on the same encoded rows); larger batches tile "
        "them",
        f"median over {repeats} interleaved round(s); threads 1 = torch.set_num_threads(1) / "
        f"ORT intra_op_num_threads=1; threads {many} = all available CPUs for both",
        f"PyTorch model rebuilt from the network in {REFERENCE_FP32.relative_to(ROOT)} "
        f"({card['training']['ensemble_size']} members, hidden {card['training']['hidden']}); "
        f"max |p torch - p ONNX FP32| = {torch_diff:.3g} (limit {MAX_TORCH_DIFF:g})",
        f"published INT8 format: {published_mode} (model card quantization.mode); the timed file "
        f"is the network in {PUBLISHED_ONNX.relative_to(ROOT)}; quantizing the FP32 network again "
        + (
            "scores every row identically"
            if rebuilt_identical
            else "gives DIFFERENT scores (see the card)"
        ),
        "model sizes: "
        + "; ".join(
            f"{name.removeprefix('ORT ')} {size:,} bytes ({fp32 / size:.2f}x smaller than FP32)"
            if name != ORT_FP32
            else f"FP32 {size:,} bytes"
            for name, size in sizes.items()
        ),
    ]
    return lines


HEADER = ("engine", "threads", "batch", "µs/row (median)", "rows/s", "vs PyTorch", "spread")


def _rows(timings: list[Timing]) -> list[tuple[str, ...]]:
    base = {(t.threads, t.batch): t.seconds_per_call for t in timings if t.engine == TORCH}
    ordered = sorted(timings, key=lambda t: (t.threads, t.batch))
    return [
        (
            t.engine,
            str(t.threads),
            str(t.batch),
            f"{t.us_per_row:.2f}",
            f"{t.rows_per_second:,.0f}",
            f"{base[t.threads, t.batch] / t.seconds_per_call:.2f}x",
            f"{t.spread:.0%}",
        )
        for t in ordered
    ]


def format_text(timings: list[Timing], notes: list[str]) -> str:
    """Plain-text table with aligned columns, then the notes."""
    rows = [HEADER, *_rows(timings)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += [
        "",
        "vs PyTorch = PyTorch eager latency / engine latency at the same threads and batch",
    ]
    lines += ["spread = (max - min) / median over rounds", *notes]
    return "\n".join(lines) + "\n"


def format_markdown(timings: list[Timing], notes: list[str]) -> str:
    """The same table as Markdown."""
    lines = ["# Inference benchmark", "", "| " + " | ".join(HEADER) + " |"]
    lines.append("| --- " + "| ---: " * (len(HEADER) - 1) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in _rows(timings)]
    lines += ["", "`vs PyTorch` = PyTorch eager latency / engine latency at the same threads and"]
    lines += ["batch; `spread` = (max - min) / median over rounds.", ""]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def format_html(timings: list[Timing], notes: list[str]) -> str:
    """A self-contained HTML page: the table plus a throughput bar per row."""
    best = {}
    for t in timings:
        best[t.threads, t.batch] = max(best.get((t.threads, t.batch), 0.0), t.rows_per_second)
    ordered = sorted(timings, key=lambda t: (t.threads, t.batch))
    body = []
    for t, row in zip(ordered, _rows(timings), strict=True):
        width = 100.0 * t.rows_per_second / best[t.threads, t.batch]
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in row)
        bar = f'<td class="bar"><div style="width:{width:.1f}%"></div></td>'
        body.append(f"<tr>{cells}{bar}</tr>")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in (*HEADER, "rows/s (best = full bar)"))
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Inference benchmark</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
td.bar {{ width: 240px; }}
td.bar div {{ background: #4a7bd0; height: 12px; }}
</style></head><body>
<h1>Inference benchmark</h1>
<table><thead><tr>{head}</tr></thead><tbody>
{chr(10).join(body)}
</tbody></table>
<p>vs PyTorch = PyTorch eager latency / engine latency at the same threads and batch;
spread = (max - min) / median over rounds; bars compare rows/s within one threads/batch group.</p>
<ul>{items}</ul>
</body></html>
"""
