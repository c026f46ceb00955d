"""Accuracy-aware exclusion: which nodes to keep in fp32 when int8 costs too much accuracy.

The loop starts only when the drop against the fp32 model is real by the paired test on the
validation images. Nodes are ranked by the error against the fp32 model added across them (the
fp32 and int8 models run side by side input by input, so memory is bounded by the model, not by
the inputs); the worst-ranked are each kept in fp32 alone to measure how much nearer fp32 that
brings the logits, and are then kept in fp32 in that order while the drop is real, up to the
target's `max_excluded_nodes`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekd.runtime.session import open_session, run_batches
from edgekd._progress import say
from edgekd.runtime.metrics import file_outcomes
from edgekd.export._ortquant import Batches, quiet_ort
from edgekd.inputs import Inputs, as_inputs
from edgekd.paired import PairedDrop
from edgekd.task import Task
from edgekd.targets import QuantizationConfig

WEIGHT_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
# The worst (this × max_excluded_nodes) nodes of the activation ranking have their output effect
# measured, each kept in fp32 alone, on this many validation inputs.
SENSITIVITY_SHORTLIST = 3
SENSITIVITY_PROBES = 1000

Produce = Callable[[Path, list[str]], None]  # writes the quantized model to a path with these nodes kept in fp32


@dataclass(frozen=True)
class AgainstFp32:
    """How a quantized file does against the fp32 model on the validation split, by the task's
    primary metric and its paired comparison."""

    kind: Task
    x_val: Inputs
    y_val: np.ndarray
    fp32: np.ndarray  # the fp32 model's per-sample outcomes (top-1 hits; squared errors)

    @property
    def fp32_metric(self) -> float:
        return self.kind.summarise(self.fp32)

    def measure(self, path: Path) -> tuple[float, PairedDrop]:
        """The file's primary metric, and how much worse than fp32 it is (paired, same samples)."""
        outcomes = file_outcomes(path, self.x_val, self.y_val, self.kind.name)
        return self.kind.summarise(outcomes), self.kind.paired(self.fp32, outcomes)


@dataclass(frozen=True)
class ExclusionStep:
    excluded: list[str]  # nodes kept in fp32 so far, in the order they were kept
    val_accuracy: float  # the task's primary metric on the validation split (accuracy; rmse for regression)
    drop: float  # how much worse than fp32: accuracy points lost, or the relative RMSE rise
    drop_interval: list[float] = field(default_factory=list)  # 95% CI of the drop (paired, validation images)
    p_value: float = 1.0  # exact McNemar test against fp32 on the same images
    seconds: float = 0.0  # since quantization of this scheme began


def produce_within_budget(prepared: Path, dest: Path, work: Path, produce: Produce, cfg: QuantizationConfig, calibration: Inputs,
                          judge: AgainstFp32, may_exclude: bool) -> tuple[list[str], list[ExclusionStep], PairedDrop]:
    """Write the quantized model to `dest` (`produce(path, excluded)`); where `may_exclude` (static
    QDQ), keep nodes in fp32 while int8 is really beyond the budget.

    "Really beyond" is the paired test on the validation images: with a few hundred of them a
    1-point budget is 2–3 images, and excluding nodes to chase them would chase noise."""
    began = time.perf_counter()

    def step(excluded: list[str]) -> tuple[ExclusionStep, PairedDrop]:
        produce(dest, excluded)
        metric, drop = judge.measure(dest)
        return ExclusionStep(list(excluded), metric, drop.drop, drop.interval, drop.p_value, time.perf_counter() - began), drop

    first, drop = step([])
    steps = [first]
    if not may_exclude or not drop.significantly_beyond(cfg.max_drop_vs_fp32) or cfg.max_excluded_nodes == 0:
        return [], steps, drop
    say(f"quantize: int8 costs {judge.kind.show_drop(drop.drop)} on validation (budget {judge.kind.show_drop(cfg.max_drop_vs_fp32)}, "
        f"paired p = {drop.p_value:.2g}); "
        f"ranking nodes by quantization error over {len(calibration)} calibration input(s)")
    import onnx

    nodes = list(onnx.load(str(prepared), load_external_data=False).graph.node)
    groups = _exclusion_groups(nodes, rank_nodes_by_error(prepared, dest, calibration, work, nodes))
    shortlist = groups[: SENSITIVITY_SHORTLIST * cfg.max_excluded_nodes]
    say(f"quantize: measuring the output effect of keeping each of the {len(shortlist)} worst-ranked node(s) in fp32 alone")
    helped = rank_by_output_effect(prepared, dest, shortlist, work, produce, judge.x_val)
    ordered = [group for group, _gain in helped] + groups[len(shortlist):]  # largest gain first
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
        say(f"quantize: {len(excluded)} node(s) kept in fp32 (+{', '.join(group)}): validation {judge.kind.primary.name} "
            f"{judge.kind.primary.show(latest.val_accuracy)}, worse than fp32 by {judge.kind.show_drop(drop.drop)}")
        if not drop.significantly_beyond(cfg.max_drop_vs_fp32):
            break
    return excluded, steps, drop


def _exclusion_groups(nodes, ranking: list[tuple[str, float]]) -> list[list[str]]:
    """What excluding each ranked node means: a weight-bearing node alone (its own rounding goes
    with it); any other node with every consumer of its outputs, so its outputs carry no Q/DQ pair
    at all (excluding a ReLU alone leaves its output quantized for the convolution it feeds)."""
    consumers = _consumers(nodes)
    weight_ops = {n.name for n in nodes if n.op_type in WEIGHT_OPS}
    return [list(dict.fromkeys([node, *([] if node in weight_ops else consumers.get(node, []))])) for node, _lost in ranking]


def rank_by_output_effect(prepared: Path, quantized: Path, groups: list[list[str]], work: Path, produce: Produce, x_val: Inputs) -> list[tuple[list[str], float]]:
    """Each group kept in fp32 alone (`produce(path, group)` writes that model), and how much nearer
    the fp32 model's logits that brings the int8 model's on up to SENSITIVITY_PROBES validation
    inputs, in dB of output SQNR gained; largest gain first.

    The activation ranking says where error is added; this says whether the output cares: error
    added early is partly washed out downstream, and a node the activation ranking puts first may
    barely move the logits."""
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
    weights = {n.name for n in nodes if n.op_type in WEIGHT_OPS}
    # Weight-bearing nodes first: their weights' rounding is error no other node can undo, and
    # keeping one in fp32 removes it (per-tensor scales on depthwise convolutions are the classic
    # MobileNet int8 loss); then the other nodes, each by the dB lost across it.
    measured = sorted(scores.items(), key=lambda item: (item[0] not in weights, -item[1]))
    rest = sorted((n for n in nodes if n.name not in scores), key=lambda n: n.op_type not in WEIGHT_OPS)
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
        with quiet_ort(work):
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
    for feed in Batches(prepared, as_inputs(inputs), batch=1):
        reference, quantized = sessions["fp32"].run(None, feed), sessions["int8"].run(None, feed)
        for activation, (f, q) in pairs.items():
            x = reference[f].astype(np.float64, copy=False)
            if x.shape != quantized[q].shape:
                continue
            signal[activation] += float(np.dot(x, x))
            diff = x - quantized[q]
            noise[activation] += float(np.dot(diff, diff))
    return ErrorEnergies(signal, noise)
