"""Mobile packaging: ORT format and the operator list for a reduced ONNX Runtime build.

All of it is ONNX Runtime's own tooling; how NNAPI and CoreML would partition the model is a
runtime question, answered in edgekd.runtime.coverage.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgekd._io import atomic_path
from edgekd.errors import OnnxModelError, first_line
from edgekd.runtime.coverage import MOBILE_PROVIDERS, quiet_ort_tools


@dataclass(frozen=True)
class OrtPackage:
    ort_file: str  # the model in ORT format
    required_operators: str  # config for a reduced-size ONNX Runtime build
    optimization_style: str  # "Fixed" (CPU EP) or "Runtime" (NNAPI/CoreML decide at load time)


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
            with quiet_ort_tools():
                convert_onnx_models_to_ort(work / source.name, output_dir=work / "out", optimization_styles=[style], target_platform=platform)
        except Exception as exc:
            raise OnnxModelError(f"{source}: ONNX Runtime cannot convert it to ORT format ({first_line(exc)})") from None
        produced = {p.suffix: p for p in (work / "out").iterdir()}
        ort_file, config = out_dir / f"{source.stem}.ort", out_dir / f"{source.stem}.required_operators.config"
        for built, dest in ((produced[".ort"], ort_file), (produced[".config"], config)):
            with atomic_path(dest) as tmp:
                shutil.copyfile(built, tmp)
    return OrtPackage(str(ort_file), str(config), style.name)
