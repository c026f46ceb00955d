"""edgekd/qad/fakequant.py and loops.py: the activations' fake quantizers give PyTorch's numbers
bit for bit, forwards and backwards, on either path (numba's loops, or PyTorch's kernels and
tensor operations where the loops cannot run)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from edgekd.qad import fakequant, loops

PATHS = ["compiled", "pytorch"]


@pytest.fixture(params=PATHS)
def path(request):
    if request.param == "compiled" and fakequant.compiled() is None:
        pytest.skip("numba is not installed")
    with contextlib.nullcontext() if request.param == "compiled" else loops.switched_off():
        yield request.param


def _cases(count: int):
    """Random scales, both integer types, zero points of both signs, values clipped or not, and
    values half-way between two steps (where rounding picks a side)."""
    rng = np.random.default_rng(0)
    for case in range(count):
        scale = float(np.float32(10 ** rng.uniform(-5, 1)))
        qmin, qmax = [(-128, 127), (0, 255), (-127, 127)][case % 3]
        zero = int(rng.integers(qmin, qmax + 1)) if qmin == 0 else int(rng.integers(-20, 20)) * (case % 2)
        x = torch.from_numpy((rng.standard_normal(500) * scale * rng.uniform(1, 300) / (1 + 99 * (case % 4 == 0))).astype(np.float32))
        x[:20] = (torch.arange(20) - 9.5) * scale  # half-way between two steps (a quarter of the cases clip nothing)
        yield case, scale, zero, qmin, qmax, x, torch.from_numpy(rng.standard_normal(500).astype(np.float32))


def test_the_fixed_scale_quantizer_is_pytorch_s_bit_for_bit_ties_and_clipping_included(path):
    for case, scale, zero, qmin, qmax, x, upstream in _cases(300):
        x.requires_grad_()
        theirs = torch.fake_quantize_per_tensor_affine(x, scale, zero, qmin, qmax)
        ours = fakequant.fixed_fake_quant(x, scale, zero, qmin, qmax)
        assert torch.equal(ours, theirs), case
        assert torch.equal(*(torch.autograd.grad(y, x, upstream)[0] for y in (ours, theirs))), case


def test_lsq_is_pytorch_s_bit_for_bit_step_size_gradient_included(path):
    """The step size's gradient as PyTorch's C++ computes it (its backward's own zero point, its
    compiler's fused multiply-adds) and sums it."""
    for case, scale, zero, qmin, qmax, x, upstream in _cases(300):
        factor = 1.0 / float(np.sqrt(x.numel() * qmax))
        results = []
        for quantize in (torch._fake_quantize_learnable_per_tensor_affine, fakequant.learned_fake_quant):
            xs, step = x.clone().requires_grad_(), torch.tensor([scale], requires_grad=True)
            y = quantize(xs, step, torch.tensor([float(zero)]), qmin, qmax, factor)
            results.append((y, *torch.autograd.grad(y, (xs, step), upstream)))
        assert all(torch.equal(ours, theirs) for ours, theirs in zip(*results)), case


def test_transposed_tensors_and_gradients_give_pytorch_s_numbers(path):
    """An attention's transposed keys: the loops read a permuted tensor in its memory order; the
    gradient may arrive in another layout than the input's."""
    for case, scale, zero, qmin, qmax, x, upstream in _cases(60):
        x, upstream = x.reshape(5, 10, 10).permute(2, 0, 1), upstream.reshape(5, 10, 10).permute(1, 0, 2)
        if case % 2:
            upstream = upstream.contiguous()
        assert fakequant._fused(x) or path == "pytorch"
        xs = x.detach().requires_grad_()
        ours, theirs = fakequant.fixed_fake_quant(xs, scale, zero, qmin, qmax), torch.fake_quantize_per_tensor_affine(xs, scale, zero, qmin, qmax)
        assert torch.equal(ours, theirs), case
        assert torch.equal(*(torch.autograd.grad(y, xs, upstream)[0] for y in (ours, theirs))), case
        factor, results = 1.0 / float(np.sqrt(x.numel() * qmax)), []
        for quantize in (torch._fake_quantize_learnable_per_tensor_affine, fakequant.learned_fake_quant):
            xs, step = x.detach().requires_grad_(), torch.tensor([scale], requires_grad=True)
            y = quantize(xs, step, torch.tensor([float(zero)]), qmin, qmax, factor)
            results.append((y, *torch.autograd.grad(y, (xs, step), upstream)))
        assert all(torch.equal(ours, theirs) for ours, theirs in zip(*results)), case


def test_a_tensor_the_loops_cannot_read_gets_pytorch_s_kernels_and_the_same_numbers(path):
    x = torch.randn(40, 30)[:, ::3]  # gaps between its values: not one run of memory
    assert not fakequant._fused(x)
    scale, zero = torch.tensor([0.02], requires_grad=True), torch.tensor([3.0])
    ours = fakequant.learned_fake_quant(x, scale, zero, 0, 255, 0.01)
    assert torch.equal(ours, torch._fake_quantize_learnable_per_tensor_affine(x, scale, zero, 0, 255, 0.01))
    assert torch.equal(fakequant.fixed_fake_quant(x, 0.02, 3, 0, 255), torch.fake_quantize_per_tensor_affine(x, 0.02, 3, 0, 255))


def test_a_constant_is_quantized_as_ort_stores_it_on_either_path(path):
    """Per tensor (the compiled loop where numba is installed) and per channel: the value training
    sees, `w + (dequantized − w)`, and an identity gradient."""
    rng = np.random.default_rng(1)
    for case in range(60):
        w = torch.from_numpy((rng.standard_normal((16, 24)) * 10 ** rng.uniform(-3, 1)).astype(np.float32))
        w[0, :8] = torch.arange(8) + 0.5  # ties, at a scale of 1
        per_channel = case % 2 == 1
        shape = (16, 1) if per_channel else ()
        scale = torch.tensor(np.abs(rng.standard_normal(shape)) * 0.05 + 1e-3, dtype=torch.float32) if case % 3 else torch.ones(shape)
        zero = torch.tensor(rng.integers(-10, 10, shape), dtype=torch.float32)
        w.requires_grad_()
        ours = fakequant.constant_fake_quant(w, scale, zero, 0 if per_channel else None, -128, 127)
        stored = torch.clamp(torch.round(w.detach() / scale) + zero, -128, 127)
        assert torch.equal(ours, w.detach() + ((stored - zero) * scale - w.detach())), case
        assert torch.equal(torch.autograd.grad(ours.sum(), w)[0], torch.ones_like(w)), case


def test_loops_numba_cannot_compile_leave_pytorch_s_kernels_in_charge_with_a_warning(monkeypatch):
    pytest.importorskip("numba")

    def broken(jit):
        raise RuntimeError("LLVM says no")

    monkeypatch.setattr(loops, "_build", broken)
    loops._compiled_once.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="LLVM says no.*PyTorch's kernels run instead"):
            assert loops.compiled() is None
    finally:
        loops._compiled_once.cache_clear()
