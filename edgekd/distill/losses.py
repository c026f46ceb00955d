"""Distillation losses as pure functions of logits: no state, no config objects.

Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network": the student
matches the teacher's softened distribution p_T = softmax(z / T). The KL term's gradients scale
as 1/T², so it is multiplied by T² to keep its weight comparable across temperatures. The
hard-label cross-entropy is added with its own explicit weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over the batch."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor,
    temperature: float,
    kd_weight: float,
    ce_weight: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """kd_weight · T²·KL(p_T^teacher ‖ p_T^student) + ce_weight · CE(student, labels).

    Returns the total and each term's value for logging. With kd_weight = 0 (or no teacher) it
    is plain cross-entropy scaled by ce_weight.
    """
    ce = F.cross_entropy(student_logits, labels)
    total = ce_weight * ce
    terms = {"ce": float(ce.detach())}
    if teacher_logits is not None and kd_weight > 0:
        kd = kd_loss(student_logits, teacher_logits, temperature)
        total = total + kd_weight * kd
        terms["kd"] = float(kd.detach())
    return total, terms
