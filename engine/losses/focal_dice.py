"""Alpha-scaled class weighting inside a focal + Dice loss (ALOS-2 refinements, METHOD.md).

Inverse-frequency weights ``w_k = N / (K N_k)`` correct a long-tailed label distribution but,
used raw, a class holding 0.1 % of the pixels gets a weight in the hundreds and dominates the
gradient. Raising them to a power ``alpha`` in (0, 1] tempers them: ``w_k ** 0.5`` keeps the
order of the classes and shrinks the ratio between the rarest and the commonest to its square
root. ``alpha = 0`` is unweighted, ``alpha = 1`` the raw inverse frequency.

* focal: ``sum_i w_{y_i} (1 - p_i)^gamma (-log p_i) / sum_i w_{y_i}`` (as in RIFT);
* Dice (:func:`~engine.losses.dice.dice_loss` with the weights): ``1 - sum_k w_k D_k / sum_k w_k``
  over the classes present in the batch, with
  ``D_k = 2 sum p_ik y_ik / (sum p_ik + sum y_ik)`` (soft counts over the valid pixels);
* total: ``focal_dice_focal_weight * focal + focal_dice_dice_weight * Dice`` (0.5 each).
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import nn

from ..config import IGNORE_INDEX, LossConfig
from .dice import dice_loss
from .rift import RiftTeacherLoss, check_loss_config, focal_loss


def alpha_scaled_weights(weights: torch.Tensor, alpha: float) -> torch.Tensor:
    """``weights ** alpha``; a weight of 0 (a class without pixels) stays 0."""
    if alpha < 0:
        raise ValueError(f"alpha scale must be 0 or more, got {alpha}")
    weights = torch.as_tensor(weights, dtype=torch.float32)
    return torch.where(weights > 0, weights.clamp(min=1e-12).pow(alpha), torch.zeros_like(weights))


class FocalDiceLoss(nn.Module):
    """Focal + Dice with alpha-scaled inverse-frequency class weights.

    Same interface as :class:`~engine.losses.segmentation.SegmentationLoss`: ``forward(logits,
    target)``; ``last_terms`` holds the detached ``focal`` and ``dice`` values.

    Args:
        loss_cfg: :class:`~engine.config.LossConfig` (``alpha_scale``, ``focal_gamma``,
            ``focal_dice_focal_weight``, ``focal_dice_dice_weight``, ``inverse_frequency_weights``).
        class_weights: (K,) raw inverse-frequency weights of the training split; raised to
            ``alpha_scale`` here. Not used when ``loss_cfg.inverse_frequency_weights`` is False.
        ignore_index: label value excluded everywhere.
    """

    def __init__(
        self,
        loss_cfg: Optional[LossConfig] = None,
        class_weights: Optional[torch.Tensor] = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        self.cfg = loss_cfg or LossConfig(kind="focal_dice")
        check_loss_config(self.cfg)
        self.ignore_index = ignore_index
        use = class_weights is not None and self.cfg.inverse_frequency_weights
        weights = alpha_scaled_weights(class_weights, self.cfg.alpha_scale) if use else None
        self.register_buffer("class_weights", weights)
        self.last_terms: Dict[str, torch.Tensor] = {}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.class_weights is not None and self.class_weights.numel() != logits.shape[1]:
            raise ValueError(
                f"FocalDiceLoss has {self.class_weights.numel()} class weights but the logits "
                f"have {logits.shape[1]} classes"
            )
        cfg = self.cfg
        terms: Dict[str, torch.Tensor] = {}
        if cfg.focal_dice_focal_weight:
            terms["focal"] = focal_loss(logits, target, self.class_weights, cfg.focal_gamma, self.ignore_index)
        if cfg.focal_dice_dice_weight:
            terms["dice"] = dice_loss(logits, target, self.ignore_index, class_weights=self.class_weights)
        weights = {"focal": cfg.focal_dice_focal_weight, "dice": cfg.focal_dice_dice_weight}
        total = logits.sum() * 0.0
        for name, value in terms.items():
            total = total + weights[name] * value
        self.last_terms = {name: value.detach() for name, value in terms.items()}
        return total


class FocalDiceTeacherLoss(RiftTeacherLoss):
    """Focal + Dice on the teacher's two classes + ``teacher_edge_weight`` x the edge-aware BCE;
    ``forward(logits, target01, sar)``."""

    term = FocalDiceLoss
    kind = "focal_dice"
