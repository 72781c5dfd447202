"""The imaging plans' networks, written here rather than taken from a model zoo: a plan's
approval hash covers its source (``training.registry``), and a network imported from a library
would change under a hospital's approval with every upgrade of that library. The designs follow
MONAI's and torchvision's ResNet (He et al., CVPR 2016), with the small-input stem MedMNIST v2
uses at 28x28 (Yang et al., Scientific Data 2023). No pretrained weights: nothing is downloaded.
"""

from __future__ import annotations

import torch
from torch import nn

from medfed.training.plans import _vision


class SmallCnn(nn.Module):
    """Three stages of two 3x3 convolutions (width, 2 width, 4 width channels), the first two
    ending in 2x2 max pooling; global average pooling makes the weights independent of the
    image size."""

    def __init__(self, width: int, batch_norm: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for stage, out in enumerate((width, 2 * width, 4 * width)):
            for _ in range(2):
                layers += [
                    nn.Conv2d(channels, out, 3, padding=1, bias=False),
                    _vision.norm(out, batch_norm),
                    nn.ReLU(),
                ]
                channels = out
            if stage < 2:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(torch.flatten(self.pool(self.features(x)), 1))
        return logits


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (a 1x1 projection when the shape changes)."""

    def __init__(self, inputs: int, outputs: int, stride: int, batch_norm: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _vision.norm(outputs, batch_norm)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, padding=1, bias=False)
        self.norm2 = _vision.norm(outputs, batch_norm)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(
                nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False),
                _vision.norm(outputs, batch_norm),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet with basic blocks: ``blocks`` per stage over four stages of width, 2, 4 and 8 width
    channels (``blocks = 2`` and ``width = 64`` is ResNet-18). ``large_input`` selects the
    ImageNet stem (7x7 stride 2 + max pooling, for 128 px and up); otherwise a 3x3 stride-1 stem
    keeps a 28x28 film's detail."""

    def __init__(self, width: int, blocks: int, batch_norm: bool, large_input: bool) -> None:
        super().__init__()
        if large_input:
            self.stem = nn.Sequential(
                nn.Conv2d(1, width, 7, stride=2, padding=3, bias=False),
                _vision.norm(width, batch_norm),
                nn.ReLU(),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(1, width, 3, padding=1, bias=False),
                _vision.norm(width, batch_norm),
                nn.ReLU(),
            )
        stages: list[nn.Module] = []
        channels = width
        for stage in range(4):
            out = width * 2**stage
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                stages.append(BasicBlock(channels, out, stride, batch_norm))
                channels = out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(torch.flatten(self.pool(self.stages(self.stem(x))), 1))
        return logits
