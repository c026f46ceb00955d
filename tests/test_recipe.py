
from dataclasses import replace

import pytest

from edgekd.errors import RecipeError
from edgekd.recipe import Recipe, load_recipe, with_task_models


def test_no_recipe_is_the_builtin_demo():
    recipe = load_recipe(None)
    assert recipe == replace(Recipe(), data=replace(Recipe().data, label_fraction=0.15)), "the defaults, with few labels"
    assert recipe.data.source == "digits" and recipe.teacher.model is None and recipe.student.model is None, "the task's models"
    models = with_task_models(recipe, "classification")
    assert models.teacher.model == "cnn" and models.student.model == "mlp"


def test_every_key_is_optional(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("")
    assert load_recipe(path) == Recipe()


@pytest.mark.parametrize(
    "text,expected",
    [
        ("[distill]\ntemprature = 3\n", "[distill] unknown key 'temprature' — did you mean 'temperature'?"),
        ("[data]\nstd = [0.0]\n", "[data] std[0]"),
        ("[data]\nimage_size = [32]\n", "[data] image_size"),
        ("[distill]\nepochs = 100000000\n", "[distill] epochs"),
        ("[studnet]\nmodel = 'mlp'\n", "unknown key 'studnet' — did you mean 'student'?"),
        ("[distill]\ntemperature = -1\n", "[distill] temperature"),
        ("[distill]\nepochs = 'many'\n", "[distill] epochs"),
        ("[distill]\nkd_weight = 0\nce_weight = 0\n", "nothing to train on"),
        ("[qad]\nkd_weight = 0\nce_weight = 0\n", "[qad] ce_weight and kd_weight are both 0"),
        ("[qad]\nce_weight = -0.5\n", "[qad] ce_weight"),
        ("[distill\n", "not valid TOML"),
        ("[data]\nmax_shift = 2\n", "[data] max_shift = 2 has no effect without [data] augment = true"),
        ("[teacher]\nmax_shift = 2\n", "[teacher] max_shift = 2 has no effect without [teacher] augment = true"),
        ("[data]\naugment = true\nmax_shift = 0\n", "[data] max_shift"),
    ],
)
def test_bad_recipes_name_the_problem(tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.toml")


def test_relative_paths_resolve_against_the_recipe_folder(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    path = folder / "r.toml"
    path.write_text('[data]\nsource = "npz:data/set.npz"\n[teacher]\ncheckpoint = "t.pt"\n[target]\npath = "my.toml"\n')
    recipe = load_recipe(path)
    assert recipe.data.source == f"npz:{folder / 'data/set.npz'}"
    assert recipe.teacher.checkpoint == folder / "t.pt"
    assert recipe.target.path == folder / "my.toml"
