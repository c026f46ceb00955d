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


# --- labels, the task table ------------------------------------------------------------------------

def _boxes(*rows, most=3):
    y = np.full((1, most, 5), -1.0, dtype=np.float32)
    if rows:
        y[0, : len(rows)] = rows
    return y


def test_boxes_are_inferred_as_detection_and_checked():
    from edgekd.task import infer_task, task

    y = _boxes([0, 2.5, 3, 20, 18.5], [1, 30, 30, 40, 44])
    assert infer_task(y) == "detection"
    kind = task("detection")
    checked = kind.check_labels("d.npz", "train", y, (1, 3, 64, 64), None)
    assert checked.dtype == np.float32 and kind.outputs_of("d.npz", checked) == 2
    assert kind.outputs_fit((5, 336, 6), 2) and not kind.outputs_fit((5, 336, 2), 2)


@pytest.mark.parametrize("rows, fragment", [
    ([[0, 10, 10, 10, 20]], "has a box of no size"),
    ([[0, 10, 10, 70, 20]], "outside its 64×64 pixels; clip boxes"),
    ([[0.5, 10, 10, 20, 20]], "class ids must be whole numbers"),
    ([[0, np.nan, 10, 20, 20]], "NaN or infinite"),
])
def test_bad_boxes_are_named(rows, fragment):
    from edgekd.errors import DataError
    from edgekd.task import task

    with pytest.raises(DataError, match=fragment):
        task("detection").check_labels("d.npz", "train", _boxes(*rows), (1, 3, 64, 64), None)


def test_boxes_of_the_wrong_shape_say_the_layout():
    from edgekd.errors import DataError
    from edgekd.task import task

    with pytest.raises(DataError, match=r"expected \(1, boxes, 5\)"):
        task("detection").check_labels("d.npz", "train", np.zeros((1, 3, 4), np.float32), (1, 3, 64, 64), None)


def test_parity_compares_decoded_detections_not_raw_outputs():
    from edgekd.detection.labels import same_detections

    outputs = np.full((2, 3, 6), -9.0, dtype=np.float32)
    outputs[:, 0, :5] = [5, 5, 25, 25, 2.0]
    other = outputs.copy()
    other[:, 1, 4] = -7.0  # a background logit moves: nothing a device acts on changes
    assert same_detections(outputs, other).all()
    other[1, 0, :4] = [5, 5, 25, 35]  # a confident box moves
    assert same_detections(outputs, other).tolist() == [True, False]


def test_parity_is_not_broken_by_nms_choosing_between_boxes_that_score_alike():
    from edgekd.detection.boxes import decode
    from edgekd.detection.labels import same_detections

    outputs = np.full((1, 3, 6), -9.0, dtype=np.float32)
    outputs[0, 0, :5] = [0, 0, 20, 20, 2.0]
    outputs[0, 1, :5] = [4, 0, 24, 20, 2.0001]  # IoU 0.67 with the first: NMS keeps one of the two
    other = outputs.copy()
    other[0, 1, 4] = 1.9999  # a rounding step: the other box is kept
    assert decode(outputs[0]).boxes.tolist() != decode(other[0]).boxes.tolist()
    assert same_detections(outputs, other).all()
    other[0, :2, 4] = 0.5  # the scores really change (0.88 → 0.62)
    assert not same_detections(outputs, other).any()


def test_several_detectors_combine_boxes_and_probabilities():
    from edgekd.detection.labels import combine

    a, b = np.zeros((1, 1, 5)), np.zeros((1, 1, 5))
    a[0, 0] = [0, 0, 10, 10, _logit(0.9)]
    b[0, 0] = [2, 2, 12, 12, _logit(0.5)]
    mixed = combine([a, b], [3.0, 1.0])
    assert np.allclose(mixed[0, 0, :4], [0.5, 0.5, 10.5, 10.5]) and np.isclose(1 / (1 + np.exp(-mixed[0, 0, 4])), 0.8)


# --- the model, its loss and distillation ----------------------------------------------------------

def test_positions_learn_the_boxes_around_them_at_the_level_of_their_size():
    import torch

    from edgekd.detection.loss import anchors_of, assign
    from edgekd.detection.model import detector

    model = detector((3, 64, 64), 2)  # levels of strides 4, 8, 16
    points, strides = anchors_of(model)
    labels = torch.from_numpy(_boxes([0, 10, 10, 22, 22], [1, 0, 0, 64, 64], [1, 8, 8, 30, 30]))
    assigned = assign(points, strides, labels)[0]
    for box in range(3):
        mine = assigned == box
        assert mine.any(), f"box {box} has positions"
        inside = points[mine]
        x1, y1, x2, y2 = labels[0, box, 1:].tolist()
        assert ((inside[:, 0] > x1) & (inside[:, 0] < x2) & (inside[:, 1] > y1) & (inside[:, 1] < y2)).all()
    assert set(strides[assigned == 0].tolist()) == {4.0}, "a 12-pixel box at the finest level"
    assert set(strides[assigned == 1].tolist()) == {8.0}, "the whole image (sides up to 40 px from a position) at stride 8"
    assert (assign(points, strides, torch.from_numpy(_boxes())) == -1).all(), "padding rows claim nothing"


def test_the_smaller_box_takes_a_position_two_boxes_claim():
    import torch

    from edgekd.detection.loss import assign

    points, strides = torch.tensor([[16.0, 16.0]]), torch.tensor([4.0])
    labels = torch.from_numpy(_boxes([0, 13, 13, 19, 19], [1, 12, 12, 20, 20]))
    assert assign(points, strides, labels).tolist() == [[0]]


def test_the_loss_is_zero_gradient_free_of_nan_on_an_image_without_boxes_and_trains_a_detector():
    import torch

    from edgekd.detection.evaluate import scores
    from edgekd.detection.loss import detection_loss
    from edgekd.detection.model import detector
    from detection_data import make_shapes

    torch.manual_seed(0)
    model = detector((3, 64, 64), 2, widths=(8, 16, 32), neck=16)
    out = model(torch.zeros(1, 3, 64, 64))
    loss = detection_loss(out, torch.from_numpy(_boxes()), model)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    x, y = (torch.from_numpy(a) for a in make_shapes(96))
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    before = scores(model.eval()(x[:32]).detach().numpy(), y[:32].numpy())["map50"]
    for _ in range(8):
        model.train()
        for start in range(0, 96, 16):
            loss = detection_loss(model(x[start:start + 16]), y[start:start + 16], model)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    after = scores(model.eval()(x[:32]).detach().numpy(), y[:32].numpy())["map50"]
    assert after > before + 0.2, (before, after)


def test_detection_kd_is_zero_against_itself_and_pulls_the_student_to_the_teacher():
    import torch

    from edgekd.detection.loss import detection_kd_loss

    torch.manual_seed(0)
    teacher = torch.cat([torch.rand(2, 10, 2) * 10, torch.rand(2, 10, 2) * 10 + 20, torch.randn(2, 10, 3) * 3], -1)
    assert float(detection_kd_loss(teacher, [teacher], 2.0)) == pytest.approx(0.0, abs=1e-6)
    student = (teacher + torch.randn_like(teacher)).requires_grad_()
    loss = detection_kd_loss(student, [teacher], 2.0)
    loss.backward()
    stepped = student.detach() - 0.1 * student.grad
    assert float(detection_kd_loss(stepped, [teacher], 2.0)) < float(loss.detach())


def test_boxes_shift_with_their_images_and_a_box_pushed_out_becomes_padding():
    import torch

    from edgekd.distill.trainer import _shift_boxes

    boxes = torch.from_numpy(_boxes([0, 10, 10, 20, 20], [1, 0, 0, 8, 8]))
    moved = _shift_boxes(boxes, torch.tensor([[3.0]]), torch.tensor([[-5.0]]), 64, 64)
    assert moved[0, 0].tolist() == [0, 13, 5, 23, 15]
    assert moved[0, 1, 0] == -1, "clipped to 3 of its 8 rows: no longer the object"
    assert moved[0, 2, 0] == -1, "padding stays padding"


# --- end to end ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def detection_run(tmp_path_factory):
    """`edgekd run` on generated shapes: FCOS-style teacher and student, det-kd, int8, gated on mAP (read only)."""
    from cli_checks import run_folder
    from detection_data import write_shapes

    folder = tmp_path_factory.mktemp("detection")
    write_shapes(folder / "shapes.npz", train=160, test=48)
    return run_folder(folder, 'task = "detection"\n[data]\nsource = "npz:shapes.npz"\naugment = true\nmax_shift = 4\nflip = true\n'
                      '[teacher]\nargs = { widths = [16, 32, 64], neck = 32 }\nepochs = 6\nlr = 3e-3\n[student]\nargs = { widths = [8, 16, 32], neck = 16 }\n'
                      '[distill]\nepochs = 4\nlr = 3e-3\ntemperature = 2.0\nkd_weight = 0.5\nce_weight = 1.0\n[export]\ninclude_nms = true\n',
                      "max_map_drop = 0.9\nmax_accuracy_drop = 0.01")


@pytest.mark.slow
def test_a_detector_runs_end_to_end_and_is_judged_by_map(detection_run):
    import json

    run = detection_run / "run"
    summary = json.loads((run / "distill.json").read_text())
    assert summary["task"] == "detection" and summary["metric"] == "map"
    assert set(summary["distilled"]["best"]["metrics"]) == {"map", "map50"}
    assert "det-kd" in summary["history"]["distilled"][0]["terms"] and "det" in summary["history"]["distilled"][0]["terms"]
    assert summary["teacher_scores"]["metrics"]["map"] > 0.05, "the teacher learned to detect"
    exported = json.loads((run / "export.json").read_text())
    assert exported["metric"] == "map" and exported["student_parity"]["argmax_agreement"] > 0.99, "the same detections as PyTorch's"
    bench = json.loads((run / "bench.json").read_text())
    assert bench["task"] == "detection" and all(set(v["metrics"]) == {"map", "map50"} for v in bench["variants"])
    verdicts = {v["budget"]: v for v in bench["verdicts"]}
    teacher, deployed = (next(v for v in bench["variants"] if v["role"] == r)["metrics"]["map"] for r in ("teacher", bench["deployed_role"]))
    assert verdicts["max_map_drop"]["measured"] == pytest.approx(teacher - deployed) and verdicts["max_map_drop"]["passed"]
    assert verdicts["max_accuracy_drop"]["passed"] is None and "not applicable" in verdicts["max_accuracy_drop"]["note"]
    assert "## AP per class" in (run / "bench.md").read_text()
    assert all(v["postprocessed"]["p50_ms"] > 0 for v in bench["variants"]), "latency with decode + NMS beside the model's"
    assert "## Latency with decode + NMS" in (run / "bench.md").read_text()
    assert exported["with_nms"] == "student.int8.nms.onnx" and (run / exported["with_nms"]).is_file(), "[export] include_nms"
    shipped = next(v for v in bench["variants"] if v["role"] == bench["deployed_role"])
    assert shipped["nms_graph"]["p50_ms"] > 0, "the file with NMS inside is timed beside the deployed one"


# --- coco:PATH ---------------------------------------------------------------------------------

def _coco_folder(folder, count=3, **changes):
    """A COCO instances file of generated shapes (PNG images of different sizes), with `changes`
    applied to the document."""
    import json

    from PIL import Image

    from detection_data import make_shapes

    x, y = make_shapes(count, size=48, seed=5)
    document = {"images": [], "annotations": [], "categories": [{"id": 7, "name": "square"}, {"id": 9, "name": "disc"}]}
    (folder / "pics").mkdir(exist_ok=True)
    for i in range(count):
        pixels = (np.clip(x[i].transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)
        Image.fromarray(pixels).resize((96, 96), Image.NEAREST).save(folder / "pics" / f"{i}.png")  # twice the size
        document["images"].append({"id": 100 + i, "file_name": f"pics/{i}.png", "width": 96, "height": 96})
        for c, x1, y1, x2, y2 in y[i][y[i][:, 0] >= 0].tolist():
            document["annotations"].append({"id": len(document["annotations"]) + 1, "image_id": 100 + i, "category_id": (7, 9)[int(c)],
                                            "bbox": [2 * x1, 2 * y1, 2 * (x2 - x1), 2 * (y2 - y1)], "iscrowd": 0})
    for key, change in changes.items():
        change(document[key])
    (folder / "instances.json").write_text(json.dumps(document))
    return folder / "instances.json", y


def test_a_coco_file_is_read_letterboxed_with_its_boxes_mapped_alike(tmp_path):
    from edgekd.data.coco import read_coco

    path, y = _coco_folder(tmp_path)
    x, boxes, classes = read_coco(path, [48, 64], None, False, None, None)  # 96×96 → scale 0.5, padded on the right
    assert x.shape == (3, 3, 48, 64) and classes == ("square", "disc")
    for read, made in zip(boxes, y):  # category ids 7, 9 → classes 0, 1; boxes halved with the image
        assert np.allclose(read[read[:, 0] >= 0], made[made[:, 0] >= 0])
    assert (x[:, :, :, 48:] == 0).all(), "the letterbox pads the right"


def test_a_coco_source_trains_a_detector_from_a_recipe(tmp_path):
    from edgekd.data import load_data
    from edgekd.data.config import DataConfig

    path, _ = _coco_folder(tmp_path, count=12)
    data = load_data(f"coco:{path}", options=DataConfig(image_size=[48, 48]))
    assert data.task == "detection" and data.num_classes == 2 and data.classes == ("square", "disc")
    assert data.y_train.shape[-1] == 5 and len(data.y_train) + len(data.y_val) + len(data.y_test) == 12


def _drop_file(images):
    images[0]["file_name"] = "pics/missing.png"


@pytest.mark.parametrize("changes, fragment", [
    ({"annotations": lambda a: a[0].update(category_id=3)}, "category_id 3, which `categories` does not list"),
    ({"annotations": lambda a: a[0].update(bbox=[1, 1, 0, 5])}, "a box of no size"),
    ({"annotations": lambda a: a[0].update(bbox=[90, 1, 20, 5])}, "outside it; fix the annotation"),
    ({"annotations": lambda a: a[0].update(image_id=5)}, "names image_id 5"),
    ({"images": _drop_file}, "missing.png: image not found"),
    ({"annotations": lambda a: a.clear()}, "no annotation has a box"),
])
def test_a_broken_coco_file_is_named(tmp_path, changes, fragment):
    from edgekd.data.coco import read_coco
    from edgekd.errors import DataError

    path, _ = _coco_folder(tmp_path, **changes)
    with pytest.raises(DataError, match=fragment):
        read_coco(path, [48, 48], None, False, None, None)


def test_a_coco_file_that_is_not_one_says_what_it_needs(tmp_path):
    from edgekd.data.coco import read_coco
    from edgekd.errors import DataError

    (tmp_path / "a.json").write_text('{"images": []}')
    with pytest.raises(DataError, match="no 'annotations', 'categories'"):
        read_coco(tmp_path / "a.json", [48, 48], None, False, None, None)
    with pytest.raises(DataError, match="needs \\[data\\] image_size"):
        read_coco(_coco_folder(tmp_path)[0], None, None, False, None, None)


def test_distill_on_a_broken_coco_file_is_one_line_and_writes_nothing(tmp_path):
    from typer.testing import CliRunner

    from cli_checks import one_line_error
    from edgekd.cli import app

    _coco_folder(tmp_path, annotations=lambda a: a[0].update(category_id=3))
    (tmp_path / "r.toml").write_text('task = "detection"\n[data]\nsource = "coco:instances.json"\nimage_size = [48, 48]\n')
    result = CliRunner().invoke(app, ["-q", "distill", str(tmp_path / "r.toml"), "--out", str(tmp_path / "run")])
    one_line_error(result, "instances.json: annotation 1 has category_id 3")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_detector_is_fine_tuned_through_its_int8_model_and_judged_by_map(detection_run, tmp_path):
    """Quantization-aware training of the detector's ONNX graph: the loss finds the positions in the
    file's anchor initializers, the phase's files detect as ORT's int8 run does, and it never ends
    below post-training int8 on validation mAP."""
    import shutil

    from edgekd.qad.stage import quantization_aware

    shutil.copytree(detection_run / "run", tmp_path / "run")
    result = quantization_aware(tmp_path / "run", detection_run / "target.toml", epochs=1)
    assert result.metric == "map" and not result.skipped, result.skipped
    start, *trained = result.variants
    assert [v.phase for v in trained] == ["qat", "qad"]
    assert all(v.parity.agreement >= 0.99 and v.val_accuracy >= start.val_accuracy and (tmp_path / "run" / v.file).is_file() for v in trained)
    assert "mAP" in result.deployed_because


def test_pkd_matches_patterns_not_magnitudes():
    import torch

    from edgekd.distill.losses import pearson_loss

    torch.manual_seed(0)
    teacher = torch.randn(4, 8, 6, 6)
    assert float(pearson_loss(teacher * 10 + 3, teacher)) == pytest.approx(0.0, abs=1e-5), "scale and shift drop out"
    unrelated = float(pearson_loss(torch.randn(4, 8, 6, 6), teacher))
    assert 0.8 < unrelated < 1.2, "uncorrelated channels: about 1 − 0"
    assert float(pearson_loss(-teacher, teacher)) == pytest.approx(2.0 * (teacher[:, 0].numel() - 1) / teacher[:, 0].numel(), rel=1e-4)


def test_pkd_on_neck_levels_trains_a_detector_student(tmp_path):
    import torch

    from edgekd.detection.model import detector
    from edgekd.distill.objective import Objective
    from edgekd.recipe import LossTerm

    torch.manual_seed(0)
    teacher, student = detector((3, 32, 32), 2, widths=(16, 32), neck=32), detector((3, 32, 32), 2, widths=(8, 16), neck=8)
    x = {"x": torch.randn(2, 3, 32, 32)}
    objective = Objective([LossTerm(method="pkd", weight=1.0, teacher_layer="neck.0", student_layer="neck.0")], 0.0, 2.0,
                          student, teacher, [1.0], x, "detection")
    with torch.no_grad():
        teacher(x["x"])
    total, parts = objective(student(x["x"]), None, None)
    total.backward()
    assert "pkd" in parts and parts["pkd"] > 0 and student.neck[0][0].weight.grad.abs().sum() > 0
    objective.close()


def test_the_nms_graph_detects_what_numpy_decoding_does(tmp_path):
    import onnxruntime as ort
    import torch

    from detection_data import make_shapes
    from edgekd.detection.boxes import decode
    from edgekd.detection.model import detector
    from edgekd.detection.nms_graph import detections_per_image, with_nms

    torch.manual_seed(0)
    model = detector((3, 64, 64), 2, widths=(8, 16, 32), neck=16).eval()
    with torch.no_grad():  # confident, overlapping boxes: biases that make many positions score
        for head in model.heads:
            head.classes[-1].bias.fill_(0.5)
    x = torch.from_numpy(make_shapes(3)[0])
    torch.onnx.export(model, (x,), tmp_path / "d.onnx", input_names=["x"], output_names=["raw"], dynamic_axes={"x": {0: "n"}}, dynamo=False)
    raw = ort.InferenceSession(str(tmp_path / "d.onnx")).run(None, {"x": x.numpy()})[0]
    threshold = float(np.quantile(1 / (1 + np.exp(-raw[..., 4:])), 0.9))  # a tenth of the positions' scores pass: under 100 per class
    with_nms(tmp_path / "d.onnx", tmp_path / "d.nms.onnx", score_threshold=threshold)
    rows = ort.InferenceSession(str(tmp_path / "d.nms.onnx")).run(None, {"x": x.numpy()})[0]
    for image, found in enumerate(detections_per_image(rows, 3)):
        expected = decode(raw[image], score_threshold=threshold)
        assert len(found) == len(expected.scores) > 0
        order = np.lexsort((found[:, 0], -found[:, 4]))
        assert np.allclose(found[order, 4], expected.scores, atol=1e-6)
        assert np.allclose(found[order, :4], expected.boxes, atol=1e-4) and (found[order, 5] == expected.classes).all()


def test_include_nms_is_refused_for_a_task_without_boxes(tmp_path):
    from edgekd.errors import RecipeError
    from edgekd.recipe import load_recipe

    (tmp_path / "r.toml").write_text('task = "classification"\n[export]\ninclude_nms = true\n')
    with pytest.raises(RecipeError, match="include_nms appends a detector's NMS; classification models have none"):
        load_recipe(tmp_path / "r.toml")


def test_a_classifier_given_boxes_is_refused_before_training(tmp_path):
    from typer.testing import CliRunner

    from cli_checks import one_line_error
    from detection_data import write_shapes
    from edgekd.cli import app

    write_shapes(tmp_path / "d.npz", train=24, test=8, size=32)
    (tmp_path / "r.toml").write_text('task = "detection"\n[data]\nsource = "npz:d.npz"\n[student]\nmodel = "cnn"\n')
    result = CliRunner().invoke(app, ["-q", "distill", str(tmp_path / "r.toml"), "--out", str(tmp_path / "run")])
    one_line_error(result, "student outputs shape (2,) per sample", "(positions, 4 + 2) outputs")
    assert not (tmp_path / "run").exists()


def test_det_kd_needs_the_same_positions_in_teacher_and_student():
    import torch

    from edgekd.detection.loss import detection_kd_loss
    from edgekd.errors import ModelError

    with pytest.raises(ModelError, match="same pyramid strides"):
        detection_kd_loss(torch.zeros(1, 84, 5), [torch.zeros(1, 336, 5)], 2.0)


def test_a_mobilenetv2_backbone_loads_torchvision_weights_only_when_training_starts(tmp_path):
    import torch

    from edgekd.detection.model import detector
    from edgekd.errors import ModelError
    from edgekd.models.build import ModelSpec, build_model, start_pretrained

    torch.manual_seed(0)
    weights = detector((3, 32, 32), 1, backbone="mobilenetv2").backbone.state_dict()  # torchvision's names and shapes
    weights = {k: v + 1 if v.is_floating_point() else v for k, v in weights.items()}
    weights["classifier.1.weight"] = torch.zeros(1000, 1280)  # what the file also holds: not the backbone's
    torch.save(weights, tmp_path / "mobilenet_v2.pth")
    spec = ModelSpec("detector", {"backbone": "mobilenetv2", "pretrained": str(tmp_path / "mobilenet_v2.pth")}, (1, 32, 32), 1)
    model = build_model(spec)
    assert not torch.equal(model.backbone.features[0][0].weight, weights["features.0.0.weight"]), "building alone loads nothing"
    assert start_pretrained(model) and torch.equal(model.backbone.features[0][0].weight, weights["features.0.0.weight"])
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 4 * 4 + 2 * 2 + 1, 5), "one channel repeated; strides 8, 16, 32"
    (tmp_path / "other.pth").write_bytes(b"")
    torch.save({"features.0.0.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ModelError, match="not torchvision's MobileNetV2 weights"):
        build_model(ModelSpec("detector", {"backbone": "mobilenetv2", "pretrained": str(tmp_path / "other.pth")}, (1, 32, 32), 1)).load_pretrained()


def test_flips_mirror_images_with_their_boxes_and_masks():
    import torch

    from edgekd.distill.trainer import _flip

    x = torch.zeros(2, 1, 4, 8)
    x[:, :, :, 0] = 1.0  # a bright left column
    boxes = torch.from_numpy(np.concatenate([_boxes([0, 1, 0, 3, 2]), _boxes([0, 1, 0, 3, 2])]))
    masks = (x[:, 0] > 0).long()
    flipped, turned_masks, turned = _flip(torch.tensor([True, False]), x, masks, boxes)
    assert flipped[0, 0, 0, 7] == 1 and flipped[1, 0, 0, 0] == 1, "only the first image is mirrored"
    assert turned[0, 0].tolist() == [0, 5, 0, 7, 2] and turned[1, 0].tolist() == [0, 1, 0, 3, 2]
    assert turned_masks[0, 0, 7] == 1 and turned_masks[1, 0, 0] == 1


def test_flip_without_augment_is_refused(tmp_path):
    from edgekd.errors import RecipeError
    from edgekd.recipe import load_recipe

    (tmp_path / "r.toml").write_text("[data]\nflip = true\n")
    with pytest.raises(RecipeError, match="flip mirrors the images augment shifts"):
        load_recipe(tmp_path / "r.toml")
