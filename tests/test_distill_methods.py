"""Distillation methods, several teachers, ONNX teachers, teacher-output cache, sweep — on digits."""

import json
import re
import shutil

import numpy as np
import pytest
import torch

from edgekd.data import load_recipe_data
from edgekd.distill.stage import distill
from edgekd.distill.teacher import plan_teachers
from edgekd.errors import ModelError, RecipeError
from edgekd.models.checkpoint import read_checkpoint
from edgekd.recipe import load_recipe

BASE = """
[teacher]
model = "cnn"
args = { channels = [8, 16], hidden = 32 }
epochs = 3
[student]
model = "cnn"
args = { channels = [4, 8], hidden = 16 }
[distill]
epochs = 3
"""


def _recipe(tmp_path, extra="", base=BASE):
    path = tmp_path / "r.toml"
    path.write_text(base + extra)
    return load_recipe(path)


def test_hint_at_dkd_kd_together(tmp_path):
    recipe = _recipe(tmp_path, """
ce_weight = 0.5
[[distill.loss]]
method = "kd"
weight = 0.5
[[distill.loss]]
method = "hint"
weight = 1.0
teacher_layer = "features.2"
student_layer = "features.2"
[[distill.loss]]
method = "at"
weight = 100.0
teacher_layer = "features.6"
student_layer = "features.6"
[[distill.loss]]
method = "dkd"
weight = 0.1
""")
    result = distill(recipe, tmp_path / "run")
    terms = result.history["distilled"][0].terms
    assert set(terms) == {"ce", "kd", "hint", "at", "dkd"}, "every term is logged on its own"
    assert all(np.isfinite(v) for v in terms.values())
    state = read_checkpoint(tmp_path / "run" / "student.pt")["state_dict"]
    assert not any("adapter" in key for key in state), "adapters never reach the student checkpoint"
    assert result.objective["ce_weight"] == 0.5 and len(result.objective["terms"]) == 4


def test_wrong_layer_fails_before_anything_is_written(tmp_path):
    recipe = _recipe(tmp_path, """
[[distill.loss]]
method = "hint"
teacher_layer = "features.2"
student_layer = "body.1"
""")
    with pytest.raises(ModelError, match="student has no layer 'body.1'"):
        distill(recipe, tmp_path / "run")
    assert not (tmp_path / "run" / "student.pt").exists()


def test_hint_needs_both_layers(tmp_path):
    with pytest.raises(RecipeError, match="needs teacher_layer and student_layer"):
        _recipe(tmp_path, "[[distill.loss]]\nmethod = \"hint\"\n")


def test_best_and_last_epoch_are_both_reported(tmp_path):
    result = distill(_recipe(tmp_path), tmp_path / "run")
    best = result.distilled.best_epoch
    assert result.history["distilled"][best - 1].val_metric == max(r.val_metric for r in result.history["distilled"])
    assert result.distilled.best.val == pytest.approx(result.history["distilled"][best - 1].val_metric)
    assert read_checkpoint(tmp_path / "run" / "student.pt")["epoch"] == best
    assert read_checkpoint(tmp_path / "run" / "student.last.pt")["epoch"] == 3
    paired = result.kd_gain_test  # image by image, the same best-on-val students as kd_gain
    assert (paired.only_first - paired.only_second) / result.split_sizes["test"] == pytest.approx(result.kd_gain)
    assert 0.0 < paired.p_value <= 1.0


def test_baseline_none_trains_no_scratch_student(tmp_path):
    """The scratch twin doubles training: a large student may skip it, and then no gain is claimed."""
    from typer.testing import CliRunner

    from edgekd.cli import app

    recipe = tmp_path / "r.toml"
    recipe.write_text(BASE.replace("[distill]\n", '[distill]\nbaseline = "none"\n'))
    result = CliRunner().invoke(app, ["distill", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "distillation gain not measured" in result.stdout and "scratch" not in result.stdout.split("distillation gain")[0]
    saved = json.loads((tmp_path / "run" / "distill.json").read_text())
    assert saved["scratch"] is None and saved["kd_gain"] is None and saved["kd_gain_test"] is None
    assert set(saved["history"]) == {"teacher", "distilled"}
    assert (tmp_path / "run" / "student.pt").is_file() and not (tmp_path / "run" / "student.scratch.pt").exists()


def _cnn_and_mlp_teachers(cnn_weight: float, mlp_hidden: int, epochs: int, distill: str) -> str:
    """A recipe with two [[teachers]] (a weighted CNN and an MLP) and an MLP student."""
    return f"""
[[teachers]]
model = "cnn"
args = {{ channels = [8, 16], hidden = 32 }}
epochs = {epochs}
weight = {cnn_weight}
[[teachers]]
model = "mlp"
args = {{ hidden = [{mlp_hidden}] }}
epochs = {epochs}
[student]
model = "mlp"
args = {{ hidden = [16] }}
[distill]
{distill}
"""


def test_two_teachers_average_their_soft_targets(tmp_path):
    recipe = _recipe(tmp_path, base=_cnn_and_mlp_teachers(cnn_weight=2.0, mlp_hidden=64, epochs=3, distill="epochs = 3"))
    result = distill(recipe, tmp_path / "run")
    assert [t.weight for t in result.teachers] == [2.0, 1.0]
    assert all(t.checkpoint is None for t in result.teachers) and "ensemble of 2 teachers" in result.reference
    assert 0.3 < result.teacher_scores.test <= 1.0


def test_the_budget_reference_of_several_teachers_is_their_ensemble(tmp_path):
    """teacher.pt holds the weighted average the student learnt from; export and bench use it as the teacher."""
    from edgekd.folders.bench import bench
    from edgekd.export.stage import export
    from edgekd.models.checkpoint import load_model
    from edgekd.models.call import predict

    recipe = _recipe(tmp_path, base=_cnn_and_mlp_teachers(cnn_weight=3.0, mlp_hidden=32, epochs=2, distill='epochs = 1\nbaseline = "none"'))
    run = tmp_path / "run"
    result = distill(recipe, run)
    ensemble, spec = load_model(run / "teacher.pt")
    assert spec.model == "ensemble" and [m["model"] for m in spec.args["members"]] == ["cnn", "mlp"]
    data = load_recipe_data(recipe.data)
    logits = predict(ensemble, data.x_test)
    assert np.allclose(np.exp(logits).sum(1), 1.0, atol=1e-5), "log-probabilities of the averaged distribution"
    assert float((logits.argmax(1) == data.y_test).mean()) == pytest.approx(result.teacher_scores.test)
    plan = plan_teachers(recipe, data)
    cnn, mlp = (torch.softmax(torch.as_tensor(predict(m.model, data.x_test[:8])), 1) for m in distill_teachers(plan, run))
    assert np.allclose(np.exp(logits[:8]), (0.75 * cnn + 0.25 * mlp).numpy(), atol=1e-5), "weights 3:1, normalised"
    exported = export(run, scheme="none")
    assert exported.teacher_parity.argmax_agreement == 1.0
    report = bench(run, memory=False)
    teacher = next(v for v in report.variants if v.name == "teacher fp32")
    assert teacher.accuracy == pytest.approx(result.teacher_scores.test)
    assert "ensemble of 2 teachers" in report.reference and "ensemble of 2 teachers" in (run / "bench.md").read_text()


def distill_teachers(plan, run):
    """The ensemble's members with the weights distillation used (read back from teacher.pt)."""
    from edgekd.models.checkpoint import load_model

    ensemble, _ = load_model(run / "teacher.pt")
    for member, model in zip(plan.members, ensemble.members):
        member.model = model.eval()
    return plan.members


def test_identical_teachers_are_trained_from_different_seeds(tmp_path):
    """An ensemble of one configuration gets independent members, not copies of one model."""
    teacher = """
[[teachers]]
model = "mlp"
args = { hidden = [23] }
epochs = 1
"""
    recipe = _recipe(tmp_path, base=teacher * 2 + teacher + "seed = 5\n" + teacher + "seed = 7\n[distill]\nseed = 5\n")
    members = plan_teachers(recipe, load_recipe_data(recipe.data)).members
    assert [m.settings.seed for m in members] == [5, 6, 5, 7]
    first_layers = [next(m.model.parameters()).detach() for m in members]
    assert not torch.equal(first_layers[0], first_layers[1])
    assert torch.equal(first_layers[0], first_layers[2])
    assert len({m.cache_path for m in members}) == 3  # the explicit seed = 5 shares the first one's cache


def test_onnx_teacher_from_any_framework(tmp_path, exported_run):
    shutil.copyfile(exported_run / "teacher.onnx", tmp_path / "external.onnx")
    recipe = _recipe(tmp_path, base="""
[teacher]
model = "external.onnx"
[student]
model = "mlp"
args = { hidden = [16] }
[distill]
epochs = 3
""")
    result = distill(recipe, tmp_path / "run")
    assert result.teachers[0].source.startswith("onnx ") and result.teachers[0].spec is None
    assert (tmp_path / "run" / "teacher.onnx").read_bytes() == (exported_run / "teacher.onnx").read_bytes()
    from edgekd.export.stage import export

    exported = export(tmp_path / "run", "x86-cpu")
    assert exported.teacher is None and exported.deployed == "student.int8.onnx"
    from edgekd.folders.bench import bench

    report = bench(tmp_path / "run", memory=False)
    assert [v.name for v in report.variants] == ["teacher fp32", "student fp32", "student int8"]
    assert {v.budget for v in report.verdicts if v.passed is None} == set(), "the ONNX teacher is the reference"


def test_onnx_teacher_cannot_give_features(tmp_path, exported_run):
    shutil.copyfile(exported_run / "teacher.onnx", tmp_path / "external.onnx")
    recipe = _recipe(tmp_path, base="""
[teacher]
model = "external.onnx"
[student]
model = "cnn"
args = { channels = [4, 8], hidden = 16 }
[distill]
epochs = 1
[[distill.loss]]
method = "at"
teacher_layer = "features.2"
student_layer = "features.2"
""")
    with pytest.raises(ModelError, match="ONNX teacher gives logits only"):
        distill(recipe, tmp_path / "run")


def test_teacher_outputs_are_cached_and_reused(tmp_path):
    recipe = _recipe(tmp_path)
    first = distill(recipe, tmp_path / "a")
    second = distill(recipe, tmp_path / "b")
    assert first.teacher_cache.startswith(("computed", "reused")) and second.teacher_cache.startswith("reused")
    a = read_checkpoint(tmp_path / "a" / "student.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "b" / "student.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a), "cached outputs give the same student"


def test_no_cache_with_augmentation(tmp_path):
    recipe = _recipe(tmp_path, base=BASE.replace("[teacher]", "[data]\naugment = true\n[teacher]"))
    result = distill(recipe, tmp_path / "run")
    assert result.teacher_cache == "off: inputs are randomly augmented, so every batch is new to the teacher"


def test_unlabeled_data_adds_soft_target_terms(tmp_path):
    from edgekd.data import load_data

    digits = load_data("digits")
    np.savez(tmp_path / "d.npz", x_train=digits.x_train[:300], y_train=digits.y_train[:300], x_test=digits.x_test,
             y_test=digits.y_test, x_unlabeled=digits.x_train[300:])
    recipe = _recipe(tmp_path, base=BASE.replace("[teacher]", '[data]\nsource = "npz:d.npz"\n[teacher]'))
    result = distill(recipe, tmp_path / "run")
    assert result.split_sizes["unlabeled"] == len(digits.x_train) - 300
    assert "kd (unlabeled)" in result.history["distilled"][0].terms and "ce (unlabeled)" not in result.history["distilled"][0].terms


def test_few_labels_the_teacher_learns_from_all_and_the_students_from_their_share(tmp_path):
    full = distill(_recipe(tmp_path), tmp_path / "full")
    few = distill(_recipe(tmp_path, base=BASE.replace("[teacher]", "[data]\nlabel_fraction = 0.25\n[teacher]")), tmp_path / "few")
    sizes, train = few.split_sizes, full.split_sizes["train"]
    assert sizes["teacher_train"] == train and sizes["train"] + sizes["unlabeled"] == train
    assert abs(sizes["train"] - 0.25 * train) <= 10, "stratified: about a quarter of every class"
    assert (sizes["val"], sizes["test"]) == (full.split_sizes["val"], full.split_sizes["test"]), "val and test keep their labels"
    assert few.teachers[0].source.startswith("cache"), "the same training labels: the teacher the full run trained"
    assert few.teacher_scores == full.teacher_scores
    assert "kd (unlabeled)" in few.history["distilled"][0].terms


def test_few_labels_refuses_a_share_that_keeps_too_few(tmp_path):
    from edgekd.data import load_data
    from edgekd.data.config import DataConfig
    from edgekd.errors import DataError

    with pytest.raises(DataError, match="label_fraction = 0.001 .*raise label_fraction"):
        load_data("digits", options=DataConfig(label_fraction=0.001))


def test_sweep_keeps_the_best_on_validation(tmp_path):
    result = distill(_recipe(tmp_path, base=BASE.replace("epochs = 3\n[student]", "epochs = 3\n[student]").replace("[distill]\nepochs = 3", "[distill]\nepochs = 2")), tmp_path / "run", sweep=True)
    assert len(result.sweep) == 6 and sum(t.kept for t in result.sweep) == 1
    kept = next(t for t in result.sweep if t.kept)
    assert kept.best_val == max(t.best_val for t in result.sweep)
    assert result.objective["terms"][0]["temperature"] == kept.temperature


def test_sweep_refuses_custom_terms(tmp_path):
    recipe = _recipe(tmp_path, '[[distill.loss]]\nmethod = "kd"\n')
    with pytest.raises(RecipeError, match="--sweep tunes"):
        distill(recipe, tmp_path / "run", sweep=True)


@pytest.mark.parametrize("schedule,clip", [("onecycle", 1.0), ("constant", None)])
def test_schedules_and_clipping(tmp_path, schedule, clip):
    extra = f'schedule = "{schedule}"\n' + (f"grad_clip = {clip}\n" if clip else "")
    result = distill(_recipe(tmp_path, extra), tmp_path / "run")
    lrs = [r.lr for r in result.history["distilled"]]
    assert (len(set(lrs)) == 1) == (schedule == "constant")
    assert json.loads((tmp_path / "run" / "distill.json").read_text())["settings"]["schedule"] == schedule


@pytest.mark.parametrize(
    "data,expected",
    [('augment = true\nmax_shift = 8', "[data] max_shift = 8 would move whole 8×8 images out of view: use at most 7"),
     ('augment = true\nsource = "npz:{npz}"', "[data] augment shifts images, but the inputs have shape (5,)")],
)
def test_shifts_that_cannot_apply_fail_before_training(tmp_path, data, expected):
    npz = tmp_path / "tabular.npz"
    rng = np.random.default_rng(0)
    np.savez(npz, x_train=rng.normal(size=(60, 5)).astype("float32"), y_train=np.arange(60) % 3,
             x_test=rng.normal(size=(30, 5)).astype("float32"), y_test=np.arange(30) % 3)
    mlps = '[teacher]\nmodel = "mlp"\nepochs = 1\n[student]\nmodel = "mlp"\n[distill]\nepochs = 1\n'
    recipe = _recipe(tmp_path, base=f"[data]\n{data.format(npz=npz)}\n{mlps}")
    with pytest.raises(RecipeError, match=re.escape(expected)):
        distill(recipe, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_teacher_max_shift_is_part_of_its_cache_key(tmp_path):
    jitter = BASE.replace("epochs = 3\n[student]", "epochs = 3\naugment = true\n[student]")
    default = plan_teachers(_recipe(tmp_path, base=jitter), load_recipe_data(_recipe(tmp_path).data)).members[0]
    one_pixel = plan_teachers(_recipe(tmp_path, base=jitter.replace("augment = true", "augment = true\nmax_shift = 1")),
                              load_recipe_data(_recipe(tmp_path).data)).members[0]
    assert default.cache_path != one_pixel.cache_path


def test_corrupt_teacher_output_cache_is_recomputed(tmp_path):
    from edgekd.distill.teacher import cache_dir

    recipe = _recipe(tmp_path)
    distill(recipe, tmp_path / "a")
    damaged = list((cache_dir() / "teacher-logits").glob("*/train.npy"))
    assert damaged, "the outputs are stored as one .npy per split"
    for cached in damaged:
        cached.write_bytes(b"damaged")
    again = distill(recipe, tmp_path / "b")
    assert again.teacher_cache.startswith("computed")
    assert distill(recipe, tmp_path / "c").teacher_cache.startswith("reused"), "the recomputed outputs are stored again"


def test_jittered_teacher_keeps_the_students_cache(tmp_path):
    """Hinton et al.'s MNIST setup: the teacher trains on shifted images, the students do not."""
    recipe = _recipe(tmp_path, base=BASE.replace("epochs = 3\n[student]", "epochs = 3\naugment = true\n[student]"))
    assert recipe.teacher.augment and not recipe.data.augment
    result = distill(recipe, tmp_path / "run")
    assert result.teacher_cache.startswith(("computed", "reused")), "student inputs are not augmented: cacheable"
    plain = distill(_recipe(tmp_path), tmp_path / "plain")
    assert result.teachers[0].source != plain.teachers[0].source, "a jittered teacher is cached apart from a plain one"
    assert result.teacher_scores != plain.teacher_scores


def test_mixup_trains_both_students_on_blends_and_runs_the_teacher_live(tmp_path):
    recipe = _recipe(tmp_path, base=BASE.replace("[teacher]", "[data]\nmixup = 0.4\n[teacher]"))
    result = distill(recipe, tmp_path / "run")
    assert result.teacher_cache == "off: inputs are randomly augmented, so every batch is new to the teacher"
    assert {"ce", "kd"} <= set(result.history["distilled"][0].terms)
    plain = distill(_recipe(tmp_path), tmp_path / "plain")
    assert result.history["scratch"][0].loss != plain.history["scratch"][0].loss, "the scratch twin trains on blends too"


def test_mixup_with_dkd_is_a_recipe_error(tmp_path):
    with pytest.raises(RecipeError, match=r"mixup.*dkd|dkd.*mixup"):
        _recipe(tmp_path, '[[distill.loss]]\nmethod = "dkd"\n', base=BASE.replace("[teacher]", "[data]\nmixup = 0.4\n[teacher]"))


def test_the_same_recipe_and_seed_give_byte_identical_checkpoints(tmp_path):
    """The manifests' sha256s match across runs: no temporary file name inside the .pt zip."""
    recipe = _recipe(tmp_path, base=BASE.replace("epochs = 3", "epochs = 1"))
    first, second = tmp_path / "a", tmp_path / "b"
    distill(recipe, first)
    distill(recipe, second)
    for name in ("teacher.pt", "student.pt", "student.last.pt", "student.scratch.pt"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    sha = lambda run: {f: e["sha256"] for f, e in json.loads((run / "manifest.json").read_text())["files"].items() if f.endswith(".pt")}  # noqa: E731
    assert sha(first) == sha(second)


def test_per_token_teacher_outputs_are_written_to_disk_batch_by_batch(tmp_path):
    """Outputs (teachers, sentences, tokens, tags) go into a .npy a batch at a time and are mapped
    back; each batch is cut to its own longest sentence, so shorter batches are zero-padded to the
    inputs' width — the same array as computed in memory, and as one full-width forward pass."""
    from torch import nn

    from edgekd.distill.teacher import Teacher, _compute_outputs
    from edgekd.inputs import Inputs

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(50, 3)

        def forward(self, input_ids, attention_mask):
            return self.embed(input_ids) * attention_mask[..., None]

    rng = np.random.default_rng(0)
    lengths = np.concatenate([rng.integers(1, 5, 512), rng.integers(1, 13, 600)])  # batches of 512: widths 4, 12, 12
    mask = (np.arange(12)[None, :] < lengths[:, None]).astype(np.int64)
    ids = rng.integers(1, 50, (len(lengths), 12)) * mask
    x = Inputs({"input_ids": ids, "attention_mask": mask})
    teacher = Teacher("trained", 1.0, model=Tagger())
    stored = _compute_outputs([teacher], {"unlabeled": x}, tmp_path / "outputs")["unlabeled"]
    in_memory = _compute_outputs([teacher], {"unlabeled": x}, None)["unlabeled"]
    with torch.no_grad():
        whole = teacher.model(torch.as_tensor(ids), torch.as_tensor(mask))
    assert stored.shape == (1, len(lengths), 12, 3)
    assert torch.equal(stored, in_memory) and torch.equal(stored[0], whole)
    assert isinstance(np.load(tmp_path / "outputs" / "unlabeled.npy", mmap_mode="r"), np.memmap)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"], "no temporary folder is left behind"
