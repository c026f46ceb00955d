"""Measure a candidate student as it would ship, before any training: exported, simplified,
quantized with the target's scheme on real calibration inputs, and timed with ONNX Runtime on the
target's providers and threads at its batch (and sequence length), interleaved with its own fp32 model.

Random weights cost the same to run as trained ones: the graph, shapes and bytes are what decide
latency and size. Measurements are cached by (candidate, target, data layout, versions, CPU), so a
second search over an overlapping space only times what is new.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from edgekd._io import to_jsonable, write_json
from edgekd._progress import hushed
from edgekd.data.splits import DataSplits
from edgekd.errors import EdgekdError, first_line
from edgekd.search.space import Candidate
from edgekd.targets import Scheme, SlowerPolicy, Target, size_limit

_CALIBRATION_ROWS = 128  # enough to set activation ranges; the trained student is calibrated again at export
_JUDGE_ROWS = 64
_MIN_SECONDS = 0.5  # tiny models run in microseconds: time at least this long, so a candidate's figure is not one scheduler tick  # quantize_model's validation judge needs some rows; random weights make its verdict moot


@dataclass(frozen=True)
class Measurement:
    params: int
    macs: int  # multiply-accumulates per sample, read from the ONNX graph
    fp32_bytes: int  # the simplified fp32 file
    deployed_bytes: int  # the file the target would ship
    scheme: str  # the deployed file's scheme ("static-qdq", "fp16", "none" for fp32)
    latency_ms: float  # the deployed file at the budget's percentile, at `batch` (and `sequence_length`)
    p50_ms: float
    p90_ms: float
    fp32_latency_ms: float  # the fp32 model at the same percentile, timed interleaved with it
    int8_pays: bool | None  # the quantized file is faster than fp32 (None: nothing quantized)
    batch: int
    sequence_length: int | None
    seconds: float  # what measuring took (export, simplify, quantize, timing)


def measure(candidate: Candidate, data: DataSplits, target: Target, seed: int, runs: int,
            standardize_targets: bool = True) -> Measurement:
    """The candidate's measurement, from the cache when this exact measurement was made before."""
    path = _cache_path(candidate, data, target, runs)
    if path.is_file():
        try:
            return Measurement(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            path.unlink(missing_ok=True)  # a damaged cache entry is measured again
    result = _measure(candidate, data, target, seed, runs, standardize_targets)
    write_json(path, result)
    return result


def _measure(candidate: Candidate, data: DataSplits, target: Target, seed: int, runs: int, standardize_targets: bool) -> Measurement:
    import torch

    from edgekd.export.quantize import quantize_model
    from edgekd.export.stage import export_model
    from edgekd.models.build import build_model, spec_for
    from edgekd.runtime.graph import read_profile

    began = time.perf_counter()
    spec = spec_for(candidate.family, candidate.args, data, standardize_targets)
    torch.manual_seed(seed)
    model = build_model(spec).eval()
    params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory(prefix="edgekd-search-") as folder:
        exported = export_model(model, data.x_test[: min(64, len(data.x_test))], target.export, Path(folder), name="candidate", task=data.task)
        cfg = replace(target.quantization, max_excluded_nodes=0, if_slower_than_fp32=SlowerPolicy.warn)
        with hushed():  # its warnings (int8 slower than fp32) are this search's measurement, reported as int8_pays
            quantized = quantize_model(exported.path, Path(folder), cfg, data.x_train[:_CALIBRATION_ROWS], data.x_val[:_JUDGE_ROWS],
                                       data.y_val[:_JUDGE_ROWS], providers=list(target.runtime.providers), runtime=target.runtime, task=data.task)
        deployed = Path(quantized.path) if quantized.path else exported.path
        timed = _time(exported.path, deployed, data, target, runs)
        fp32_ms, deployed_ms = (timed[n].percentile(target.budgets.latency_percentile) for n in ("fp32", "deployed"))
        slower = quantized.path is not None and deployed_ms > fp32_ms
        scheme = quantized.scheme if quantized.path else Scheme.none.value
        if slower and _ships_fp32(target, exported.path.stat().st_size):
            deployed, timed["deployed"], deployed_ms, scheme = exported.path, timed["fp32"], fp32_ms, Scheme.none.value  # what export would ship
        profile = read_profile(exported.path, timed["length"])
        return Measurement(
            params=params, macs=int(profile.macs), fp32_bytes=exported.path.stat().st_size, deployed_bytes=deployed.stat().st_size,
            scheme=scheme, latency_ms=deployed_ms, p50_ms=timed["deployed"].p50_ms, p90_ms=timed["deployed"].p90_ms,
            fp32_latency_ms=fp32_ms, int8_pays=None if quantized.path is None else not slower, batch=timed["deployed"].batch,
            sequence_length=timed["length"], seconds=time.perf_counter() - began)


def _ships_fp32(target: Target, fp32_bytes: int) -> bool:
    """Whether export would ship fp32 instead of a slower quantized file. With "fastest", only within
    max_size_kb: min_compression needs the teacher, which the search trains after measuring."""
    policy = target.quantization.if_slower_than_fp32
    if policy is SlowerPolicy.fastest:
        allowed = size_limit(target, teacher_bytes=None)  # the rule export applies, less the teacher's budget
        return allowed is None or fp32_bytes <= allowed[0]
    return policy is SlowerPolicy.fallback


def _time(fp32: Path, deployed: Path, data: DataSplits, target: Target, runs: int) -> dict:
    """The fp32 and deployed files timed interleaved on the target's providers and session options."""
    from edgekd.bench.measure import sequence_length
    from edgekd.runtime.session import fixed_batch, open_session, usable_providers
    from edgekd.runtime.timing import session_call, summarize, time_interleaved

    providers, _ = usable_providers(list(target.runtime.providers))
    sessions = {"fp32": open_session(fp32, providers, target.runtime), "deployed": open_session(deployed, providers, target.runtime)}
    length = sequence_length(data.x_test, target.bench)
    batch = {n: fixed_batch(s) or target.bench.latency_batch for n, s in sessions.items()}
    calls = {n: session_call(s, data.x_test, batch[n], length) for n, s in sessions.items()}
    times = time_interleaved(calls, max(target.bench.warmup_runs, 20), runs, _MIN_SECONDS)
    return {**{n: summarize(times[n], batch[n]) for n in sessions}, "length": length}


def _cache_path(candidate: Candidate, data: DataSplits, target: Target, runs: int) -> Path:
    """Where this measurement is cached: keyed by everything that decides the figures."""
    from edgekd._platform import cpu_info
    from edgekd._cache import cache_dir
    from edgekd.runfolder import versions

    layout = {"inputs": [to_jsonable(s) for s in data.inputs], "outputs": data.num_classes, "task": data.task,
              "vocab": data.vocab_size, "lengths": None if data.x_test.lengths() is None else int(sum(data.x_test.lengths()))}
    identity = {"candidate": [candidate.family, candidate.args], "target": to_jsonable(asdict(target)), "data": layout,
                "versions": versions(), "cpu": cpu_info(), "runs": runs}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return cache_dir() / "search" / f"{key}.json"


def measured_or_why(candidate: Candidate, data: DataSplits, target: Target, seed: int, runs: int,
                    standardize_targets: bool = True) -> Measurement | str:
    """The measurement, or why the candidate cannot be measured (it does not build, export or quantize): one line."""
    try:
        return measure(candidate, data, target, seed, runs, standardize_targets)
    except EdgekdError as exc:
        return first_line(exc, 300)
    except (RuntimeError, TypeError, ValueError) as exc:  # the exporters and model builders raise many types
        return f"cannot build or export: {first_line(exc, 300)}"
