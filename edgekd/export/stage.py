"""The export stage: teacher and student to ONNX, the student simplified and quantized.

Reads `teacher.pt`, `student.pt` and the recipe from a run folder that `edgekd distill` left, and
writes `teacher.onnx` (fp32, the reference for the budgets), `student.onnx` (fp32 as exported),
`student.sim.onnx` (simplified) and `student.int8.onnx` (what the target deploys), with parity
figures measured on real test images.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd import runfolder
from edgekd.runfolder import load_run_recipe
from edgekd._io import write_json
from edgekd._ort import open_session, run_batches
from edgekd._progress import say
from edgekd.data import load_data
from edgekd.export.onnx import OnnxExport, Parity, check_parity, export_onnx
from edgekd.export.quantize import QuantizeResult, quantize
from edgekd.export.simplify import SimplifyResult, simplify
from edgekd.targets import Target, load_target

RESULT = "export.json"
TEACHER_ONNX = "teacher.onnx"
STUDENT_ONNX = "student.onnx"
STUDENT_SIMPLIFIED = "student.sim.onnx"
STUDENT_DEPLOYED = "student.int8.onnx"


@dataclass(frozen=True)
class ExportResult:
    run_dir: str
    target: str
    teacher: OnnxExport
    teacher_parity: Parity
    student: OnnxExport
    student_parity: Parity
    simplified: SimplifyResult
    quantized: QuantizeResult
    fp32_test_accuracy: float  # the simplified fp32 student in ONNX Runtime
    deployed_test_accuracy: float  # the quantized student in ONNX Runtime
    deployed: str  # file name of the artifact the target ships
    seconds: float
    schema_version: int = 1


def export(run_dir: Path, target: Target | str | Path | None = None) -> ExportResult:
    """Export, check, simplify and quantize the run folder's models for `target`."""
    from edgekd.models.checkpoint import load_model

    began = time.perf_counter()
    run_dir = Path(run_dir)
    teacher_pt = runfolder.artifact(run_dir, "teacher.pt", "export")
    student_pt = runfolder.artifact(run_dir, "student.pt", "export")
    recipe = load_run_recipe(run_dir)
    target = _resolve_target(target, recipe)
    data = load_data(recipe.data.source, recipe.data.val_fraction, recipe.data.test_fraction, recipe.data.split_seed)
    opset, limit = target.export.opset, target.export.parity_max_abs

    teacher, _ = load_model(teacher_pt)
    student, _ = load_model(student_pt)
    teacher_onnx = export_onnx(teacher, data.input_shape, run_dir / TEACHER_ONNX, opset)
    teacher_parity = check_parity(teacher, run_dir / TEACHER_ONNX, data.x_test, limit, "teacher")
    student_onnx = export_onnx(student, data.input_shape, run_dir / STUDENT_ONNX, opset)
    student_parity = check_parity(student, run_dir / STUDENT_ONNX, data.x_test, limit, "student")
    say(f"export: ONNX parity max |Δ| teacher {teacher_parity.max_abs:.2e}, student {student_parity.max_abs:.2e} "
        f"({student_onnx.exporter} exporter, opset {opset})")

    simplified = simplify(run_dir / STUDENT_ONNX, run_dir / STUDENT_SIMPLIFIED, data.x_test, limit)
    calibration = data.calibration(target.quantization.calibration_samples, seed=recipe.data.split_seed)
    quantized = quantize(run_dir / STUDENT_SIMPLIFIED, run_dir / STUDENT_DEPLOYED, target.quantization, calibration)
    fp32_accuracy = _accuracy(run_dir / STUDENT_SIMPLIFIED, data.x_test, data.y_test)
    deployed_accuracy = _accuracy(run_dir / STUDENT_DEPLOYED, data.x_test, data.y_test)
    say(f"export: simplified {simplified.nodes_before} → {simplified.nodes_after} nodes; {quantized.scheme} "
        f"{quantized.bytes / 1024:.1f} KiB, test accuracy {fp32_accuracy:.2%} fp32 → {deployed_accuracy:.2%} deployed")

    result = ExportResult(
        run_dir=str(run_dir), target=target.name,
        teacher=teacher_onnx, teacher_parity=teacher_parity,
        student=student_onnx, student_parity=student_parity,
        simplified=simplified, quantized=quantized,
        fp32_test_accuracy=fp32_accuracy, deployed_test_accuracy=deployed_accuracy,
        deployed=STUDENT_DEPLOYED, seconds=time.perf_counter() - began,
    )
    write_json(run_dir / RESULT, result)
    runfolder.record(run_dir, "export", [TEACHER_ONNX, STUDENT_ONNX, STUDENT_SIMPLIFIED, STUDENT_DEPLOYED, RESULT], target=target)
    return result


def _resolve_target(target: Target | str | Path | None, recipe) -> Target:
    if isinstance(target, Target):
        return target
    if target is not None:
        return load_target(target)
    return load_target(recipe.target.path or recipe.target.name or "x86-cpu")


def _accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    return float((run_batches(open_session(path), x).argmax(axis=1) == y).mean())
