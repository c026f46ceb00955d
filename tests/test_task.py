"""The task table: each entry's labels, metrics and paired comparison, and a regressor distilled
end to end (recipe, data, training, results in the data's own units)."""

from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from torch import nn
from typer.testing import CliRunner

from cli_checks import one_line_error, quick_target
from edgekd.cli import app
from edgekd.data import splits_from_arrays
from edgekd.distill.model import distill_model, distill_settings
from edgekd.errors import DataError, RecipeError
from edgekd.models.build import InDataUnits, ModelSpec, build_model, target_scale
from edgekd.paired import paired_error_rise
from edgekd.recipe import recipe_from_dict
from edgekd.task import TASKS, infer_task, task


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_names_its_pieces(name):
    entry = task(name)
    assert entry.primary is entry.metrics[0] and entry.soft_method and entry.hard_loss_name
    module, function = entry.hard_loss.split(":")
    assert callable(getattr(__import__(module, fromlist=[function]), function))


def test_an_unknown_task_names_the_valid_ones():
    with pytest.raises(ValueError, match="valid tasks: classification, segmentation, token-classification, regression"):
        task("detection?")


@pytest.mark.parametrize("y, expected", [(np.array([0, 1, 2]), "classification"), (np.array([0.0, 1.0, 2.0]), "classification"),
                                         (np.array([0.5, 1.0]), "regression"), (np.zeros((3, 2), np.float32), "regression")])
def test_the_task_the_labels_make_unambiguous(y, expected):
    assert infer_task(y) == expected


def test_regression_scores_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(40, 2)).astype(np.float32)
    out = y + rng.normal(scale=0.3, size=y.shape)
    scores = task("regression").score(out, y)
    assert scores["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y, out)))
    assert scores["mae"] == pytest.approx(mean_absolute_error(y, out))
    assert scores["r2"] == pytest.approx(r2_score(y, out))
    kind = task("regression")
    assert kind.summarise(kind.per_sample(out, y)) == pytest.approx(scores["rmse"]), "the outcomes give the same primary metric"
    assert task("classification").score(np.eye(3)[[0, 1, 1]], np.array([0, 1, 2]))["accuracy"] == pytest.approx(2 / 3)


def test_the_error_rise_is_zero_for_equal_models_and_significant_for_a_worse_one():
    rng = np.random.default_rng(1)
    first = rng.exponential(size=200)
    same = paired_error_rise(first, first)
    assert same.drop == 0.0 and same.p_value == 1.0 and same.only_first == same.only_second == 0
    worse = paired_error_rise(first, first * 1.44)  # RMSE × 1.2
    assert worse.drop == pytest.approx(0.2) and worse.interval[0] <= 0.2 <= worse.interval[1] and worse.p_value < 0.01
    assert worse.only_first == 200 and task("regression").show_drop(worse.drop) == "+20.00% RMSE"


@pytest.mark.parametrize("y_train, y_test, fragment", [
    (np.array([1.0, np.nan, 2.0, 3.0]), np.array([1.0, 2.0]), "NaN or inf targets"),
    (np.arange(8.0).reshape(4, 2), np.ones((2, 3)), "y_test has 3 targets per sample but y_train has 2"),
    (np.full(4, 1.5), np.array([1.0, 2.0]), "every training target has one value"),
    (np.ones((4, 1, 1)), np.ones((2, 1)), "expected (4,) or (4, targets)"),
])
def test_bad_regression_targets_are_named(y_train, y_test, fragment):
    arrays = {"x_train": np.zeros((4, 2)), "y_train": y_train, "x_test": np.zeros((2, 2)), "y_test": y_test}
    with pytest.raises(DataError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        splits_from_arrays(arrays, task="regression")


@pytest.mark.parametrize("table, fragment", [
    ({"distill": {"loss": [{"method": "kd"}]}}, "method 'kd' does not apply to regression"),
    ({"distill": {"temperature": 2.0}}, "regression outputs have none: remove temperature"),
    ({"data": {"mixup": 0.2}}, "regression labels are not that: set mixup = 0"),
])
def test_a_recipe_refuses_classification_pieces_for_regression(table, fragment):
    with pytest.raises(RecipeError, match=fragment):
        recipe_from_dict({"task": "regression", **table})


def test_regression_s_soft_term_is_mse_to_the_teacher_without_a_temperature():
    recipe = recipe_from_dict({"task": "regression"})
    (term,) = recipe.distill.terms("regression")
    assert term.method == "mse" and term.temperature is None
    assert distill_settings(task="regression").terms == (term,)


def _regression_arrays(n=400, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (200 + 40 * np.sin(x[:, 0]) + 30 * x[:, 1] * x[:, 2] + 10 * rng.normal(size=n)).astype(np.float32)
    cut = n * 3 // 4
    return {"x_train": x[:cut], "y_train": y[:cut], "x_test": x[cut:], "y_test": y[cut:]}


def test_a_regressor_learns_standardised_targets_and_answers_in_the_data_s_units():
    data = splits_from_arrays(_regression_arrays(), task="regression")
    mean, std = target_scale(data.y_train)
    spec = ModelSpec("mlp", {"hidden": [16]}, data.input_shape, data.num_classes, target_scale=(mean, std))
    torch.manual_seed(0)
    model = build_model(spec)
    assert isinstance(model, InDataUnits) and data.num_classes == 1
    assert set(model.state_dict()) >= {"mean", "std"} and ModelSpec.from_dict(spec.to_dict()) == spec
    torch.manual_seed(1)
    teacher = build_model(ModelSpec("mlp", {"hidden": [64, 64]}, data.input_shape, 1, target_scale=(mean, std)))
    fitted = distill_model(teacher, model, data, distill_settings(task="regression", epochs=3))
    assert fitted.metric == "rmse" and set(fitted.test_metrics) == {"rmse", "mae", "r2"}
    assert fitted.val_score == min(r.val_metric for r in fitted.history), "the best epoch is the lowest validation RMSE"
    with torch.no_grad():
        answers = model(torch.as_tensor(data.x_test.single())).numpy()
    assert abs(answers.mean() - data.y_test.mean()) < 3 * data.y_test.std(), "outputs are in the data's units, not standardised"


def test_settings_of_another_task_are_refused_by_name():
    data = splits_from_arrays(_regression_arrays(80), task="regression")
    with pytest.raises(ValueError, match="the settings are for classification but the data is regression"):
        distill_model(nn.Linear(6, 1), nn.Linear(6, 1), data, distill_settings(epochs=1))


def test_edgekd_distill_trains_a_regressor_from_float_labels(tmp_path):
    np.savez(tmp_path / "reg.npz", **_regression_arrays())
    recipe = tmp_path / "reg.toml"
    recipe.write_text('[data]\nsource = "npz:reg.npz"\n[teacher]\nmodel = "mlp"\nargs = { hidden = [64, 64] }\nepochs = 15\n'
                      '[student]\nmodel = "mlp"\nargs = { hidden = [8] }\n[distill]\nepochs = 15\nkd_weight = 0.5\nce_weight = 0.5\n')
    result = CliRunner().invoke(app, ["distill", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "distill.json").read_text())
    assert summary["task"] == "regression" and summary["metric"] == "rmse"
    assert summary["objective"]["terms"][0]["method"] == "mse" and "mse" in summary["history"]["distilled"][0]["terms"]
    constant = float(np.sqrt(((summary_y := np.load(tmp_path / "reg.npz")["y_test"]) - summary_y.mean()) ** 2).mean())
    assert summary["teacher_scores"]["test"] < constant, "the teacher beats predicting the mean"
    assert set(summary["distilled"]["best"]["metrics"]) == {"rmse", "mae", "r2"}
    assert "test rmse" in result.output


def test_edgekd_distill_refuses_kd_terms_on_regression_labels(tmp_path):
    np.savez(tmp_path / "reg.npz", **_regression_arrays(80))
    recipe = tmp_path / "reg.toml"
    recipe.write_text('[data]\nsource = "npz:reg.npz"\n[[distill.loss]]\nmethod = "dkd"\n')
    result = CliRunner().invoke(app, ["--quiet", "distill", str(recipe), "--out", str(tmp_path / "run")])  # no "the task is regression" line
    one_line_error(result, "the data is regression", "method 'dkd' does not apply to regression", "use one of: hint, at, mse")
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory):
    """`edgekd run` on real-valued targets: distilled, exported, int8, benched (shared: read only)."""
    folder = tmp_path_factory.mktemp("regression")
    np.savez(folder / "reg.npz", **_regression_arrays())
    recipe = folder / "reg.toml"
    recipe.write_text('task = "regression"\n[data]\nsource = "npz:reg.npz"\n[teacher]\nmodel = "mlp"\nargs = { hidden = [128, 128] }\n'
                      'epochs = 15\n[student]\nmodel = "mlp"\nargs = { hidden = [8] }\n[distill]\nepochs = 15\n')
    target = folder / "x86-int8.toml"  # x86-cpu as shipped, but int8 ships even where this tiny regressor is faster in fp32
    target.write_text((Path(__file__).resolve().parents[1] / "targets" / "x86-cpu.toml").read_text().replace('"fastest"', '"warn"'))
    result = CliRunner().invoke(app, ["-q", "run", str(recipe), "--target", str(target), "--out", str(folder / "run")])
    assert result.exit_code == 0, result.output  # x86-cpu's budgets: size, latency, compression (its accuracy budget: n/a)
    return folder


def test_a_regressor_runs_end_to_end_and_is_judged_by_rmse(regression_run):
    run = regression_run / "run"
    exported = json.loads((run / "export.json").read_text())
    assert exported["metric"] == "rmse" and exported["quantized"]["metric"] == "rmse" and exported["quantized"]["scheme"] == "static-qdq"
    assert exported["student_parity"]["argmax_agreement"] == 1.0, "every output within 1% of the range of PyTorch's"
    bench = json.loads((run / "bench.json").read_text())
    assert bench["task"] == "regression" and bench["metric"] == "rmse"
    assert all(set(v["metrics"]) == {"rmse", "mae", "r2"} and v["accuracy"] is None for v in bench["variants"])
    verdicts = {v["budget"]: v for v in bench["verdicts"]}
    assert verdicts["max_accuracy_drop"]["passed"] is None and not verdicts["max_accuracy_drop"]["blocking"]
    assert "not applicable" in verdicts["max_accuracy_drop"]["note"]
    assert "rmse rise, relative" in verdicts["max_drop_vs_fp32"]["unit"] and len(verdicts["max_drop_vs_fp32"]["interval"]) == 2
    assert "## Regression metrics (test split)" in (run / "bench.md").read_text()


def test_the_exported_regressor_answers_in_the_data_s_units(regression_run):
    from edgekd.runtime.session import open_session, run_batches

    arrays = np.load(regression_run / "reg.npz")
    out = run_batches(open_session(regression_run / "run" / "student.int8.onnx"), arrays["x_test"])
    rmse = float(np.sqrt(((out[:, 0] - arrays["y_test"]) ** 2).mean()))
    assert rmse < float(arrays["y_test"].std()), "the int8 file predicts the targets better than their mean, in their units"


def test_a_regression_budget_judges_the_rmse_rise_against_the_teacher(regression_run, tmp_path):
    target = quick_target(tmp_path / "strict.toml", "max_rmse_rise = 0.0")
    result = CliRunner().invoke(app, ["-q", "bench", str(regression_run / "run"), "--target", str(target), "--out", str(tmp_path), "--json"])
    report = json.loads(result.stdout)
    (rise,) = [v for v in report["verdicts"] if v["budget"] == "max_rmse_rise"]
    teacher, deployed = (next(v for v in report["variants"] if v["role"] == r)["metrics"]["rmse"] for r in ("teacher", "ptq"))
    assert rise["measured"] == pytest.approx(deployed / teacher - 1) and rise["interval"][0] <= rise["measured"] <= rise["interval"][1]
    assert (result.exit_code == 1) == (rise["passed"] is False), "a missed rmse budget fails the build"


def test_a_bare_regressor_benches_with_its_targets_and_compares_by_rmse(regression_run, tmp_path):
    model = regression_run / "run" / "student.sim.onnx"
    for name in ("a", "b"):
        result = CliRunner().invoke(app, ["-q", "bench", str(model), "--data", f"npz:{regression_run / 'reg.npz'}",
                                          "--out", str(tmp_path / name)])
        assert result.exit_code in (0, 1), result.output
    report = json.loads((tmp_path / "a" / "bench.json").read_text())
    assert report["task"] == "regression" and report["variants"][0]["metrics"]["rmse"] > 0
    compared = CliRunner().invoke(app, ["-q", "bench", "--compare", str(tmp_path / "a" / "bench.json"), str(tmp_path / "b" / "bench.json"),
                                        "--max-latency-increase", "100"])  # the same file timed twice on a shared machine: only rmse is judged
    assert compared.exit_code == 0 and "rmse" in compared.stdout and "+0.0%" in compared.stdout, compared.output


def test_a_csv_with_a_numeric_label_column_is_a_regression_source(tmp_path):
    from edgekd.data import load_data
    from edgekd.data.config import DataConfig

    rng = np.random.default_rng(3)
    rows = ["a,b,price"] + [f"{a:.3f},{b:.3f},{10 + 3 * a - b + rng.normal():.2f}" for a, b in rng.normal(size=(60, 2))]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    source = f"csv:{tmp_path / 't.csv'}"
    splits = load_data(source, options=DataConfig(source=source, label_column="price"))
    assert splits.task == "regression" and splits.y_train.dtype == np.float32 and splits.y_train.shape[1] == 1
    assert len(splits.y_train) + len(splits.y_val) + len(splits.y_test) == 60


def test_a_model_with_the_wrong_number_of_outputs_for_the_targets_is_named(tmp_path):
    np.savez(tmp_path / "reg.npz", **_regression_arrays(80))
    recipe = tmp_path / "reg.toml"
    recipe.write_text('task = "regression"\n[data]\nsource = "npz:reg.npz"\n[teacher]\nmodel = "mlp"\nargs = { num_classes = 3 }\n')
    result = CliRunner().invoke(app, ["-q", "distill", str(recipe), "--out", str(tmp_path / "run")])
    one_line_error(result, "teacher outputs shape (3,) per sample but the data asks for 1 regression target(s) per sample")
    assert not (tmp_path / "run").exists()


def test_several_regression_teachers_distil_towards_their_weighted_mean(tmp_path):
    from edgekd.models.checkpoint import load_model
    from edgekd.models.call import predict

    np.savez(tmp_path / "reg.npz", **_regression_arrays(200))
    recipe = tmp_path / "reg.toml"
    recipe.write_text('task = "regression"\n[data]\nsource = "npz:reg.npz"\n'
                      '[[teachers]]\nmodel = "mlp"\nargs = { hidden = [32] }\nepochs = 3\nweight = 1.0\n'
                      '[[teachers]]\nmodel = "mlp"\nargs = { hidden = [16] }\nepochs = 3\nweight = 3.0\n'
                      '[student]\nmodel = "mlp"\nargs = { hidden = [8] }\n[distill]\nepochs = 2\n')
    result = CliRunner().invoke(app, ["-q", "distill", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "distill.json").read_text())
    assert [t["weight"] for t in summary["teachers"]] == [1.0, 3.0]
    ensemble, _ = load_model(tmp_path / "run" / "teacher.pt")
    x = np.load(tmp_path / "reg.npz")["x_test"]
    members = [predict(m, x) for m in ensemble.members]
    np.testing.assert_allclose(predict(ensemble, x), 0.25 * members[0] + 0.75 * members[1], rtol=1e-5)


def test_sweep_tunes_the_mse_term_s_weight_for_regression_and_keeps_the_lowest_rmse(tmp_path):
    np.savez(tmp_path / "reg.npz", **_regression_arrays(160))
    recipe = tmp_path / "reg.toml"
    recipe.write_text('task = "regression"\n[data]\nsource = "npz:reg.npz"\n[teacher]\nmodel = "mlp"\nargs = { hidden = [16] }\nepochs = 2\n'
                      '[student]\nmodel = "mlp"\nargs = { hidden = [4] }\n[distill]\nepochs = 2\nbaseline = "none"\n')
    result = CliRunner().invoke(app, ["distill", str(recipe), "--out", str(tmp_path / "run"), "--sweep"])
    assert result.exit_code == 0, result.output
    trials = json.loads((tmp_path / "run" / "distill.json").read_text())["sweep"]
    assert [t["kd_weight"] for t in trials] == [0.3, 0.5, 0.7, 0.9] and all(t["temperature"] is None for t in trials)
    kept = next(t for t in trials if t["kept"])
    assert kept["best_val"] == min(t["best_val"] for t in trials), "lower RMSE is better"
    assert "kd_weight" in result.output and "best val rmse" in result.output


def test_a_regressor_is_fine_tuned_through_its_int8_model_and_lower_rmse_wins(regression_run, tmp_path):
    import shutil

    from edgekd.qad.stage import best_trained, quantization_aware
    from edgekd.task import task

    shutil.copytree(regression_run / "run", tmp_path / "run")
    result = quantization_aware(tmp_path / "run", epochs=1)
    assert result.metric == "rmse" and not result.skipped
    start, *trained = result.variants
    assert all(v.parity.agreement >= 0.99 and v.val_accuracy <= start.val_accuracy for v in trained), "never a higher RMSE than its start"
    best = best_trained(result.variants, task("regression"))
    assert best.val_accuracy == min(v.val_accuracy for v in trained)
