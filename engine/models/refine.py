"""Boundary refinements of the ALOS-2 line of work (METHOD.md, Related systems), for any network.

* :class:`HighResInjection`: the shallowest (finest) encoder features, pooled to each coarser
  scale and projected, are added to every level the decoder receives, so the deep levels that
  decide the class also carry the fine spatial detail that locates its edges (thin roads,
  shorelines), instead of meeting it only once at the finest level.
* :class:`RefineUpHead`: instead of one bilinear jump from the decoder's stride-4 logits to
  the input size, alternate a 3x3 convolutional refinement and a 2x upsampling, each step
  seeing the input image resized to its scale, then classify at full resolution. Edges are
  placed from the image at each scale rather than interpolated.

Both are options of :class:`~engine.config.StudentConfig` (``hr_injection``, ``refine_up``),
off by default so networks trained without them load unchanged.
"""

from __future__ import annotations

import math
from typing import List, Sequence

import torch
import torch.nn.functional as F  # noqa: N812  (the usual torch alias)
from torch import nn

from .blocks import conv_bn_relu


class HighResInjection(nn.Module):
    """Add the finest feature map, average-pooled and projected, to every coarser level.

    Args:
        channels: channels of each level, finest first (the finest is the source).
    """

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        self.project = nn.ModuleList(conv_bn_relu(channels[0], c, 1) for c in channels[1:])

    def forward(self, features: List[torch.Tensor]) -> List[torch.Tensor]:
        finest = features[0]
        out = [finest]
        for project, level in zip(self.project, features[1:]):
            pooled = F.adaptive_avg_pool2d(finest, level.shape[-2:])
            out.append(level + project(pooled))
        return out


class RefineUpHead(nn.Module):
    """Refine, upsample 2x, refine ... from the decoder's stride to 1, then classify.

    Args:
        in_channels: channels of the decoder feature.
        num_classes: output logits.
        stride: the decoder feature's stride (a power of two, e.g. 4).
        guide_channels: bands of the input image concatenated at every scale (0: none).
    """

    def __init__(self, in_channels: int, num_classes: int, stride: int = 4, guide_channels: int = 0) -> None:
        super().__init__()
        steps = int(round(math.log2(stride)))
        if 2**steps != stride:
            raise ValueError(f"refine-up head needs a power-of-two stride, got {stride}")
        self.guide_channels = guide_channels
        widths = [max(in_channels // 2**i, 16) for i in range(steps + 1)]
        self.refine = nn.ModuleList()
        cin = in_channels
        for width in widths:  # one refinement per scale: stride, stride/2, ..., 1
            self.refine.append(conv_bn_relu(cin + guide_channels, width, 3))
            cin = width
        self.classifier = nn.Conv2d(cin, num_classes, 1)

    def forward(self, feature: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """Logits at ``feature`` size x stride; ``guide`` is the (padded) input image."""
        x = feature
        for i, refine in enumerate(self.refine):
            if i:
                x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            if self.guide_channels:
                g = guide if guide.shape[-2:] == x.shape[-2:] else F.adaptive_avg_pool2d(guide, x.shape[-2:])
                x = torch.cat([x, g], 1)
            x = refine(x)
        return self.classifier(x)
