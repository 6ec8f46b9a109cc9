"""RIFT (rare-instance focal-Tversky): class-weighted focal loss + Tversky loss.

The CLAIRE line of work (METHOD.md, "Related systems") trains its segmentation network with a
class-weighted focal loss, which spends the gradient on pixels the network still gets wrong,
plus a Tversky loss, which weighs missed pixels of a class (false negatives, ``beta``) more than
pixels wrongly given to it (false positives, ``alpha``), so small and rare classes (roads,
villages) are not traded away for the large ones.

* focal: ``sum_i w_{y_i} (1 - p_i)^gamma (-log p_i) / sum_i w_{y_i}`` over valid pixels, with
  ``p_i`` the softmax probability of the true class and ``w`` the class weights (from the
  training split's class frequencies; all ones without weights). With ``gamma = 0`` it is the
  project's weighted cross-entropy exactly.
* Tversky: per class ``TI_k = TP_k / (TP_k + alpha FP_k + beta FN_k)`` with soft counts
  ``TP_k = sum p_ik y_ik``, ``FP_k = sum p_ik (1 - y_ik)``, ``FN_k = sum (1 - p_ik) y_ik`` over the
  valid pixels of the batch; loss ``1 - mean_k TI_k`` over the classes present in the target
  (as the Dice loss does). ``alpha = beta = 0.5`` is the Dice loss.
* total: ``focal_weight * focal + tversky_weight * Tversky`` (:class:`~engine.config.LossConfig`).

Label ``ignore_index`` (255) is excluded everywhere; a batch without a valid pixel gives an
exact 0 that is still attached to the graph.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F  # noqa: N812  (the usual torch alias)
from torch import nn

from ..config import IGNORE_INDEX, LossConfig, from_dict

LOSS_KINDS = ("sgcad", "rift", "focal_dice")


def check_loss_config(cfg: LossConfig) -> None:
    """Raise ``ValueError`` naming the field when a loss setting cannot work."""
    if cfg.kind not in LOSS_KINDS:
        raise ValueError(f"LossConfig.kind must be one of {LOSS_KINDS}, got {cfg.kind!r}")
    if cfg.focal_gamma < 0:
        raise ValueError(f"focal gamma must be 0 or more, got {cfg.focal_gamma}")
    if cfg.tversky_alpha < 0 or cfg.tversky_beta < 0 or cfg.tversky_alpha + cfg.tversky_beta <= 0:
        raise ValueError(
            "Tversky alpha (false positives) and beta (false negatives) must be 0 or more and not both 0, "
            f"got alpha {cfg.tversky_alpha} and beta {cfg.tversky_beta}"
        )
    if cfg.focal_weight < 0 or cfg.tversky_weight < 0:
        raise ValueError(f"RIFT term weights must be 0 or more, got {cfg.focal_weight} and {cfg.tversky_weight}")
    if cfg.alpha_scale < 0:
        raise ValueError(f"LossConfig.alpha_scale (power of the class weights) must be 0 or more, "
                         f"got {cfg.alpha_scale}")
    if cfg.focal_dice_focal_weight < 0 or cfg.focal_dice_dice_weight < 0:
        raise ValueError(
            "focal + Dice term weights must be 0 or more, "
            f"got {cfg.focal_dice_focal_weight} and {cfg.focal_dice_dice_weight}"
        )


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: Optional[torch.Tensor] = None,
    gamma: float = 2.0,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Class-weighted focal loss, normalised by the summed weight of the valid pixels.

    Args:
        logits: (B, K, H, W).
        target: (B, H, W) integer labels.
        class_weights: (K,) weights, or None for all ones.
        gamma: focusing exponent; 0 gives weighted cross-entropy.
        ignore_index: label value to ignore.
    """
    target = target.long()
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    log_p = torch.log_softmax(logits, dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)  # B, H, W
    modulation = (1.0 - log_p.exp()).clamp(min=0.0).pow(gamma) if gamma else torch.ones_like(log_p)
    per_pixel = -modulation * log_p
    if class_weights is None:
        weight = valid.to(logits.dtype)
    else:
        weight = class_weights.to(logits.dtype)[safe] * valid
    return (weight * per_pixel).sum() / weight.sum().clamp(min=1e-12)


def tversky_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 0.3,
    beta: float = 0.7,
    ignore_index: int = IGNORE_INDEX,
    eps: float = 1e-6,
) -> torch.Tensor:
    """``1 - mean_k TP_k / (TP_k + alpha FP_k + beta FN_k)`` over classes present in ``target``.

    Soft counts from softmax probabilities, pooled over the valid pixels of the batch.
    """
    k = logits.shape[1]
    target = target.long()
    valid = target != ignore_index
    probs = torch.softmax(logits, dim=1) * valid.unsqueeze(1)
    onehot = F.one_hot(torch.where(valid, target, 0), k).permute(0, 3, 1, 2).to(probs.dtype)
    onehot = onehot * valid.unsqueeze(1)
    dims = (0, 2, 3)
    tp = (probs * onehot).sum(dim=dims)
    fp = (probs * (1.0 - onehot)).sum(dim=dims)
    fn = ((1.0 - probs) * onehot).sum(dim=dims)
    present = onehot.sum(dim=dims) > 0
    if not present.any():
        return logits.sum() * 0.0
    index = tp[present] / (tp[present] + alpha * fp[present] + beta * fn[present]).clamp(min=eps)
    return 1.0 - index.mean()


class RiftLoss(nn.Module):
    """``focal_weight * weighted focal + tversky_weight * Tversky`` for the K-class student.

    Same interface as :class:`~engine.losses.segmentation.SegmentationLoss`: ``forward(logits,
    target)``; ``last_terms`` holds the detached ``focal`` and ``tversky`` values.

    Args:
        loss_cfg: :class:`~engine.config.LossConfig` (``focal_gamma``, ``tversky_alpha``,
            ``tversky_beta``, ``focal_weight``, ``tversky_weight``, ``inverse_frequency_weights``).
        class_weights: (K,) focal weights (e.g. :func:`inverse_frequency_weights` of the training
            split); not used when ``loss_cfg.inverse_frequency_weights`` is False.
        ignore_index: label value excluded everywhere.
    """

    def __init__(
        self,
        loss_cfg: Optional[LossConfig] = None,
        class_weights: Optional[torch.Tensor] = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        self.cfg = loss_cfg or LossConfig(kind="rift")
        check_loss_config(self.cfg)
        self.ignore_index = ignore_index
        use = class_weights is not None and self.cfg.inverse_frequency_weights
        weights = torch.as_tensor(class_weights, dtype=torch.float32) if use else None
        self.register_buffer("class_weights", weights)
        self.last_terms: Dict[str, torch.Tensor] = {}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.class_weights is not None and self.class_weights.numel() != logits.shape[1]:
            raise ValueError(
                f"RiftLoss has {self.class_weights.numel()} class weights but the logits "
                f"have {logits.shape[1]} classes"
            )
        terms: Dict[str, torch.Tensor] = {}
        if self.cfg.focal_weight:
            terms["focal"] = focal_loss(logits, target, self.class_weights, self.cfg.focal_gamma, self.ignore_index)
        if self.cfg.tversky_weight:
            terms["tversky"] = tversky_loss(
                logits, target, self.cfg.tversky_alpha, self.cfg.tversky_beta, self.ignore_index
            )
        weights = {"focal": self.cfg.focal_weight, "tversky": self.cfg.tversky_weight}
        total = logits.sum() * 0.0
        for name, value in terms.items():
            total = total + weights[name] * value
        self.last_terms = {name: value.detach() for name, value in terms.items()}
        return total


class RiftTeacherLoss(nn.Module):
    """RIFT on the teacher's two classes (non-water, water) + ``teacher_edge_weight`` x the
    edge-aware BCE of :class:`~engine.losses.teacher.TeacherLoss`; ``forward(logits, target01, sar)``.
    A subclass names another two-class term in ``term`` and ``kind``."""

    term: type = RiftLoss
    kind: str = "rift"

    def __init__(
        self,
        loss_cfg: Optional[LossConfig] = None,
        class_weights: Optional[torch.Tensor] = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        self.cfg = loss_cfg or LossConfig(kind=self.kind)
        self.rift = self.term(self.cfg, class_weights, ignore_index)  # the two-class term
        self.ignore_index = ignore_index
        self.last_terms: Dict[str, torch.Tensor] = {}

    def forward(self, logits: torch.Tensor, target: torch.Tensor, sar: torch.Tensor) -> torch.Tensor:
        from .teacher import edge_aware_bce

        if logits.shape[1] != 2:
            raise ValueError(f"RiftTeacherLoss expects 2-class (non-water, water) logits, got {logits.shape[1]}")
        total = self.rift(logits, target)
        terms = dict(self.rift.last_terms)
        if self.cfg.teacher_edge_weight:
            beta = self.cfg.teacher_edge_beta
            edge = edge_aware_bce(logits, target.long(), sar, beta, ignore_index=self.ignore_index)
            total = total + self.cfg.teacher_edge_weight * edge
            terms["edge"] = edge.detach()
        self.last_terms = terms
        return total


def _by_kind(loss_cfg, class_weights, ignore_index, sgcad: type, rift: type, focal_dice: type) -> nn.Module:
    cfg = loss_cfg or LossConfig()
    check_loss_config(cfg)
    chosen = {"rift": rift, "focal_dice": focal_dice}.get(cfg.kind, sgcad)
    return chosen(cfg, class_weights, ignore_index)


def build_segmentation_loss(
    loss_cfg: Optional[LossConfig] = None,
    class_weights: Optional[torch.Tensor] = None,
    ignore_index: int = IGNORE_INDEX,
) -> nn.Module:
    """The student's loss chosen by ``loss_cfg.kind``: ``"sgcad"`` (wCE + Dice + Lovász), ``"rift"``
    or ``"focal_dice"`` (alpha-scaled weights, :mod:`engine.losses.focal_dice`)."""
    from .focal_dice import FocalDiceLoss
    from .segmentation import SegmentationLoss

    return _by_kind(loss_cfg, class_weights, ignore_index, SegmentationLoss, RiftLoss, FocalDiceLoss)


def build_teacher_loss(
    loss_cfg: Optional[LossConfig] = None,
    class_weights: Optional[torch.Tensor] = None,
    ignore_index: int = IGNORE_INDEX,
) -> nn.Module:
    """The teacher's loss by ``loss_cfg.kind``: CE + edge BCE (``"sgcad"``) or RIFT + edge BCE."""
    from .focal_dice import FocalDiceTeacherLoss
    from .teacher import TeacherLoss

    return _by_kind(loss_cfg, class_weights, ignore_index, TeacherLoss, RiftTeacherLoss, FocalDiceTeacherLoss)


def loss_config_of(train_record: Optional[Dict[str, Any]]) -> LossConfig:
    """The :class:`LossConfig` a model was trained with (``ModelMetadata.train["loss"]``), or the
    default one for models that did not record it."""
    stored = (train_record or {}).get("loss")
    if not isinstance(stored, dict):
        return LossConfig()
    return from_dict(LossConfig, stored)
