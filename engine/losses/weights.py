"""Inverse-frequency class weights from a class histogram."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch


def inverse_frequency_weights(
    histogram: Union[Sequence[float], np.ndarray, torch.Tensor], max_weight: Optional[float] = None
) -> torch.Tensor:
    """Per-class weights ``w_k = N / (K * N_k)`` from pixel counts ``N_k`` (N = their sum).

    A balanced histogram gives all ones; for two classes this is ``N / (2 N_k)`` as in the
    teacher's loss. A class with no pixels gets weight 0: it has no target pixel to weight,
    and a finite value keeps the weight vector usable in ``cross_entropy``.

    Args:
        histogram: pixel count per class (ignore pixels excluded), length K.
        max_weight: optional cap so a very rare class cannot dominate the loss.

    Returns:
        float32 tensor of shape (K,).

    Raises:
        ValueError: if the histogram is empty, negative, not finite or sums to zero.
    """
    counts = torch.as_tensor(np.asarray(histogram, dtype=np.float64))
    if counts.dim() != 1 or counts.numel() == 0:
        raise ValueError(
            f"class histogram must be a non-empty 1-D list of counts, got shape {tuple(counts.shape)}"
        )
    if not torch.isfinite(counts).all() or (counts < 0).any():
        raise ValueError(f"class histogram must hold finite non-negative counts, got {counts.tolist()}")
    total = counts.sum()
    if total <= 0:
        raise ValueError("class histogram is all zeros: no labelled pixel to compute class weights from")
    k = counts.numel()
    weights = torch.where(counts > 0, total / (k * counts.clamp(min=1e-12)), torch.zeros_like(counts))
    if max_weight is not None:
        weights = weights.clamp(max=float(max_weight))
    return weights.float()
