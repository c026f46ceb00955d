"""The export stage: teacher and student to ONNX, the student simplified, quantized, packaged.

`export_model` is the pure stage for one PyTorch model (export, parity against PyTorch,
onnxsim); `quantize` (export/quantize.py) and `package_ort` (export/mobile.py) are the next
steps. `export` is the run-folder adapter: it reads `teacher.pt`, `student.pt` and the recipe
from a run folder that `edgekd distill` left, and writes `teacher.onnx` (fp32, the reference for
the budgets), `student.onnx` (fp32 as exported), `student.sim.onnx` (simplified), the quantized student named after its scheme
(`student.int8.onnx`, `student.int8-dynamic.onnx`, `student.fp16.onnx`) and, for targets whose
format is `ort`, its `.ort` file and required-operators config. Parity is measured on real test
images; quantization decisions use the validation split; the test split only reports.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from edgekd import runfolder
from edgekd._progress import say
from edgekd.data import load_recipe_data
from edgekd.export.mobile import OrtPackage, package_ort
from edgekd.export.onnx import OnnxExport, Parity, check_parity, export_onnx, parity_lengths
from edgekd.export.quantize import QuantizeResult, quantize_model
from edgekd.export.simplify import SimplifyResult, simplify
from edgekd.inputs import Inputs, TensorSpec, as_inputs
from edgekd.recipe import recipe_target
from edgekd.roles import Role
from edgekd.runfolder import load_run_recipe
from edgekd.runtime.coverage import EpCoverage, mobile_coverage
from edgekd.runtime.metrics import file_outcomes
from edgekd.task import task as task_entry
from edgekd.targets import ArtifactFormat, ExportConfig, Scheme, Target, size_limit

if TYPE_CHECKING:
    from torch import nn

RESULT = runfolder.EXPORT_RESULT
TEACHER_ONNX, STUDENT_ONNX, STUDENT_SIMPLIFIED = runfolder.TEACHER_ONNX, runfolder.STUDENT_ONNX, runfolder.STUDENT_SIMPLIFIED


@dataclass(frozen=True)
class ExportResult:
    run_dir: str
    target: str
    fixed_batch: int | None  # None: dynamic batch axis
    teacher: OnnxExport | None  # None when the teacher was given as an ONNX file
    teacher_parity: Parity | None
    student: OnnxExport
    student_parity: Parity
    simplified: SimplifyResult
    quantized: QuantizeResult
    fp32_test_accuracy: float  # the simplified fp32 student in ONNX Runtime: the task's primary metric (`metric`) on the test split
    deployed_test_accuracy: float  # the deployed artifact in ONNX Runtime, likewise
    deployed: str  # file name of the artifact the target ships
    mobile: list[EpCoverage]  # NNAPI / CoreML coverage of the deployed model
    ort: OrtPackage | None  # ORT-format package, for targets whose format is "ort"
    seconds: float
    inputs: list[TensorSpec] = dataclasses.field(default_factory=list)  # the student's named, typed inputs (ONNX input names)
    outputs: list[str] = dataclasses.field(default_factory=list)  # its named outputs; the first (logits) is scored
    deployed_role: Role = Role.ptq  # what ships: the quantized student (ptq), or the fp32 student (student) when scheme is none
    metric: str = "accuracy"  # the primary metric the test figures are in (rmse for regression)
    with_nms: str | None = None  # [export] include_nms: the deployed model with ONNX NonMaxSuppression appended
    schema_version: int = 5  # 5: deployed_role

    @staticmethod
    def upgrade(data: dict) -> dict:
        """An export.json of an earlier version: what shipped, by role, follows from its file name."""
        return {**data, "deployed_role": Role.student if data.get("deployed") == STUDENT_SIMPLIFIED else Role.ptq}


@dataclass(frozen=True)
class ExportedModel:
    """One PyTorch model as ONNX: exported, checked against PyTorch on real inputs, simplified."""

    onnx: OnnxExport  # the file as exported
    parity: Parity  # PyTorch against ONNX Runtime on the example inputs
    simplified: SimplifyResult | None  # onnxsim's result, verified (None: not simplified)
    inputs: list[TensorSpec]  # the named, typed inputs (ONNX input names)

    @property
    def path(self) -> Path:
        """The file to quantize or ship: the simplified one when simplification ran."""
        return Path(self.simplified.path if self.simplified else self.onnx.path)


def export_model(
    model: nn.Module,
    example_inputs: Inputs | np.ndarray,
    cfg: ExportConfig,
    out_dir: Path,
    *,
    name: str = "model",
    simplify_graph: bool = True,
    max_length: int | None = None,
    task: str = "classification",
) -> ExportedModel:
    """Export `model` to `out_dir/<name>.onnx` with `cfg`'s opset and batch axis, check it against
    PyTorch on `example_inputs` (real inputs: a few hundred rows of the test split), and simplify it
    to `<name>.sim.onnx`. Raises ParityError when ONNX Runtime disagrees beyond `cfg`'s limits.
    Text models are also compared at 1 token, the median length and `max_length` (default: the
    longest example). `task` says when two outputs agree (the same top-1 class; close values)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x = as_inputs(example_inputs)
    lengths = x.lengths()
    longest = max_length or (int(lengths.max()) if lengths is not None else 0)
    exported = export_onnx(model, x, out_dir / f"{name}.onnx", cfg.opset, cfg.fixed_batch)
    parity = check_parity(model, out_dir / f"{name}.onnx", x, cfg, name, parity_lengths(x, longest), task)
    simplified = simplify(out_dir / f"{name}.onnx", out_dir / f"{name}.sim.onnx", x, cfg.parity_max_abs) if simplify_graph else None
    return ExportedModel(exported, parity, simplified, list(x.spec))


def export(run_dir: Path, target: Target | str | Path | None = None, scheme: Scheme | str | None = None) -> ExportResult:
    """Export, check, simplify, quantize and package the run folder's models for `target`.

    `scheme` overrides the target's quantization scheme (as `edgekd export --scheme` does).
    """
    with runfolder.locked(Path(run_dir)), runfolder.rollback_on_failure(Path(run_dir)):
        return _export(Path(run_dir), target, scheme)  # a failed export leaves the folder as it found it


def _export(run_dir: Path, target: Target | str | Path | None, scheme: Scheme | str | None) -> ExportResult:
    from edgekd.models.checkpoint import load_model

    began = time.perf_counter()
    onnx_teacher = TEACHER_ONNX in runfolder.stage_files(run_dir, "distill")
    teacher_pt = None if onnx_teacher else runfolder.artifact(run_dir, "teacher.pt", "export")
    student_pt = runfolder.artifact(run_dir, "student.pt", "export")
    recipe = load_run_recipe(run_dir)
    target = recipe_target(recipe, target)
    qcfg = target.quantization if scheme is None and recipe.export.scheme is None else \
        dataclasses.replace(target.quantization, scheme=Scheme(scheme if scheme is not None else recipe.export.scheme))
    data = load_recipe_data(recipe.data, recipe.task)
    cfg, max_length = target.export, recipe.data.max_length
    kind = task_entry(data.task)

    student, student_spec = load_model(student_pt)
    if onnx_teacher:  # the teacher was an ONNX file already: it is the reference as it is
        runfolder.artifact(run_dir, TEACHER_ONNX, "export")
        teacher = None
    else:
        teacher = export_model(load_model(teacher_pt)[0], data.x_test, cfg, run_dir, name="teacher", simplify_graph=False,
                               max_length=max_length, task=data.task)
    exported = export_model(student, data.x_test, cfg, run_dir, name="student", max_length=max_length, task=data.task)
    _say_exported(teacher, exported, cfg)
    calibration = data.calibration(qcfg.calibration_samples, seed=recipe.data.split_seed)
    quantized = quantize_model(exported.path, run_dir, qcfg, calibration, data.x_val, data.y_val, list(target.runtime.providers), target.runtime,
                               task=data.task, size_limit=size_limit(target, (run_dir / TEACHER_ONNX).stat().st_size))
    deployed, package, written = _deployed_artifact(run_dir, exported, quantized, target)
    with_nms = _with_nms(run_dir, Path(quantized.path).name if quantized.path else STUDENT_SIMPLIFIED, data) if recipe.export.include_nms else None
    coverage = mobile_coverage(run_dir / (Path(quantized.path).name if quantized.path else STUDENT_SIMPLIFIED))
    fp32_accuracy = kind.summarise(file_outcomes(exported.path, data.x_test, data.y_test, kind.name))
    deployed_accuracy = kind.summarise(file_outcomes(run_dir / deployed, data.x_test, data.y_test, kind.name))
    _say_deployed(run_dir, exported, quantized, deployed, kind.primary.show(fp32_accuracy), kind.primary.show(deployed_accuracy))
    result = ExportResult(
        run_dir=str(run_dir), target=target.name, fixed_batch=cfg.fixed_batch,
        teacher=teacher.onnx if teacher else None, teacher_parity=teacher.parity if teacher else None,
        student=exported.onnx, student_parity=exported.parity,
        simplified=exported.simplified, quantized=quantized,
        fp32_test_accuracy=fp32_accuracy, deployed_test_accuracy=deployed_accuracy,
        deployed=deployed, deployed_role=Role.ptq if quantized.path else Role.student, metric=kind.primary.name, mobile=coverage, ort=package, seconds=time.perf_counter() - began,
        inputs=list(student_spec.inputs), outputs=list(student_spec.outputs), with_nms=with_nms,
    )
    runfolder.write_result(run_dir, RESULT, result)
    runfolder.record(run_dir, "export", ([] if onnx_teacher else [TEACHER_ONNX]) + written + ([with_nms] if with_nms else []) + [RESULT], target=target)
    return result


def _deployed_artifact(run_dir: Path, exported: ExportedModel, quantized: QuantizeResult,
                       target: Target) -> tuple[str, OrtPackage | None, list[str]]:
    """The file the target ships (the quantized student, else the simplified fp32 one; in ORT format
    for targets that ask for it), its ORT package, and the student's files written."""
    deployed = Path(quantized.path).name if quantized.path else STUDENT_SIMPLIFIED
    written = [STUDENT_ONNX, STUDENT_SIMPLIFIED] + ([deployed] if quantized.path else [])
    if target.runtime.format is not ArtifactFormat.ort:
        return deployed, None, written
    package = package_ort(run_dir / deployed, run_dir, list(target.runtime.providers), target.runtime.ort_platform)
    return Path(package.ort_file).name, package, written + [Path(package.ort_file).name, Path(package.required_operators).name]


def _with_nms(run_dir: Path, onnx_name: str, data) -> str:
    """The deployed ONNX model with NonMaxSuppression appended, run once on test images to prove it loads."""
    from edgekd.detection.nms_graph import with_nms
    from edgekd.inputs import as_inputs
    from edgekd.runtime.session import feeds, open_session

    path = with_nms(run_dir / onnx_name, run_dir / (Path(onnx_name).stem + ".nms.onnx"))
    session = open_session(path, ["CPUExecutionProvider"])
    rows = session.run(None, feeds(session, as_inputs(data.x_test).rows(0, 4)))[0]
    say(f"export: {path.name}: the deployed model with NMS inside ({len(rows)} detection(s) on 4 test images)")
    return path.name


def _say_exported(teacher: ExportedModel | None, student: ExportedModel, cfg: ExportConfig) -> None:
    teacher_note = f"teacher {teacher.parity.max_abs:.2e}, " if teacher else "teacher given as ONNX, "
    say(f"export: ONNX parity max |Δ| {teacher_note}student {student.parity.max_abs:.2e} "
        f"({student.onnx.exporter} exporter, opset {cfg.opset}, batch {cfg.fixed_batch or 'dynamic'})")
    for exported in (teacher, student):
        if exported and exported.onnx.fallback_reason:
            say(f"export: the dynamo exporter failed ({exported.onnx.fallback_reason}); used the TorchScript exporter")


def _say_deployed(run_dir: Path, exported: ExportedModel, quantized: QuantizeResult, deployed: str,
                  fp32_metric: str, deployed_metric: str) -> None:
    simplified = exported.simplified
    say(f"export: simplified {simplified.nodes_before} → {simplified.nodes_after} nodes; deployed {deployed} "
        f"({quantized.scheme}, {(run_dir / deployed).stat().st_size / 1024:.1f} KiB), "
        f"test {quantized.metric} {fp32_metric} fp32 → {deployed_metric} deployed")
    if quantized.versus_fp32:
        v = quantized.versus_fp32
        measured = "the requested scheme" if quantized.fell_back else quantized.scheme
        say(f"export: {measured} against fp32 on {v.provider}: "
            f"p50 {v.p50_ms / v.fp32_p50_ms:.2f}×, size {v.bytes / v.fp32_bytes:.2f}× (timed interleaved on this machine)")
    if quantized.excluded_nodes:
        say(f"export: kept {len(quantized.excluded_nodes)} node(s) in fp32 to stay within the accuracy budget: {', '.join(quantized.excluded_nodes)}")
