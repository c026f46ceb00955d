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
moves the folded weights ORT deploys. Exporting back is ORT's job: `edgekd.qad.export` writes the
trained weights into the fp32 graph and has ORT quantize it with these scales as overrides.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekd.errors import QadError
from edgekd.export.exclusion import WEIGHT_OPS

_SMALLEST_SCALE = 1e-8
_RANGES = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255)}


@dataclass(frozen=True)
class ActivationQuant:
    tensor: str  # name in the fp32 graph
    scale: float  # post-training calibration's (the learned one lives in the module)
    zero_point: int
    qmin: int
    qmax: int


@dataclass(frozen=True)
class WeightQuant:
    tensor: str  # the fp32 initializer
    axis: int | None  # per-channel axis; None: per tensor
    qmin: int
    qmax: int  # symmetric int8: scale = max|w| / 127, zero point 0


@dataclass(frozen=True)
class QuantPlan:
    """Where ORT's post-training QDQ model quantizes: what the fake-quantized module mirrors."""

    activations: dict[str, ActivationQuant]
    weights: dict[str, WeightQuant]
    biases: set[str]  # biases ORT stores as int32


def read_plan(qdq_path: Path) -> QuantPlan:
    """The quantized tensors of ORT's QDQ model, by their names in the fp32 graph ORT was given."""
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization.quant_utils import QUANT_INPUT_SUFFIX, TENSOR_NAME_QUANT_SUFFIX

    model = onnx.load(str(qdq_path))
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    activations: dict[str, ActivationQuant] = {}
    weights: dict[str, WeightQuant] = {}
    biases: set[str] = set()
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in init:
            # A graph output keeps its name on the DequantizeLinear; ORT renames its producer's output.
            name = node.input[0].removesuffix(QUANT_INPUT_SUFFIX)
            zero = init[node.input[2]]
            activations.setdefault(name, ActivationQuant(name, float(init[node.input[1]]), int(zero), *_RANGES[zero.dtype]))
        elif node.op_type == "DequantizeLinear" and node.input[0] in init:
            stored = init[node.input[0]]
            if stored.dtype == np.int32:
                biases.add(node.output[0])  # ORT names the bias DQ's output after the fp32 bias
                continue
            name = node.input[0].removesuffix(TENSOR_NAME_QUANT_SUFFIX)
            per_channel = init[node.input[1]].size > 1
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1) if per_channel else None
            if stored.dtype != np.int8:
                raise QadError(f"quantization-aware training mirrors symmetric int8 weights; this target quantizes weights to {stored.dtype}: "
                               'set [quantization] weight_type = "int8"')
            weights[name] = WeightQuant(name, axis, -127, 127)
    return QuantPlan(activations, weights, biases)


class FakeQuantGraph(nn.Module):
    """The prepared fp32 ONNX graph run in PyTorch, fake-quantized where `plan` says.

    Float initializers of weight-bearing ops (and their biases) are trainable parameters; every
    other initializer is a constant. Inputs are taken by position in the graph's input order, or
    by name."""

    def __init__(self, prepared: Path, plan: QuantPlan, fake_quant: bool = True) -> None:
        super().__init__()
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(prepared))
        self.input_names = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
        self.output_name = model.graph.output[0].name
        self.nodes = [(n.op_type, list(n.input), list(n.output), _attributes(n)) for n in model.graph.node]
        unsupported = sorted({op for op, *_ in self.nodes if op not in _OPS})
        if unsupported:
            raise QadError(f"quantization-aware training cannot run {', '.join(unsupported)} yet (it runs {', '.join(sorted(_OPS))}); "
                           "deploy post-training int8 for this student")
        trainable = {n.input[i] for n in model.graph.node if n.op_type in WEIGHT_OPS for i in (1, 2) if len(n.input) > i}
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
        self.scales = nn.ParameterDict({  # the calibration's float32 values exactly, then learned
            f"a{index}": nn.Parameter(torch.tensor(q.scale, dtype=torch.float32))
            for index, q in enumerate(plan.activations.values())
        })
        self.activation_index = {name: index for index, name in enumerate(plan.activations)}  # scales[f"a{i}"], zero_points[i]
        # Zero points as a buffer: made once, moved with the module, not rebuilt at every activation of every batch.
        self.register_buffer("zero_points", torch.tensor([float(q.zero_point) for q in plan.activations.values()]))

    def initializer(self, name: str) -> torch.Tensor:
        key = self.slots[name]
        return self.params[key] if key in self.params else getattr(self, key)

    def activation_scale(self, name: str) -> torch.Tensor:
        return self.scales[f"a{self.activation_index[name]}"].clamp_min(_SMALLEST_SCALE)  # a step may not push a scale to 0 or below

    def learned_scales(self) -> dict[str, tuple[float, int]]:
        """tensor → (scale, zero point) as the QDQ export must write them."""
        return {name: (float(self.activation_scale(name).detach()), q.zero_point) for name, q in self.plan.activations.items()}

    def weight_arrays(self) -> dict[str, np.ndarray]:
        """The trainable initializers' current values, by ONNX name (what the export writes back)."""
        return {name: self.params[key].detach().cpu().numpy() for name, key in self.slots.items() if key in self.params}

    def forward(self, *args: torch.Tensor, **named: torch.Tensor) -> torch.Tensor:
        env: dict[str, Any] = dict(zip(self.input_names, args))
        env.update(named)
        for name in self.input_names:
            env[name] = self._activation(name, env[name])
        for op, inputs, outputs, attrs in self.nodes:
            values = [self._value(name, env) if name else None for name in inputs]
            if self.fake_quant and op in WEIGHT_OPS and len(inputs) > 1 and inputs[1] in self.plan.weights:
                values[1] = self._weight(inputs[1], values[1])
                if len(inputs) > 2 and inputs[2] in self.plan.biases:
                    values[2] = self._bias(inputs, values)
            result = _OPS[op](values, attrs)
            for name, value in zip(outputs, result if isinstance(result, tuple) else (result,)):
                env[name] = self._activation(name, value)
        return env[self.output_name]

    def _value(self, name: str, env: dict[str, Any]):
        return env[name] if name in env else self.initializer(name)

    def _activation(self, name: str, x: torch.Tensor) -> torch.Tensor:
        q = self.plan.activations.get(name)
        if q is None or not self.fake_quant or not x.is_floating_point():
            return x
        scale = self.activation_scale(name).reshape(1)
        index = self.activation_index[name]
        zero = self.zero_points[index : index + 1]
        grad_factor = 1.0 / float(np.sqrt(x.numel() * q.qmax))  # LSQ's step-size gradient scale
        return torch._fake_quantize_learnable_per_tensor_affine(x, scale, zero, q.qmin, q.qmax, grad_factor)

    def _weight(self, name: str, w: torch.Tensor) -> torch.Tensor:
        q = self.plan.weights[name]
        scale = _weight_scale(q, w)
        if q.axis is None:
            return torch.fake_quantize_per_tensor_affine(w, float(scale), 0, q.qmin, q.qmax)
        zeros = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zeros, q.axis % w.ndim, q.qmin, q.qmax)

    def _bias(self, inputs: list[str], values: list) -> torch.Tensor:
        """The bias as ORT stores it: int32 at (input scale × weight scale), per channel."""
        x_name, w_name = inputs[0], inputs[1]
        b = values[2]
        if x_name not in self.plan.activations or w_name not in self.plan.weights:
            return b
        step = self.activation_scale(x_name).detach() * _weight_scale(self.plan.weights[w_name], self.initializer(w_name))
        return b + (torch.round(b / step) * step - b).detach()  # rounded forward, identity backward


def _weight_scale(q: WeightQuant, w: torch.Tensor) -> torch.Tensor:
    """ORT's symmetric int8 weight scale: max |w| / 127, per channel along `q.axis` or per tensor."""
    w = w.detach().abs()
    if q.axis is None:
        return (w.max() / q.qmax).clamp_min(1e-12)
    dims = [d for d in range(w.ndim) if d != q.axis % w.ndim]
    return (w.amax(dim=dims) / q.qmax).clamp_min(1e-12)


def _attributes(node) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


# ---------------------------------------------------------------- the ONNX operators, in PyTorch


def _conv(v, a):
    x, w = v[0], v[1]
    b = v[2] if len(v) > 2 else None
    spatial = x.ndim - 2
    pads = a.get("pads", [0] * 2 * spatial)
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise QadError(f"Conv with auto_pad {a['auto_pad']!r} is not supported yet; export with explicit pads")
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
            raise QadError(f"{kind} with asymmetric pads is not supported yet")
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


def _reduce_mean(v, a):
    axes = _axes(v, a)
    if axes is None:
        return v[0].mean() if not a.get("keepdims", 1) else v[0].mean(dim=tuple(range(v[0].ndim)), keepdim=True)
    return v[0].mean(dim=tuple(axes), keepdim=bool(a.get("keepdims", 1)))


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
    "ReduceMean": _reduce_mean,
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Transpose": lambda v, a: v[0].permute(*a["perm"]) if "perm" in a else v[0].permute(*reversed(range(v[0].ndim))),
    "Concat": lambda v, a: torch.cat(v, dim=a["axis"]),
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Identity": lambda v, a: v[0],
    "Softmax": lambda v, a: torch.softmax(v[0], dim=a.get("axis", -1)),
}
