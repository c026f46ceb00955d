"""The training objective of one run: ce_weight·CE + Σ weight·term over the recipe's loss terms.

It owns what the terms need beyond logits: the forward hooks that capture named layers, and the
adapters that map student features to teacher features (trained with the student, never
exported). Each term's value is reported separately, so the log shows what each one does.
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.distill.features import FeatureTap, make_adapter
from edgekd.distill.losses import (
    MixedLabels,
    at_loss,
    dkd_loss,
    hard_label_loss,
    hint_loss,
    kd_loss_from_log_probs,
    soft_log_targets,
)
from edgekd.errors import ModelError
from edgekd.models.call import Batch, forward
from edgekd.recipe import LossTerm

FEATURE_METHODS = ("hint", "at")


class Objective:
    def __init__(
        self,
        terms: list[LossTerm],
        ce_weight: float,
        default_temperature: float,
        student: nn.Module | None,
        feature_teacher: nn.Module | None,
        teacher_weights: list[float],
        sample: Batch | None,
    ) -> None:
        """`student` and `sample` (a batch of named inputs) are needed only by hint/at terms (hooks and a dry pass)."""
        self.terms = terms
        self.ce_weight = ce_weight
        self.default_temperature = default_temperature
        self.teacher_weights = teacher_weights
        self.names = _names(terms)
        feature_terms = [t for t in terms if t.method in FEATURE_METHODS]
        self.student_tap = self.teacher_tap = None
        self.adapters = nn.ModuleDict()
        if feature_terms:
            if feature_teacher is None:
                raise ModelError("hint/at terms need a PyTorch teacher: an ONNX teacher gives logits only")
            self.student_tap = FeatureTap(student, [t.student_layer for t in feature_terms], "student")
            self.teacher_tap = FeatureTap(feature_teacher, [t.teacher_layer for t in feature_terms], "teacher")
            with torch.no_grad():  # a dry pass: shapes for the adapters, and paths proven before training
                was = student.training
                student.eval()
                forward(student, sample)
                student.train(was)
                forward(feature_teacher, sample)
            for index, term in enumerate(terms):
                if term.method == "hint":
                    s = self.student_tap.outputs[term.student_layer].shape
                    t = self.teacher_tap.outputs[term.teacher_layer].shape
                    self.adapters[str(index)] = make_adapter(s, t)
                elif term.method == "at":
                    for role, out in (("student", self.student_tap.outputs[term.student_layer]), ("teacher", self.teacher_tap.outputs[term.teacher_layer])):
                        if out.ndim not in (3, 4):
                            raise ModelError(f"attention transfer needs (N, C, H, W) or (N, sequence, hidden) features; the {role} layer gives {tuple(out.shape)}")

    @property
    def needs_teacher_features(self) -> bool:
        return self.teacher_tap is not None

    @property
    def needs_teacher_logits(self) -> bool:
        return any(t.method in ("kd", "dkd") and t.weight > 0 for t in self.terms)

    def __call__(self, student_logits: torch.Tensor, teacher_logits: list[torch.Tensor] | None,
                 labels: torch.Tensor | MixedLabels | None, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """The batch's loss and each term's value; `labels=None` (unlabelled data) skips CE and DKD.

        `mask` (the batch's attention_mask) keeps padded tokens out of hint and at on hidden states."""
        parts: dict[str, float] = {}
        total = student_logits.new_zeros(())
        if labels is not None and self.ce_weight > 0:
            ce = hard_label_loss(student_logits, labels)
            total = total + self.ce_weight * ce
            parts["ce"] = float(ce.detach())
        for index, term in enumerate(self.terms):
            if term.weight == 0:
                continue
            temperature = term.temperature or self.default_temperature
            if term.method == "kd":
                value = kd_loss_from_log_probs(student_logits, soft_log_targets(teacher_logits, temperature, self.teacher_weights), temperature)
            elif term.method == "dkd":
                if labels is None:
                    continue
                if isinstance(labels, MixedLabels):
                    raise ValueError("dkd needs each input's one true class; mixup batches have two")
                value = dkd_loss(student_logits, soft_log_targets(teacher_logits, temperature, self.teacher_weights), labels, temperature, term.alpha, term.beta)
            else:
                s = self.student_tap.outputs[term.student_layer]
                t = self.teacher_tap.outputs[term.teacher_layer]
                value = hint_loss(self.adapters[str(index)](s), t, mask) if term.method == "hint" else at_loss(s, t, mask)
            total = total + term.weight * value
            parts[self.names[index]] = float(value.detach())
        return total, parts

    def close(self) -> None:
        for tap in (self.student_tap, self.teacher_tap):
            if tap is not None:
                tap.close()


def _names(terms: list[LossTerm]) -> list[str]:
    """'kd', 'hint', ... — with the layer pair when a method appears more than once."""
    counts = {m: sum(t.method == m for t in terms) for m in {t.method for t in terms}}
    names = []
    for index, term in enumerate(terms):
        name = term.method
        if counts[term.method] > 1:
            name += f"[{term.student_layer}→{term.teacher_layer}]" if term.student_layer else f"#{index}"
        names.append(name)
    return names
