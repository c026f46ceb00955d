"""Built-in model families: the small teachers and students edge users start from.

Each family is a plain function `(input_shape, num_classes, **sizes) -> nn.Module`. Layers sit in
named `nn.Sequential` blocks (`features`, `classifier`) so intermediate layers can be named by
module path (e.g. `features.3`) for feature distillation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from edgekd.errors import ModelError


def mlp(
    input_shape: Sequence[int],
    num_classes: int,
    hidden: Sequence[int] = (64,),
    dropout: float = 0.0,
) -> nn.Module:
    """Flatten → [Linear → ReLU (→ Dropout)] per hidden width → Linear: the smallest student."""
    in_features = int(torch.tensor(list(input_shape)).prod())
    layers: list[nn.Module] = [nn.Flatten()]
    for width in hidden:
        layers += [nn.Linear(in_features, int(width)), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_features = int(width)
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(*layers))
    model.add_module("classifier", nn.Linear(in_features, num_classes))
    return model


def cnn(
    input_shape: Sequence[int],
    num_classes: int,
    channels: Sequence[int] = (32, 64),
    hidden: int = 128,
    dropout: float = 0.25,
) -> nn.Module:
    """[Conv3×3 → BatchNorm → ReLU → MaxPool2] per width → Linear → ReLU → Dropout → Linear."""
    if len(input_shape) != 3:
        raise ModelError(f"cnn needs image inputs shaped (channels, height, width); the data has {tuple(input_shape)}")
    in_channels, height, width = (int(d) for d in input_shape)
    layers: list[nn.Module] = []
    for out_channels in channels:
        layers += [nn.Conv2d(in_channels, int(out_channels), 3, padding=1), nn.BatchNorm2d(int(out_channels)), nn.ReLU()]
        if min(height, width) >= 2:
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        in_channels = int(out_channels)
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(*layers))
    model.add_module(
        "classifier",
        nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * height * width, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        ),
    )
    return model


FAMILIES = {"mlp": mlp, "cnn": cnn}
