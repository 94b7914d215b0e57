"""The serving benchmark (``make bench-serving``): our stack against the alternatives, one run.

Starts on loopback what it needs (a Triton serving a cache copy of ``model_repository/``, and
the FastAPI + ONNX Runtime baseline), then measures with the
same load generator (``loadtest.loadgen``, one process per measurement) and the same holdout
rows, engines interleaved round by round in a rotating order:

* in-process ONNX Runtime (contract check + the published INT8 network): the floor;
* the Triton ensemble ``credit_scoring`` over HTTP and gRPC (the product);
* ``credit_model`` alone over HTTP and gRPC: the network without the python step, to show what
  the contract check costs (it does not validate input);
* FastAPI + ONNX Runtime (``loadtest/baselines/fastapi_ort``), the seed project's architecture.

Scenarios: single-applicant requests at concurrency 1, 8 and 32, and 1024-row batch requests
(rows/s). Reports p50/p99 latency, throughput, the ratios, and Triton's server-side
queue/compute split from ``/v2/models/<m>/stats``; medians over rounds. Writes
``reports/serving_benchmark.md`` and ``reports/serving_benchmark.html``.

``--variant product --variant fast:delay=0,instances=2 ...`` starts one Triton per variant (the
product's configs with those overrides, in cache copies) and measures their ensembles side by
side, next to the comparators (credit_model alone is served by the first variant's Triton);
``--ensembles-only`` measures only the variants' ensembles over HTTP: how the settings in the
product were chosen. ``--smoke`` runs everything briefly.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from export.config import ROOT
from loadtest.repository import NETWORK, Variant, build_repository, scheduling
from loadtest.rows import holdout_rows
from preprocess_ensemble.triton_server import TritonServer, free_port

REPORTS = ROOT / "reports"
WORK = ROOT / ".cache" / "bench"
ENSEMBLE = "credit_scoring"
BATCH_ENSEMBLE = "credit_pd"
FLOOR, FASTAPI = "in-process ORT", "FastAPI + ORT"
INPROC_FULL, INPROC_PD = "in-process credit_scoring", "in-process credit_pd"
FASTAPI_FULL = "FastAPI + ORT same work"
# Issue 13's ratios: (key, numerator engine, denominator engine, scenario kind, figure, target).
RATIO_SPECS = tuple(
    spec
    for protocol, label in (("http", "HTTP"), ("grpc", "gRPC"))
    for spec in (
        (f"full_{protocol}_c1_p50_vs_fastapi", f"Triton ensemble {label}", FASTAPI_FULL,
         "c=1", "p50_ms", "<= 0.8"),
        (f"full_{protocol}_c8_rps_vs_fastapi", f"Triton ensemble {label}", FASTAPI_FULL,
         "c=8", "requests_per_s", ">= 2.0"),
        (f"full_{protocol}_batch_rows_vs_inprocess", f"Triton ensemble {label}", INPROC_FULL,
         "batch", "rows_per_s", ">= 0.7"),
        (f"pd_{protocol}_batch_rows_vs_inprocess", f"Triton credit_pd {label}", INPROC_PD,
         "batch", "rows_per_s", ">= 0.5"),
    )
) + (
    ("full_vs_pd_batch_rows", "Triton ensemble HTTP", "Triton credit_pd HTTP", "batch",
     "rows_per_s", ">= 0.2"),
)  # fmt: skip


def ratio_object(cells: dict[tuple[str, str], Cell], scenarios: list[Scenario]) -> dict[str, dict]:
    """The ``ratios`` object of reports/serving_benchmark.json: value, target, met, what."""
    batch = next(s.name for s in scenarios if s.batch > 1)
    out = {}
    for key, top, bottom, scenario, figure, target in RATIO_SPECS:
        name = batch if scenario == "batch" else scenario
        if (top, name) not in cells or (bottom, name) not in cells:
            continue
        value = cells[top, name].median(figure) / cells[bottom, name].median(figure)
        bound = float(target.split()[1])
        met = value <= bound if target.startswith("<") else value >= bound
        out[key] = {
            "value": value,
            "target": target,
            "met": bool(met),
            "what": f"{top} / {bottom}, {figure}, {name}",
        }
    return out


@dataclass(frozen=True)
class Scenario:
    """Rows per request and requests in flight."""

    name: str
    batch: int
    concurrency: int


@dataclass(frozen=True)
class Engine:
    """One thing to measure: a load generator engine pointed at a server and model."""

    name: str
    kind: str  # loadgen engine: inproc, http, grpc, fastapi
    url: str = ""
    model: str = ""
    stats_url: str = ""  # Triton HTTP host:port for /v2/models/<m>/stats
    stats_models: tuple[str, ...] = ()


@dataclass
class Cell:
    """All rounds of one engine in one scenario."""

    runs: list[dict] = field(default_factory=list)
    server: list[dict[str, dict[str, float]]] = field(default_factory=list)

    def median(self, key: str) -> float:
        """Median of ``key`` over rounds."""
        values = [r[key] for r in self.runs if r.get(key) == r.get(key)]  # drop NaN
        return statistics.median(values) if values else float("nan")

    def errors(self) -> int:
        """Failed requests over all rounds."""
        return sum(r["errors"] for r in self.runs)

    def server_median(self, model: str, key: str) -> float:
        """Median over rounds of a server-side figure of ``model``."""
        values = [s[model][key] for s in self.server if model in s and key in s[model]]
        return statistics.median(values) if values else float("nan")


# --- servers --------------------------------------------------------------------------------


def _get_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def fastapi_server(workers: int, log: Path) -> Iterator[str]:
    """Run the FastAPI + ORT baseline with uvicorn on a free loopback port; yield host:port."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "loadtest.baselines.fastapi_ort.app:app",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--workers={workers}",
        "--no-access-log",
        "--log-level=warning",
    ]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"uvicorn exited ({process.returncode}): {log.read_text()[-2000:]}"
                )
            with contextlib.suppress(OSError):
                if _get_json(f"http://127.0.0.1:{port}/health", 1.0).get("status") == "ok":
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn not ready after 60 s: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def triton_stats(http_url: str, models: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """Cumulative counters of ``models`` from Triton's statistics endpoint."""
    out = {}
    for model in models:
        stats = _get_json(f"http://{http_url}/v2/models/{model}/stats")["model_stats"][0]
        inference = stats["inference_stats"]
        out[model] = {
            "inferences": int(stats.get("inference_count", 0)),
            "executions": int(stats.get("execution_count", 0)),
            **{f"{k}_ns": int(inference[k]["ns"]) for k in ("success", "queue", "compute_input")},
            **{f"{k}_ns": int(inference[k]["ns"]) for k in ("compute_infer", "compute_output")},
            "requests": int(inference["success"]["count"]),
        }
    return out


def stats_delta(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
) -> dict[str, dict[str, float]]:
    """Per-request server-side µs (queue, compute, total) and the average batch per model."""
    out: dict[str, dict[str, float]] = {}
    for model, end in after.items():
        start = before[model]
        d = {k: end[k] - start[k] for k in end}
        requests = max(d["requests"], 1)
        compute = d["compute_input_ns"] + d["compute_infer_ns"] + d["compute_output_ns"]
        out[model] = {
            "queue_us": d["queue_ns"] / requests / 1e3,
            "compute_us": compute / requests / 1e3,
            "total_us": d["success_ns"] / requests / 1e3,
            "batch": d["inferences"] / max(d["executions"], 1),
            "requests": float(d["requests"]),
        }
    return out


# --- measuring ------------------------------------------------------------------------------


def run_loadgen(
    engine: Engine, scenario: Scenario, rows: Path, duration: float, warmup: float
) -> dict:
    """Run one measurement in its own process; return its JSON summary."""
    command = [
        sys.executable,
        "-m",
        "loadtest.loadgen",
        engine.kind,
        f"--rows={rows}",
        f"--batch={scenario.batch}",
        f"--concurrency={scenario.concurrency}",
        f"--duration={duration}",
        f"--warmup={warmup}",
    ]
    if engine.url:
        command.append(f"--url={engine.url}")
    if engine.model:
        command.append(f"--model={engine.model}")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=duration + 120)
    if done.returncode != 0:
        raise RuntimeError(f"loadgen {engine.name} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(
    engines: list[Engine],
    scenarios: list[Scenario],
    rows: Path,
    rounds: int,
    duration: float,
    warmup: float,
) -> tuple[dict[tuple[str, str], Cell], list[tuple[float, float]]]:
    """Interleave engines round by round (rotating order); return cells and load averages."""
    cells = {(e.name, s.name): Cell() for e in engines for s in scenarios}
    loads = []
    total = rounds * len(engines) * len(scenarios)
    with tqdm(total=total, unit="run", desc="measuring") as bar:
        for r in range(rounds):
            load_start = os.getloadavg()[0]
            for scenario in scenarios:
                k = r % len(engines)
                for engine in engines[k:] + engines[:k]:
                    bar.set_postfix_str(f"{engine.name} {scenario.name}")
                    before = (
                        triton_stats(engine.stats_url, engine.stats_models)
                        if engine.stats_url
                        else {}
                    )
                    result = run_loadgen(engine, scenario, rows, duration, warmup)
                    cell = cells[engine.name, scenario.name]
                    cell.runs.append(result)
                    if engine.stats_url:
                        after = triton_stats(engine.stats_url, engine.stats_models)
                        cell.server.append(stats_delta(before, after))
                    bar.update()
            loads.append((load_start, os.getloadavg()[0]))
    return cells, loads


# --- report ---------------------------------------------------------------------------------


def _fmt(value: float, digits: int = 2) -> str:
    if value != value:  # NaN
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def ratios(
    cells: dict[tuple[str, str], Cell], engines: list[Engine], scenarios: list[Scenario]
) -> list[tuple[str, float, str]]:
    """(what, measured ratio or figure, target) for the report."""
    names = {e.name for e in engines}
    out: list[tuple[str, float, str]] = []
    single = [s for s in scenarios if s.batch == 1]
    batch = [s for s in scenarios if s.batch > 1]
    for ensemble in [e.name for e in engines if e.name.startswith("Triton ensemble")]:
        folded = "Triton credit_model " + ensemble.split()[2]  # same protocol
        for s in single:
            target = {1: "≥ 3×", 8: "≥ 5×"}.get(s.concurrency, "")
            if FASTAPI in names:
                value = cells[ensemble, s.name].median("requests_per_s") / cells[
                    FASTAPI, s.name
                ].median("requests_per_s")
                out.append((f"{ensemble} / {FASTAPI} throughput, {s.name}", value, target))
        for s in single:
            if folded in names:
                value = cells[ensemble, s.name].median("p50_ms") / cells[folded, s.name].median(
                    "p50_ms"
                )
                target = "≤ 1.3×" if s.concurrency == 1 else ""
                out.append((f"{ensemble} p50 / {folded} p50, {s.name}", value, target))
        for s in batch:
            out.append(
                (
                    f"{ensemble} rows/s, {s.name}",
                    cells[ensemble, s.name].median("rows_per_s"),
                    "≥ 1,000,000",
                )
            )
            if FASTAPI in names:
                value = cells[ensemble, s.name].median("rows_per_s") / cells[
                    FASTAPI, s.name
                ].median("rows_per_s")
                out.append((f"{ensemble} / {FASTAPI} rows/s, {s.name}", value, ""))
    return out


def results_table(
    cells: dict[tuple[str, str], Cell], engines: list[Engine], scenarios: list[Scenario]
) -> list[list[str]]:
    """Rows: engine, scenario, req/s, rows/s, p50, p99, errors."""
    table = []
    for s in scenarios:
        for e in engines:
            c = cells[e.name, s.name]
            table.append(
                [
                    s.name,
                    e.name,
                    _fmt(c.median("requests_per_s"), 0),
                    _fmt(c.median("rows_per_s"), 0),
                    _fmt(c.median("p50_ms")),
                    _fmt(c.median("p99_ms")),
                    str(c.errors()),
                ]
            )
    return table


def server_table(
    cells: dict[tuple[str, str], Cell], engines: list[Engine], scenarios: list[Scenario]
) -> list[list[str]]:
    """Triton's per-request queue and compute µs for each model behind an engine."""
    table = []
    for s in scenarios:
        for e in engines:
            for model in e.stats_models:
                c = cells[e.name, s.name]
                table.append(
                    [
                        s.name,
                        e.name,
                        model,
                        _fmt(c.server_median(model, "total_us"), 0),
                        _fmt(c.server_median(model, "queue_us"), 0),
                        _fmt(c.server_median(model, "compute_us"), 0),
                        _fmt(c.server_median(model, "batch"), 1),
                    ]
                )
    return table


RESULT_HEADER = ["scenario", "engine", "req/s", "rows/s", "p50 ms", "p99 ms", "errors"]
SERVER_HEADER = ["scenario", "engine", "model", "total µs", "queue µs", "compute µs", "avg batch"]


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "| --- " * len(header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def format_markdown(context: dict, notes: list[str]) -> str:
    """The report as markdown."""
    cells, engines, scenarios = context["cells"], context["engines"], context["scenarios"]
    lines = ["# Serving benchmark", "", *context["preamble"], ""]
    lines += ["## Ratios", ""]
    rows = [[what, _fmt(v), target] for what, v, target in ratios(cells, engines, scenarios)]
    lines += markdown_table(["what", "measured", "target"], rows)
    lines += ["", "## Results (median over rounds)", ""]
    lines += markdown_table(RESULT_HEADER, results_table(cells, engines, scenarios))
    lines += ["", "## Where the server time goes (Triton statistics, per request)", ""]
    lines += markdown_table(SERVER_HEADER, server_table(cells, engines, scenarios))
    lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _svg_bars(title: str, groups: list[str], series: dict[str, list[float]], unit: str) -> str:
    """Grouped horizontal bars as inline SVG (no plotting library needed)."""
    colors = ["#4a7bd0", "#d0844a", "#5aa469", "#b05ac0", "#c0b040", "#777777", "#3cb3c0"]
    bar, gap = 12, 10
    width, label_w = 760, 260
    n = len(series)
    height = len(groups) * (n * bar + gap) + 40 + 16 * n
    peak = max([v for vs in series.values() for v in vs if v == v] or [1.0])
    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    parts.append(f'<text x="0" y="14" font-weight="bold">{html.escape(title)}</text>')
    y = 26
    for g, group in enumerate(groups):
        parts.append(f'<text x="0" y="{y + n * bar / 2 + 4}">{html.escape(group)}</text>')
        for k, (name, values) in enumerate(series.items()):
            value = values[g]
            w = 0 if value != value else (width - label_w - 80) * value / peak
            parts.append(
                f'<rect x="{label_w}" y="{y + k * bar}" width="{w:.1f}" height="{bar - 2}" '
                f'fill="{colors[k % len(colors)]}"><title>{html.escape(name)}: '
                f"{_fmt(value)} {unit}</title></rect>"
            )
            parts.append(
                f'<text x="{label_w + w + 4:.1f}" y="{y + k * bar + 10}" font-size="10">'
                f"{_fmt(value)}</text>"
            )
        y += n * bar + gap
    for k, name in enumerate(series):
        parts.append(
            f'<rect x="0" y="{y + 16 * k}" width="10" height="10" '
            f'fill="{colors[k % len(colors)]}"/><text x="14" y="{y + 16 * k + 9}" '
            f'font-size="11">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def format_html(context: dict, notes: list[str]) -> str:
    """A self-contained HTML page: plots, ratios, tables and notes."""
    cells, engines, scenarios = context["cells"], context["engines"], context["scenarios"]

    def table(header: list[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    single = [s for s in scenarios if s.batch == 1]
    batch = [s for s in scenarios if s.batch > 1]
    plots = []
    for metric, unit, title in (
        ("requests_per_s", "req/s", "Single-applicant throughput (req/s, higher is better)"),
        ("p50_ms", "ms", "Single-applicant p50 latency (ms, lower is better)"),
        ("p99_ms", "ms", "Single-applicant p99 latency (ms, lower is better)"),
    ):
        series = {e.name: [cells[e.name, s.name].median(metric) for s in single] for e in engines}
        plots.append(_svg_bars(title, [s.name for s in single], series, unit))
    if batch:
        series = {
            e.name: [cells[e.name, s.name].median("rows_per_s") for s in batch] for e in engines
        }
        plots.append(
            _svg_bars(
                "Batch scoring throughput (rows/s)", [s.name for s in batch], series, "rows/s"
            )
        )
    ratio_rows = [[w, _fmt(v), t] for w, v, t in ratios(cells, engines, scenarios)]
    preamble = "".join(f"<p>{html.escape(p)}</p>" for p in context["preamble"] if p)
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Serving benchmark</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1100px; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
td:first-child, th:first-child, td:nth-child(2) {{ text-align: left; }}
svg {{ display: block; margin: 1em 0 2em 0; font-family: sans-serif; font-size: 12px; }}
</style></head><body>
<h1>Serving benchmark</h1>
{preamble}
<h2>Ratios</h2>
{table(["what", "measured", "target"], ratio_rows)}
<h2>Plots</h2>
{"".join(plots)}
<h2>Results (median over rounds)</h2>
{table(RESULT_HEADER, results_table(cells, engines, scenarios))}
<h2>Where the server time goes (Triton statistics, per request)</h2>
{table(SERVER_HEADER, server_table(cells, engines, scenarios))}
<h2>Notes</h2>
<ul>{items}</ul>
</body></html>
"""


NOTES = [
    "One shared 2-core machine runs the servers and the load generator at once, while other "
    "work may run too (load averages above): read the ratios, not the digits. Engines are "
    "interleaved round by round in a rotating order and every figure is a median over rounds.",
    "The load generator (loadtest/loadgen.py, its own process per measurement) keeps "
    "`concurrency` requests in flight with pre-encoded bodies: KServe v2 binary tensors over "
    "HTTP/1.1 keep-alive for Triton, raw tensor contents over gRPC, JSON for FastAPI (its only "
    "protocol). Every response is checked: one probability in [0, 1] per row, else an error.",
    "in-process ORT runs the same contract check, standardizer and INT8 session as the "
    "ensemble in the load generator's own process (threads for concurrency): the floor.",
    "Triton credit_model is the network alone (its ONNX graph encodes raw features): it does "
    "NOT validate input and returns only a probability. It shows what the python contract "
    "check costs; it is not a second product.",
    "The ONNX models run on Triton's native C++ onnxruntime backend in both places: locally "
    "built from the r24.10 sources NGC 24.10 ships (preprocess_ensemble/onnxruntime_backend.py) "
    "with the pinned onnxruntime wheel's library, on NGC 24.10 with ONNX Runtime 1.19.2. "
    "Only `preprocess` crosses the python stub's shared-memory IPC.",
    "Scheduling (chosen with `--variant` runs, loadtest/README.md): no dynamic batching delay "
    "(max_queue_delay 0): at concurrency 1 a delay is pure added latency (each step waits the "
    "whole delay: 200 µs cost about 0.6 ms of p50 over the two steps, in every run), while under "
    "concurrency requests queue behind the busy instance, so batches form anyway (see avg batch); "
    "the throughput effect of a delay at c=8/32 changed sign between runs (within noise). No "
    "preferred_batch_size: without a delay it changes nothing, and with 100 µs and 4/16 it "
    "landed between the two. One instance per model: a second one cost ~15% p50 at c=1 on 2 "
    "cores and helped only at c=32; scale with pods. intra_op_thread_count 1: the network is too "
    "small to gain from a second thread (make bench).",
    "Server-side split: total = request time inside Triton, queue = waiting for an instance "
    "(includes the dynamic batching delay), compute = input copy + execution + output copy; "
    "avg batch = rows per execution. For the ensemble, the credit_scoring total spans both steps.",
]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the reports."""
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench_serving",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (%(default)s)")
    parser.add_argument("--duration", type=float, default=3.0, help="measured s per run")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured s per run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--batch-rows", type=int, default=1024, help="rows per batch request")
    parser.add_argument("--batch-concurrency", type=int, default=4, help="batch requests in flight")
    parser.add_argument("--fastapi-workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument(
        "--variant",
        action="append",
        default=None,
        help="scheduling override(s) to compare, e.g. 'delay=0,instances=2'; several allowed",
    )
    parser.add_argument(
        "--ensembles-only",
        action="store_true",
        help="only the variants' ensembles over HTTP (no floor, network alone or FastAPI)",
    )
    parser.add_argument("--smoke", action="store_true", help="a few seconds in all")
    parser.add_argument("--out", type=Path, default=REPORTS, help="report folder")
    parser.add_argument("--name", default="serving_benchmark", help="report file stem")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.duration, args.warmup = 1, 0.4, 0.2
        args.concurrency = [1, 8]
        args.batch_concurrency = 2

    variants = [Variant.parse(v) for v in (args.variant or ["product"])]
    labelled = len(variants) > 1
    comparators = not args.ensembles_only
    WORK.mkdir(parents=True, exist_ok=True)
    rows_file = WORK / "rows.npy"
    np.save(rows_file, holdout_rows())
    scenarios = [Scenario(f"c={c}", 1, c) for c in args.concurrency]
    scenarios.append(
        Scenario(
            f"{args.batch_rows} rows c={args.batch_concurrency}",
            args.batch_rows,
            args.batch_concurrency,
        )
    )

    with contextlib.ExitStack() as stack:
        engines: list[Engine] = []
        if comparators:
            engines += [
                Engine(FLOOR, "inproc"),
                Engine(INPROC_FULL, "inproc", model=ENSEMBLE),
                Engine(INPROC_PD, "inproc", model=BATCH_ENSEMBLE),
            ]
        preamble_configs = []
        for k, variant in enumerate(tqdm(variants, desc="starting tritonserver", unit="server")):
            repository = build_repository(variant)
            log = WORK / f"tritonserver-{repository.name}.log"
            server = stack.enter_context(TritonServer(repository, log_path=log))
            label = f" [{variant.name}]" if labelled else ""
            steps = ("credit_scoring", "preprocess", "credit_model_reasons", "credit_policy")
            for protocol, url in (("HTTP", server.http_url), ("gRPC", server.grpc_url)):
                if args.ensembles_only and protocol == "gRPC":
                    continue
                engines.append(
                    Engine(
                        f"Triton ensemble {protocol}{label}",
                        protocol.lower(),
                        url,
                        ENSEMBLE,
                        server.http_url,
                        steps,
                    )
                )
                if comparators and k == 0:
                    engines.append(
                        Engine(
                            f"Triton credit_pd {protocol}",
                            protocol.lower(),
                            url,
                            BATCH_ENSEMBLE,
                            server.http_url,
                            (BATCH_ENSEMBLE, "preprocess", "credit_model", "credit_policy"),
                        )
                    )
                    engines.append(
                        Engine(
                            f"Triton credit_model {protocol}",
                            protocol.lower(),
                            url,
                            NETWORK,
                            server.http_url,
                            (NETWORK,),
                        )
                    )
            preamble_configs.append(
                f"Triton{label or ''}: "
                + "; ".join(
                    scheduling(repository, m)
                    for m in ("preprocess", "credit_model_reasons", "credit_policy", NETWORK)
                )
            )
        if comparators:
            url = stack.enter_context(fastapi_server(args.fastapi_workers, WORK / "uvicorn.log"))
            engines.append(Engine(FASTAPI, "fastapi", url))
            engines.append(Engine(FASTAPI_FULL, "fastapi", url, "decide"))
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        cells, loads = measure(
            engines, scenarios, rows_file, args.rounds, args.duration, args.warmup
        )

    preamble = [
        f"Run {started} on {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}, Triton 2.51 (nvidia-pytriton 0.7.0 wheel). "
        f"{args.rounds} round(s) x {args.duration:g} s per engine and scenario "
        f"(+{args.warmup:g} s warmup); {len(rows_file.name) and 4500} holdout rows"
        f"{' (SMOKE run: figures are not meaningful)' if args.smoke else ''}.",
        "Load average (1 min) at the start / end of each round: "
        + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in loads)
        + ".",
        *preamble_configs,
        f"FastAPI baseline: uvicorn, {args.fastapi_workers} worker process(es), one ORT thread "
        "each."
        if comparators
        else "",
    ]
    context = {"cells": cells, "engines": engines, "scenarios": scenarios, "preamble": preamble}
    args.out.mkdir(parents=True, exist_ok=True)
    markdown = format_markdown(context, NOTES)
    (args.out / f"{args.name}.md").write_text(markdown)
    (args.out / f"{args.name}.html").write_text(format_html(context, NOTES))
    measured = {f"{e}|{s}": {"runs": c.runs, "server": c.server} for (e, s), c in cells.items()}
    ratio_values = ratio_object(cells, scenarios)
    (args.out / f"{args.name}.json").write_text(
        json.dumps({"ratios": ratio_values, "cells": measured}, indent=1)
    )
    for key, r in ratio_values.items():
        print(f"{key}: {r['value']:.3f} (target {r['target']}, {'met' if r['met'] else 'NOT met'})")
    print(markdown)
    print(f"wrote {args.out / args.name}.md and .html")
    failed = sum(c.errors() for c in cells.values())
    if failed:
        print(f"error: {failed} request(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
