"""COCO's box mAP (mAP@[.5:.95] and mAP@.5), computed as pycocotools' COCOeval computes it, from
per-image records that a paired bootstrap over images can resample.

COCOeval matches each image's detections to its ground truth once per IoU threshold (greedy by
score, each true box taken by at most one detection, the best-overlapping free one) and then, per
class, pools the matched / unmatched detections of all images, sorts them by score and averages
the interpolated precision at 101 recall levels. The matching depends on one image only, so it is
done once (`image_records`); the pooling is cheap and is what `mean_ap` redoes for any set of
images, duplicates included. Area ranges other than "all" and crowd boxes are not used here.
tests/test_detection.py checks the numbers against pycocotools itself.
"""

from __future__ import annotations

import numpy as np

from edgekd.detection.boxes import MAX_DETECTIONS, box_iou, decode, label_boxes

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # COCO's: .50:.05:.95
RECALL_LEVELS = np.linspace(0.0, 1.0, 101)
_COLUMNS = 2 + len(IOU_THRESHOLDS)  # class, score, matched at each threshold


def image_records(outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per image: its detections (decoded from the raw outputs) matched at each IoU threshold, and
    its true boxes counted per class. Shape (N, MAX_DETECTIONS + C, 2 + 10): rows
    [class, score, matched@.50 … matched@.95] of the detections (class −1: no detection), then one
    row per class c: [c, true boxes of class c, 0 …]."""
    outputs, labels = np.asarray(outputs), np.asarray(labels)
    classes = outputs.shape[-1] - 4
    records = np.zeros((len(outputs), MAX_DETECTIONS + classes, _COLUMNS))
    records[:, :MAX_DETECTIONS, 0] = -1
    for i in range(len(outputs)):
        found = decode(outputs[i])
        truth, truth_classes = label_boxes(labels[i])
        rows = records[i, : len(found.scores)]
        rows[:, 0], rows[:, 1] = found.classes, found.scores
        rows[:, 2:] = _matches(found.boxes, found.classes, truth, truth_classes)
        records[i, MAX_DETECTIONS:, 0] = np.arange(classes)
        records[i, MAX_DETECTIONS:, 1] = np.bincount(truth_classes[truth_classes < classes], minlength=classes)[:classes]
    return records


def _matches(boxes: np.ndarray, classes: np.ndarray, truth: np.ndarray, truth_classes: np.ndarray) -> np.ndarray:
    """(k, 10): whether each detection (in score order) matches a true box of its class at each
    threshold, by COCOeval's greedy rule."""
    matched = np.zeros((len(boxes), len(IOU_THRESHOLDS)), dtype=bool)
    for c in np.unique(classes):
        mine, theirs = np.flatnonzero(classes == c), np.flatnonzero(truth_classes == c)
        if not len(theirs):
            continue
        iou = box_iou(boxes[mine], truth[theirs])
        for t, threshold in enumerate(IOU_THRESHOLDS):
            taken = np.zeros(len(theirs), dtype=bool)
            for row, det in enumerate(mine):
                candidates = np.where(taken, -1.0, iou[row])
                best = int(np.argmax(candidates[::-1]))  # COCOeval keeps the last of equal overlaps
                best = len(theirs) - 1 - best
                if candidates[best] >= min(threshold, 1 - 1e-10):
                    taken[best] = matched[det, t] = True
    return matched


def average_precisions(records: np.ndarray) -> np.ndarray:
    """(C, 10) AP of each class at each IoU threshold over the images of `records` (NaN for a
    class with no true box: COCO leaves it out)."""
    records = np.asarray(records)
    classes = records.shape[1] - MAX_DETECTIONS
    detections = records[:, :MAX_DETECTIONS].reshape(-1, _COLUMNS)
    truth = records[:, MAX_DETECTIONS:, 1].sum(axis=0)
    ap = np.full((classes, len(IOU_THRESHOLDS)), np.nan)
    for c in range(classes):
        if truth[c] == 0:
            continue
        mine = detections[detections[:, 0] == c]
        ap[c] = 0.0
        if not len(mine):
            continue
        mine = mine[np.argsort(-mine[:, 1], kind="mergesort")]  # images in order, each best first: COCO's pooling
        hits = mine[:, 2:].astype(bool)
        tp, fp = np.cumsum(hits, axis=0), np.cumsum(~hits, axis=0)
        recall = tp / truth[c]
        precision = tp / (tp + fp + np.spacing(1))
        precision = np.maximum.accumulate(precision[::-1], axis=0)[::-1]  # the best precision at this recall or beyond
        for t in range(len(IOU_THRESHOLDS)):
            at = np.searchsorted(recall[:, t], RECALL_LEVELS, side="left")
            reached = at < len(mine)  # recall levels never reached score precision 0
            ap[c, t] = precision[at[reached], t].sum() / len(RECALL_LEVELS)
    return ap


def mean_ap(records: np.ndarray) -> float:
    """COCO mAP@[.5:.95] over the classes that have true boxes (0 when none has)."""
    ap = average_precisions(records)
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else 0.0


def mean_ap50(records: np.ndarray) -> float:
    ap = average_precisions(records)[:, 0]
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else 0.0


def scores(outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    records = image_records(outputs, labels)
    return {"map": mean_ap(records), "map50": mean_ap50(records)}


def per_class_ap(records: np.ndarray) -> list[float | None]:
    """Each class's AP@[.5:.95] (None: no true box of it)."""
    return [None if np.isnan(row).all() else float(row.mean()) for row in average_precisions(records)]
