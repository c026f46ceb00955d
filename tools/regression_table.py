"""Regression distillation, measured: teacher, scratch student and distilled student over several
seeds on real data, then what seed 0 ships (fp32 ONNX, static int8) — RMSE, size, latency.

Data (`--data`, nothing downloads):
- `randhie` (default): statsmodels' RAND Health Insurance Experiment, 20,190 person-years;
  target `mdvis` (outpatient visits in the year), 9 features (coinsurance, deductible, income,
  family size, health status, chronic diseases). `pip install statsmodels` (tools only).
- `diabetes`: scikit-learn's 442 diabetes patients, 10 features, disease progression after a year.
Features are standardised with the training split's mean and std; the targets stay in their units
(edgekd standardises them inside the models). Fixed split: 70% train / 15% val / 15% test, seed 0.
Teacher: MLP 256-256, trained once (its seed is fixed). Students: MLP with one hidden layer of 16,
from scratch; the scratch twin has the same initial weights, batches and epochs. Objective of the
distilled student: ce_weight·MSE(labels) + kd_weight·MSE(teacher outputs).

Writes docs/results/regression-DATA.md (command, date, machine, versions, seeds, then the tables) and
prints it.

    python tools/regression_table.py                       # randhie, seeds 0 1 2 (a few minutes on 2 cores)
    python tools/regression_table.py --data diabetes --epochs 200
    python tools/regression_table.py --label-fraction 0.02   # few labels + a transfer set: regression-randhie-few-labels.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _pages import RESULTS, gap_closed, labels_sentence, mean_sd, measure_seeds, page_name, provenance, seed_options, shipped_heading, shipped_table, write_page

from edgekd._progress import set_quiet
from edgekd.paired import paired_error_rise


def units(value: float) -> str:
    return f"{value:.4f}"


def load_arrays(name: str) -> tuple[dict[str, np.ndarray], str]:
    """Features and targets, split 70/15/15 (seed 0), features standardised on train."""
    if name == "randhie":
        import statsmodels.api as sm

        frame = sm.datasets.randhie.load_pandas()
        x, y = frame.exog.to_numpy(np.float64), frame.endog.to_numpy(np.float64)
        what = "statsmodels randhie: outpatient visits per person-year (mdvis), 9 features"
    elif name == "diabetes":
        from sklearn.datasets import load_diabetes

        x, y = load_diabetes(return_X_y=True)
        what = "scikit-learn diabetes: disease progression after one year, 10 features"
    else:
        raise SystemExit(f"unknown --data {name!r}: randhie or diabetes")
    order = np.random.default_rng(0).permutation(len(y))
    cut_val, cut_test = int(0.70 * len(y)), int(0.85 * len(y))
    parts = {"train": order[:cut_val], "val": order[cut_val:cut_test], "test": order[cut_test:]}
    mean, std = x[parts["train"]].mean(axis=0), x[parts["train"]].std(axis=0) + 1e-12
    arrays = {}
    for split, rows in parts.items():
        arrays[f"x_{split}"] = ((x[rows] - mean) / std).astype(np.float32)
        arrays[f"y_{split}"] = y[rows].astype(np.float32)
    return arrays, what


def recipe(npz: Path, seed: int, epochs: int, kd_weight: float, label_fraction: float = 1.0) -> dict:
    return {
        "task": "regression",
        "data": {"source": f"npz:{npz}", "label_fraction": label_fraction},
        "teacher": {"model": "mlp", "args": {"hidden": [256, 256]}, "epochs": epochs, "seed": 0},
        "student": {"model": "mlp", "args": {"hidden": [16]}},
        "distill": {"epochs": epochs, "seed": seed, "batch_size": 128, "kd_weight": kd_weight, "ce_weight": round(1 - kd_weight, 6)},
    }


def test_errors(run: Path, name: str, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Each test sample's squared error under a checkpoint of the run (for the paired test)."""
    from edgekd.models.call import predict
    from edgekd.models.checkpoint import load_model

    model, _ = load_model(run / name)
    return ((predict(model, arrays["x_test"])[:, 0] - arrays["y_test"]) ** 2).astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="randhie")
    seed_options(parser, "regression-DATA.md", qad=False)
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    set_quiet(True)
    began = time.perf_counter()
    arrays, what = load_arrays(args.data)
    rows, paired, shipped = measure_seeds(
        arrays, args.data, lambda npz, seed: recipe(npz, seed, args.epochs, args.kd_weight, args.label_fraction), args.seeds,
        lambda run, name: test_errors(run, name, arrays), lambda v: f"{v:.4f}", paired_error_rise, target=args.target)
    page = render(args, what, arrays, rows, paired, shipped, time.perf_counter() - began)
    write_page(args.write or RESULTS / page_name(f"regression-{args.data}", args.label_fraction), page)


def render(args, what: str, arrays, rows, paired, shipped, seconds: float) -> str:
    """The results page: how it was made, then the tables."""
    result, exported, report, _ = shipped
    gain, closed = gap_closed(rows, False, units)
    lines = [
        "# Regression distillation — measured",
        "",
        provenance("regression_table.py", seconds, args.seeds),
        "",
        f"Data: {what}; {len(arrays['y_train']):,} train / {len(arrays['y_val']):,} val / {len(arrays['y_test']):,} test "
        f"(test targets: mean {arrays['y_test'].mean():.3g}, std {arrays['y_test'].std():.3g} — the RMSE of predicting the mean). "
        f"Teacher MLP 256-256 (trained once), students MLP 16; {args.epochs} epochs; distilled: "
        f"{args.kd_weight:g}·MSE(teacher) + {1 - args.kd_weight:g}·MSE(labels). Test RMSE at each model's best validation epoch."
        + labels_sentence(result, args.label_fraction, "samples"),
        "",
        f"| model | params | test RMSE ({len(args.seeds)} seed{'s' if len(args.seeds) > 1 else ''}, mean ± sd) |",
        "|---|---|---|",
        f"| teacher | {result.teachers[0].parameters:,} | {mean_sd(rows['teacher'], units)} |",
        f"| student, scratch | {result.student.parameters:,} | {mean_sd(rows['scratch'], units)} |",
        f"| student, distilled | {result.student.parameters:,} | {mean_sd(rows['distilled'], units)} |",
        "",
        f"Distillation changes test RMSE by {-gain:+.4f} on average (negative: lower, better), {closed}. "
        "Paired on the test samples (distilled vs scratch, relative RMSE change, "
        "95% paired-bootstrap interval, sign-flip p): "
        + "; ".join(f"seed {s}: {p.drop:+.2%} [{p.interval[0]:+.2%}, {p.interval[1]:+.2%}], p = {p.p_value:.2g}"
                    for s, p in zip(args.seeds, paired)) + " (negative: the distilled student errs less).",
        "",
        shipped_heading(args.target, args.seeds[0]),
        "",
    ]
    lines += shipped_table(report, {"test RMSE": lambda v: f"{v.metrics['rmse']:.4f}"})
    q = exported.quantized
    lines += ["", f"int8 against fp32 on the validation split: RMSE {q.fp32_val_accuracy:.4f} → {q.val_accuracy:.4f} "
                  f"({q.drop_vs_fp32:+.2%} relative, 95% CI [{q.drop_interval[0]:+.2%}, {q.drop_interval[1]:+.2%}], "
                  f"p = {q.drop_p_value:.2g}; budget +{q.budget:.0%}); verdict of the bench: {'PASS' if report.passed else 'FAIL'}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
