"""Quantization with ONNX Runtime's own tooling — static QDQ, dynamic, fp16 — and `auto`.

ONNX Runtime's `quant_pre_process` runs first, as its documentation recommends; when it fails
(its symbolic shape inference gives up on dynamic-sequence transformer exports), it is retried
without symbolic shape inference, then skipped, and the result records why. Static QDQ is
calibrated on *training* inputs. When int8 costs more validation accuracy than the target allows
— beyond the budget *and* really worse than fp32 by the paired test on the validation images, not a
few images of noise — nodes are ranked by the error against the fp32 model added across them
(weight-bearing nodes first; the fp32 and int8 models run side by side input by input, so memory
is bounded by the model, not by the inputs); the worst-ranked are then each kept in fp32 alone to
measure how much nearer fp32 the logits come, and kept in fp32 in that order while the drop is real
or until `max_excluded_nodes` is reached. A fixed scheme's artifact is then timed
interleaved with the fp32 model on the target's provider: one that is slower or larger is a
warning, falls back to fp32, or is left for the bench to fail, as the target's
`if_slower_than_fp32` says. `auto` produces every candidate, times them with fp32 the same way,
and keeps the fastest one within the accuracy budget (fp32 included). Nothing here quantizes by hand.
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
from edgekd._progress import say
from edgekd.bench.accuracy import file_correct
from edgekd.bench.latency import LatencyStats
from edgekd.bench.verify import VersusFp32, versus_fp32
from edgekd.errors import TargetError, first_line
from edgekd.inputs import Inputs, as_inputs
from edgekd.paired import PairedDrop, paired_drop
from edgekd.targets import CalibrationMethod, QuantizationConfig, QuantType, RuntimeConfig, Scheme, SlowerPolicy

ARTIFACTS = {
    Scheme.static_qdq: "student.int8.onnx",
    Scheme.dynamic: "student.int8-dynamic.onnx",
    Scheme.fp16: "student.fp16.onnx",
}
_WEIGHT_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
# The exclusion loop measures the output effect of the first (this × max_excluded_nodes) nodes of
# the activation ranking, each excluded alone, on this many validation inputs.
SENSITIVITY_SHORTLIST = 3
SENSITIVITY_PROBES = 1000
FP32_CANDIDATE = "fp32 (not quantized)"
_GPU_PROVIDERS = {"CUDAExecutionProvider", "TensorrtExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider"}


@dataclass(frozen=True)
class ExclusionStep:
    excluded: list[str]  # nodes kept in fp32 so far, worst quantization error first
    val_accuracy: float
    drop: float  # fp32 val accuracy − this model's
    drop_interval: list[float] = field(default_factory=list)  # 95% CI of the drop (paired, validation images)
    p_value: float = 1.0  # exact McNemar test against fp32 on the same images
    seconds: float = 0.0  # since quantization of this scheme began


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
    drop_interval: list[float] = field(default_factory=list)  # 95% CI of drop_vs_fp32, paired on the validation images
    drop_p_value: float = 1.0  # exact McNemar test of the deployed model against fp32 on those images
    too_close_to_call: bool = False  # the drop exceeds the budget but is not distinguishable from noise
    versus_fp32: VersusFp32 | None = None  # a fixed scheme's artifact timed against fp32 (None: not measured, see warnings)
    fell_back: str = ""  # why fp32 was deployed instead of the requested scheme


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
    fp32_correct = file_correct(source, x_val, y_val)
    if cfg.scheme is Scheme.none:
        return _fp32_result("none", source, float(fp32_correct.mean()), cfg)
    with tempfile.TemporaryDirectory(prefix=".edgekd-quant-", dir=out_dir) as work_dir:
        work = Path(work_dir).resolve()  # absolute: ORT's tools run with the work folder as the working folder
        prepared, preprocess = _prepare(source, work)
        if cfg.scheme is Scheme.auto:
            result = _auto(prepared, source, out_dir, work, cfg, calibration, x_val, y_val, fp32_correct, providers, runtime)
        else:
            settings = _settings(cfg.scheme, cfg)
            result = _finish(prepared, out_dir, work, cfg.scheme, settings, cfg, calibration, x_val, y_val, fp32_correct, requested=cfg.scheme.value)
            result = _against_fp32(result, source, cfg, x_val, providers, runtime)
        return dataclasses.replace(result, preprocess=preprocess)


def _fp32_result(requested: str, source: Path, accuracy: float, cfg: QuantizationConfig, **more) -> QuantizeResult:
    """The result that deploys the fp32 model itself (scheme none, auto's choice, or a fallback)."""
    import onnx

    return QuantizeResult(requested, Scheme.none.value, None, {}, 0, accuracy, accuracy, 0.0, cfg.max_drop_vs_fp32, True,
                          cpu=cpu_info(), nodes=len(onnx.load(str(source), load_external_data=False).graph.node),
                          bytes=Path(source).stat().st_size, drop_interval=[0.0, 0.0], **more)


def _against_fp32(result: QuantizeResult, source: Path, cfg: QuantizationConfig, x_val: Inputs, providers, runtime) -> QuantizeResult:
    """Time a fixed scheme's artifact against fp32; if it does not pay, act as the target says."""
    from edgekd._ort import usable_providers

    try:
        usable, _ = usable_providers(list(providers or ["CPUExecutionProvider"]))
    except TargetError as exc:
        return dataclasses.replace(result, warnings=[*result.warnings, f"{result.scheme} not timed against fp32: {exc}"])
    stats = time_against_fp32(source, {"quantized": Path(result.path)}, x_val, usable, runtime)
    versus = versus_fp32(usable[0], stats["quantized"], stats["fp32"], result.bytes, Path(source).stat().st_size)
    result = dataclasses.replace(result, versus_fp32=versus, fp32_p50_ms=versus.fp32_p50_ms)
    if not (versus.slower or versus.larger):
        return result
    costs = " and ".join(c for c, bad in ((f"slower ({versus.p50_ms:.4g} vs {versus.fp32_p50_ms:.4g} ms p50 on {versus.provider}, "
                                           f"int8 dot product: {cpu_info()['int8_dot_product']})", versus.slower),
                                          (f"larger ({versus.bytes:,} vs {versus.fp32_bytes:,} bytes)", versus.larger)) if bad)
    what = f"{result.scheme} is {costs} than the fp32 model"
    if cfg.if_slower_than_fp32 is SlowerPolicy.fallback:
        say(f"quantize: {what}: deploying fp32 instead (the target's if_slower_than_fp32 = \"fallback\")")
        Path(result.path).unlink()
        return _fp32_result(result.requested, source, result.fp32_val_accuracy, cfg, versus_fp32=versus, fp32_p50_ms=versus.fp32_p50_ms,
                            fell_back=what, warnings=[*result.warnings, f"{what}; deployed fp32 instead"])
    action = "the bench fails it" if cfg.if_slower_than_fp32 is SlowerPolicy.fail else "deployed anyway (if_slower_than_fp32 = \"warn\")"
    say(f"warning: {what}; {action}")
    return dataclasses.replace(result, warnings=[*result.warnings, f"{what}; {action}"])


def _finish(prepared, out_dir, work, scheme, settings, cfg, calibration, x_val, y_val, fp32_correct, requested, candidates=(), fp32_p50=None, warnings=()):
    """Produce the chosen scheme's artifact (accuracy-aware for static QDQ) and describe it."""
    import onnx

    dest = out_dir / ARTIFACTS[scheme]
    with atomic_path(dest) as tmp:
        excluded, steps, drop = _produce_within_budget(prepared, tmp, work, scheme, settings, cfg, calibration, x_val, y_val, fp32_correct)
    warnings = list(warnings)
    beyond = drop.significantly_beyond(cfg.max_drop_vs_fp32)
    close = drop.drop > cfg.max_drop_vs_fp32 and not beyond
    if beyond:
        warnings.append(
            f"{scheme.value}: validation accuracy drops {drop.drop:.2%} vs fp32 (95% CI {drop.interval[0]:.2%} to {drop.interval[1]:.2%}; "
            f"budget {cfg.max_drop_vs_fp32:.2%}) even with {len(excluded)} node(s) excluded; consider scheme 'none' or a larger calibration set"
        )
    elif close:
        warnings.append(
            f"{scheme.value}: validation accuracy drops {drop.drop:.2%} vs fp32 (budget {cfg.max_drop_vs_fp32:.2%}), but that is "
            f"{drop.only_first} image(s) lost and {drop.only_second} gained of {drop.images} (paired test p = {drop.p_value:.2g}): "
            "too close to call, so no node was excluded for it; a larger validation split would tell"
        )
    return QuantizeResult(
        requested=requested, scheme=scheme.value, path=str(dest), settings=settings,
        calibration_samples=len(calibration) if scheme is Scheme.static_qdq else 0,
        fp32_val_accuracy=float(fp32_correct.mean()), val_accuracy=steps[-1].val_accuracy, drop_vs_fp32=drop.drop,
        budget=cfg.max_drop_vs_fp32, budget_met=not beyond,
        excluded_nodes=excluded, steps=steps, candidates=list(candidates), fp32_p50_ms=fp32_p50,
        cpu=cpu_info(), warnings=warnings, nodes=len(onnx.load(str(dest)).graph.node), bytes=dest.stat().st_size,
        drop_interval=drop.interval, drop_p_value=drop.p_value, too_close_to_call=close,
    )


def _produce_within_budget(prepared, dest, work, scheme, settings, cfg, calibration, x_val, y_val, fp32_correct):
    """Write `scheme` to `dest`; for static QDQ, exclude worst nodes while int8 is really beyond the budget.

    "Really beyond" is the paired test on the validation images: with a few hundred of them a
    1-point budget is 2–3 images, and excluding nodes to chase them would chase noise."""
    import time

    began = time.perf_counter()

    def step(excluded: list[str]) -> tuple[ExclusionStep, PairedDrop]:
        _produce(prepared, dest, scheme, settings, calibration, exclude=excluded)
        drop = paired_drop(fp32_correct, file_correct(dest, x_val, y_val))
        return ExclusionStep(list(excluded), float(fp32_correct.mean()) - drop.drop, drop.drop, drop.interval, drop.p_value,
                             time.perf_counter() - began), drop

    first, drop = step([])
    steps = [first]
    if scheme is not Scheme.static_qdq or not drop.significantly_beyond(cfg.max_drop_vs_fp32) or cfg.max_excluded_nodes == 0:
        return [], steps, drop
    say(f"quantize: int8 costs {drop.drop:.2%} validation accuracy (budget {cfg.max_drop_vs_fp32:.2%}, paired p = {drop.p_value:.2g}); "
        f"ranking nodes by quantization error over {len(calibration)} calibration input(s)")
    import onnx

    nodes = list(onnx.load(str(prepared), load_external_data=False).graph.node)
    groups = _exclusion_groups(nodes, rank_nodes_by_error(prepared, dest, calibration, work, nodes))
    shortlist = groups[: SENSITIVITY_SHORTLIST * cfg.max_excluded_nodes]
    say(f"quantize: measuring the output effect of keeping each of the {len(shortlist)} worst-ranked node(s) in fp32 alone")
    helped = rank_by_output_effect(prepared, dest, shortlist, work, lambda path, group: _produce(prepared, path, scheme, settings, calibration, exclude=group), x_val)
    ordered = [g for g, gain in helped if gain > 0] + [g for g, gain in helped if gain <= 0] + groups[len(shortlist):]
    excluded: list[str] = []
    for candidate in ordered:
        group = [n for n in candidate if n not in excluded][: cfg.max_excluded_nodes - len(excluded)]  # the node first, its consumers as far as the limit allows
        if not group:
            if len(excluded) >= cfg.max_excluded_nodes:
                break
            continue
        excluded += group
        latest, drop = step(excluded)
        steps.append(latest)
        say(f"quantize: {len(excluded)} node(s) kept in fp32 (+{', '.join(group)}): validation accuracy {latest.val_accuracy:.2%}, drop {drop.drop:.2%}")
        if not drop.significantly_beyond(cfg.max_drop_vs_fp32):
            break
    return excluded, steps, drop


def _exclusion_groups(nodes, ranking: list[tuple[str, float]]) -> list[list[str]]:
    """What excluding each ranked node means: a weight-bearing node alone (its own rounding goes
    with it); any other node with every consumer of its outputs, so its outputs carry no Q/DQ pair
    at all (excluding a ReLU alone leaves its output quantized for the convolution it feeds)."""
    consumers = _consumers(nodes)
    weight_ops = {n.name for n in nodes if n.op_type in _WEIGHT_OPS}
    return [list(dict.fromkeys([node, *([] if node in weight_ops else consumers.get(node, []))])) for node, _lost in ranking]


def rank_by_output_effect(prepared: Path, quantized: Path, groups: list[list[str]], work: Path, produce, x_val: Inputs) -> list[tuple[list[str], float]]:
    """Each group kept in fp32 alone (`produce(path, group)` writes that model), and how much nearer
    the fp32 model's logits that brings the int8 model's on up to SENSITIVITY_PROBES validation
    inputs, in dB of output SQNR gained; largest gain first.

    The activation ranking says where error is added; this says whether the output cares. On a
    MobileNetV3-style student, excluding in the activation ranking's order recovered a fifth of the
    drop with 8 nodes: error added early is partly washed out, and some of what the SQNR ranking put
    first never reached the logits."""
    from edgekd._ort import run_batches

    x_val = as_inputs(x_val)
    probes = x_val[np.unique(np.linspace(0, len(x_val) - 1, min(SENSITIVITY_PROBES, len(x_val))).astype(int))]
    reference = run_batches(open_session(prepared), probes).astype(np.float64)
    signal = float(np.sum(reference**2))

    def output_sqnr(path: Path) -> float:
        return _db(signal, float(np.sum((reference - run_batches(open_session(path), probes)) ** 2)))

    base = output_sqnr(quantized)
    probe = work / "sensitivity.onnx"
    gains = []
    for group in groups:
        produce(probe, group)
        gains.append((group, output_sqnr(probe) - base))
    return sorted(gains, key=lambda item: -item[1])


def _db(signal: float, noise: float) -> float:
    """10·log10(signal / noise), in logs so that no ratio overflows; an exact zero counts as the
    smallest positive float."""
    tiny = np.finfo(np.float64).tiny
    return float(10 * (np.log10(max(signal, tiny)) - np.log10(max(noise, tiny))))


def _consumers(nodes) -> dict[str, list[str]]:
    """node name → the names of the nodes that read any of its outputs."""
    readers: dict[str, list[str]] = {}
    for node in nodes:
        for tensor in node.input:
            readers.setdefault(tensor, []).append(node.name)
    return {node.name: [r for t in node.output for r in readers.get(t, [])] for node in nodes}


def rank_nodes_by_error(prepared: Path, qdq: Path, inputs: Inputs | np.ndarray, work: Path, nodes=None) -> list[tuple[str, float]]:
    """Every node of `prepared`, those across which the int8 model loses most accuracy first.

    For every activation, the int8 model's value (after its QuantizeLinear/DequantizeLinear pair,
    matched as ONNX Runtime's QDQ debugging tools match them) is compared with the fp32 model's:
    SQNR = 10·log10(Σ fp32² / Σ (fp32 − int8)²), the energies summed input by input, so memory is
    one input's activations whatever the number of inputs (ORT's `collect_activations` keeps them
    all: ~25 GB for MobileNetV2 at 224 with 256 images). A node's score is the SQNR lost across it
    (its worst input's minus its worst output's, in dB): where the error is *added*, not where it
    merely arrives, nor where one tensor is coarsely rounded but nothing downstream cares (the
    first ranking, by the local error of each Q/DQ pair alone, picked the ReLUs of squeeze-excite
    gates on a MobileNetV3 student, and excluding them recovered nothing). Nodes without a
    measured output follow, weight-bearing ops first, with a score of −inf.
    """
    import onnx

    energies = activation_error_energies(qdq, inputs, work, prepared)
    if nodes is None:
        nodes = list(onnx.load(str(prepared), load_external_data=False).graph.node)
    sqnr = {t: _db(energies.signal[t], energies.noise[t]) for t in energies.signal}
    finite = [v for v in sqnr.values() if np.isfinite(v)]
    ceiling = max(finite) if finite else 100.0  # the SQNR of an input nothing measured: the best seen
    scores: dict[str, float] = {}
    for node in nodes:
        outs = [sqnr[t] for t in node.output if t in sqnr and np.isfinite(sqnr[t])]
        if not outs:
            continue
        ins = [sqnr[t] for t in node.input if t in sqnr and np.isfinite(sqnr[t])]
        scores[node.name] = float((min(ins) if ins else ceiling) - min(outs))
    weights = {n.name for n in nodes if n.op_type in _WEIGHT_OPS}
    # Weight-bearing nodes first: their weights' rounding is error no other node can undo, and
    # keeping one in fp32 removes it (per-tensor scales on depthwise convolutions are the classic
    # MobileNet int8 loss); then the other nodes, each by the dB lost across it.
    measured = sorted(scores.items(), key=lambda item: (item[0] not in weights, -item[1]))
    rest = sorted((n for n in nodes if n.name not in scores), key=lambda n: n.op_type not in _WEIGHT_OPS)
    return measured + [(n.name, float("-inf")) for n in rest]


@dataclass(frozen=True)
class ErrorEnergies:
    signal: dict[str, float]  # Σ fp32 activation², per activation (a tensor name of the fp32 model)
    noise: dict[str, float]  # Σ (fp32 activation − the int8 model's, after its Q/DQ)²


def activation_error_energies(qdq: Path, inputs: Inputs | np.ndarray, work: Path, prepared: Path) -> ErrorEnergies:
    """The fp32 (`prepared`) and int8 (`qdq`) models run side by side on each input (or fixed
    batch) in turn, every intermediate tensor exposed; only running sums are kept."""
    import onnxruntime as ort
    from onnxruntime.quantization.qdq_loss_debug import modify_model_output_intermediate_tensors
    from onnxruntime.quantization.quant_utils import DEQUANT_OUTPUT_SUFFIX, QUANT_INPUT_SUFFIX

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every named tensor
    saved = "_ReshapedSavedOutput"  # the suffix ORT's augmentation gives the tensors it exposes
    sessions, index = {}, {}
    for name, model in (("fp32", prepared), ("int8", qdq)):
        augmented = work / f"{name}.aug.onnx"
        with _quiet_ort(work):
            modify_model_output_intermediate_tensors(str(model), str(augmented))
        sessions[name] = ort.InferenceSession(str(augmented), options, providers=["CPUExecutionProvider"])
        index[name] = {o.name[: -len(saved)]: i for i, o in enumerate(sessions[name].get_outputs()) if o.name.endswith(saved)}
    after: dict[str, int] = {}  # fp32 activation → position of the int8 model's value of it, after its Q/DQ
    for name, position in index["int8"].items():
        for suffix in (DEQUANT_OUTPUT_SUFFIX, DEQUANT_OUTPUT_SUFFIX + "_1"):
            if name.endswith(suffix):
                after[name[: -len(suffix)]] = position
        if name.endswith(QUANT_INPUT_SUFFIX) and name[: -len(QUANT_INPUT_SUFFIX)] in index["int8"]:
            activation = name[: -len(QUANT_INPUT_SUFFIX)]
            after[activation] = index["int8"][activation]  # the producer's output was renamed; the DQ output kept the name
    for activation, position in index["int8"].items():  # tensors without Q/DQ: compared as they are
        after.setdefault(activation, position)
    pairs = {a: (index["fp32"][a], q) for a, q in after.items() if a in index["fp32"]}
    signal = dict.fromkeys(pairs, 0.0)
    noise = dict.fromkeys(pairs, 0.0)
    for feed in _Batches(prepared, as_inputs(inputs), batch=1):
        reference, quantized = sessions["fp32"].run(None, feed), sessions["int8"].run(None, feed)
        for activation, (f, q) in pairs.items():
            x = reference[f].astype(np.float64, copy=False)
            if x.shape != quantized[q].shape:
                continue
            signal[activation] += float(np.dot(x, x))
            diff = x - quantized[q]
            noise[activation] += float(np.dot(diff, diff))
    return ErrorEnergies(signal, noise)


def _auto(prepared, source, out_dir, work, cfg, calibration, x_val, y_val, fp32_correct, providers, runtime) -> QuantizeResult:
    """Produce every candidate, time them with the fp32 model on the target's provider, keep one."""
    import onnx

    from edgekd._ort import usable_providers

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
    files, drops = {}, {}
    for index, (name, scheme, settings) in enumerate(candidates_spec):
        path = work / f"candidate{index}.onnx"
        _produce(prepared, path, scheme, settings, calibration, exclude=[])
        files[name], drops[name] = path, paired_drop(fp32_correct, file_correct(path, x_val, y_val))
    say(f"quantize: timing {len(files)} candidates against fp32 on {usable[0]}")
    p50 = {n: stats.p50_ms for n, stats in time_against_fp32(source, files, x_val, usable, runtime).items()}
    within = [n for n in files if not drops[n].significantly_beyond(cfg.max_drop_vs_fp32)]
    chosen = min(within + ["fp32"], key=lambda n: p50[n])  # fp32 is a candidate: int8 ships only when it pays
    if chosen == "fp32":
        why = "no quantized candidate stays within the accuracy budget" if not within else \
            f"fp32 is the fastest ({p50['fp32']:.4f} ms p50 vs {min(p50[n] for n in within):.4f} ms for the best int8 within budget)"
        warnings.append(f"auto: deploying the fp32 model: {why} on this CPU (int8 dot-product instructions: {cpu_info()['int8_dot_product']})")
    fp32_accuracy = float(fp32_correct.mean())
    candidates = [
        Candidate(n, s.value, st, fp32_accuracy - drops[n].drop, drops[n].drop, p50[n], files[n].stat().st_size, n == chosen)
        for n, s, st in candidates_spec
    ] + [Candidate(FP32_CANDIDATE, Scheme.none.value, {}, fp32_accuracy, 0.0, p50["fp32"], Path(source).stat().st_size, chosen == "fp32")]
    for w in warnings:
        say(f"warning: {w}")
    if chosen == "fp32":
        return _fp32_result("auto", source, fp32_accuracy, cfg, candidates=candidates, fp32_p50_ms=p50["fp32"], warnings=warnings)
    scheme, settings = next((s, st) for n, s, st in candidates_spec if n == chosen)
    return _finish(prepared, out_dir, work, scheme, settings, cfg, calibration, x_val, y_val, fp32_correct,
                   requested="auto", candidates=candidates, fp32_p50=p50["fp32"], warnings=warnings)


def time_against_fp32(source: Path, files: dict[str, Path], x: Inputs, providers: list[str], runtime: RuntimeConfig | None,
                      warmup: int = 20, runs: int = 200) -> dict[str, LatencyStats]:
    """Latency of each file and of the fp32 `source` ("fp32"), timed interleaved in this process on
    `providers` at the model's fixed batch (else 1): ratios that hold on a noisy machine."""
    from edgekd.bench.latency import session_call, summarize, time_interleaved

    sessions = {"fp32": open_session(source, providers, runtime), **{n: open_session(p, providers, runtime) for n, p in files.items()}}
    batch = fixed_batch(sessions["fp32"]) or 1
    times = time_interleaved({n: session_call(s, x, batch) for n, s in sessions.items()}, warmup=warmup, runs=runs)
    return {n: summarize(t, batch) for n, t in times.items()}


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

    source = Path(source).resolve()  # _quiet_ort changes the working folder
    prepared = work / "prepared.onnx"
    note = "quant_pre_process"
    try:
        with _quiet_ort(work):
            quant_pre_process(str(source), str(prepared))
    except Exception as exc:  # ORT raises plain Exceptions from its shape inference
        first = first_line(exc)
        try:
            with _quiet_ort(work):
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

    def __init__(self, prepared: Path, x: Inputs, batch: int = 32) -> None:
        session = _session(prepared)
        batch = fixed_batch(session) or batch
        count = len(x) // batch if len(x) >= batch else 1
        self._batches = (feeds(session, x.rows(i * batch, batch).trimmed()) for i in range(count))  # built as consumed

    def get_next(self):
        return next(self._batches, None)

    def __iter__(self):  # ORT's QDQ debugging tools iterate the reader
        return self._batches

