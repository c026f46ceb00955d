"""edgekd: from a trained PyTorch teacher to a small, fast, verified model on an edge device.

    distill → export (ONNX) → simplify (onnxsim) → quantize (ONNX Runtime) → bench + verify

The public API is one function per stage plus `run()` for all of them. Each is imported lazily,
so `import edgekd` (and `edgekd bench`) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgekd._version import __version__

_API = {
    "distill": "edgekd.distill.stage",
    "DistillResult": "edgekd.distill.stage",
    "export": "edgekd.export.stage",
    "ExportResult": "edgekd.export.stage",
    "bench": "edgekd.bench.stage",
    "BenchReport": "edgekd.bench.stage",
    "run": "edgekd.pipeline",
    "RunResult": "edgekd.pipeline",
    "load_recipe": "edgekd.recipe",
    "Recipe": "edgekd.recipe",
    "load_target": "edgekd.targets",
    "Target": "edgekd.targets",
    "load_data": "edgekd.data",
    "EdgekdError": "edgekd.errors",
}

__all__ = sorted(_API) + ["__version__"]

if TYPE_CHECKING:
    from edgekd.bench.stage import BenchReport, bench
    from edgekd.data import load_data
    from edgekd.distill.stage import DistillResult, distill
    from edgekd.errors import EdgekdError
    from edgekd.export.stage import ExportResult, export
    from edgekd.pipeline import RunResult, run
    from edgekd.recipe import Recipe, load_recipe
    from edgekd.targets import Target, load_target


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'edgekd' has no attribute '{name}'")
    import importlib

    return getattr(importlib.import_module(_API[name]), name)
