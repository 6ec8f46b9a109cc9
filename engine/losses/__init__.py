"""Losses: segmentation losses, teacher edge loss, confidence-gated distillation."""

from .dice import dice_loss
from .distill import DistillResult, gate_masks, gated_distillation
from .lovasz import lovasz_grad, lovasz_softmax
from .segmentation import SegmentationLoss, weighted_cross_entropy
from .teacher import TeacherLoss, binary_water_target, edge_aware_bce, morphological_boundary, sobel_magnitude
from .weights import inverse_frequency_weights

__all__ = [
    "DistillResult",
    "SegmentationLoss",
    "TeacherLoss",
    "binary_water_target",
    "dice_loss",
    "edge_aware_bce",
    "gate_masks",
    "gated_distillation",
    "inverse_frequency_weights",
    "lovasz_grad",
    "lovasz_softmax",
    "morphological_boundary",
    "sobel_magnitude",
    "weighted_cross_entropy",
]
