"""The student's segmentation loss: weighted cross-entropy + Dice + Lovász-softmax."""

from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F  # noqa: N812  (the usual torch alias)
from torch import nn

from ..config import IGNORE_INDEX, LossConfig
from .dice import dice_loss
from .lovasz import lovasz_softmax


class SegmentationLoss(nn.Module):
    """``ce_weight * wCE + dice_weight * Dice + lovasz_weight * Lovász`` (METHOD.md, stage 1).

    Terms with weight 0 are not computed. After each call ``last_terms`` holds the detached
    value of every term, for logging.

    Args:
        loss_cfg: :class:`~engine.config.LossConfig`.
        class_weights: (K,) cross-entropy weights (see :func:`inverse_frequency_weights`), or
            None for plain CE. Not used when ``loss_cfg.inverse_frequency_weights`` is False.
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

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of (B, K, H, W) ``logits`` against (B, H, W) integer ``target``."""
        if self.class_weights is not None and self.class_weights.numel() != logits.shape[1]:
            raise ValueError(
                f"SegmentationLoss has {self.class_weights.numel()} class weights but the logits "
                f"have {logits.shape[1]} classes"
            )
        target = target.long()
        terms: Dict[str, torch.Tensor] = {}
        if self.cfg.ce_weight:
            terms["ce"] = weighted_cross_entropy(logits, target, self.class_weights, self.ignore_index)
        if self.cfg.dice_weight:
            terms["dice"] = dice_loss(logits, target, self.ignore_index)
        if self.cfg.lovasz_weight:
            terms["lovasz"] = lovasz_softmax(logits, target, self.ignore_index)
        weights = {"ce": self.cfg.ce_weight, "dice": self.cfg.dice_weight, "lovasz": self.cfg.lovasz_weight}
        total = logits.sum() * 0.0
        for name, value in terms.items():
            total = total + weights[name] * value
        self.last_terms = {name: value.detach() for name, value in terms.items()}
        return total


def weighted_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: Optional[torch.Tensor] = None,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Class-weighted CE averaged by the total weight of valid pixels; 0 when none is valid."""
    target = target.long()
    valid = target != ignore_index
    per_pixel = F.cross_entropy(
        logits, target, weight=class_weights, ignore_index=ignore_index, reduction="none"
    )
    if class_weights is None:
        norm = valid.sum().to(logits.dtype)
    else:
        norm = class_weights.to(logits.dtype)[torch.where(valid, target, 0)].mul(valid).sum()
    # Computed by hand rather than reduction="mean" so that a batch without a (weighted)
    # valid pixel gives 0 instead of 0/0 = NaN.
    return per_pixel.sum() / norm.clamp(min=1e-12)
