"""PyTorch → ONNX with a dynamic batch axis, and a parity check on real inputs.

torch's dynamo exporter is tried first; when it fails, the TorchScript exporter is the recorded
fallback, and the first error is kept in the result so a user knows why.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd._io import atomic_path
from edgekd._ort import open_session, run_batches
from edgekd.errors import OnnxModelError, ParityError

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class OnnxExport:
    path: str
    exporter: str  # "dynamo" or "torchscript"
    fallback_reason: str | None  # why dynamo was not used (None when it was)
    opset: int
    nodes: int
    bytes: int


@dataclass(frozen=True)
class Parity:
    max_abs: float  # largest |PyTorch − ONNX Runtime| over all logits
    mean_abs: float
    argmax_agreement: float  # share of samples whose top-1 class is the same
    samples: int


def export_onnx(model, input_shape: tuple[int, ...], path: Path, opset: int) -> OnnxExport:
    """Export `model` (eval mode) to `path` with a dynamic batch axis, checked by onnx.checker."""
    import onnx
    import torch

    model = model.eval().cpu()
    example = (torch.zeros((2, *input_shape)),)  # batch 2: batch 1 would be specialised away
    fallback_reason = None
    with atomic_path(Path(path)) as tmp, _quiet_exporter():
        try:
            torch.onnx.export(
                model, example, str(tmp), dynamo=True, external_data=False, verbose=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
            exporter = "dynamo"
        except Exception as exc:  # the dynamo exporter raises many error types
            fallback_reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
            torch.onnx.export(
                model, example, str(tmp), dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
            exporter = "torchscript"
        proto = onnx.load(str(tmp))
        try:
            onnx.checker.check_model(proto, full_check=True)
        except onnx.checker.ValidationError as exc:
            raise OnnxModelError(f"the exported model fails onnx.checker: {str(exc).splitlines()[0]}") from None
    return OnnxExport(str(path), exporter, fallback_reason, opset, len(proto.graph.node), Path(path).stat().st_size)


def check_parity(model, onnx_path: Path, x: np.ndarray, limit: float, label: str) -> Parity:
    """Compare PyTorch and ONNX Runtime on real inputs; raise ParityError beyond `limit`.

    Also runs batch 1 and batch 64 to prove the batch axis really is dynamic.
    """
    from edgekd.distill.trainer import predict

    session = open_session(onnx_path)
    expected = predict(model.cpu(), x)
    got = run_batches(session, x)
    for batch in (1, 64):
        run_batches(session, np.resize(x, (batch, *x.shape[1:])), batch_size=batch)
    diff = np.abs(expected - got)
    parity = Parity(float(diff.max()), float(diff.mean()), float((expected.argmax(1) == got.argmax(1)).mean()), len(x))
    if parity.max_abs > limit:
        raise ParityError(label, parity.max_abs, limit)
    return parity


@contextlib.contextmanager
def _quiet_exporter():
    """The exporters log and warn about things users cannot act on (e.g. torchvision ops)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
