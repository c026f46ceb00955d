"""The KD loss against values computed by hand from the formula, term by term."""

import math

import pytest
import torch

from edgekd.distill.losses import kd_loss
from edgekd.distill.objective import Objective
from edgekd.recipe import DistillConfig


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
    assert float(got.detach()) == pytest.approx(_hand_kd(STUDENT, TEACHER, temperature), rel=1e-5)


def test_kd_loss_known_value():
    # T=2, one sample: p_s = softmax([0.5, 1, 0.25]) = (0.29176, 0.48102, 0.22722),
    # p_t = softmax([1, 2, -0.5]) = (0.25372, 0.68967, 0.05661);
    # KL(p_t ‖ p_s) = Σ p_t (log p_t − log p_s) = 0.134370; × T² = 0.537480.
    got = kd_loss(torch.tensor(STUDENT[:1]), torch.tensor(TEACHER[:1]), 2.0)
    assert float(got.detach()) == pytest.approx(0.5374797, rel=1e-5)


def _objective(kd_weight, ce_weight, temperature):
    """The training objective exactly as the distill stage builds it from a recipe's [distill]."""
    cfg = DistillConfig(temperature=temperature, kd_weight=kd_weight, ce_weight=ce_weight)
    return Objective(cfg.terms(), cfg.ce_weight, cfg.temperature, None, None, [1.0], None)


@pytest.mark.parametrize("kd_weight,ce_weight", [(0.7, 0.3), (0.9, 0.1), (1.0, 0.0), (0.5, 2.0)])
def test_weighted_sum(kd_weight, ce_weight):
    t = 4.0
    s, teacher = torch.tensor(STUDENT, dtype=torch.float64), torch.tensor(TEACHER, dtype=torch.float64)
    total, terms = _objective(kd_weight, ce_weight, t)(s, [teacher], torch.tensor(LABELS))
    expected = kd_weight * _hand_kd(STUDENT, TEACHER, t) + ce_weight * _hand_ce(STUDENT, LABELS)
    assert float(total) == pytest.approx(expected, rel=1e-5)
    assert terms["kd"] == pytest.approx(_hand_kd(STUDENT, TEACHER, t), rel=1e-5)
    if ce_weight:
        assert terms["ce"] == pytest.approx(_hand_ce(STUDENT, LABELS), rel=1e-5)


def test_zero_kd_weight_is_plain_cross_entropy():
    s, teacher = torch.tensor(STUDENT, dtype=torch.float64), torch.tensor(TEACHER, dtype=torch.float64)
    total, terms = _objective(0.0, 1.0, 4.0)(s, [teacher], torch.tensor(LABELS))
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


# --- hint, attention transfer, decoupled KD, several teachers -----------------------------------

from edgekd.distill.losses import at_loss, attention_map, dkd_loss, hint_loss, kd_loss_from_log_probs, soft_log_targets, soft_targets  # noqa: E402


def test_hint_loss_is_mean_squared_error():
    s = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    t = torch.tensor([[0.0, 2.0], [5.0, 1.0]], dtype=torch.float64)
    assert float(hint_loss(s, t)) == pytest.approx((1 + 0 + 4 + 9) / 4)


def test_attention_map_and_loss_by_hand():
    # one sample, 2 channels, 1×2 spatial: A_c = [[1, 2]] and [[3, 0]] → mean_c A² = [5, 2]
    s = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]], dtype=torch.float64)
    t = torch.tensor([[[[0.0, 1.0]], [[0.0, 1.0]]]], dtype=torch.float64)  # → [0, 1]
    m_s = [5 / math.sqrt(29), 2 / math.sqrt(29)]
    m_t = [0.0, 1.0]
    assert attention_map(s)[0].tolist() == pytest.approx(m_s)
    expected = ((m_s[0] - m_t[0]) ** 2 + (m_s[1] - m_t[1]) ** 2) / 2
    assert float(at_loss(s, t)) == pytest.approx(expected)


def test_attention_maps_of_different_sizes_are_pooled():
    s = torch.rand(2, 3, 4, 4)
    t = torch.rand(2, 5, 8, 8)
    assert float(at_loss(s, t)) >= 0


def _hand_dkd(s, t, y, temp, alpha, beta):
    p_s, p_t = _softmax(s, temp), _softmax(t, temp)
    b_s, b_t = [p_s[y], 1 - p_s[y]], [p_t[y], 1 - p_t[y]]
    tckd = sum(bt * math.log(bt / bs) for bs, bt in zip(b_s, b_t))
    others = [i for i in range(len(s)) if i != y]
    q_s = _softmax([s[i] for i in others], temp)
    q_t = [p_t[i] / (1 - p_t[y]) for i in others]
    nckd = sum(qt * math.log(qt / qs) for qs, qt in zip(q_s, q_t))
    return (alpha * tckd + beta * nckd) * temp**2


@pytest.mark.parametrize("temperature,alpha,beta", [(1.0, 1.0, 8.0), (4.0, 1.0, 8.0), (2.0, 0.5, 2.0)])
def test_dkd_matches_hand_computed(temperature, alpha, beta):
    s = torch.tensor(STUDENT, dtype=torch.float64)
    t = torch.tensor(TEACHER, dtype=torch.float64)
    y = torch.tensor(LABELS)
    got = dkd_loss(s, soft_log_targets([t], temperature), y, temperature, alpha, beta)
    expected = sum(_hand_dkd(STUDENT[i], TEACHER[i], LABELS[i], temperature, alpha, beta) for i in range(2)) / 2
    assert float(got.detach()) == pytest.approx(expected, rel=1e-6)


def test_dkd_reduces_to_kd():
    # Zhao et al. 2022, eq. (3): KD = TCKD + (1 − p_t^target) · NCKD, per sample.
    s = torch.tensor(STUDENT[:1], dtype=torch.float64)
    t = torch.tensor(TEACHER[:1], dtype=torch.float64)
    y = torch.tensor(LABELS[:1])
    temp = 3.0
    p_target = float(soft_targets([t], temp)[0, LABELS[0]])
    assert float(dkd_loss(s, soft_log_targets([t], temp), y, temp, 1.0, 1 - p_target)) == pytest.approx(float(kd_loss(s, t, temp)), rel=1e-6)


def test_several_teachers_average_their_soft_targets_not_their_logits():
    t1 = torch.tensor([[4.0, 0.0, 0.0]], dtype=torch.float64)
    t2 = torch.tensor([[0.0, 4.0, 0.0]], dtype=torch.float64)
    averaged = soft_targets([t1, t2], 2.0, weights=[3.0, 1.0])
    expected = [0.75 * a + 0.25 * b for a, b in zip(_softmax([4, 0, 0], 2.0), _softmax([0, 4, 0], 2.0))]
    assert averaged[0].tolist() == pytest.approx(expected)
    assert float(averaged.sum()) == pytest.approx(1.0)
    s = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    hand = 4.0 * sum(p * (math.log(p) - math.log(q)) for p, q in zip(expected, _softmax([1, 1, 0], 2.0)))
    assert float(kd_loss_from_log_probs(s, averaged.log(), 2.0)) == pytest.approx(hand, rel=1e-6)


def _dkd_float64_reference(student: torch.Tensor, teacher: torch.Tensor, label: int, temp: float, alpha: float, beta: float) -> torch.Tensor:
    """DKD of one sample straight from its definition, in float64 (exact at these gaps: exp(−100) is a normal float64)."""
    ls, lt = torch.log_softmax(student / temp, 0), torch.log_softmax(teacher / temp, 0)
    others = [i for i in range(len(student)) if i != label]
    b_s = torch.stack([ls[label], torch.logsumexp(ls[others], 0)])
    b_t = torch.stack([lt[label], torch.logsumexp(lt[others], 0)])
    tckd = (b_t.exp() * (b_t - b_s)).sum()
    q_s, q_t = torch.log_softmax(student[others] / temp, 0), torch.log_softmax(teacher[others] / temp, 0)
    nckd = (q_t.exp() * (q_t - q_s)).sum()
    return (alpha * tckd + beta * nckd) * temp**2


@pytest.mark.parametrize("gap", [1.0, 10.0, 30.0, 60.0, 100.0])
@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_dkd_matches_an_exact_reference_at_large_logit_gaps(gap, temperature):
    """Confident teachers and students (gaps up to 100·T) in float32: no clamp bends the value or kills the gradient."""
    student64 = torch.tensor([[gap * temperature, 0.0, -0.5 * gap * temperature, 1.0],
                              [0.0, 2.0, gap * temperature, -gap * temperature]], dtype=torch.float64)
    teacher64 = torch.tensor([[0.3 * gap * temperature, gap * temperature, 0.0, -1.0],
                              [gap * temperature, 0.0, 0.5, -3.0]], dtype=torch.float64)
    labels = torch.tensor([1, 0])
    reference = torch.stack([_dkd_float64_reference(student64[i], teacher64[i], int(labels[i]), temperature, 1.0, 8.0) for i in range(2)]).mean()
    student32 = student64.float().requires_grad_(True)
    got = dkd_loss(student32, soft_log_targets([teacher64.float()], temperature), labels, temperature, 1.0, 8.0)
    assert float(got.detach()) == pytest.approx(float(reference), rel=1e-4, abs=1e-6)
    assert float(got.detach()) >= 0, "a KL divergence is never negative"
    student_ref = student64.clone().requires_grad_(True)
    torch.stack([_dkd_float64_reference(student_ref[i], teacher64[i], int(labels[i]), temperature, 1.0, 8.0) for i in range(2)]).mean().backward()
    got.backward()
    assert torch.isfinite(student32.grad).all()
    assert torch.allclose(student32.grad.double(), student_ref.grad, rtol=1e-3, atol=1e-5), "the gradient survives large gaps"


def test_averaged_teachers_stay_exact_in_log_space():
    t1 = torch.tensor([[400.0, 0.0, 0.0]])
    t2 = torch.tensor([[0.0, 400.0, 0.0]])
    log_avg = soft_log_targets([t1, t2], 1.0, weights=[3.0, 1.0])
    assert torch.allclose(log_avg[0, :2], torch.log(torch.tensor([0.75, 0.25])))
    assert float(log_avg[0, 2]) == pytest.approx(-400.0 + math.log(0.75) + math.log1p(math.exp(math.log(1 / 3))), rel=1e-4), \
        "a probability of e^-400 is kept as its logarithm, not rounded to 0"


def test_mixup_cross_entropy_blends_the_two_labels_per_input():
    from edgekd.distill.losses import MixedLabels, hard_label_loss

    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    first, second, share = torch.tensor([0, 2]), torch.tensor([1, 0]), torch.tensor([0.7, 0.25])
    log_p = [[2.0 - math.log(math.exp(2.0) + math.exp(0.5) + math.exp(-1.0)), 0.5 - math.log(math.exp(2.0) + math.exp(0.5) + math.exp(-1.0))],
             [3.0 - math.log(math.exp(0.1) + math.exp(0.2) + math.exp(3.0)), 0.1 - math.log(math.exp(0.1) + math.exp(0.2) + math.exp(3.0))]]
    expected = (-(0.7 * log_p[0][0] + 0.3 * log_p[0][1]) - (0.25 * log_p[1][0] + 0.75 * log_p[1][1])) / 2
    assert float(hard_label_loss(logits, MixedLabels(first, second, share))) == pytest.approx(expected, rel=1e-6)
    whole = MixedLabels(first, second, torch.ones(2))
    assert float(hard_label_loss(logits, whole)) == pytest.approx(float(hard_label_loss(logits, first)), rel=1e-6)


def test_dkd_refuses_mixup_batches():
    from edgekd.distill.losses import MixedLabels
    from edgekd.recipe import LossTerm

    objective = Objective([LossTerm(method="dkd")], 1.0, 4.0, None, None, [1.0], None)
    labels = MixedLabels(torch.tensor([0]), torch.tensor([1]), torch.tensor([0.5]))
    with pytest.raises(ValueError, match="mixup"):
        objective(torch.zeros(1, 3), [torch.zeros(1, 3)], labels)
