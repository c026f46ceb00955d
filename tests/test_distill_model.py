"""`distill_model`: distillation of modules held in memory, no recipe and no run folder."""

import pytest
import torch
from torch import nn

from edgekd.data import load_data, splits_from_arrays
from edgekd.distill.model import distill_model, distill_settings
from edgekd.recipe import DistillConfig, LossTerm

DIGITS = load_data("digits")


def _mlp(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def _trained_teacher() -> nn.Module:
    torch.manual_seed(0)
    teacher = _mlp(128)
    x, y = torch.as_tensor(DIGITS.x_train.single()), torch.as_tensor(DIGITS.y_train)
    optimizer = torch.optim.Adam(teacher.parameters(), lr=3e-3)
    for _ in range(100):
        optimizer.zero_grad()
        nn.functional.cross_entropy(teacher(x), y).backward()
        optimizer.step()
    return teacher.eval()


def test_settings_default_to_the_recipe_defaults_and_take_changes():
    settings = distill_settings(epochs=3)
    defaults = DistillConfig()
    assert settings.epochs == 3 and settings.ce_weight == defaults.ce_weight and settings.temperature == defaults.temperature
    assert settings.terms == (LossTerm(method="kd", weight=defaults.kd_weight, temperature=defaults.temperature),)


def test_a_student_defined_inline_learns_from_a_teacher_and_keeps_its_best_epoch():
    teacher = _trained_teacher()
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    torch.manual_seed(1)
    student = _mlp(16)
    result = distill_model(teacher, student, DIGITS, distill_settings(epochs=4))
    assert result.model is student and len(result.history) == 4
    assert result.metric == "accuracy"
    assert result.val_score == max(r.val_metric for r in result.history) == result.history[result.best_epoch - 1].val_metric
    assert result.test_score > 0.5 and result.teacher_test_score > 0.8 and result.test_metrics["accuracy"] == result.test_score
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in teacher_state.items()), "the teacher is never trained"
    assert all("kd" in r.terms and "ce" in r.terms for r in result.history)


def test_several_teachers_and_arrays_held_in_memory():
    arrays = {"x_train": DIGITS.x_train.single(), "y_train": DIGITS.y_train, "x_test": DIGITS.x_test.single(), "y_test": DIGITS.y_test}
    data = splits_from_arrays(arrays, name="my arrays")
    assert data.name == "my arrays" and len(data.x_val) > 0 and data.num_classes == 10
    teacher = _trained_teacher()
    result = distill_model([teacher, _mlp(32).eval()], _mlp(16), data, distill_settings(epochs=1), teacher_weights=[0.9, 0.1])
    assert len(result.history) == 1
    with pytest.raises(ValueError):
        distill_model([teacher, teacher], _mlp(16), data, distill_settings(epochs=1), teacher_weights=[1.0])
