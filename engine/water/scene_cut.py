"""The water teacher's cut for SAR whose levels are only relative.

The teacher's decision offset was calibrated on Sentinel-1 sigma0 (:mod:`.calibration`). On SAR
whose levels are not calibrated backscatter (airborne X-band, digital numbers without a
calibration constant) the teacher still ranks pixels well (Rotterdam, once nodata is filled: AUC
1.00 on its evaluation polygons, 0.88 on its training polygons), but water sits under the cut.
There the cut comes from the scene: Otsu's threshold on the teacher's water logits over a sample
of the scene's valid pixels, folded into a copy of the head: for one run of segmentation, the water
map or flood mapping, and into the saved teacher of a fine-tune or adaptation
(docs/experiments/zero_shot_real.md, "Relative SAR levels").
"""

from __future__ import annotations

import copy
import math
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from .calibration import fold_water_offset
from .histogram import Bins, otsu_index

SAMPLE_TILES = 16
"""Tiles of the scene, spread evenly over it, whose valid pixels choose the cut."""
LOGIT_LIMIT = 4.0
"""The scene may move the cut this far in logits (probability 0.018-0.982), no further."""
LOGIT_BINS = Bins(lo=-20.0, hi=20.0, width=0.05)
"""Histogram bins of water-minus-land logits for Otsu's threshold."""


def spread(items: Sequence, count: int = SAMPLE_TILES) -> list:
    """Up to ``count`` items evenly spaced over ``items`` (all of them when fewer)."""
    if len(items) <= count:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


@torch.no_grad()
def water_logits(model: nn.Module, batches: Iterable[tuple], device: torch.device) -> np.ndarray:
    """Water-minus-land logits of the teacher on the valid pixels of ``(sar, valid)`` batches."""
    model.eval()
    out = []
    for sar, valid in batches:
        logits = model(torch.from_numpy(np.ascontiguousarray(sar, np.float32)).to(device)).float()
        diff = (logits[:, 1] - logits[:, 0]).cpu().numpy()
        out.append(diff[np.asarray(valid, bool)])
    return np.concatenate(out) if out else np.empty(0, np.float32)


def scene_cut(logits: np.ndarray) -> float:
    """The scene's cut in logits: Otsu's threshold, clamped to +-``LOGIT_LIMIT``."""
    k = otsu_index(LOGIT_BINS.count(logits), LOGIT_BINS)
    if k is None:  # no pixel, or all in one bin: nothing to split, the calibrated cut stays
        return 0.0
    return float(np.clip(LOGIT_BINS.edges[k], -LOGIT_LIMIT, LOGIT_LIMIT))


def with_scene_cut(model: nn.Module, batches: Iterable[tuple], device: torch.device) -> tuple:
    """A copy of the teacher whose ``p >= 0.5`` is the scene's cut, and that cut as a probability
    of the original teacher."""
    cut = scene_cut(water_logits(model, batches, device))
    threshold = 1.0 / (1.0 + math.exp(-cut))
    shifted = copy.deepcopy(model)
    fold_water_offset(shifted, threshold)
    return shifted, threshold
