"""Measure every variant side by side: accuracy, latency (with intervals), a batch sweep,
throughput, achieved GFLOP/s and session memory.

All timings of one kind are interleaved across the variants, so the comparison between teacher,
fp32 student and deployed student is fair even when the machine's load changes mid-run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekd._config import Count, NonNegative, Positive, Share
from edgekd.runtime.session import feeds, fixed_batch
from edgekd.runtime.metrics import checked_outputs
from edgekd.task import task
from edgekd.runtime.timing import LatencyStats, session_call, summarize, time_interleaved
from edgekd.bench.memory import MemoryStats, session_memory
from edgekd.runtime.graph import GraphProfile, read_profile
from edgekd.errors import first_line
from edgekd.inputs import Inputs, as_inputs
from edgekd.roles import Role
from edgekd.targets import BenchConfig


@dataclass(frozen=True)
class VariantReport:
    name: str  # for people: "teacher fp32", "student fp32", "student int8", or the file name
    file: str
    profile: GraphProfile
    accuracy: Share | None  # top-1 on the test split (None without labelled data, and for other tasks: see `metrics`)
    top5: Share | None  # top-5, when the model has more than 5 classes
    latency: LatencyStats  # at the target's latency batch (or the model's fixed batch)
    throughput: Positive  # samples per second at the throughput batch
    throughput_batch: Count
    gflops: NonNegative  # achieved GFLOP/s at the throughput batch (2 × MACs × samples/s)
    memory: MemoryStats | None  # session memory, measured in a child process
    sweep: dict[str, LatencyStats] = field(default_factory=dict)  # latency per batch size
    sequence_length: int | None = None  # text: the tokens per input of the latency and batch-sweep figures
    length_sweep: dict[str, LatencyStats] = field(default_factory=dict)  # text: latency per sequence length, batch latency_batch
    role: Role = Role.model  # what the model is in the run: what the code looks it up by
    metrics: dict[str, float] = field(default_factory=dict)  # every metric of the task on the test split, by name
    per_class: list[float | None] | None = None  # segmentation: IoU of each class on the test split (None: absent from both)
    # detection: the model and the task's post-processing (decode + NMS) as an app runs them, timed
    # interleaved with the model alone at the latency batch; the latency budget holds this one
    postprocessed: LatencyStats | None = None
    nms_graph: LatencyStats | None = None  # the same with NMS inside the ONNX graph ([export] include_nms), timed alike

    def primary(self, metric: str) -> float | None:
        """The variant's figure of the report's primary metric (None: not measured)."""
        return self.accuracy if metric == "accuracy" else self.metrics.get(metric)


def measure_variants(
    files: dict[Role, Path],
    sessions: dict[Role, object],
    names: dict[Role, str],
    x: Inputs | np.ndarray,
    y: np.ndarray | None,
    cfg: BenchConfig,
    providers: list[str],
    memory: bool = True,
    max_length: int | None = None,
    task_name: str = "classification",
    nms_sessions: dict[Role, object] | None = None,
) -> tuple[list[VariantReport], dict[Role, np.ndarray | None]]:
    """Figures for every session in `sessions` (by role, like `files`), measured interleaved, and
    each model's per-sample outcomes under the task (top-1 hits, squared errors; None without
    labels) for paired comparisons.

    Text models are timed at `sequence_length` tokens (the target's, else the median test text)
    and swept over `sweep_lengths` up to `max_length` (the longest input the data keeps) as well as
    over batch sizes. `nms_sessions`: detection models with NMS inside, timed with the role's model."""
    x = as_inputs(x)
    length = sequence_length(x, cfg)
    if length and max_length:
        length = min(length, max_length)
    scores = {n: _scores(s, x, y, names[n], task_name) for n, s in sessions.items()}
    batch = {n: fixed_batch(s) or cfg.latency_batch for n, s in sessions.items()}  # fixed shapes run their own batch
    bulk_batch = {n: fixed_batch(s) or cfg.throughput_batch for n, s in sessions.items()}
    calls = _calls(sessions, x, batch, providers, length)
    in_graph = {(n, "graph"): c for n, c in _calls(nms_sessions or {}, x, batch, providers, length).items()}
    latency = time_interleaved({**calls, **_postprocessed(calls, task_name), **in_graph}, cfg.warmup_runs, cfg.runs, cfg.min_seconds)
    throughput_runs = max(10, cfg.runs // 10)
    bulk = time_interleaved(_calls(sessions, x, bulk_batch, providers, length), 2, throughput_runs)
    sweep = _sweep(sessions, x, cfg, providers, length)
    lengths = [n for n in cfg.sweep_lengths if not max_length or n <= max_length]
    length_sweep = _length_sweep(sessions, x, lengths, cfg, providers, batch) if length else {}
    reports = []
    for name, session in sessions.items():
        profile = read_profile(files[name], length)
        throughput = bulk_batch[name] * throughput_runs / (sum(bulk[name]) / 1e9)
        reports.append(VariantReport(
            name=names[name],
            role=name,
            file=str(Path(files[name]).resolve()),
            profile=profile,
            accuracy=scores[name].metrics.get("accuracy"),
            top5=scores[name].top5,
            latency=summarize(latency[name], batch[name]),
            throughput=throughput,
            throughput_batch=bulk_batch[name],
            gflops=2 * profile.macs * throughput / 1e9,
            memory=_memory(files[name], session, x, providers, bulk_batch[name], length) if memory else None,
            sweep=sweep.get(name, {}),
            sequence_length=length,
            length_sweep=length_sweep.get(name, {}),
            metrics=scores[name].metrics,
            per_class=scores[name].per_class,
            postprocessed=summarize(latency[(name, "post")], batch[name]) if (name, "post") in latency else None,
            nms_graph=summarize(latency[(name, "graph")], batch[name]) if (name, "graph") in latency else None,
        ))
    return reports, {n: score.outcomes for n, score in scores.items()}


def _postprocessed(calls: dict, task_name: str) -> dict:
    """(role, "post") → the model's call followed by the task's post-processing of its outputs (none
    for tasks without one). Outputs bound on a device (CUDA timing) are read back first, as an app must."""
    post = task(task_name).postprocess
    if post is None:
        return {}
    import importlib

    module, name = post[0].split(":")
    function = getattr(importlib.import_module(module), name)

    def then(call):
        def run(i: int):
            out = call(i)
            return function(out[0] if isinstance(out, list) else out.copy_outputs_to_cpu()[0])
        return run

    return {(role, "post"): then(call) for role, call in calls.items()}


@dataclass(frozen=True)
class _Scores:
    outcomes: np.ndarray | None  # per sample: top-1 hit, squared error
    top5: float | None
    metrics: dict[str, float]
    per_class: list[float | None] | None = None


def _scores(session, x: Inputs, y: np.ndarray | None, label: str, task_name: str) -> _Scores:
    """A model's outcomes and metrics on the labelled test samples (nothing without labels)."""
    if y is None:
        return _Scores(None, None, {})
    kind = task(task_name)
    outputs = checked_outputs(session, x, y, label, task_name)
    metrics, outcomes = kind.score(outputs, y), kind.per_sample(outputs, y)
    return _Scores(outcomes, metrics.get("top5"), metrics, kind.per_class[1](outcomes) if kind.per_class else None)


def _memory(path, session, x: Inputs, providers, batch: int, length: int | None) -> MemoryStats:
    """Session memory on one real batch at the throughput batch (and the bench's sequence length)."""
    return session_memory(path, providers, feeds(session, x.rows(0, batch).sized(length)))


def sequence_length(x: Inputs, cfg: BenchConfig) -> int | None:
    """The stated length for text latency: the target's, else the median real length of the test inputs."""
    lengths = x.lengths()
    if lengths is None:
        return None
    return cfg.sequence_length or max(1, int(np.median(lengths)))


def _length_sweep(sessions, x: Inputs, lengths: list[int], cfg: BenchConfig, providers, batch) -> dict[str, dict[str, LatencyStats]]:
    """p50 and intervals at each sweep length, at the latency batch."""
    result: dict[str, dict[str, LatencyStats]] = {n: {} for n in sessions}
    runs = max(30, cfg.runs // 3)
    for length in _runnable(sessions, x, lengths, batch):
        times = time_interleaved(_calls(sessions, x, batch, providers, length), max(2, cfg.warmup_runs // 4), runs)
        for name in sessions:
            result[name][str(length)] = summarize(times[name], batch[name])
    return result


def _runnable(sessions, x: Inputs, lengths: list[int], batch) -> list[int]:
    """The sweep lengths every model can run: a bare ONNX file does not say how many positions it has."""
    from edgekd._progress import say

    ok = []
    for length in lengths:
        for name, session in sessions.items():
            try:
                session_call(session, x, batch[name], length)(0)
            except Exception as exc:  # ORT raises its own pybind types for shapes a model cannot take
                reason = first_line(exc, 160)
                say(f"bench: {getattr(name, 'value', name)} cannot run {length} tokens ({reason}); the length sweep leaves {length} out")
                break
        else:
            ok.append(length)
    return ok


def _sweep(sessions, x, cfg: BenchConfig, providers, length: int | None) -> dict[str, dict[str, LatencyStats]]:
    """p50 and intervals at each sweep batch, for the models whose batch axis is dynamic."""
    dynamic = {n: s for n, s in sessions.items() if fixed_batch(s) is None}
    result: dict[str, dict[str, LatencyStats]] = {n: {} for n in dynamic}
    runs = max(30, cfg.runs // 3)
    for b in cfg.sweep_batches:
        times = time_interleaved(_calls(dynamic, x, {n: b for n in dynamic}, providers, length), max(2, cfg.warmup_runs // 4), runs)
        for name in dynamic:
            result[name][str(b)] = summarize(times[name], b)
    return result


def _calls(sessions, x, batch, providers, length: int | None = None):
    if providers and providers[0] == "CUDAExecutionProvider":
        return {n: bound_call(s, x, batch[n], "cuda", length) for n, s in sessions.items()}
    return {n: session_call(s, x, batch[n], length) for n, s in sessions.items()}


def bound_call(session, x: Inputs | np.ndarray, batch: int, device: str = "cuda", length: int | None = None):
    """IO binding: inputs and outputs live on `device` (on CUDA: the GPU), so timing measures the
    model, not host↔device copies. Tested with device="cpu", which takes the same code path."""
    import onnxruntime as ort

    x = as_inputs(x)
    count = max(1, len(x) // batch)
    bindings = []
    for k in range(count):
        binding = session.io_binding()
        for name, array in feeds(session, x.rows(k * batch, batch).sized(length)).items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, device, 0))
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

