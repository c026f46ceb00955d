"""`run()`: distill → export → (the quantization-aware phase, when asked or when int8 misses) → bench, into one run folder."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from edgekd.runtime.session import usable_providers
from edgekd.bench.stage import BenchReport
from edgekd.data import shared_data
from edgekd.distill.result import DistillResult
from edgekd.export.stage import ExportResult
from edgekd.folders.bench import bench
from edgekd.recipe import Recipe, load_recipe, recipe_target
from edgekd import runfolder
from edgekd._progress import say
from edgekd.runfolder import RECIPE, load_run_recipe
from edgekd.targets import Scheme, Target


SEARCH_DIR = "search"  # the student search's folder inside a run folder


@dataclass(frozen=True)
class RunResult:
    run_dir: str
    distill: DistillResult
    export: ExportResult
    bench: BenchReport
    passed: bool  # every budget of the target holds
    seconds: float
    qad: "QadResult | None" = None  # noqa: F821 - the quantization-aware phase, when it ran
    search: "SearchResult | None" = None  # noqa: F821 - the student search, when the recipe has [search]


def default_run_dir(recipe_path: Path | None, root: Path = Path("runs")) -> Path:
    """runs/<recipe name>-<timestamp>: a fresh folder per run, so no run overwrites another."""
    stem = Path(recipe_path).stem if recipe_path else "default"
    return root / f"{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def run(
    recipe: Recipe | Path | None = None,
    target: Target | str | Path | None = None,
    out: Path | None = None,
    resume: bool = False,
    force: bool = False,
    scheme: str | None = None,
    providers: list[str] | None = None,
    sweep: bool = False,
) -> RunResult:
    """The whole pipeline; `target` overrides the recipe's [target], `scheme` its quantization,
    `providers` the target's execution providers for the bench stage."""
    from edgekd.distill import distributed
    from edgekd.errors import EdgekdError

    if distributed.world_size() > 1:
        raise EdgekdError("under torchrun, launch `edgekd distill` (it scales out); then run `edgekd export` and `edgekd bench` once, in one process")
    began = time.perf_counter()
    out = Path(out) if out else default_run_dir(recipe if isinstance(recipe, Path) else None)
    if isinstance(recipe, Recipe):
        recipe_obj = recipe
    elif recipe is None and resume and (out / RECIPE).is_file():
        recipe_obj = load_run_recipe(out)  # resuming: the folder's own recipe
    else:
        recipe_obj = load_recipe(recipe)
    target_obj = recipe_target(recipe_obj, target)  # fail before training on a bad target
    usable_providers(list(target_obj.runtime.providers if providers is None else providers))  # ... or on a provider this machine lacks
    with shared_data():  # the stages read the data once
        searched = _search(recipe_obj, target_obj, out, resume, force) if recipe_obj.search is not None else None
        if searched is None:
            return _run_stages(recipe_obj, target_obj, out, resume, force, scheme, providers, sweep, began)
        from edgekd.search.stage import searched_recipe

        result = _run_stages(searched_recipe(recipe_obj, searched), target_obj, out, resume, force, scheme, providers, sweep, began)
        return replace(result, search=_confirmed(searched, result.bench, target_obj, out))


def _search(recipe: Recipe, target: Target, out: Path, resume: bool, force: bool):
    """The recipe's [search], into the run folder's search/ (continued on --resume, redone on --force)."""
    import shutil

    from edgekd.search.stage import search

    if force and not resume:
        shutil.rmtree(out / SEARCH_DIR, ignore_errors=True)
    return search(recipe, target, out / SEARCH_DIR, resume=resume)


def _confirmed(searched, report: BenchReport, target: Target, out: Path):
    """The search's measured prediction against the final bench, said and written into search.json."""
    from edgekd.search.stage import confirm, write_result

    searched = confirm(searched, report, target.budgets.latency_percentile)
    write_result(out / SEARCH_DIR, searched)
    say(f"search: {searched.confirmed}")
    return searched


def _run_stages(recipe_obj: Recipe, target_obj: Target, out: Path, resume: bool, force: bool, scheme: str | None,
                providers: list[str] | None, sweep: bool, began: float) -> RunResult:
    from edgekd.distill.stage import distill
    from edgekd.export.stage import export

    finished = runfolder.load_manifest(out).get("stages", {}) if resume else {}
    if "distill" in finished:
        distilled = _load_result(out, runfolder.DISTILL_RESULT, DistillResult)
    else:
        distilled = distill(recipe_obj, out, resume=resume, force=force, sweep=sweep, target=target_obj)
    with runfolder.locked(out):  # distill held it while it wrote; export and bench hold it together
        if "export" in finished and scheme is None and runfolder.load_manifest(out).get("target", {}).get("name") == target_obj.name:
            exported = _load_result(out, runfolder.EXPORT_RESULT, ExportResult)
        else:
            exported = export(out, target_obj, scheme)
        qad = None
        why = _qad_reason(recipe_obj, target_obj, exported)
        if why and not runfolder.stage_files(out, "qad"):
            qad = _quantization_aware(out, target_obj, resume, why)
        report = bench(out, target=target_obj, providers=providers)
    return RunResult(str(out), distilled, exported, report, report.passed, time.perf_counter() - began, qad)


def _qad_reason(recipe: Recipe, target: Target, exported: ExportResult) -> str | None:
    """Why `edgekd run` fine-tunes through int8 (quantization-aware distillation), or None: the
    recipe or target asks for it, or (the default) post-training static int8 stays significantly
    beyond max_drop_vs_fp32."""
    if recipe.qad.when == "never" or exported.quantized.scheme != Scheme.static_qdq.value:
        return None
    if recipe.qad.when == "always" or target.quantization.quantization_aware:
        return "asked"
    return None if exported.quantized.budget_met else "int8 misses"


def _quantization_aware(out: Path, target: Target, resume: bool, why: str):
    """The phase, run as asked; when only the default trigger started it, a student or target it
    cannot handle yet (an operator outside the graph runner's set) keeps post-training int8 with a warning instead of
    failing a run that export already finished."""
    from edgekd.errors import QadError
    from edgekd.qad.stage import quantization_aware

    if why == "asked":
        say("qad: the recipe or target asks for quantization-aware distillation")
        return quantization_aware(out, target, resume=resume)
    say("qad: post-training int8 misses the accuracy budget; fine-tuning the student through its int8 model against the teacher")
    try:
        return quantization_aware(out, target, resume=resume)
    except QadError as exc:
        say(f"warning: quantization-aware distillation skipped ({exc}); post-training int8 stays deployed")
        return None


def _load_result(run_dir: Path, name: str, cls: type):
    """A finished stage's result, read back typed from its JSON when a run resumes."""
    result = runfolder.read_result(run_dir, name, cls, "resume")
    say(f"resume: {name} is finished, not redone")
    return result
