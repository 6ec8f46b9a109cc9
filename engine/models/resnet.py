"""ResNet-18-style encoder of BasicBlock stages (one per modality in the student)."""

from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn

from .blocks import BasicBlock, conv_bn_relu
from .registry import ENCODERS


class ResNetEncoder(nn.Module):
    """A 3x3 stride-2 stem then one BasicBlock stage per width, each halving the resolution.

    Stage ``i`` outputs ``widths[i]`` channels at stride ``2 ** (i + 2)`` (4, 8, 16, 32 for
    four stages). The stem is a single 3x3 convolution rather than ResNet's 7x7 + max-pool,
    which keeps the full-resolution cost small for the scene-wide student.

    Args:
        in_channels: input bands.
        widths: channels of each stage.
        blocks: BasicBlocks per stage.
    """

    def __init__(self, in_channels: int, widths: Sequence[int], blocks: Sequence[int]) -> None:
        super().__init__()
        if len(widths) != len(blocks):
            raise ValueError(f"widths {tuple(widths)} and blocks_per_stage {tuple(blocks)} differ in length")
        self.channels = list(widths)
        self.stem = conv_bn_relu(in_channels, widths[0], 3, stride=2)
        stages, cin = [], widths[0]
        for width, n in zip(widths, blocks):
            layers = [BasicBlock(cin, width, stride=2)]
            layers += [BasicBlock(width, width) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            cin = width
        self.stages = nn.ModuleList(stages)

    @property
    def stride(self) -> int:
        return 2 ** (len(self.stages) + 1)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


@ENCODERS.register("resnet")
def build_resnet(in_channels: int, config) -> ResNetEncoder:
    return ResNetEncoder(in_channels, config.widths, config.blocks_per_stage)
