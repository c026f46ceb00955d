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
from edgekd.detection.model import detector
from edgekd.models.text import transformer


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


class _Residual(nn.Module):
    """conv-bn-relu-conv-bn plus the input (projected by a 1×1 conv when shapes change)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and in_channels == out_channels
            else nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels))
        )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


def resnet(
    input_shape: Sequence[int],
    num_classes: int,
    widths: Sequence[int] = (16, 32, 64),
    blocks_per_stage: int = 1,
) -> nn.Module:
    """A small ResNet (He et al. 2016, CIFAR-style): stem conv, one stage of basic residual blocks
    per width (stride 2 from the second stage on), global average pooling, linear classifier."""
    if len(input_shape) != 3:
        raise ModelError(f"resnet needs image inputs shaped (channels, height, width); the data has {tuple(input_shape)}")
    in_channels = int(input_shape[0])
    layers: list[nn.Module] = [nn.Conv2d(in_channels, int(widths[0]), 3, padding=1, bias=False), nn.BatchNorm2d(int(widths[0])), nn.ReLU()]
    channels = int(widths[0])
    for stage, width in enumerate(widths):
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(_Residual(channels, int(width), stride))
            channels = int(width)
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(*layers))
    model.add_module("classifier", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)))
    return model


class _InvertedResidual(nn.Module):
    """MobileNetV2 block: 1×1 expansion, 3×3 depthwise, 1×1 linear projection; residual when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


def mobilenetv2(
    input_shape: Sequence[int],
    num_classes: int,
    width: float = 0.5,
    stages: Sequence[Sequence[int]] = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 2)),
) -> nn.Module:
    """A MobileNetV2-style net (Sandler et al. 2018) scaled for small inputs. `stages` rows are
    (expansion t, channels c, blocks n, first stride s) as in the paper's table; `width` scales c."""
    if len(input_shape) != 3:
        raise ModelError(f"mobilenetv2 needs image inputs shaped (channels, height, width); the data has {tuple(input_shape)}")
    scale = lambda c: max(8, int(round(c * width / 8)) * 8)  # noqa: E731 - channel counts stay multiples of 8
    stem = scale(32)
    layers: list[nn.Module] = [nn.Conv2d(int(input_shape[0]), stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.ReLU6()]
    channels = stem
    for expansion, c, n, stride in stages:
        for block in range(int(n)):
            layers.append(_InvertedResidual(channels, scale(c), int(stride) if block == 0 else 1, int(expansion)))
            channels = scale(c)
    last = scale(256)
    layers += [nn.Conv2d(channels, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6()]
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(*layers))
    model.add_module("classifier", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(last, num_classes)))
    return model


def _divisible(channels: float, by: int = 8) -> int:
    """Channel counts rounded to a multiple of 8 (never down by more than 10%), as the MobileNets do."""
    rounded = max(by, int(channels + by / 2) // by * by)
    return rounded + by if rounded < 0.9 * channels else rounded


class _SqueezeExcite(nn.Module):
    """Channel attention (Hu et al. 2018) as MobileNetV3 uses it: pooled → 1×1 → ReLU → 1×1 → hard sigmoid → scale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        squeezed = _divisible(channels / 4)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, squeezed, 1), nn.ReLU(),
                                  nn.Conv2d(squeezed, channels, 1), nn.Hardsigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class _Bneck(nn.Module):
    """MobileNetV3 block: 1×1 expansion, k×k depthwise, optional squeeze-excite, 1×1 linear projection."""

    def __init__(self, in_channels: int, kernel: int, expanded: int, out_channels: int, se: bool, activation: str, stride: int) -> None:
        super().__init__()
        act = nn.Hardswish if activation == "hswish" else nn.ReLU
        layers: list[nn.Module] = []
        if expanded != in_channels:
            layers += [nn.Conv2d(in_channels, expanded, 1, bias=False), nn.BatchNorm2d(expanded), act()]
        layers += [nn.Conv2d(expanded, expanded, kernel, stride=stride, padding=kernel // 2, groups=expanded, bias=False),
                   nn.BatchNorm2d(expanded), act()]
        if se:
            layers.append(_SqueezeExcite(expanded))
        layers += [nn.Conv2d(expanded, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


# MobileNetV3-Small's blocks (Howard et al. 2019, table 2): kernel, expansion, output channels, SE, activation, stride.
MOBILENETV3_SMALL = (
    (3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2), (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hswish", 2), (5, 240, 40, True, "hswish", 1), (5, 240, 40, True, "hswish", 1),
    (5, 120, 48, True, "hswish", 1), (5, 144, 48, True, "hswish", 1), (5, 288, 96, True, "hswish", 2),
    (5, 576, 96, True, "hswish", 1), (5, 576, 96, True, "hswish", 1),
)


def mobilenetv3(
    input_shape: Sequence[int],
    num_classes: int,
    width: float = 1.0,
    blocks: Sequence[Sequence] = MOBILENETV3_SMALL,
    last: int = 1024,
    dropout: float = 0.2,
) -> nn.Module:
    """A MobileNetV3-Small-style net (hardswish, squeeze-excite): the usual edge student and the usual
    int8 trouble-maker. `width` scales every channel count; a stride applies only while the feature
    map is at least 2 pixels, and the stem strides only from 64×64 up, so 8×8 to 224×224 inputs all fit."""
    if len(input_shape) != 3:
        raise ModelError(f"mobilenetv3 needs image inputs shaped (channels, height, width); the data has {tuple(input_shape)}")
    size = min(int(input_shape[1]), int(input_shape[2]))
    stem = _divisible(16 * width)
    stem_stride = 2 if size >= 64 else 1
    layers: list[nn.Module] = [nn.Conv2d(int(input_shape[0]), stem, 3, stride=stem_stride, padding=1, bias=False),
                               nn.BatchNorm2d(stem), nn.Hardswish()]
    size = -(-size // stem_stride)
    channels = stem
    for kernel, expanded, out, se, activation, stride in blocks:
        stride = int(stride) if size >= 2 else 1
        size = -(-size // stride)
        layers.append(_Bneck(channels, int(kernel), _divisible(expanded * width), _divisible(out * width), bool(se), str(activation), stride))
        channels = _divisible(out * width)
    head = _divisible(6 * channels)
    layers += [nn.Conv2d(channels, head, 1, bias=False), nn.BatchNorm2d(head), nn.Hardswish()]
    hidden = _divisible(last * width)
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(*layers))
    model.add_module("classifier", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(head, hidden), nn.Hardswish(),
                                                 nn.Dropout(dropout), nn.Linear(hidden, num_classes)))
    return model


def _convs(in_channels: int, out_channels: int, count: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for index in range(count):
        layers += [nn.Conv2d(in_channels if index == 0 else out_channels, out_channels, 3, padding=1, bias=False),
                   nn.BatchNorm2d(out_channels), nn.ReLU()]
    return layers


class _UNet(nn.Module):
    """Encoder stages `down.0..k` (each after the first halves the size with a 2×2 max pool), decoder
    stages `up.0..k-1` (nearest upsampling to the skip's size, concatenation, convs), a 1×1 `head`."""

    def __init__(self, in_channels: int, num_classes: int, widths: Sequence[int], convs: int) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        self.down = nn.ModuleList([nn.Sequential(*_convs(in_channels, widths[0], convs))])
        for before, width in zip(widths, widths[1:]):
            self.down.append(nn.Sequential(nn.MaxPool2d(2), *_convs(before, width, convs)))
        self.up = nn.ModuleList([nn.Sequential(*_convs(deeper + width, width, convs))
                                 for width, deeper in reversed(list(zip(widths, widths[1:])))])
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for stage in self.down:
            x = stage(x)
            skips.append(x)
        for stage, skip in zip(self.up, reversed(skips[:-1])):
            x = stage(torch.cat([nn.functional.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], dim=1))
        return self.head(x)


def unet(
    input_shape: Sequence[int],
    num_classes: int,
    widths: Sequence[int] = (16, 32, 64),
    convs: int = 2,
) -> nn.Module:
    """A small U-Net (Ronneberger et al. 2015) for semantic segmentation: one encoder stage per
    width (the depth), `convs` conv-BN-ReLU layers per stage, skip connections by concatenation, and
    (classes, height, width) logits at the input's resolution. Layer paths for hint/at terms:
    `down.<i>`, `up.<i>`, `head`."""
    if len(input_shape) != 3:
        raise ModelError(f"unet needs image inputs shaped (channels, height, width); the data has {tuple(input_shape)}")
    if not widths or int(convs) < 1:
        raise ModelError("unet needs at least one width and one conv per stage")
    smallest = min(int(input_shape[1]), int(input_shape[2]))
    if smallest < 2 ** (len(widths) - 1):
        raise ModelError(f"unet with {len(widths)} stages halves {smallest}-pixel images below one pixel; use at most "
                         f"{max(1, smallest.bit_length())} widths")
    return _UNet(int(input_shape[0]), num_classes, widths, int(convs))


# "transformer" (models/text.py) is the BERT-style text student; it imports transformers only when built.
FAMILIES = {"mlp": mlp, "cnn": cnn, "resnet": resnet, "mobilenetv2": mobilenetv2, "mobilenetv3": mobilenetv3, "transformer": transformer,
            "unet": unet, "detector": detector}
