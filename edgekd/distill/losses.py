"""Distillation losses as pure functions of tensors: no state, no config objects.

- `kd_loss`: Hinton, Vinyals & Dean (2015). The student matches the teacher's softened
  distribution p_T = softmax(z / T); the KL term's gradients scale as 1/T², so it is multiplied by
  T² to keep its weight comparable across temperatures.
- `hint_loss`: FitNets (Romero et al., 2015): mean squared error between the teacher's hint layer
  and the student's guided layer passed through a learned adapter (regressor). For transformer
  hidden states (N, sequence, hidden) the mean runs over real tokens only (the attention mask).
- `at_loss`: attention transfer (Zagoruyko & Komodakis, 2017): match the L2-normalised spatial
  attention maps Σ_c |A_c|² of a teacher and a student layer. As in the authors' code, the loss is
  the mean squared difference of the normalised maps; the paper's β/2 belongs in the term weight.
  On transformer hidden states the map is over tokens (Σ_h |A_h|² per token, padding zeroed).
- `hard_label_loss`: the usual cross-entropy, blended per input for mixup batches (Zhang et al. 2018).
- `cwd_loss`: channel-wise distillation (Shu et al. 2021) for dense maps: each channel becomes a
  distribution over the spatial positions (softmax of map/T over H·W); the student matches the
  teacher's per channel, T²·KL averaged over channels and images. Where per-pixel KD treats pixels as
  independent samples, CWD transfers where each class's evidence sits.
- `dense_positions`: dense outputs (N, C, H, W) or (N, S, C) as per-position samples (M, C) over
  the scored pixels or tokens, maps resized to the labels' resolution first, so kd/dkd/ce apply
  per pixel or per token unchanged (averaged over the scored positions).
- `dkd_loss`: decoupled KD (Zhao et al., 2022): KD split into a target-class term (binary
  target/non-target distributions, TCKD) and a non-target term (distribution among the other
  classes, NCKD), weighted α·TCKD + β·NCKD, each scaled by T².

Teacher targets are passed as *log*-probabilities where several teachers may be averaged: the
average of the teachers' softened distributions (not of their logits), kept in log space
(logsumexp) so that a confident teacher's small probabilities never round to 0 and no term needs an
epsilon clamp: at logit gaps of 100·T, exp(−100) is below float32's normal range, and a clamp at
1e-12 would turn a 2.33 DKD term into −0.54 and cut its gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from edgekd.models.ensemble import full_precision as _wide
from edgekd.models.ensemble import soft_log_targets


@dataclass(frozen=True)
class MixedLabels:
    """The labels of a mixup batch, whose input i is share[i]·x_i + (1 − share[i])·x_j, j = partner."""

    first: torch.Tensor  # (N,) label of x_i
    second: torch.Tensor  # (N,) label of its partner x_j
    share: torch.Tensor  # (N,) weight of x_i in the blend


def hard_label_loss(student_logits: torch.Tensor, labels: torch.Tensor | MixedLabels) -> torch.Tensor:
    """Cross-entropy with the true labels; for mixup, share·CE(first) + (1 − share)·CE(second) per input."""
    logits = _wide(student_logits)
    if isinstance(labels, MixedLabels):
        first = F.cross_entropy(logits, labels.first, reduction="none")
        second = F.cross_entropy(logits, labels.second, reduction="none")
        return (labels.share * first + (1 - labels.share) * second).mean()
    return F.cross_entropy(logits, labels)


def mse_loss(student_outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Regression's hard-label loss: the mean squared error over every target of every sample."""
    return F.mse_loss(_wide(student_outputs), _wide(targets).reshape(student_outputs.shape))


def teacher_output_loss(student_outputs: torch.Tensor, teacher_outputs: list[torch.Tensor], weights: list[float] | None = None) -> torch.Tensor:
    """Regression's soft-target term (Ba & Caruana 2014 regress the teacher's outputs): MSE to
    Σ_i w_i · teacher_i's outputs, Σ w_i = 1. No temperature: there are no probabilities to soften."""
    weights = weights or [1.0] * len(teacher_outputs)
    total = sum(weights)
    target = sum(w / total * _wide(t) for w, t in zip(weights, teacher_outputs))
    return F.mse_loss(_wide(student_outputs), target.detach())


def soft_targets(teacher_logits: list[torch.Tensor], temperature: float, weights: list[float] | None = None) -> torch.Tensor:
    """Σ_i w_i · softmax(z_i / T) with Σ w_i = 1: one teacher's p_T, or several teachers' average."""
    return soft_log_targets(teacher_logits, temperature, weights).exp()


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over the batch."""
    return kd_loss_from_log_probs(student_logits, soft_log_targets([teacher_logits], temperature), temperature)


def kd_loss_from_log_probs(student_logits: torch.Tensor, teacher_log_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(p_teacher ‖ softmax(student/T)) for given teacher log-probabilities (exact where p underflows)."""
    log_p_student = F.log_softmax(_wide(student_logits) / temperature, dim=-1)
    kl = F.kl_div(log_p_student, teacher_log_probs.detach(), reduction="batchmean", log_target=True)
    return kl * temperature**2


def cwd_loss(student_map: torch.Tensor, teacher_maps: list[torch.Tensor], temperature: float, weights: list[float] | None = None) -> torch.Tensor:
    """T²/(N·C) · Σ_n Σ_c KL(φ(teacher_c / T) ‖ φ(student_c / T)), φ a softmax over the H·W positions
    of a channel; several teachers' spatial distributions are averaged with their weights."""
    n, c = student_map.shape[:2]
    log_student = F.log_softmax(_wide(student_map).reshape(n, c, -1) / temperature, dim=-1)
    log_teacher = soft_log_targets([t.reshape(n, c, -1) for t in teacher_maps], temperature, weights)
    kl = F.kl_div(log_student, log_teacher.detach(), reduction="sum", log_target=True)
    return kl / (n * c) * temperature**2


def resize_map(outputs: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """(N, C, h, w) maps at (H, W): bilinear, as the numpy scorer (task.resize_bilinear) does it."""
    if outputs.ndim != 4 or tuple(outputs.shape[-2:]) == tuple(size):
        return outputs
    return F.interpolate(outputs, size=tuple(size), mode="bilinear", align_corners=False)


def dense_positions(student: torch.Tensor, teachers: list[torch.Tensor] | None, labels: torch.Tensor | None, class_axis: int,
                    ignored: int) -> tuple[torch.Tensor, list[torch.Tensor] | None, torch.Tensor | None, torch.Tensor, list[torch.Tensor] | None]:
    """Dense outputs as samples of one position each: (student (M, C), teachers (M, C), labels (M,),
    student map, teacher maps), maps resized to the labels' size (without labels: the student's),
    positions whose label is `ignored` left out. Per-token outputs (N, S, C) of a batch cut to its
    longest text take the labels and (cached) teacher outputs cut alike: beyond it is padding."""
    if student.ndim == 3:
        length = student.shape[1]
        labels = labels[:, :length] if labels is not None else None
        teachers = [t[:, :length] for t in teachers] if teachers is not None else None
    size = tuple(labels.shape[1:]) if labels is not None else tuple(student.shape[2:])
    student_map = resize_map(student, size)
    teacher_maps = [resize_map(t, size) for t in teachers] if teachers is not None else None

    def flat(z: torch.Tensor) -> torch.Tensor:
        return z.movedim(class_axis, -1).reshape(-1, z.shape[class_axis])

    keep = labels.reshape(-1) != ignored if labels is not None else None
    pick = (lambda z: flat(z)[keep]) if keep is not None else flat
    return (pick(student_map), [pick(t) for t in teacher_maps] if teacher_maps is not None else None,
            labels.reshape(-1)[keep] if labels is not None else None, student_map, teacher_maps)


def hint_loss(adapted_student: torch.Tensor, teacher_feature: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """FitNets: mean squared error between adapter(student guided layer) and the teacher hint.

    With `mask` (N, sequence) and features (N, sequence, hidden), padded tokens do not count."""
    student, teacher = _wide(adapted_student), _wide(teacher_feature.detach())
    if mask is None or student.ndim != 3:
        return F.mse_loss(student, teacher)
    weights = mask.to(student.dtype).unsqueeze(-1)  # (N, S, 1)
    return ((student - teacher).pow(2) * weights).sum() / (weights.sum() * student.shape[-1]).clamp_min(1.0)


def pearson_loss(adapted_student: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """PKD (Cao et al. 2022): each channel of both (N, C, H, W) maps standardised over the batch and
    the positions (zero mean, unit variance), then MSE / 2 — 1 minus the mean Pearson correlation of
    the two channels. Magnitudes drop out: a teacher whose features are 10× larger, or a detector of
    another family, is matched on the pattern alone, with no weight to tune per pair."""
    if adapted_student.ndim != 4:
        raise ValueError(f"pkd needs (N, C, H, W) feature maps; got shape {tuple(adapted_student.shape)}")

    def standardise(feature: torch.Tensor) -> torch.Tensor:
        channels = feature.transpose(0, 1).flatten(1)  # (C, N·H·W)
        return (channels - channels.mean(1, keepdim=True)) / (channels.std(1, keepdim=True) + 1e-6)

    return F.mse_loss(standardise(_wide(adapted_student)), standardise(_wide(teacher_feature.detach()))) / 2


def attention_map(feature: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Attention Σ_c |A_c|² / C, L2-normalised: spatial for (N, C, H, W), per token for (N, S, H)."""
    if feature.ndim == 3:
        energy = _wide(feature).pow(2).mean(dim=2)  # (N, S)
        if mask is not None:
            energy = energy * mask.to(energy.dtype)
        return F.normalize(energy, dim=1)
    if feature.ndim != 4:
        raise ValueError(f"attention transfer needs (N, C, H, W) or (N, sequence, hidden) features; got shape {tuple(feature.shape)}")
    return F.normalize(_wide(feature).pow(2).mean(dim=1).flatten(1), dim=1)


def at_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared difference of the two layers' normalised attention maps.

    Maps of different spatial size are compared at the smaller size (adaptive average pooling);
    token maps (N, S, hidden) need the same tokens, and the mask keeps padding out.
    """
    if student_feature.ndim == 3:
        if student_feature.shape[1] != teacher_feature.shape[1]:
            raise ValueError(f"token attention maps need the same tokens; the student has {student_feature.shape[1]}, the teacher {teacher_feature.shape[1]}")
        return (attention_map(student_feature, mask) - attention_map(teacher_feature.detach(), mask)).pow(2).mean()
    size = [min(a, b) for a, b in zip(student_feature.shape[-2:], teacher_feature.shape[-2:])]
    s = F.adaptive_avg_pool2d(student_feature, size) if list(student_feature.shape[-2:]) != size else student_feature
    t = F.adaptive_avg_pool2d(teacher_feature.detach(), size) if list(teacher_feature.shape[-2:]) != size else teacher_feature.detach()
    return (attention_map(s) - attention_map(t)).pow(2).mean()


def dkd_loss(
    student_logits: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float = 1.0,
    beta: float = 8.0,
) -> torch.Tensor:
    """α·TCKD + β·NCKD (Zhao et al. 2022), each T²-scaled and averaged over the batch.

    TCKD = KL(b_T ‖ b_S) with b = (p_target, 1 − p_target); NCKD = KL(p̂_T ‖ p̂_S) with p̂ the
    distribution among the non-target classes (p renormalised with the target class removed).
    Everything stays in log space: log(1 − p_target) is the logsumexp of the non-target
    log-probabilities, p̂ is a log-softmax over the non-target classes, and terms whose teacher
    probability is exactly 0 contribute 0 (the limit of p·log p), without epsilons.
    """
    t = temperature
    target = F.one_hot(labels, student_logits.shape[-1]).bool()
    log_p_student = F.log_softmax(_wide(student_logits) / t, dim=-1)
    log_p_teacher = _wide(teacher_log_probs.detach())
    minus_inf = torch.finfo(log_p_student.dtype).min

    def binary(log_p: torch.Tensor) -> torch.Tensor:  # (N, 2): log p_target, log(1 − p_target)
        on_target = log_p.masked_fill(~target, float("-inf")).logsumexp(1)
        off_target = log_p.masked_fill(target, float("-inf")).logsumexp(1)
        return torch.stack([on_target, off_target], dim=1)

    def kl(log_p: torch.Tensor, log_q: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Σ p (log p − log q) over `keep`, with 0 · log 0 = 0 and no NaN gradients from −inf entries."""
        present = keep & torch.isfinite(log_p)
        safe_p = torch.where(present, log_p, torch.zeros_like(log_p))
        safe_q = torch.where(present, log_q, torch.zeros_like(log_q))
        return torch.where(present, safe_p.exp() * (safe_p - safe_q), torch.zeros_like(log_p)).sum(1)

    b_teacher, b_student = binary(log_p_teacher), binary(log_p_student)
    tckd = kl(b_teacher, b_student, torch.ones_like(b_teacher, dtype=torch.bool)).mean()
    others = ~target
    log_q_teacher = log_p_teacher - b_teacher[:, 1:2]  # renormalised over the non-target classes
    log_q_student = F.log_softmax((_wide(student_logits) / t).masked_fill(target, minus_inf), dim=-1)
    nckd = kl(log_q_teacher, log_q_student, others).mean()
    return (alpha * tckd + beta * nckd) * t**2
