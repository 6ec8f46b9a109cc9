"""Augmentation applied identically to optical, SAR and label (METHOD.md, Preprocessing).

Flips, 90° rotations, a small random rotation and a random crop resized back to the patch
size. Random numbers come from torch's global generator, so a resumed training run (which
restores that generator) draws exactly the same augmentations as an uninterrupted one.
Pixels that a rotation brings in from outside the patch become the ignore label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    """Probabilities and ranges of each augmentation."""

    flip: float = 0.5
    rot90: bool = True
    rotate_prob: float = 0.3
    max_degrees: float = 15.0
    crop_prob: float = 0.3
    min_crop_scale: float = 0.75


def _affine(
    optical: torch.Tensor, sar: torch.Tensor, label: torch.Tensor, theta: torch.Tensor, ignore_index: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Resample all three with one affine map; imagery bilinear, labels nearest."""
    h, w = label.shape
    grid = F.affine_grid(theta[None], [1, 1, h, w], align_corners=False)
    images = torch.cat([optical, sar], 0)[None]
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    inside = F.grid_sample(torch.ones(1, 1, h, w), grid, mode="nearest", align_corners=False)[0, 0] > 0.5
    lab = F.grid_sample(label[None, None].float(), grid, mode="nearest", align_corners=False)[0, 0].long()
    lab[~inside] = ignore_index
    c = optical.shape[0]
    return images[:c], images[c:], lab


def augment(
    optical: torch.Tensor,
    sar: torch.Tensor,
    label: torch.Tensor,
    cfg: AugmentConfig = AugmentConfig(),
    ignore_index: int = 255,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Randomly transform a (C,H,W) optical, (C,H,W) SAR and (H,W) label the same way."""
    if torch.rand(()) < cfg.flip:
        optical, sar, label = optical.flip(-1), sar.flip(-1), label.flip(-1)
    if torch.rand(()) < cfg.flip:
        optical, sar, label = optical.flip(-2), sar.flip(-2), label.flip(-2)
    if cfg.rot90:
        k = int(torch.randint(0, 4, ()))
        if k and label.shape[0] == label.shape[1]:
            optical, sar, label = (t.rot90(k, (-2, -1)) for t in (optical, sar, label))
    rotate = torch.rand(()) < cfg.rotate_prob
    crop = torch.rand(()) < cfg.crop_prob
    if rotate or crop:
        angle = math.radians(float(torch.empty(()).uniform_(-cfg.max_degrees, cfg.max_degrees))) if rotate else 0.0
        scale = float(torch.empty(()).uniform_(cfg.min_crop_scale, 1.0)) if crop else 1.0
        shift = (1.0 - scale)
        tx = float(torch.empty(()).uniform_(-shift, shift)) if crop else 0.0
        ty = float(torch.empty(()).uniform_(-shift, shift)) if crop else 0.0
        cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
        theta = torch.tensor([[cos, -sin, tx], [sin, cos, ty]], dtype=torch.float32)
        optical, sar, label = _affine(optical, sar, label, theta, ignore_index)
    return optical.contiguous(), sar.contiguous(), label.contiguous()
