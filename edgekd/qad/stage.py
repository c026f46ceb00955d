"""The quantization-aware phase: fine-tune an exported student through its int8 model, against the teacher.

Reads a run folder that `edgekd export` left (the simplified fp32 student, the teacher, the recipe),
quantizes the student post-training with the target's static QDQ settings, as export does, and
fine-tunes the weights and activation scales of that very int8 model (`FakeQuantGraph`) with the
distillation objective against the fp32 teacher: a few epochs at a lower learning rate, the same
trainer (checkpoints, resume, DDP under torchrun, the teacher-logit cache). The honest comparison trains the same
model on labels alone (quantization-aware training without the teacher). Each result is exported
by ONNX Runtime with the learned scales (no recalibration) and checked against the fake-quantized
model; accuracies are paired against the fp32 student on the same images.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, get_args

import numpy as np

from edgekd import runfolder
from edgekd._io import atomic_path, sha256_file
from edgekd._progress import say
from edgekd.runtime.metrics import compare_outputs, file_outcomes
from edgekd.errors import MirrorError, OnnxModelError, QadError
from edgekd.export.stage import ExportResult
from edgekd.qad.result import PHASE_ROLES, QadParity, QadPhase, QadResult, QadVariant
from edgekd.recipe import QadTeacher, Recipe, recipe_target
from edgekd.roles import Role
from edgekd.targets import ArtifactFormat, QuantizationConfig, Scheme, Target
from edgekd.inputs import Inputs, as_inputs
from edgekd.task import Task, task as task_entry

if TYPE_CHECKING:
    from torch import nn

    from edgekd.data import DataSplits
    from edgekd.distill.trainer import SoftTargets, TrainSettings

RESULT = runfolder.QAD_RESULT
ARTIFACTS = {"qat": "student.int8-qat.onnx", "qad": "student.int8-qad.onnx"}  # role → file
NAMES = {"post-training": "post-training int8", "post-training-exclusions": "post-training int8 with exclusions",
         "qat": "quantization-aware training", "qad": "quantization-aware distillation"}
SOFT_TARGETS = get_args(QadTeacher)  # [qad] teacher: distillation's teachers, or the fp32 student itself
PARITY_MIN_AGREEMENT = 0.99  # top-1 agreement between the fake-quantized model and ORT's int8 run
PARITY_MAX_MEAN_REL = 1e-3  # mean |Δ| over the largest |logit|: a few rounding steps, not a wrong graph


def quantization_aware(run_dir: Path, target: Target | str | Path | None = None, epochs: int | None = None, lr_scale: float | None = None,
                       baseline: bool | None = None, resume: bool = False, teacher: str | None = None) -> QadResult:
    """Fine-tune the run folder's student through its int8 model; write the QDQ files and qad.json.

    `epochs`, `lr_scale`, `baseline` and `teacher` ("teacher" or "student") default to the recipe's [qad] section."""
    import contextlib

    from edgekd.distill import distributed

    if teacher not in (None, *SOFT_TARGETS):
        raise QadError(f"teacher = {teacher!r}: the soft targets come from {' or '.join(repr(t) for t in SOFT_TARGETS)}")
    run_dir = Path(run_dir)
    with contextlib.ExitStack() as stage:
        if distributed.is_main():  # under torchrun every rank trains; rank 0 alone writes into the run folder
            stage.enter_context(runfolder.locked(run_dir))
            stage.enter_context(runfolder.rollback_on_failure(run_dir, keep=lambda name: name == runfolder.CHECKPOINTS))
        distributed.setup()
        distributed.barrier()
        recipe = runfolder.load_run_recipe(run_dir)
        result = _quantization_aware(run_dir, recipe, recipe_target(recipe, target), epochs or recipe.qad.epochs,
                                     lr_scale or recipe.qad.lr_scale, recipe.qad.baseline == "qat" if baseline is None else baseline, resume,
                                     teacher or recipe.qad.teacher)
        distributed.barrier()
        return result


def _quantization_aware(run_dir: Path, recipe: Recipe, target: Target, epochs: int, lr_scale: float, baseline: bool, resume: bool,
                        teacher: str) -> QadResult:
    """The run-folder adapter: the folder's simplified student, teachers, data and export result in;
    the phase's files, the choice of what ships and qad.json out."""
    from edgekd.data import load_recipe_data
    from edgekd.distill import distributed

    simplified = runfolder.artifact(run_dir, runfolder.STUDENT_SIMPLIFIED, "quantization-aware distillation (run `edgekd export` first)")
    exported = runfolder.read_result(run_dir, runfolder.EXPORT_RESULT, ExportResult, "quantization-aware distillation")
    _static(target.quantization)
    teachers = _teachers(run_dir) if teacher == "teacher" else _onnx_teacher(simplified)  # "student": self-distillation
    data = load_recipe_data(recipe.data, recipe.task)
    _, qad_settings = _phase_settings(recipe, epochs, lr_scale)
    result = quantization_aware_model(
        simplified, teachers, data, target, run_dir, qad_settings, baseline=baseline,
        calibration=data.calibration(target.quantization.calibration_samples, seed=recipe.data.split_seed),
        cache_teacher=recipe.distill.cache_teacher, checkpoints=run_dir / runfolder.CHECKPOINTS, resume=resume,
        learn_scales=recipe.qad.learn_scales)
    quantized = exported.quantized
    variants = list(result.variants)
    if quantized.scheme == Scheme.static_qdq.value and quantized.excluded_nodes:  # export's own int8 file, nodes kept in fp32
        fp32_test = file_outcomes(simplified, data.x_test, data.y_test, data.task)
        variants.insert(1, _variant("post-training-exclusions", run_dir / Path(quantized.path).name, data, fp32_test))
    if result.skipped:
        deployed, deployed_role, why = exported.deployed, exported.deployed_role, result.deployed_because
    else:
        deployed, deployed_role, why = _deployment(exported, best_trained(variants, task_entry(data.task)), task_entry(data.task))
    result = replace(result, run_dir=str(run_dir), variants=variants, deployed=deployed, deployed_because=why, deployed_role=deployed_role,
                     settings={**result.settings, "teacher": teacher})
    if distributed.is_main():
        runfolder.write_result(run_dir, RESULT, result)
        runfolder.record(run_dir, "qad", [f for v in variants if v.phase in ARTIFACTS for f in _files_of(v, run_dir)] + [RESULT])
        shutil.rmtree(run_dir / runfolder.CHECKPOINTS, ignore_errors=True)  # finished: resume state is spent
    say(f"qad: deploying {deployed}: {why}")
    kind = task_entry(data.task)
    for v in variants:
        say(f"qad: {v.name}: test {kind.primary.heading} {kind.primary.show(v.test_accuracy)} (fp32 student "
            f"{kind.primary.show(result.fp32_test_accuracy)}, drop {kind.show_drop(v.drop_vs_fp32.drop)}, paired p = {v.drop_vs_fp32.p_value:.2g})")
    return result


def quantization_aware_model(
    fp32_onnx: Path,
    teachers: SoftTargets | nn.Module | Sequence[nn.Module],
    data: DataSplits,
    target: Target,
    out_dir: Path,
    settings: TrainSettings,
    *,
    baseline: bool = True,
    calibration: Inputs | np.ndarray | None = None,
    cache_teacher: bool = False,
    checkpoints: Path | None = None,
    resume: bool = False,
    learn_scales: bool = True,
) -> QadResult:
    """Fine-tune the fp32 model `fp32_onnx` through the int8 model ONNX Runtime makes of it with `target`'s static
    QDQ settings (quantization-aware distillation against `teachers`, with `settings`' objective), and, with
    `baseline`, the same on the hard labels alone (QAT); each exported to `out_dir` and checked against ORT's int8 run.

    `calibration` (default: training inputs, as many as the target says) sets the starting scales,
    which stay without `learn_scales` (the weights alone train); `checkpoints` (a folder) keeps each
    phase's epochs for `resume`. The result lists post-training int8 and each phase, paired against
    the fp32 model on the test split; `deployed` names the more accurate quantization-aware file on
    validation (a run folder decides against export's own choice instead)."""
    from edgekd.distill.teacher import cache_teacher_logits
    from edgekd.export.quantize import scheme_settings

    began = time.perf_counter()
    kind = task_entry(data.task)
    settings = replace(settings, task=kind.name)
    fp32_onnx, out_dir = Path(fp32_onnx), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    qcfg = _static(target.quantization)
    teachers = _soft_targets(teachers)
    calibration = as_inputs(calibration) if calibration is not None else data.calibration(qcfg.calibration_samples)
    fp32_val, fp32_test = (file_outcomes(fp32_onnx, x, y, kind.name) for x, y in ((data.x_val, data.y_val), (data.x_test, data.y_test)))
    ort_settings = scheme_settings(Scheme.static_qdq, qcfg)
    result = partial(QadResult, run_dir=str(out_dir), target=target.name, settings=_settings_record(settings, ort_settings, learn_scales),
                     fp32_val_accuracy=kind.summarise(fp32_val), fp32_test_accuracy=kind.summarise(fp32_test), metric=kind.primary.name)
    with tempfile.TemporaryDirectory(prefix=".edgekd-qad-", dir=out_dir) as folder:
        work = Path(folder).resolve()
        prepared, ptq, plan = post_training_plan(fp32_onnx, work, ort_settings, calibration)
        variants = [_variant("post-training", ptq, data, fp32_test)]
        try:
            _check_start(prepared, ptq, plan, calibration, target, kind.name)
            teachers = cache_teacher_logits(teachers, data, cache_teacher, augment=False)
            phases = [("qat", replace(settings, ce_weight=1.0, terms=()), None)] if baseline else []
            phase = _Phase(out_dir, work, prepared, plan, ort_settings, calibration, data, fp32_test, target, checkpoints, resume,
                           settings.seed, variants[0].val_accuracy, learn_scales)
            variants += [_train_phase(phase, role, phase_settings, phase_teachers)
                         for role, phase_settings, phase_teachers in phases + [("qad", settings, teachers)]]
        except MirrorError as exc:
            return _skipped(result, variants[:1], exc, began)
    best = best_trained(variants, kind)
    ships = kind.primary.gain(variants[0].val_accuracy, best.val_accuracy) >= 0
    return result(
        deployed=best.file if ships else "", deployed_role=best.role if ships else Role.ptq,
        deployed_because=f"{best.name}: validation {_against_start(kind, best.val_accuracy, variants[0].val_accuracy)}",
        variants=variants, seconds=time.perf_counter() - began, kept_fp32=dict(plan.kept_fp32),
    )


def _check_start(prepared: Path, ptq: Path, plan, calibration: Inputs, target: Target, task_name: str) -> None:
    """Before any training: the mirror must compute what ORT's int8 run of the post-training model
    computes on the calibration inputs (MirrorError, in seconds, when it does not)."""
    from edgekd.qad.graph import FakeQuantGraph

    if plan.kept_fp32:
        say(f"qad: kept in fp32 in the quantization-aware files: {'; '.join(f'{n} ({why})' for n, why in plan.kept_fp32.items())}")
    check_qad_parity(FakeQuantGraph(prepared, plan, fused_kernels=fuses(target)).eval(), ptq, calibration, task_name, target, "before training")
    say(f"qad: {len(plan.activations)} activation and {len(plan.weights)} weight quantizers, as ONNX Runtime placed them "
        f"(scales from {len(calibration)} calibration inputs); the PyTorch mirror matches ORT's int8 run before training")


def _settings_record(settings: TrainSettings, ort_settings: dict, learn_scales: bool) -> dict:
    """What qad.json records of the phase's training and ORT's quantization settings."""
    return {"epochs": settings.epochs, "lr": settings.lr, "batch_size": settings.batch_size, "ce_weight": settings.ce_weight,
            "terms": [t.method for t in settings.terms], "kd_weight": sum(t.weight for t in settings.terms),
            "temperature": settings.temperature, "learn_scales": learn_scales, **ort_settings}


def fuses(target: Target) -> bool:
    """Whether ONNX Runtime runs the target's int8 model through its fused int8 kernels (QDQ fusion
    happens at optimisation level "extended" and above)."""
    return target.runtime.graph_optimization in ("extended", "all")


def _skipped(result, variants: list[QadVariant], exc: MirrorError, began: float) -> QadResult:
    """The phase's result when the mirror cannot reproduce ORT's int8 model: post-training int8
    stays deployed, and the reason travels to qad.json and the report."""
    say(f"warning: quantization-aware distillation skipped: {exc}; post-training int8 stays deployed")
    return result(deployed="", deployed_role=Role.ptq, deployed_because=f"quantization-aware phase skipped: {exc}", variants=variants,
                  seconds=time.perf_counter() - began, skipped=str(exc))


def _soft_targets(teachers) -> SoftTargets:
    """Teachers as the trainer takes them: a TeacherSet as it is, PyTorch modules as live teachers."""
    from torch import nn

    from edgekd.distill.teacher import Teacher, TeacherSet, weights_hash

    if isinstance(teachers, nn.Module):
        teachers = [teachers]
    if isinstance(teachers, (list, tuple)):
        return TeacherSet([Teacher("given", 1.0, model=t.eval(), identity=weights_hash(t)) for t in teachers])
    return teachers


def _files_of(variant: QadVariant, run_dir: Path) -> list[str]:
    """What a phase wrote into the run folder: its QDQ file and, for ORT-format targets, the package."""
    if variant.file.endswith(".ort"):
        stem = variant.file.removesuffix(".ort")
        return [f"{stem}.onnx", variant.file, f"{stem}.required_operators.config"]
    return [variant.file]


def post_training_plan(simplified: Path, work: Path, settings: dict, calibration):
    """ORT's post-training static QDQ model of `simplified` (pre-processed in `work`, an absolute
    folder) and where it quantizes: (the prepared fp32 file, the QDQ file, its QuantPlan)."""
    from edgekd.export.quantize import prepare, produce_variant
    from edgekd.qad.graph import read_plan, unmirrored_nodes

    prepared, _ = prepare(simplified, work)
    ptq = work / "ptq.onnx"
    kept = unmirrored_nodes(prepared)
    produce_variant(prepared, ptq, Scheme.static_qdq, settings, calibration, list(kept))
    return prepared, ptq, replace(read_plan(ptq), kept_fp32=kept)


def export_qdq(graph, prepared: Path, dest: Path, settings: dict, calibration, work: Path) -> None:
    """The trained weights written into the fp32 graph, quantized by ONNX Runtime with the learned
    activation scales fixed (a few calibration inputs only satisfy its API: no range is calibrated)."""
    import onnx
    from onnx import numpy_helper

    from edgekd.export.quantize import produce_variant

    model = onnx.load(str(prepared))
    trained = graph.weight_arrays()
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.name in trained:
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(trained[tensor.name].astype(np.float32), tensor.name))
    weights = work / "trained.onnx"
    onnx.save(model, str(weights))
    produce_variant(weights, dest, Scheme.static_qdq, settings, calibration[: min(8, len(calibration))], list(graph.plan.kept_fp32),
                    scales=graph.learned_scales())


def _against_start(kind: Task, value: float, start: float) -> str:
    return f"{kind.primary.heading} {kind.primary.show(value)} against post-training int8's {kind.primary.show(start)}"


def check_qad_parity(graph, path: Path, x, task_name: str, target: Target | None = None, when: str = "after training") -> QadParity:
    """The fake-quantized model and ORT's int8 run of the exported file (as the target runs it) agree
    to a few rounding steps, outputs compared as the task `task_name` says; MirrorError otherwise."""
    from edgekd.runtime.session import open_session, run_batches
    from edgekd.models.call import predict

    runtime = target.runtime if target else None
    agree = compare_outputs(run_batches(open_session(path, runtime=runtime), x), predict(graph, x), task_name)  # ORT's run is the reference
    parity = QadParity(agree.max_abs, agree.mean_abs, agree.scale, agree.agreement)
    if parity.agreement < PARITY_MIN_AGREEMENT or parity.mean_abs > PARITY_MAX_MEAN_REL * max(parity.largest_logit, 1e-12):
        differs = (f"{path.name}: {when}, ONNX Runtime's int8 run differs from edgekd's PyTorch mirror of it (mean |Δ| "
                   f"{parity.mean_abs:.3g} on outputs up to {parity.largest_logit:.3g}, agreement {parity.agreement:.2%}")
        saturated = graph.saturated_biases()
        if saturated:  # a known cause, with its fix
            raise MirrorError(f"{differs}): the int32 bias {', '.join(map(repr, saturated))} does not fit at its layer's scales and "
                              "ONNX Runtime's int8 kernels overflow their int32 sums there; quantize weights as int8 "
                              '(weight_type = "int8" in the target\'s [quantization]: ORT then widens the weight\'s scale to fit the bias)')
        raise MirrorError(f"{differs}{_first_difference(graph, path, x, runtime)}); please report it with the model")
    return parity


def _first_difference(graph, path: Path, x, runtime) -> str:
    """Where the mirror and ORT part, read at ORT's QuantizeLinear outputs as the target runs the
    file. Reading them out can change what ORT fuses, so this names a suspect, not a proof; it is
    a hint inside an error message, so a file it cannot read this way (ORT format) gets none."""
    import onnx
    import torch

    from edgekd.runtime.session import feeds, open_session

    if path.suffix != ".onnx":
        return ""
    model = onnx.load(str(path))
    constants = {i.name: i.data_type for i in model.graph.initializer}
    produced_by = {out: node.op_type for node in model.graph.node for out in node.output}
    quantizers = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in constants]
    for node in quantizers:  # the stored integers' type is the zero point's
        model.graph.output.append(onnx.helper.make_tensor_value_info(node.output[0], constants[node.input[2]], None))
    sample = as_inputs(x).rows(0, min(len(x), 64))
    with tempfile.TemporaryDirectory(prefix=".edgekd-qad-", dir=path.parent) as folder:
        exposed = Path(folder) / "exposed.onnx"
        onnx.save(model, str(exposed))
        try:
            session = open_session(exposed, runtime=runtime)
        except OnnxModelError:  # ORT would not load it with its quantizers read out: no hint, the error stands as it is
            return ""
        values = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds(session, sample))))
    seen = graph.quantized_activations(**{k: torch.as_tensor(v) for k, v in sample.items()})
    for node in quantizers:
        name = node.input[0].removesuffix("_QuantizeLinear_Input")
        q = graph.plan.activations.get(name)
        if q is None or name not in seen or q.follows:
            continue
        ours = np.rint(seen[name].numpy() / float(graph.activation_scale(name).detach())) + q.zero_point
        off = np.abs(ours - values[node.output[0]].astype(np.float64)) > 0
        if off.mean() > 1e-3:
            return f"; first apart at {name!r}, the output of {produced_by.get(node.input[0], 'an input')}, {off.mean():.1%} of it"
    return ""


def best_trained(variants: list[QadVariant], kind: Task) -> QadVariant:
    """The quantization-aware model better on the validation split by the task's primary metric; QAD on a tie."""
    trained = [v for v in reversed(variants) if v.phase in ARTIFACTS]  # QAD first: max keeps the first of equals
    sign = 1 if kind.primary.higher_is_better else -1
    return max(trained, key=lambda v: sign * v.val_accuracy)


def _phase_settings(recipe: Recipe, epochs: int, lr_scale: float):
    """The phases' training settings: QAT's (hard labels alone) and QAD's (the recipe's logit terms),
    a few cosine epochs at a share of distillation's learning rate."""
    from edgekd.distill.trainer import TrainSettings

    cfg = recipe.distill
    ce_weight, kd_terms = recipe.qad_objective()
    if not kd_terms:
        raise QadError("quantization-aware distillation distils logits: the recipe's [[distill.loss]] has no kd or dkd term")
    base = TrainSettings(epochs, cfg.batch_size, cfg.lr * lr_scale, cfg.seed, schedule="cosine", grad_clip=cfg.grad_clip,
                         temperature=cfg.temperature)
    return base, replace(base, ce_weight=ce_weight, terms=kd_terms)


@dataclass(frozen=True)
class _Phase:
    """What each quantization-aware phase (QAT, QAD) trains from and writes to."""

    out_dir: Path
    work: Path  # scratch folder (other ranks export there without writing the run folder)
    prepared: Path  # the fp32 student after ORT's pre-processing
    plan: Any  # qad.graph's quantizer plan: where ORT put each quantizer, with its calibrated scale
    settings: dict[str, Any]  # ORT's static QDQ settings
    calibration: Any
    data: Any  # DataSplits
    fp32_test: np.ndarray  # the fp32 student's per-sample test hits
    target: Target
    checkpoints: Path | None  # where each phase keeps its epochs (None: nowhere)
    resume: bool
    seed: int
    start_val_accuracy: float  # post-training int8 on validation: what each phase must not end below
    learn_scales: bool  # [qad] learn_scales: LSQ step sizes, or the calibration's kept


def _train_phase(phase: _Phase, role: QadPhase, settings, teachers) -> QadVariant:
    """Fine-tune the fake-quantized student (on labels alone for QAT, against the teachers for QAD),
    export it with its learned scales, and check ONNX Runtime's int8 run against it (in ORT format
    too, for targets that ship that)."""
    import torch

    from edgekd.distill import distributed
    from edgekd.distill.trainer import fit
    from edgekd.export.mobile import package_ort
    from edgekd.qad.graph import FakeQuantGraph

    data, target = phase.data, phase.target
    graph = FakeQuantGraph(phase.prepared, phase.plan, fused_kernels=fuses(target), learn_scales=phase.learn_scales)
    start = copy.deepcopy(graph.state_dict())  # post-training int8's weights and scales: a candidate like every epoch
    torch.manual_seed(phase.seed)
    outcome = fit(graph, data.x_train, data.y_train, data.x_val, data.y_val, settings, label=NAMES[role],
                  checkpoint=phase.checkpoints / f"{role}.ckpt" if phase.checkpoints else None, resume=phase.resume, teachers=teachers)
    graph.load_state_dict(outcome.best_state)
    folder = phase.out_dir if distributed.is_main() else phase.work  # other ranks check the same export without writing it
    dest = folder / ARTIFACTS[role]
    best_epoch = outcome.best_epoch
    with atomic_path(dest) as tmp:
        export_qdq(graph, phase.prepared, tmp, phase.settings, phase.calibration, phase.work)
        kind = task_entry(data.task)
        trained = kind.summarise(file_outcomes(tmp, data.x_val, data.y_val, kind.name))
        if kind.primary.gain(phase.start_val_accuracy, trained) < 0:  # never worse than where it started
            say(f"qad: {NAMES[role]} ended below post-training int8 on validation ({_against_start(kind, trained, phase.start_val_accuracy)}); "
                "it keeps its starting point")
            graph.load_state_dict(start)
            best_epoch = 0
            export_qdq(graph, phase.prepared, tmp, phase.settings, phase.calibration, phase.work)
    parity = check_qad_parity(graph.eval(), dest, data.x_test, data.task, target)
    if target.runtime.format is ArtifactFormat.ort:  # what a mobile target ships, checked as it ships
        package = package_ort(dest, folder, list(target.runtime.providers), target.runtime.ort_platform)
        dest = Path(package.ort_file)
        parity = check_qad_parity(graph, dest, data.x_test, data.task, target)
    return _variant(role, dest, data, phase.fp32_test, parity=parity, history=outcome.history, best_epoch=best_epoch)


def _deployment(exported: ExportResult, qad: QadVariant, kind: Task) -> tuple[str, Role, str]:
    """The better quantization-aware model on the validation split (QAD, or QAT when training on
    labels alone did better) ships when export shipped static int8 and it is at least as good there
    by the task's primary metric; otherwise export's choice stands (an fp32 artifact chosen for
    speed stays fp32: this int8 model would be as slow)."""
    quantized, shipped = exported.quantized, exported.deployed
    if quantized.scheme != Scheme.static_qdq.value:
        return shipped, exported.deployed_role, f"export deployed {quantized.scheme}, not static int8"
    if shipped.endswith(".ort") != qad.file.endswith(".ort"):
        return shipped, exported.deployed_role, f"export shipped {shipped}; this phase ran for a target of another format"
    if kind.primary.gain(quantized.val_accuracy, qad.val_accuracy) >= 0:
        return qad.file, qad.role, (f"{qad.name}: validation {_against_start(kind, qad.val_accuracy, quantized.val_accuracy)}"
                                    + (f" with {len(quantized.excluded_nodes)} node(s) in fp32" if quantized.excluded_nodes else ""))
    return shipped, exported.deployed_role, (f"post-training int8 is better on the validation split ({kind.primary.show(quantized.val_accuracy)} "
                                             f"vs {kind.primary.show(qad.val_accuracy)} {kind.primary.heading})")


def _variant(phase: QadPhase, path: Path, data, fp32_test, parity=None, history=(), best_epoch=0) -> QadVariant:
    """One int8 model's row: its primary metric on validation and test, its test outcomes paired against fp32's."""
    kind = task_entry(data.task)
    val, test = (file_outcomes(path, x, y, kind.name) for x, y in ((data.x_val, data.y_val), (data.x_test, data.y_test)))
    return QadVariant(PHASE_ROLES[phase], phase, NAMES[phase], "" if phase == "post-training" else path.name, kind.summarise(val),
                      kind.summarise(test), kind.paired(fp32_test, test), path.stat().st_size, parity, list(history), best_epoch)


def _static(cfg: QuantizationConfig) -> QuantizationConfig:
    """QAD mirrors static QDQ: the target's types, per-channel choice and weight range."""
    if cfg.scheme not in (Scheme.static_qdq, Scheme.auto):
        raise QadError(f"quantization-aware distillation trains for static QDQ int8; the target deploys '{cfg.scheme.value}': "
                       'set [quantization] scheme = "static-qdq"')
    return cfg


def _onnx_teacher(path: Path):
    """One ONNX model's soft targets, through ONNX Runtime (cached by the file's hash)."""
    from edgekd.runtime.session import open_session
    from edgekd.distill.teacher import Teacher, TeacherSet

    return TeacherSet([Teacher(f"onnx {path}", 1.0, session=open_session(path), identity=sha256_file(path))])


def _teachers(run_dir: Path):
    """The soft targets distillation used: an ONNX teacher, teacher.pt, or, when teacher.pt is an
    ensemble, its members with their weights (averaged at T as distillation averaged them, not the
    ensemble's T = 1 average softened once more)."""
    from edgekd.distill.teacher import Teacher, TeacherSet
    from edgekd.models.checkpoint import load_model
    from edgekd.models.ensemble import Ensemble

    if runfolder.TEACHER_ONNX in runfolder.stage_files(run_dir, "distill"):
        return _onnx_teacher(runfolder.artifact(run_dir, runfolder.TEACHER_ONNX, "quantization-aware distillation"))
    path = runfolder.artifact(run_dir, "teacher.pt", "quantization-aware distillation")
    model, spec = load_model(path)
    identity = sha256_file(path)
    if isinstance(model, Ensemble):
        return TeacherSet([Teacher(f"{path} member {i + 1}", weight, model=member.eval(), identity=f"{identity}:{i}")
                           for i, (member, weight) in enumerate(zip(model.members, model.weights))])
    return TeacherSet([Teacher(f"checkpoint {path}", 1.0, model=model.eval(), spec=spec, identity=identity)])
