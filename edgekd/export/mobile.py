"""Mobile packaging: ORT format, the operator list for a reduced build, NNAPI/CoreML coverage.

All of it is ONNX Runtime's own tooling. The usability check estimates, from operator support
tables shipped with ONNX Runtime, how many nodes NNAPI and CoreML would take and into how many
partitions they split the graph: each partition boundary copies tensors between the NPU and the
CPU, so many small partitions make a mobile EP slower than the CPU alone.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgekd._io import atomic_path
from edgekd.errors import OnnxModelError, first_line

MOBILE_PROVIDERS = {"NnapiExecutionProvider": "NNAPI", "CoreMLExecutionProvider": "CoreML"}


@dataclass(frozen=True)
class EpCoverage:
    ep: str  # "NNAPI" or "CoreML" (ML Program)
    nodes: int
    supported_nodes: int
    coverage: float  # supported_nodes / nodes
    partitions: int  # subgraphs the EP would run; the rest falls back to the CPU
    unsupported_ops: list[str]  # op types that fall back to the CPU
    suitability: str  # ONNX Runtime's verdict: YES, MAYBE or NO ("UNKNOWN" when not analysed)
    error: str | None = None  # why the check could not run


@dataclass(frozen=True)
class OrtPackage:
    ort_file: str  # the model in ORT format
    required_operators: str  # config for a reduced-size ONNX Runtime build
    optimization_style: str  # "Fixed" (CPU EP) or "Runtime" (NNAPI/CoreML decide at load time)


def mobile_coverage(path: Path) -> list[EpCoverage]:
    """How NNAPI and CoreML would partition the model, with the shapes as they are in the file."""
    from onnxruntime.tools.mobile_helpers.usability_checker import check_coreml_partitions, check_nnapi_partitions
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo

    try:
        model = ModelProtoWithShapeInfo(Path(path)).model_with_shape_info
    except Exception as exc:  # ORT's shape inference raises many types
        return [_unknown(ep, exc) for ep in ("NNAPI", "CoreML")]
    checks = {
        "NNAPI": lambda m: check_nnapi_partitions(m, True),
        "CoreML": lambda m: check_coreml_partitions(m, True, "coreml_supported_mlprogram_ops.md"),
    }
    results = []
    for ep, check in checks.items():
        try:
            with _quiet():
                info = check(model)
        except Exception as exc:  # the checker rejects some valid graphs (e.g. ORT's own fp16 output)
            results.append(_unknown(ep, exc))
            continue
        nodes = max(info.num_nodes, 1)
        results.append(EpCoverage(
            ep=ep, nodes=info.num_nodes, supported_nodes=info.num_supported_nodes,
            coverage=info.num_supported_nodes / nodes, partitions=info.num_partitions,
            unsupported_ops=sorted(info.unsupported_ops), suitability=info.suitability().name,
        ))
    return results


def _unknown(ep: str, exc: Exception) -> EpCoverage:
    reason = first_line(exc)
    return EpCoverage(ep, 0, 0, 0.0, 0, [], "UNKNOWN", f"ONNX Runtime's usability checker failed: {reason}")


def package_ort(source: Path, out_dir: Path, providers: list[str], platform: str | None) -> OrtPackage:
    """Convert `source` to ORT format beside it, with its required-operators config.

    'Runtime' optimisation keeps the graph open for NNAPI/CoreML to claim nodes at load time;
    'Fixed' bakes in the CPU EP's fusions (ONNX Runtime's guidance for the two cases).
    """
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    source, out_dir = Path(source), Path(out_dir)
    style = OptimizationStyle.Runtime if any(p in MOBILE_PROVIDERS for p in providers) else OptimizationStyle.Fixed
    with tempfile.TemporaryDirectory(prefix=".edgekd-ort-", dir=out_dir) as work_dir:
        work = Path(work_dir)
        shutil.copyfile(source, work / source.name)
        try:
            with _quiet():
                convert_onnx_models_to_ort(work / source.name, output_dir=work / "out", optimization_styles=[style], target_platform=platform)
        except Exception as exc:
            raise OnnxModelError(f"{source}: ONNX Runtime cannot convert it to ORT format ({first_line(exc)})") from None
        produced = {p.suffix: p for p in (work / "out").iterdir()}
        ort_file, config = out_dir / f"{source.stem}.ort", out_dir / f"{source.stem}.required_operators.config"
        for built, dest in ((produced[".ort"], ort_file), (produced[".config"], config)):
            with atomic_path(dest) as tmp:
                shutil.copyfile(built, tmp)
    return OrtPackage(str(ort_file), str(config), style.name)


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's tools print progress to stdout and INFO logs; keep stdout for --json."""
    loggers = [logging.getLogger(name) for name in ("ort_format_model.utils", "usability_checker", "")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
