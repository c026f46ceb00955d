"""The fake-quantized mirror against ONNX Runtime, one operator at a time, at the optimisation level
targets ship ("all": ORT fuses DQ → op → Q into its int8 kernels).

Each case is a tiny PyTorch model, exported, quantized post-training by ONNX Runtime (static QDQ,
int8 per-channel or uint8 per-tensor) and run by both; the outputs are compared element by element
in steps of the output's scale. The op reads the output of a 1×1 convolution (ORT quantizes an op
only where its input is quantized), so its inputs lie on the int8 grid and its ties are real ties:
a 2×2 mean lands half-way between two steps about a quarter of the time. What may differ is float
arithmetic that PyTorch and ORT's kernels order differently (a convolution's sum, a sigmoid's
approximation), which puts a rare value on the other side of a rounding boundary: so the contract
is at most one step on at most 1 in 1000 elements, on any CPU. The second test shows that the ties
are there: without the fused kernels' arithmetic, a good share of the elements is off.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

from edgekd.export.onnx import export_onnx
from edgekd.export.quantize import scheme_settings
from edgekd.inputs import Inputs
from edgekd.models.call import predict
from edgekd.qad.graph import FakeQuantGraph
from edgekd.errors import MirrorError
from edgekd.qad.stage import check_qad_parity, post_training_plan
from edgekd.runtime.session import open_session, run_batches
from edgekd.targets import QuantizationConfig, RuntimeConfig, Scheme, Target


class _Apply(nn.Module):
    """`fn` after a layer whose output ORT quantizes: a 1×1 convolution (or linear layer, or
    embedding) unless the case names its own."""

    def __init__(self, fn, layer: nn.Module | None = None, width: int = 4) -> None:
        super().__init__()
        self.layer = layer if layer is not None else nn.Conv2d(width, width, 1)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.layer(x))


def _faint(layer: nn.Module, factor: float = 1e-7) -> nn.Module:
    """`layer` with its weights and bias scaled down: an output that barely varies, so the next
    layer's input scale × weight scale is too fine for its bias in int32 (ORT widens the weight scale)."""
    with torch.no_grad():
        for p in layer.parameters():
            p.mul_(factor)
    return layer


def _halves(fn):
    return lambda x: fn(*torch.chunk(x, 2, dim=1))


IMAGE, ROWS, TOKENS = (4, 8, 8), (5, 8), (6,)
# name → (model, per-sample shape)
CASES = {
    "AveragePool 2x2": (lambda: _Apply(nn.AvgPool2d(2)), IMAGE),
    "AveragePool 3x3 padded": (lambda: _Apply(nn.AvgPool2d(3, 1, 1, count_include_pad=False)), IMAGE),
    "AveragePool 3x3 padded, pads counted": (lambda: _Apply(nn.AvgPool2d(3, 1, 1)), IMAGE),
    "GlobalAveragePool": (lambda: _Apply(nn.AdaptiveAvgPool2d(1)), IMAGE),
    "MaxPool": (lambda: _Apply(nn.MaxPool2d(2)), IMAGE),
    "Concat": (lambda: _Apply(_halves(lambda a, b: torch.cat([b, a], 1))), IMAGE),
    "Resize nearest": (lambda: _Apply(lambda y: F.interpolate(y, scale_factor=2, mode="nearest")), IMAGE),
    "Resize bilinear (kept fp32)": (lambda: _Apply(lambda y: F.interpolate(y, scale_factor=2, mode="bilinear")), IMAGE),
    "AveragePool ceil_mode (kept fp32)": (lambda: _Apply(nn.AvgPool2d(3, 2, ceil_mode=True)), IMAGE),
    "Add": (lambda: _Apply(_halves(torch.add)), IMAGE),
    "Mul": (lambda: _Apply(_halves(torch.mul)), IMAGE),
    "Sigmoid": (lambda: _Apply(torch.sigmoid), IMAGE),
    "HardSigmoid": (lambda: _Apply(F.hardsigmoid), IMAGE),
    "HardSwish": (lambda: _Apply(F.hardswish), IMAGE),
    "LeakyRelu": (lambda: _Apply(lambda y: F.leaky_relu(y, 0.1)), IMAGE),
    "Softmax": (lambda: _Apply(lambda y: torch.softmax(y, -1), nn.Linear(8, 8)), ROWS),
    "LayerNormalization": (lambda: _Apply(nn.LayerNorm(8), nn.Linear(8, 8)), ROWS),
    "Gather (embedding)": (lambda: _Apply(lambda y: y, nn.Embedding(20, 8)), TOKENS),
    "Conv": (lambda: _Apply(lambda y: y, nn.Conv2d(4, 4, 3, padding=1)), IMAGE),
    "Gemm": (lambda: _Apply(lambda y: y, nn.Linear(8, 8)), (8,)),
    "Conv whose bias outgrows int32": (lambda: _Apply(nn.Conv2d(4, 4, 3, padding=1), _faint(nn.Conv2d(4, 4, 1))), IMAGE),
    "Gemm whose bias outgrows int32": (lambda: _Apply(nn.Linear(8, 8), _faint(nn.Linear(8, 8))), (8,)),
    "MatMul": (lambda: _Apply(lambda y: y, nn.Linear(8, 8)), ROWS),
}
SCHEMES = {"s8 per-channel": {}, "u8 per-tensor": {"activation_type": "uint8", "weight_type": "uint8", "per_channel": False}}
SHIPS = RuntimeConfig(intra_op_threads=1, graph_optimization="all")


def _data(shape: tuple[int, ...], rows: int, seed: int) -> Inputs:
    rng = np.random.default_rng(seed)
    if shape == TOKENS:
        return Inputs({"input": rng.integers(0, 20, (rows, *shape)).astype(np.int64)})
    return Inputs({"input": rng.normal(size=(rows, *shape)).astype(np.float32)})


def _quantized(case: str, scheme: dict, folder: Path):
    make, shape = CASES[case]
    torch.manual_seed(0)
    export_onnx(make(), _data(shape, 2, 0), folder / "model.onnx", opset=18)
    settings = scheme_settings(Scheme.static_qdq, QuantizationConfig(**scheme))
    prepared, ptq, plan = post_training_plan(folder / "model.onnx", folder, settings, _data(shape, 64, 1))
    return prepared, ptq, plan, _data(shape, 128, 2)


def _steps_off(ours: np.ndarray, theirs: np.ndarray, step: float) -> np.ndarray:
    return np.rint(np.abs(ours - theirs) / step)


# ORT widens only a symmetric int8 weight's scale for its bias: with uint8 weights the bias saturates
# int32 and ORT's fused kernels overflow their int32 sums (the next test checks the QDQ model as written).
PAIRS = [(case, scheme) for case in CASES for scheme in SCHEMES if "outgrows" not in case or scheme == "s8 per-channel"]


@pytest.mark.parametrize(("case", "scheme"), PAIRS)
def test_the_mirror_computes_what_onnx_runtime_s_int8_kernels_compute(case, scheme, tmp_path):
    prepared, ptq, plan, x = _quantized(case, SCHEMES[scheme], tmp_path)
    graph = FakeQuantGraph(prepared, plan).eval()
    ours = predict(graph, x)
    theirs = run_batches(open_session(ptq, runtime=SHIPS), x)
    output = plan.activations.get(graph.output_name)
    if output is None:  # ORT leaves this op's output in fp32 (HardSigmoid, a kept Resize, a pooled graph output)
        off = (np.abs(ours - theirs) > 1e-5 * np.abs(theirs).max()).astype(float)
    else:
        off = _steps_off(ours, theirs, output.scale)
    assert off.max() <= 1 and (off > 0).mean() <= 1e-3, f"{case}: {int((off > 0).sum())} of {off.size} elements off, up to {off.max():.0f} steps"
    if "kept fp32" in case:
        assert [why.split()[0] for why in plan.kept_fp32.values()] == [case.split()[0]], plan.kept_fp32


@pytest.mark.parametrize("case", ["AveragePool 2x2", "AveragePool 3x3 padded", "Softmax"])
def test_without_the_kernels_arithmetic_the_ties_go_the_other_way(case, tmp_path):
    """The cases above have teeth: the fp32 op followed by rounding (what the mirror did before it
    computed as ORT's fused kernels compute) is off by a step on a good share of the elements."""
    prepared, ptq, plan, x = _quantized(case, {}, tmp_path)
    plain = FakeQuantGraph(prepared, plan, fused_kernels=False).eval()
    theirs = run_batches(open_session(ptq, runtime=SHIPS), x)
    assert (_steps_off(predict(plain, x), theirs, plan.activations[plain.output_name].scale) > 0).mean() > 0.005


@pytest.mark.parametrize("case", [case for case in CASES if "outgrows" in case])
def test_a_bias_that_outgrows_int32_saturates_as_onnx_runtime_stores_it(case, tmp_path):
    """Asymmetric uint8 weights keep their scale and the bias is clipped to int32 as ORT clips it:
    the mirror equals ORT's QDQ model as written (level "basic"), step for step. ORT's fused int8
    kernels then overflow their int32 sums, which no mirror follows: the stage's parity check before
    training catches that and keeps post-training int8."""
    prepared, ptq, plan, x = _quantized(case, SCHEMES["u8 per-tensor"], tmp_path)
    assert any(np.abs(numpy_helper.to_array(i)).max() == np.iinfo(np.int32).max
               for i in onnx.load(str(ptq)).graph.initializer if i.data_type == onnx.TensorProto.INT32), "the bias does saturate"
    graph = FakeQuantGraph(prepared, plan, fused_kernels=False).eval()
    theirs = run_batches(open_session(ptq, runtime=RuntimeConfig(intra_op_threads=1, graph_optimization="basic")), x)
    assert _steps_off(predict(graph, x), theirs, plan.activations[graph.output_name].scale).max() == 0


@pytest.mark.parametrize("case", [case for case in CASES if "outgrows" in case])
def test_a_parity_failure_from_a_saturated_bias_names_the_bias_and_the_fix(case, tmp_path):
    """As the target ships the file (level "all"), the overflow parts ORT's run from the mirror: the
    error names the bias and says to quantize weights as int8, where ORT widens the weight's scale."""
    prepared, ptq, plan, x = _quantized(case, SCHEMES["u8 per-tensor"], tmp_path)
    graph = FakeQuantGraph(prepared, plan).eval()
    saturated = graph.saturated_biases()
    assert len(saturated) == 1 and saturated[0] in plan.biases
    with pytest.raises(MirrorError, match=f"int32 bias '{saturated[0]}' does not fit.*weight_type = \"int8\""):
        check_qad_parity(graph, ptq, x, "regression", Target(name="x86", description="as it ships", runtime=SHIPS))
    prepared, ptq, plan, x = _quantized(case, SCHEMES["s8 per-channel"], tmp_path / "s8")
    assert FakeQuantGraph(prepared, plan).saturated_biases() == []  # ORT widened the int8 weight's scale: the bias fits


def test_the_compiled_int8_softmax_is_the_tensor_version_bit_for_bit():
    """numba's loop for QLinearSoftmax computes what the tensor operations compute (which the ORT
    comparisons above check), element for element, for both output types and any axis."""
    from edgekd.qad import kernels, loops

    if loops.compiled() is None:
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(0)
    for case in range(40):
        length = int(rng.integers(2, 80))
        x_scale = torch.tensor(np.float32(10 ** rng.uniform(-2, 0)))
        y_scale = torch.tensor(np.float32(rng.choice([1 / 255, 1 / 256, 0.0039, 1 / 128])))
        qmin = (0, -128)[case % 2]
        x = torch.round(torch.from_numpy(rng.standard_normal((7, 3, length)).astype(np.float32)) * 3 / x_scale).clamp(-127, 127) * x_scale
        quants = kernels.Quant(x_scale, 0, -128, 127), kernels.Quant(y_scale, qmin, qmin, qmin + 255)
        attrs = {"axis": int(rng.integers(0, 3))}
        compiled = kernels.softmax(x, attrs, *quants)
        with loops.switched_off():
            assert torch.equal(compiled, kernels.softmax(x, attrs, *quants)), case
