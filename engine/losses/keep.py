"""Keeping what a model knew about classes nobody drew (learning without forgetting).

Fine-tuning on polygons of a few classes pushes every other class's logits down everywhere:
nothing in the polygons says where those classes are, so they vanish from the map. This term
keeps, on unlabelled pixels, the starting model's confident answers that are undrawn classes
(Li & Hoiem, "Learning without Forgetting", 2016, with hard targets), and leaves every pixel the
starting model gave to a drawn class to the polygons. A soft version (the starting model's
probabilities, the drawn classes pooled) still let undrawn classes vanish on a real chip:
docs/experiments/finetune_keep.md.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def keep_undrawn_loss(
    logits: torch.Tensor,
    start_probs: torch.Tensor,
    mask: torch.Tensor,
    undrawn: Sequence[int],
    min_confidence: float = 0.5,
) -> torch.Tensor:
    """Cross-entropy to the starting model's class where that class is undrawn and sure enough.

    Args:
        logits: (B, K, H, W) of the model being fine-tuned.
        start_probs: (B, K, H, W) softmax of the starting model (no gradient flows into it);
            non-finite values mark pixels without one.
        mask: (B, H, W) bool, the pixels that may be kept (unlabelled, valid).
        undrawn: ids of the classes no polygon holds; empty gives an exact 0.
        min_confidence: the starting model's probability of its class needed to keep it.

    Returns:
        A scalar attached to ``logits``'s graph: the mean over the kept pixels (0 when none).
    """
    if logits.shape != start_probs.shape or mask.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(f"keep_undrawn_loss expects logits and start probabilities (B, K, H, W) and a mask "
                         f"(B, H, W); got {tuple(logits.shape)}, {tuple(start_probs.shape)}, {tuple(mask.shape)}")
    confidence, target = torch.nan_to_num(start_probs.detach().float(), nan=-1.0).max(1)
    is_undrawn = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
    is_undrawn[[int(c) for c in undrawn]] = True
    kept = mask & is_undrawn[target] & (confidence >= min_confidence)
    ce = F.cross_entropy(logits.float(), target, reduction="none")
    # torch.where (not multiplication): no kept pixel gives an exact 0 and zero gradient
    return torch.where(kept, ce, torch.zeros_like(ce)).sum() / kept.sum().clamp(min=1)
