"""Detection's entries in the task table (edgekd.task): label checks, the classes the labels ask
for, how two models' outputs are compared and combined. Numpy only."""

from __future__ import annotations

import numpy as np

from edgekd.detection.boxes import box_iou, decode
from edgekd.errors import DataError

PADDING = -1  # the class of a padding row
AGREE_SCORE = 0.3  # parity: every detection this confident in one output must be in the other
AGREE_IOU = 0.9  # … of the same class, overlapping this much,
AGREE_SCORE_GAP = 0.1  # … with a score this close


def check_box_labels(name: str, split: str, y: np.ndarray, x_shape: tuple, ignore_index: int | None = None) -> np.ndarray:
    """(N, M, 5) rows [class, x1, y1, x2, y2] in the images' pixels; padding rows have class −1."""
    samples = x_shape[0]
    if y.ndim != 3 or len(y) != samples or y.shape[2] != 5:
        raise DataError(f"{name}: y_{split} has shape {y.shape} but x_{split} has {samples} samples; expected ({samples}, boxes, 5): "
                        "per image, rows [class, x1, y1, x2, y2] in pixels, padded with rows of class -1")
    if np.iscomplexobj(y) or not np.issubdtype(y.dtype, np.number):
        raise DataError(f"{name}: y_{split} has dtype {y.dtype}; boxes must be numbers")
    y = y.astype(np.float32)
    classes, boxes = y[..., 0], y[..., 1:]
    real = classes != PADDING
    if not np.isfinite(y).all():
        raise DataError(f"{name}: y_{split} holds NaN or infinite values; drop or fix those boxes")
    if (classes[real] < 0).any() or (classes != np.round(classes)).any():
        raise DataError(f"{name}: y_{split} class ids must be whole numbers 0..C-1 (padding rows: -1)")
    image, row = np.argwhere(real & ((boxes[..., 2] <= boxes[..., 0]) | (boxes[..., 3] <= boxes[..., 1])))[:1].T
    if len(image):
        raise DataError(f"{name}: y_{split} image {int(image[0])} has a box of no size {boxes[image[0], row[0]].tolist()} "
                        "(x1 y1 x2 y2 need x2 > x1 and y2 > y1); fix or drop it")
    if len(x_shape) == 4:
        height, width = x_shape[2], x_shape[3]
        outside = real & ((boxes[..., 0] < -0.5) | (boxes[..., 1] < -0.5) | (boxes[..., 2] > width + 0.5) | (boxes[..., 3] > height + 0.5))
        image, row = np.argwhere(outside)[:1].T
        if len(image):
            raise DataError(f"{name}: y_{split} image {int(image[0])} has a box {boxes[image[0], row[0]].tolist()} outside its "
                            f"{width}×{height} pixels; clip boxes to the image (x in 0..{width}, y in 0..{height})")
    return y


def box_classes(name: str, y_train: np.ndarray) -> int:
    """1 + the largest class id: a detector may have a single class."""
    real = y_train[..., 0][y_train[..., 0] != PADDING]
    if real.size == 0:
        raise DataError(f"{name}: no training image has a box; a detector needs labelled objects")
    return int(real.max()) + 1


def classes_fit(name: str, split: str, y: np.ndarray, classes: int) -> None:
    real = y[..., 0][y[..., 0] != PADDING]
    if real.size and real.max() >= classes:
        raise DataError(f"{name}: {split} boxes have class ids up to {int(real.max())} but training boxes only span "
                        f"0..{classes - 1}; every class must appear in the training split")


def outputs_fit(label: str, outputs: np.ndarray, y: np.ndarray) -> None:
    if outputs.ndim != 3 or outputs.shape[-1] < 5:
        raise DataError(f"{label} outputs shape {outputs.shape[1:]} per image; detection needs (positions, 4 + classes): "
                        "a box x1 y1 x2 y2 in pixels and the class logits at each position")
    real = np.asarray(y)[..., 0][np.asarray(y)[..., 0] != PADDING]
    if real.size and real.max() >= outputs.shape[-1] - 4:
        raise DataError(f"{label} has {outputs.shape[-1] - 4} classes but the boxes hold class ids up to {int(real.max())}; "
                        "use data with the model's classes")


def same_detections(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per image, whether the two outputs detect the same objects: each confident detection
    (score ≥ AGREE_SCORE) of either has one in the other of its class, IoU ≥ AGREE_IOU and a
    score within AGREE_SCORE_GAP. Raw outputs are not compared: what a device acts on is the boxes.

    The match is sought among the other output's candidates before NMS: where two overlapping
    boxes score alike, a rounding step decides which one NMS keeps (an int8 model against its fp32
    original, or the QAD mirror against ONNX Runtime), and the box kept by one output is still
    there, suppressed, in the other; a box that moved or a score that changed is not."""
    agree = np.zeros(len(reference), dtype=bool)
    for i, (a, b) in enumerate(zip(reference, other)):
        agree[i] = _covered(decode(a), _candidates(b)) and _covered(decode(b), _candidates(a))
    return agree


def _candidates(outputs: np.ndarray):
    """Every detection of one image's outputs before NMS (no overlap suppresses another)."""
    return decode(outputs, iou_threshold=1.0)


def _covered(found, among) -> bool:
    confident = found.scores >= AGREE_SCORE
    if not confident.any():
        return True
    iou = box_iou(found.boxes[confident], among.boxes)
    same = ((found.classes[confident][:, None] == among.classes[None, :]) & (iou >= AGREE_IOU)
            & (np.abs(found.scores[confident][:, None] - among.scores[None, :]) <= AGREE_SCORE_GAP))
    return bool(same.any(axis=1).all())


def combine(outputs: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Several detectors' outputs (the same positions) → their weighted mean boxes and the logit of
    their weighted mean class probabilities."""
    total = float(sum(weights))
    boxes = sum(w / total * np.asarray(o, dtype=np.float64)[..., :4] for o, w in zip(outputs, weights, strict=True))
    probability = sum(w / total / (1 + np.exp(-np.asarray(o, dtype=np.float64)[..., 4:])) for o, w in zip(outputs, weights, strict=True))
    probability = np.clip(probability, 1e-12, 1 - 1e-12)
    return np.concatenate([boxes, np.log(probability / (1 - probability))], axis=-1)
