"""Task metric on the held-out split: top-1 accuracy of an ONNX Runtime session."""

from __future__ import annotations

import numpy as np

from edgekd._ort import run_batches
from edgekd.errors import DataError


def top1(session, x: np.ndarray, y: np.ndarray, label: str) -> float:
    logits = run_batches(session, x)
    if logits.ndim != 2:
        raise DataError(f"{label} outputs shape {logits.shape[1:]} per sample; accuracy needs (classes,) logits")
    if y.max() >= logits.shape[1]:
        raise DataError(f"{label} has {logits.shape[1]} outputs but the labels go up to {int(y.max())}; use data with the model's classes")
    return float((logits.argmax(axis=1) == y).mean())
