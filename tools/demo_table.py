"""The built-in demo, measured: does the teacher help, and can the paired test tell?

For each seed, the demo recipe (`edgekd.recipe.DEMO`: the defaults with `[data] label_fraction =
0.15`: the students keep the labels of 15% of digits' training images, the other 85% are an
unlabelled transfer set, the CNN teacher learns from every label) against the plain defaults (every
label for everyone). Teacher, scratch student and distilled student, test top-1 at each student's
best validation epoch, and the exact McNemar test on the paired test images. Then seed 0's demo
as `edgekd run` ships it (export, int8 or fp32 by the target's rule, bench on x86-cpu), with its
wall time.

Writes docs/results/demo-digits.md (command, date, machine, versions, seeds, then the tables) and
prints it.

    python tools/demo_table.py                 # seeds 0 1 2: about two minutes on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from _pages import RESULTS, mean_sd, provenance, write_page

from edgekd._progress import set_quiet
from edgekd.distill.stage import distill
from edgekd.pipeline import run
from edgekd.recipe import DEMO, load_recipe

PERCENT = "{:.2%}".format

# set-up → [data] label_fraction: the demo's, and every label (the recipe defaults otherwise)
SETUPS = {"demo: labels for 15%, the rest unlabelled": DEMO["data"]["label_fraction"], "every label (the recipe defaults)": 1.0}


def _recipe(label_fraction: float, seed: int):
    demo = load_recipe(None)
    return replace(demo, data=replace(demo.data, label_fraction=label_fraction), distill=replace(demo.distill, seed=seed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--write", type=Path, default=RESULTS / "demo-digits.md", help="the results page to write")
    args = parser.parse_args()
    set_quiet(True)
    began = time.perf_counter()
    lines, sizes = [], {}
    summary = ["| set-up | teacher | scratch student | distilled student | gap closed |", "|---|---|---|---|---|"]
    paired = ["| set-up | seed | teacher | scratch | distilled | right only when distilled / only from scratch | exact McNemar p |",
              "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as folder:
        for name, label_fraction in SETUPS.items():
            rows = {"teacher": [], "scratch": [], "distilled": []}
            for seed in args.seeds:
                result = distill(_recipe(label_fraction, seed), Path(folder) / f"{len(sizes)}-{seed}")
                sizes[name] = result.split_sizes
                rows["teacher"].append(result.teacher_scores.test)
                rows["scratch"].append(result.scratch.best.test)
                rows["distilled"].append(result.distilled.best.test)
                test = result.kd_gain_test
                paired.append(f"| {name} | {seed} | {rows['teacher'][-1]:.2%} | {rows['scratch'][-1]:.2%} | {rows['distilled'][-1]:.2%} | "
                              f"{test.only_first} / {test.only_second} | {test.p_value:.2g} |")
                print(f"{name}, seed {seed}: teacher {rows['teacher'][-1]:.2%}, scratch {rows['scratch'][-1]:.2%}, "
                      f"distilled {rows['distilled'][-1]:.2%}, McNemar p = {test.p_value:.2g}", flush=True)
            means = {k: statistics.mean(v) for k, v in rows.items()}
            closed = (means["distilled"] - means["scratch"]) / (means["teacher"] - means["scratch"])
            summary.append(f"| {name} | {mean_sd(rows['teacher'], PERCENT)} | {mean_sd(rows['scratch'], PERCENT)} | {mean_sd(rows['distilled'], PERCENT)} | {closed:.0%} |")
        started = time.perf_counter()
        shipped = run(None, out=Path(folder) / "demo")
        demo_seconds = time.perf_counter() - started
    demo = sizes[next(iter(SETUPS))]
    report = shipped.bench
    deployed = next(v for v in report.variants if v.role == report.deployed_role)
    lines = [
        "# The built-in demo — measured",
        "",
        provenance("demo_table.py", time.perf_counter() - began, args.seeds),
        "",
        f"Data: scikit-learn's digits, the default split ({demo['train'] + demo['unlabeled']:,} train / {demo['val']} val / "
        f"{demo['test']} test). In the demo the students keep the labels of {demo['train']} training images (15%, stratified) and "
        f"the other {demo['unlabeled']:,} are an unlabelled transfer set, which only the distilled student sees, through the "
        f"teacher's soft targets; the teacher (CNN, 53k parameters) learns from all {demo['teacher_train']:,} labels, as a model "
        "trained on more labelled data than the student has would. Students: MLP 64 (4.8k parameters), 40 epochs (an epoch "
        "passes over the transfer set), T = 4, kd 0.7 / ce 0.3. Test top-1 at each student's best validation epoch; each "
        "seed trains its own teacher and students.",
        "",
        *summary,
        "",
        "Each seed, and whether its difference between the two students is real (the exact McNemar test on the paired test images):",
        "",
        *paired,
        "",
        f"`edgekd run` (seed 0, the whole pipeline, the teacher cached by the runs above) took {demo_seconds:.0f} s and ships the "
        f"{deployed.name} ({deployed.profile.bytes / 1024:.1f} KiB, test top-1 {deployed.accuracy:.2%}, p50 "
        f"{deployed.latency.p50_ms:.4f} ms); verdict on x86-cpu: {'PASS' if report.passed else 'FAIL'}.",
    ]
    write_page(args.write, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
