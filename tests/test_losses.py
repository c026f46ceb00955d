"""The KD loss against values computed by hand from the formula, term by term."""

import math

import pytest
import torch

from edgekd.distill.losses import distillation_loss, kd_loss


def _softmax(z, t):
    e = [math.exp(v / t) for v in z]
    return [v / sum(e) for v in e]


def _hand_kd(student, teacher, t):
    """T² · mean over samples of Σ_i p_teacher,i · (log p_teacher,i − log p_student,i)."""
    total = 0.0
    for s_row, t_row in zip(student, teacher):
        p_s, p_t = _softmax(s_row, t), _softmax(t_row, t)
        total += sum(pt * (math.log(pt) - math.log(ps)) for ps, pt in zip(p_s, p_t))
    return t * t * total / len(student)


def _hand_ce(student, labels):
    return sum(-math.log(_softmax(row, 1.0)[y]) for row, y in zip(student, labels)) / len(student)


STUDENT = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
TEACHER = [[2.0, 4.0, -1.0], [1.0, 0.0, 2.5]]
LABELS = [1, 2]


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0, 20.0])
def test_kd_loss_matches_hand_computed(temperature):
    got = kd_loss(torch.tensor(STUDENT, dtype=torch.float64), torch.tensor(TEACHER, dtype=torch.float64), temperature)
    assert float(got) == pytest.approx(_hand_kd(STUDENT, TEACHER, temperature), rel=1e-5)


def test_kd_loss_known_value():
    # T=2, one sample: p_s = softmax([0.5, 1, 0.25]) = (0.29176, 0.48102, 0.22722),
    # p_t = softmax([1, 2, -0.5]) = (0.25372, 0.68967, 0.05661);
    # KL(p_t ‖ p_s) = Σ p_t (log p_t − log p_s) = 0.134370; × T² = 0.537480.
    got = kd_loss(torch.tensor(STUDENT[:1]), torch.tensor(TEACHER[:1]), 2.0)
    assert float(got) == pytest.approx(0.5374797, rel=1e-5)


@pytest.mark.parametrize("kd_weight,ce_weight", [(0.7, 0.3), (0.9, 0.1), (1.0, 0.0), (0.5, 2.0)])
def test_weighted_sum(kd_weight, ce_weight):
    t = 4.0
    total, terms = distillation_loss(torch.tensor(STUDENT, dtype=torch.float64), torch.tensor(TEACHER, dtype=torch.float64), torch.tensor(LABELS), t, kd_weight, ce_weight)
    expected = kd_weight * _hand_kd(STUDENT, TEACHER, t) + ce_weight * _hand_ce(STUDENT, LABELS)
    assert float(total) == pytest.approx(expected, rel=1e-5)
    assert terms["kd"] == pytest.approx(_hand_kd(STUDENT, TEACHER, t), rel=1e-5)
    assert terms["ce"] == pytest.approx(_hand_ce(STUDENT, LABELS), rel=1e-5)


def test_zero_kd_weight_is_plain_cross_entropy():
    total, terms = distillation_loss(torch.tensor(STUDENT, dtype=torch.float64), torch.tensor(TEACHER, dtype=torch.float64), torch.tensor(LABELS), 4.0, 0.0, 1.0)
    assert float(total) == pytest.approx(_hand_ce(STUDENT, LABELS), rel=1e-6)
    assert "kd" not in terms


def test_identical_logits_give_zero_kd():
    z = torch.tensor(TEACHER, dtype=torch.float64)
    assert float(kd_loss(z, z, 3.0)) == pytest.approx(0.0, abs=1e-7)


def test_no_gradient_flows_into_the_teacher():
    teacher = torch.tensor(TEACHER, requires_grad=True)
    student = torch.tensor(STUDENT, requires_grad=True)
    kd_loss(student, teacher, 2.0).backward()
    assert teacher.grad is None and student.grad is not None
