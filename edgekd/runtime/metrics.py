"""Metrics of a model on data: each sample's outcome under the task (top-1 hits, squared errors)
of an ONNX Runtime session, and how closely two models' outputs agree (the parity checks of
export, simplification and QAD)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekd.runtime.session import run_batches
from edgekd.errors import DataError
from edgekd.inputs import Inputs
from edgekd.task import task, top1_hits


@dataclass(frozen=True)
class OutputAgreement:
    max_abs: float  # largest |reference − other| over all outputs
    mean_abs: float
    scale: float  # largest |reference output|: what the differences are relative to
    agreement: float  # share of samples on which they agree (the same top-1 class; regression: close values)


def compare_outputs(reference: np.ndarray, other: np.ndarray, task_name: str = "classification") -> OutputAgreement:
    """How far `other`'s outputs are from `reference`'s, sample by sample on the same inputs; they
    agree on a sample as the task says (the same top-1 class; regression: within 1% of the range)."""
    diff = np.abs(np.asarray(reference, dtype=np.float64) - np.asarray(other, dtype=np.float64))
    return OutputAgreement(float(diff.max()), float(diff.mean()), float(np.abs(reference).max()),
                           float(task(task_name).agreement(reference, other).mean()))


def outcomes(session, x: Inputs | np.ndarray, y: np.ndarray, label: str, task_name: str = "classification") -> np.ndarray:
    """Each sample's outcome under the task (a top-1 hit; a squared error): what paired comparisons pair."""
    kind = task(task_name)
    if kind.name == "classification":
        return correct(session, x, y, label)
    return kind.per_sample(target_outputs(session, x, y, label), y)


def target_outputs(session, x: Inputs | np.ndarray, y: np.ndarray, label: str) -> np.ndarray:
    """A regressor's outputs on `x`, checked to hold as many values per sample as the targets `y`."""
    out = run_batches(session, x)
    if out.reshape(len(out), -1).shape[1] != np.asarray(y).reshape(len(y), -1).shape[1]:
        raise DataError(f"{label} outputs shape {out.shape[1:]} per sample but the targets have {np.asarray(y).shape[1:]}; "
                        "use data with the model's targets")
    return out


def file_outcomes(path, x: Inputs | np.ndarray, y: np.ndarray, task_name: str = "classification") -> np.ndarray:
    """Per-sample outcomes of an ONNX/ORT file on the CPU provider (see `outcomes`)."""
    from pathlib import Path

    from edgekd.runtime.session import open_session

    return outcomes(open_session(path), x, y, Path(path).name, task_name)


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
    hits = top1_hits(logits, y)
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
