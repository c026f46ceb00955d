"""Reproducibility (issue 29): the same recipe and seed, run twice on one machine, give the same
metrics and byte-identical checkpoints and ONNX files — for the text family and the other tasks.
Each run has its own teacher cache, so the teacher is trained twice too, not read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from seg_data import shapes_arrays
from text_data import TEXT_RECIPE

# What each recipe's folder must hold identically after distill + export (the quantized file by its scheme).
COMPARED = ("teacher.pt", "student.pt", "student.scratch.pt", "teacher.onnx", "student.onnx", "student.sim.onnx")


def _text(folder: Path, corpus) -> str:
    return TEXT_RECIPE.format(csv=corpus[0], tokenizer=corpus[1]).replace("epochs = 6", "epochs = 2")


def _segmentation(folder: Path, corpus) -> str:
    np.savez(folder / "seg.npz", **shapes_arrays(80))
    return ('[data]\nsource = "npz:seg.npz"\naugment = true\nmax_shift = 2\n[teacher]\nargs = { widths = [8, 16] }\nepochs = 2\n'
            '[student]\nargs = { widths = [4, 8] }\n[distill]\nepochs = 2\n')


def _regression(folder: Path, corpus) -> str:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    y = (x[:, :2].sum(axis=1, keepdims=True) + 0.1 * rng.normal(size=(300, 1))).astype(np.float32)
    np.savez(folder / "reg.npz", x_train=x[:240], y_train=y[:240], x_test=x[240:], y_test=y[240:])
    return ('task = "regression"\n[data]\nsource = "npz:reg.npz"\n[teacher]\nmodel = "mlp"\nargs = { hidden = [32] }\nepochs = 3\n'
            '[student]\nmodel = "mlp"\nargs = { hidden = [8] }\n[distill]\nepochs = 3\n')


def _digits(folder: Path, corpus) -> str:
    return "[teacher]\nepochs = 2\n[distill]\nepochs = 2\n"


def _timing_free(folder: Path, name: str) -> Path:
    """The built-in target with int8 deployed whatever the timing: its "fastest" rule picks int8 or
    fp32 by timing both on this machine at that moment, which is a measurement, not a property of
    the recipe (two runs may ship different files); what this test checks is that the files are
    the same."""
    from edgekd.targets import builtin_targets

    text = builtin_targets()[name].read_text(encoding="utf-8")
    assert 'if_slower_than_fp32 = "fastest"' in text
    path = folder / f"{name}-int8.toml"
    path.write_text(text.replace('if_slower_than_fp32 = "fastest"', 'if_slower_than_fp32 = "warn"'), encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("make", [_text, _segmentation, _regression, _digits], ids=lambda f: f.__name__.strip("_"))
def test_two_runs_of_one_recipe_give_the_same_metrics_and_bytes(tmp_path, monkeypatch, corpus, make):
    from edgekd.distill.stage import distill
    from edgekd.export.stage import export

    recipe = tmp_path / "recipe.toml"
    recipe.write_text(make(tmp_path, corpus), encoding="utf-8")
    target = _timing_free(tmp_path, "x86-cpu-text" if make is _text else "x86-cpu")
    results = []
    for name in ("first", "second"):
        monkeypatch.setenv("EDGEKD_CACHE_DIR", str(tmp_path / f"cache-{name}"))  # the teacher trains in both runs
        distilled = distill(recipe, tmp_path / name)
        exported = export(tmp_path / name, target)
        results.append((distilled, exported))
    (first, first_export), (second, second_export) = results
    assert first.teachers[0].source == second.teachers[0].source == "trained"
    assert json.dumps(first.distilled.best.__dict__, default=str) == json.dumps(second.distilled.best.__dict__, default=str)
    assert first.teacher_scores == second.teacher_scores and first_export.deployed_test_accuracy == second_export.deployed_test_accuracy
    files = COMPARED + ((first_export.deployed,) if first_export.deployed not in COMPARED else ())
    assert first_export.deployed == second_export.deployed
    for file in files:
        assert (tmp_path / "first" / file).read_bytes() == (tmp_path / "second" / file).read_bytes(), f"{file} differs between the runs"
