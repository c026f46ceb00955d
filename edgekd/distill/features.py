"""Intermediate features by module path, captured with forward hooks; adapters between them.

User models stay untouched: a layer is named by its path in `named_modules()` ("features.3",
"body.1.conv"), and a forward hook records its output. A wrong path fails before training with
the closest valid paths. Hooks go on the unwrapped module, so they also fire under
DistributedDataParallel. Adapters (1×1 conv or linear) map the student's feature to the
teacher's shape; they train with the student and never reach the exported model.
"""

from __future__ import annotations

import difflib

import torch
from torch import nn

from edgekd.errors import ModelError
from edgekd.models.build import layers_of


def check_paths(model: nn.Module, paths: list[str], role: str) -> None:
    """Raise naming the closest valid paths when a layer path does not exist in `model`."""
    valid = [name for name, _ in layers_of(model).named_modules() if name]
    for path in paths:
        if path not in valid:
            close = difflib.get_close_matches(path, valid, n=3, cutoff=0.3)
            hint = f"closest: {', '.join(repr(c) for c in close)}; " if close else ""
            shown = ", ".join(valid[:25]) + (" ..." if len(valid) > 25 else "")
            raise ModelError(f"{role} has no layer '{path}'; {hint}valid paths: {shown}")


class FeatureTap:
    """Records the outputs of named layers on every forward pass (until `close()`)."""

    def __init__(self, model: nn.Module, paths: list[str], role: str) -> None:
        check_paths(model, paths, role)
        self.outputs: dict[str, torch.Tensor] = {}
        modules = dict(layers_of(model).named_modules())
        self._handles = [modules[p].register_forward_hook(self._recorder(p)) for p in dict.fromkeys(paths)]

    def _recorder(self, path: str):
        def hook(_module, _inputs, output):
            self.outputs[path] = output[0] if isinstance(output, (tuple, list)) else output

        return hook

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def make_adapter(student_shape: torch.Size, teacher_shape: torch.Size) -> nn.Module:
    """The regressor from the student's feature shape to the teacher's (batch axis excluded).

    (C, H, W) → (C', H', W'): a 1×1 convolution, with average pooling when the student's map is
    larger; (sequence, hidden) → (sequence, hidden'): a linear map applied to every token;
    anything → (D,): flatten and a linear layer; identical shapes still get a learned
    1×1/linear map, as FitNets' regressor does.
    """
    s, t = tuple(student_shape[1:]), tuple(teacher_shape[1:])
    if len(s) == 3 and len(t) == 3:
        layers: list[nn.Module] = [nn.Conv2d(s[0], t[0], kernel_size=1, bias=False)]
        if s[1:] != t[1:]:
            if s[1] < t[1] or s[2] < t[2]:
                layers.append(nn.Upsample(size=t[1:], mode="bilinear", align_corners=False))
            else:
                layers.append(nn.AdaptiveAvgPool2d(t[1:]))
        return nn.Sequential(*layers)
    if len(s) == 2 and len(t) == 2 and s[0] == t[0]:  # hidden states (sequence, hidden) of the same tokens: one map per token
        return nn.Linear(s[1], t[1])
    if len(t) == 1:
        return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(s).prod()), t[0]))
    raise ModelError(f"no adapter from a student feature of shape {s} to a teacher feature of shape {t}; "
                     "pick layers with (C, H, W), (sequence, hidden) or (D,) outputs")
