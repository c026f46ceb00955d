"""Boxes: IoU, non-maximum suppression and decoding of raw detector outputs (numpy only).

What a device app runs after the model: `decode` takes one image's raw outputs (A, 4 + C: a box
in pixels and C class logits per position) and returns its detections, as ONNX's
NonMaxSuppression would (per class, greedy by score).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCORE_THRESHOLD = 0.05  # below this a detection is never kept (mmdetection's and torchvision's test default)
NMS_IOU = 0.5  # a box overlapping a higher-scored one of its class this much is a duplicate
MAX_DETECTIONS = 100  # per image, as COCO scores (maxDets = 100)


@dataclass(frozen=True)
class Detections:
    """One image's detections, best first."""

    boxes: np.ndarray  # (k, 4) float32, x1 y1 x2 y2 in input pixels
    scores: np.ndarray  # (k,) float32, sigmoid of the class logit
    classes: np.ndarray  # (k,) int64


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (n, 4) with every box in `b` (m, 4), x1 y1 x2 y2, as COCO computes it
    (widths x2 − x1, no +1 pixel); boxes of no area overlap nothing."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = width * height
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = NMS_IOU) -> np.ndarray:
    """Indices of the boxes greedy NMS keeps, best first: each box suppresses the lower-scored ones
    that overlap it by more than `iou_threshold`."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep = []
    while len(order):
        best, order = order[0], order[1:]
        keep.append(best)
        if len(order):
            order = order[box_iou(boxes[best][None], boxes[order])[0] <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def decode(outputs: np.ndarray, score_threshold: float = SCORE_THRESHOLD, iou_threshold: float = NMS_IOU,
           max_detections: int = MAX_DETECTIONS) -> Detections:
    """One image's raw outputs (A, 4 + C) → its detections: every (position, class) whose sigmoid
    score reaches `score_threshold`, NMS per class, the `max_detections` best."""
    outputs = np.asarray(outputs, dtype=np.float32)
    boxes, logits = outputs[:, :4], outputs[:, 4:]
    with np.errstate(over="ignore"):
        scores = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    position, label = np.nonzero(scores >= score_threshold)
    candidate_scores = scores[position, label]
    if len(candidate_scores) > 10 * max_detections:  # the best candidates only: NMS on thousands is slow and changes nothing kept
        best = np.argsort(-candidate_scores, kind="stable")[: 10 * max_detections]
        position, label, candidate_scores = position[best], label[best], candidate_scores[best]
    candidate_boxes = boxes[position]
    # one NMS for all classes: boxes of different classes are moved apart so that they never overlap
    offset = (label * (float(np.abs(candidate_boxes).max(initial=0.0)) * 2 + 1))[:, None]
    keep = nms(candidate_boxes + offset, candidate_scores, iou_threshold)[:max_detections]
    return Detections(candidate_boxes[keep], candidate_scores[keep].astype(np.float32), label[keep].astype(np.int64))


def decode_batch(outputs: np.ndarray) -> list[Detections]:
    """A batch of raw outputs (N, A, 4 + C) → each image's detections: what an app runs after the model."""
    return [decode(image) for image in np.asarray(outputs)]


def label_boxes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One image's padded labels (M, 5) → (boxes (k, 4), classes (k,)) of its real rows."""
    labels = np.asarray(labels)
    real = labels[:, 0] >= 0
    return labels[real, 1:5].astype(np.float64), labels[real, 0].astype(np.int64)
