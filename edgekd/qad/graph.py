"""The student as ONNX Runtime will run it in int8, as a PyTorch module that can be trained.

Quantization-aware training has to mirror the deployment scheme exactly: the same tensors
quantized, the same scales, the same rounding. Rather than guess where ONNX Runtime puts its
QuantizeLinear/DequantizeLinear pairs, this module *reads* them from ORT's own post-training QDQ
model and runs the prepared fp32 graph (the file ORT quantized, node for node) in PyTorch with a
fake quantizer at each of those tensors:

- activations: per-tensor, with the QDQ model's type, zero point and scale; the scale is learned
  (LSQ, Esser et al. 2020), starting from the post-training calibration's;
- weights of Conv / Gemm / MatMul: ORT's own formula on the current weights (symmetric max-abs,
  per channel along the QDQ model's axis, or per tensor), passed straight through in the backward
  pass; biases rounded to int32 at input scale × weight scale, as ORT stores them.

BatchNorm is already folded into the convolutions by the export's simplification, so training
moves the folded weights ORT deploys. Exporting back is ORT's job: `edgekd.qad.stage.export_qdq` writes the
trained weights into the fp32 graph and has ORT quantize it with these scales as overrides.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekd.errors import MirrorError
from edgekd.qad import kernels
from edgekd.qad.fakequant import constant_fake_quant, fixed_fake_quant, learned_fake_quant

_SMALLEST_SCALE = 1e-8
_INT32 = np.iinfo(np.int32)
_INT32_SPAN = float(_INT32.max) - float(_INT32.min + 1)  # the range ORT fits a bias into
_RANGES = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255)}


@dataclass(frozen=True)
class ActivationQuant:
    tensor: str  # name in the fp32 graph
    scale: float  # post-training calibration's (the learned one lives in the module)
    zero_point: int
    qmin: int
    qmax: int
    # ORT gives the output of a data-movement op (Reshape, Transpose, Gather…) its input's scale and
    # zero point: tensors that share them are one quantizer, keyed by ORT's scale initializer.
    shared: str = ""
    follows: str = ""  # a constant whose own scale this tensor takes (an embedding table's, for its Gather)


@dataclass(frozen=True)
class WeightQuant:
    """A constant ORT stores quantized: a layer's weights, an embedding table, a LayerNorm scale, a
    scalar factor. Its scale and zero point follow from its current values by ORT's formula."""

    tensor: str  # the fp32 initializer
    axis: int | None  # per-channel axis; None: per tensor
    scale: tuple[float, ...]  # what ORT's post-training model stores: the formula must reproduce it
    zero_point: tuple[int, ...]
    elem_type: int  # ONNX type of the stored integers (INT8, UINT8)


@dataclass(frozen=True)
class QuantPlan:
    """Where ORT's post-training QDQ model quantizes: what the fake-quantized module mirrors."""

    activations: dict[str, ActivationQuant]
    weights: dict[str, WeightQuant]
    biases: set[str]  # biases ORT stores as int32
    kept_fp32: dict[str, str] = field(default_factory=dict)  # node → why: ops the mirror cannot match bit for bit stay fp32 in the file


def unmirrored_nodes(prepared: Path) -> dict[str, str]:
    """Nodes whose int8 execution in ONNX Runtime the mirror cannot reproduce exactly, with why
    (`kernels.unmirrored`): they are kept in fp32 (ORT's nodes_to_exclude) in every file the phase
    writes, and run in fp32 in the mirror. Linear Resize, for one: ORT interpolates in its own order
    of float operations, and the output keeps its input's scale, so the many exact ties (weights of
    1/4, 3/4) go its way."""
    import onnx

    reasons = {node.name: kernels.unmirrored(node.op_type, _attributes(node)) for node in onnx.load(str(prepared)).graph.node}
    return {name: why for name, why in reasons.items() if why}


def read_plan(qdq_path: Path) -> QuantPlan:
    """The quantized tensors of ORT's QDQ model, by their names in the fp32 graph ORT was given."""
    import onnx
    from onnx import helper, numpy_helper
    from onnxruntime.quantization.quant_utils import QUANT_INPUT_SUFFIX, TENSOR_NAME_QUANT_SUFFIX

    model = onnx.load(str(qdq_path))
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    activations: dict[str, ActivationQuant] = {}
    weights: dict[str, WeightQuant] = {}
    biases: set[str] = set()
    constant_scales = {n.input[1]: n.input[0].removesuffix(TENSOR_NAME_QUANT_SUFFIX) for n in model.graph.node
                       if n.op_type == "DequantizeLinear" and n.input[0] in init}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in init:
            # A graph output keeps its name on the DequantizeLinear; ORT renames its producer's output.
            name = node.input[0].removesuffix(QUANT_INPUT_SUFFIX)
            zero = init[node.input[2]]
            activations.setdefault(name, ActivationQuant(name, float(init[node.input[1]]), int(zero), *_RANGES[zero.dtype],
                                                         shared=node.input[1], follows=constant_scales.get(node.input[1], "")))
        elif node.op_type == "DequantizeLinear" and node.input[0] in init:
            stored = init[node.input[0]]
            if stored.dtype == np.int32:
                biases.add(node.output[0])  # ORT names the bias DQ's output after the fp32 bias
                continue
            name = node.input[0].removesuffix(TENSOR_NAME_QUANT_SUFFIX)
            scale, zero = init[node.input[1]], init[node.input[2]]
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1) if scale.size > 1 else None
            weights[name] = WeightQuant(name, axis, tuple(float(v) for v in scale.ravel()), tuple(int(v) for v in zero.ravel()),
                                        helper.np_dtype_to_tensor_dtype(stored.dtype))
    return QuantPlan(activations, weights, biases)


@dataclass(frozen=True)
class ConstantRule:
    """How ORT derives a constant's scale and zero point from its values (`constant_scale`)."""

    symmetric: bool
    qmin: int  # the range the scale maps onto (symmetric int8: ±127; reduced: ±64)
    qmax: int
    low: int  # what ORT clips the stored integers to: the type's whole range
    high: int


class FakeQuantGraph(nn.Module):
    """The prepared fp32 ONNX graph run in PyTorch, fake-quantized where `plan` says.

    The learned tensors of layers (weights and biases of Conv / Gemm / MatMul, embedding tables,
    LayerNorm's scale and shift) are trainable parameters; every other initializer is a constant.
    Inputs are taken by position in the graph's input order, or by name. With `learn_scales` False
    the activations keep the calibration's scales: a fixed-scale fake quantizer runs (`fakequant`), the
    same values forwards, without LSQ's step-size gradient (straight through backwards)."""

    def __init__(self, prepared: Path, plan: QuantPlan, fake_quant: bool = True, fused_kernels: bool = True,
                 learn_scales: bool = True) -> None:
        super().__init__()
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(prepared))
        inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
        self.input_names = [i.name for i in inputs]
        # Exported for a fixed batch of 1 (a mobile target): its Reshapes may bake the 1 in, so a batch runs row by row.
        self.one_row_at_a_time = all(i.type.tensor_type.shape.dim[0].dim_value == 1 for i in inputs if i.type.tensor_type.shape.dim)
        self.output_name = model.graph.output[0].name
        self.nodes = [(n.op_type, list(n.input), list(n.output), _attributes(n)) for n in model.graph.node]
        unsupported = sorted({op for op, *_ in self.nodes if op not in _OPS})
        if unsupported:
            raise MirrorError(f"quantization-aware training cannot run {', '.join(unsupported)} yet (it runs {', '.join(sorted(_OPS))}); "
                           "deploy post-training int8 for this student")
        trainable = _learned_initializers(model.graph)
        self.slots: dict[str, str] = {}  # ONNX name → attribute name of its parameter or buffer
        self.params = nn.ParameterDict()
        for index, tensor in enumerate(model.graph.initializer):
            value = torch.from_numpy(numpy_helper.to_array(tensor).copy())
            key = f"t{index}"
            self.slots[tensor.name] = key
            if tensor.name in trainable and value.is_floating_point():
                self.params[key] = nn.Parameter(value)
            else:
                self.register_buffer(key, value)
        self.plan = plan
        self.fake_quant = fake_quant
        # ORT's graph optimisation fuses DQ → op → Q into int8 kernels at level "extended" and above;
        # where one computes differently (kernels.KERNELS), the mirror computes as it does.
        self.fused_kernels = fused_kernels
        self._recording: dict[str, torch.Tensor] | None = None  # quantized_activations() collects here
        for q in plan.activations.values():
            if q.follows and plan.weights[q.follows].axis is not None:
                raise MirrorError(f"{q.tensor!r} takes the per-channel quantization of {q.follows!r}, which quantization-aware training "
                               "does not mirror yet; deploy post-training int8 for this student")
        learned = {q.shared or name: q for name, q in plan.activations.items() if not q.follows}  # one per shared quantizer
        self.scales = nn.ParameterDict({  # the calibration's float32 values exactly, then learned
            f"a{index}": nn.Parameter(torch.tensor(q.scale, dtype=torch.float32)) for index, q in enumerate(learned.values())
        })
        self.scale_floors = [min(_SMALLEST_SCALE, q.scale) for q in learned.values()]
        self.learn_scales = learn_scales
        self.scales.requires_grad_(learn_scales)
        group = {key: index for index, key in enumerate(learned)}
        self.activation_index = {name: group[q.shared or name] for name, q in plan.activations.items() if not q.follows}
        # Zero points as a buffer: made once, moved with the module, not rebuilt at every activation of every batch.
        self.register_buffer("zero_points", torch.tensor([float(q.zero_point) for q in learned.values()]))
        # An int8/int16 weight whose layer adds an int32 bias: (the layer's input, the bias), for ORT's widening of its scale.
        self.biased = {inputs[1]: (inputs[0], inputs[2]) for _, inputs, _, _ in self.nodes
                       if len(inputs) > 2 and inputs[2] in plan.biases and inputs[0] in self.activation_index
                       and inputs[1] in plan.weights and plan.weights[inputs[1]].elem_type in (onnx.TensorProto.INT8, onnx.TensorProto.INT16)}
        self.constant_rules = {name: _identify_rule(q, self.initializer(name), functools.partial(self._widened, name))
                               for name, q in plan.weights.items()}  # at the calibration's scales: nothing trained yet
        self.already_on_grid = self._already_on_grid()

    def _already_on_grid(self) -> set[str]:
        """Outputs that only move or pick values of an input quantized by the same quantizer (a
        Reshape's, Transpose's or MaxPool's output, where ORT shares the scale): quantizing them
        again changes nothing, forwards or backwards (each value is already on the grid, inside the
        range, and adds 0 to the step size's gradient), so the mirror skips the quantizer — the same
        numbers at a fraction of the cost in a transformer, whose attention reshapes every tensor.
        (PyTorch's kernel, run on such a tensor, adds a spurious edge term to the step size's
        gradient at the top step when the zero point is negative; skipping leaves LSQ's exact zero.)"""
        moves = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "MaxPool", "Slice", "Split", "Expand"}
        index = self.activation_index
        return {out for op, inputs, outputs, attrs in self.nodes if op in moves and inputs and inputs[0] in index
                for out in outputs if out in index and index[out] == index[inputs[0]] and self.plan.activations[out].zero_point
                == self.plan.activations[inputs[0]].zero_point}

    def initializer(self, name: str) -> torch.Tensor:
        key = self.slots[name]
        return self.params[key] if key in self.params else getattr(self, key)

    def activation_scale(self, name: str) -> torch.Tensor:
        index = self.activation_index[name]  # a step may not push a scale to 0 or below (nor a calibrated one below itself)
        return self.scales[f"a{index}"].clamp_min(self.scale_floors[index])

    def learned_scales(self) -> dict[str, tuple[float, int]]:
        """tensor → (scale, zero point) as the QDQ export must write them (not the tensors that take a
        constant's: ORT derives those from the trained constant)."""
        return {name: (float(self.activation_scale(name).detach()), q.zero_point) for name, q in self.plan.activations.items()
                if not q.follows}

    def weight_arrays(self) -> dict[str, np.ndarray]:
        """The trainable initializers' current values, by ONNX name (what the export writes back)."""
        return {name: self.params[key].detach().cpu().numpy() for name, key in self.slots.items() if key in self.params}

    def quantized_activations(self, **feeds: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every quantized activation of one forward pass on `feeds`, by tensor name (no gradients):
        what a comparison with ORT's QuantizeLinear outputs reads."""
        self._recording = {}
        try:
            with torch.no_grad():
                self(**feeds)
            return self._recording
        finally:
            self._recording = None

    def forward(self, *args: torch.Tensor, **named: torch.Tensor) -> torch.Tensor:
        feeds: dict[str, torch.Tensor] = {**dict(zip(self.input_names, args)), **named}
        rows = next(iter(feeds.values())).shape[0]
        call = _CallCache()  # the constants, quantized once per call (and shared by the rows of a fixed-batch graph)
        if self.one_row_at_a_time and rows > 1:
            return torch.cat([self._run({k: v[i : i + 1] for k, v in feeds.items()}, call) for i in range(rows)])
        return self._run(feeds, call)

    def _run(self, feeds: dict[str, torch.Tensor], call: _CallCache) -> torch.Tensor:
        env: dict[str, Any] = dict(feeds)
        for name in self.input_names:
            env[name] = self._activation(name, env[name], call)
        for op, inputs, outputs, attrs in self.nodes:
            rows_only = self._looks_up_rows(op, inputs)  # the table raw: only the rows looked up are quantized, below
            values = [self.initializer(name) if rows_only and i == 0 else env[name] if name in env else
                      self._constant_value(name, call) if name else None for i, name in enumerate(inputs)]
            if self.fake_quant and len(inputs) > 2 and inputs[2] in self.plan.biases:
                values[2] = self._bias(inputs, values, call)
            result = _OPS[op](values, attrs)
            if rows_only:  # the rows looked up, quantized as the whole table is (the same values and gradients)
                result = self._constant(inputs[0], result, call)
            fused = self._fused_kernel(op, inputs, outputs)
            for name, value in zip(outputs, result if isinstance(result, tuple) else (result,)):
                env[name] = self._activation(name, value, call)
            if fused:
                exact = kernels.KERNELS[op](values[0].detach(), attrs, *fused)
                env[outputs[0]] = kernels.StraightThrough.apply(env[outputs[0]], exact)
                if self._recording is not None:
                    self._recording[outputs[0]] = env[outputs[0]]
        return env[self.output_name]

    def _looks_up_rows(self, op: str, inputs: list[str]) -> bool:
        """A Gather from a per-tensor quantized table (an embedding): the mirror quantizes the rows
        it looks up instead of the whole table (30,522 × 128 values for a BERT vocabulary, at every
        step) — elementwise with the table's one scale, so the same numbers either way."""
        q = self.plan.weights.get(inputs[0]) if op == "Gather" and self.fake_quant else None
        return q is not None and q.axis is None

    def _fused_kernel(self, op: str, inputs: list[str], outputs: list[str]) -> tuple[kernels.Quant, kernels.Quant] | None:
        """The input's and output's quantization when ORT runs this node as one of its int8 kernels
        that compute differently from fp32-then-quantize; None when it does not."""
        if not (self.fake_quant and self.fused_kernels and op in kernels.KERNELS):
            return None
        ends = [self.plan.activations.get(inputs[0]), self.plan.activations.get(outputs[0])]
        if any(q is None or q.follows for q in ends):
            return None  # not quantized on both sides: ORT runs the fp32 op
        return tuple(kernels.Quant(self.activation_scale(q.tensor).detach(), q.zero_point, q.qmin, q.qmax) for q in ends)

    def _constant_value(self, name: str, call: _CallCache) -> torch.Tensor:
        """An initializer, fake-quantized where ORT stores it quantized."""
        if name not in call.values:
            value = self.initializer(name)
            call.values[name] = self._constant(name, value, call) if self.fake_quant and name in self.plan.weights else value
        return call.values[name]

    def _constant_params(self, name: str, call: _CallCache) -> tuple[torch.Tensor, torch.Tensor]:
        """The scale and zero point ORT will derive from the constant's current values."""
        if name not in call.params:
            scale, zero = constant_scale(self.initializer(name), self.plan.weights[name].axis, self.constant_rules[name])
            call.params[name] = self._widened(name, scale, zero), zero
        return call.params[name]

    def _widened(self, name: str, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
        """The constant's scale as ORT widens it for its layer's int32 bias, at the input's current
        scale (unchanged for a constant without one)."""
        if name not in self.biased:
            return scale
        x_name, b_name = self.biased[name]
        return _widened_for_bias(scale, zero, self.plan.weights[name].axis, self.activation_scale(x_name).detach(), self.initializer(b_name))

    def _activation(self, name: str, x: torch.Tensor, call: _CallCache) -> torch.Tensor:
        value = self._quantize_activation(name, x, call)
        if self._recording is not None and name in self.plan.activations:
            self._recording[name] = value
        return value

    def _quantize_activation(self, name: str, x: torch.Tensor, call: _CallCache) -> torch.Tensor:
        q = self.plan.activations.get(name)
        if q is None or not self.fake_quant or not x.is_floating_point() or name in self.already_on_grid:
            return x
        if q.follows:  # the constant's current scale and zero point, as ORT will derive them from it
            scale, zero = self._constant_params(q.follows, call)
            return fixed_fake_quant(x, float(scale), int(zero), q.qmin, q.qmax)
        index = self.activation_index[name]
        if not self.learn_scales:  # the same forward as LSQ's kernel, straight through backwards
            return fixed_fake_quant(x, float(self.activation_scale(name)), int(self.zero_points[index]), q.qmin, q.qmax)
        scale = self.activation_scale(name).reshape(1)
        zero = self.zero_points[index : index + 1]
        grad_factor = 1.0 / float(np.sqrt(x.numel() * q.qmax))  # LSQ's step-size gradient scale
        return learned_fake_quant(x, scale, zero, q.qmin, q.qmax, grad_factor)

    def _constant(self, name: str, w: torch.Tensor, call: _CallCache) -> torch.Tensor:
        """ORT's quantization of the constant's current values (`quantize_nparray`: a float32 division,
        rounded half to even, clipped to the type), passed straight through backwards."""
        q, rule = self.plan.weights[name], self.constant_rules[name]
        scale, zero = self._constant_params(name, call)
        return constant_fake_quant(w, scale, zero, None if q.axis is None else q.axis % w.ndim, rule.low, rule.high)

    def saturated_biases(self) -> list[str]:
        """The int32 biases that do not fit at the current scales (input scale × weight scale too fine
        for them) and are clipped as ORT clips them. ORT widens only a symmetric int8 weight's scale
        to make a bias fit, so these belong to other weights; its fused int8 kernels then overflow
        their int32 sums, which no mirror follows."""
        call, saturated = _CallCache(), []
        for _, inputs, _, _ in self.nodes:
            if len(inputs) > 2 and inputs[2] in self.plan.biases:
                steps, _ = self._bias_steps(inputs, self.initializer(inputs[2]), call)
                if steps is not None and bool(((steps < _INT32.min) | (steps > _INT32.max)).any()):
                    saturated.append(inputs[2])
        return saturated

    def _bias(self, inputs: list[str], values: list, call: _CallCache) -> torch.Tensor:
        """The bias as ORT stores it: int32 at (input scale × weight scale), per channel."""
        b = values[2]
        steps, step = self._bias_steps(inputs, b, call)
        if steps is None:
            return b
        stored = steps.clamp(_INT32.min, _INT32.max).float()  # a bias too large for its scale saturates
        return b + (stored * step - b).detach()  # rounded forward, identity backward

    def _bias_steps(self, inputs: list[str], b: torch.Tensor, call: _CallCache) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The bias in steps of (input scale × weight scale), divided in float64 and rounded as ORT
        does, before ORT clips it to int32, and the step; (None, None) where ORT keeps the bias fp32."""
        x_name, w_name = inputs[0], inputs[1]
        if x_name not in self.activation_index or w_name not in self.plan.weights:
            return None, None
        step = self.activation_scale(x_name).detach() * self._constant_params(w_name, call)[0]
        return torch.round(b.detach().double() / step.double()), step


@dataclass
class _CallCache:
    """What one forward call derives from the constants, computed once: their fake-quantized values,
    and the scale and zero point ORT derives from each (its weight and bias quantization and a
    Gather output's quantizer all read them)."""

    values: dict[str, torch.Tensor] = field(default_factory=dict)
    params: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


def constant_scale(w: torch.Tensor, axis: int | None, rule: ConstantRule) -> tuple[torch.Tensor, torch.Tensor]:
    """ORT's `compute_scale_zp` on a constant's current values, per channel along `axis` or per tensor:
    the range widened to hold 0 (and made symmetric when the rule is), scale = range / (qmax − qmin)
    computed in float64 and stored as float32, zero point rounded half to even."""
    w = w.detach()
    if axis is None:  # one read for both
        low, high = (v.double().cpu().numpy() for v in torch.aminmax(w))
    else:  # min and max in the tensor's own precision (exact), the arithmetic in float64 on the channels' few values
        dims = [d for d in range(w.ndim) if d != axis % w.ndim]
        low, high = ((getattr(w, reduce)(dim=dims) if dims else w).double().cpu().numpy() for reduce in ("amin", "amax"))
    rmin, rmax = np.minimum(low, 0.0), np.maximum(high, 0.0)
    if rule.symmetric:
        rmax = np.maximum(np.abs(rmin), rmax)
        rmin = -rmax
    scale = (rmax - rmin) / (rule.qmax - rule.qmin)
    degenerate = scale < np.finfo(np.float32).tiny  # an all-zero constant: ORT stores scale 1, zero point 0
    if rule.symmetric:
        zero = np.full_like(scale, round((rule.qmin + rule.qmax) / 2))
    else:
        zero = np.rint(rule.qmin - rmin / np.where(degenerate, 1.0, scale))
    as_tensor = lambda values: torch.from_numpy(np.asarray(values, dtype=np.float32)).to(w.device)  # noqa: E731
    return as_tensor(np.where(degenerate, 1.0, scale)), as_tensor(np.where(degenerate, 0.0, zero))


def _widened_for_bias(scale: torch.Tensor, zero: torch.Tensor, axis: int | None, input_scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """ORT's `_adjust_weight_scale_for_int32_bias` for an int8/int16 weight: where input scale ×
    weight scale is too fine for the bias to fit int32 (an input that barely varies, a large bias),
    a symmetric weight's scale grows until it fits (× 1.0001). The same dtypes as ORT's numpy: the
    bound per channel computed in float32 up to the division, per tensor in float64."""
    if bool((zero != 0).any()):
        return scale
    b = bias.detach().float()
    if axis is None:
        bound = max(-min(float(b.min()), 0.0), max(float(b.max()), 0.0))
        smallest = torch.tensor(1.0001 * (2.0 * bound) / _INT32_SPAN, dtype=torch.float64)
    else:
        smallest = (1.0001 * (2.0 * b.abs())).double() / _INT32_SPAN  # numpy keeps float32 until the division
    candidate = input_scale.double() * scale.double()
    grows = (candidate < smallest) & (candidate > 0.0)
    if not bool(grows.any()):
        return scale
    return torch.where(grows, (scale.double() * (smallest / candidate)).float(), scale)


def _identify_rule(q: WeightQuant, value: torch.Tensor, widen: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> ConstantRule:
    """Which of ORT's formulas made this constant's stored scale and zero point: symmetric or not,
    full or reduced range. Found by reproducing the stored numbers, so the mirror is checked, not assumed."""
    from onnxruntime.quantization.quant_utils import get_qmin_qmax_for_qType

    for symmetric in (True, False):
        for reduce_range in (False, True):
            qmin, qmax = (int(v) for v in get_qmin_qmax_for_qType(q.elem_type, reduce_range=reduce_range, symmetric=symmetric))
            rule = ConstantRule(symmetric, qmin, qmax, *(int(v) for v in get_qmin_qmax_for_qType(q.elem_type)))
            scale, zero = constant_scale(value, q.axis, rule)
            scale = widen(scale, zero)
            if (np.allclose(scale.numpy().ravel(), q.scale, rtol=1e-6, atol=0)
                    and np.array_equal(zero.numpy().ravel().astype(np.int64), np.asarray(q.zero_point))):
                return rule
    raise MirrorError(f"quantization-aware training cannot reproduce how ONNX Runtime quantized {q.tensor!r} "
                   f"(stored scale {q.scale[:3]}…, zero point {q.zero_point[:3]}…); deploy post-training int8 for this student")


def _learned_initializers(graph) -> set[str]:
    """The initializers a PyTorch module would hold as parameters: layers' weights and biases,
    embedding tables (Gather's data), LayerNorm's scale and shift, and a bias added to a MatMul."""
    learned = {"Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (1,), "Gather": (0,), "LayerNormalization": (1, 2)}
    names = {n.input[i] for n in graph.node for i in learned.get(n.op_type, ()) if len(n.input) > i}
    matmul_outputs = {n.output[0] for n in graph.node if n.op_type == "MatMul"}
    names |= {i for n in graph.node if n.op_type == "Add" and set(n.input) & matmul_outputs for i in n.input}
    return names


def _attributes(node) -> dict[str, Any]:
    """A node's attributes as Python values, text as str (ONNX stores it as bytes)."""
    from onnx import helper

    values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return {name: value.decode() if isinstance(value, bytes) else value for name, value in values.items()}


# ---------------------------------------------------------------- the ONNX operators, in PyTorch


def _conv(v, a):
    x, w = v[0], v[1]
    b = v[2] if len(v) > 2 else None
    spatial = x.ndim - 2
    pads = a.get("pads", [0] * 2 * spatial)
    if a.get("auto_pad", "NOTSET") != "NOTSET":
        raise MirrorError(f"Conv with auto_pad {a['auto_pad']!r} is not supported yet; export with explicit pads")
    if pads[:spatial] != pads[spatial:]:
        x = F.pad(x, [p for i in reversed(range(spatial)) for p in (pads[i], pads[i + spatial])])
        pads = [0] * 2 * spatial
    conv = (F.conv1d, F.conv2d, F.conv3d)[spatial - 1]
    return conv(x, w, b, stride=a.get("strides", 1), padding=pads[:spatial], dilation=a.get("dilations", 1), groups=a.get("group", 1))


def _gemm(v, a):
    x, w = v[0], v[1]
    x = x.transpose(-1, -2) if a.get("transA", 0) else x
    w = w.transpose(-1, -2) if a.get("transB", 0) else w
    y = a.get("alpha", 1.0) * (x @ w)
    return y + a.get("beta", 1.0) * v[2] if len(v) > 2 and v[2] is not None else y


def _pool(kind):
    def run(v, a):
        x = v[0]
        spatial = x.ndim - 2
        pads = a.get("pads", [0] * 2 * spatial)
        kernel = a["kernel_shape"]
        if pads[:spatial] != pads[spatial:]:
            raise MirrorError(f"{kind} with asymmetric pads is not supported yet")
        pool = {"max": (F.max_pool1d, F.max_pool2d, F.max_pool3d), "avg": (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)}[kind][spatial - 1]
        extra = {"count_include_pad": bool(a.get("count_include_pad", 0))} if kind == "avg" else {"dilation": a.get("dilations", 1)}
        return pool(x, kernel, stride=a.get("strides", kernel), padding=pads[:spatial], ceil_mode=bool(a.get("ceil_mode", 0)), **extra)

    return run


def _reshape(v, a):
    x, shape = v[0], [int(s) for s in v[1].tolist()]
    shape = [x.shape[i] if s == 0 and not a.get("allowzero", 0) else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _axes(v, a, position=1):
    if len(v) > position and v[position] is not None:
        return [int(i) for i in v[position].tolist()]
    return a.get("axes")


def _clip(v, a):
    low = v[1] if len(v) > 1 and v[1] is not None else a.get("min")
    high = v[2] if len(v) > 2 and v[2] is not None else a.get("max")
    return torch.clamp(v[0], min=low, max=high)


def _flatten(v, a):
    axis = a.get("axis", 1) % max(v[0].ndim, 1)
    return v[0].reshape(int(np.prod(v[0].shape[:axis])), -1)


def _unsqueeze(v, a):
    x = v[0]
    for axis in sorted(_axes(v, a)):
        x = x.unsqueeze(axis)
    return x


def _squeeze(v, a):
    axes = _axes(v, a)
    return v[0].squeeze() if axes is None else v[0].squeeze(tuple(axes))


def _shape(v, a):
    x = v[0]
    dims = list(x.shape)[a.get("start", 0) : a.get("end", None)]
    return torch.tensor(dims, dtype=torch.int64, device=x.device)


def _slice(v, a):
    x = v[0]
    starts, ends = v[1].tolist(), v[2].tolist()
    axes = v[3].tolist() if len(v) > 3 and v[3] is not None else list(range(len(starts)))
    steps = v[4].tolist() if len(v) > 4 and v[4] is not None else [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis %= x.ndim
        size = x.shape[axis]
        start, end = (s + size if s < 0 else s for s in (start, end))
        if step > 0:  # ONNX clamps a forward slice to [0, size]
            x = x[(slice(None),) * axis + (slice(min(max(start, 0), size), min(max(end, 0), size), step),)]
        else:  # and a backward one to [-1, size - 1]
            x = x.index_select(axis, torch.arange(min(max(start, -1), size - 1), min(max(end, -1), size - 1), step, device=x.device))
    return x


def _gather(v, a):
    x, index = v[0], v[1]
    axis = a.get("axis", 0) % x.ndim
    index = torch.where(index < 0, index + x.shape[axis], index)
    if axis == 0 and x.ndim == 2 and x.is_floating_point():
        return F.embedding(index, x)  # an embedding lookup: torch's own kernel and backward
    return x[(slice(None),) * axis + (index,)]


def _gather_elements(v, a):
    x, index = v[0], v[1]
    axis = a.get("axis", 0) % x.ndim
    return torch.gather(x, axis, torch.where(index < 0, index + x.shape[axis], index))


def _gather_nd(v, a):
    x, index = v[0], v[1]
    batch = a.get("batch_dims", 0)
    if batch:
        raise MirrorError("GatherND with batch_dims > 0 is not supported yet")
    depth = index.shape[-1]
    index = torch.where(index < 0, index + torch.tensor(x.shape[:depth], device=index.device), index)
    return x[tuple(index[..., i] for i in range(depth))]


def _expand(v, a):
    shape = torch.broadcast_shapes(tuple(v[0].shape), tuple(int(s) for s in v[1].tolist()))
    return v[0].expand(shape)


def _reduce(fn):
    def run(v, a):
        axes = _axes(v, a)
        keep = bool(a.get("keepdims", 1))
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                return v[0]
            axes = list(range(v[0].ndim))
        return fn(v[0], tuple(axes), keep)

    return run


def _range(v, a):
    start, limit, delta = (t.item() for t in v[:3])
    return torch.arange(start, limit, delta, dtype=v[0].dtype, device=v[0].device)


def _layer_norm(v, a):
    x = v[0]
    axis = a.get("axis", -1) % x.ndim
    return F.layer_norm(x, x.shape[axis:], v[1], v[2] if len(v) > 2 else None, a.get("epsilon", 1e-5))


def _constant_of_shape(v, a):
    from onnx import numpy_helper

    fill = torch.from_numpy(numpy_helper.to_array(a["value"]).copy()) if "value" in a else torch.zeros(1)
    return fill.to(v[0].device).reshape(()).expand(*[int(s) for s in v[0].tolist()]).clone()


def _cast(v, a):
    from onnx import helper

    return v[0].to(torch.from_numpy(np.zeros(0, dtype=helper.tensor_dtype_to_np_dtype(a["to"]))).dtype)


def _resize(v, a):
    """ONNX Resize in the modes exporters write for upsampling: nearest (asymmetric, floor) and
    linear (half-pixel or align-corners), by `sizes` or by `scales`."""
    x = v[0]
    spatial = x.ndim - 2
    sizes = v[3] if len(v) > 3 and v[3] is not None and v[3].numel() else None
    if sizes is not None:
        out = [int(s) for s in sizes.tolist()[2:]]
    else:
        out = [int(np.floor(n * float(s))) for n, s in zip(x.shape[2:], v[2].tolist()[2:])]
    mode, coordinates = a.get("mode", "nearest"), a.get("coordinate_transformation_mode", "half_pixel")
    if mode == "nearest" and coordinates == "asymmetric" and a.get("nearest_mode", "round_prefer_floor") == "floor":
        return F.interpolate(x, size=out, mode="nearest")
    if mode == "linear" and coordinates in ("half_pixel", "pytorch_half_pixel", "align_corners") and not a.get("antialias", 0):
        return F.interpolate(x, size=out, mode=("linear", "bilinear", "trilinear")[spatial - 1], align_corners=coordinates == "align_corners")
    raise MirrorError(f"Resize in mode {mode!r} with coordinate_transformation_mode {coordinates!r} is not supported yet")


def _split(v, a):
    x = v[0]
    axis = a.get("axis", 0) % x.ndim
    sizes = v[1].tolist() if len(v) > 1 and v[1] is not None else a.get("split")
    if sizes is None:
        parts = a.get("num_outputs")
        sizes = [-(-x.shape[axis] // parts)] * (parts - 1)
        sizes.append(x.shape[axis] - sum(sizes))
    return tuple(torch.split(x, [int(s) for s in sizes], dim=axis))


def _gelu(v, a):
    return F.gelu(v[0], approximate="tanh" if a.get("approximate", "none") == "tanh" else "none")


_OPS = {
    "Conv": _conv,
    "Gemm": _gemm,
    "MatMul": lambda v, a: v[0] @ v[1],
    "Add": lambda v, a: v[0] + v[1],
    "Sub": lambda v, a: v[0] - v[1],
    "Mul": lambda v, a: v[0] * v[1],
    "Div": lambda v, a: v[0] / v[1],
    "Relu": lambda v, a: F.relu(v[0]),
    "LeakyRelu": lambda v, a: F.leaky_relu(v[0], a.get("alpha", 0.01)),
    "Sigmoid": lambda v, a: torch.sigmoid(v[0]),
    "Tanh": lambda v, a: torch.tanh(v[0]),
    "HardSigmoid": lambda v, a: torch.clamp(a.get("alpha", 0.2) * v[0] + a.get("beta", 0.5), 0.0, 1.0),
    "HardSwish": lambda v, a: F.hardswish(v[0]),
    "Clip": _clip,
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "GlobalAveragePool": lambda v, a: v[0].mean(dim=tuple(range(2, v[0].ndim)), keepdim=True),
    "ReduceMean": _reduce(lambda x, axes, keep: x.mean(dim=axes, keepdim=keep)),
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Transpose": lambda v, a: v[0].permute(*a["perm"]) if "perm" in a else v[0].permute(*reversed(range(v[0].ndim))),
    "Concat": lambda v, a: torch.cat(v, dim=a["axis"]),
    "Resize": _resize,
    "Split": _split,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Identity": lambda v, a: v[0],
    "Softmax": lambda v, a: torch.softmax(v[0], dim=a.get("axis", -1)),
    # what a transformer adds: embeddings, LayerNorm, GELU, masks, and the shape arithmetic around them
    "Gather": _gather,
    "GatherElements": _gather_elements,
    "GatherND": _gather_nd,
    "LayerNormalization": _layer_norm,
    "Erf": lambda v, a: torch.erf(v[0]),
    "Gelu": _gelu,
    "Pow": lambda v, a: torch.pow(v[0], v[1]),
    "Sqrt": lambda v, a: torch.sqrt(v[0]),
    "Exp": lambda v, a: torch.exp(v[0]),
    "Neg": lambda v, a: -v[0],
    "Abs": lambda v, a: v[0].abs(),
    "Max": lambda v, a: functools.reduce(torch.maximum, v),
    "Min": lambda v, a: functools.reduce(torch.minimum, v),
    "ReduceSum": _reduce(lambda x, axes, keep: x.sum(dim=axes, keepdim=keep)),
    "ReduceMax": _reduce(lambda x, axes, keep: x.amax(dim=axes, keepdim=keep)),
    "Where": lambda v, a: torch.where(v[0], v[1], v[2]),
    "Equal": lambda v, a: v[0] == v[1],
    "Greater": lambda v, a: v[0] > v[1],
    "GreaterOrEqual": lambda v, a: v[0] >= v[1],
    "Less": lambda v, a: v[0] < v[1],
    "LessOrEqual": lambda v, a: v[0] <= v[1],
    "And": lambda v, a: v[0] & v[1],
    "Or": lambda v, a: v[0] | v[1],
    "Not": lambda v, a: ~v[0],
    "IsNaN": lambda v, a: torch.isnan(v[0]),
    "Cast": _cast,
    "Shape": _shape,
    "Slice": _slice,
    "Expand": _expand,
    "Range": _range,
    "ConstantOfShape": _constant_of_shape,
}
