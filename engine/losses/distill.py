"""Confidence-gated, water-only distillation (METHOD.md, Training stages, stage 2)."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Tuple

import torch

from ..config import IGNORE_INDEX, DistillConfig


class DistillResult(NamedTuple):
    """Distillation loss of one batch with its gate and KD-region statistics."""

    loss: torch.Tensor  # scalar, attached to the student's graph
    mask_water: torch.Tensor  # (B, H, W) bool
    mask_non_water: torch.Tensor  # (B, H, W) bool
    ratio: float  # |M| / all pixels of the batch (ignore pixels included)
    n_water: int
    n_non_water: int


def gate_masks(
    p_water: Any,
    target: Any = None,
    water_class: int = 3,
    cfg: Optional[DistillConfig] = None,
    ignore_index: int = IGNORE_INDEX,
) -> Tuple[Any, Any]:
    """The confidence gates: ``(M_water, M_non_water)`` boolean arrays (numpy or torch alike).

    With labels (training, gate rasters): ``M_water = (p > water_threshold) & (y == water)``,
    ``M_non = (p < non_water_threshold) & (y != water) & (y != ignore)``; both comparisons are
    strict; ``cfg.gated=False`` (the dense ablation) gates every labelled pixel. Without labels
    (segmentation outputs): the teacher's confidence alone, ``p > water_threshold`` and
    ``p < non_water_threshold``. Training, the gate rasters and the segmentation products all
    call this function, so the rule lives here only.
    """
    cfg = cfg or DistillConfig()
    if target is None:
        return p_water > cfg.water_threshold, p_water < cfg.non_water_threshold
    valid = target != ignore_index
    is_water = target == water_class
    if not cfg.gated:
        return valid & is_water, valid & ~is_water
    return (p_water > cfg.water_threshold) & is_water, (p_water < cfg.non_water_threshold) & ~is_water & valid


def gated_distillation(
    student_logits: torch.Tensor,
    teacher_water_prob: torch.Tensor,
    target: torch.Tensor,
    water_class: int,
    distill_cfg: Optional[DistillConfig] = None,
    ignore_index: int = IGNORE_INDEX,
) -> DistillResult:
    """BCE between the student's and the teacher's water probability on reliable pixels.

    Gated (default): ``M_water = (p_t > water_threshold) & (y == water)`` and
    ``M_non = (p_t < non_water_threshold) & (y != water) & (y != ignore)``; both comparisons
    are strict. ``L = sum_M BCE(p_s, p_t) / |M|``, exactly 0 with zero gradient when M is
    empty. With ``distill_cfg.gated=False`` (the dense ablation) M is every valid pixel,
    split into water/non-water by the label for the statistics.

    Only the student's water probability ``p_s = softmax(logits)[:, water_class]`` is
    distilled; log p_s and log(1 - p_s) come from log-sum-exp of the logits, so saturated
    logits give finite values.

    Args:
        student_logits: (B, K, H, W).
        teacher_water_prob: (B, H, W) or (B, 1, H, W) in [0, 1]; no gradient flows into it.
        target: (B, H, W) labels of the student's schema.
        water_class: id of water in that schema.
        distill_cfg: thresholds and ``gated``.
        ignore_index: unlabelled value.
    """
    cfg = distill_cfg or DistillConfig()
    p_t = teacher_water_prob.detach()
    if p_t.dim() == 4:
        p_t = p_t[:, 0]
    if p_t.shape != target.shape or student_logits.shape[-2:] != target.shape[-2:]:
        raise ValueError(
            "gated_distillation expects student logits (B, K, H, W), teacher probability and target "
            f"(B, H, W) of one size; got {tuple(student_logits.shape)}, {tuple(teacher_water_prob.shape)} "
            f"and {tuple(target.shape)}"
        )
    mask_water, mask_non = gate_masks(p_t, target, water_class, cfg, ignore_index)
    mask = mask_water | mask_non

    log_all = torch.logsumexp(student_logits, dim=1)
    log_ps = student_logits[:, water_class] - log_all
    others = torch.cat([student_logits[:, :water_class], student_logits[:, water_class + 1:]], dim=1)
    log_not_ps = torch.logsumexp(others, dim=1) - log_all
    p_t = p_t.to(student_logits.dtype)
    bce = -(p_t * log_ps + (1 - p_t) * log_not_ps)
    n = mask.sum()
    # torch.where (not multiplication) so that an empty mask gives an exact 0 and zero gradient.
    loss = torch.where(mask, bce, torch.zeros_like(bce)).sum() / n.clamp(min=1).to(bce.dtype)
    return DistillResult(
        loss=loss,
        mask_water=mask_water,
        mask_non_water=mask_non,
        ratio=float(n) / float(target.numel()),
        n_water=int(mask_water.sum()),
        n_non_water=int(mask_non.sum()),
    )
