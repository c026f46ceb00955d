"""Latency and throughput of ONNX Runtime sessions, measured side by side.

Models are timed interleaved in short blocks (BLOCK runs of one, then of the next, in turn), so
drift on a shared machine hits every model alike, while each timed run follows a run of the same
model, as on a device that runs it back to back: timed one run each in turn, a 2-layer BERT
student measured 1.34× slower beside a 6-layer teacher than alone (1.05× in blocks), because every
run began with caches the other had filled (tools/timing_blocks.py). Warm-up runs (and the untimed run that opens each block) are excluded from the
statistics; perf_counter_ns wraps `run()` alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
from pydantic import Field

from edgekd._config import Count, NonNegative, Positive

from edgekd.inputs import Inputs, as_inputs


PERCENTILES = (50, 90, 99)
BLOCK = 10  # timed runs of one model in a row (see the module's docstring)
_BOOTSTRAP_SAMPLES = 2000


@dataclass(frozen=True)
class LatencyStats:
    batch: Count
    runs: Count  # timed runs (warm-up excluded)
    p50_ms: Positive
    p90_ms: Positive
    p99_ms: Positive
    mean_ms: Positive
    std_ms: NonNegative
    # 95% bootstrap confidence interval of each percentile: {"p50": [low, high], ...}
    ci95_ms: dict[str, Annotated[list[NonNegative], Field(min_length=2, max_length=2)]] = field(default_factory=dict)

    def percentile(self, p: int) -> float:
        return {50: self.p50_ms, 90: self.p90_ms, 99: self.p99_ms}[p]


def interval_above(interval: list[float], other: list[float]) -> bool:
    """The whole of `interval` lies above `other`: a difference the timing noise cannot explain."""
    return interval[0] > other[1]


def summarize(times_ns: list[int] | np.ndarray, batch: int, seed: int = 0) -> LatencyStats:
    """Percentiles (numpy's linear interpolation) of timed runs in ms, with bootstrap 95% CIs.

    The intervals come from resampling the runs with replacement: on a shared, noisy machine a
    percentile is an estimate, and a budget verdict should know how sure it is.
    """
    ms = np.asarray(times_ns, dtype=np.float64) / 1e6
    if ms.size == 0:
        raise ValueError("no timed runs to summarize")
    p50, p90, p99 = np.percentile(ms, PERCENTILES)
    rng = np.random.default_rng(seed)
    resampled = ms[rng.integers(0, ms.size, size=(_BOOTSTRAP_SAMPLES, ms.size))]
    estimates = np.percentile(resampled, PERCENTILES, axis=1)  # (3, samples)
    low, high = np.percentile(estimates, [2.5, 97.5], axis=1)
    ci = {f"p{p}": [float(lo), float(hi)] for p, lo, hi in zip(PERCENTILES, low, high)}
    return LatencyStats(batch, int(ms.size), float(p50), float(p90), float(p99), float(ms.mean()), float(ms.std()), ci)


def time_interleaved(
    calls: dict[str, Callable[[int], object]], warmup: int, runs: int, min_seconds: float = 0.0, block: int = BLOCK
) -> dict[str, list[int]]:
    """Call each `calls[name](i)` `warmup` times untimed, then at least `runs` times timed, in
    rounds of `block` calls of each model in turn, going on until `min_seconds`
    have passed (at most 100 × runs per model). With several models, each block opens with one
    untimed call, which refills the caches the model before it evicted.

    Returns the timed durations in nanoseconds per name; warm-up calls never enter them.
    """
    for i in range(warmup):
        for call in calls.values():
            call(i)
    times: dict[str, list[int]] = {name: [] for name in calls}
    refill = len(calls) > 1
    began = time.perf_counter()
    i = 0  # timed calls of each model so far
    while i < runs or (time.perf_counter() - began < min_seconds and i < 100 * runs):
        take = min(block, runs - i) if i < runs else block
        for name, call in calls.items():
            if refill:
                call(i)
            for k in range(i, i + take):
                start = time.perf_counter_ns()
                call(k)
                times[name].append(time.perf_counter_ns() - start)
        i += take
    return times


def session_call(session, x: Inputs | np.ndarray, batch: int, length: int | None = None) -> Callable[[int], object]:
    """A call that runs `session` on the i-th batch of real inputs (cycling through `x`).

    Sequence inputs are cut or padded to exactly `length` tokens when it is given (latency at a
    stated sequence length), else each batch to its own longest row."""
    from edgekd.runtime.session import feeds

    x = as_inputs(x)
    count = max(1, len(x) // batch)
    prepared = [feeds(session, x.rows(k * batch, batch).sized(length)) for k in range(count)]  # built once: the timed call does nothing but run()
    run, count = session.run, len(prepared)
    return lambda i: run(None, prepared[i % count])


@dataclass(frozen=True)
class VersusFp32:
    """A quantized model against the fp32 model it came from, timed interleaved in one process
    (by export, to act on the target's if_slower_than_fp32, and by the bench, as a verdict)."""

    provider: str  # where it was timed (this machine's CPU for a CPU provider)
    p50_ms: float
    p50_ci95_ms: list[float]
    fp32_p50_ms: float
    fp32_p50_ci95_ms: list[float]
    bytes: int
    fp32_bytes: int
    slower: bool  # the whole 95% interval of its p50 lies above fp32's
    larger: bool


def versus_fp32(provider: str, mine: LatencyStats, fp32: LatencyStats, size: int, fp32_size: int) -> VersusFp32:
    return VersusFp32(provider, mine.p50_ms, mine.ci95_ms["p50"], fp32.p50_ms, fp32.ci95_ms["p50"], size, fp32_size,
                      slower=interval_above(mine.ci95_ms["p50"], fp32.ci95_ms["p50"]), larger=size > fp32_size)
