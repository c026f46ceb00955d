"""The activations' fake quantizers, PyTorch's numbers in one pass over memory.

A quantization-aware step runs one fake quantizer per quantized activation: 53 in the 2-layer
text student, on tensors of up to 884,736 values. PyTorch's kernels
(`fake_quantize_per_tensor_affine`, and LSQ's `_fake_quantize_learnable_per_tensor_affine` with its
backward) compute element by element through a libm call, at about 20× a multiplication's time;
the same arithmetic as whole-tensor operations still reads and writes memory four or five times.
Here each direction is one loop compiled by numba (`pip install numba`; the training extras have
it) that computes, element for element, what PyTorch's kernel computes:

- forwards: `(clamp(zero + rint(x · (1/scale)), qmin, qmax) − zero) · scale`, the float32
  reciprocal, ties to even, and whether anything was clipped (the straight-through mask);
- LSQ's backward (Esser et al. 2020): dX masked where clipped; the step size's gradient per
  element as PyTorch's C++ computes it — with its backward's zero point (`trunc(zero + 0.5)`), and
  with its compiler's fused multiply-adds where the build contracts them — summed by `Tensor.sum`
  as PyTorch sums it.

Which arithmetic the installed PyTorch uses is found by running its kernels once on a probe of
ties, clipped values and both signs of zero point (`_agreement`), not assumed; where the loops do not
reproduce it bit for bit, or numba is missing, or a tensor is not float32 on the CPU in one run of
memory (contiguous, or transposed: a permutation of a contiguous tensor), PyTorch's own kernels (or
their tensor-operation equivalent) run instead: the same numbers, slower.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from edgekd.qad.loops import compiled


def fixed_fake_quant(x: torch.Tensor, scale: float, zero: int, qmin: int, qmax: int) -> torch.Tensor:
    """`torch.fake_quantize_per_tensor_affine(x, scale, zero, qmin, qmax)`, bit for bit forwards and
    backwards (gradient 1 inside the range, 0 where clipped: the straight-through estimator)."""
    return _FixedFakeQuant.apply(x, scale, float(qmin - zero), float(qmax - zero))


def learned_fake_quant(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, qmin: int, qmax: int, grad_factor: float) -> torch.Tensor:
    """`torch._fake_quantize_learnable_per_tensor_affine` (LSQ: the step size `scale`, a 1-element
    tensor, learns), bit for bit forwards and backwards. `zero` (1 element, whole) gets no gradient."""
    if not _fused(x) or _agreement() is None:
        return torch._fake_quantize_learnable_per_tensor_affine(x, scale, zero, qmin, qmax, grad_factor)
    return _LearnedFakeQuant.apply(x, scale, zero, qmin, qmax, grad_factor)


def constant_fake_quant(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, axis: int | None, low: int, high: int) -> torch.Tensor:
    """ORT's quantization of a constant's current values (`quantize_nparray`: a float32 division,
    rounded half to even, plus the zero point, clipped to the stored type's [low, high]), dequantized
    and given to training as `w + (that − w)`, straight through backwards. `scale` and `zero` (float32):
    0-d with `axis` None (per tensor), else one per channel along `axis`."""
    if _fused(w) and w.is_contiguous() and scale.device.type == "cpu":  # channels counted in w's own order
        channels = (1, 1, w.numel()) if axis is None else (math.prod(w.shape[:axis]), w.shape[axis], math.prod(w.shape[axis + 1 :]))
        return _ConstantFakeQuant.apply(w, channels, scale.reshape(-1).numpy(), zero.reshape(-1).numpy(), np.float32(low), np.float32(high))
    if axis is not None:
        shape = [1] * w.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    stored = torch.clamp(torch.round(w.detach() / scale) + zero, low, high)
    return w + ((stored - zero) * scale - w).detach()


class _ConstantFakeQuant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: torch.Tensor, channels: tuple, scale: np.ndarray, zero: np.ndarray, low: np.float32, high: np.float32) -> torch.Tensor:
        out = torch.empty_like(w)
        compiled().constant(_flat(w).reshape(channels), _flat(out).reshape(channels), scale, zero, low, high)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None, None, None, None, None


class _FixedFakeQuant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float, low: float, high: float) -> torch.Tensor:
        out, inside = _quantize(x, np.float32(scale), low, high)
        ctx.clipped = inside is not None
        if ctx.clipped:
            ctx.save_for_backward(inside)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if not ctx.clipped:
            return grad, None, None, None
        (inside,) = ctx.saved_tensors
        if _fused(grad):
            grad = _laid_out_as(inside, grad)
            dx = _empty_as(inside, grad.dtype)
            compiled().masked(_flat(grad), _flat(inside), _flat(dx))
            return dx, None, None, None
        return grad * inside, None, None, None  # PyTorch's dY · mask (a clipped element's gradient is ±0)


class _LearnedFakeQuant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, qmin: int, qmax: int, grad_factor: float) -> torch.Tensor:
        step = np.float32(scale.item())
        zero_forward = int(np.clip(np.rint(np.float32(zero.item())), qmin, qmax))  # PyTorch's forward zero point
        ctx.save_for_backward(x)
        ctx.constants = _backward_constants(step, zero, qmin, qmax, grad_factor)
        out = _empty_as(x, x.dtype)  # no mask: the backward finds the clipped elements again from x
        compiled().values(_flat(x), _flat(out), np.float32(1.0) / step, step, np.float32(qmin - zero_forward), np.float32(qmax - zero_forward))
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x = ctx.saved_tensors[0]
        dx, per_element = _empty_as(x, x.dtype), _empty_as(x, x.dtype)
        compiled().learned_backward[_agreement()](_flat(x), _flat(_laid_out_as(x, grad)), _flat(dx), _flat(per_element), *ctx.constants)
        return dx, per_element.sum().unsqueeze(0), None, None, None, None  # summed as PyTorch sums it


def _quantize(x: torch.Tensor, step: np.float32, low: float, high: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """x on the grid `step` · [low, high] (steps from the zero point), and where it was not clipped
    (None when nothing was: the gradient then passes straight through, no mask to keep)."""
    inverse = np.float32(1.0) / step
    if _fused(x) and _agreement() is not None:
        out, inside = _empty_as(x, x.dtype), _empty_as(x, torch.bool)
        clipped = compiled().forward(_flat(x), _flat(out), _flat(inside), inverse, step, np.float32(low), np.float32(high))
        return out, inside if clipped else None
    steps = torch.mul(x.detach(), float(inverse)).round_()  # the same arithmetic as whole-tensor operations
    if x.device.type == "cpu" and low <= float(steps.min()) <= float(steps.max()) <= high:  # two reads: nothing clipped
        return steps.mul_(float(step)), None
    kept = steps.clamp(low, high)
    inside = kept == steps
    return kept.mul_(float(step)), inside


def _flat(t: torch.Tensor) -> np.ndarray:
    """t's elements in memory order, a numpy view of its storage (t dense: see `_memory_order`).
    Tensors with the same strides list their elements in the same order."""
    t = t.detach()
    return (t if t.is_contiguous() else t.permute(_memory_order(t))).view(-1).numpy()


def _memory_order(t: torch.Tensor) -> list[int] | None:
    """The order of t's dimensions that makes it contiguous (outermost first): none to change for a
    contiguous tensor, the inverse of the permutation for a transposed one (an attention's keys);
    None for a tensor with gaps or overlaps, which the loops cannot read as one run of memory."""
    order = sorted(range(t.ndim), key=lambda d: -t.stride(d))
    return order if t.permute(order).is_contiguous() else None


def _empty_as(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A new tensor with t's shape and strides: the loops write it in t's memory order."""
    return torch.empty_strided(t.shape, t.stride(), dtype=dtype)


def _laid_out_as(t: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """`value` (t's shape) with t's strides: itself where they already are, else a copy."""
    return value if value.stride() == t.stride() else _empty_as(t, value.dtype).copy_(value)


def _backward_constants(step: np.float32, zero: torch.Tensor, qmin: int, qmax: int, grad_factor: float) -> tuple:
    """The scalars PyTorch's LSQ backward computes with: the float32 reciprocal, its backward's zero
    point (zero + 0.5, clamped, truncated toward 0: −7 becomes −6), the clipped gradients' factors."""
    zero_backward = int(min(max(np.float32(zero.item()) + np.float32(0.5), np.float32(qmin)), np.float32(qmax)))
    return (np.float32(1.0) / step, step, float(zero_backward), np.float32(qmin), np.float32(qmax),
            np.float32(qmin - zero_backward), np.float32(qmax - zero_backward), np.float32(grad_factor))


def _fused(x: torch.Tensor) -> bool:
    """Whether the compiled loops can run on `x`: float32 on the CPU, one run of memory (contiguous
    or permuted), numba installed."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.numel() > 0 and (x.is_contiguous() or _memory_order(x) is not None)
            and compiled() is not None)


@functools.cache
def _agreement() -> bool | None:
    """Whether the installed PyTorch's LSQ backward fuses its multiply-adds (True) or not (False),
    told by which loop reproduces its kernels bit for bit on a probe of ties, clipped values and
    zero points of both signs; None when neither does (the loops then stay unused, forwards too)."""
    rng = np.random.default_rng(0)
    probes = [_probe(case, rng) for case in range(8)]
    return next((contracted for contracted in (True, False) if all(_reproduces(contracted, *probe) for probe in probes)), None)


def _probe(case: int, rng: np.random.Generator) -> tuple:
    scale = np.float32(10 ** rng.uniform(-4, 0))
    qmin, qmax = ((0, 255), (-128, 127))[case % 2]
    zero = float(rng.integers(0, 256)) if qmin == 0 else float(rng.integers(-9, 10))
    x = (rng.standard_normal(4096) * scale * 80).astype(np.float32)
    x[:64] = (np.arange(64) - 32 + 0.5) * scale  # half-way between two steps
    return torch.from_numpy(x), torch.from_numpy(rng.standard_normal(4096).astype(np.float32)), scale, zero, qmin, qmax


def _reproduces(contracted: bool, x: torch.Tensor, dy: torch.Tensor, scale: np.float32, zero: float, qmin: int, qmax: int) -> bool:
    zero_t, factor = torch.tensor([zero]), 1.0 / float(np.sqrt(x.numel() * qmax))
    theirs, their_mask = torch.ops.aten.fake_quantize_per_tensor_affine_cachemask(x, float(scale), int(zero), qmin, qmax)
    out, inside = torch.empty_like(x), torch.empty(x.shape, dtype=torch.bool)
    loops, inverse, low, high = compiled(), np.float32(1.0) / scale, np.float32(qmin - zero), np.float32(qmax - zero)
    clipped = loops.forward(x.numpy(), out.numpy(), inside.numpy(), inverse, scale, low, high)
    values = torch.empty_like(x)
    loops.values(x.numpy(), values.numpy(), inverse, scale, low, high)
    dx_theirs, dscale_theirs, _ = torch.ops.aten._fake_quantize_learnable_per_tensor_affine_backward(
        dy, x, torch.tensor([scale]), zero_t, qmin, qmax, factor)
    dx, per_element = torch.empty_like(x), torch.empty_like(x)
    loops.learned_backward[contracted](x.numpy(), dy.numpy(), dx.numpy(), per_element.numpy(), *_backward_constants(scale, zero_t, qmin, qmax, factor))
    return (torch.equal(out, theirs) and torch.equal(values, theirs) and torch.equal(inside, their_mask) and clipped == (not bool(their_mask.all()))
            and torch.equal(dx, dx_theirs) and torch.equal(per_element.sum().unsqueeze(0), dscale_theirs))
