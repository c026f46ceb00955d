"""edgekd: from a trained PyTorch teacher to a small, fast, verified model on an edge device.

    distill → export (ONNX) → simplify (onnxsim) → quantize (ONNX Runtime) → bench + verify

Two ways in:

- **Models in memory** (a notebook, a model defined inside a script): the pure stages
  `distill_model`, `export_model`, `quantize_model`, `quantization_aware_model`, `bench_models`
  take objects and return typed results; nothing needs a recipe or a run folder.
- **Run folders** (what the CLI does): `run` (the whole pipeline from a recipe), `distill_run`,
  `export_run` and `bench_run` (a run folder or a bare ONNX file), each stage reading the
  earlier one's typed result from the folder.

Everything is imported lazily, so `import edgekd` (and `edgekd bench`) does not import torch.
The run-folder stages are not named plain `distill`/`export`/`bench`: those are the subpackages'
names, and Python sets a subpackage on its parent once imported, which would hide a function of
the same name.
"""

# ruff: noqa: F401  (the TYPE_CHECKING imports are for editors: the names resolve lazily through __getattr__)
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgekd._version import __version__

_API = {
    # pure stages and their results
    "distill_model": "edgekd.distill.model",
    "distill_settings": "edgekd.distill.model",
    "DistilledModel": "edgekd.distill.model",
    "TrainSettings": "edgekd.distill.trainer",
    "export_model": "edgekd.export.stage",
    "ExportedModel": "edgekd.export.stage",
    "quantize_model": "edgekd.export.quantize",
    "QuantizeResult": "edgekd.export.quantize",
    "quantization_aware_model": "edgekd.qad.stage",
    "QadResult": "edgekd.qad.result",
    "bench_models": "edgekd.bench.stage",
    "BenchReport": "edgekd.bench.stage",
    "Role": "edgekd.roles",
    # run folders
    "run": "edgekd.pipeline",
    "RunResult": "edgekd.pipeline",
    "distill_run": "edgekd.distill.stage",
    "DistillResult": "edgekd.distill.result",
    "export_run": "edgekd.export.stage",
    "ExportResult": "edgekd.export.stage",
    "bench_run": "edgekd.folders.bench",
    "search": "edgekd.search.stage",
    "SearchResult": "edgekd.search.result",
    # configuration and data
    "load_recipe": "edgekd.recipe",
    "Recipe": "edgekd.recipe",
    "load_target": "edgekd.targets",
    "Target": "edgekd.targets",
    "load_data": "edgekd.data",
    "splits_from_arrays": "edgekd.data",
    "DataSplits": "edgekd.data",
    "EdgekdError": "edgekd.errors",
}
_RENAMED = {"distill_run": "distill", "export_run": "export", "bench_run": "bench"}  # their names in their own modules

__all__ = sorted(_API) + ["__version__"]

if TYPE_CHECKING:
    from edgekd.bench.stage import BenchReport, bench_models
    from edgekd.data import DataSplits, load_data, splits_from_arrays
    from edgekd.distill.model import DistilledModel, distill_model, distill_settings
    from edgekd.distill.result import DistillResult
    from edgekd.distill.stage import distill as distill_run
    from edgekd.distill.trainer import TrainSettings
    from edgekd.errors import EdgekdError
    from edgekd.export.quantize import QuantizeResult, quantize_model
    from edgekd.export.stage import ExportedModel, ExportResult, export_model
    from edgekd.export.stage import export as export_run
    from edgekd.folders.bench import bench as bench_run
    from edgekd.pipeline import RunResult, run
    from edgekd.qad.result import QadResult
    from edgekd.qad.stage import quantization_aware_model
    from edgekd.recipe import Recipe, load_recipe
    from edgekd.roles import Role
    from edgekd.search.result import SearchResult
    from edgekd.search.stage import search
    from edgekd.targets import Target, load_target


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'edgekd' has no attribute '{name}'")
    import importlib

    return getattr(importlib.import_module(_API[name]), _RENAMED.get(name, name))


def __dir__() -> list[str]:
    """What editors and `dir(edgekd)` offer: the public API, though it is loaded lazily."""
    return sorted(set(globals()) | set(_API))
