"""PyTorch → ONNX with named inputs, dynamic batch and sequence axes, and a parity check on real inputs.

The example inputs come from real data and the ONNX inputs are named after the model's input
spec; every symbolic dim (`batch`, `sequence`) becomes a dynamic axis. torch's dynamo exporter is
tried first; when it fails, the TorchScript exporter is the recorded fallback, and the first
error is kept in the result so a user knows why.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd._io import atomic_path
from edgekd.runtime.metrics import compare_outputs
from edgekd.runtime.session import fixed_batch, open_session, run_batches
from edgekd.errors import OnnxModelError, ParityError, first_line
from edgekd.inputs import BATCH, Inputs, as_inputs, concat_outputs, image_spec
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
    scale: float = 0.0  # largest |logit| from PyTorch: what the differences are relative to
    max_rel: float = 0.0  # max_abs / scale


def export_onnx(model, example: Inputs | np.ndarray | tuple[int, ...], path: Path, opset: int, batch: int | None = None,
                output_names: tuple[str, ...] = (OUTPUT_NAME,)) -> OnnxExport:
    """Export `model` (eval mode) to `path`, checked by onnx.checker.

    `example` is real inputs (their first rows are traced) or, for the one-input case, a per-sample
    shape (zeros are traced). `batch=None` gives a dynamic batch axis; an integer fixes it
    (mobile EPs need fixed shapes). Sequence axes stay dynamic either way.
    """
    import onnx
    import torch

    model = model.eval().cpu()
    rows = batch or 2  # dynamic: batch 2, as 1 would be specialised away
    if isinstance(example, tuple) and all(isinstance(d, int) for d in example):
        inputs = Inputs({INPUT_NAME: np.zeros((rows, *example), np.float32)}, image_spec(example))
    else:
        inputs = as_inputs(example).rows(0, rows).trimmed()
        if any(s.is_sequence for s in inputs.spec):
            inputs = inputs.at_length(max(2, inputs[inputs.names[0]].shape[1]))  # length 1 would be specialised too
    names = inputs.names
    tensors = {name: torch.as_tensor(inputs[name]) for name in names}
    axes = {s.name: {i: str(d) for i, d in enumerate(s.dims) if isinstance(d, str) and not (batch and d == BATCH)} for s in inputs.spec}
    dims = {label: torch.export.Dim(label) for label in {d for a in axes.values() for d in a.values()}}
    dynamic_shapes = {name: {i: dims[d] for i, d in axes[name].items()} or None for name in names}
    dynamic_axes = {**{n: a for n, a in axes.items() if a}, **({} if batch else {out: {0: BATCH} for out in output_names})}
    args, kwargs = ((tensors[names[0]],), {}) if len(names) == 1 else ((), tensors)
    if len(names) == 1:
        dynamic_shapes = (dynamic_shapes[names[0]],)
    fallback_reason = None
    with atomic_path(Path(path)) as tmp, _quiet_exporter():
        try:
            torch.onnx.export(
                model, args, str(tmp), kwargs=kwargs, dynamo=True, external_data=False, verbose=False, opset_version=opset,
                input_names=names, output_names=list(output_names), dynamic_shapes=dynamic_shapes,
            )
            exporter = "dynamo"
        except Exception as exc:  # the dynamo exporter raises many error types
            fallback_reason = f"{type(exc).__name__}: {first_line(exc, 300)}"
            torch.onnx.export(
                model, args + tuple(kwargs.values()), str(tmp), dynamo=False, opset_version=opset,
                input_names=names, output_names=list(output_names), dynamic_axes=dynamic_axes or None,
            )
            exporter = "torchscript"
        proto = onnx.load(str(tmp))
        try:
            onnx.checker.check_model(proto, full_check=True)
        except onnx.checker.ValidationError as exc:
            raise OnnxModelError(f"the exported model fails onnx.checker: {str(exc).splitlines()[0]}") from None
    return OnnxExport(str(path), exporter, fallback_reason, opset, len(proto.graph.node), Path(path).stat().st_size)


def check_parity(model, onnx_path: Path, x: Inputs | np.ndarray, cfg: ExportConfig, label: str,
                 lengths: tuple[int, ...] = (), task_name: str = "classification") -> Parity:
    """Compare PyTorch and ONNX Runtime on real inputs; raise ParityError beyond the thresholds.

    A difference fails when it exceeds the absolute limit *and* parity_max_rel of the largest
    |logit| (the mean difference: a tenth of that), or when the two disagree on more samples than
    the agreement limit allows (the task says what agreeing is: the same top-1 class; for
    regression, values within 1% of the outputs' range): fp32 kernel differences of large nets
    pass, a wrong export does not.

    A dynamic-batch model also runs at batch 1 and 64, to prove the axis really is dynamic; a
    sequence model is also compared with its inputs cut or padded to each of `lengths` tokens
    (e.g. 1, the median, max_length).
    """
    from edgekd.models.call import predict

    x = as_inputs(x)
    session = open_session(onnx_path)
    probes = [x] + [x[: min(len(x), 64)].at_length(n) for n in lengths if any(s.is_sequence for s in x.spec)]
    expected = concat_outputs([predict(model.cpu(), p) for p in probes])  # per-token outputs of shorter probes padded
    got = concat_outputs([run_batches(session, p) for p in probes])
    if fixed_batch(session) is None:
        for batch in (1, 64):
            run_batches(session, x.rows(0, batch), batch_size=batch)
    agree = compare_outputs(expected, got, task_name)
    scale = agree.scale or 1.0
    parity = Parity(agree.max_abs, agree.mean_abs, agree.agreement, len(expected), scale, agree.max_abs / scale)
    relative_ok = lambda value: value / scale <= cfg.parity_max_rel  # noqa: E731 - small against the logits' scale
    if parity.max_abs > cfg.parity_max_abs and not relative_ok(parity.max_abs):
        raise ParityError(label, "max |Δ|", parity.max_abs, max(cfg.parity_max_abs, cfg.parity_max_rel * scale))
    if parity.mean_abs > cfg.parity_max_mean_abs and not relative_ok(parity.mean_abs * 10):
        raise ParityError(label, "mean |Δ|", parity.mean_abs, max(cfg.parity_max_mean_abs, cfg.parity_max_rel * scale / 10))
    if parity.argmax_agreement < cfg.parity_min_agreement:
        raise ParityError(label, "top-1 agreement" if task_name == "classification" else "agreement", parity.argmax_agreement,
                          cfg.parity_min_agreement)
    return parity


def parity_lengths(x, max_length: int) -> tuple[int, ...]:
    """Text: parity at 1 token, the median real length and max_length (none for fixed-shape inputs)."""
    lengths = x.lengths()
    if lengths is None:
        return ()
    return tuple(sorted({1, max(1, int(np.median(lengths))), int(max_length)}))


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
