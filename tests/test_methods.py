"""The methods table: one entry per distillation method, read by the recipe, the objective and the docs."""

import typing

import pytest
import torch

from edgekd.methods import METHODS, describe, method
from edgekd.recipe import LossTerm


def test_the_recipe_accepts_exactly_the_methods_in_the_table():
    assert set(typing.get_args(typing.get_type_hints(LossTerm)["method"])) == set(METHODS)


def test_an_unknown_method_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown distillation method 'kdd'; valid methods: kd, dkd, hint, at"):
        method("kdd")


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_entry_names_a_term_function_and_the_docs_list_it(name):
    from edgekd.distill.objective import term_function

    assert callable(term_function(name))
    assert f"{name} ({METHODS[name].title})" in describe()
    assert METHODS[name].uses_logits != METHODS[name].uses_layers  # each method learns from one of the two


@pytest.mark.parametrize("name", sorted(METHODS))
def test_the_objective_asks_the_table_what_a_method_needs(name):
    """Logit methods make the loop fetch teacher logits; layer methods set up hooks (and adapters)."""
    from torch import nn

    from edgekd.distill.objective import Objective

    entry = METHODS[name]
    layers = {"teacher_layer": "0", "student_layer": "0"} if entry.uses_layers else {}
    term = LossTerm(method=name, **layers)
    student, teacher = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1)), nn.Sequential(nn.Conv2d(1, 4, 3, padding=1))
    sample = {"input": torch.zeros(2, 1, 8, 8)}
    objective = Objective([term], 0.5, 4.0, student, teacher, [1.0], sample)
    try:
        assert objective.needs_teacher_logits is entry.uses_logits
        assert objective.needs_teacher_features is entry.uses_layers
        assert (len(objective.adapters) == 1) is entry.adapter
    finally:
        objective.close()


def test_a_label_term_is_skipped_on_unlabelled_batches_and_counted_on_labelled_ones():
    from edgekd.distill.objective import Objective

    terms = [LossTerm(method=name) for name, m in METHODS.items() if m.needs_one_class and not m.uses_layers]
    objective = Objective(terms, 0.0, 4.0, None, None, [1.0], None)
    logits, teacher = torch.randn(4, 3), [torch.randn(4, 3)]
    _, unlabelled = objective(logits, teacher, None)
    _, labelled = objective(logits, teacher, torch.tensor([0, 1, 2, 0]))
    assert unlabelled == {} and set(labelled) == {t.method for t in terms}


def test_the_recipe_reference_shows_the_methods_table_as_the_code_has_it():
    from pathlib import Path

    from edgekd.methods import markdown_table

    page = (Path(__file__).resolve().parents[1] / "docs" / "reference" / "recipe.md").read_text(encoding="utf-8")
    assert markdown_table() in page, "docs/reference/recipe.md's methods table differs from edgekd.methods: paste markdown_table()'s output"
