"""Static figures read from the ONNX graph: parameters, nodes, operator mix, file size."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd._config import Tally
from edgekd.errors import OnnxModelError

_QDQ = {"QuantizeLinear", "DequantizeLinear"}


@dataclass(frozen=True)
class GraphProfile:
    bytes: Tally  # file size
    parameters: Tally  # weight and bias elements (quantization scales and zero points excluded)
    nodes: Tally
    ops: dict[str, int]  # node count per operator type
    graph_source: str  # the file the graph figures were read from (an .ort file's .onnx twin)
    macs: int = 0  # multiply-accumulates per sample in Conv/Gemm/MatMul (FLOPs ≈ 2 × MACs)
    # Bytes of the weights that embedding lookups (Gather) read: most of a small text model.
    # The rest of the file (other weights, graph) is bytes − embedding_bytes.
    embedding_bytes: int = 0


def read_profile(path: Path, sequence_length: int | None = None) -> GraphProfile:
    """Figures of an ONNX file; for an .ort file, its size with the graph of the .onnx beside it.

    MACs are per sample, at `sequence_length` tokens for a model with a free sequence axis."""
    import onnx
    from onnx import TensorProto

    path = Path(path)
    size = path.stat().st_size
    if path.suffix == ".ort":
        twin = path.with_suffix(".onnx")
        if not twin.is_file():
            return GraphProfile(size, 0, 0, {}, "none: the .onnx it was converted from is not beside it")
        path = twin
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise OnnxModelError(f"{path}: not a readable ONNX file ({type(exc).__name__}); re-export the model") from None
    graph = model.graph
    scale_or_zero = {name for node in graph.node if node.op_type in _QDQ for name in node.input[1:]}
    parameters = 0
    for init in graph.initializer:
        if init.name in scale_or_zero or init.data_type == TensorProto.INT64:  # int64: shapes, not weights
            continue
        parameters += int(np.prod(init.dims)) if len(init.dims) else 1
    ops = Counter(node.op_type for node in graph.node)
    return GraphProfile(size, parameters, len(graph.node), dict(sorted(ops.items())), path.name, _macs(model, sequence_length or 1), _embedding_bytes(graph))


def _embedding_bytes(graph) -> int:
    """Bytes of initializers that a Gather reads as its table, directly or through DequantizeLinear
    (int8 embeddings are stored quantized and dequantized before the lookup)."""
    import onnx

    initializers = {init.name: init for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    tables: set[str] = set()
    for node in graph.node:
        if node.op_type != "Gather" or not node.input:
            continue
        source = node.input[0]
        upstream = producer.get(source)
        if upstream is not None and upstream.op_type == "DequantizeLinear":
            source = upstream.input[0]
        if source in initializers:
            tables.add(source)
    total = 0
    for name in tables:
        init = initializers[name]
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
        total += int(np.prod(init.dims)) * itemsize if len(init.dims) else itemsize
    return total


_MATMUL_OPS = {"MatMul", "MatMulInteger", "QLinearMatMul", "Gemm", "QGemm"}
_CONV_OPS = {"Conv", "ConvInteger", "QLinearConv"}


def _macs(model, length: int = 1) -> int:
    """Multiply-accumulates of one sample, from shapes inferred with the batch axis set to 1 and
    any other free axis (a sequence) to `length`."""
    return sum(macs_by_kind(model, length).values())


def macs_by_kind(model, length: int = 1) -> dict[str, int]:
    """Multiply-accumulates of one sample split into "conv" and "matmul" (MatMul, Gemm and their
    quantized forms): what decides whether an int8 scheme that only quantizes MatMul can pay."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    _sort_topologically(model.graph)
    for value in model.graph.input:
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if not dim.HasField("dim_value"):
                dim.dim_value = 1 if axis == 0 else length
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # an unknown contrib op stops inference: count what can be counted
        pass
    shapes = {}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else 0 for d in dims]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    total = {"conv": 0, "matmul": 0}
    for node in model.graph.node:
        out = shapes.get(node.output[0], [])
        if not out or 0 in out:
            continue
        if node.op_type in _CONV_OPS:
            weight = shapes.get(node.input[3 if node.op_type == "QLinearConv" else 1], [])
            if len(weight) >= 3:  # (C_out, C_in / groups, *kernel): each output does C_in/g × kernel MACs
                total["conv"] += int(np.prod(out)) * int(np.prod(weight[1:]))
        elif node.op_type in _MATMUL_OPS:
            a = shapes.get(node.input[0], [])
            if len(a) >= 1 and a[-1]:
                inner = a[-2] if node.op_type in ("Gemm", "QGemm") and _attr(node, "transA") and len(a) >= 2 else a[-1]
                total["matmul"] += int(np.prod(out)) * int(inner)
    return total


def _sort_topologically(graph) -> None:
    """Reorder nodes so each comes after its inputs' producers (some converters emit them out of
    order, which stops shape inference)."""
    available = {v.name for v in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:  # a cycle or a dangling input: keep the rest as they were
            ordered += pending
            break
        for node in ready:
            available.update(node.output)
        ordered += ready
        taken = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in taken]
    del graph.node[:]
    graph.node.extend(ordered)


def _attr(node, name: str) -> int:
    return next((a.i for a in node.attribute if a.name == name), 0)
