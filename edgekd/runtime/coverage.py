"""How NNAPI and CoreML would run a model: node coverage and partitions, from ONNX Runtime's own
usability checker and its operator support tables.

Each partition boundary copies tensors between the NPU and the CPU, so many small partitions make
a mobile EP slower than the CPU alone. Export records this for the deployed model; bench checks it
against a target's min_mobile_coverage.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

from edgekd.errors import first_line

MOBILE_PROVIDERS = {"NnapiExecutionProvider": "NNAPI", "CoreMLExecutionProvider": "CoreML"}


@dataclass(frozen=True)
class EpCoverage:
    ep: str  # "NNAPI" or "CoreML" (ML Program)
    nodes: int
    supported_nodes: int
    coverage: float  # supported_nodes / nodes
    partitions: int  # subgraphs the EP would run; the rest falls back to the CPU
    unsupported_ops: list[str]  # op types that fall back to the CPU
    suitability: str  # ONNX Runtime's verdict: YES, MAYBE or NO ("UNKNOWN" when not analysed)
    error: str | None = None  # why the check could not run


def mobile_coverage(path: Path) -> list[EpCoverage]:
    """How NNAPI and CoreML would partition the model, with the shapes as they are in the file."""
    from onnxruntime.tools.mobile_helpers.usability_checker import check_coreml_partitions, check_nnapi_partitions
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo

    try:
        model = ModelProtoWithShapeInfo(Path(path)).model_with_shape_info
    except Exception as exc:  # ORT's shape inference raises many types
        return [_unknown(ep, exc) for ep in ("NNAPI", "CoreML")]
    checks = {
        "NNAPI": lambda m: check_nnapi_partitions(m, True),
        "CoreML": lambda m: check_coreml_partitions(m, True, "coreml_supported_mlprogram_ops.md"),
    }
    results = []
    for ep, check in checks.items():
        try:
            with quiet_ort_tools():
                info = check(model)
        except Exception as exc:  # the checker rejects some valid graphs (e.g. ORT's own fp16 output)
            results.append(_unknown(ep, exc))
            continue
        nodes = max(info.num_nodes, 1)
        results.append(EpCoverage(
            ep=ep, nodes=info.num_nodes, supported_nodes=info.num_supported_nodes,
            coverage=info.num_supported_nodes / nodes, partitions=info.num_partitions,
            unsupported_ops=sorted(info.unsupported_ops), suitability=info.suitability().name,
        ))
    return results


def _unknown(ep: str, exc: Exception) -> EpCoverage:
    reason = first_line(exc)
    return EpCoverage(ep, 0, 0, 0.0, 0, [], "UNKNOWN", f"ONNX Runtime's usability checker failed: {reason}")


@contextlib.contextmanager
def quiet_ort_tools():
    """ONNX Runtime's tools print progress to stdout and INFO logs; keep stdout for --json."""
    loggers = [logging.getLogger(name) for name in ("ort_format_model.utils", "usability_checker", "")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
