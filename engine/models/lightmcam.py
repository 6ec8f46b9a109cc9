"""Cross-modal fusion of one encoder stage: LightMCAM attention and a plain concat fusion."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F  # noqa: N812  (the usual torch alias)
from torch import nn

from .blocks import conv_bn_relu
from .registry import FUSIONS


class LightMCAM(nn.Module):
    """Optical queries attend to a pooled grid of SAR keys/values.

    Keys and values come from SAR features average-pooled to ``pool_size`` x ``pool_size``,
    so the attention costs O(HW * pool_size^2) instead of O((HW)^2). The attended SAR context
    is projected back to the optical width and added to the optical features (residual).

    Args:
        optical_channels: channels of the optical features (queries, output).
        sar_channels: channels of the SAR features (keys, values).
        dim: attention width d; logits are scaled by 1/sqrt(d).
        pool_size: side of the pooled SAR grid.
    """

    def __init__(self, optical_channels: int, sar_channels: int, dim: int = 64, pool_size: int = 8) -> None:
        super().__init__()
        self.pool_size, self.scale = pool_size, 1.0 / math.sqrt(dim)
        self.q = nn.Conv2d(optical_channels, dim, 1)
        self.k = nn.Conv2d(sar_channels, dim, 1)
        self.v = nn.Conv2d(sar_channels, dim, 1)
        self.out = conv_bn_relu(dim, optical_channels, 1, relu=False)

    def attention(self, optical: torch.Tensor, sar: torch.Tensor) -> torch.Tensor:
        """Attention weights (B, HW, pool_size^2), for inspection."""
        pooled = F.adaptive_avg_pool2d(sar, self.pool_size)
        q = self.q(optical).flatten(2).transpose(1, 2)  # B, HW, d
        k = self.k(pooled).flatten(2)  # B, d, P
        return torch.softmax(torch.bmm(q, k) * self.scale, dim=-1)

    def forward(self, optical: torch.Tensor, sar: torch.Tensor) -> torch.Tensor:
        b, _, h, w = optical.shape
        pooled = F.adaptive_avg_pool2d(sar, self.pool_size)
        v = self.v(pooled).flatten(2).transpose(1, 2)  # B, P, d
        context = torch.bmm(self.attention(optical, sar), v)  # B, HW, d
        context = context.transpose(1, 2).reshape(b, -1, h, w)
        return optical + self.out(context)


class StageFusion(nn.Module):
    """Optional LightMCAM on the optical stream, then a 1x1 conv of [optical, SAR] to ``out``."""

    def __init__(
        self, optical_ch: int, sar_ch: int, out_ch: int, attention: Optional[nn.Module] = None
    ) -> None:
        super().__init__()
        self.attention = attention
        self.merge = conv_bn_relu(optical_ch + sar_ch, out_ch, 1)

    def forward(self, optical: torch.Tensor, sar: torch.Tensor) -> torch.Tensor:
        if self.attention is not None:
            optical = self.attention(optical, sar)
        return self.merge(torch.cat([optical, sar], dim=1))


@FUSIONS.register("lightmcam")
def build_lightmcam(config, stage: int, optical_ch: int, sar_ch: int, out_ch: int) -> StageFusion:
    """LightMCAM at ``config.attention_stages``, concat fusion at the others."""
    attention = None
    if stage in tuple(config.attention_stages):
        attention = LightMCAM(optical_ch, sar_ch, config.attention_dim, config.pool_size)
    return StageFusion(optical_ch, sar_ch, out_ch, attention)


@FUSIONS.register("concat")
def build_concat(config, stage: int, optical_ch: int, sar_ch: int, out_ch: int) -> StageFusion:
    """No cross-attention: the ablation baseline."""
    return StageFusion(optical_ch, sar_ch, out_ch)
