"""Direct tests of the small modules the stage tests reach only through others: the model zoo,
the splits, onnxsim's step, the config reader, the platform probes and the single-process
defaults of the distributed helpers."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgekd._config import read_toml, validate
from edgekd._platform import available_bytes, cpu_info, fits_in_memory, release_freed_memory
from edgekd.data.splits import checked_splits
from edgekd.task import stratified_split
from edgekd.distill import distributed
from edgekd.errors import DataError, ModelError, RecipeError
from edgekd.export.simplify import simplify
from edgekd.models import zoo


@pytest.mark.parametrize("family, args", [("mlp", {"hidden": [16]}), ("cnn", {"channels": [8], "hidden": 16}),
                                          ("resnet", {"widths": [8, 16]}), ("mobilenetv2", {"width": 0.25}),
                                          ("mobilenetv3", {"width": 0.25})])
def test_each_family_maps_images_to_one_logit_per_class(family, args):
    torch.manual_seed(0)
    model = getattr(zoo, family)((1, 16, 16), 7, **args).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 1, 16, 16)).shape == (3, 7)


@pytest.mark.parametrize("family", ["cnn", "resnet", "mobilenetv2", "mobilenetv3"])
def test_image_families_refuse_flat_inputs_by_name(family):
    with pytest.raises(ModelError, match=f"{family} needs image inputs shaped"):
        getattr(zoo, family)((64,), 10)


def test_a_stratified_split_keeps_class_shares_and_loses_no_sample():
    y = np.repeat(np.arange(4), [40, 20, 20, 20])
    x = np.arange(len(y), dtype=np.float32)[:, None]
    xa, ya, xb, yb = stratified_split(x, y, 0.25, seed=0)
    assert sorted(np.concatenate([xa, xb]).ravel().tolist()) == x.ravel().tolist()
    assert np.bincount(yb).tolist() == [10, 5, 5, 5]
    again = stratified_split(x, y, 0.25, seed=0)
    assert np.array_equal(again[2], xb), "the same seed gives the same split"


def test_checked_splits_fills_val_from_train_and_names_a_bad_label():
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.normal(size=(40, 3)).astype(np.float32), "y_train": np.tile(np.arange(2), 20),
              "x_test": rng.normal(size=(10, 3)).astype(np.float32), "y_test": np.tile(np.arange(2), 5)}
    splits = checked_splits("t", arrays, 0.25, seed=0)
    assert (len(splits.y_train), len(splits.y_val), len(splits.y_test)) == (30, 10, 10)
    with pytest.raises(DataError, match="y_train"):
        checked_splits("t", {**arrays, "y_train": np.full(40, 0.5, dtype=np.float32)}, 0.25, seed=0, task_name="classification")


def test_simplify_folds_what_onnxsim_can_and_keeps_the_outputs(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    source = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.randn(1, 1, 8, 8),), str(source), dynamo=False, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, do_constant_folding=False)
    x = np.random.default_rng(0).normal(size=(5, 1, 8, 8)).astype(np.float32)
    result = simplify(source, tmp_path / "s.onnx", x, tolerance=1e-4)
    assert result.applied and result.nodes_after < result.nodes_before and result.max_abs <= 1e-4
    assert len(onnx.load(str(tmp_path / "s.onnx")).graph.node) == result.nodes_after


def test_the_config_reader_names_bad_toml_and_suggests_a_key(tmp_path):
    from edgekd.recipe import Recipe

    bad = tmp_path / "r.toml"
    bad.write_text("[distill\n")
    with pytest.raises(RecipeError, match="not valid TOML"):
        read_toml(bad, RecipeError, "recipe")
    with pytest.raises(RecipeError, match="did you mean 'temperature'"):
        validate(Recipe, {"distill": {"temprature": 2.0}}, "r.toml", RecipeError)


def test_the_platform_probes_answer_on_any_machine():
    info = cpu_info()
    assert set(info) == {"cpu", "cores", "machine", "int8_features", "int8_dot_product"}
    assert info["int8_dot_product"] in ("yes", "no")
    free = available_bytes()
    assert free is None or free > 0
    assert fits_in_memory(1) and not (free is not None and fits_in_memory(10 * free))
    release_freed_memory()  # glibc's malloc_trim where it exists, else nothing; never an error


def test_freed_memory_goes_back_to_the_system_on_glibc():
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")

    def anonymous_kb() -> int:
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        return int(status["RssAnon"].split()[0])

    blocks = [bytearray(100_000 + i) for i in range(2000)]  # ~200 MB from the heap (below the mmap threshold)
    del blocks[::2]  # holes: freed, but glibc keeps the pages
    held = anonymous_kb()
    release_freed_memory()
    assert anonymous_kb() < held - 50_000, "at least 50 MB of freed heap handed back"
    del blocks


def test_one_process_is_its_own_world():
    order = torch.randperm(10)
    assert distributed.world_size() == 1 and distributed.is_main()
    assert torch.equal(distributed.shard(order), order) and distributed.sum_across([1.0, 2.0]) == [1.0, 2.0]
