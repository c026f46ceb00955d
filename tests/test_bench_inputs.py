"""A bare model of any task benches without labels: random inputs sized by --shape (or the
target's [bench] input_shapes), or an npz holding only x_test; metric budgets are not checked."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from cli_checks import one_line_error
from edgekd.bench.inputs import parse_shapes
from edgekd.cli import app
from edgekd.errors import DataError

runner = CliRunner()


@pytest.fixture(scope="module")
def dense_model(tmp_path_factory):
    """A per-pixel model whose batch, height and width are all free: the shape of a third-party segmenter or text detector."""
    folder = tmp_path_factory.mktemp("dense")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()
    path = folder / "dense.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 32, 32),), str(path), dynamo=False, input_names=["x"], output_names=["map"],
                      dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "map": {0: "n", 2: "h", 3: "w"}})
    return path


def _bench(*args):
    return runner.invoke(app, ["-q", "bench", *map(str, args), "--json"])


def test_shapes_parse_with_or_without_the_batch_and_bad_ones_are_named():
    assert parse_shapes(["x=1x3x640x640", "mask=64"]) == {"x": [1, 3, 640, 640], "mask": [64]}
    for bad in ("x", "x=", "=1x2", "x=1x0", "x=axb"):
        with pytest.raises(DataError, match="write NAME=DIMS"):
            parse_shapes([bad])


def test_free_dimensions_without_a_shape_say_how_to_give_one(dense_model, tmp_path):
    one_line_error(runner.invoke(app, ["-q", "bench", str(dense_model), "--out", str(tmp_path)]),
                   "free dimensions", "--shape x=1x3xNxN")


@pytest.mark.parametrize("shape", ["x=1x3x48x40", "x=3x48x40"])
def test_a_shape_times_a_model_with_free_dimensions(dense_model, tmp_path, shape):
    result = _bench(dense_model, "--shape", shape, "--out", tmp_path)
    report = json.loads(result.stdout)
    assert result.exit_code in (0, 1) and "random inputs shaped" in report["inputs"]
    (variant,) = report["variants"]
    assert variant["accuracy"] is None and variant["latency"]["p50_ms"] > 0 and variant["profile"]["bytes"] > 0
    verdicts = {v["budget"]: v for v in report["verdicts"]}
    assert verdicts["max_accuracy_drop"]["passed"] is None and "no labelled test data" in verdicts["max_accuracy_drop"]["note"]


@pytest.mark.parametrize("shape, fragment", [("x=3x48", "2 dims, but the input is"), ("y=3x8x8", "--shape names y"),
                                             ("x=5x8x8", "the model fixes 3 where the shape gives 5")])
def test_a_shape_that_does_not_fit_the_model_is_named(dense_model, tmp_path, shape, fragment):
    one_line_error(runner.invoke(app, ["-q", "bench", str(dense_model), "--shape", shape, "--out", str(tmp_path)]), fragment)


def test_the_target_can_give_the_shapes(dense_model, tmp_path):
    target = tmp_path / "cam.toml"
    target.write_text('name = "cam"\ndescription = "a camera"\n[runtime]\nproviders = ["CPUExecutionProvider"]\n'
                      '[bench]\nruns = 20\nwarmup_runs = 2\nsweep_batches = [1, 2]\nthroughput_batch = 2\ninput_shapes = { x = [3, 40, 40] }\n')
    result = _bench(dense_model, "--target", target, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "x=3x40x40" in json.loads(result.stdout)["inputs"]


def test_an_npz_with_only_test_inputs_benches_without_metrics(dense_model, tmp_path):
    np.savez(tmp_path / "x.npz", x_test=np.random.default_rng(0).normal(size=(6, 3, 24, 24)).astype(np.float32))
    result = _bench(dense_model, "--data", f"npz:{tmp_path / 'x.npz'}", "--out", tmp_path / "out")
    report = json.loads(result.stdout)
    assert "6 test samples" in report["inputs"] and "no labels" in report["inputs"]
    assert report["variants"][0]["accuracy"] is None and report["variants"][0]["metrics"] == {}


def test_shape_and_data_together_are_refused(dense_model, tmp_path):
    one_line_error(runner.invoke(app, ["-q", "bench", str(dense_model), "--shape", "x=3x8x8", "--data", "digits"]),
                   "--data (real inputs) or --shape")
