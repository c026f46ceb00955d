"""Detection's torch-free core: boxes, NMS, decoding, and COCO mAP against pycocotools itself."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.detection.boxes import MAX_DETECTIONS, box_iou, decode, nms
from edgekd.detection.evaluate import image_records, mean_ap, mean_ap50, per_class_ap


def _logit(p):
    return np.log(p / (1 - p))


def test_iou_of_known_boxes():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30], [3, 3, 3, 8]])
    assert np.allclose(box_iou(a, b), [[50 / 150, 1.0, 0.0, 0.0]])


def test_nms_keeps_the_best_of_overlapping_boxes_and_separate_ones():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], dtype=float)
    assert nms(boxes, np.array([0.8, 0.9, 0.5]), 0.5).tolist() == [1, 2]
    assert nms(boxes, np.array([0.8, 0.9, 0.5]), 0.99).tolist() == [1, 0, 2]


def test_decode_applies_the_threshold_and_nms_per_class():
    # three positions, two classes: positions 0 and 1 overlap; position 1 is also class 1
    outputs = np.array([[0, 0, 10, 10, _logit(0.9), _logit(0.01)],
                        [1, 0, 11, 10, _logit(0.6), _logit(0.7)],
                        [20, 20, 30, 30, _logit(0.02), _logit(0.3)]], dtype=np.float32)
    found = decode(outputs)
    assert found.classes.tolist() == [0, 1, 1]  # class 0's duplicate suppressed; the overlapping class-1 box kept
    assert np.allclose(found.scores, [0.9, 0.7, 0.3], atol=1e-6)
    assert found.boxes[0].tolist() == [0, 0, 10, 10]


def _random_case(rng, images=12, classes=3, positions=40):
    labels = np.full((images, 6, 5), -1.0, dtype=np.float32)
    outputs = np.zeros((images, positions, 4 + classes), dtype=np.float32)
    outputs[..., 4:] = -9.0
    for i in range(images):
        n = rng.integers(0, 6)
        for j in range(n):
            x, y = rng.uniform(0, 50, 2)
            w, h = rng.uniform(4, 20, 2)
            labels[i, j] = [rng.integers(0, classes), x, y, x + w, y + h]
        for p in range(positions):  # noisy copies of true boxes, and junk
            if n and rng.random() < 0.6:
                c, *box = labels[i, rng.integers(0, n)]
                noisy = np.asarray(box) + rng.normal(0, 1.0, 4)
                outputs[i, p, :4] = [*noisy[:2], *np.maximum(noisy[2:], noisy[:2] + 1)]  # a decoder's boxes have a size
                cls = int(c) if rng.random() < 0.85 else int(rng.integers(0, classes))
            else:
                x, y = rng.uniform(0, 50, 2)
                outputs[i, p, :4] = [x, y, x + rng.uniform(2, 20), y + rng.uniform(2, 20)]
                cls = int(rng.integers(0, classes))
            outputs[i, p, 4 + cls] = _logit(rng.uniform(0.06, 0.99))
    return outputs, labels


def _pycocotools_map(outputs, labels):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    classes = outputs.shape[-1] - 4
    images, annotations, results = [], [], []
    for i in range(len(outputs)):
        images.append({"id": i + 1, "width": 64, "height": 64})
        for c, x1, y1, x2, y2 in labels[i][labels[i][:, 0] >= 0].tolist():
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(c) + 1, "iscrowd": 0,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)})
        found = decode(outputs[i])
        for (x1, y1, x2, y2), s, c in zip(found.boxes.tolist(), found.scores.tolist(), found.classes.tolist()):
            results.append({"image_id": i + 1, "category_id": c + 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s})
    truth = COCO()
    truth.dataset = {"images": images, "annotations": annotations, "categories": [{"id": c + 1} for c in range(classes)]}
    truth.createIndex()
    evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return evaluation.stats[0], evaluation.stats[1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_is_pycocotools_map(seed, capsys):
    pytest.importorskip("pycocotools")
    outputs, labels = _random_case(np.random.default_rng(seed))
    records = image_records(outputs, labels)
    expected = _pycocotools_map(outputs, labels)
    assert mean_ap(records) == pytest.approx(expected[0], abs=1e-9)
    assert mean_ap50(records) == pytest.approx(expected[1], abs=1e-9)
    assert 0.05 < expected[0] < 0.95, "the case should be neither trivial nor hopeless"


def test_perfect_detections_score_one_and_a_class_without_truth_is_left_out():
    labels = np.array([[[0, 5, 5, 20, 20], [1, 30, 30, 50, 45]]], dtype=np.float32)
    outputs = np.full((1, 3, 4 + 3), -9.0, dtype=np.float32)
    outputs[0, 0, :5] = [5, 5, 20, 20, 3.0]
    outputs[0, 1, :4], outputs[0, 1, 5] = [30, 30, 50, 45], 3.0
    records = image_records(outputs, labels)
    assert records.shape == (1, MAX_DETECTIONS + 3, 12)
    assert mean_ap(records) == pytest.approx(1.0)
    assert per_class_ap(records) == [pytest.approx(1.0), pytest.approx(1.0), None]


def test_records_resample_like_images():
    outputs, labels = _random_case(np.random.default_rng(3))
    records = image_records(outputs, labels)
    twice = np.concatenate([records, records])
    assert mean_ap(twice) == pytest.approx(mean_ap(records))  # the same images twice: the same precision at each recall
    assert mean_ap(records[:4]) != pytest.approx(mean_ap(records))
