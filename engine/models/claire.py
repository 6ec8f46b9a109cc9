"""CLAIRE fusion: bidirectional cross-modality attention with a per-pixel modality gate.

The CLAIRE line of work (METHOD.md, "Related systems") fuses the features of an optical and a
SAR encoder with cross-modality attention. Here, at each stage in ``StudentConfig.claire_stages``:

1. optical attends to SAR and SAR attends to optical: queries are every pixel of one stream,
   keys and values the other stream average-pooled to ``pool_size`` x ``pool_size`` tokens, with
   ``claire_heads`` heads of width ``attention_dim / claire_heads``; each result is projected
   back and added to its stream (residual). Pooled keys keep the cost linear in the number of
   pixels: ``O(HW * pool_size^2)`` per stage, whatever the tile size;
2. both streams are projected to ``decoder_channels`` (1x1 conv + BN) and mixed by a per-pixel,
   per-channel gate ``g = sigmoid(1x1 conv [optical, SAR])``: ``ReLU(g * optical + (1 - g) * SAR)``.
   Where the optical image carries nothing (clouds, blanked by optical dropout in training),
   the gate can hand the pixel to the SAR stream.

Stages outside ``claire_stages`` use the plain concat fusion. Select it with
``StudentConfig(fusion="claire")`` (``--fusion claire`` in ``engine train-student``).
``lightmcanet_claire`` is registered as a network name too, so that ``python -m engine models``
reports its parameters and FLOPs; models are trained and stored as ``lightmcanet`` with
``fusion = "claire"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812  (the usual torch alias)
from torch import nn

from ..config import StudentConfig
from .blocks import conv_bn_relu
from .lightmcam import StageFusion
from .lightmcanet import LightMCANet
from .registry import FUSIONS, register_model


class PooledCrossAttention(nn.Module):
    """Every pixel of ``x`` attends to ``y`` pooled to ``pool_size``² tokens (multi-head).

    Args:
        query_channels: channels of ``x`` (queries; also the output width).
        context_channels: channels of ``y`` (keys, values).
        dim: total attention width (split over the heads).
        heads: number of heads; ``dim`` must be divisible by it.
        pool_size: side of the pooled key/value grid.
    """

    def __init__(self, query_channels: int, context_channels: int, dim: int = 64, heads: int = 4,
                 pool_size: int = 8) -> None:
        super().__init__()
        if heads < 1 or dim % heads:
            raise ValueError(f"CLAIRE attention width {dim} must be divisible by the number of heads {heads}")
        self.heads, self.head_dim, self.pool_size = heads, dim // heads, pool_size
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.q = nn.Conv2d(query_channels, dim, 1)
        self.kv = nn.Conv2d(context_channels, 2 * dim, 1)
        self.out = conv_bn_relu(dim, query_channels, 1, relu=False)

    def attention(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Attention weights (B, heads, HW, pool_size²), for inspection."""
        return self._weights(x, y)[0]

    def _weights(self, x: torch.Tensor, y: torch.Tensor):
        b, _, h, w = x.shape
        pooled = F.adaptive_avg_pool2d(y, self.pool_size)  # replaced by matrix products for ONNX export
        q = self.q(x).reshape(b, self.heads, self.head_dim, h * w).transpose(-1, -2)  # B, H, N, d
        kv = self.kv(pooled).reshape(b, 2, self.heads, self.head_dim, -1)
        k, v = kv[:, 0], kv[:, 1]  # B, H, d, P
        weights = torch.softmax(torch.matmul(q, k) * self.scale, dim=-1)  # B, H, N, P
        return weights, v

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        weights, v = self._weights(x, y)
        context = torch.matmul(weights, v.transpose(-1, -2))  # B, H, N, d
        context = context.transpose(-1, -2).reshape(b, self.heads * self.head_dim, h, w)
        return x + self.out(context)


class ClaireFusion(nn.Module):
    """Optical <-> SAR cross-attention, then a gated mix of the two projected streams.

    ``forward(optical, sar) -> (B, out_ch, h, w)``; :meth:`gate` returns the weight given to
    the optical stream (B, out_ch, h, w), 1 - that to SAR.
    """

    def __init__(self, optical_ch: int, sar_ch: int, out_ch: int, dim: int = 64, heads: int = 4,
                 pool_size: int = 8) -> None:
        super().__init__()
        self.optical_from_sar = PooledCrossAttention(optical_ch, sar_ch, dim, heads, pool_size)
        self.sar_from_optical = PooledCrossAttention(sar_ch, optical_ch, dim, heads, pool_size)
        self.project_optical = conv_bn_relu(optical_ch, out_ch, 1, relu=False)
        self.project_sar = conv_bn_relu(sar_ch, out_ch, 1, relu=False)
        self.mix = nn.Conv2d(2 * out_ch, out_ch, 1)

    def _streams(self, optical: torch.Tensor, sar: torch.Tensor):
        o = self.project_optical(self.optical_from_sar(optical, sar))
        s = self.project_sar(self.sar_from_optical(sar, optical))
        return o, s, torch.sigmoid(self.mix(torch.cat([o, s], dim=1)))

    def gate(self, optical: torch.Tensor, sar: torch.Tensor) -> torch.Tensor:
        """Per-pixel, per-channel weight of the optical stream, in (0, 1)."""
        return self._streams(optical, sar)[2]

    def forward(self, optical: torch.Tensor, sar: torch.Tensor) -> torch.Tensor:
        o, s, g = self._streams(optical, sar)
        return F.relu(s + g * (o - s))


@FUSIONS.register("claire")
def build_claire(config, stage: int, optical_ch: int, sar_ch: int, out_ch: int) -> nn.Module:
    """CLAIRE fusion at ``config.claire_stages``, concat fusion at the others."""
    if stage in tuple(config.claire_stages):
        return ClaireFusion(optical_ch, sar_ch, out_ch, config.attention_dim, config.claire_heads, config.pool_size)
    return StageFusion(optical_ch, sar_ch, out_ch)


@dataclass
class ClaireStudentConfig(StudentConfig):
    """:class:`~engine.config.StudentConfig` whose defaults select the CLAIRE fusion (profiling name)."""

    name: str = "lightmcanet_claire"
    fusion: str = "claire"


@register_model(
    "lightmcanet_claire",
    config_cls=ClaireStudentConfig,
    kind="student",
    description="LightMCANet with CLAIRE fusion (bidirectional pooled cross-attention at stages 1-3, "
    "gated mix); train it as lightmcanet with --fusion claire",
)
def build_lightmcanet_claire(config: ClaireStudentConfig) -> LightMCANet:
    return LightMCANet(config)
