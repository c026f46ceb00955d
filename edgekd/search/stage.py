"""`edgekd search`: choose the student by measuring every candidate on the target before training it.

    candidates ──► measure as shipped (export, simplify, quantize, time) ──► within budgets (margin)
               ──► capacity/latency frontier ──► successive halving ──► Optuna trials on the winner

Proxies such as FLOPs or parameters misjudge edge CPUs (a depthwise net with a tenth of the MACs
can be slower in int8); here each candidate is measured as it will ship, in seconds, and only the
candidates that fit are trained. `searched_recipe` turns the result into the recipe `edgekd run`
continues with.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

from edgekd._io import write_json
from edgekd._progress import bar, say
from edgekd.data import load_recipe_data
from edgekd.data.splits import DataSplits
from edgekd.errors import RecipeError, RunFolderError, SearchError
from edgekd.recipe import Recipe, load_recipe, recipe_target, with_task_models
from edgekd.search.measure import Measurement, measured_or_why
from edgekd.search.result import PLOT, RESULT, CandidateRecord, SearchResult, plot
from edgekd.search.select import Limits, beaten_by, frontier, limits, spread
from edgekd.search.space import Candidate, candidates
from edgekd.search.train import ROUNDS, halving, train_once, tune
from edgekd.targets import Target
from edgekd.task import task

JOURNAL = "search.optuna.journal"


def search(recipe: Recipe | Path | None, target: Target | str | Path | None = None, out: Path = Path("runs/search"),
           resume: bool = False) -> SearchResult:
    """Measure, filter, train and choose; write search.json and search.png into `out`."""
    began, seconds = time.perf_counter(), {}
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    if recipe.search is None:
        raise RecipeError("the recipe has no [search] section: add one with `space` (arg → values to try) or `candidates`")
    data = load_recipe_data(recipe.data, recipe.task)
    recipe = with_task_models(recipe, data.task)
    target = recipe_target(recipe, target)
    cfg, out = recipe.search, Path(out)
    _claim(out, resume)
    pool = candidates(cfg, cfg.family or recipe.student.model, recipe.student.args if cfg.family in (None, recipe.student.model) else {})
    measured, dropped = _measure_all(pool, data, target, recipe)
    seconds["measure"] = time.perf_counter() - began
    teachers = _teachers(recipe, data, out, resume) if cfg.train or target.budgets.min_compression else None
    teacher_bytes = _teacher_bytes(teachers, recipe, data, target) if target.budgets.min_compression else None
    seconds["teachers"] = time.perf_counter() - began - seconds["measure"]
    limit = limits(target, cfg.margin, teacher_bytes)
    entrants = _entrants(pool, measured, dropped, limit, target, cfg.max_trained)
    mark = time.perf_counter()
    winner, rounds = _train(entrants, recipe, data, teachers, out) if cfg.train else (entrants[-1].key, {})
    _why_out(entrants, winner, rounds, dropped, cfg.train)
    seconds["halving"] = time.perf_counter() - mark
    mark = time.perf_counter()
    hyper, trials = _tune(next(c for c in pool if c.key == winner), recipe, data, teachers, target, rounds, out)
    seconds["trials"] = time.perf_counter() - mark
    seconds["total"] = time.perf_counter() - began
    kind = task(data.task)
    result = SearchResult(
        target=target.name, family=pool[0].family, metric=kind.primary.name, higher_is_better=kind.primary.higher_is_better,
        limits=asdict(limit), teacher_bytes=teacher_bytes,
        candidates=[CandidateRecord(c.key, c.args, c.describe(recipe.student.args), measured.get(c.key), dropped.get(c.key),
                                    rounds.get(c.key, [])) for c in pool],
        winner=winner, winner_args=next(c for c in pool if c.key == winner).args, hyper=hyper, trials=trials, seconds=seconds)
    write_result(out, result)
    return result


def write_result(out: Path, result: SearchResult) -> None:
    """search.json, and search.png beside it (a note when it cannot be drawn)."""
    write_json(Path(out) / RESULT, result)
    problem = plot(result, Path(out) / PLOT)
    if problem:
        say(problem)


def searched_recipe(recipe: Recipe, result: SearchResult) -> Recipe:
    """The recipe with the search's student and hyper-parameters, and without [search]: what the
    distill stage runs (and records in the run folder)."""
    distill = recipe.distill
    if result.hyper:
        kd_weight = result.hyper["kd_weight"]
        distill = replace(distill, kd_weight=kd_weight, ce_weight=round(1 - kd_weight, 6), lr=result.hyper["lr"],
                          temperature=result.hyper.get("temperature", distill.temperature))
    student = replace(recipe.student, model=result.family, args=dict(result.winner_args))
    return replace(recipe, student=student, distill=distill, search=None)


def _claim(out: Path, resume: bool) -> None:
    """An earlier search's folder is continued only when asked (its rounds would be reused)."""
    if not resume and ((out / ROUNDS).exists() or (out / RESULT).exists()):
        raise RunFolderError(f"{out} already holds a search; pass --resume to continue it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)


def _measure_all(pool: list[Candidate], data: DataSplits, target: Target, recipe: Recipe) -> tuple[dict[str, Measurement], dict[str, str]]:
    """Every candidate measured on the target (cached ones read back); the ones that could not be, with why."""
    measured, dropped = {}, {}
    say(f"search: measuring {len(pool)} candidate(s) on {target.name} as they would ship (export, simplify, "
        f"{target.quantization.scheme.value}, {recipe.search.timing_runs} timed runs each)")
    with bar() as progress:
        bar_task = progress.add_task("search: measure", total=len(pool), info="")
        for candidate in pool:
            outcome = measured_or_why(candidate, data, target, recipe.distill.seed, recipe.search.timing_runs, recipe.data.standardize_targets)
            if isinstance(outcome, str):
                dropped[candidate.key] = outcome
                info = "not measurable"
            else:
                measured[candidate.key] = outcome
                info = f"{outcome.params:,} params, {outcome.deployed_bytes / 1024:.1f} KiB, {outcome.latency_ms:.3f} ms"
            progress.update(bar_task, advance=1, info=f"{candidate.key}: {info}")
    return measured, dropped


def _entrants(pool: list[Candidate], measured: dict[str, Measurement], dropped: dict[str, str], limit: Limits,
              target: Target, max_trained: int) -> list[Candidate]:
    """The candidates that train: within the limits, on the frontier, spread over the latency range."""
    fitting = {}
    for key, m in measured.items():
        reason = limit.over(m)
        if reason:
            dropped[key] = f"over budget: {reason}"
        else:
            fitting[key] = m
    if not fitting:
        raise SearchError(_nothing_fits(pool, measured, dropped, limit, target))
    front = frontier(fitting)
    by_key = {c.key: c for c in pool}
    for key in set(fitting) - set(front):
        better = beaten_by(key, fitting, front)
        dropped[key] = f"off the frontier: {by_key[better].describe(by_key[key].args)} has as many parameters and MACs or more and is no slower"
    entrants = spread(front, max_trained)
    for key in set(front) - set(entrants):
        dropped[key] = f"on the frontier, not among the {max_trained} trained (max_trained; spread over the latency range)"
    say(f"search: {len(measured)} measured, {len(fitting)} within the budgets, {len(front)} on the frontier, {len(entrants)} to train")
    return [by_key[k] for k in entrants]


def _nothing_fits(pool: list[Candidate], measured: dict[str, Measurement], dropped: dict[str, str], limit: Limits, target: Target) -> str:
    if not measured:
        first = next(iter(dropped.values()), "no candidates")
        return f"no candidate could be measured (the first: {first}); fix the [search] space"
    closest = min(measured, key=lambda k: limit.excess(measured[k]))
    described = next(c for c in pool if c.key == closest).describe({})
    return (f"no candidate fits {target.name}'s budgets with [search] margin = {limit.margin:g}: the closest, {described}, "
            f"is {limit.over(measured[closest])}; add smaller candidates, lower the margin or widen the target's budgets")


def _teachers(recipe: Recipe, data: DataSplits, out: Path, resume: bool):
    """The recipe's teachers, trained (or read from the cache) and their outputs cached, as distill prepares them."""
    from edgekd.distill.teacher import cache_teacher_logits, plan_teachers, train_teachers

    teachers = train_teachers(plan_teachers(recipe, data), data, out, resume)
    return cache_teacher_logits(teachers, data, recipe.distill.cache_teacher, recipe.data.augment or recipe.data.mixup > 0)


def _teacher_bytes(teachers, recipe: Recipe, data: DataSplits, target: Target) -> int:
    """The teacher's fp32 ONNX bytes (min_compression's reference), exported as the export stage exports it."""
    import tempfile

    from edgekd.export.stage import export_model

    first = teachers.members[0]
    if first.model is None:  # an ONNX teacher: source is "onnx PATH"
        return Path(first.source.split(" ", 1)[1]).stat().st_size
    with tempfile.TemporaryDirectory(prefix="edgekd-search-") as folder:
        exported = export_model(first.model.cpu().eval(), data.x_test, target.export, Path(folder), name="teacher", simplify_graph=False,
                                max_length=recipe.data.max_length, task=data.task)
        return exported.path.stat().st_size


def _train(entrants: list[Candidate], recipe: Recipe, data: DataSplits, teachers, out: Path):
    from edgekd.distill.model import distill_settings

    settings = distill_settings(recipe.distill, recipe.data, data.task)
    cfg = recipe.search

    def train(candidate: Candidate, epochs: int) -> float:
        return train_once(candidate, data, teachers, replace(settings, epochs=epochs), recipe.distill.seed, recipe.data.standardize_targets,
                          f"search {candidate.key} ({epochs} epochs)")

    return halving(entrants, train, cfg.first_epochs, cfg.eta, recipe.distill.epochs, task(data.task).primary.higher_is_better, out)


def _why_out(entrants: list[Candidate], winner: str, rounds: dict, dropped: dict[str, str], trained: bool) -> None:
    """Each entrant but the winner: the round it went out in."""
    for candidate in entrants:
        if candidate.key == winner:
            dropped.pop(candidate.key, None)
        elif rounds.get(candidate.key):
            epochs, value = rounds[candidate.key][-1]
            dropped[candidate.key] = f"successive halving: out after its {epochs}-epoch round (val {value:.4g})"
    if not trained:
        for candidate in entrants[:-1]:
            dropped[candidate.key] = "untrained search ([search] train = false): the frontier's largest is chosen"


def _tune(winner: Candidate, recipe: Recipe, data: DataSplits, teachers, target: Target, rounds: dict, out: Path):
    cfg = recipe.search
    if not cfg.trials or not cfg.train:
        return {}, []
    from edgekd.distill.model import distill_settings

    epochs = cfg.trial_epochs or max((e for e, _ in rounds.get(winner.key, [])), default=cfg.first_epochs)
    seed = recipe.distill.seed if cfg.seed is None else cfg.seed
    identity = json.dumps([winner.key, data.name, target.name, seed, epochs, asdict(recipe.distill)], sort_keys=True, default=str)
    name = f"edgekd-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"
    say(f"search: {cfg.trials} Optuna trial(s) of {epochs} epochs over the winner's temperature, weights and lr (study {name})")
    hyper, trials = tune(winner, data, teachers, distill_settings(recipe.distill, recipe.data, data.task), cfg.trials, epochs, seed,
                         cfg.storage or str(out / JOURNAL), name, recipe.data.standardize_targets)
    return hyper, trials


CONFIRM_TOLERANCE = 0.25  # the bench's latency may differ this much from the search's measurement (a shared CPU drifts)


def confirm(result: SearchResult, report, percentile: int) -> SearchResult:
    """The search's prediction (the winner measured untrained) against the final bench of the trained,
    exported student: the same latency within CONFIRM_TOLERANCE and the same size within 10% confirm it."""
    deployed = report.variant(report.deployed_role)
    predicted = result.prediction
    if deployed is None or predicted is None:
        return replace(result, confirmed="not checked: the bench has no deployed variant")
    measured_ms, measured_bytes = deployed.latency.percentile(percentile), deployed.profile.bytes
    latency_ratio, size_ratio = measured_ms / predicted.latency_ms, measured_bytes / predicted.deployed_bytes
    figures = (f"predicted p{percentile} {predicted.latency_ms:.3f} ms and {predicted.deployed_bytes / 1024:.1f} KiB, "
               f"bench measured {measured_ms:.3f} ms ({latency_ratio - 1:+.0%}) and {measured_bytes / 1024:.1f} KiB ({size_ratio - 1:+.0%})")
    held = abs(latency_ratio - 1) <= CONFIRM_TOLERANCE and abs(size_ratio - 1) <= 0.10
    verdict = "confirmed" if held else "NOT confirmed (the bench is what the budgets hold; the search's figure was off)"
    return replace(result, confirmed=f"{verdict}: {figures}")
