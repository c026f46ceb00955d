"""The distill stage: teachers → scratch baseline → distilled student, compared honestly.

The scratch student has the same architecture, initial weights, seed, epochs and batches as the
distilled one and learns from the hard labels alone, so the difference between the two is what
the teachers contributed. Both are reported at their best validation epoch (the weights kept) and
at their last epoch. `sweep=True` tries a small grid of temperature × weights on the validation
split and keeps the best — distillation does not always help, and the tool must find out.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from collections.abc import Callable

import numpy as np

import torch
from torch import nn

from edgekd import runfolder
from edgekd._io import atomic_path, write_json
from edgekd._progress import say
from edgekd.data import DataSplits, load_recipe_data
from edgekd.distill import distributed
from edgekd.distill.teacher import TeacherSet, cache_teacher_logits, plan_teachers, train_teachers
from edgekd.distill.result import DistillResult, ModelSummary, PhaseScores, Scores, SweepTrial
from edgekd.distill.model import distill_settings
from edgekd.distill.trainer import FitResult, TrainSettings, fit
from edgekd.models.call import predict
from edgekd.methods import method
from edgekd.task import task
from edgekd.errors import EdgekdError, ModelError, OnnxModelError, RecipeError, RunFolderError, first_line
from edgekd.models.build import ModelSpec, build_model, spec_for, start_pretrained
from edgekd.models.checkpoint import load_weights, read_checkpoint, save_checkpoint
from edgekd.recipe import LossTerm, Recipe, load_recipe, recipe_target, task_problem, teacher_configs, with_task_models
from edgekd.runfolder import RECIPE, load_run_recipe
from edgekd.targets import Target

RESULT, LABELS = runfolder.DISTILL_RESULT, runfolder.LABELS
SWEEP_TEMPERATURES = (2.0, 4.0, 8.0)
SWEEP_KD_WEIGHTS = (0.5, 0.9)  # ce_weight = 1 − kd_weight
SWEEP_VALUE_WEIGHTS = (0.3, 0.5, 0.7, 0.9)  # tasks without a temperature (regression): the weights alone


def distill(
    recipe: Recipe | Path | None = None,
    out: Path = Path("runs/distill"),
    resume: bool = False,
    force: bool = False,
    sweep: bool = False,
    target: Target | str | Path | None = None,
) -> DistillResult:
    """Prepare the teachers, then train the scratch and the distilled student; write them to `out`.

    Before anything is written or trained, the loss terms' layer paths are proven on every teacher
    and the initialised student is exported and checked against PyTorch with `target`'s export
    settings (default: the recipe's target), so a student that cannot ship fails in seconds."""
    began = time.perf_counter()
    out = Path(out)
    recipe = _resolve_recipe(recipe, out, resume)
    data = load_recipe_data(recipe.data, recipe.task)
    recipe = with_task_models(recipe, data.task)  # the task's built-in teacher and student where the recipe names none
    if sweep and recipe.distill.loss:
        raise RecipeError("--sweep tunes the single soft-target term's temperature and weights; remove the [[distill.loss]] "
                          "tables or drop --sweep")
    spec = spec_for(recipe.student.model, recipe.student.args, data, recipe.data.standardize_targets)
    teachers = _checked_plan(recipe, spec, data, target, resume)  # every check runs before anything is written
    with contextlib.ExitStack() as stage:
        if distributed.is_main():
            stage.enter_context(runfolder.locked(out, create=True))
            _claim_folder(out, resume, force)
            # A failure leaves only what --resume continues from: the recipe and complete checkpoints.
            stage.enter_context(runfolder.rollback_on_failure(out, keep=lambda name: _resume_state(out, name)))
            write_json(out / RECIPE, recipe)
        distributed.setup()
        distributed.barrier()
        say(f"data: {data.name} — {len(data.x_train)} train / {len(data.x_val)} val / {len(data.x_test)} test"
            + (f" / {len(data.x_unlabeled)} unlabeled" if data.x_unlabeled is not None else "")
            + (f" (a teacher trained here learns from all {len(data.teacher_train[1])} training labels)" if data.teacher_train is not None else "")
            + f", {_describe_outputs(data)}, inputs {_describe_inputs(data)}")
        teachers = train_teachers(teachers, data, out, resume)
        teachers = cache_teacher_logits(teachers, data, recipe.distill.cache_teacher, recipe.data.augment or recipe.data.mixup > 0)
        trained = _train_students(recipe, spec, data, teachers, out, resume, sweep)
        result = _result(out, recipe, spec, data, teachers, trained, time.perf_counter() - began)
        if distributed.is_main():
            _write_run(out, recipe, spec, data, teachers, trained, result)
        distributed.barrier()
        show = task(data.task).primary.show
        baseline = f"scratch student {show(result.scratch.best.test)}, " if result.scratch else ""
        say(f"distill: test {result.metric}: teacher {show(result.teacher_scores.test)}, {baseline}distilled student "
            f"{show(result.distilled.best.test)} (best-on-val weights)")
        return result


@dataclass
class _Trained:
    """The students one distill run trained, and how."""

    student: nn.Module
    student_fit: FitResult
    settings: TrainSettings  # the distilled student's (the sweep's best, with --sweep)
    scratch: nn.Module | None = None  # None: [distill] baseline = "none"
    scratch_fit: FitResult | None = None
    trials: list[SweepTrial] = field(default_factory=list)


def _checked_plan(recipe: Recipe, spec: ModelSpec, data: DataSplits, target, resume: bool) -> TeacherSet:
    """The teachers, planned (nothing trained), after every check that can run before training: the
    data's transforms, each teacher and the student on two samples, the loss terms' layer paths
    and the initialised student's export (not again on --resume)."""
    _check_transforms(recipe, data)
    problem = task_problem(recipe, data.task)
    if problem:
        raise RecipeError(f"the data is {data.task}: {problem}")
    teachers = plan_teachers(recipe, data)
    initial = _fresh_student(recipe, spec, data, teachers)
    for index, member in enumerate(teachers.members):
        _check_fits(member.predict, f"teacher {index + 1}" if len(teachers.members) > 1 else "teacher", data)
    if not resume:
        _preflight(recipe, initial, data, teachers, target)
    return teachers


def _train_students(recipe: Recipe, spec: ModelSpec, data: DataSplits, teachers: TeacherSet, out: Path, resume: bool,
                    sweep: bool) -> _Trained:
    """The scratch baseline (same initial weights, seed and batches, hard labels alone), then the
    distilled student (or the sweep's best)."""
    kd_settings = distill_settings(recipe.distill, recipe.data, data.task)
    base = replace(kd_settings, ce_weight=1.0, terms=())  # the scratch student: the hard labels alone
    scratch, scratch_fit = None, None
    if recipe.distill.baseline == "scratch":
        scratch = _fresh_student(recipe, spec, data, teachers)
        scratch_fit = fit(scratch, data.x_train, data.y_train, data.x_val, data.y_val, base,
                          label="student (scratch)", checkpoint=out / runfolder.CHECKPOINTS / "scratch.ckpt", resume=resume,
                          x_unlabeled=data.x_unlabeled)  # no teacher: the unlabelled inputs only set its epoch's length
    if sweep:
        kd_settings, student, student_fit, trials = _sweep(recipe, spec, data, base, teachers)
        return _Trained(student, student_fit, kd_settings, scratch, scratch_fit, trials)
    student = _fresh_student(recipe, spec, data, teachers)
    student_fit = fit(student, data.x_train, data.y_train, data.x_val, data.y_val, kd_settings,
                      label="student (distilled)", checkpoint=out / runfolder.CHECKPOINTS / "distilled.ckpt", resume=resume,
                      teachers=teachers, x_unlabeled=data.x_unlabeled)
    return _Trained(student, student_fit, kd_settings, scratch, scratch_fit)


def _result(out: Path, recipe: Recipe, spec: ModelSpec, data: DataSplits, teachers: TeacherSet, trained: _Trained,
            seconds: float) -> DistillResult:
    """Scores of the teachers and both students on val and test, and what distillation gained."""
    kind = task(data.task)
    teacher_scores = _ensemble_scores(teachers, data)
    distilled_scores, distilled_out = _phase_scores(trained.student, trained.student_fit, data)
    scratch_scores, gain, gain_test, gap = None, None, None, 0.0
    if trained.scratch is not None:
        scratch_scores, scratch_out = _phase_scores(trained.scratch, trained.scratch_fit, data)
        gain = kind.primary.gain(scratch_scores.best.test, distilled_scores.best.test)
        gain_test = kind.paired(kind.per_sample(distilled_out, data.y_test), kind.per_sample(scratch_out, data.y_test))
        gap = kind.primary.gain(scratch_scores.best.test, teacher_scores.test)
    return DistillResult(
        run_dir=str(out),
        data=data.name,
        split_sizes={"train": len(data.x_train), "val": len(data.x_val), "test": len(data.x_test),
                     **({"unlabeled": len(data.x_unlabeled)} if data.x_unlabeled is not None else {}),
                     **({"teacher_train": len(data.teacher_train[1])} if data.teacher_train is not None else {})},
        teachers=[_summary(m, "teacher.pt" if i == 0 and not _ensemble_reference(teachers) else None) for i, m in enumerate(teachers.members)],
        student=ModelSummary(spec.to_dict(), _count(trained.student), "student.pt", "trained"),
        teacher_scores=teacher_scores,
        scratch=scratch_scores,
        distilled=distilled_scores,
        kd_gain=gain,
        gap_closed=gain / gap if gain is not None and gap > 0 else None,
        objective={"ce_weight": trained.settings.ce_weight, "terms": [asdict(t) for t in trained.settings.terms]},
        teacher_cache=teachers.cache_note,
        settings=asdict(recipe.distill),
        sweep=trained.trials,
        kd_gain_test=gain_test,
        reference=_reference_note(teachers),
        classes=list(data.classes),
        history={"teacher": teachers.members[0].history, **({"scratch": trained.scratch_fit.history} if trained.scratch_fit else {}),
                 "distilled": trained.student_fit.history},
        seconds=seconds,
        task=kind.name,
        metric=kind.primary.name,
    )


def _write_run(out: Path, recipe: Recipe, spec: ModelSpec, data: DataSplits, teachers: TeacherSet, trained: _Trained,
               result: DistillResult) -> None:
    """The models, the label names, distill.json and the manifest; the spent resume state goes."""
    files = _write_models(out, teachers, trained.student, trained.student_fit, trained.scratch, trained.scratch_fit, spec, data.task)
    if data.classes:
        write_json(out / LABELS, {"classes": list(data.classes)})
        files.append(LABELS)
    runfolder.write_result(out, RESULT, result)
    runfolder.record(out, "distill", [RECIPE, *files, RESULT], recipe=recipe)
    shutil.rmtree(out / runfolder.CHECKPOINTS, ignore_errors=True)  # the run finished: resume state is spent


def _preflight(recipe: Recipe, student: nn.Module, data: DataSplits, teachers: TeacherSet, target) -> None:
    """What would otherwise fail after training: every hint/at layer path (with shapes and adapters, on
    a dry batch), and the initialised student's ONNX export and parity with the target's settings."""
    import tempfile

    from edgekd.distill.objective import Objective
    from edgekd.export.onnx import check_parity, export_onnx, parity_lengths
    from edgekd.models.call import take, to_tensors, trim

    terms = recipe.distill.terms(data.task)
    if any(method(t.method).uses_layers for t in terms):
        sample = trim(take(to_tensors(data.x_train), slice(0, 2)), data.inputs)
        Objective(terms, recipe.distill.ce_weight, recipe.distill.temperature, student, teachers.feature_teacher,
                  teachers.weights, sample, data.task).close()
    cfg = recipe_target(recipe, target).export
    probe = data.x_test[: min(64, len(data.x_test))]
    with tempfile.TemporaryDirectory(prefix="edgekd-preflight-") as folder:
        path = Path(folder) / "student.initial.onnx"
        try:
            export_onnx(student, probe, path, cfg.opset, cfg.fixed_batch)
            check_parity(student, path, probe, cfg, "the initialised student", parity_lengths(probe, recipe.data.max_length))
        except EdgekdError:
            raise
        except Exception as exc:  # the exporters raise many types: before training, that is a model problem
            reason = first_line(exc, 300)
            raise ModelError(f"the student cannot be exported to ONNX ({reason}); fix the model before training it") from None


def _describe_outputs(data: DataSplits) -> str:
    if data.task == "regression":
        return f"{data.task}, {data.num_classes} target(s)"
    return f"{data.num_classes} classes" + (f" per {'pixel' if data.task == 'segmentation' else 'position'}" if task(data.task).dense else "")


def _describe_inputs(data: DataSplits) -> str:
    if not any(s.is_sequence for s in data.inputs):
        return str(data.input_shape)
    names = " + ".join(s.name for s in data.inputs)
    lengths = data.x_train.lengths()
    return f"{names} (median {int(np.median(lengths))}, longest {int(lengths.max())} tokens; vocabulary {data.vocab_size:,})"


def _check_transforms(recipe: Recipe, data: DataSplits) -> None:
    """Shifts and mixup transform images: never token ids. `augment` must leave some of each image in view."""
    input_shape = data.input_shape
    if recipe.data.mixup > 0 and not data.x_train.one_float_input:
        raise RecipeError(f"[data] mixup blends float images, but the inputs are {', '.join(f'{s.name} ({s.dtype})' for s in data.inputs)}: "
                          "set mixup = 0 for text or integer inputs")
    tables = [("data", recipe.data)] + [("teachers" if recipe.teachers else "teacher", t) for t in teacher_configs(recipe)]
    for table, cfg in tables:
        if not cfg.augment:
            continue
        if not data.x_train.one_float_input or len(input_shape) != 3:
            raise RecipeError(f"[{table}] augment shifts images, but the inputs have shape {tuple(input_shape)}: "
                              "remove augment = true for inputs that are not (channels, height, width) images")
        height, width = input_shape[1:]
        if cfg.max_shift is not None and cfg.max_shift >= min(height, width):
            raise RecipeError(f"[{table}] max_shift = {cfg.max_shift} would move whole {height}×{width} images out of view: "
                              f"use at most {min(height, width) - 1}")


def _sweep(recipe, spec, data, base: TrainSettings, teachers: TeacherSet):
    """Train one distilled student per (T, kd_weight) of the task's soft-target term — per weight
    alone where the term has no temperature (regression's mse) — and keep the best on validation."""
    kind = task(data.task)
    grid = (itertools.product(SWEEP_TEMPERATURES, SWEEP_KD_WEIGHTS) if kind.soft_probabilities
            else ((None, weight) for weight in SWEEP_VALUE_WEIGHTS))
    results = []
    for temperature, kd_weight in grid:
        settings = replace(base, ce_weight=round(1 - kd_weight, 6), temperature=temperature or base.temperature,
                           terms=(LossTerm(method=kind.soft_method, weight=kd_weight, temperature=temperature),))
        student = _fresh_student(recipe, spec, data, teachers)
        label = f"sweep {f'T={temperature:g} ' if temperature else ''}kd={kd_weight:g}"
        outcome = fit(student, data.x_train, data.y_train, data.x_val, data.y_val, settings, label=label, teachers=teachers,
                      x_unlabeled=data.x_unlabeled)
        results.append((settings, student, outcome))
    best_val = [o.history[o.best_epoch - 1].val_metric for _, _, o in results]
    best = max(range(len(results)), key=lambda i: best_val[i] if kind.primary.higher_is_better else -best_val[i])
    trials = [SweepTrial(s.terms[0].temperature, s.terms[0].weight, s.ce_weight, best_val[i], o.best_epoch, i == best)
              for i, (s, _, o) in enumerate(results)]
    settings, student, outcome = results[best]
    temperature = f"T={settings.terms[0].temperature:g}, " if settings.terms[0].temperature else ""
    say(f"sweep: kept {temperature}kd_weight={settings.terms[0].weight:g}, ce_weight={settings.ce_weight:g} "
        f"(val {kind.primary.name} {kind.primary.show(trials[best].best_val)})")
    return settings, student, outcome, trials


def _scores(outputs_of: Callable, data: DataSplits) -> tuple[Scores, np.ndarray]:
    """The task's primary metric on val and test, every metric on test, and the test outputs."""
    kind = task(data.task)
    test_outputs = outputs_of(data.x_test)
    metrics = kind.score(test_outputs, data.y_test)
    return Scores(kind.primary_of(outputs_of(data.x_val), data.y_val), metrics[kind.primary.name], metrics), test_outputs


def _phase_scores(model: nn.Module, outcome: FitResult, data: DataSplits) -> tuple[PhaseScores, np.ndarray]:
    """Scores of the last-epoch weights, then of the best-on-val weights (which the model keeps),
    with the best weights' outputs on every test sample, for the paired test."""
    model.load_state_dict(outcome.last_state)
    last, _ = _scores(lambda x: predict(model, x), data)
    model.load_state_dict(outcome.best_state)
    best, test_outputs = _scores(lambda x: predict(model, x), data)
    return PhaseScores(outcome.best_epoch, best, last), test_outputs


def _ensemble_scores(teachers: TeacherSet, data: DataSplits) -> Scores:
    """Scores of the teachers' joint prediction (averaged probabilities; a single teacher's own)."""
    kind = task(data.task)
    return _scores(lambda x: kind.combine([m.predict(x) for m in teachers.members], teachers.weights), data)[0]


def _write_models(out: Path, teachers: TeacherSet, student, student_fit, scratch, scratch_fit, spec, task_name: str) -> list[str]:
    """teacher.pt (or teacher.onnx for an ONNX teacher), student.pt (best-on-val), student.last.pt, student.scratch.pt (with a baseline)."""
    first = teachers.members[0]
    if _ensemble_reference(teachers):
        from edgekd.models.build import ENSEMBLE
        from edgekd.models.ensemble import Ensemble, ensemble_args

        members = [m.model.cpu() for m in teachers.members]
        spec_of = teachers.members[0].spec
        kind = task(task_name)
        axis = (kind.class_axis if kind.dense else -1) if kind.soft_probabilities else None  # None: values, averaged
        ensemble_spec = ModelSpec(ENSEMBLE, ensemble_args([m.spec.to_dict() for m in teachers.members], teachers.weights, axis),
                                  spec_of.input_shape, spec_of.num_classes, spec_of.inputs, spec_of.vocab_size)
        save_checkpoint(Ensemble(members, teachers.weights, axis), ensemble_spec, out / "teacher.pt")
        files = ["teacher.pt"]
    elif first.model is not None:
        save_checkpoint(first.model.cpu(), first.spec, out / "teacher.pt")
        files = ["teacher.pt"]
    else:
        source = Path(first.source.split(" ", 1)[1])
        with atomic_path(out / "teacher.onnx") as tmp:
            shutil.copyfile(source, tmp)
        files = ["teacher.onnx"]
    student.cpu().load_state_dict(student_fit.best_state)
    save_checkpoint(student, spec, out / "student.pt", extra={"epoch": student_fit.best_epoch})
    last = build_model(spec)
    last.load_state_dict(student_fit.last_state)
    save_checkpoint(last, spec, out / "student.last.pt", extra={"epoch": len(student_fit.history)})
    if scratch is None:
        return files + ["student.pt", "student.last.pt"]
    scratch.cpu().load_state_dict(scratch_fit.best_state)
    save_checkpoint(scratch, spec, out / "student.scratch.pt", extra={"epoch": scratch_fit.best_epoch})
    return files + ["student.pt", "student.last.pt", "student.scratch.pt"]


def _ensemble_reference(teachers: TeacherSet) -> bool:
    """Several PyTorch teachers are saved as one model (their averaged probabilities): the budget reference."""
    return len(teachers.members) > 1 and all(m.model is not None for m in teachers.members)


def _reference_note(teachers: TeacherSet) -> str:
    """What teacher.pt / teacher.onnx is, for the result and the reports."""
    count = len(teachers.members)
    if count == 1:
        return "the teacher"
    weights = "/".join(f"{w / sum(teachers.weights):.2g}" for w in teachers.weights)
    if _ensemble_reference(teachers):
        return f"the ensemble of {count} teachers (weighted average of probabilities, weights {weights}), saved as one model"
    return (f"the first of {count} teachers only: ONNX teachers cannot be combined into one reference model, "
            "so the budgets compare with it rather than with the ensemble the student learnt from")


def _summary(member, checkpoint: str | None) -> ModelSummary:
    if member.model is None:
        return ModelSummary(None, None, "teacher.onnx" if checkpoint else None, member.source, member.weight)
    return ModelSummary(member.spec.to_dict(), _count(member.model), checkpoint, member.source, member.weight)


def _resolve_recipe(recipe: Recipe | Path | None, out: Path, resume: bool) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if recipe is None and resume and (out / RECIPE).is_file():
        return load_run_recipe(out)
    return load_recipe(recipe)


def _claim_folder(out: Path, resume: bool, force: bool) -> None:
    """Refuse to overwrite an earlier run unless asked: a rerun must not silently lose work. With
    --force the earlier run's recorded files go first, so a new run that fails cannot leave its
    recipe beside the old run's models."""
    if runfolder.holds_resume_state(out) and not (resume or force):
        raise RunFolderError(f"{out} already holds a run; pass --resume to continue it, --force to start over, or choose another --out")
    if force and not resume:
        shutil.rmtree(out / runfolder.CHECKPOINTS, ignore_errors=True)
        for name in [*runfolder.load_manifest(out)["files"], runfolder.MANIFEST]:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _resume_state(out: Path, name: str) -> bool:
    """What a failed run keeps: its checkpoints, and the recipe that --resume continues them with."""
    return name == runfolder.CHECKPOINTS or (name == RECIPE and (out / runfolder.CHECKPOINTS).is_dir())


def _fresh_student(recipe: Recipe, spec: ModelSpec, data: DataSplits, teachers: TeacherSet) -> nn.Module:
    """The student at its initial weights: identical for the scratch and the distilled run."""
    torch.manual_seed(recipe.distill.seed)
    model = build_model(spec)
    start_pretrained(model)
    if recipe.student.checkpoint is not None:
        load_weights(model, read_checkpoint(recipe.student.checkpoint)["state_dict"], recipe.student.checkpoint)
    if recipe.student.init_from_teacher:
        from edgekd.models.text import init_from_teacher

        if teachers.feature_teacher is None:
            raise RecipeError("[student] init_from_teacher needs a PyTorch teacher; an ONNX teacher's weights cannot be copied")
        init_from_teacher(model, teachers.feature_teacher)
    _check_fits(lambda x: predict(model, x), "student", data)
    return model


def _check_fits(logits_of: Callable[[np.ndarray], np.ndarray], role: str, data: DataSplits) -> None:
    """A dry forward pass on two samples: shape errors surface before any training starts."""
    try:
        out = logits_of(data.x_train[:2])
    except (RuntimeError, TypeError, IndexError, OnnxModelError) as exc:
        reason = first_line(exc, 300)
        raise ModelError(f"{role} does not accept the data's inputs {_describe_inputs(data)} ({reason}); fix the model args or the data") from None
    kind = task(data.task)
    if not kind.outputs_fit(out.shape, data.num_classes):
        raise ModelError(f"{role} outputs shape {tuple(out.shape[1:])} per sample but the data asks for {kind.wanted_outputs(data.num_classes)}; "
                         f"set the model's num_classes to {data.num_classes} or fix the labels")


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

