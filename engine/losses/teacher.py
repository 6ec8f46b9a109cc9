"""The teacher's loss: (weighted) cross-entropy + edge-aware BCE on water shorelines."""

from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F  # noqa: N812  (the usual torch alias)
from torch import nn

from ..config import IGNORE_INDEX, LossConfig
from .segmentation import weighted_cross_entropy


def binary_water_target(
    label: torch.Tensor, water_class: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Multi-class labels to the teacher's target: 1 water, 0 other classes, ignore kept."""
    out = (label == water_class).long()
    return torch.where(label == ignore_index, torch.full_like(out, ignore_index), out)


def morphological_boundary(
    mask: torch.Tensor, kernel: int = 3, valid: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Morphological gradient (dilation minus erosion) of a (B, H, W) 0/1 mask, as bool.

    With ``valid``, invalid pixels belong to neither side: a valid pixel is on the boundary
    when its ``kernel`` neighbourhood holds both a mask pixel and a valid non-mask pixel, so
    unlabelled areas do not create shorelines. Image borders are padded by replication, so
    the image edge is not a boundary.
    """
    valid = torch.ones_like(mask, dtype=torch.bool) if valid is None else valid.bool()
    inside = mask.bool() & valid
    outside = ~mask.bool() & valid
    both = torch.stack([inside, outside], dim=1).float()
    pad = kernel // 2
    near = F.max_pool2d(F.pad(both, (pad, pad, pad, pad), mode="replicate"), kernel, stride=1) > 0
    return near[:, 0] & near[:, 1] & valid


def sobel_magnitude(image: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of (B, C, H, W), averaged over channels and min-max normalised
    to [0, 1] per image (a flat image gives zeros). Returns (B, H, W)."""
    kx = torch.tensor(
        [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=image.dtype, device=image.device
    )
    kernels = torch.stack([kx, kx.t()]).unsqueeze(1)  # 2, 1, 3, 3
    b, c, h, w = image.shape
    x = F.pad(image.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    g = F.conv2d(x, kernels)
    mag = g.pow(2).sum(1).sqrt().reshape(b, c, h, w).mean(1)
    lo = mag.amin(dim=(1, 2), keepdim=True)
    hi = mag.amax(dim=(1, 2), keepdim=True)
    return (mag - lo) / (hi - lo).clamp(min=1e-12)


def edge_aware_bce(
    logits: torch.Tensor,
    target: torch.Tensor,
    sar: torch.Tensor,
    beta: float = 0.5,
    kernel: int = 3,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """BCE of the water probability on the water mask's boundary, weighted by ``1 + beta * g``.

    ``g`` is the normalised Sobel magnitude of the SAR input, so shoreline pixels where SAR
    shows a strong edge count more. The boundary is the morphological gradient of the water
    mask in which ignore pixels are neither water nor land (:func:`morphological_boundary`);
    the loss is the weighted sum divided by the number of boundary pixels, and 0 when there
    is none.

    Args:
        logits: (B, 2, H, W) teacher logits (class 1 = water).
        target: (B, H, W) 0/1 with ``ignore_index``.
        sar: (B, C, H, W) the normalised SAR input.
    """
    valid = target != ignore_index
    water = target == 1
    boundary = morphological_boundary(water, kernel, valid)
    n = boundary.sum()
    water_logit = logits[:, 1] - logits[:, 0]  # softmax(.)[:, 1] == sigmoid(l1 - l0)
    bce = F.binary_cross_entropy_with_logits(water_logit, water.to(logits.dtype), reduction="none")
    weight = 1.0 + beta * sobel_magnitude(sar.detach().to(logits.dtype))
    return torch.where(boundary, weight * bce, torch.zeros_like(bce)).sum() / n.clamp(min=1).to(logits.dtype)


class TeacherLoss(nn.Module):
    """``CE + teacher_edge_weight * edge_aware_bce`` for the binary water teacher.

    Args:
        loss_cfg: :class:`~engine.config.LossConfig` (``teacher_edge_weight``,
            ``teacher_edge_beta``, ``inverse_frequency_weights``).
        class_weights: (2,) CE weights, e.g. ``inverse_frequency_weights([n_other, n_water])``;
            None or ``inverse_frequency_weights=False`` gives plain CE.
        ignore_index: label value excluded everywhere.
    """

    def __init__(
        self,
        loss_cfg: Optional[LossConfig] = None,
        class_weights: Optional[torch.Tensor] = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        self.cfg = loss_cfg or LossConfig()
        self.ignore_index = ignore_index
        use = class_weights is not None and self.cfg.inverse_frequency_weights
        weights = torch.as_tensor(class_weights, dtype=torch.float32) if use else None
        self.register_buffer("class_weights", weights)
        self.last_terms: Dict[str, torch.Tensor] = {}

    def forward(self, logits: torch.Tensor, target: torch.Tensor, sar: torch.Tensor) -> torch.Tensor:
        """Loss of (B, 2, H, W) logits against a (B, H, W) 0/1/ignore target, given the SAR input."""
        if logits.shape[1] != 2:
            raise ValueError(
                f"TeacherLoss expects 2-class (non-water, water) logits, got {logits.shape[1]} classes"
            )
        target = target.long()
        ce = weighted_cross_entropy(logits, target, self.class_weights, self.ignore_index)
        total, terms = ce, {"ce": ce.detach()}
        if self.cfg.teacher_edge_weight:
            beta = self.cfg.teacher_edge_beta
            edge = edge_aware_bce(logits, target, sar, beta, ignore_index=self.ignore_index)
            total = total + self.cfg.teacher_edge_weight * edge
            terms["edge"] = edge.detach()
        self.last_terms = terms
        return total
