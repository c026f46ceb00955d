"""Task metric on the held-out split: top-1 accuracy of an ONNX Runtime session."""

from __future__ import annotations

import numpy as np

from edgekd.runtime.session import run_batches
from edgekd.errors import DataError
from edgekd.inputs import Inputs


def top1(session, x: Inputs | np.ndarray, y: np.ndarray, label: str) -> float:
    return float(correct(session, x, y, label).mean())


def correct(session, x: Inputs | np.ndarray, y: np.ndarray, label: str) -> np.ndarray:
    """Whether the model's top-1 class is right, sample by sample: what a paired comparison needs."""
    return hits_top_k(session, x, y, label)[0]


def _check(logits: np.ndarray, y: np.ndarray, label: str) -> None:
    if logits.ndim != 2:
        raise DataError(f"{label} outputs shape {logits.shape[1:]} per sample; accuracy needs (classes,) logits")
    if y.max() >= logits.shape[1]:
        raise DataError(f"{label} has {logits.shape[1]} outputs but the labels go up to {int(y.max())}; use data with the model's classes")


def top_k(session, x: Inputs | np.ndarray, y: np.ndarray, label: str, k: int = 5) -> tuple[float, float | None]:
    """(top-1, top-k) accuracy; top-k is None when the model has no more than k classes."""
    hits, topk = hits_top_k(session, x, y, label, k)
    return float(hits.mean()), topk


def hits_top_k(session, x: Inputs | np.ndarray, y: np.ndarray, label: str, k: int = 5) -> tuple[np.ndarray, float | None]:
    """(per-sample top-1 hits, top-k accuracy); top-k is None when the model has no more than k classes."""
    logits = run_batches(session, x)
    _check(logits, y, label)
    hits = logits.argmax(axis=1) == y
    if logits.shape[1] <= k:
        return hits, None
    best = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return hits, float((best == y[:, None]).any(axis=1).mean())


def file_top1(path, x: Inputs | np.ndarray, y: np.ndarray) -> float:
    """Top-1 of an ONNX/ORT file on the CPU provider: what export and quantize compare."""
    return float(file_correct(path, x, y).mean())


def file_correct(path, x: Inputs | np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-sample top-1 hits of an ONNX/ORT file on the CPU provider."""
    from pathlib import Path

    from edgekd.runtime.session import open_session

    return correct(open_session(path), x, y, Path(path).name)
