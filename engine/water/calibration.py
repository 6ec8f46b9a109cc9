"""Decision calibration of the SAR water teacher on labelled real scenes.

A teacher trained on synthetic scenes, where dark land (sand, tarmac, smooth fields, wet snow)
is common, learns to distrust dark pixels: on real Sentinel-1 scenes its water probability sits
at 0.3-0.5 on open water that a scene threshold finds easily. Its ranking is right, its cut is
not. The fix here is a single logit offset (a prior-shift correction), chosen on labelled real
scenes and folded into the network's last layer, so every consumer (water maps, confidence
gates, label-free adaptation, fine-tuning) sees the calibrated probability.

The offset is chosen from a coarse grid of thresholds by the mean water IoU over scenes, and
validated leave-one-scene-out: each scene is scored with the threshold chosen on the others.
"""

from __future__ import annotations

import math
from typing import Dict, List, Mapping, Sequence

import numpy as np
import torch
from torch import nn

THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(2, 13))  # 0.10 ... 0.60


def water_iou(prob: np.ndarray, truth: np.ndarray, threshold: float) -> float:
    """IoU of ``prob > threshold`` against ``truth`` (1 water, 0 not, 255 not scored)."""
    scored = truth != 255
    pred, water = prob[scored] > threshold, truth[scored] == 1
    return float((pred & water).sum() / max((pred | water).sum(), 1))


def iou_table(scenes: Mapping[str, tuple], thresholds: Sequence[float] = THRESHOLDS) -> Dict[str, List[float]]:
    """Water IoU per scene (``name -> (prob, truth)``) at each threshold."""
    return {name: [water_iou(p, t, th) for th in thresholds] for name, (p, t) in scenes.items()}


def best_threshold(table: Mapping[str, Sequence[float]], thresholds: Sequence[float] = THRESHOLDS,
                   exclude: str = "") -> float:
    """The threshold with the highest mean IoU over the scenes (``exclude`` left out).

    Ties go to the threshold closest to 0.5, the uncalibrated cut.
    """
    names = [n for n in table if n != exclude]
    if not names:
        raise ValueError("calibration needs at least one scene besides the one left out")
    means = np.mean([table[n] for n in names], axis=0)
    order = sorted(range(len(thresholds)), key=lambda i: (-round(float(means[i]), 6), abs(thresholds[i] - 0.5)))
    return float(thresholds[order[0]])


def leave_one_out(table: Mapping[str, Sequence[float]], thresholds: Sequence[float] = THRESHOLDS) -> Dict[str, dict]:
    """For each scene: the threshold chosen on the other scenes and the IoU it gets here."""
    out = {}
    for name, row in table.items():
        th = best_threshold(table, thresholds, exclude=name)
        out[name] = {"threshold": th, "iou": float(row[list(thresholds).index(th)])}
    return out


def logit_offset(threshold: float) -> float:
    """The offset that moves the decision ``p > threshold`` to ``p' > 0.5``."""
    if not 0 < threshold < 1:
        raise ValueError(f"the calibration threshold must be in (0, 1), got {threshold}")
    return math.log((1 - threshold) / threshold)


def water_heads(model: nn.Module) -> List[nn.Conv2d]:
    """The two-class heads whose logits make ``model``'s water answer: its own ``head``, or those of the
    networks it wraps or averages (``members()``: a flip-averaged network, a pair of experts answering
    together, :class:`engine.models.polarisation_pair.PolarisationPair`)."""
    members = getattr(model, "members", None)
    if callable(members):
        return [head for net in members() for head in water_heads(net)]
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Conv2d) or head.out_channels != 2 or head.bias is None:
        raise ValueError("water calibration needs a teacher whose `head` is a 2-class Conv2d with a bias")
    return [head]


def fold_water_offset(model: nn.Module, threshold: float) -> float:
    """Shift the two-class head's bias so that the old ``p > threshold`` becomes ``p > 0.5``.

    Softmax over (not water, water) depends on the logit difference only: half the offset goes
    to each bias. Exact, since everything after the head (bilinear upsampling) is linear; a pair
    averages its members' logits, so shifting each member's head by the offset shifts the pair's.

    Returns:
        the logit offset applied.
    """
    offset = logit_offset(threshold)
    with torch.no_grad():
        for head in water_heads(model):
            head.bias[1] += offset / 2
            head.bias[0] -= offset / 2
    return offset
