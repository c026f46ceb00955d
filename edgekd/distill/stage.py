"""The distill stage: teacher → scratch baseline → distilled student, with honest comparison.

The scratch student has the same architecture, initial weights, seed, epochs and batches as the
distilled one, and is trained on the hard labels alone, so the difference between the two is what
the teacher's soft targets contributed and nothing else.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd import runfolder
from edgekd._io import to_jsonable, write_json
from edgekd._progress import say
from edgekd.data import DataSplits, load_data
from edgekd.distill.teacher import plan_teacher, train_teacher
from edgekd.distill.trainer import EpochRecord, TrainSettings, accuracy, fit
from edgekd.errors import ModelError, RunFolderError
from edgekd.models.build import ModelSpec, build_model
from edgekd.models.checkpoint import load_weights, read_checkpoint, save_checkpoint
from edgekd.recipe import Recipe, load_recipe
from edgekd.runfolder import RECIPE, load_run_recipe

RESULT = "distill.json"


@dataclass(frozen=True)
class Scores:
    val: float  # top-1 accuracy on the validation split
    test: float  # top-1 accuracy on the test split


@dataclass(frozen=True)
class ModelSummary:
    spec: dict[str, Any]  # how to rebuild it (family or factory, args, shapes)
    parameters: int
    checkpoint: str  # file in the run folder
    source: str  # "trained", "cache PATH" or "checkpoint PATH"


@dataclass(frozen=True)
class DistillResult:
    run_dir: str
    data: str  # the data source
    split_sizes: dict[str, int]  # samples in train / val / test
    teacher: ModelSummary
    student: ModelSummary
    scratch: Scores  # the student trained without the teacher
    distilled: Scores  # the student trained with the teacher
    teacher_scores: Scores
    kd_gain: float  # distilled − scratch test accuracy (what the teacher bought)
    settings: dict[str, Any]  # the [distill] section used
    history: dict[str, list[EpochRecord]] = field(default_factory=dict)
    seconds: float = 0.0
    schema_version: int = 1


def distill(recipe: Recipe | Path | None = None, out: Path = Path("runs/distill"), resume: bool = False, force: bool = False) -> DistillResult:
    """Train (or load) the teacher, then the scratch and the distilled student; write them to `out`."""
    began = time.perf_counter()
    out = Path(out)
    recipe = _resolve_recipe(recipe, out, resume)
    data = load_data(recipe.data.source, recipe.data.val_fraction, recipe.data.test_fraction, recipe.data.split_seed)
    cfg = recipe.distill
    student_spec = ModelSpec(recipe.student.model, dict(recipe.student.args), data.input_shape, data.num_classes)
    _fresh_student(recipe, student_spec, data)  # every check runs before anything is written
    plan = plan_teacher(recipe, data)
    _check_fits(plan.model, "teacher", data)
    _claim_folder(out, resume, force)
    write_json(out / RECIPE, recipe)
    say(f"data: {data.name} — {len(data.x_train)} train / {len(data.x_val)} val / {len(data.x_test)} test, "
        f"{data.num_classes} classes, input {data.input_shape}")
    plan = train_teacher(plan, data, out, resume)
    teacher, teacher_spec, teacher_source, teacher_history = plan.model, plan.spec, plan.source, plan.history

    settings = TrainSettings(cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed)
    scratch = _fresh_student(recipe, student_spec, data)
    scratch_history = fit(scratch, data.x_train, data.y_train, data.x_val, data.y_val, settings,
                          label="student (scratch)", checkpoint=out / "checkpoints" / "scratch.ckpt", resume=resume)
    kd_settings = TrainSettings(cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed, cfg.temperature, cfg.kd_weight, cfg.ce_weight)
    student = _fresh_student(recipe, student_spec, data)
    student_history = fit(student, data.x_train, data.y_train, data.x_val, data.y_val, kd_settings,
                          label="student (distilled)", checkpoint=out / "checkpoints" / "distilled.ckpt", resume=resume, teacher=teacher)

    save_checkpoint(teacher.cpu(), teacher_spec, out / "teacher.pt")
    save_checkpoint(student.cpu(), student_spec, out / "student.pt")
    save_checkpoint(scratch.cpu(), student_spec, out / "student.scratch.pt")
    scores = {name: Scores(accuracy(m, data.x_val, data.y_val), accuracy(m, data.x_test, data.y_test))
              for name, m in (("teacher", teacher), ("scratch", scratch), ("distilled", student))}
    result = DistillResult(
        run_dir=str(out),
        data=data.name,
        split_sizes={"train": len(data.x_train), "val": len(data.x_val), "test": len(data.x_test)},
        teacher=ModelSummary(teacher_spec.to_dict(), _count(teacher), "teacher.pt", teacher_source),
        student=ModelSummary(student_spec.to_dict(), _count(student), "student.pt", "trained"),
        scratch=scores["scratch"],
        distilled=scores["distilled"],
        teacher_scores=scores["teacher"],
        kd_gain=scores["distilled"].test - scores["scratch"].test,
        settings=asdict(recipe.distill),
        history={"teacher": teacher_history, "scratch": scratch_history, "distilled": student_history},
        seconds=time.perf_counter() - began,
    )
    write_json(out / RESULT, result)
    runfolder.record(out, "distill", [RECIPE, "teacher.pt", "student.pt", "student.scratch.pt", RESULT], recipe=recipe)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the run finished: resume state is spent
    say(f"distill: teacher {scores['teacher'].test:.2%}, scratch student {scores['scratch'].test:.2%}, "
        f"distilled student {scores['distilled'].test:.2%} (test)")
    return result


def _resolve_recipe(recipe: Recipe | Path | None, out: Path, resume: bool) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if recipe is None and resume and (out / RECIPE).is_file():
        return load_run_recipe(out)
    return load_recipe(recipe)


def _claim_folder(out: Path, resume: bool, force: bool) -> None:
    """Refuse to overwrite an earlier run unless asked: a rerun must not silently lose work."""
    used = (out / runfolder.MANIFEST).exists() or (out / "checkpoints").exists()
    if used and not (resume or force):
        raise RunFolderError(f"{out} already holds a run; pass --resume to continue it, --force to start over, or choose another --out")
    if force and not resume:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def _fresh_student(recipe: Recipe, spec: ModelSpec, data: DataSplits) -> nn.Module:
    """The student at its initial weights: identical for the scratch and the distilled run."""
    torch.manual_seed(recipe.distill.seed)
    model = build_model(spec)
    if recipe.student.checkpoint is not None:
        load_weights(model, read_checkpoint(recipe.student.checkpoint)["state_dict"], recipe.student.checkpoint)
    _check_fits(model, "student", data)
    return model


def _check_fits(model: nn.Module, role: str, data: DataSplits) -> None:
    """A dry forward pass on two samples: shape errors surface before any training starts."""
    sample = torch.as_tensor(data.x_train[:2])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(sample.to(next(model.parameters()).device))
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise ModelError(f"{role} does not accept the data's inputs of shape {data.input_shape} ({reason}); fix the model args or the data") from None
    finally:
        model.train(was_training)
    if out.ndim != 2 or out.shape[1] != data.num_classes:
        raise ModelError(
            f"{role} outputs shape {tuple(out.shape[1:])} per sample but the data has {data.num_classes} classes "
            f"(labels 0..{data.num_classes - 1}); set the model's num_classes to {data.num_classes} or fix the labels"
        )


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def result_to_dict(result: DistillResult) -> dict[str, Any]:
    return to_jsonable(result)
