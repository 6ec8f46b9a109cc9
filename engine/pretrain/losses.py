"""The loss terms of DI3CL pretraining: InfoNCE against a queue, and contour consistency."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812  (the usual torch alias)


def info_nce(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """Contrastive loss: each query must pick its own key among the batch's other keys and the queue.

    The other keys of the batch come from the current momentum encoder (as in MoCo v3); the queue
    (MoCo) adds many older ones.

    Args:
        query, key: (M, D) L2-normalised embeddings; row ``i`` of both shows the same ground.
        queue: (D, K) L2-normalised negatives (keys of earlier batches).
        temperature: softmax temperature.

    Returns:
        the mean cross-entropy of the positive among ``M + K`` candidates.
    """
    logits = torch.cat([query @ key.T, query @ queue], dim=1) / temperature
    return F.cross_entropy(logits, torch.arange(len(query), device=query.device))


def contour_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Class-balanced binary cross-entropy of a contour map against SAR contours, on valid pixels.

    Contours are a small share of the pixels; weighting them by the inverse share keeps the
    head from predicting "no contour" everywhere.
    """
    weight = valid.clone()
    n_valid = valid.sum().clamp(min=1.0)
    positive = (target * valid).sum().clamp(min=1.0)
    weight = torch.where(target > 0.5, weight * (n_valid / positive) * 0.5,
                         weight * (n_valid / (n_valid - positive).clamp(min=1.0)) * 0.5)
    loss = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum")
    return loss / n_valid


def consistency_loss(query_prob: torch.Tensor, key_prob: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of two views' contour probabilities at the same ground points."""
    return ((query_prob - key_prob) ** 2).mean()
