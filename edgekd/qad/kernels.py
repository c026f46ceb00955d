"""ONNX Runtime's fused int8 kernels whose arithmetic is not "the fp32 op, then quantize", in PyTorch.

At graph-optimisation level "extended" or "all" (what targets ship) ORT replaces the pattern
DequantizeLinear → op → QuantizeLinear by one int8 kernel. For most ops the result is the fp32
op's output quantized, which the fake-quantized graph already computes. Two are not:

- `QLinearAveragePool` sums the dequantized inputs of each window in row-major order, divides by
  the count and rounds `y / scale + zero_point` half to even. Its output keeps its input's scale, so
  a 2×2 mean falls exactly half-way between two steps about a quarter of the time, and which way a
  tie goes depends on that float arithmetic: PyTorch's pooling sums in another order.
- `QLinearSoftmax` looks exp up in a float table built in double precision, sums the row in float32
  one element after the other and divides by `floor(1 / y_scale)` instead of multiplying by the
  scale: a few steps from softmax-then-quantize on a good share of the elements.

Each function here reproduces its kernel bit for bit on the current (detached) values, from the
C++ kernel's own order of operations; the fake-quantized graph returns that value forwards and
takes its gradient from the fp32 op with its fake quantizer (a straight-through estimator), so
training sees the numbers the device computes. Checked element by element against ORT in
tests/test_qad_ops.py, ties included.
"""

from __future__ import annotations

import functools
import math
import platform
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from edgekd.qad.loops import compiled


@dataclass(frozen=True)
class Quant:
    """One tensor's quantization as the kernel reads it: float32 scale, zero point, integer range."""

    scale: torch.Tensor  # 0-d float32
    zero_point: int
    qmin: int
    qmax: int


def average_pool(x: torch.Tensor, attrs: dict, x_quant: Quant, y_quant: Quant) -> torch.Tensor:
    """com.microsoft.QLinearAveragePool on `x` (already on x_quant's grid), dequantized. Pools with
    ceil_mode or dilations never reach it: `unmirrored` keeps them fp32 in the phase's files."""
    spatial = x.ndim - 2
    kernel = list(attrs["kernel_shape"])
    strides = list(attrs.get("strides", [1] * spatial))
    pads = list(attrs.get("pads", [0] * 2 * spatial))
    padded = F.pad(x, [p for i in reversed(range(spatial)) for p in (pads[i], pads[i + spatial])])
    out = [(padded.shape[2 + i] - kernel[i]) // strides[i] + 1 for i in range(spatial)]
    total = torch.zeros(*x.shape[:2], *out, dtype=x.dtype, device=x.device)
    for offset in np.ndindex(*kernel):  # row-major over the window, as the kernel's nested loops
        window = tuple(slice(o, o + (n - 1) * s + 1, s) for o, n, s in zip(offset, out, strides))
        total = total + padded[(slice(None), slice(None), *window)]
    if attrs.get("count_include_pad", 0):
        count = torch.tensor(float(math.prod(kernel)), dtype=x.dtype, device=x.device)
    else:  # the window's elements inside the image: a padded border counts fewer
        inside = F.pad(torch.ones(1, 1, *x.shape[2:], dtype=x.dtype, device=x.device),
                       [p for i in reversed(range(spatial)) for p in (pads[i], pads[i + spatial])])
        count = torch.zeros(1, 1, *out, dtype=x.dtype, device=x.device)
        for offset in np.ndindex(*kernel):
            window = tuple(slice(o, o + (n - 1) * s + 1, s) for o, n, s in zip(offset, out, strides))
            count = count + inside[(slice(None), slice(None), *window)]
    return _requantize(total / count, y_quant)


def softmax(x: torch.Tensor, attrs: dict, x_quant: Quant, y_quant: Quant) -> torch.Tensor:
    """com.microsoft.QLinearSoftmax (opset 13 semantics: one axis) on `x` (on x_quant's grid), dequantized."""
    axis = attrs.get("axis", -1) % x.ndim
    moved = x.movedim(axis, -1)
    length = moved.shape[-1]
    loops = compiled() if x.device.type == "cpu" and x.dtype == torch.float32 else None
    if loops is not None:  # the same arithmetic, one pass over each row
        rows = moved.detach().contiguous().reshape(-1, length)
        out = torch.empty_like(rows)
        loops.softmax(rows.numpy(), _exp_table(float(x_quant.scale), length), np.float32(x_quant.scale),
                      np.floor(np.float32(1.0) / np.float32(y_quant.scale)), np.float32(y_quant.zero_point), np.float32(y_quant.scale),
                      y_quant.qmin < 0, out.numpy())
        return out.reshape(moved.shape).movedim(-1, axis)
    below = torch.round(moved / x_quant.scale)  # q - zero point: whole numbers
    below = (below.amax(dim=-1, keepdim=True) - below).long()  # steps below the row's largest: 0…255
    table = torch.from_numpy(_exp_table(float(x_quant.scale), length)).to(x.device)[below]
    total = table[..., 0]
    for i in range(1, length):  # float32, one element after the other
        total = total + table[..., i]
    inverse = torch.floor(1.0 / y_quant.scale.to(torch.float32))
    q = torch.round((table * inverse) / total.unsqueeze(-1)) + y_quant.zero_point
    q = torch.clamp(q, max=255.0)
    if y_quant.qmin < 0:  # the kernel casts to int8 after clamping to 255 only: values above 127 wrap
        q = torch.where(q > 127.0, q - 256.0, q)
    return ((q - y_quant.zero_point) * y_quant.scale).movedim(-1, axis)


@functools.lru_cache(maxsize=256)  # one per (scale, row length): built once while the scales stay put (evaluation)
def _exp_table(scale: float, length: int) -> np.ndarray:
    """The kernel's float32 exp table by steps below the row's largest, built as it builds it: in
    double precision with the C library's exp, shifted up so that a row's sum stays finite."""
    headroom = math.log(float(np.float32(np.finfo(np.float32).max) / np.float32(length)))  # a float division, then log in double
    shift = max(0.0, headroom - 5.0) / scale
    return np.array([math.exp((-steps + shift) * scale) for steps in range(256)], dtype=np.float32)


def _requantize(y: torch.Tensor, quant: Quant) -> torch.Tensor:
    """The kernels' `nearbyintf(y / scale + zero_point)`, clipped to the type, dequantized. On x86,
    ORT runs int8 activations as uint8 with the zero point moved up by 128 (its QDQS8ToU8
    transformer): the same integers, but the float sum `y / scale + zero_point` rounds at another
    magnitude, and so a tie can go the other way."""
    offset = 128 if quant.qmin < 0 and S8_RUNS_AS_U8 else 0
    q = torch.clamp(torch.round(y / quant.scale + float(quant.zero_point + offset)), quant.qmin + offset, quant.qmax + offset)
    return (q - (quant.zero_point + offset)) * quant.scale


S8_RUNS_AS_U8 = platform.machine().lower() in {"x86_64", "amd64", "i386", "i686", "x86"}
KERNELS = {"AveragePool": average_pool, "Softmax": softmax}


def unmirrored(op: str, attrs: dict) -> str | None:
    """Why ORT's int8 execution of this node (`attrs`: text as str) is not reproduced bit for bit (it
    is then kept fp32 in the phase's files and run in fp32 by the mirror), or None when it is."""
    if op == "AveragePool" and (attrs.get("ceil_mode", 0) or any(d != 1 for d in attrs.get("dilations", []))):
        return "AveragePool with ceil_mode or dilations: its int8 kernel's window arithmetic is not mirrored"
    if op == "Resize" and attrs.get("mode", "nearest") != "nearest":
        return f"Resize in {attrs['mode']} mode: ONNX Runtime's int8 interpolation rounds its ties its own way"
    return None


class StraightThrough(torch.autograd.Function):
    """Forwards `exact` (ORT's kernel, bit for bit); backwards, the gradient of `surrogate`."""

    @staticmethod
    def forward(ctx, surrogate: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        return exact.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ARG004
        return grad, None
