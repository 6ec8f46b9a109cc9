"""Lovász-softmax: the convex Lovász extension of the per-class Jaccard loss."""

from __future__ import annotations

import torch

from ..config import IGNORE_INDEX


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Increments of the Jaccard loss along errors sorted in decreasing order.

    With ``gt_sorted`` the 0/1 ground truth in that order, element i is
    ``J(first i+1 errors) - J(first i errors)`` where ``J(S) = |S| / |gt ∪ S|`` is the Jaccard
    loss of mispredicting the set S.
    """
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if gt_sorted.numel() > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def lovasz_softmax(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Mean over classes present in ``target`` of the Lovász extension of the Jaccard loss.

    Pixels of the whole batch are pooled (not per image). For class c the errors are
    ``|[y == c] - p_c|`` on valid pixels; sorting them and weighting by :func:`lovasz_grad`
    gives the extension's value.

    Args:
        logits: (B, K, H, W).
        target: (B, H, W) integer labels; ``ignore_index`` pixels are excluded.

    Returns:
        Scalar loss; 0 (still attached to the graph) when no pixel is valid.
    """
    k = logits.shape[1]
    probs = torch.softmax(logits, dim=1).permute(0, 2, 3, 1).reshape(-1, k)
    labels = target.reshape(-1)
    valid = labels != ignore_index
    probs, labels = probs[valid], labels[valid]
    losses = []
    for c in torch.unique(labels).tolist():
        fg = (labels == c).to(probs.dtype)
        errors = (fg - probs[:, c]).abs()
        errors_sorted, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(errors_sorted, lovasz_grad(fg[order])))
    if not losses:
        return logits.sum() * 0.0
    return torch.stack(losses).mean()
