"""Augmentation applied identically to optical, SAR and label (METHOD.md, Preprocessing).

Flips, 90° rotations, a small random rotation and a random crop resized back to the patch
size; then photometric changes of the SAR (a level shift of about +-2 dB, blur like other
multi-looking or filtering, noise like other speckle) and of the optical image (gain and
offset), so a network does not key on one sensor's calibration or texture. Random numbers
come from torch's global generator, so a resumed training run (which restores that generator)
draws exactly the same augmentations as an uninterrupted one.
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
    # photometric, in normalised units (the fixed SAR range spans 45 dB: 0.045 is about 2 dB)
    sar_shift: float = 0.045
    sar_blur_prob: float = 0.3
    sar_max_blur: float = 1.5  # Gaussian sigma in pixels
    sar_noise_prob: float = 0.3
    sar_max_noise: float = 0.02
    optical_jitter_prob: float = 0.5
    optical_gain: float = 0.1
    optical_offset: float = 0.05


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(2 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[0]
    y = F.conv2d(F.pad(x[None], (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1),
                 groups=c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1),
                 groups=c)
    return y[0]


def photometric(optical: torch.Tensor, sar: torch.Tensor, cfg: AugmentConfig) -> Tuple[torch.Tensor, torch.Tensor]:
    """Random SAR level shift, blur and noise; random optical gain and offset (values kept in [0, 1])."""
    u = lambda lo, hi: float(torch.empty(()).uniform_(lo, hi))  # noqa: E731
    changed_sar = cfg.sar_shift > 0
    if changed_sar:
        sar = sar + u(-cfg.sar_shift, cfg.sar_shift)
    if torch.rand(()) < cfg.sar_blur_prob:
        sar, changed_sar = _blur(sar, u(0.5, cfg.sar_max_blur)), True
    if torch.rand(()) < cfg.sar_noise_prob:
        sar, changed_sar = sar + torch.randn_like(sar) * u(0.0, cfg.sar_max_noise), True
    if optical.numel() and torch.rand(()) < cfg.optical_jitter_prob:
        optical = optical * u(1 - cfg.optical_gain, 1 + cfg.optical_gain) + u(-cfg.optical_offset, cfg.optical_offset)
        optical = optical.clamp(0.0, 1.0)
    return optical, sar.clamp(0.0, 1.0) if changed_sar else sar


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
    optical, sar = photometric(optical, sar, cfg)
    return optical.contiguous(), sar.contiguous(), label.contiguous()
