"""Losses: segmentation (wCE + Dice + Lovász, RIFT, or alpha-scaled focal + Dice), teacher edge loss,
confidence-gated distillation, keeping undrawn classes while fine-tuning."""

from .dice import dice_loss
from .distill import DistillResult, gate_masks, gated_distillation
from .focal_dice import FocalDiceLoss, FocalDiceTeacherLoss, alpha_scaled_weights
from .keep import keep_undrawn_loss
from .lovasz import lovasz_grad, lovasz_softmax
from .rift import (
    LOSS_KINDS,
    RiftLoss,
    RiftTeacherLoss,
    build_segmentation_loss,
    build_teacher_loss,
    focal_loss,
    loss_config_of,
    tversky_loss,
)
from .segmentation import SegmentationLoss, weighted_cross_entropy
from .teacher import TeacherLoss, binary_water_target, edge_aware_bce, morphological_boundary, sobel_magnitude
from .weights import inverse_frequency_weights

__all__ = [
    "DistillResult",
    "FocalDiceLoss",
    "FocalDiceTeacherLoss",
    "LOSS_KINDS",
    "RiftLoss",
    "RiftTeacherLoss",
    "SegmentationLoss",
    "TeacherLoss",
    "alpha_scaled_weights",
    "binary_water_target",
    "build_segmentation_loss",
    "build_teacher_loss",
    "dice_loss",
    "edge_aware_bce",
    "focal_loss",
    "gate_masks",
    "gated_distillation",
    "inverse_frequency_weights",
    "keep_undrawn_loss",
    "loss_config_of",
    "lovasz_grad",
    "lovasz_softmax",
    "morphological_boundary",
    "sobel_magnitude",
    "tversky_loss",
    "weighted_cross_entropy",
]
