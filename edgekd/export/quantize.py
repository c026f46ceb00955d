"""Quantization with ONNX Runtime's own tooling — static QDQ, dynamic, fp16 — and `auto`.

ONNX Runtime's `quant_pre_process` runs first, as its documentation recommends; when it fails
(its symbolic shape inference gives up on dynamic-sequence transformer exports), it is retried
without symbolic shape inference, then skipped, and the result records why. Static QDQ is
calibrated on *training* inputs. When int8 costs more validation accuracy than the target allows
— beyond the budget *and* really worse than fp32 by the paired test on the validation images, not a
few images of noise — nodes are kept in fp32 as `exclusion.py` decides, up to `max_excluded_nodes`.
A fixed scheme's artifact is then timed
interleaved with the fp32 model on the target's provider: one that is slower or larger is a
warning, falls back to fp32, or is left for the bench to fail, as the target's
`if_slower_than_fp32` says. `auto` produces every candidate, times them with fp32 the same way,
and keeps the fastest one within the accuracy budget (fp32 included). Nothing here quantizes by hand.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgekd._io import atomic_path
from edgekd.runtime.session import fixed_batch, open_session
from edgekd._platform import cpu_info
from edgekd._progress import say
from edgekd.runtime.metrics import file_outcomes
from edgekd.runtime.timing import LatencyStats
from edgekd.runtime.timing import VersusFp32, versus_fp32
from edgekd.errors import TargetError, first_line
from edgekd.export._ortquant import Batches, quiet_ort
from edgekd.export.exclusion import AgainstFp32, ExclusionStep, produce_within_budget
from edgekd.inputs import Inputs, as_inputs
from edgekd.paired import PairedDrop
from edgekd.task import Task
from edgekd.task import task as task_entry
from edgekd.targets import CalibrationMethod, QuantizationConfig, QuantType, RuntimeConfig, Scheme, SlowerPolicy

SUFFIXES = {  # student.sim.onnx → student.int8.onnx, model.onnx → model.int8.onnx
    Scheme.static_qdq: ".int8.onnx",
    Scheme.dynamic: ".int8-dynamic.onnx",
    Scheme.fp16: ".fp16.onnx",
}
FP32_CANDIDATE = "fp32 (not quantized)"
_GPU_PROVIDERS = {"CUDAExecutionProvider", "TensorrtExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider"}


@dataclass(frozen=True)
class Candidate:
    name: str  # e.g. "static-qdq per-channel"
    scheme: str
    settings: dict[str, Any]
    val_accuracy: float  # the task's primary metric on the validation split
    drop: float  # vs the fp32 student, validation split (accuracy points; regression: relative RMSE rise)
    p50_ms: float  # on the target's provider, timed interleaved with the fp32 model
    bytes: int
    kept: bool


@dataclass(frozen=True)
class QuantizeResult:
    requested: str  # the scheme asked for ("auto" included)
    scheme: str  # the scheme of the deployed model
    path: str | None  # None for scheme "none": the fp32 model is deployed
    settings: dict[str, Any]  # per_channel, reduce_range, types, calibration method
    calibration_samples: int  # training images behind the activation ranges (0: none used)
    fp32_val_accuracy: float  # the task's primary metric (`metric`) on the validation split: accuracy, or rmse for regression
    val_accuracy: float  # ... of the deployed model
    drop_vs_fp32: float  # how much worse: accuracy points lost, or the relative RMSE rise (regression)
    budget: float  # max_drop_vs_fp32 of the target
    budget_met: bool
    excluded_nodes: list[str] = field(default_factory=list)
    steps: list[ExclusionStep] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    fp32_p50_ms: float | None = None  # measured only by auto
    cpu: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    nodes: int = 0
    bytes: int = 0
    preprocess: str = "quant_pre_process"  # what preparation ran, or why ORT's pre-processing was skipped
    drop_interval: list[float] = field(default_factory=list)  # 95% CI of drop_vs_fp32, paired on the validation images
    drop_p_value: float = 1.0  # exact McNemar test of the deployed model against fp32 on those images
    too_close_to_call: bool = False  # the drop exceeds the budget but is not distinguishable from noise
    versus_fp32: VersusFp32 | None = None  # a fixed scheme's artifact timed against fp32 (None: not measured, see warnings)
    fell_back: str = ""  # why fp32 was deployed instead of the requested scheme
    deployed_because: str = ""  # why the deployed file is the one that ships (if_slower_than_fp32 = "fastest")
    metric: str = "accuracy"  # the primary metric the val figures above are in


def artifact_name(source: Path, scheme: Scheme) -> str:
    """The quantized file's name, made from the fp32 source's (a simplified model's `.sim` dropped)."""
    stem = Path(source).name.removesuffix(".onnx").removesuffix(".sim")
    return stem + SUFFIXES[scheme]


@dataclass(frozen=True)
class _Job:
    """One quantization: what each of its steps reads."""

    source: Path  # the fp32 model
    prepared: Path  # after ORT's pre-processing
    out_dir: Path
    work: Path  # scratch folder for candidates
    cfg: QuantizationConfig
    calibration: Inputs
    judge: AgainstFp32  # the validation split, the task and the fp32 model's outcomes on it
    providers: list[str] | None
    runtime: RuntimeConfig | None
    size_limit: tuple[float, str] | None = None  # the target's size budgets: bytes allowed, and which budget


def quantize_model(
    source: Path,
    out_dir: Path,
    cfg: QuantizationConfig,
    calibration: Inputs | np.ndarray,
    x_val: Inputs | np.ndarray,
    y_val: np.ndarray,
    providers: list[str] | None = None,
    runtime: RuntimeConfig | None = None,
    task: str = "classification",
    size_limit: tuple[float, str] | None = None,
) -> QuantizeResult:
    """Quantize the fp32 model `source` as `cfg` says, calibrated on `calibration` (training
    inputs); decide on the validation split (`x_val`, `y_val`) by `task`'s primary metric; write
    the artifact into `out_dir`. `providers` and `runtime` are where the artifact is timed against
    fp32 (default: this CPU). `size_limit` is the largest file the target's size budgets allow and
    which budget says so: with if_slower_than_fp32 = "fastest", fp32 ships only within it."""
    source, out_dir = Path(source), Path(out_dir)
    calibration, x_val = as_inputs(calibration), as_inputs(x_val)
    kind = task_entry(task)
    judge = AgainstFp32(kind, x_val, y_val, file_outcomes(source, x_val, y_val, kind.name))
    if cfg.scheme is Scheme.none:
        return _fp32_result("none", source, judge, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".edgekd-quant-", dir=out_dir) as work_dir:
        work = Path(work_dir).resolve()  # absolute: ORT's tools run with the work folder as the working folder
        prepared, preprocess = prepare(source, work)
        job = _Job(source, prepared, out_dir, work, cfg, calibration, judge, providers, runtime, size_limit)
        if cfg.scheme is Scheme.auto:
            result = _auto(job)
        else:
            result = _finish(job, cfg.scheme, scheme_settings(cfg.scheme, cfg), requested=cfg.scheme.value)
            result = _against_fp32(result, job)
        return dataclasses.replace(result, preprocess=preprocess)


def _fp32_result(requested: str, source: Path, judge: AgainstFp32, cfg: QuantizationConfig, **more) -> QuantizeResult:
    """The result that deploys the fp32 model itself (scheme none, auto's choice, or a fallback)."""
    import onnx

    metric = judge.fp32_metric
    return QuantizeResult(requested, Scheme.none.value, None, {}, 0, metric, metric, 0.0, cfg.max_drop_vs_fp32, True,
                          metric=judge.kind.primary.name,
                          cpu=cpu_info(), nodes=len(onnx.load(str(source), load_external_data=False).graph.node),
                          bytes=Path(source).stat().st_size, drop_interval=[0.0, 0.0], **more)


def _against_fp32(result: QuantizeResult, job: _Job) -> QuantizeResult:
    """Time a fixed scheme's artifact against fp32; if it does not pay, act as the target says."""
    from edgekd.runtime.session import usable_providers

    source, cfg = job.source, job.cfg
    try:
        usable, _ = usable_providers(list(job.providers or ["CPUExecutionProvider"]))
    except TargetError as exc:
        return dataclasses.replace(result, warnings=[*result.warnings, f"{result.scheme} not timed against fp32: {exc}"])
    stats = time_against_fp32(source, {"quantized": Path(result.path)}, job.judge.x_val, usable, job.runtime)
    versus = versus_fp32(usable[0], stats["quantized"], stats["fp32"], result.bytes, Path(source).stat().st_size)
    result = dataclasses.replace(result, versus_fp32=versus, fp32_p50_ms=versus.fp32_p50_ms)
    if cfg.if_slower_than_fp32 is SlowerPolicy.fastest:
        return _fastest(result, job, versus)
    if not (versus.slower or versus.larger):
        return result
    costs = " and ".join(c for c, bad in ((f"slower ({versus.p50_ms:.4g} vs {versus.fp32_p50_ms:.4g} ms p50 on {versus.provider}, "
                                           f"int8 dot product: {cpu_info()['int8_dot_product']})", versus.slower),
                                          (f"larger ({versus.bytes:,} vs {versus.fp32_bytes:,} bytes)", versus.larger)) if bad)
    what = f"{result.scheme} is {costs} than the fp32 model" + _what_it_would_have_cost(result, job.judge)
    if cfg.if_slower_than_fp32 is SlowerPolicy.fallback:
        say(f"quantize: {what}: deploying fp32 instead (the target's if_slower_than_fp32 = \"fallback\")")
        Path(result.path).unlink()
        return _fp32_result(result.requested, source, job.judge, cfg, versus_fp32=versus, fp32_p50_ms=versus.fp32_p50_ms,
                            fell_back=what, warnings=[*result.warnings, f"{what}; deployed fp32 instead"])
    action = "the bench fails it" if cfg.if_slower_than_fp32 is SlowerPolicy.fail else "deployed anyway (if_slower_than_fp32 = \"warn\")"
    say(f"warning: {what}; {action}")
    return dataclasses.replace(result, warnings=[*result.warnings, f"{what}; {action}"])


def _what_it_would_have_cost(result: QuantizeResult, judge: AgainstFp32) -> str:
    """The quantized file's validation figure beside fp32's, for the line saying why fp32 ships instead:
    the int8 file is deleted, and a reader still wants to know whether accuracy was the reason."""
    primary = judge.kind.primary
    return (f"; {result.scheme} on the validation split: {primary.name} {primary.show(result.val_accuracy)} against fp32's "
            f"{primary.show(result.fp32_val_accuracy)}")


def _fastest(result: QuantizeResult, job: _Job, versus: VersusFp32) -> QuantizeResult:
    """if_slower_than_fp32 = "fastest": of the quantized file and fp32, ship the faster one that meets
    the target's size budgets (ties: the smaller); say why in the result."""
    fp32_bytes, timing = versus.fp32_bytes, f"{versus.p50_ms:.4g} vs {versus.fp32_p50_ms:.4g} ms p50 on {versus.provider}"
    limit, rule = job.size_limit or (None, "")
    fp32_fits = limit is None or fp32_bytes <= limit
    if not (versus.slower or versus.larger):
        because = f"{result.scheme} is not slower than fp32 ({timing}) and is {versus.bytes / fp32_bytes:.2f}× its size"
        return dataclasses.replace(result, deployed_because=because + ' (if_slower_than_fp32 = "fastest")')
    if fp32_fits:
        faster = f"{versus.fp32_p50_ms:.4g} ms p50 against {result.scheme}'s {versus.p50_ms:.4g} on {versus.provider}"
        why = (f"fp32 is faster ({faster})" if versus.slower else f"{result.scheme} is larger than fp32") + \
              (f" and its {fp32_bytes / 1024:.1f} KiB meet the size budgets ({rule})" if limit is not None else " and the target sets no size budget") + \
              _what_it_would_have_cost(result, job.judge)
        say(f"quantize: {why}: deploying fp32 (the target's if_slower_than_fp32 = \"fastest\")")
        Path(result.path).unlink()
        return _fp32_result(result.requested, job.source, job.judge, job.cfg, versus_fp32=versus, fp32_p50_ms=versus.fp32_p50_ms,
                            fell_back=why, deployed_because=why + ' (if_slower_than_fp32 = "fastest")', warnings=list(result.warnings))
    worse = f"slower than fp32 ({timing})" if versus.slower else f"larger than fp32 ({versus.bytes:,} vs {fp32_bytes:,} bytes)"
    because = (f"{result.scheme} is {worse}, but the fp32 file ({fp32_bytes / 1024:.1f} KiB) misses "
               f"the size budget ({limit / 1024:.1f} KiB, {rule}): the quantized file ships (if_slower_than_fp32 = \"fastest\")")
    say(f"quantize: {because}")
    return dataclasses.replace(result, deployed_because=because)


def _finish(job: _Job, scheme: Scheme, settings: dict[str, Any], requested: str, candidates: Sequence[Candidate] = (),
            fp32_p50: float | None = None, warnings: Sequence[str] = ()) -> QuantizeResult:
    """Produce the chosen scheme's artifact (accuracy-aware for static QDQ) and describe it."""
    import onnx

    cfg, calibration, judge = job.cfg, job.calibration, job.judge
    dest = job.out_dir / artifact_name(job.source, scheme)
    with atomic_path(dest) as tmp:
        excluded, steps, drop = produce_within_budget(
            job.prepared, tmp, job.work, lambda path, exclude: produce_variant(job.prepared, path, scheme, settings, calibration, exclude),
            cfg, calibration, judge, may_exclude=scheme is Scheme.static_qdq)
    warnings = list(warnings) + _drop_warnings(scheme, drop, cfg, judge.kind, len(excluded))
    return QuantizeResult(
        requested=requested, scheme=scheme.value, path=str(dest), settings=settings,
        calibration_samples=len(calibration) if scheme is Scheme.static_qdq else 0,
        fp32_val_accuracy=judge.fp32_metric, val_accuracy=steps[-1].val_accuracy, drop_vs_fp32=drop.drop, metric=judge.kind.primary.name,
        budget=cfg.max_drop_vs_fp32, budget_met=not drop.significantly_beyond(cfg.max_drop_vs_fp32),
        excluded_nodes=excluded, steps=steps, candidates=list(candidates), fp32_p50_ms=fp32_p50,
        cpu=cpu_info(), warnings=warnings, nodes=len(onnx.load(str(dest)).graph.node), bytes=dest.stat().st_size,
        drop_interval=drop.interval, drop_p_value=drop.p_value,
        too_close_to_call=drop.drop > cfg.max_drop_vs_fp32 and not drop.significantly_beyond(cfg.max_drop_vs_fp32),
    )


def _drop_warnings(scheme: Scheme, drop: PairedDrop, cfg: QuantizationConfig, kind: Task, excluded: int) -> list[str]:
    """What the user should know about the artifact's drop against fp32: beyond the budget for sure,
    or beyond it by an amount the validation split cannot tell from noise."""
    worse = f"{scheme.value}: validation {kind.primary.name} worse than fp32 by {kind.show_drop(drop.drop)}"
    if drop.significantly_beyond(cfg.max_drop_vs_fp32):
        return [f"{worse} (95% CI {kind.show_drop(drop.interval[0])} to {kind.show_drop(drop.interval[1])}; budget "
                f"{kind.show_drop(cfg.max_drop_vs_fp32)}) even with {excluded} node(s) excluded; consider scheme 'none' or a larger calibration set"]
    if drop.drop > cfg.max_drop_vs_fp32:
        return [f"{worse} (budget {kind.show_drop(cfg.max_drop_vs_fp32)}), but fp32 does better on {drop.only_first} sample(s) and "
                f"worse on {drop.only_second} of {drop.images} (paired test p = {drop.p_value:.2g}): too close to call, so no node was "
                "excluded for it; a larger validation split would tell"]
    return []


def _auto(job: _Job) -> QuantizeResult:
    """Produce every candidate, time them with the fp32 model on the target's provider, keep one."""
    from edgekd.runtime.session import usable_providers

    try:
        usable, _ = usable_providers(list(job.providers or ["CPUExecutionProvider"]))
    except TargetError as exc:
        raise TargetError(f"scheme 'auto' times the candidates on the target's provider: {exc}") from None
    cfg, source, judge = job.cfg, job.source, job.judge
    candidates_spec, warnings = _auto_candidates(job, usable[0])
    files, metrics, drops = {}, {}, {}
    for index, (name, scheme, settings) in enumerate(candidates_spec):
        path = job.work / f"candidate{index}.onnx"
        produce_variant(job.prepared, path, scheme, settings, job.calibration, exclude=[])
        files[name] = path
        metrics[name], drops[name] = judge.measure(path)
    say(f"quantize: timing {len(files)} candidates against fp32 on {usable[0]}")
    p50 = {n: stats.p50_ms for n, stats in time_against_fp32(source, files, judge.x_val, usable, job.runtime).items()}
    within = [n for n in files if not drops[n].significantly_beyond(cfg.max_drop_vs_fp32)]
    chosen = min(within + ["fp32"], key=lambda n: p50[n])  # fp32 is a candidate: int8 ships only when it pays
    if chosen == "fp32":
        why = f"no quantized candidate stays within the {judge.kind.primary.name} budget" if not within else \
            f"fp32 is the fastest ({p50['fp32']:.4f} ms p50 vs {min(p50[n] for n in within):.4f} ms for the best int8 within budget)"
        warnings.append(f"auto: deploying the fp32 model: {why} on this CPU (int8 dot-product instructions: {cpu_info()['int8_dot_product']})")
    candidates = [
        Candidate(n, s.value, st, metrics[n], drops[n].drop, p50[n], files[n].stat().st_size, n == chosen)
        for n, s, st in candidates_spec
    ] + [Candidate(FP32_CANDIDATE, Scheme.none.value, {}, judge.fp32_metric, 0.0, p50["fp32"], Path(source).stat().st_size, chosen == "fp32")]
    for w in warnings:
        say(f"warning: {w}")
    if chosen == "fp32":
        return _fp32_result("auto", source, judge, cfg, candidates=candidates, fp32_p50_ms=p50["fp32"], warnings=warnings)
    scheme, settings = next((s, st) for n, s, st in candidates_spec if n == chosen)
    return _finish(job, scheme, settings, requested="auto", candidates=candidates, fp32_p50=p50["fp32"], warnings=warnings)


def _auto_candidates(job: _Job, provider: str) -> tuple[list[tuple[str, Scheme, dict[str, Any]]], list[str]]:
    """What `auto` tries on this graph and provider (name, scheme, settings), and why it left any out."""
    import onnx

    cfg = job.cfg
    candidates_spec = [
        ("static-qdq per-tensor", Scheme.static_qdq, {**scheme_settings(Scheme.static_qdq, cfg), "per_channel": False, "reduce_range": False}),
        ("static-qdq per-channel", Scheme.static_qdq, {**scheme_settings(Scheme.static_qdq, cfg), "per_channel": True, "reduce_range": False}),
        ("static-qdq per-channel reduce-range", Scheme.static_qdq, {**scheme_settings(Scheme.static_qdq, cfg), "per_channel": True, "reduce_range": True}),
    ]
    warnings = []
    graph = onnx.load(str(job.prepared), load_external_data=False)
    convs, matmuls = _op_counts(graph)
    if convs > matmuls:  # ORT's dynamic int8 quantizes MatMul/Gemm only: around convolutions it adds cost, not speed
        warnings.append(f"auto: dynamic int8 not tried: the graph is convolution-dominated ({convs:,} MACs in Conv vs {matmuls:,} in MatMul/Gemm), "
                        "where ONNX Runtime's dynamic int8 is usually several times slower than fp32; --scheme dynamic measures it")
    else:
        candidates_spec.append(("dynamic", Scheme.dynamic, scheme_settings(Scheme.dynamic, cfg)))
    if _is_transformer(graph):  # ORT's offline transformer fusions: a candidate, kept only if it pays
        candidates_spec.append(("dynamic + transformer fusions", Scheme.dynamic, {**scheme_settings(Scheme.dynamic, cfg), "fusions": True}))
    if provider in _GPU_PROVIDERS:
        candidates_spec.append(("fp16", Scheme.fp16, {}))
    return candidates_spec, warnings


def time_against_fp32(source: Path, files: dict[str, Path], x: Inputs, providers: list[str], runtime: RuntimeConfig | None,
                      warmup: int = 20, runs: int = 200) -> dict[str, LatencyStats]:
    """Latency of each file and of the fp32 `source` ("fp32"), timed interleaved in this process on
    `providers` at the model's fixed batch (else 1): ratios that hold on a noisy machine."""
    from edgekd.runtime.timing import session_call, summarize, time_interleaved

    sessions = {"fp32": open_session(source, providers, runtime), **{n: open_session(p, providers, runtime) for n, p in files.items()}}
    batch = fixed_batch(sessions["fp32"]) or 1
    times = time_interleaved({n: session_call(s, x, batch) for n, s in sessions.items()}, warmup=warmup, runs=runs)
    return {n: summarize(t, batch) for n, t in times.items()}


def scheme_settings(scheme: Scheme, cfg: QuantizationConfig) -> dict[str, Any]:
    if scheme is Scheme.static_qdq:
        return {
            "per_channel": cfg.per_channel, "reduce_range": cfg.reduce_range,
            "activation_type": cfg.activation_type.value, "weight_type": cfg.weight_type.value,
            "calibration_method": cfg.calibration_method.value,
        }
    if scheme is Scheme.dynamic:
        return {"per_channel": cfg.per_channel, "reduce_range": cfg.reduce_range, "weight_type": cfg.weight_type.value}
    return {}


def prepare(source: Path, work: Path) -> tuple[Path, str]:
    """ORT's quant_pre_process (shape inference, optimisation), then name every node for exclusion.

    Returns the prepared file and what preparation ran: its symbolic shape inference fails on
    dynamic-sequence transformer graphs, so it is retried without it, then skipped (the model
    is quantized as exported), and the reason is kept for the result."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source, work = Path(source).resolve(), Path(work).resolve()  # quiet_ort changes the working folder
    prepared = work / "prepared.onnx"
    note = "quant_pre_process"
    try:
        with quiet_ort(work):
            quant_pre_process(str(source), str(prepared))
    except Exception as exc:  # ORT raises plain Exceptions from its shape inference
        first = first_line(exc)
        try:
            with quiet_ort(work):
                quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            note = f"quant_pre_process without symbolic shape inference (it failed: {first})"
        except Exception as again:
            shutil.copyfile(source, prepared)
            note = f"skipped: quant_pre_process failed ({first}; without symbolic shapes: {first_line(again)})"
        say(f"quantize: {note}")
    model = onnx.load(str(prepared))
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{index}"
        seen.add(node.name)
    onnx.save(model, str(prepared))
    return prepared, note


def produce_variant(prepared: Path, dest: Path, scheme: Scheme, settings: dict[str, Any], calibration: Inputs, exclude: list[str],
             scales: dict[str, tuple[float, int]] | None = None) -> None:
    """Write one quantized variant of `prepared` to `dest` with ONNX Runtime's quantizers.

    `scales` (static QDQ) fixes activation tensors' (scale, zero point) instead of calibrating
    them: how quantization-aware training's learned scales reach the file."""
    from onnxruntime.quantization import CalibrationMethod as OrtCalibration
    from onnxruntime.quantization import QuantFormat, quantize_dynamic, quantize_static
    from onnxruntime.quantization import QuantType as OrtQuantType

    types = {QuantType.int8.value: OrtQuantType.QInt8, QuantType.uint8.value: OrtQuantType.QUInt8}
    with quiet_ort():  # its warnings (a LayerNorm weight's per-channel axis, say) are not the user's to act on
        if scheme is Scheme.static_qdq:
            methods = {
                CalibrationMethod.minmax.value: OrtCalibration.MinMax,
                CalibrationMethod.entropy.value: OrtCalibration.Entropy,
                CalibrationMethod.percentile.value: OrtCalibration.Percentile,
            }
            quantize_static(
                str(prepared), str(dest), Batches(prepared, calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=settings["per_channel"], reduce_range=settings["reduce_range"],
                activation_type=types[settings["activation_type"]], weight_type=types[settings["weight_type"]],
                calibrate_method=methods[settings["calibration_method"]],
                nodes_to_exclude=list(exclude),
                extra_options={"TensorQuantOverrides": _overrides(scales, settings["activation_type"])} if scales else None,
            )
        elif scheme is Scheme.dynamic:
            source = _fused(prepared) if settings.get("fusions") else prepared
            quantize_dynamic(
                str(source), str(dest), per_channel=settings["per_channel"], reduce_range=settings["reduce_range"],
                weight_type=types[settings["weight_type"]],
            )
        elif scheme is Scheme.fp16:
            import onnx
            from onnxruntime.transformers.float16 import convert_float_to_float16

            onnx.save(convert_float_to_float16(onnx.load(str(prepared)), keep_io_types=True), str(dest))
        else:
            shutil.copyfile(prepared, dest)


def _overrides(scales: dict[str, tuple[float, int]], activation_type: str) -> dict[str, list[dict[str, Any]]]:
    dtype = np.int8 if activation_type == QuantType.int8.value else np.uint8
    return {name: [{"scale": np.array(scale, dtype=np.float32), "zero_point": np.array(zero, dtype=dtype)}] for name, (scale, zero) in scales.items()}


def _op_counts(model) -> tuple[int, int]:
    """Per-sample MACs in (convolutions, matrix products): what decides whether dynamic int8 can pay."""
    from edgekd.runtime.graph import macs_by_kind

    macs = macs_by_kind(model)
    return macs["conv"], macs["matmul"]


def _is_transformer(model) -> bool:
    """Softmax over MatMul scores beside LayerNormalization: the graphs ORT's transformer optimizer fuses."""
    return {"Softmax", "MatMul", "LayerNormalization"} <= {node.op_type for node in model.graph.node}


def _fused(prepared: Path) -> Path:
    """The prepared model after ONNX Runtime's transformer optimizer (LayerNorm, Gelu, attention fusions
    where its patterns match), written beside it once."""
    fused = prepared.with_name(prepared.stem + ".fused.onnx")
    if not fused.is_file():
        from onnxruntime.transformers.optimizer import optimize_model

        optimize_model(str(prepared), model_type="bert", num_heads=0, hidden_size=0).save_model_to_file(str(fused))  # quiet: produce_variant
    return fused

