"""Augmentation applied identically to optical, SAR and label (METHOD.md, Preprocessing).

Flips, 90° rotations, a small random rotation and a random crop resized back to the patch
size; then photometric changes of the SAR (a level shift of about +-2 dB, blur like other
multi-looking or filtering, noise like other speckle) and of the optical image (gain and
offset), so a network does not key on one sensor's calibration or texture. Random numbers
come from torch's global generator, so a resumed training run (which restores that generator)
draws exactly the same augmentations as an uninterrupted one.
Pixels that a rotation brings in from outside the patch become the ignore label.

Optical dropout (``optical_dropout`` > 0, off by default; cloud robustness): a share of the
patches lose their optical image over a random cloud-shaped region or the whole patch, either
blanked to 0 (the value missing or cloud-masked optical pixels get everywhere in training) or
covered by a bright, soft-edged synthetic cloud. The label is kept, so the network learns to
answer from SAR where the optical image says nothing. :func:`optical_dropout` also returns
the mask of the changed pixels.
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
    # a patch re-stretched by its own 2-98 % percentiles, as a small homogeneous scene (a 1 km
    # chip of pasture) is by the per-scene normalisation: the network must not read "brightest
    # in the scene" as "bright"
    optical_restretch_prob: float = 0.3
    # path reflectance (top-of-atmosphere products such as Sentinel-2 L1C): probability per patch,
    # the largest offset (normalised units; 0.3 of the 0-0.35 reflectance range is about 0.1) and its
    # share per channel in the model's order (red, green, blue: haze is strongest in blue). Off by
    # default; docs/experiments/zero_shot_real.md, "A student that has seen haze".
    optical_haze: float = 0.0
    optical_haze_max: float = 0.3
    optical_haze_shape: Tuple[float, ...] = (0.35, 0.6, 1.0)
    # optical dropout (cloud robustness): probability per patch; of those, the share blanked over
    # the whole patch (else 1-3 random elliptic blobs), and the share drawn as bright cloud
    # instead of blanked to 0
    optical_dropout: float = 0.0
    optical_dropout_whole: float = 0.25
    optical_cloud_share: float = 0.5


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
    if cfg.optical_haze > 0 and optical.numel() and torch.rand(()) < cfg.optical_haze:
        optical = add_haze(optical, cfg)
    if optical.numel() and torch.rand(()) < cfg.optical_restretch_prob:
        flat = optical.reshape(optical.shape[0], -1)
        low, high = torch.quantile(flat, 0.02, dim=1), torch.quantile(flat, 0.98, dim=1)
        span = (high - low).clamp(min=1e-3)[:, None, None]
        optical = ((optical - low[:, None, None]) / span).clamp(0.0, 1.0)
    if optical.numel() and torch.rand(()) < cfg.optical_jitter_prob:
        optical = optical * u(1 - cfg.optical_gain, 1 + cfg.optical_gain) + u(-cfg.optical_offset, cfg.optical_offset)
        optical = optical.clamp(0.0, 1.0)
    return optical, sar.clamp(0.0, 1.0) if changed_sar else sar


def add_haze(optical: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Add a random path reflectance: one level, shared out by ``cfg.optical_haze_shape`` per
    channel, each share varied by +-20 % (channels beyond the shape get the last share)."""
    level = float(torch.empty(()).uniform_(0.05, 1.0)) * cfg.optical_haze_max
    shape = list(cfg.optical_haze_shape) + [cfg.optical_haze_shape[-1]] * optical.shape[0]
    share = torch.tensor(shape[: optical.shape[0]]) * torch.empty(optical.shape[0]).uniform_(0.8, 1.2)
    return (optical + level * share.to(optical.dtype)[:, None, None]).clamp(0.0, 1.0)


def _blobs(h: int, w: int) -> torch.Tensor:
    """Soft mask (h, w) in [0, 1] of 1-3 random ellipses covering roughly 10-60 % of the patch."""
    yy = torch.linspace(0.0, 1.0, h).view(h, 1)
    xx = torch.linspace(0.0, 1.0, w).view(1, w)
    mask = torch.zeros(h, w)
    for _ in range(int(torch.randint(1, 4, ()))):
        cy, cx, ry, rx = (float(v) for v in torch.rand(4))
        ry, rx = 0.15 + 0.35 * ry, 0.15 + 0.35 * rx
        d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        mask = torch.maximum(mask, (1.5 - d).clamp(0.0, 1.0))  # full inside, a soft rim outside d = 0.5
    return mask


def optical_dropout(optical: torch.Tensor, cfg: AugmentConfig) -> Tuple[torch.Tensor, torch.Tensor]:
    """With probability ``cfg.optical_dropout``, remove the optical image of a random region or of
    the whole patch (blanked to 0, or under a bright synthetic cloud).

    Returns:
        the optical (C, H, W) and the (H, W) bool mask of the pixels whose optical was removed
        (all False when the patch was left alone). No random number is drawn when the
        probability is 0, so runs without dropout draw the same augmentations as before.
    """
    h, w = optical.shape[-2:]
    none = torch.zeros(h, w, dtype=torch.bool)
    if cfg.optical_dropout <= 0 or not optical.numel() or torch.rand(()) >= cfg.optical_dropout:
        return optical, none
    alpha = torch.ones(h, w) if torch.rand(()) < cfg.optical_dropout_whole else _blobs(h, w)
    if torch.rand(()) < cfg.optical_cloud_share:
        cloud = float(torch.empty(()).uniform_(0.75, 1.0))  # bright, slightly grey, soft-edged
        optical = optical * (1 - alpha) + cloud * alpha
    else:
        optical = optical * (alpha < 0.5)  # blanked, as missing optical is
    return optical, alpha >= 0.5


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
    optical, _ = optical_dropout(optical, cfg)
    return optical.contiguous(), sar.contiguous(), label.contiguous()


def set_augmentation(dataset, **probabilities: float) -> int:
    """Set augmentation probabilities (``optical_dropout=0.2``, ``optical_haze=0.5`` ...) of every
    augmenting :class:`~engine.data.dataset.PatchDataset` inside ``dataset`` (one, or a
    ``ConcatDataset`` of several scenes); returns how many.

    Used by the training stages with ``TrainConfig.optical_dropout`` and ``optical_haze``.
    """
    import dataclasses

    for name, probability in probabilities.items():
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"{name.replace('_', ' ')} must be a probability between 0 and 1, got {probability}")
    parts = getattr(dataset, "datasets", None)
    if parts is not None:
        return sum(set_augmentation(part, **probabilities) for part in parts)
    if getattr(dataset, "augment", False) and hasattr(dataset, "augment_cfg"):
        values = {name: float(probability) for name, probability in probabilities.items()}
        dataset.augment_cfg = dataclasses.replace(dataset.augment_cfg, **values)
        return 1
    return 0
