"""Losses: segmentation losses, teacher edge loss, confidence-gated distillation."""
