"""Several teachers as one model: the budget reference when a recipe distils from an ensemble.

The student learns from the members' weighted average of probabilities, so what it should be
held to is that average, not the first member. `Ensemble` computes exactly what distillation
averaged, Σ_i w_i · softmax(z_i) with Σ w_i = 1, and returns its logarithm: log-probabilities are
logits of the same distribution (softmax gives it back), their argmax is the ensemble's vote, and
the whole ensemble exports to one ONNX file that the export and bench stages treat like any teacher.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgekd.distill.losses import soft_log_targets


class Ensemble(nn.Module):
    def __init__(self, members: list[nn.Module], weights: list[float]) -> None:
        super().__init__()
        if len(members) != len(weights) or not members:
            raise ValueError("an ensemble needs one weight per member, and at least one member")
        self.members = nn.ModuleList(members)
        self.weights = [float(w) for w in weights]  # kept in the checkpoint's spec (ensemble_args), not its state

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        # The very soft targets distillation used, at T = 1: log Σ w_i softmax(z_i), in log space.
        return soft_log_targets([member(*args, **kwargs) for member in self.members], 1.0, self.weights)


def ensemble_args(member_specs: list[dict[str, Any]], weights: list[float]) -> dict[str, Any]:
    """The ModelSpec args of an ensemble checkpoint: every member's own spec, and the weights."""
    return {"members": member_specs, "weights": list(weights)}


def build_ensemble(args: dict[str, Any]) -> Ensemble:
    from edgekd.models.build import ModelSpec, build_model

    members = [build_model(ModelSpec.from_dict(spec)) for spec in args["members"]]
    return Ensemble(members, list(args["weights"]))
