"""What the distill stage returns and leaves in distill.json: torch-free, so that later stages
(and `edgekd bench`, which imports no torch) can read it back typed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgekd.paired import PairedDrop


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 1-based
    loss: float  # mean total loss over the epoch's batches (all ranks)
    terms: dict[str, float]  # mean of each term: "ce" (or "mse"), "kd", "hint", ...
    val_metric: float  # the task's primary metric on the validation split (accuracy; rmse for regression)
    lr: float  # learning rate at the start of the epoch
    seconds: float


def epoch_record(data: dict) -> EpochRecord:
    """An epoch read back from a checkpoint or cache, written before val_accuracy became val_metric too."""
    return EpochRecord(**_current_keys(data))


def _current_keys(record: dict) -> dict:
    return {("val_metric" if k == "val_accuracy" else k): v for k, v in record.items()}


@dataclass(frozen=True)
class Scores:
    val: float  # the task's primary metric on the validation split (top-1 accuracy; rmse for regression)
    test: float  # ... on the test split
    metrics: dict[str, float] = field(default_factory=dict)  # every metric of the task on the test split, by name


@dataclass(frozen=True)
class PhaseScores:
    best_epoch: int  # the epoch with the best validation accuracy: its weights are kept
    best: Scores
    last: Scores  # the last epoch's weights, for comparison


@dataclass(frozen=True)
class ModelSummary:
    spec: dict[str, Any] | None  # how to rebuild it (None for an ONNX teacher)
    parameters: int | None
    checkpoint: str | None  # file in the run folder
    source: str  # "trained", "cache PATH", "checkpoint PATH" or "onnx PATH"
    weight: float = 1.0  # share in the averaged soft targets


@dataclass(frozen=True)
class SweepTrial:
    temperature: float | None  # None: the task's soft-target term has none (regression)
    kd_weight: float
    ce_weight: float
    best_val: float
    best_epoch: int
    kept: bool


@dataclass(frozen=True)
class DistillResult:
    run_dir: str
    data: str  # the data source
    split_sizes: dict[str, int]  # samples in train / val / test (/ unlabeled)
    teachers: list[ModelSummary]
    student: ModelSummary
    teacher_scores: Scores  # the teachers' averaged prediction
    scratch: PhaseScores | None  # the student trained without the teachers (None: [distill] baseline = "none")
    distilled: PhaseScores  # the student trained with them
    kd_gain: float | None  # how much better the distilled student is than scratch on the test split, in the primary
    # metric's units (positive: better, for error metrics too), best-on-val weights (None: no baseline trained)
    gap_closed: float | None  # kd_gain / (teacher − scratch): share of the gap distillation closed
    objective: dict[str, Any]  # ce_weight and the loss terms used
    teacher_cache: str  # what happened with the teacher-output cache
    settings: dict[str, Any]  # the [distill] section used
    sweep: list[SweepTrial] = field(default_factory=list)
    # Distilled (first) vs scratch (second) student, image by image on the test split: is kd_gain chance?
    # (drop > 0: the scratch student is worse — kd_gain, tested: McNemar for classification, sign-flip for regression)
    kd_gain_test: PairedDrop | None = None
    reference: str = "the teacher"  # what teacher.pt / teacher.onnx holds: the budgets' reference
    classes: list[str] = field(default_factory=list)  # label names by class index (also in labels.json)
    history: dict[str, list[EpochRecord]] = field(default_factory=dict)
    seconds: float = 0.0
    task: str = "classification"  # the task table's entry
    metric: str = "accuracy"  # the primary metric: what val/test scores, the best epoch and kd_gain are in
    schema_version: int = 3  # 3: task, metric, per-model metrics; history's val_accuracy is val_metric

    @staticmethod
    def upgrade(data: dict) -> dict:
        """A distill.json of version 1 or 2 (classification only): its epochs' val_accuracy is
        val_metric, and its kd_gain_test held McNemar's counts alone (the interval was not kept)."""
        history = {role: [_current_keys(record) for record in records]
                   for role, records in (data.get("history") or {}).items()}
        test = data.get("kd_gain_test")
        if isinstance(test, dict) and "drop" not in test:
            test = {**test, "drop": data.get("kd_gain") or 0.0, "interval": [], "images": (data.get("split_sizes") or {}).get("test", 0)}
        return {**data, "history": history, "kd_gain_test": test}
