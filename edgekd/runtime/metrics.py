"""Metrics of a model on data: each sample's outcome under the task (top-1 hits, squared errors)
of an ONNX Runtime session, and how closely two models' outputs agree (the parity checks of
export, simplification and QAD)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekd.runtime.session import run_batches
from edgekd.inputs import Inputs
from edgekd.task import task, top1_hits, top_k_share


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


def checked_outputs(session, x: Inputs | np.ndarray, y: np.ndarray, label: str, task_name: str = "classification") -> np.ndarray:
    """The model's outputs on `x`, checked to fit the labels `y` as the task says (logits with a
    column for every label; as many values as targets)."""
    out = run_batches(session, x)
    task(task_name).check_outputs(label, out, np.asarray(y))
    return out


def outcomes(session, x: Inputs | np.ndarray, y: np.ndarray, label: str, task_name: str = "classification") -> np.ndarray:
    """Each sample's outcome under the task (a top-1 hit; a squared error): what paired comparisons pair."""
    return task(task_name).per_sample(checked_outputs(session, x, y, label, task_name), y)


def file_outcomes(path, x: Inputs | np.ndarray, y: np.ndarray, task_name: str = "classification") -> np.ndarray:
    """Per-sample outcomes of an ONNX/ORT file on the CPU provider (see `outcomes`)."""
    from pathlib import Path

    from edgekd.runtime.session import open_session

    return outcomes(open_session(path), x, y, Path(path).name, task_name)


def correct(session, x: Inputs | np.ndarray, y: np.ndarray, label: str) -> np.ndarray:
    """Whether the model's top-1 class is right, sample by sample: what a paired comparison needs."""
    return outcomes(session, x, y, label, "classification")


def top_k(session, x: Inputs | np.ndarray, y: np.ndarray, label: str, k: int = 5) -> tuple[float, float | None]:
    """(top-1, top-k) accuracy; top-k is None when the model has no more than k classes."""
    logits = checked_outputs(session, x, y, label)
    return float(top1_hits(logits, y).mean()), top_k_share(logits, y, k)


def file_top1(path, x: Inputs | np.ndarray, y: np.ndarray) -> float:
    """Top-1 of an ONNX/ORT file on the CPU provider: what export and quantize compare."""
    return float(file_correct(path, x, y).mean())


def file_correct(path, x: Inputs | np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-sample top-1 hits of an ONNX/ORT file on the CPU provider."""
    return file_outcomes(path, x, y, "classification")
