"""Semantic segmentation end to end: per-pixel labels (ignored pixels included), mIoU and its
paired bootstrap, per-pixel KD and CWD, masks shifted with their images, and a U-Net distilled,
exported, quantized and gated on mIoU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from cli_checks import one_line_error, run_folder
from edgekd.cli import app
from edgekd.data import splits_from_arrays
from edgekd.distill.losses import cwd_loss, dense_positions, hard_label_loss, kd_loss
from edgekd.distill.objective import Objective
from edgekd.distill.trainer import _augment
from edgekd.errors import DataError
from edgekd.recipe import LossTerm, recipe_from_dict, with_task_models
from edgekd.task import IGNORED, confusion_counts, infer_task, iou_per_class, mean_iou, paired_iou_drop, resize_bilinear, task
from seg_data import shapes_arrays

SEG = task("segmentation")


def _logits_for(predicted: np.ndarray, classes: int) -> np.ndarray:
    """Logits (N, C, H, W) whose argmax is `predicted` (N, H, W)."""
    return np.moveaxis(np.eye(classes, dtype=np.float32)[predicted], -1, 1)


def test_per_pixel_labels_are_inferred_and_unlabelled_pixels_become_ignored():
    arrays = shapes_arrays(60)
    assert infer_task(arrays["y_train"]) == "segmentation"
    data = splits_from_arrays(arrays)
    assert data.task == "segmentation" and data.num_classes == 3 and data.y_train.dtype == np.int64
    assert (data.y_train == IGNORED).any() and not (data.y_train == 255).any()
    custom = splits_from_arrays({**arrays, "y_train": np.where(arrays["y_train"] == 255, 7, arrays["y_train"]),
                                 "y_test": np.where(arrays["y_test"] == 255, 7, arrays["y_test"])}, ignore_index=7)
    assert custom.num_classes == 3 and (custom.y_train == IGNORED).sum() == (data.y_train == IGNORED).sum() + (custom.y_val == IGNORED).sum() - (data.y_val == IGNORED).sum()


@pytest.mark.parametrize("change, fragment", [
    (lambda a: {**a, "y_train": a["y_train"][:, :8]}, "masks are 8×16 but x_train images are 16×16"),
    (lambda a: {**a, "y_train": a["y_train"].astype(np.float32) + 0.5}, "must hold integer class ids per pixel"),
    (lambda a: {**a, "y_test": a["y_test"].astype(np.int64) - 3}, "negative ids"),
    (lambda a: {**a, "y_test": np.where(a["y_test"] == 2, 9, a["y_test"])}, "test labels go up to 9 but training labels only span 0..2"),
    (lambda a: {**a, "y_train": np.full_like(a["y_train"], 255)}, "every training label is the ignore_index"),
])
def test_bad_masks_are_named(change, fragment):
    with pytest.raises(DataError, match=fragment):
        splits_from_arrays(change(shapes_arrays(40)), task="segmentation")


def test_miou_leaves_out_classes_absent_from_both_prediction_and_truth():
    truth = np.array([[[0, 0], [1, IGNORED]]])
    predicted = np.array([[[0, 1], [1, 3]]])  # class 2 nowhere; class 3 only on an ignored pixel
    counts = confusion_counts(_logits_for(predicted, 4), truth)
    iou = iou_per_class(counts)
    assert iou[0] == pytest.approx(1 / 2) and iou[1] == pytest.approx(1 / 2)
    assert np.isnan(iou[2]) and np.isnan(iou[3]), "absent from both: no union, not a zero"
    scores = SEG.score(_logits_for(predicted, 4), truth)
    assert scores["miou"] == pytest.approx(0.5) and scores["pixel_accuracy"] == pytest.approx(2 / 3)


def test_miou_pools_pixels_over_images_before_dividing():
    truth = np.array([[[1, 1], [1, 1]], [[0, 0], [0, 1]]])
    predicted = np.array([[[1, 1], [1, 0]], [[0, 0], [0, 0]]])
    counts = confusion_counts(_logits_for(predicted, 2), truth)
    # class 0: 3 right of 3 true + 5 predicted → 3 / 5; class 1: 3 right of 5 true, 3 predicted → 3 / 5
    assert mean_iou(counts) == pytest.approx(0.6)


def test_coarser_outputs_are_scored_at_the_masks_resolution_as_torch_resizes_them():
    rng = np.random.default_rng(0)
    coarse = rng.normal(size=(2, 3, 5, 7)).astype(np.float32)
    for size in ((16, 14), (3, 4)):
        torch_resized = F.interpolate(torch.tensor(coarse), size=size, mode="bilinear", align_corners=False).numpy()
        np.testing.assert_allclose(resize_bilinear(coarse, size), torch_resized, atol=1e-5)
    truth = rng.integers(0, 3, size=(2, 16, 14))
    assert SEG.score(coarse, truth) == SEG.score(resize_bilinear(coarse, (16, 14)), truth)


def test_the_paired_bootstrap_finds_a_real_drop_and_no_drop_between_equals():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, size=(80, 12, 12))
    good = _logits_for(truth, 3)
    noisy = truth.copy()
    flip = rng.random(truth.shape) < 0.3
    noisy[flip] = rng.integers(0, 3, size=int(flip.sum()))
    same = paired_iou_drop(confusion_counts(good, truth), confusion_counts(good, truth), resamples=300)
    assert same.drop == 0 and same.p_value == 1.0 and same.only_first == same.only_second == 0
    worse = SEG.paired(confusion_counts(good, truth), confusion_counts(_logits_for(noisy, 3), truth))
    assert worse.drop == pytest.approx(1 - SEG.score(_logits_for(noisy, 3), truth)["miou"])
    assert worse.interval[0] <= worse.drop <= worse.interval[1] and worse.p_value < 0.01 and worse.only_first == 80
    assert SEG.show_drop(worse.drop).endswith("%") and SEG.drop_words() == "mIoU"


def test_per_pixel_kd_and_ce_are_the_classification_terms_over_scored_pixels():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    labels = torch.randint(0, 3, (2, 4, 4))
    labels[0, 0] = IGNORED
    s, (t,), y, _, _ = dense_positions(student, [teacher], labels, 1, IGNORED)
    assert s.shape == (28, 3) and y.shape == (28,)
    keep = (labels != IGNORED).reshape(-1)
    flat_student = student.permute(0, 2, 3, 1).reshape(-1, 3)[keep]
    flat_teacher = teacher.permute(0, 2, 3, 1).reshape(-1, 3)[keep]
    objective = Objective([LossTerm(method="kd", weight=1.0)], 1.0, 2.0, None, None, [1.0], None, "segmentation")
    total, parts = objective(student, [teacher], labels)
    assert parts["ce"] == pytest.approx(float(F.cross_entropy(flat_student, labels.reshape(-1)[keep])), rel=1e-5)
    assert parts["kd"] == pytest.approx(float(kd_loss(flat_student, flat_teacher, 2.0)), rel=1e-5)
    assert float(total) == pytest.approx(parts["ce"] + parts["kd"], rel=1e-5)
    assert float(hard_label_loss(s, y)) == pytest.approx(parts["ce"], rel=1e-5)


def test_a_coarse_teacher_is_resized_to_the_masks_before_the_terms():
    student, teacher = torch.randn(1, 3, 8, 8), torch.randn(1, 3, 4, 4)
    _, (t,), _, _, (t_map,) = dense_positions(student, [teacher], torch.zeros(1, 8, 8, dtype=torch.long), 1, IGNORED)
    assert t_map.shape == (1, 3, 8, 8) and t.shape == (64, 3)


def test_cwd_is_the_temperature_scaled_kl_of_spatial_distributions_per_channel():
    torch.manual_seed(1)
    student, teacher = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    t = 4.0
    p_teacher = F.softmax(teacher.reshape(2, 3, -1) / t, dim=-1)
    log_student = F.log_softmax(student.reshape(2, 3, -1) / t, dim=-1)
    expected = (p_teacher * (p_teacher.log() - log_student)).sum() / (2 * 3) * t**2
    assert float(cwd_loss(student, [teacher], t)) == pytest.approx(float(expected), rel=1e-5)
    assert float(cwd_loss(teacher, [teacher], t)) == pytest.approx(0.0, abs=1e-6)
    shifted = cwd_loss(student + 5.0, [teacher], t)  # a per-channel constant changes no spatial distribution
    assert float(shifted) == pytest.approx(float(expected), rel=1e-4)


@pytest.mark.parametrize("flip", [False, True])
def test_masks_shift_with_their_images_and_shifted_in_pixels_are_not_scored(flip):
    """Through the trainer's own path (the task's settings pick how labels move): a segmentation
    run shifted its images but not their masks from 2026-12-06 to 2026-12-07, and its teacher
    never learned the thin boundary class."""
    from edgekd.distill.trainer import TrainSettings, _student_inputs

    torch.manual_seed(0)
    masks = torch.randint(0, 3, (4, 8, 8))
    images = masks[:, None].float()
    settings = TrainSettings(epochs=1, batch_size=4, lr=1e-3, seed=0, augment=True, max_shift=2, flip=flip, task="segmentation")
    batch, moved = _student_inputs({"input": images}, masks, settings)
    shifted = batch["input"]
    inside = moved != IGNORED
    assert torch.equal(shifted[:, 0][inside], moved[inside].float()), "every labelled pixel keeps its image pixel"
    assert (~inside).any() and (shifted[:, 0][~inside] == 0).all(), "padding is zero in the image and ignored in the mask"
    direct, _ = _augment(images, True, 2, masks=masks)
    assert direct.shape == shifted.shape


def test_the_recipe_gives_segmentation_its_own_models_and_refuses_what_does_not_apply():
    recipe = with_task_models(recipe_from_dict({"task": "segmentation", "student": {"args": {"widths": [4, 8]}}}), "segmentation")
    assert recipe.teacher.model == recipe.student.model == "unet" and recipe.student.args == {"widths": [4, 8]}
    assert with_task_models(recipe_from_dict({}), "classification").teacher.model == "cnn"
    for table, fragment in [({"task": "segmentation", "data": {"mixup": 0.2}}, "segmentation labels are not that"),
                            ({"task": "classification", "distill": {"loss": [{"method": "cwd"}]}}, "method 'cwd' does not apply to classification"),
                            ({"task": "regression", "data": {"ignore_index": 255}}, "regression labels have none")]:
        with pytest.raises(Exception, match=fragment):
            recipe_from_dict(table)


def test_a_classifier_given_masks_is_refused_before_training(tmp_path):
    np.savez(tmp_path / "seg.npz", **shapes_arrays(40))
    (tmp_path / "r.toml").write_text('[data]\nsource = "npz:seg.npz"\n[student]\nmodel = "mlp"\n')
    result = CliRunner().invoke(app, ["-q", "distill", str(tmp_path / "r.toml"), "--out", str(tmp_path / "run")])
    one_line_error(result, "student outputs shape (3,) per sample", "(classes, height, width) logits of 3 classes")
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def segmentation_run(tmp_path_factory):
    """`edgekd run` on generated masks: a U-Net teacher and student, kd + cwd, int8, gated on mIoU (read only)."""
    folder = tmp_path_factory.mktemp("segmentation")
    np.savez(folder / "seg.npz", **shapes_arrays(200))
    return run_folder(folder, '[data]\nsource = "npz:seg.npz"\naugment = true\nmax_shift = 2\n[teacher]\nargs = { widths = [16, 32] }\nepochs = 6\n'
                      '[student]\nargs = { widths = [8, 16] }\n[distill]\nepochs = 4\n'
                      '[[distill.loss]]\nmethod = "kd"\nweight = 0.5\n[[distill.loss]]\nmethod = "cwd"\nweight = 0.5\n',
                      "max_miou_drop = 0.5\nmax_accuracy_drop = 0.01")


@pytest.mark.slow
def test_a_segmenter_runs_end_to_end_and_is_judged_by_miou(segmentation_run):
    run = segmentation_run / "run"
    summary = json.loads((run / "distill.json").read_text())
    assert summary["task"] == "segmentation" and summary["metric"] == "miou"
    assert set(summary["distilled"]["best"]["metrics"]) == {"miou", "pixel_accuracy"}
    assert {t["method"] for t in summary["objective"]["terms"]} == {"kd", "cwd"} and "cwd" in summary["history"]["distilled"][0]["terms"]
    exported = json.loads((run / "export.json").read_text())
    assert exported["metric"] == "miou" and exported["student_parity"]["argmax_agreement"] > 0.99, "per-pixel classes as PyTorch's"
    bench = json.loads((run / "bench.json").read_text())
    assert bench["task"] == "segmentation" and all(set(v["metrics"]) == {"miou", "pixel_accuracy"} for v in bench["variants"])
    verdicts = {v["budget"]: v for v in bench["verdicts"]}
    teacher, deployed = (next(v for v in bench["variants"] if v["role"] == r)["metrics"]["miou"] for r in ("teacher", bench["deployed_role"]))
    assert verdicts["max_miou_drop"]["measured"] == pytest.approx(teacher - deployed) and verdicts["max_miou_drop"]["passed"]
    assert verdicts["max_accuracy_drop"]["passed"] is None and "not applicable" in verdicts["max_accuracy_drop"]["note"]
    assert verdicts["max_drop_vs_fp32"]["unit"].startswith("mIoU")


@pytest.mark.slow
def test_the_exported_segmenter_scores_masks_from_an_npz_without_the_recipe(segmentation_run, tmp_path):
    arrays = np.load(segmentation_run / "seg.npz")
    np.savez(tmp_path / "test.npz", x_test=arrays["x_test"], y_test=arrays["y_test"])
    result = CliRunner().invoke(app, ["-q", "bench", str(segmentation_run / "run" / "student.int8.onnx"), "--data", f"npz:{tmp_path / 'test.npz'}",
                                      "--out", str(tmp_path), "--json"])
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)
    assert report["task"] == "segmentation" and 0 < report["variants"][0]["metrics"]["miou"] <= 1


def _mask_folder(folder, count=12, size=12, mask_size=None, mode="L"):
    from PIL import Image

    arrays = shapes_arrays(count, size)
    x = np.concatenate([arrays["x_train"], arrays["x_test"]])
    y = np.concatenate([arrays["y_train"], arrays["y_test"]])
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i, (image, mask) in enumerate(zip(x, y)):
        Image.fromarray((np.clip(image[0], 0, 1) * 255).astype(np.uint8)).convert("RGB").save(folder / "images" / f"{i:03}.jpg")
        m = Image.fromarray(mask.astype(np.uint8)).convert(mode)
        (m.resize(mask_size, Image.NEAREST) if mask_size and i == 3 else m).save(folder / "masks" / f"{i:03}.png")
    return y


def test_a_masks_folder_reads_images_and_class_id_masks_resized_alike(tmp_path):
    from edgekd.data import load_data
    from edgekd.data.config import DataConfig

    y = _mask_folder(tmp_path / "set")
    data = load_data(f"masks:{tmp_path / 'set'}", options=DataConfig(image_size=[24, 24]))
    assert data.task == "segmentation" and data.x_train.single().shape[1:] == (3, 24, 24) and data.y_train.shape[1:] == (24, 24)
    assert set(np.unique(np.concatenate([data.y_train.ravel(), data.y_test.ravel()]))) <= {IGNORED, 0, 1, 2}
    assert (np.concatenate([data.y_train, data.y_val, data.y_test]) == IGNORED).sum() == 4 * (y == 255).sum(), \
        "nearest-neighbour resizing keeps class ids (2× up: each pixel four times)"


@pytest.mark.parametrize("broken, fragment", [
    (lambda d: (d / "masks" / "005.png").unlink(), "005.jpg: no mask of the same name"),
    (lambda d: None, "masks must match their images pixel for pixel"),
    (lambda d: (d / "images").rename(d / "pictures"), "needs the sub-folders images/ and masks/"),
])
def test_a_broken_masks_folder_is_named(tmp_path, broken, fragment):
    _mask_folder(tmp_path / "set", mask_size=(6, 6) if "pixel for pixel" in fragment else None)
    broken(tmp_path / "set")
    (tmp_path / "r.toml").write_text('[data]\nsource = "masks:set"\n')
    result = CliRunner().invoke(app, ["-q", "distill", str(tmp_path / "r.toml"), "--out", str(tmp_path / "run")])
    one_line_error(result, fragment)
    assert not (tmp_path / "run").exists()


def test_an_rgb_mask_is_refused_with_the_fix(tmp_path):
    from edgekd.data import load_data

    _mask_folder(tmp_path / "set", count=8, mode="RGB")
    with pytest.raises(DataError, match="single-channel image of class ids"):
        load_data(f"masks:{tmp_path / 'set'}")


def test_several_segmentation_teachers_are_one_reference_model_that_mixes_per_pixel():
    from edgekd.models.ensemble import Ensemble

    torch.manual_seed(0)
    members = [torch.nn.Conv2d(1, 3, 1), torch.nn.Conv2d(1, 3, 1)]
    x = torch.randn(2, 1, 4, 4)
    together = Ensemble(members, [1.0, 3.0], class_axis=1)(x).detach().numpy()
    expected = SEG.combine([m(x).detach().numpy() for m in members], [1.0, 3.0])
    np.testing.assert_allclose(np.exp(together), expected, rtol=1e-5)
    assert together.shape == (2, 3, 4, 4)


def test_a_batch_whose_every_pixel_is_ignored_adds_nothing_and_no_nan():
    student = torch.randn(2, 3, 4, 4, requires_grad=True)
    objective = Objective([LossTerm(method="kd", weight=1.0)], 1.0, 2.0, None, None, [1.0], None, "segmentation")
    total, parts = objective(student, [torch.randn(2, 3, 4, 4)], torch.full((2, 4, 4), IGNORED))
    total.backward()
    assert float(total.detach()) == 0.0 and parts == {} and torch.equal(student.grad, torch.zeros_like(student))


@pytest.mark.slow
def test_a_segmenter_is_fine_tuned_through_its_int8_model_and_judged_by_miou(segmentation_run, tmp_path):
    """Quantization-aware distillation of the U-Net student (nearest upsampling and skip Concats
    mirrored as ORT runs them): the phase's files match ORT's int8 run, and it never ends below
    post-training int8 on validation mIoU."""
    import shutil

    from edgekd.qad.stage import quantization_aware

    shutil.copytree(segmentation_run / "run", tmp_path / "run")
    result = quantization_aware(tmp_path / "run", segmentation_run / "target.toml", epochs=1)
    assert result.metric == "miou" and not result.skipped
    start, *trained = result.variants
    assert [v.phase for v in trained] == ["qat", "qad"]
    assert all(v.parity.agreement >= 0.99 and v.val_accuracy >= start.val_accuracy and (tmp_path / "run" / v.file).is_file() for v in trained)
    assert "mIoU" in result.deployed_because
