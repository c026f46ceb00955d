"""The loops that quantization-aware training runs per element, compiled by numba.

PyTorch's elementwise operations each read and write a whole tensor; the fake quantizer and ONNX
Runtime's int8 softmax are a handful of such passes each, or a Python loop. Here each is one loop
over memory, compiled on first use (a second or two) and written to compute what the PyTorch code it
replaces computes, operation for operation in float32 (`fakequant` and `kernels` check this, and fall
back to their PyTorch versions where numba is missing or cannot compile them). numba is an optional dependency: the
training extras install it.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Loops:
    forward: Callable  # the fake quantizer: values on the grid, the straight-through mask, whether anything clipped
    values: Callable  # the same values on the grid alone (LSQ's backward finds the clipped elements again from x)
    masked: Callable  # PyTorch's dY · mask
    learned_backward: dict[bool, Callable]  # LSQ's backward, by whether PyTorch's build fuses its multiply-adds
    softmax: Callable  # com.microsoft.QLinearSoftmax on rows of steps
    constant: Callable  # ORT's quantization of a constant, per tensor or per channel, as training sees it


_switched_off = False  # set by switched_off()


def compiled() -> Loops | None:
    """The loops, compiled and run once on a few values when first asked for (about a second, once
    per process); None without numba, where numba cannot compile them here (a warning says so), or
    inside `switched_off()`: PyTorch's kernels then run."""
    return None if _switched_off else _compiled_once()


@contextlib.contextmanager
def switched_off() -> Iterator[None]:
    """PyTorch's kernels instead of the loops inside the block, as on an install without numba: how
    tools/qad_speed.py times that path and the tests compare the two. A training step's forward and
    backward both belong inside."""
    global _switched_off
    saved, _switched_off = _switched_off, True
    try:
        yield
    finally:
        _switched_off = saved


@functools.cache
def _compiled_once() -> Loops | None:
    try:
        import numba
    except ImportError:
        return None
    try:
        return _warmed(_build(numba.njit(nogil=True)))
    except Exception as error:  # noqa: BLE001 — any failure of the optional accelerator leaves PyTorch's kernels in charge
        warnings.warn(f"numba could not compile quantization-aware training's loops ({error}); PyTorch's kernels run instead, "
                      "the same numbers, slower", RuntimeWarning, stacklevel=2)
        return None


def _build(jit) -> Loops:
    one, nothing = np.float32(1.0), np.float32(0.0)

    @jit
    def forward(x, out, inside, inverse, step, low, high):
        clipped = False
        for i in range(x.size):
            steps = np.rint(x[i] * inverse)
            kept = min(max(steps, low), high)
            inside[i] = steps == kept
            clipped |= steps != kept
            out[i] = kept * step
        return clipped

    @jit
    def values(x, out, inverse, step, low, high):
        for i in range(x.size):
            out[i] = min(max(np.rint(x[i] * inverse), low), high) * step

    @jit
    def masked(grad, inside, out):
        for i in range(grad.size):
            out[i] = grad[i] * (one if inside[i] else nothing)

    @jit
    def constant(w, out, scale, zero, low, high):  # w + (dequantized − w), each operation in float32 as PyTorch's
        outer, channels, inner = w.shape  # a scale and zero point per channel (one channel: per tensor)
        for o in range(outer):
            for c in range(channels):
                for i in range(inner):
                    value = w[o, c, i]
                    stored = min(max(np.rint(value / scale[c]) + zero[c], low), high)
                    out[o, c, i] = value + ((stored - zero[c]) * scale[c] - value)

    return Loops(forward, values, masked, {contracted: jit(_learned_backward(contracted, one, nothing)) for contracted in (True, False)},
                 jit(_softmax), constant)


def _warmed(loops: Loops) -> Loops:
    """Each loop compiled for the types the callers pass, by running it on a few values."""
    x, f32 = np.linspace(-2, 2, 8, dtype=np.float32), np.float32
    out, inside = np.empty_like(x), np.empty(x.shape, dtype=np.bool_)
    loops.forward(x, out, inside, f32(4.0), f32(0.25), f32(-4.0), f32(4.0))
    loops.values(x, out, f32(4.0), f32(0.25), f32(-4.0), f32(4.0))
    loops.masked(x, inside, out)
    for backward in loops.learned_backward.values():
        backward(x, x, out, np.empty_like(x), f32(4.0), f32(0.25), 0.0, f32(-4.0), f32(4.0), f32(-4.0), f32(4.0), f32(0.1))
    loops.softmax(x.reshape(2, 4), np.ones(256, dtype=np.float32), f32(0.25), f32(255.0), f32(0.0), f32(1 / 255), False, out.reshape(2, 4))
    loops.constant(x.reshape(1, 2, 4), out.reshape(1, 2, 4), np.ones(2, dtype=np.float32), np.zeros(2, dtype=np.float32), f32(-128.0), f32(127.0))
    return loops


def _learned_backward(contracted: bool, one: np.float32, nothing: np.float32) -> Callable:
    """LSQ's backward loop as PyTorch's C++ computes it, with (`contracted`) or without fused multiply-adds."""

    def run(x, dy, dx, dscale, inverse, step, zero, qmin, qmax, below, above, factor):
        for i in range(x.size):
            if contracted:  # x · (1/scale) + zero as one fused multiply-add: exact in float64, rounded once
                q = np.rint(np.float32(np.float64(x[i]) * np.float64(inverse) + zero))
            else:
                q = np.rint(x[i] * inverse + np.float32(zero))
            if q < qmin or q > qmax:
                dx[i] = dy[i] * nothing
                dscale[i] = (dy[i] * (below if q < qmin else above)) * factor
            else:
                dx[i] = dy[i] * one
                if contracted:  # (q − zero) · scale − x, fused: the product is exact in float64
                    error = np.float32(np.float64(q - zero) * np.float64(step) - np.float64(x[i]))
                else:
                    error = np.float32(q - zero) * step - x[i]
                dscale[i] = dy[i] * error * inverse * factor

    return run


def _softmax(x, exp_table, x_scale, inverse, zero, scale, wrap, out):
    """Rows of `x` (on its grid) through QLinearSoftmax's arithmetic, as `kernels.softmax` computes it:
    steps below the row's largest, exp looked up, summed in float32 in order, divided, rounded."""
    rows, length = x.shape
    below = np.empty(length, dtype=np.int64)
    for r in range(rows):
        top = np.rint(x[r, 0] / x_scale)
        for i in range(1, length):
            top = max(top, np.rint(x[r, i] / x_scale))
        for i in range(length):
            below[i] = np.int64(top - np.rint(x[r, i] / x_scale))
        total = exp_table[below[0]]
        for i in range(1, length):
            total += exp_table[below[i]]
        for i in range(length):
            q = min(np.rint((exp_table[below[i]] * inverse) / total) + zero, np.float32(255.0))
            if wrap and q > np.float32(127.0):
                q -= np.float32(256.0)
            out[r, i] = (q - zero) * scale
