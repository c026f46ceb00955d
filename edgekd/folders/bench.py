"""`edgekd bench` on a run folder or a bare ONNX file: find the models and their roles, load the
test data, call `bench_models`, write bench.json / bench.md (and JUnit XML), record the manifest.

A run folder holds the teacher fp32, the fp32 student and the deployed student (plus the
quantization-aware phase's models, when it ran): their roles and files come from export.json and
qad.json, read back typed. A bare file is benched alone, or against a `--teacher` file.
Imports no torch.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgekd import runfolder
from edgekd._config import validate
from edgekd._progress import say
from edgekd.bench.report import REPORT_FILES, verdict_line, write_junit, write_reports
from edgekd.bench.stage import BenchReport, bench_models
from edgekd.data import load_recipe_data, load_test_split
from edgekd.task import task_for
from edgekd.data.config import DataConfig
from edgekd.distill.result import DistillResult
from edgekd.errors import DataError, OnnxModelError, TargetError
from edgekd.export.stage import ExportResult
from edgekd.inputs import Inputs
from edgekd.qad.result import QadResult
from edgekd.roles import Role, display_name
from edgekd.runtime.coverage import EpCoverage
from edgekd.targets import Target, load_target


@dataclass(frozen=True)
class BenchInputs:
    """What one `edgekd bench` measures: the models by role, where its data comes from, and what a
    run folder says about them."""

    models: dict[Role, Path]  # the files, the deployed one last
    names: dict[Role, str]  # display names
    deployed: Role
    data: DataConfig | str | None  # a run's [data] section, a --data source, or None (random inputs)
    target: Target | None  # the target the run folder was exported for
    coverage: list[EpCoverage] | None  # NNAPI / CoreML coverage export measured (None: compute it)
    classes: list[str]
    reference: str  # what the teacher is, for the report
    out: Path
    task: str | None = None  # the run's task; None (a bare file): what the labels make unambiguous
    notes: list[str] = field(default_factory=list)  # for the report: a quantization-aware phase that was skipped, nodes it kept in fp32
    with_nms: Path | None = None  # detection: the deployed model with NMS inside ([export] include_nms), timed beside it


def bench(
    model: Path,
    data: str | None = None,
    target: Target | str | Path | None = None,
    teacher: Path | None = None,
    out: Path | None = None,
    providers: list[str] | None = None,
    memory: bool = True,
    junit: Path | None = None,
    tokenizer: str | None = None,
    max_length: int = 128,
    encoding: str = "utf-8",
    shapes: dict[str, list[int]] | None = None,
) -> BenchReport:
    """Bench a run folder or an ONNX file; write bench.json and bench.md; return the report.

    `providers` overrides the target's execution providers (e.g. to take host figures for a
    mobile target: the report names the providers used). `memory=False` skips the per-model
    child processes that measure session memory. `tokenizer` tokenizes `data = "text:PATH"`
    (every row is test data, truncated at `max_length` tokens) for a bare text classifier ONNX file;
    `encoding` is the text encoding of a `text:` or `csv:` data file. `shapes` size a bare model's
    free input dimensions when no data is given (`--shape x=1x3x640x640`). A run folder is locked
    while it is benched (see runfolder.locked)."""
    model = Path(model)
    with runfolder.locked(model) if model.is_dir() else contextlib.nullcontext():
        found = _run_folder(model, out) if model.is_dir() else _bare_file(model, teacher, out)
        target = target if isinstance(target, Target) else load_target(target) if target else found.target or load_target("x86-cpu")
        source = data or found.data
        x, y, note, max_length = _test_inputs(source, tokenizer, max_length, encoding, found.task)
        kind = task_for(found.task, y).name
        report = bench_models(found.models, target, x, y, deployed=found.deployed, names=found.names, providers=providers,
                              memory=memory, max_length=max_length, coverage=found.coverage, classes=found.classes,
                              reference=found.reference, inputs_note=note, task=kind, input_shapes=shapes, with_nms=found.with_nms)
        report = replace(report, notes=found.notes)
        _write(report, model, found.out, junit)
    say(f"bench: {verdict_line(report)}")
    return report


def _bare_file(model: Path, teacher: Path | None, out: Path | None) -> BenchInputs:
    if not model.is_file():
        raise OnnxModelError(f"not found: {model} (give a run folder or an .onnx file)")
    models = {**({Role.teacher: Path(teacher)} if teacher else {}), Role.model: model}
    names = {Role.teacher: "teacher fp32", Role.model: model.name}
    reference = f"the --teacher model {Path(teacher).name}" if teacher else ""
    return BenchInputs(models, {r: names[r] for r in models}, Role.model, None, None, None, [], reference, Path(out or model.parent))


def _run_folder(run_dir: Path, out: Path | None) -> BenchInputs:
    """The models a run folder holds by role, its data source, its export target and coverage."""
    exported = runfolder.read_result(run_dir, runfolder.EXPORT_RESULT, ExportResult, "bench")
    models = {Role.teacher: runfolder.artifact(run_dir, runfolder.TEACHER_ONNX, "bench"),
              Role.student: runfolder.artifact(run_dir, runfolder.STUDENT_SIMPLIFIED, "bench")}
    names = {Role.teacher: display_name(Role.teacher), Role.student: display_name(Role.student)}
    deployed = exported.deployed_role
    if deployed is Role.ptq:
        models[Role.ptq] = runfolder.artifact(run_dir, exported.deployed, "bench")
        names[Role.ptq] = display_name(Role.ptq, exported.quantized.scheme, ort_format=exported.deployed.endswith(".ort"))
    notes: list[str] = [f"deployed: {exported.quantized.deployed_because}"] if exported.quantized.deployed_because else []
    if runfolder.stage_files(run_dir, "qad"):
        deployed = _with_quantization_aware(run_dir, models, names, deployed, notes)
    saved = runfolder.load_manifest(run_dir).get("target")
    target = validate(Target, saved, f"{run_dir}/manifest.json target", TargetError) if saved else None
    classes = [str(c) for c in runfolder.read_json(run_dir / runfolder.LABELS).get("classes", [])] if (run_dir / runfolder.LABELS).is_file() else []
    distilled = runfolder.read_result(run_dir, runfolder.DISTILL_RESULT, DistillResult, "bench") if (run_dir / runfolder.DISTILL_RESULT).is_file() else None
    recipe = runfolder.load_run_recipe(run_dir)
    # the NMS file was made of export's deployed model: it is timed while that one still ships
    with_nms = runfolder.artifact(run_dir, exported.with_nms, "bench") if exported.with_nms and deployed is exported.deployed_role else None
    return BenchInputs(models, names, deployed, recipe.data, target, list(exported.mobile), classes,
                       distilled.reference if distilled else "the teacher", Path(out or run_dir),
                       distilled.task if distilled else recipe.task, notes, with_nms)


def _with_quantization_aware(run_dir: Path, models: dict[Role, Path], names: dict[Role, str], deployed: Role, notes: list[str]) -> Role:
    """Add the quantization-aware phase's models beside post-training int8; return the role that ships.
    What the report must say about the phase (skipped, nodes kept in fp32) goes to `notes`."""
    qad = runfolder.read_result(run_dir, runfolder.QAD_RESULT, QadResult, "bench")
    if qad.skipped:
        notes.append(f"quantization-aware distillation was skipped, post-training int8 ships: {qad.skipped}")
    if qad.kept_fp32 and not qad.skipped:
        notes.append(f"the quantization-aware files keep {len(qad.kept_fp32)} node(s) in fp32: "
                     + "; ".join(f"{node} ({why})" for node, why in qad.kept_fp32.items()))
    for variant in qad.variants:
        if variant.role in (Role.qat, Role.qad):
            models[variant.role] = runfolder.artifact(run_dir, variant.file, "bench")
            names[variant.role] = display_name(variant.role)
    ships = qad.deployed_role if qad.deployed_role in models else deployed
    if ships is not deployed and deployed is Role.ptq:
        names[Role.ptq] = display_name(Role.ptq, "static-qdq", beside_quantization_aware=True)
    return ships


def _test_inputs(source: DataConfig | str | None, tokenizer: str | None, max_length: int,
                 encoding: str, task: str | None) -> tuple[Inputs | np.ndarray | None, np.ndarray | None, str, int]:
    """Real test samples (a --data source string, or a run's [data] section), or None when no data is
    given (bench_models then times random inputs); and how long a text may be."""
    if source is None:
        return None, None, "", max_length
    if isinstance(source, str):
        if source.startswith("text:") and not tokenizer:
            raise DataError("text data needs the tokenizer the model was trained with: pass --tokenizer DIR")
        options = validate(DataConfig, {"source": source, "tokenizer": tokenizer, "max_length": max_length, "encoding": encoding},
                           "bench data", DataError)
        x, y = load_test_split(source, options, task)
        unlabelled = " (no labels: metrics not measured)" if y is None else ""
        return x, y, f"{len(x)} test samples from {source}{unlabelled}", max_length
    splits = load_recipe_data(source, task)
    return splits.x_test, splits.y_test, f"{len(splits.x_test)} test samples from {source.source}", source.max_length


def _write(report: BenchReport, model: Path, out: Path, junit: Path | None) -> None:
    """bench.json, bench.md (and the plot), JUnit XML: all of them or none (a failed write leaves
    every output as it was); a run folder benched into itself records them in its manifest."""
    with contextlib.ExitStack() as all_or_nothing:
        all_or_nothing.enter_context(runfolder.rollback_on_failure(out, REPORT_FILES + (runfolder.MANIFEST,)))
        if junit is not None:
            all_or_nothing.enter_context(runfolder.rollback_on_failure(Path(junit).parent, (Path(junit).name,)))
        written = write_reports(report, out)
        if junit is not None:
            write_junit(report, junit)
        if model.is_dir() and out.resolve() == model.resolve():
            runfolder.record(model, "bench", [p.name for p in written])
