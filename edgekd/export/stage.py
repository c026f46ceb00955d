"""The export stage: teacher and student to ONNX, the student simplified, quantized, packaged.

Reads `teacher.pt`, `student.pt` and the recipe from a run folder that `edgekd distill` left, and
writes `teacher.onnx` (fp32, the reference for the budgets), `student.onnx` (fp32 as exported),
`student.sim.onnx` (simplified), the quantized student named after its scheme
(`student.int8.onnx`, `student.int8-dynamic.onnx`, `student.fp16.onnx`) and, for targets whose
format is `ort`, its `.ort` file and required-operators config. Parity is measured on real test
images; quantization decisions use the validation split; the test split only reports.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from edgekd import runfolder
from edgekd._io import write_json
from edgekd.runtime.metrics import file_top1
from edgekd._progress import say
from edgekd.data import load_recipe_data
from edgekd.export.mobile import OrtPackage, package_ort
from edgekd.runtime.coverage import EpCoverage, mobile_coverage
from edgekd.export.onnx import OnnxExport, Parity, check_parity, export_onnx, parity_lengths
from edgekd.export.quantize import QuantizeResult, quantize
from edgekd.export.simplify import SimplifyResult, simplify
from edgekd.inputs import TensorSpec
from edgekd.recipe import recipe_target
from edgekd.runfolder import load_run_recipe
from edgekd.targets import ArtifactFormat, Scheme, Target

RESULT = "export.json"
TEACHER_ONNX = "teacher.onnx"
STUDENT_ONNX = "student.onnx"
STUDENT_SIMPLIFIED = "student.sim.onnx"


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
    fp32_test_accuracy: float  # the simplified fp32 student in ONNX Runtime
    deployed_test_accuracy: float  # the deployed artifact in ONNX Runtime
    deployed: str  # file name of the artifact the target ships
    mobile: list[EpCoverage]  # NNAPI / CoreML coverage of the deployed model
    ort: OrtPackage | None  # ORT-format package, for targets whose format is "ort"
    seconds: float
    inputs: list[TensorSpec] = dataclasses.field(default_factory=list)  # the student's named, typed inputs (ONNX input names)
    outputs: list[str] = dataclasses.field(default_factory=list)  # its named outputs; the first (logits) is scored
    schema_version: int = 4


def export(run_dir: Path, target: Target | str | Path | None = None, scheme: Scheme | str | None = None) -> ExportResult:
    """Export, check, simplify, quantize and package the run folder's models for `target`.

    `scheme` overrides the target's quantization scheme (as `edgekd export --scheme` does).
    """
    with runfolder.locked(Path(run_dir)), runfolder.rollback_on_failure(Path(run_dir)):
        return _export(run_dir, target, scheme)  # a failed export leaves the folder as it found it


def _export(run_dir: Path, target: Target | str | Path | None, scheme: Scheme | str | None) -> ExportResult:
    from edgekd.models.checkpoint import load_model

    began = time.perf_counter()
    run_dir = Path(run_dir)
    onnx_teacher = TEACHER_ONNX in runfolder.stage_files(run_dir, "distill")
    teacher_pt = None if onnx_teacher else runfolder.artifact(run_dir, "teacher.pt", "export")
    student_pt = runfolder.artifact(run_dir, "student.pt", "export")
    recipe = load_run_recipe(run_dir)
    target = recipe_target(recipe, target)
    qcfg = target.quantization
    scheme = scheme if scheme is not None else recipe.export.scheme
    if scheme is not None:
        qcfg = dataclasses.replace(qcfg, scheme=Scheme(scheme))
    data = load_recipe_data(recipe.data)
    cfg = target.export

    student, student_spec = load_model(student_pt)
    lengths = parity_lengths(data.x_test, recipe.data.max_length)
    if onnx_teacher:  # the teacher was an ONNX file already: it is the reference as it is
        runfolder.artifact(run_dir, TEACHER_ONNX, "export")
        teacher_onnx, teacher_parity = None, None
    else:
        teacher, _ = load_model(teacher_pt)
        teacher_onnx = export_onnx(teacher, data.x_test, run_dir / TEACHER_ONNX, cfg.opset, cfg.fixed_batch)
        teacher_parity = check_parity(teacher, run_dir / TEACHER_ONNX, data.x_test, cfg, "teacher", lengths)
    student_onnx = export_onnx(student, data.x_test, run_dir / STUDENT_ONNX, cfg.opset, cfg.fixed_batch)
    student_parity = check_parity(student, run_dir / STUDENT_ONNX, data.x_test, cfg, "student", lengths)
    teacher_note = f"teacher {teacher_parity.max_abs:.2e}, " if teacher_parity else "teacher given as ONNX, "
    say(f"export: ONNX parity max |Δ| {teacher_note}student {student_parity.max_abs:.2e} "
        f"({student_onnx.exporter} exporter, opset {cfg.opset}, batch {cfg.fixed_batch or 'dynamic'})")
    for exported in (teacher_onnx, student_onnx):
        if exported and exported.fallback_reason:
            say(f"export: the dynamo exporter failed ({exported.fallback_reason}); used the TorchScript exporter")

    simplified = simplify(run_dir / STUDENT_ONNX, run_dir / STUDENT_SIMPLIFIED, data.x_test, cfg.parity_max_abs)
    calibration = data.calibration(qcfg.calibration_samples, seed=recipe.data.split_seed)
    quantized = quantize(run_dir / STUDENT_SIMPLIFIED, run_dir, qcfg, calibration, data.x_val, data.y_val,
                         list(target.runtime.providers), target.runtime)
    deployed_onnx = Path(quantized.path).name if quantized.path else STUDENT_SIMPLIFIED
    coverage = mobile_coverage(run_dir / deployed_onnx)
    written = ([] if onnx_teacher else [TEACHER_ONNX]) + [STUDENT_ONNX, STUDENT_SIMPLIFIED] + ([deployed_onnx] if quantized.path else [])
    package = None
    deployed = deployed_onnx
    if target.runtime.format is ArtifactFormat.ort:
        package = package_ort(run_dir / deployed_onnx, run_dir, list(target.runtime.providers), target.runtime.ort_platform)
        deployed = Path(package.ort_file).name
        written += [deployed, Path(package.required_operators).name]
    fp32_accuracy = file_top1(run_dir / STUDENT_SIMPLIFIED, data.x_test, data.y_test)
    deployed_accuracy = file_top1(run_dir / deployed, data.x_test, data.y_test)
    say(f"export: simplified {simplified.nodes_before} → {simplified.nodes_after} nodes; deployed {deployed} "
        f"({quantized.scheme}, {(run_dir / deployed).stat().st_size / 1024:.1f} KiB), "
        f"test accuracy {fp32_accuracy:.2%} fp32 → {deployed_accuracy:.2%} deployed")
    if quantized.versus_fp32:
        v = quantized.versus_fp32
        measured = "the requested scheme" if quantized.fell_back else quantized.scheme
        say(f"export: {measured} against fp32 on {v.provider}: "
            f"p50 {v.p50_ms / v.fp32_p50_ms:.2f}×, size {v.bytes / v.fp32_bytes:.2f}× (timed interleaved on this machine)")
    if quantized.excluded_nodes:
        say(f"export: kept {len(quantized.excluded_nodes)} node(s) in fp32 to stay within the accuracy budget: {', '.join(quantized.excluded_nodes)}")

    result = ExportResult(
        run_dir=str(run_dir), target=target.name, fixed_batch=cfg.fixed_batch,
        teacher=teacher_onnx, teacher_parity=teacher_parity,
        student=student_onnx, student_parity=student_parity,
        simplified=simplified, quantized=quantized,
        fp32_test_accuracy=fp32_accuracy, deployed_test_accuracy=deployed_accuracy,
        deployed=deployed, mobile=coverage, ort=package, seconds=time.perf_counter() - began,
        inputs=list(student_spec.input_spec), outputs=list(student_spec.outputs),
    )
    write_json(run_dir / RESULT, result)
    runfolder.record(run_dir, "export", written + [RESULT], target=target)
    return result

