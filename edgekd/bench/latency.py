"""Latency and throughput of ONNX Runtime sessions, measured side by side.

Models are timed interleaved (one run of each in turn), so drift on a shared machine hits every
model alike. Warm-up runs are excluded from the statistics; perf_counter_ns wraps `run()` alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    batch: int
    runs: int  # timed runs (warm-up excluded)
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float


def summarize(times_ns: list[int] | np.ndarray, batch: int) -> LatencyStats:
    """Percentiles (linear interpolation, numpy's default) of timed runs, in milliseconds."""
    ms = np.asarray(times_ns, dtype=np.float64) / 1e6
    if ms.size == 0:
        raise ValueError("no timed runs to summarize")
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return LatencyStats(batch, int(ms.size), float(p50), float(p90), float(p99), float(ms.mean()), float(ms.std()))


def time_interleaved(calls: dict[str, Callable[[int], object]], warmup: int, runs: int) -> dict[str, list[int]]:
    """Call each `calls[name](i)` `warmup` times untimed, then `runs` times timed, round-robin.

    Returns the timed durations in nanoseconds per name; warm-up calls never enter them.
    """
    for i in range(warmup):
        for call in calls.values():
            call(i)
    times: dict[str, list[int]] = {name: [] for name in calls}
    for i in range(runs):
        for name, call in calls.items():
            start = time.perf_counter_ns()
            call(i)
            times[name].append(time.perf_counter_ns() - start)
    return times


def session_call(session, x: np.ndarray, batch: int) -> Callable[[int], object]:
    """A call that runs `session` on the i-th batch of real inputs (cycling through `x`)."""
    name = session.get_inputs()[0].name
    count = max(1, len(x) // batch)
    batches = [np.ascontiguousarray(x[k * batch : (k + 1) * batch]) for k in range(count)]
    if len(batches[0]) < batch:  # fewer samples than one batch: repeat them
        batches = [np.resize(x, (batch, *x.shape[1:])).astype(x.dtype)]
    return lambda i: session.run(None, {name: batches[i % len(batches)]})
