"""Several teachers as one model: the budget reference when a recipe distils from an ensemble.

The student learns from the members' weighted average of probabilities, so what it should be
held to is that average, not the first member. `Ensemble` computes exactly what distillation
averaged, Σ_i w_i · softmax(z_i) with Σ w_i = 1, and returns its logarithm: log-probabilities are
logits of the same distribution (softmax gives it back), their argmax is the ensemble's vote, and
the whole ensemble exports to one ONNX file that the export and bench stages treat like any teacher.
"""

from __future__ import annotations

from typing import Any

import math

import torch
import torch.nn.functional as F
from torch import nn


def full_precision(x: torch.Tensor) -> torch.Tensor:
    """Half-precision activations (under AMP) are promoted: softmax and logs need the range."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def soft_log_targets(teacher_logits: list[torch.Tensor], temperature: float, weights: list[float] | None = None) -> torch.Tensor:
    """log Σ_i w_i · softmax(z_i / T) with Σ w_i = 1, as logsumexp_i(log w_i + log_softmax(z_i / T)):
    one teacher's log p_T, or the log of several teachers' average."""
    weights = weights or [1.0] * len(teacher_logits)
    total = float(sum(weights))
    logs = [math.log(w / total) + F.log_softmax(full_precision(z.detach()) / temperature, dim=-1) for w, z in zip(weights, teacher_logits) if w > 0]
    return torch.logsumexp(torch.stack(logs), dim=0)



class Ensemble(nn.Module):
    """`class_axis`: where the classes are in the members' outputs (-1: (N, C) or per token (N, S, C);
    1: per pixel (N, C, H, W)); None: the outputs are values (regression), averaged with the weights."""

    def __init__(self, members: list[nn.Module], weights: list[float], class_axis: int | None = -1) -> None:
        super().__init__()
        if len(members) != len(weights) or not members:
            raise ValueError("an ensemble needs one weight per member, and at least one member")
        self.members = nn.ModuleList(members)
        self.weights = [float(w) for w in weights]  # kept in the checkpoint's spec (ensemble_args), not its state
        self.class_axis = class_axis

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        outputs = [member(*args, **kwargs) for member in self.members]
        if self.class_axis is None:  # Σ w_i · outputs_i: what the mse term distilled towards
            total = sum(self.weights)
            return sum(w / total * o for w, o in zip(self.weights, outputs))
        # The very soft targets distillation used, at T = 1: log Σ w_i softmax(z_i), in log space.
        moved = [o.movedim(self.class_axis, -1) for o in outputs]
        return soft_log_targets(moved, 1.0, self.weights).movedim(-1, self.class_axis)


def ensemble_args(member_specs: list[dict[str, Any]], weights: list[float], class_axis: int | None = -1) -> dict[str, Any]:
    """The ModelSpec args of an ensemble checkpoint: every member's own spec, the weights, the class axis."""
    return {"members": member_specs, "weights": list(weights), "class_axis": class_axis}


def build_ensemble(args: dict[str, Any]) -> Ensemble:
    from edgekd.models.build import ModelSpec, build_model

    members = [build_model(ModelSpec.from_dict(spec)) for spec in args["members"]]
    return Ensemble(members, list(args["weights"]), args.get("class_axis", -1))  # older checkpoints: classifiers
