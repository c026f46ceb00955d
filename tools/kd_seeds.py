"""Teacher / scratch student / distilled student accuracy over several seeds, in one run.

Digits' test split has 360 images, so one seed's difference between the scratch and the distilled
student is mostly noise; this prints mean ± std over seeds and the share of the student→teacher
gap that distillation closes, which is the figure to quote.

    python tools/kd_seeds.py                    # built-in demo recipe, seeds 0 1 2
    python tools/kd_seeds.py my.toml --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

from edgekd._progress import set_quiet
from edgekd.distill.stage import distill
from edgekd.recipe import load_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", type=Path, help="recipe TOML (default: the built-in demo)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    set_quiet(True)
    base = load_recipe(args.recipe)
    rows = {"teacher": [], "scratch": [], "distilled": []}
    for seed in args.seeds:
        recipe = replace(base, distill=replace(base.distill, seed=seed))
        with tempfile.TemporaryDirectory() as out:
            result = distill(recipe, Path(out) / "run")
        rows["teacher"].append(result.teacher_scores.test)
        rows["scratch"].append(result.scratch.best.test)
        rows["distilled"].append(result.distilled.best.test)
        print(f"seed {seed}: teacher {result.teacher_scores.test:.2%}  scratch {result.scratch.best.test:.2%}  distilled {result.distilled.best.test:.2%}", flush=True)
    print(f"\n{'model':<10} {'test top-1 (mean ± std over ' + str(len(args.seeds)) + ' seeds)'}")
    for name, values in rows.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{name:<10} {statistics.mean(values):.2%} ± {spread:.2%}")
    gap = statistics.mean(rows["teacher"]) - statistics.mean(rows["scratch"])
    gain = statistics.mean(rows["distilled"]) - statistics.mean(rows["scratch"])
    share = f"{gain / gap:.0%}" if gap > 0 else "n/a (the scratch student matches the teacher)"
    print(f"\ndistillation gain {gain * 100:+.2f} points; share of the student→teacher gap closed: {share}")


if __name__ == "__main__":
    main()
