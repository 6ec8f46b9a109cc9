"""FPN-style decoder: top-down pathway, per-level smoothing, sum at stride 4."""

from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F  # noqa: N812  (the usual torch alias)
from torch import nn

from .blocks import conv_bn_relu
from .registry import DECODERS


class FPNDecoder(nn.Module):
    """Merge multi-scale features (finest first) into one feature map at the finest scale.

    Each level is projected to ``channels`` (1x1, skipped when it already has that width),
    coarser levels are upsampled and added top-down, every level is smoothed by a 3x3 conv,
    then all levels are upsampled to the finest and summed, and a last 3x3 conv mixes them.
    """

    def __init__(self, in_channels: Sequence[int], channels: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(
            nn.Identity() if c == channels else conv_bn_relu(c, channels, 1) for c in in_channels
        )
        self.smooth = nn.ModuleList(conv_bn_relu(channels, channels, 3) for _ in in_channels)
        self.fuse = conv_bn_relu(channels, channels, 3)
        self.channels = channels

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        laterals = [lat(f) for lat, f in zip(self.lateral, features)]
        for i in range(len(laterals) - 2, -1, -1):
            laterals[i] = laterals[i] + _up(laterals[i + 1], laterals[i])
        finest = laterals[0]
        out = self.smooth[0](finest)
        for smooth, level in zip(self.smooth[1:], laterals[1:]):
            out = out + _up(smooth(level), finest)
        return self.fuse(out)


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


@DECODERS.register("fpn")
def build_fpn(config, in_channels: Sequence[int]) -> FPNDecoder:
    return FPNDecoder(in_channels, config.decoder_channels)
