"""Segmentation distillation, measured: a U-Net teacher, scratch and distilled U-Net students over
several seeds on real microscopy, then what seed 0 ships (fp32 ONNX, static int8) — mIoU, size, latency.

Data (nothing downloads): the fluorescence-microscopy image that the `stardist` package ships
(`stardist/data/images/img2d.tif`, 512×512, with `mask2d.tif`: 125 hand-labelled nuclei;
`pip install --no-deps stardist tifffile`, tools only — stardist itself is not imported). Three
classes per pixel: background, nucleus, and nucleus boundary (nucleus pixels touching another
label), the boundary being what separates touching nuclei. The image is cut into disjoint column
bands — train x < 320, validation 320 ≤ x < 384, test x ≥ 384 — so no test pixel is ever seen in
training; train tiles (32×32) overlap with stride 8, validation and test tiles do not. Intensities
are standardised with the training band's mean and std.

Teacher U-Net widths 32-64-128 (trained once, fixed seed); students U-Net 8-16-32, from scratch
and distilled (per-pixel KD at T, optionally with CWD); the scratch twin has the same initial
weights, batches and epochs. Random shifts of the training tiles, masks alike.

Writes docs/results/segmentation-stardist.md (command, date, machine, versions, seeds, then the
tables) and prints it.

    python tools/segmentation_table.py                 # seeds 0 1 2 (several minutes on 2 cores)
    python tools/segmentation_table.py --terms kd cwd  # per-pixel KD plus channel-wise distillation
    python tools/segmentation_table.py --label-fraction 0.05   # few labels + a transfer set: segmentation-stardist-few-labels.md
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np
from _pages import RESULTS, gap_closed, labels_sentence, mean_sd, measure_seeds, page_name, paired_sentence, provenance, seed_options, shipped_heading, shipped_section, write_page

from edgekd._progress import set_quiet
from edgekd.task import confusion_counts, paired_iou_drop


def percent(value: float) -> str:
    return f"{value:.2%}"

TILE = 32
BANDS = {"train": (0, 320, 8), "val": (320, 384, TILE), "test": (384, 512, TILE)}  # x from, x to, stride


def stardist_image() -> tuple[np.ndarray, np.ndarray]:
    """The shipped 2-D image and its nuclei labels, read with tifffile (stardist is not imported)."""
    import tifffile

    spec = importlib.util.find_spec("stardist")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs the stardist package's sample data: pip install --no-deps stardist tifffile")
    images = Path(spec.submodule_search_locations[0]) / "data" / "images"
    return tifffile.imread(images / "img2d.tif").astype(np.float32), tifffile.imread(images / "mask2d.tif").astype(np.int64)


def classes_of(labels: np.ndarray) -> np.ndarray:
    """0 background, 1 nucleus, 2 boundary: a nucleus pixel with a 4-neighbour of another label."""
    padded = np.pad(labels, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    edge = np.zeros(labels.shape, dtype=bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        edge |= padded[dy:dy + labels.shape[0], dx:dx + labels.shape[1]] != centre
    return np.where(labels == 0, 0, np.where(edge, 2, 1))


def load_arrays() -> tuple[dict[str, np.ndarray], str]:
    image, labels = stardist_image()
    classes = classes_of(labels)
    left, right, _ = BANDS["train"]
    mean, std = image[:, left:right].mean(), image[:, left:right].std()
    image = (image - mean) / std
    arrays = {}
    for split, (start, stop, stride) in BANDS.items():
        tiles = [(r, c) for r in range(0, image.shape[0] - TILE + 1, stride) for c in range(start, stop - TILE + 1, stride)]
        arrays[f"x_{split}"] = np.stack([image[r:r + TILE, c:c + TILE] for r, c in tiles])[:, None].astype(np.float32)
        arrays[f"y_{split}"] = np.stack([classes[r:r + TILE, c:c + TILE] for r, c in tiles]).astype(np.int64)
    share = np.bincount(classes.ravel(), minlength=3) / classes.size
    what = (f"stardist's img2d.tif (512×512 fluorescence microscopy, {len(np.unique(labels)) - 1} labelled nuclei) as {TILE}×{TILE} tiles; "
            f"pixels: background {share[0]:.0%}, nucleus {share[1]:.0%}, boundary {share[2]:.0%}")
    return arrays, what


def recipe(npz: Path, seed: int, args) -> dict:
    loss = [{"method": name, "weight": round(args.kd_weight / len(args.terms), 6)} for name in args.terms]
    return {
        "task": "segmentation",
        "data": {"source": f"npz:{npz}", "augment": True, "max_shift": 4, "label_fraction": args.label_fraction},
        "teacher": {"model": "unet", "args": {"widths": [32, 64, 128]}, "epochs": args.teacher_epochs, "seed": 0, "augment": True, "max_shift": 4},
        "student": {"model": "unet", "args": {"widths": list(args.student)}},
        "distill": {"epochs": args.epochs, "seed": seed, "batch_size": 64, "lr": 3e-3,
                    "ce_weight": round(1 - args.kd_weight, 6), "loss": loss,
                    "temperature": args.temperature},
    }


def test_counts(run: Path, name: str, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Each test tile's per-class pixel counts under a checkpoint of the run (for the paired test)."""
    from edgekd.models.call import predict
    from edgekd.models.checkpoint import load_model

    model, _ = load_model(run / name)
    return confusion_counts(predict(model, arrays["x_test"]), arrays["y_test"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    seed_options(parser, "segmentation-stardist.md")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--teacher-epochs", type=int, default=40)
    parser.add_argument("--student", type=int, nargs="+", default=[8, 16, 32], help="the student U-Net's widths")
    parser.add_argument("--terms", nargs="+", default=["kd"], choices=["kd", "cwd", "dkd"])
    parser.add_argument("--temperature", type=float, default=4.0)
    args = parser.parse_args()
    set_quiet(True)
    began = time.perf_counter()
    arrays, what = load_arrays()
    rows, paired, shipped = measure_seeds(
        arrays, "stardist", lambda npz, seed: recipe(npz, seed, args), args.seeds,
        lambda run, name: test_counts(run, name, arrays), lambda v: f"{v:.2%}", paired_iou_drop, args.qad, args.target)
    write_page(args.write or RESULTS / page_name("segmentation-stardist", args.label_fraction), render(args, what, arrays, rows, paired, shipped, time.perf_counter() - began))


def render(args, what: str, arrays, rows, paired, shipped, seconds: float) -> str:
    """The results page: how it was made, then the tables."""
    result, exported, report, qad = shipped
    gain, closed = gap_closed(rows, True, lambda v: f"{v * 100:.2f} points")
    objective = " + ".join(f"{args.kd_weight / len(args.terms):g}·{t}" for t in args.terms) + f" + {1 - args.kd_weight:g}·CE(labels)"
    lines = [
        "# Segmentation distillation — measured",
        "",
        provenance("segmentation_table.py", seconds, args.seeds),
        "",
        f"Data: {what}; {len(arrays['y_train']):,} train / {len(arrays['y_val']):,} val / {len(arrays['y_test']):,} test tiles "
        f"from disjoint column bands of the image. Teacher U-Net 32-64-128 ({args.teacher_epochs} epochs, trained once), "
        f"students U-Net {'-'.join(map(str, args.student))}, {args.epochs} epochs, random shifts of up to 4 pixels (masks alike); distilled: {objective} "
        f"(T = {args.temperature:g}). Test mIoU (background, nucleus, boundary) at each model's best validation epoch."
        + labels_sentence(result, args.label_fraction, "tiles"),
        "",
        f"| model | params | test mIoU ({len(args.seeds)} seed{'s' if len(args.seeds) > 1 else ''}, mean ± sd) |",
        "|---|---|---|",
        f"| teacher | {result.teachers[0].parameters:,} | {mean_sd(rows['teacher'], percent)} |",
        f"| student, scratch | {result.student.parameters:,} | {mean_sd(rows['scratch'], percent)} |",
        f"| student, distilled | {result.student.parameters:,} | {mean_sd(rows['distilled'], percent)} |",
        "",
        f"Distillation changes test mIoU by {gain * 100:+.2f} points on average, {closed}. " + paired_sentence(args.seeds, paired, "mIoU", "tiles"),
        "",
        shipped_heading(args.target, args.seeds[0]),
        "",
    ]
    lines += shipped_section(report, exported, qad, {
        "test mIoU": lambda v: f"{v.metrics['miou']:.2%}",
        "IoU background / nucleus / boundary": lambda v: " / ".join("—" if c is None else f"{c:.1%}" for c in v.per_class or [])}, "mIoU")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
