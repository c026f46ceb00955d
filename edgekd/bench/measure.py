"""Measure every variant side by side: accuracy, latency (with intervals), a batch sweep,
throughput, achieved GFLOP/s and session memory.

All timings of one kind are interleaved across the variants, so the comparison between teacher,
fp32 student and deployed student is fair even when the machine's load changes mid-run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekd._ort import fixed_batch
from edgekd.bench.accuracy import top_k
from edgekd.bench.latency import LatencyStats, session_call, summarize, time_interleaved
from edgekd.bench.memory import MemoryStats, session_memory
from edgekd.bench.profile import GraphProfile, read_profile
from edgekd.targets import BenchConfig


@dataclass(frozen=True)
class VariantReport:
    name: str  # "teacher fp32", "student fp32", "student int8", or the file name
    file: str
    profile: GraphProfile
    accuracy: float | None  # top-1 on the test split (None without labelled data)
    top5: float | None  # top-5, when the model has more than 5 classes
    latency: LatencyStats  # at the target's latency batch (or the model's fixed batch)
    throughput: float  # samples per second at the throughput batch
    throughput_batch: int
    gflops: float  # achieved GFLOP/s at the throughput batch (2 × MACs × samples/s)
    memory: MemoryStats | None  # session memory, measured in a child process
    sweep: dict[str, LatencyStats] = field(default_factory=dict)  # latency per batch size


def measure_variants(
    files: dict[str, Path],
    sessions: dict[str, object],
    x: np.ndarray,
    y: np.ndarray | None,
    cfg: BenchConfig,
    providers: list[str],
    memory: bool = True,
) -> list[VariantReport]:
    """Figures for every session in `sessions` (named like `files`), measured interleaved."""
    scores = {n: top_k(s, x, y, n) if y is not None else (None, None) for n, s in sessions.items()}
    batch = {n: fixed_batch(s) or cfg.latency_batch for n, s in sessions.items()}  # fixed shapes run their own batch
    bulk_batch = {n: fixed_batch(s) or cfg.throughput_batch for n, s in sessions.items()}
    latency = time_interleaved(_calls(sessions, x, batch, providers), cfg.warmup_runs, cfg.runs, cfg.min_seconds)
    throughput_runs = max(10, cfg.runs // 10)
    bulk = time_interleaved(_calls(sessions, x, bulk_batch, providers), 2, throughput_runs)
    sweep = _sweep(sessions, x, cfg, providers)
    reports = []
    for name, session in sessions.items():
        profile = read_profile(files[name])
        throughput = bulk_batch[name] * throughput_runs / (sum(bulk[name]) / 1e9)
        reports.append(VariantReport(
            name=name,
            file=str(files[name]),
            profile=profile,
            accuracy=scores[name][0],
            top5=scores[name][1],
            latency=summarize(latency[name], batch[name]),
            throughput=throughput,
            throughput_batch=bulk_batch[name],
            gflops=2 * profile.macs * throughput / 1e9,
            memory=session_memory(files[name], providers, bulk_batch[name]) if memory else None,
            sweep=sweep.get(name, {}),
        ))
    return reports


def _sweep(sessions, x, cfg: BenchConfig, providers) -> dict[str, dict[str, LatencyStats]]:
    """p50 and intervals at each sweep batch, for the models whose batch axis is dynamic."""
    dynamic = {n: s for n, s in sessions.items() if fixed_batch(s) is None}
    result: dict[str, dict[str, LatencyStats]] = {n: {} for n in dynamic}
    runs = max(30, cfg.runs // 3)
    for b in cfg.sweep_batches:
        times = time_interleaved(_calls(dynamic, x, {n: b for n in dynamic}, providers), max(2, cfg.warmup_runs // 4), runs)
        for name in dynamic:
            result[name][str(b)] = summarize(times[name], b)
    return result


def _calls(sessions, x, batch, providers):
    if providers and providers[0] == "CUDAExecutionProvider":
        return {n: bound_call(s, x, batch[n], "cuda") for n, s in sessions.items()}
    return {n: session_call(s, x, batch[n]) for n, s in sessions.items()}


def bound_call(session, x: np.ndarray, batch: int, device: str = "cuda"):
    """IO binding: inputs and outputs live on `device` (on CUDA: the GPU), so timing measures the
    model, not host↔device copies. Tested with device="cpu", which takes the same code path."""
    import onnxruntime as ort

    name = session.get_inputs()[0].name
    count = max(1, len(x) // batch)
    bindings = []
    for k in range(count):
        chunk = np.ascontiguousarray(np.resize(x[k * batch : (k + 1) * batch], (batch, *x.shape[1:])).astype(np.float32))
        binding = session.io_binding()
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(chunk, device, 0))
        for output in session.get_outputs():
            binding.bind_output(output.name, device)
        bindings.append(binding)

    def call(i: int):
        binding = bindings[i % len(bindings)]
        binding.synchronize_inputs()
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return binding

    return call

