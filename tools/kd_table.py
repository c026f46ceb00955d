"""Teacher / scratch student / distilled student test accuracy, mean ± std over seeds, and the
share of the student→teacher gap that distillation closes (goal: ≥ 50%).

Configurations:
- digits:         the built-in demo (CNN teacher → 64-unit MLP), T=4, kd 0.7 / ce 0.3.
- fashion-hinton: Hinton et al. 2015's MNIST setup applied to Fashion-MNIST: a 784-1200-1200-10
                  teacher with dropout → a 784-800-800-10 student, T=20, kd 0.9 / ce 0.1 (the
                  paper reports 67 / 146 / 74 test errors on MNIST).
- fashion-cnn:    the built-in CNN teacher → a small CNN student (8/16 channels), T=4, kd 0.7 / ce 0.3.
- fashion-cnn-mlp: the same CNN teacher → a 784-800-800-10 MLP student, T=4, kd 0.9 / ce 0.1, 40
                  epochs: the teacher's convolutional view of the images is what the MLP cannot
                  find from the labels alone, and distillation keeps improving it after the scratch
                  twin has levelled off. Seed 0 at 20 / 40 / 80 epochs: 21% / 43% / 2% of the
                  gap (at 80 the scratch twin caught up: 90.34% vs 90.38%).
- fashion-few-labels: labels for 6,000 of the 60,000 Fashion-MNIST training images (Hinton et al.'s
                  "transfer set" idea): the CNN teacher (30 epochs) and both MLP 800-800 students learn
                  from those labels; the distilled student also gets the teacher's soft targets on the
                  other 54,000 images, which the scratch twin cannot use. T=4, kd 0.9 / ce 0.1, 7 epochs (an
                  epoch passes over the 54,000 unlabelled images; the scratch twin takes as many steps).
Fashion-MNIST is the real 60k/10k set from Debian's dataset-fashion-mnist package, read with the
idx: source. Each seed trains its own teacher; students see the same data and epochs.

Writes docs/results/kd-table.md (command, date, machine, versions, seeds, then the tables:
means over seeds, and each seed's paired McNemar test of distilled against scratch) and prints it;
docs/measured.md links it. Each seed's figures are kept in a progress file as they finish (`--progress`,
beside the page by default): a run that was interrupted resumes where it stopped, rerunning only the
seeds of configurations not done with these settings; the file is removed once the page is written.

    python tools/kd_table.py                               # all configurations, seeds 0 1 2
    python tools/kd_table.py --configs digits --seeds 0 1 2 3 4 --write /tmp/digits.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _pages import RESULTS, provenance, write_page

from edgekd._io import write_text
from edgekd._progress import set_quiet
from edgekd.data.files import read_idx_dir
from edgekd.distill.stage import distill
from edgekd.recipe import recipe_from_dict

FASHION = "idx:/usr/share/datasets/fashion-mnist"
CONFIGS = {
    "digits": {},
    "fashion-hinton": {
        "data": {"source": FASHION},
        "teacher": {"model": "mlp", "args": {"hidden": [1200, 1200], "dropout": 0.5}, "epochs": 20, "lr": 1e-3},
        "student": {"model": "mlp", "args": {"hidden": [800, 800]}},
        "distill": {"temperature": 20.0, "kd_weight": 0.9, "ce_weight": 0.1, "epochs": 20, "batch_size": 128, "lr": 1e-3},
    },
    "fashion-cnn": {
        "data": {"source": FASHION},
        "teacher": {"model": "cnn", "epochs": 10, "lr": 1e-3},
        "student": {"model": "cnn", "args": {"channels": [8, 16], "hidden": 32}},
        "distill": {"temperature": 4.0, "kd_weight": 0.7, "ce_weight": 0.3, "epochs": 10, "batch_size": 128, "lr": 2e-3},
    },
    "fashion-cnn-mlp": {
        "data": {"source": FASHION},
        "teacher": {"model": "cnn", "epochs": 10, "lr": 1e-3},
        "student": {"model": "mlp", "args": {"hidden": [800, 800]}},
        "distill": {"temperature": 4.0, "kd_weight": 0.9, "ce_weight": 0.1, "epochs": 40, "batch_size": 128, "lr": 1e-3},
    },
    "fashion-few-labels": {
        # [data] source: an .npz (with x_unlabeled) that _few_labels writes for each run.
        "teacher": {"model": "cnn", "epochs": 30, "lr": 1e-3},
        "student": {"model": "mlp", "args": {"hidden": [800, 800]}},
        # An epoch passes over the 54,000 unlabelled images (the labelled 6,000 cycle): 7 epochs are
        # 2,954 steps, about the 2,820 of the 60 labelled-set epochs this row was first measured with.
        "distill": {"temperature": 4.0, "kd_weight": 0.9, "ce_weight": 0.1, "epochs": 7, "batch_size": 128, "lr": 1e-3},
    },
}
LABELLED_IMAGES = 6000


def _few_labels(folder: Path) -> dict[str, str]:
    """Fashion-MNIST with labels kept for LABELLED_IMAGES random training images; the other training
    images become x_unlabeled. Teacher, scratch and distilled student all learn from the same labels;
    only the distilled student sees the unlabelled images, through the teacher's soft targets."""
    arrays = read_idx_dir(Path(FASHION.removeprefix("idx:")))
    order = np.random.default_rng(0).permutation(len(arrays["x_train"]))
    labelled, unlabelled = order[:LABELLED_IMAGES], order[LABELLED_IMAGES:]
    path = folder / "fashion-few-labels.npz"
    np.savez(path, x_train=arrays["x_train"][labelled], y_train=arrays["y_train"][labelled],
             x_test=arrays["x_test"], y_test=arrays["y_test"], x_unlabeled=arrays["x_train"][unlabelled])
    return {"source": f"npz:{path}"}  # the npz source reads x_unlabeled along with the labelled splits


PREPARE_DATA = {"fashion-few-labels": _few_labels}


def _stats(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2%} ± {spread:.2%}"


def _closed(teacher: float, scratch: float, distilled: float) -> str:
    """Share of the teacher − scratch gap that the distilled student closes."""
    if teacher <= scratch:
        return "n/a: teacher below scratch student"
    return f"{(distilled - scratch) / (teacher - scratch):.0%}"


DESCRIBED = {
    "digits": "digits: CNN → MLP-64, T=4, kd 0.7 / ce 0.3",
    "fashion-hinton": "Fashion-MNIST, Hinton 2015 setup: MLP 1200-1200 (dropout 0.5) → MLP 800-800, T=20, kd 0.9 / ce 0.1, 20 epochs",
    "fashion-cnn": "Fashion-MNIST: CNN (422k) → CNN 8/16 channels, T=4, kd 0.7 / ce 0.3, 10 epochs",
    "fashion-cnn-mlp": "Fashion-MNIST: the same CNN → MLP 800-800, T=4, kd 0.9 / ce 0.1, 40 epochs",
    "fashion-few-labels": ("Fashion-MNIST, labels for 6,000 images, the other 54,000 unlabelled: CNN (30 epochs) → MLP 800-800, "
                           "T=4, kd 0.9 / ce 0.1, 7 epochs over the unlabelled set"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--write", type=Path, default=RESULTS / "kd-table.md", help="the results page to write")
    parser.add_argument("--progress", type=Path, help="where finished seeds are kept (default: the page's path + .progress.json)")
    args = parser.parse_args()
    progress_path = args.progress or args.write.with_suffix(".progress.json")
    set_quiet(True)
    began_all = time.perf_counter()
    rows, tests = [], []
    for name in args.configs:
        seeds = _seeds(name, args.seeds, progress_path)
        scores = {key: [seed[key] for seed in seeds] for key in ("teacher", "scratch", "distilled", "scratch last", "distilled last")}
        test_size = seeds[0]["test images"]
        means = {k: statistics.mean(v) for k, v in scores.items()}
        at_best, at_last = (_closed(means["teacher"], means["scratch"], means["distilled"]),
                            _closed(means["teacher"], means["scratch last"], means["distilled last"]))
        closed = at_best if at_best == at_last else f"{at_best} / {at_last}"
        errors = " / ".join(f"{round((1 - means[k]) * test_size)}" for k in ("teacher", "scratch", "distilled"))
        minutes = sum(seed["seconds"] for seed in seeds) / 60
        rows.append(f"| {DESCRIBED[name]} | {_stats(scores['teacher'])} | {_stats(scores['scratch'])} | {_stats(scores['distilled'])} | "
                    f"{errors} | {closed} | {minutes:.1f} min |")
        counts = ", ".join(f"{seed['only distilled']}/{seed['only scratch']}" for seed in seeds)
        p_values = " / ".join(f"{seed['p']:.2g}" for seed in seeds)
        tests.append(f"| {name} ({test_size:,} test images) | {counts} | {p_values} |")
    page = "\n".join([
        "# Does distillation help? Teacher, scratch and distilled students, measured",
        "",
        provenance("kd_table.py", time.perf_counter() - began_all, args.seeds),
        "",
        "Test top-1, mean ± sd over the seeds, at each student's best validation epoch (the gap closed is also given "
        "at the last epoch). Fashion-MNIST is the real 60k/10k set from Debian's `dataset-fashion-mnist`, read with `idx:`. "
        "Each seed trains its own teacher; the scratch and distilled students of a seed start from the same weights and see "
        "the same batches. Time: the configuration's seeds, teachers included unless edgekd's cache held them.",
        "",
        "| configuration | teacher | scratch student | distilled student | test errors (t / s / d) | gap closed (best / last epoch) | time |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Is each seed's difference between the distilled student and its scratch twin real? The exact McNemar test on the "
        "paired test images (`kd_gain_test`), per seed:",
        "",
        "| configuration | test images right only when distilled / only from scratch, per seed | p, per seed |",
        "|---|---|---|",
        *tests,
    ]) + "\n"
    write_page(args.write, page)
    progress_path.unlink(missing_ok=True)
    print(page)


def _seeds(name: str, seeds: list[int], progress_path: Path) -> list[dict]:
    """Each seed's figures for configuration `name`: from the progress file where an earlier run
    kept them with the same settings, else measured now (and kept there at once)."""
    progress = json.loads(progress_path.read_text()) if progress_path.exists() else {}
    settings = json.dumps(CONFIGS[name], sort_keys=True)
    kept = progress.get(name, {}) if progress.get(name, {}).get("settings") == settings else {"settings": settings}
    missing = [seed for seed in seeds if str(seed) not in kept]
    if missing:
        with tempfile.TemporaryDirectory() as prepared:
            data = {**CONFIGS[name].get("data", {}), **(PREPARE_DATA[name](Path(prepared)) if name in PREPARE_DATA else {})}
            for seed in missing:
                kept[str(seed)] = _measure(name, seed, data)
                progress[name] = kept
                write_text(progress_path, json.dumps(progress, indent=1))  # atomic: an interruption loses the seed in progress only
    return [kept[str(seed)] for seed in seeds]


def _measure(name: str, seed: int, data: dict) -> dict:
    """One seed of one configuration: teacher, scratch and distilled student, and their paired test."""
    began = time.perf_counter()
    spec = {k: dict(v) for k, v in CONFIGS[name].items()}
    spec["data"] = data
    spec["distill"] = {**spec.get("distill", {}), "seed": seed}
    with tempfile.TemporaryDirectory() as out:
        result = distill(recipe_from_dict(spec, name), Path(out) / "run")
    gain = result.kd_gain_test
    print(f"{name} seed {seed}: teacher {result.teacher_scores.test:.2%}, scratch {result.scratch.best.test:.2%}, "
          f"distilled {result.distilled.best.test:.2%} (validation: scratch {result.scratch.best.val:.2%}, "
          f"distilled {result.distilled.best.val:.2%}; last epoch test: {result.scratch.last.test:.2%}, "
          f"{result.distilled.last.test:.2%}; paired test images {gain.only_first} right only when distilled, "
          f"{gain.only_second} only from scratch, exact McNemar p = {gain.p_value:.2g})", flush=True)
    return {"teacher": result.teacher_scores.test, "scratch": result.scratch.best.test, "distilled": result.distilled.best.test,
            "scratch last": result.scratch.last.test, "distilled last": result.distilled.last.test, "test images": result.split_sizes["test"],
            "only distilled": gain.only_first, "only scratch": gain.only_second, "p": gain.p_value, "seconds": time.perf_counter() - began}


if __name__ == "__main__":
    main()
