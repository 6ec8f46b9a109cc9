"""Multi-class soft Dice loss."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F  # noqa: N812  (the usual torch alias)

from ..config import IGNORE_INDEX


def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    eps: float = 1e-6,
    class_weights: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``1 - mean_k 2 |P_k . Y_k| / (|P_k| + |Y_k|)`` over the classes present in ``target``.

    ``P`` are softmax probabilities, ``Y`` the one-hot labels, sums run over all valid pixels
    of the batch. Classes absent from the target are left out of the mean (their Dice is
    undefined; their false positives already lower the present classes' Dice).

    Args:
        logits: (B, K, H, W).
        target: (B, H, W) integer labels; ``ignore_index`` pixels are excluded.
        ignore_index: label value to ignore.
        eps: guards the division.
        class_weights: (K,) weights ``w_k``: the mean becomes ``sum_k w_k D_k / sum_k w_k``
            over the present classes.

    Returns:
        Scalar loss; 0 (still attached to the graph) when no pixel is valid (or no present
        class has weight).
    """
    k = logits.shape[1]
    valid = target != ignore_index
    probs = torch.softmax(logits, dim=1) * valid.unsqueeze(1)
    onehot = F.one_hot(torch.where(valid, target, 0).long(), k).permute(0, 3, 1, 2).to(probs.dtype)
    onehot = onehot * valid.unsqueeze(1)
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    denom = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    present = onehot.sum(dim=(0, 2, 3)) > 0
    if not present.any():
        return logits.sum() * 0.0
    dice = 2 * inter / denom.clamp(min=eps)
    if class_weights is None:
        return 1.0 - dice[present].mean()
    w = class_weights.to(probs) * present
    if float(w.sum()) <= 0:
        return logits.sum() * 0.0
    return 1.0 - (w * dice).sum() / w.sum()
