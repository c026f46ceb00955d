"""The training objective of one run: ce_weight·(the task's hard-label loss) + Σ weight·term over
the recipe's loss terms.

It owns what the terms need beyond logits: the forward hooks that capture named layers, and the
adapters that map student features to teacher features (trained with the student, never
exported). Each term's value is reported separately, so the log shows what each one does. Which
method needs what, and which function below computes its term, is the methods table's
(edgekd/methods.py): the objective asks the table, never a method's name.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from edgekd.distill.features import FeatureTap, make_adapter
from edgekd.distill.losses import (
    MixedLabels,
    at_loss,
    cwd_loss,
    dense_positions,
    dkd_loss,
    hint_loss,
    pearson_loss,
    kd_loss_from_log_probs,
    soft_log_targets,
    teacher_output_loss,
)
from edgekd.errors import ModelError
from edgekd.methods import method
from edgekd.models.call import Batch, forward
from edgekd.recipe import LossTerm
from edgekd.task import IGNORED, task


@dataclass(frozen=True)
class TermInputs:
    """What a method's term may read for one batch."""

    student_logits: torch.Tensor
    teacher_logits: list[torch.Tensor] | None  # one tensor per teacher
    teacher_weights: list[float]
    labels: torch.Tensor | MixedLabels | None  # None: unlabelled data
    student_features: torch.Tensor | None  # the term's student_layer output (layer methods)
    teacher_features: torch.Tensor | None
    adapter: nn.Module | None  # maps student features to the teacher's shape (hint)
    mask: torch.Tensor | None  # attention_mask: padded tokens stay out of features on hidden states
    temperature: float  # the term's, else the recipe's default
    student_map: torch.Tensor | None = None  # dense tasks: the (N, C, H, W) outputs (cwd); student_logits are then per position
    teacher_maps: list[torch.Tensor] | None = None


def kd_term(x: TermInputs, term: LossTerm) -> torch.Tensor:
    return kd_loss_from_log_probs(x.student_logits, soft_log_targets(x.teacher_logits, x.temperature, x.teacher_weights), x.temperature)


def dkd_term(x: TermInputs, term: LossTerm) -> torch.Tensor | None:
    if x.labels is None:
        return None
    if isinstance(x.labels, MixedLabels):
        raise ValueError("dkd needs each input's one true class; mixup batches have two")
    return dkd_loss(x.student_logits, soft_log_targets(x.teacher_logits, x.temperature, x.teacher_weights), x.labels,
                    x.temperature, term.alpha, term.beta)


def cwd_term(x: TermInputs, term: LossTerm) -> torch.Tensor:
    if x.student_map is None or x.student_map.ndim != 4:
        raise ValueError("cwd needs (N, C, H, W) output maps")
    return cwd_loss(x.student_map, x.teacher_maps, x.temperature, x.teacher_weights)


def mse_term(x: TermInputs, term: LossTerm) -> torch.Tensor:
    return teacher_output_loss(x.student_logits, x.teacher_logits, x.teacher_weights)


def detection_kd_term(x: TermInputs, term: LossTerm) -> torch.Tensor:
    from edgekd.detection.loss import detection_kd_loss

    return detection_kd_loss(x.student_logits, x.teacher_logits, x.temperature, x.teacher_weights)


def hint_term(x: TermInputs, term: LossTerm) -> torch.Tensor:
    return hint_loss(x.adapter(x.student_features), x.teacher_features, x.mask)


def pkd_term(x: TermInputs, term: LossTerm) -> torch.Tensor:
    return pearson_loss(x.adapter(x.student_features), x.teacher_features)


def at_term(x: TermInputs, term: LossTerm) -> torch.Tensor:
    return at_loss(x.student_features, x.teacher_features, x.mask)


def term_function(name: str) -> Callable[[TermInputs, LossTerm], torch.Tensor | None]:
    """The function the methods table names for `name`'s term."""
    module, function = method(name).term.split(":")
    return getattr(importlib.import_module(module), function)


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
        task_name: str = "classification",
    ) -> None:
        """`student` and `sample` (a batch of named inputs) are needed only by hint/at terms (hooks and a
        dry pass); `task_name` chooses the hard-label loss (the task table's)."""
        kind = task(task_name)
        self.class_axis = kind.class_axis  # dense tasks: terms and the hard-label loss run per position
        module, function = kind.hard_loss.split(":")
        self.hard_loss, self.hard_loss_name = getattr(importlib.import_module(module), function), kind.hard_loss_name
        if kind.hard_loss_reads_model:  # detection: the loss reads the student's positions
            self.hard_loss = functools.partial(self.hard_loss, model=student)
        self.terms = terms
        self.ce_weight = ce_weight
        self.default_temperature = default_temperature
        self.teacher_weights = teacher_weights
        self.names = _names(terms)
        self.functions = [term_function(t.method) for t in terms]
        feature_terms = [t for t in terms if method(t.method).uses_layers]
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
                self._prepare_layers(index, term)

    def _prepare_layers(self, index: int, term: LossTerm) -> None:
        """A layer term's adapter (its shapes come from the dry pass), or the check that a map over
        positions can be made of its layers."""
        m = method(term.method)
        if not m.uses_layers:
            return
        s, t = self.student_tap.outputs[term.student_layer], self.teacher_tap.outputs[term.teacher_layer]
        if m.adapter:
            self.adapters[str(index)] = make_adapter(s.shape, t.shape)
            return
        for role, out in (("student", s), ("teacher", t)):
            if out.ndim not in (3, 4):
                raise ModelError(f"{m.title} needs (N, C, H, W) or (N, sequence, hidden) features; the {role} layer gives {tuple(out.shape)}")

    @property
    def needs_teacher_features(self) -> bool:
        return self.teacher_tap is not None

    @property
    def needs_teacher_logits(self) -> bool:
        return any(method(t.method).uses_logits and t.weight > 0 for t in self.terms)

    def __call__(self, student_logits: torch.Tensor, teacher_logits: list[torch.Tensor] | None,
                 labels: torch.Tensor | MixedLabels | None, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """The batch's loss and each term's value; `labels=None` (unlabelled data) skips CE and DKD.

        `mask` (the batch's attention_mask) keeps padded tokens out of hint and at on hidden states."""
        parts: dict[str, float] = {}
        total = student_logits.new_zeros(())
        maps = None
        if self.class_axis is not None:
            outputs = student_logits
            student_logits, teacher_logits, labels, *maps = dense_positions(student_logits, teacher_logits, labels, self.class_axis, IGNORED)
            if len(student_logits) == 0:  # every position of this batch ignored (void tiles): nothing to learn, no NaN
                return outputs.sum() * 0.0, parts
        if labels is not None and self.ce_weight > 0:
            hard = self.hard_loss(student_logits, labels)
            total = total + self.ce_weight * hard
            parts[self.hard_loss_name] = float(hard.detach())
        for index, term in enumerate(self.terms):
            if term.weight == 0:
                continue
            value = self.functions[index](self._inputs(index, term, student_logits, teacher_logits, labels, mask, maps), term)
            if value is None:
                continue
            total = total + term.weight * value
            parts[self.names[index]] = float(value.detach())
        return total, parts

    def _inputs(self, index: int, term: LossTerm, student_logits: torch.Tensor, teacher_logits: list[torch.Tensor] | None,
                labels: torch.Tensor | MixedLabels | None, mask: torch.Tensor | None, maps: list | None) -> TermInputs:
        layers = method(term.method).uses_layers
        return TermInputs(
            student_logits, teacher_logits, self.teacher_weights, labels,
            self.student_tap.outputs[term.student_layer] if layers else None,
            self.teacher_tap.outputs[term.teacher_layer] if layers else None,
            self.adapters[str(index)] if str(index) in self.adapters else None,
            mask, term.temperature or self.default_temperature, *(maps or (None, None)),
        )

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
