"""Class-prior correction of a trained segmentation head (post-hoc logit adjustment).

The student learns with class-balanced losses (inverse-frequency cross-entropy, Dice, Lovász):
each class counts as if it were equally common, which is what lifts the rare classes' IoU but
also tilts every uncertain pixel towards a rare class. On real farmland that is hedgerows read
as road and dark pasture read as forest. Adding ``tau * log(prior)`` to the logits puts part of
the class frequencies back (Menon et al. 2021, "Long-tail learning via logit adjustment";
``tau = 1`` undoes an inverse-frequency cross-entropy, ``0`` keeps the balanced rule). The offset
is folded into the head's bias, so every front end and export sees the same decision, and the
model's metadata records it; training and fine-tuning take it out first
(:func:`remove_prior_correction`).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Sequence

import numpy as np
import torch
from torch import nn


def label_prior(histograms: Iterable[np.ndarray], num_classes: int) -> np.ndarray:
    """Class frequencies from per-raster pixel counts (ignore and nodata values left out).

    Args:
        histograms: pixel counts per label value, one array per label raster (any length;
            values ``>= num_classes`` are ignored).
        num_classes: the schema's class count.

    Raises:
        ValueError: if no pixel of any class was counted, or a class never occurs (its log
            prior would be minus infinity).
    """
    total = np.zeros(num_classes, dtype=np.float64)
    for hist in histograms:
        hist = np.asarray(hist, dtype=np.float64)[:num_classes]
        total[: hist.size] += hist
    if total.sum() <= 0:
        raise ValueError("the label rasters hold no pixel of any class: cannot estimate a class prior")
    if (total == 0).any():
        missing = [int(i) for i in np.flatnonzero(total == 0)]
        raise ValueError(f"classes {missing} never occur in the label rasters: their prior would be zero")
    return total / total.sum()


def logit_adjustment(prior: Sequence[float], tau: float) -> np.ndarray:
    """Per-class logit offsets ``tau * log(prior)``, centred (softmax ignores a common shift)."""
    prior = np.asarray(prior, dtype=np.float64)
    if prior.ndim != 1 or (prior <= 0).any() or not np.isfinite(prior).all():
        raise ValueError(f"a class prior needs positive finite frequencies, got {prior.tolist()}")
    if not 0 <= tau <= 2:
        raise ValueError(f"tau should lie in [0, 2] (0: balanced decisions, 1: the training prior), got {tau}")
    offsets = tau * np.log(prior / prior.sum())
    return offsets - offsets.mean()


def fold_logit_adjustment(model: nn.Module, offsets: Sequence[float]) -> None:
    """Add ``offsets`` to the bias of ``model.head`` (a 1x1 ``Conv2d`` with one output per class).

    Exact: everything after the head (bilinear upsampling, cropping) is linear with weights
    summing to one, so each output logit moves by its class's offset.

    Raises:
        ValueError: if the model has no such head (e.g. the refine-up head) or the offsets do
            not match its classes.
    """
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Conv2d) or head.bias is None:
        raise ValueError("a prior correction needs a model whose `head` is a Conv2d with a bias "
                         "(networks built with refine_up=True have none)")
    offsets = torch.as_tensor(np.asarray(offsets, dtype=np.float64), dtype=head.bias.dtype)
    if offsets.shape != head.bias.shape:
        raise ValueError(f"{offsets.numel()} offsets for a head of {head.out_channels} classes")
    with torch.no_grad():
        head.bias += offsets.to(head.bias.device)


def recorded_offsets(train_record: Optional[Dict[str, Any]]) -> Optional[np.ndarray]:
    """The offsets a model's metadata (``ModelMetadata.train``) says are folded into its head."""
    record = (train_record or {}).get("prior_correction")
    return None if not record else np.asarray(record["offsets"], dtype=np.float64)


def remove_prior_correction(model: nn.Module, train_record: Optional[Dict[str, Any]]) -> Optional[np.ndarray]:
    """Take a recorded correction out of the head before training it further.

    Training uses the class-balanced losses the network was trained with; they must see the
    balanced logits, or the head learns the offset away and the record no longer says what the
    bias holds. Returns the offsets removed (``None`` when the model had none).
    """
    offsets = recorded_offsets(train_record)
    if offsets is not None:
        fold_logit_adjustment(model, -offsets)
    return offsets
