"""`distill_model`: distillation of models held in memory, the pure stage under `edgekd distill`.

A user with a teacher and a student in a notebook (or defined inside a function, not importable as
a factory) distils here: no recipe, no run folder. The run-folder stage adds what a reproducible
run needs around the same loop (teachers trained or cached, the scratch baseline, the sweep,
checkpoints to resume from, the manifest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from torch import nn

from edgekd.data.config import DataConfig
from edgekd.data.splits import DataSplits
from edgekd.distill.result import EpochRecord
from edgekd.distill.teacher import Teacher, TeacherSet
from edgekd.distill.trainer import TrainSettings, fit
from edgekd.models.call import predict
from edgekd.recipe import DistillConfig
from edgekd.task import task as task_entry


@dataclass(frozen=True)
class DistilledModel:
    """The trained student (its best-on-validation weights) and how it got there."""

    model: nn.Module = field(repr=False)  # the student, trained in place, at its best validation epoch
    best_epoch: int
    metric: str  # the task's primary metric ("accuracy", "rmse"): what the scores below are in
    val_score: float  # the kept weights on the validation split
    test_score: float
    teacher_test_score: float  # the teachers' joint prediction, for comparison
    test_metrics: dict[str, float] = field(default_factory=dict)  # every metric of the task, the student on the test split
    history: list[EpochRecord] = field(default_factory=list)


def distill_settings(cfg: DistillConfig | None = None, data: DataConfig | None = None, task: str = "classification",
                     **changes) -> TrainSettings:
    """The student's training settings for `task` from a recipe's [distill] and [data] sections
    (default: the recipe defaults — for classification Hinton's kd term at T = 4 with weight 0.7
    beside 0.3 of cross-entropy; for regression MSE to the teachers' outputs beside MSE to the
    labels); `changes` overrides fields, e.g. `epochs=5`."""
    cfg, data = cfg or DistillConfig(), data or DataConfig()
    settings = TrainSettings(cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed, ce_weight=cfg.ce_weight, terms=tuple(cfg.terms(task)), task=task,
                             temperature=cfg.temperature, schedule=cfg.schedule, grad_clip=cfg.grad_clip, augment=data.augment,
                             max_shift=data.max_shift, flip=data.flip, mixup=data.mixup, amp=cfg.amp, compile=cfg.compile,
                             bucket_by_length=cfg.bucket_by_length)
    return replace(settings, **changes)


def distill_model(
    teacher: nn.Module | Sequence[nn.Module],
    student: nn.Module,
    data: DataSplits,
    settings: TrainSettings | None = None,
    *,
    teacher_weights: Sequence[float] | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
) -> DistilledModel:
    """Train `student` against `teacher` (or several teachers, their outputs combined with
    `teacher_weights`) on `data`'s training split; keep the weights of the best validation epoch.

    `settings` default to `distill_settings(task=data.task)`. `checkpoint` (a file) saves every
    epoch, and `resume=True` continues from it. The teachers stay as they are (eval mode, never trained)."""
    teachers = [teacher] if isinstance(teacher, nn.Module) else list(teacher)
    weights = list(teacher_weights) if teacher_weights is not None else [1.0] * len(teachers)
    members = TeacherSet([Teacher("given", w, model=t.eval()) for t, w in zip(teachers, weights, strict=True)])
    settings = settings or distill_settings(task=data.task)
    if settings.task != data.task:
        raise ValueError(f"the settings are for {settings.task} but the data is {data.task}: use distill_settings(task={data.task!r})")
    kind = task_entry(data.task)
    outcome = fit(student, data.x_train, data.y_train, data.x_val, data.y_val, settings, label="student (distilled)",
                  checkpoint=checkpoint, resume=resume, teachers=members, x_unlabeled=data.x_unlabeled)
    student.cpu().load_state_dict(outcome.best_state)
    student.eval()
    together = kind.combine([m.predict(data.x_test) for m in members.members], weights)
    test_metrics = kind.score(predict(student, data.x_test), data.y_test)
    return DistilledModel(
        model=student, best_epoch=outcome.best_epoch, metric=kind.primary.name,
        val_score=outcome.history[outcome.best_epoch - 1].val_metric,
        test_score=test_metrics[kind.primary.name],
        teacher_test_score=kind.primary_of(together, data.y_test),
        test_metrics=test_metrics,
        history=outcome.history,
    )
