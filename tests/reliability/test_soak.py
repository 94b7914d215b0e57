"""Soak: steady concurrent traffic for a bounded time; correctness, failures, p99 drift, memory."""

from __future__ import annotations

import time

import pytest
from tqdm import tqdm

from .traffic import Load, markdown_table, percentile_ms, server_rss_mib, steady_requests


@pytest.mark.triton
def test_soak_keeps_every_score_exact_and_reports_latency_drift_and_memory(
    triton, holdout, reference, settings, report, figures, request
) -> None:
    duration, window = settings.soak_seconds, settings.soak_window
    samples: list[tuple[float, float, float]] = []  # (elapsed s, tritonserver MiB, + stubs MiB)
    make = steady_requests(holdout, reference.score, triton)
    for i in range(20):  # warm the connections and the sessions before measuring
        make(i)[0]()
    with Load(settings.soak_workers, make) as load:
        start = time.monotonic()
        samples.append((0.0, *server_rss_mib(triton)))
        step = max(duration / 10, 1.0)
        with tqdm(total=int(duration), desc="soak", unit="s", leave=False) as bar:
            while (elapsed := time.monotonic() - start) < duration:
                time.sleep(min(1.0, duration - elapsed))
                bar.update(1)
                if time.monotonic() - start >= len(samples) * step:
                    samples.append((time.monotonic() - start, *server_rss_mib(triton)))
        end = time.monotonic()
    samples.append((end - start, *server_rss_mib(triton)))
    records = [(t - start, o, w) for t, o, w in load.records if start <= t < end]
    failures = [o for _, o, _ in records if not o.scored]
    wrong = sum(w for _, _, w in records)
    first = [o.seconds for t, o, _ in records if t < window and o.scored]
    last = [o.seconds for t, o, _ in records if t >= duration - window and o.scored]
    p99_first, p99_last = percentile_ms(first, 99), percentile_ms(last, 99)
    p50_all = percentile_ms((o.seconds for _, o, _ in records if o.scored), 50)
    (_, own0, all0), (_, own1, all1) = samples[0], samples[-1]
    curve = " → ".join(f"{a:.0f}" for _, _, a in samples)
    label = f"{window:.0f} s" if window != 60 else "minute"
    table = markdown_table(
        [
            ("requests", f"{len(records)} ({len(records) / duration:.0f}/s)"),
            ("wrong scores", str(wrong)),
            ("failed requests", str(len(failures))),
            ("p50 latency, whole run", f"{p50_all:.2f} ms"),
            (
                f"p99 latency, first {label} → last {label}",
                f"{p99_first:.2f} → {p99_last:.2f} ms ({p99_last - p99_first:+.2f} ms)",
            ),
            (
                "tritonserver RSS, start → end",
                f"{own0:.1f} → {own1:.1f} MiB ({own1 - own0:+.1f})",
            ),
            (
                "tritonserver + python stubs RSS, start → end",
                f"{all0:.1f} → {all1:.1f} MiB ({all1 - all0:+.1f})",
            ),
            (f"RSS incl. stubs every ~{duration / 10:.0f} s (MiB)", curve),
        ]
    )
    body = f"""
{settings.soak_workers} closed-loop clients for {duration:.0f} s against the shared test server
(HTTP binary and gRPC alternating, 1-8 holdout rows a request, every answer compared with
in-process ONNX Runtime).

{table}

Timings and memory are measured, not asserted (a shared 2-CPU machine); correctness and the
failure count are asserted.
"""
    report.add(5, f"Soak ({duration:.0f} s)", request.node.nodeid, body)
    figures["soak"] = (
        f"{len(records)} requests in {duration:.0f} s, wrong {wrong}, failed {len(failures)}, "
        f"p99 first/last {label} {p99_first:.2f}/{p99_last:.2f} ms, "
        f"RSS {all0:.0f}->{all1:.0f} MiB incl. stubs"
    )
    assert records, "no traffic"
    assert wrong == 0
    assert not failures, failures[:5]
