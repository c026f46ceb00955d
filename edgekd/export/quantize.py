"""Quantization with ONNX Runtime's own tooling — static QDQ, dynamic, fp16 — and `auto`.

ONNX Runtime's `quant_pre_process` runs first, as its documentation recommends; when it fails
(its symbolic shape inference gives up on dynamic-sequence transformer exports), it is retried
without symbolic shape inference, then skipped, and the result records why. Static QDQ is
calibrated on *training* inputs. When int8 costs more validation accuracy than the target allows,
nodes are ranked by their quantization error (ORT's QDQ debugging tools compare the fp32 and the
quantized activations) and excluded from quantization one at a time, worst first, until the budget
holds or `max_excluded_nodes` is reached. `auto` produces every candidate, times them interleaved
on the target's provider, and keeps the fastest one within the accuracy budget. Nothing here
quantizes by hand.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekd._io import atomic_path
from edgekd._ort import feeds, fixed_batch, open_session
from edgekd._platform import cpu_info
from edgekd.bench.accuracy import file_top1
from edgekd._progress import say
from edgekd.errors import TargetError
from edgekd.inputs import Inputs, as_inputs
from edgekd.targets import CalibrationMethod, QuantizationConfig, QuantType, RuntimeConfig, Scheme

ARTIFACTS = {
    Scheme.static_qdq: "student.int8.onnx",
    Scheme.dynamic: "student.int8-dynamic.onnx",
    Scheme.fp16: "student.fp16.onnx",
}
_WEIGHT_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
FP32_CANDIDATE = "fp32 (not quantized)"
_GPU_PROVIDERS = {"CUDAExecutionProvider", "TensorrtExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider"}


@dataclass(frozen=True)
class ExclusionStep:
    excluded: list[str]  # nodes kept in fp32 so far, worst quantization error first
    val_accuracy: float
    drop: float  # fp32 val accuracy − this model's


@dataclass(frozen=True)
class Candidate:
    name: str  # e.g. "static-qdq per-channel"
    scheme: str
    settings: dict[str, Any]
    val_accuracy: float
    drop: float  # vs the fp32 student, validation split
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
    fp32_val_accuracy: float
    val_accuracy: float
    drop_vs_fp32: float
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


def quantize(
    source: Path,
    out_dir: Path,
    cfg: QuantizationConfig,
    calibration: Inputs | np.ndarray,
    x_val: Inputs | np.ndarray,
    y_val: np.ndarray,
    providers: list[str] | None = None,
    runtime: RuntimeConfig | None = None,
) -> QuantizeResult:
    """Quantize the fp32 model `source` as `cfg` says; write the artifact into `out_dir`."""
    source, out_dir = Path(source), Path(out_dir)
    calibration, x_val = as_inputs(calibration), as_inputs(x_val)
    fp32_accuracy = file_top1(source, x_val, y_val)
    if cfg.scheme is Scheme.none:
        return QuantizeResult("none", "none", None, {}, 0, fp32_accuracy, fp32_accuracy, 0.0, cfg.max_drop_vs_fp32, True, cpu=cpu_info())
    with tempfile.TemporaryDirectory(prefix=".edgekd-quant-", dir=out_dir) as work_dir:
        work = Path(work_dir)
        prepared, preprocess = _prepare(source, work)
        if cfg.scheme is Scheme.auto:
            result = _auto(prepared, source, out_dir, work, cfg, calibration, x_val, y_val, fp32_accuracy, providers, runtime)
        else:
            settings = _settings(cfg.scheme, cfg)
            result = _finish(prepared, out_dir, work, cfg.scheme, settings, cfg, calibration, x_val, y_val, fp32_accuracy, requested=cfg.scheme.value)
        return dataclasses.replace(result, preprocess=preprocess)


def _finish(prepared, out_dir, work, scheme, settings, cfg, calibration, x_val, y_val, fp32_accuracy, requested, candidates=(), fp32_p50=None, warnings=()):
    """Produce the chosen scheme's artifact (accuracy-aware for static QDQ) and describe it."""
    import onnx

    dest = out_dir / ARTIFACTS[scheme]
    with atomic_path(dest) as tmp:
        excluded, steps = _produce_within_budget(prepared, tmp, work, scheme, settings, cfg, calibration, x_val, y_val, fp32_accuracy)
    accuracy = steps[-1].val_accuracy
    drop = fp32_accuracy - accuracy
    warnings = list(warnings)
    if drop > cfg.max_drop_vs_fp32:
        warnings.append(
            f"{scheme.value}: validation accuracy drops {drop:.2%} vs fp32 (budget {cfg.max_drop_vs_fp32:.2%}) "
            f"even with {len(excluded)} node(s) excluded; consider scheme 'none' or a larger calibration set"
        )
    return QuantizeResult(
        requested=requested, scheme=scheme.value, path=str(dest), settings=settings,
        calibration_samples=len(calibration) if scheme is Scheme.static_qdq else 0,
        fp32_val_accuracy=fp32_accuracy, val_accuracy=accuracy, drop_vs_fp32=drop,
        budget=cfg.max_drop_vs_fp32, budget_met=drop <= cfg.max_drop_vs_fp32,
        excluded_nodes=excluded, steps=steps, candidates=list(candidates), fp32_p50_ms=fp32_p50,
        cpu=cpu_info(), warnings=warnings, nodes=len(onnx.load(str(dest)).graph.node), bytes=dest.stat().st_size,
    )


def _produce_within_budget(prepared, dest, work, scheme, settings, cfg, calibration, x_val, y_val, fp32_accuracy):
    """Write `scheme` to `dest`; for static QDQ, exclude worst nodes until the budget holds."""
    _produce(prepared, dest, scheme, settings, calibration, exclude=[])
    steps = [ExclusionStep([], (acc := file_top1(dest, x_val, y_val)), fp32_accuracy - acc)]
    if scheme is not Scheme.static_qdq or steps[-1].drop <= cfg.max_drop_vs_fp32 or cfg.max_excluded_nodes == 0:
        return [], steps
    ranking = rank_nodes_by_error(prepared, dest, calibration, work)
    say(f"quantize: int8 costs {steps[-1].drop:.2%} validation accuracy (budget {cfg.max_drop_vs_fp32:.2%}); "
        f"excluding nodes, worst quantization error first")
    excluded: list[str] = []
    for node, _sqnr in ranking[: cfg.max_excluded_nodes]:
        excluded.append(node)
        _produce(prepared, dest, scheme, settings, calibration, exclude=excluded)
        accuracy = file_top1(dest, x_val, y_val)
        steps.append(ExclusionStep(list(excluded), accuracy, fp32_accuracy - accuracy))
        if steps[-1].drop <= cfg.max_drop_vs_fp32:
            break
    return excluded, steps


def rank_nodes_by_error(prepared: Path, qdq: Path, inputs: np.ndarray, work: Path) -> list[tuple[str, float]]:
    """Every node of `prepared`, those whose activations lose most in `qdq` first (lowest SQNR).

    Uses ONNX Runtime's QDQ debugging tools: both models are augmented to output every
    intermediate tensor, run on the same inputs, and matched tensor by tensor. Nodes without a
    measured output of their own (e.g. a Gemm fused with its Relu) follow, weight-bearing ops
    first, with an SQNR of +inf, so exclusion can go on until nothing is left.
    """
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    float_aug, qdq_aug = work / "float.aug.onnx", work / "qdq.aug.onnx"
    modify_model_output_intermediate_tensors(str(prepared), str(float_aug))
    modify_model_output_intermediate_tensors(str(qdq), str(qdq_aug))
    float_acts = collect_activations(str(float_aug), _Batches(prepared, inputs))
    qdq_acts = collect_activations(str(qdq_aug), _Batches(prepared, inputs))
    errors = compute_activation_error(create_activation_matching(qdq_acts, float_acts))
    nodes = list(onnx.load(str(prepared)).graph.node)
    producer = {out: node.name for node in nodes for out in node.output}
    ranked: dict[str, float] = {}
    for tensor, err in errors.items():
        node = producer.get(tensor)
        sqnr = float(np.asarray(err.get("qdq_err", np.inf)).mean())
        if node and np.isfinite(sqnr):
            ranked[node] = min(sqnr, ranked.get(node, np.inf))
    measured = sorted(ranked.items(), key=lambda item: item[1])
    rest = sorted((n for n in nodes if n.name not in ranked), key=lambda n: n.op_type not in _WEIGHT_OPS)
    return measured + [(n.name, float("inf")) for n in rest]


def _auto(prepared, source, out_dir, work, cfg, calibration, x_val, y_val, fp32_accuracy, providers, runtime) -> QuantizeResult:
    """Produce every candidate, time them with the fp32 model on the target's provider, keep one."""
    import onnx

    from edgekd._ort import usable_providers
    from edgekd.bench.latency import session_call, time_interleaved

    try:
        usable, _ = usable_providers(list(providers or ["CPUExecutionProvider"]))
    except TargetError as exc:
        raise TargetError(f"scheme 'auto' times the candidates on the target's provider: {exc}") from None
    candidates_spec = [
        ("static-qdq per-tensor", Scheme.static_qdq, {**_settings(Scheme.static_qdq, cfg), "per_channel": False, "reduce_range": False}),
        ("static-qdq per-channel", Scheme.static_qdq, {**_settings(Scheme.static_qdq, cfg), "per_channel": True, "reduce_range": False}),
        ("static-qdq per-channel reduce-range", Scheme.static_qdq, {**_settings(Scheme.static_qdq, cfg), "per_channel": True, "reduce_range": True}),
    ]
    warnings = []
    graph = onnx.load(str(prepared), load_external_data=False)
    convs, matmuls = _op_counts(graph)
    if convs > matmuls:  # ORT's dynamic int8 quantizes MatMul/Gemm only: around convolutions it adds cost, not speed
        warnings.append(f"auto: dynamic int8 not tried: the graph is convolution-dominated ({convs:,} MACs in Conv vs {matmuls:,} in MatMul/Gemm), "
                        "where ONNX Runtime's dynamic int8 is usually several times slower than fp32; --scheme dynamic measures it")
    else:
        candidates_spec.append(("dynamic", Scheme.dynamic, _settings(Scheme.dynamic, cfg)))
    if _is_transformer(graph):  # ORT's offline transformer fusions: a candidate, kept only if it pays
        candidates_spec.append(("dynamic + transformer fusions", Scheme.dynamic, {**_settings(Scheme.dynamic, cfg), "fusions": True}))
    if usable[0] in _GPU_PROVIDERS:
        candidates_spec.append(("fp16", Scheme.fp16, {}))
    files, accuracy = {}, {}
    for index, (name, scheme, settings) in enumerate(candidates_spec):
        path = work / f"candidate{index}.onnx"
        _produce(prepared, path, scheme, settings, calibration, exclude=[])
        files[name], accuracy[name] = path, file_top1(path, x_val, y_val)
    sessions = {"fp32": open_session(source, usable, runtime), **{n: open_session(p, usable, runtime) for n, p in files.items()}}
    batch = fixed_batch(sessions["fp32"]) or 1
    say(f"quantize: timing {len(files)} candidates against fp32 on {usable[0]}")
    times = time_interleaved({n: session_call(s, x_val, batch) for n, s in sessions.items()}, warmup=20, runs=200)
    p50 = {n: float(np.median(t)) / 1e6 for n, t in times.items()}
    within = [n for n in files if fp32_accuracy - accuracy[n] <= cfg.max_drop_vs_fp32]
    chosen = min(within + ["fp32"], key=lambda n: p50[n])  # fp32 is a candidate: int8 ships only when it pays
    if chosen == "fp32":
        why = "no quantized candidate stays within the accuracy budget" if not within else \
            f"fp32 is the fastest ({p50['fp32']:.4f} ms p50 vs {min(p50[n] for n in within):.4f} ms for the best int8 within budget)"
        warnings.append(f"auto: deploying the fp32 model: {why} on this CPU (int8 dot-product instructions: {cpu_info()['int8_dot_product']})")
    candidates = [
        Candidate(n, s.value, st, accuracy[n], fp32_accuracy - accuracy[n], p50[n], files[n].stat().st_size, n == chosen)
        for n, s, st in candidates_spec
    ] + [Candidate(FP32_CANDIDATE, Scheme.none.value, {}, fp32_accuracy, 0.0, p50["fp32"], Path(source).stat().st_size, chosen == "fp32")]
    for w in warnings:
        say(f"warning: {w}")
    if chosen == "fp32":
        return QuantizeResult("auto", Scheme.none.value, None, {}, 0, fp32_accuracy, fp32_accuracy, 0.0, cfg.max_drop_vs_fp32, True,
                              candidates=candidates, fp32_p50_ms=p50["fp32"], cpu=cpu_info(), warnings=warnings,
                              nodes=len(onnx.load(str(source)).graph.node), bytes=Path(source).stat().st_size)
    scheme, settings = next((s, st) for n, s, st in candidates_spec if n == chosen)
    return _finish(prepared, out_dir, work, scheme, settings, cfg, calibration, x_val, y_val, fp32_accuracy,
                   requested="auto", candidates=candidates, fp32_p50=p50["fp32"], warnings=warnings)


def _session(prepared: Path):
    """A session of the prepared model (for its input names, types and fixed batch), opened once
    per file version rather than at every exclusion step and candidate."""
    stat = Path(prepared).stat()
    return _session_of(str(prepared), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _session_of(path: str, _mtime_ns: int, _size: int):
    return open_session(Path(path))


def _settings(scheme: Scheme, cfg: QuantizationConfig) -> dict[str, Any]:
    if scheme is Scheme.static_qdq:
        return {
            "per_channel": cfg.per_channel, "reduce_range": cfg.reduce_range,
            "activation_type": cfg.activation_type.value, "weight_type": cfg.weight_type.value,
            "calibration_method": cfg.calibration_method.value,
        }
    if scheme is Scheme.dynamic:
        return {"per_channel": cfg.per_channel, "reduce_range": cfg.reduce_range, "weight_type": cfg.weight_type.value}
    return {}


def _prepare(source: Path, work: Path) -> tuple[Path, str]:
    """ORT's quant_pre_process (shape inference, optimisation), then name every node for exclusion.

    Returns the prepared file and what preparation ran: its symbolic shape inference fails on
    dynamic-sequence transformer graphs, so it is retried without it, then skipped (the model
    is quantized as exported), and the reason is kept for the result."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = work / "prepared.onnx"
    note = "quant_pre_process"
    try:
        with _quiet_ort(work):
            quant_pre_process(str(source), str(prepared))
    except Exception as exc:  # ORT raises plain Exceptions from its shape inference
        first = _reason(exc)
        try:
            with _quiet_ort(work):
                quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            note = f"quant_pre_process without symbolic shape inference (it failed: {first})"
        except Exception as again:
            shutil.copyfile(source, prepared)
            note = f"skipped: quant_pre_process failed ({first}; without symbolic shapes: {_reason(again)})"
        say(f"quantize: {note}")
    model = onnx.load(str(prepared))
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{index}"
        seen.add(node.name)
    onnx.save(model, str(prepared))
    return prepared, note


def _reason(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


@contextlib.contextmanager
def _quiet_ort(work: Path | None = None):
    """ORT's tools log and print what the result already says; `work` becomes the working folder,
    because its symbolic shape inference dumps sym_shape_infer_temp.onnx into the current folder
    when it fails (it does on dynamic-sequence transformers): the dump goes with the work folder."""
    import io
    import logging
    import os

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)
    before = os.getcwd()
    try:
        if work is not None:
            os.chdir(work)
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        os.chdir(before)
        root.setLevel(level)


def _produce(prepared: Path, dest: Path, scheme: Scheme, settings: dict[str, Any], calibration: Inputs, exclude: list[str]) -> None:
    """Write one quantized variant of `prepared` to `dest` with ONNX Runtime's quantizers."""
    from onnxruntime.quantization import CalibrationMethod as OrtCalibration
    from onnxruntime.quantization import QuantFormat, quantize_dynamic, quantize_static
    from onnxruntime.quantization import QuantType as OrtQuantType

    types = {QuantType.int8.value: OrtQuantType.QInt8, QuantType.uint8.value: OrtQuantType.QUInt8}
    if scheme is Scheme.static_qdq:
        methods = {
            CalibrationMethod.minmax.value: OrtCalibration.MinMax,
            CalibrationMethod.entropy.value: OrtCalibration.Entropy,
            CalibrationMethod.percentile.value: OrtCalibration.Percentile,
        }
        quantize_static(
            str(prepared), str(dest), _Batches(prepared, calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=settings["per_channel"], reduce_range=settings["reduce_range"],
            activation_type=types[settings["activation_type"]], weight_type=types[settings["weight_type"]],
            calibrate_method=methods[settings["calibration_method"]],
            nodes_to_exclude=list(exclude),
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


def _op_counts(model) -> tuple[int, int]:
    """Per-sample MACs in (convolutions, matrix products): what decides whether dynamic int8 can pay."""
    from edgekd.bench.profile import macs_by_kind

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

        with _quiet_ort():
            optimize_model(str(prepared), model_type="bert", num_heads=0, hidden_size=0).save_model_to_file(str(fused))
    return fused


class _Batches:
    """Calibration/activation data for ORT: the inputs in batches the model accepts, fed by name."""

    def __init__(self, prepared: Path, x: Inputs) -> None:
        session = _session(prepared)
        batch = fixed_batch(session) or 32
        count = len(x) // batch if len(x) >= batch else 1
        self._batches = iter([feeds(session, x.rows(i * batch, batch).trimmed()) for i in range(count)])

    def get_next(self):
        return next(self._batches, None)

    def __iter__(self):  # ORT's QDQ debugging tools iterate the reader
        return self._batches

