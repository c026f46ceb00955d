"""Static figures read from the ONNX graph: parameters, nodes, operator mix, file size."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.errors import OnnxModelError

_QDQ = {"QuantizeLinear", "DequantizeLinear"}


@dataclass(frozen=True)
class GraphProfile:
    bytes: int  # file size
    parameters: int  # weight and bias elements (quantization scales and zero points excluded)
    nodes: int
    ops: dict[str, int]  # node count per operator type
    graph_source: str  # the file the graph figures were read from (an .ort file's .onnx twin)


def read_profile(path: Path) -> GraphProfile:
    """Figures of an ONNX file; for an .ort file, its size with the graph of the .onnx beside it."""
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
    return GraphProfile(size, parameters, len(graph.node), dict(sorted(ops.items())), path.name)
