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
from edgekd._ort import fixed_batch, open_session, run_batches
from edgekd.errors import OnnxModelError, ParityError
from edgekd.targets import ExportConfig

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


def export_onnx(model, input_shape: tuple[int, ...], path: Path, opset: int, batch: int | None = None) -> OnnxExport:
    """Export `model` (eval mode) to `path`, checked by onnx.checker.

    `batch=None` gives a dynamic batch axis; an integer fixes it (mobile EPs need fixed shapes).
    """
    import onnx
    import torch

    model = model.eval().cpu()
    example = (torch.zeros((batch or 2, *input_shape)),)  # dynamic: batch 2, as 1 would be specialised away
    dynamic_shapes = None if batch else ({0: torch.export.Dim("batch")},)
    dynamic_axes = None if batch else {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    fallback_reason = None
    with atomic_path(Path(path)) as tmp, _quiet_exporter():
        try:
            torch.onnx.export(
                model, example, str(tmp), dynamo=True, external_data=False, verbose=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=dynamic_shapes,
            )
            exporter = "dynamo"
        except Exception as exc:  # the dynamo exporter raises many error types
            fallback_reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
            torch.onnx.export(
                model, example, str(tmp), dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=dynamic_axes,
            )
            exporter = "torchscript"
        proto = onnx.load(str(tmp))
        try:
            onnx.checker.check_model(proto, full_check=True)
        except onnx.checker.ValidationError as exc:
            raise OnnxModelError(f"the exported model fails onnx.checker: {str(exc).splitlines()[0]}") from None
    return OnnxExport(str(path), exporter, fallback_reason, opset, len(proto.graph.node), Path(path).stat().st_size)


def check_parity(model, onnx_path: Path, x: np.ndarray, cfg: ExportConfig, label: str) -> Parity:
    """Compare PyTorch and ONNX Runtime on real inputs; raise ParityError beyond the thresholds.

    A dynamic-batch model also runs at batch 1 and 64, to prove the axis really is dynamic.
    """
    from edgekd.distill.trainer import predict

    session = open_session(onnx_path)
    expected = predict(model.cpu(), x)
    got = run_batches(session, x)
    if fixed_batch(session) is None:
        for batch in (1, 64):
            run_batches(session, np.resize(x, (batch, *x.shape[1:])), batch_size=batch)
    diff = np.abs(expected - got)
    parity = Parity(float(diff.max()), float(diff.mean()), float((expected.argmax(1) == got.argmax(1)).mean()), len(x))
    if parity.max_abs > cfg.parity_max_abs:
        raise ParityError(label, "max |Δ|", parity.max_abs, cfg.parity_max_abs)
    if parity.mean_abs > cfg.parity_max_mean_abs:
        raise ParityError(label, "mean |Δ|", parity.mean_abs, cfg.parity_max_mean_abs)
    if parity.argmax_agreement < cfg.parity_min_agreement:
        raise ParityError(label, "top-1 agreement", parity.argmax_agreement, cfg.parity_min_agreement)
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
