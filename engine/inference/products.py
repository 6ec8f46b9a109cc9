"""Per-pixel products of a blended cell: class map, confidence, water probability, gates.

Encodings (also written into each file's metadata):

* class map (uint8): class ids of the schema; :data:`SAR_ONLY_NON_WATER` (254) where only SAR
  is available and the teacher says "not water"; :data:`NODATA_U8` (255) where there is no
  answer (no SAR, outside the AOI or the inputs). Where the optical's NIR band is read
  (:mod:`.spectral`), it says whether open water is possible and the teacher whether it is there:
  the student's water where NIR rules it out (flag :data:`NIR_NOT_WATER`) and the teacher says
  land becomes the student's most probable land class (confidence: that class's probability);
  the student's land where NIR allows water (:data:`NIR_WATER_POSSIBLE`) and the teacher says
  water becomes water (confidence: the teacher's ``p``).
* confidence (float32, NaN nodata): the student's maximum class probability where optical and
  SAR are present; **negative** where the pixel is SAR-only, its magnitude being the
  teacher's confidence ``max(p, 1 - p)``. A SAR-only land-cover model run with a water expert
  takes its water/land decision from the expert (:attr:`Thresholds.water_from_expert`): its
  confidence is then the expert's ``p`` on water and ``(1 - p) * q_k / (1 - q_water)`` on land
  class ``k``, the model's share ``q`` of the land probability.
* water probability (float32, NaN nodata): the teacher's water probability wherever SAR is.
* gates (uint8, 3 bands, 255 nodata): 1) teacher confident water (p > water threshold),
  2) teacher confident non-water (p < non-water threshold), 3) teacher and student agree on
  water vs non-water (255 where there is no student answer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional

import numpy as np

from ..config import DistillConfig
from ..losses.distill import gate_masks
from .blending import Cell

OPTICAL_VALID = 1
"""Flag bit: every optical band is present and not masked as cloud."""
SAR_VALID = 2
"""Flag bit: every SAR band is present."""
NIR_NOT_WATER = 4
"""Flag bit: the optical's NIR reflectance is above what open water reflects (:mod:`.spectral`)."""
NIR_WATER_POSSIBLE = 8
"""Flag bit: the optical's NIR reflectance was read and is low enough for open water (:mod:`.spectral`)."""
NODATA_U8 = 255
SAR_ONLY_NON_WATER = 254
"""Class-map value for SAR-only pixels the teacher calls non-water (land class unknown)."""

AoiMask = Callable[[int, int, int, int], Optional[np.ndarray]]
"""``mask(x0, y0, width, height) -> bool (h, w)`` (True inside), or None for all inside."""


@dataclass(frozen=True)
class Thresholds:
    """How the teacher's answer enters the products: its confidence gates (METHOD.md, confidence gates; the
    rule is :func:`engine.losses.distill.gate_masks`, the defaults those of :class:`DistillConfig`), and
    whether a SAR-only model's class map takes its water from it."""

    water: float = DistillConfig.water_threshold
    non_water: float = DistillConfig.non_water_threshold
    # the class map's water is the expert's (p >= 0.5) and its land the model's best land class:
    # set for SAR-only land-cover models, whose water class is weaker than the calibrated expert's
    water_from_expert: bool = False
    # the class map's water only where the expert also says water: a scene mostly of snow or cloud, where the
    # student reads bright optical it never learnt (engine.inputs.shift.snow_or_cloud)
    water_needs_expert: bool = False


def cell_products(
    cell: Cell,
    water_class: int,
    thresholds: Thresholds = Thresholds(),
    aoi: Optional[AoiMask] = None,
) -> Dict[str, np.ndarray]:
    """Turn blended probabilities of one cell into output arrays.

    Returns:
        dict with ``classes`` (1, h, w) uint8, ``confidence`` (1, h, w) float32, and when a
        teacher was blended ``water`` (1, h, w) float32 and ``gates`` (3, h, w) uint8.
    """
    h, w = cell.height, cell.width
    inside = np.ones((h, w), dtype=bool)
    if aoi is not None:
        m = aoi(cell.x0, cell.y0, w, h)
        if m is not None:
            inside = m
    sar = inside & ((cell.flags & SAR_VALID) > 0)
    both = sar & ((cell.flags & OPTICAL_VALID) > 0)
    sar_only = sar & ~both

    classes = np.full((h, w), NODATA_U8, dtype=np.uint8)
    confidence = np.full((h, w), np.nan, dtype=np.float32)
    classes[both] = np.argmax(cell.probs, axis=0).astype(np.uint8)[both]
    confidence[both] = cell.probs.max(axis=0)[both]
    out = {"classes": classes[None], "confidence": confidence[None]}
    if cell.water is None:
        return out

    p = cell.water
    teacher_water = p >= 0.5
    model_water = classes == water_class  # the agreement gate compares the model's own answer
    if thresholds.water_from_expert:
        _expert_water_in(classes, confidence, cell.probs, p, teacher_water, both, water_class)
    # the NIR band says whether open water is possible, the SAR expert whether it is there (:mod:`.spectral`)
    ruled_out = thresholds.water_needs_expert | ((cell.flags & NIR_NOT_WATER) > 0)
    nir_land = both & model_water & ~teacher_water & ruled_out
    if nir_land.any():
        _best_land_in(classes, confidence, cell.probs, nir_land, water_class)
    nir_water = both & ~model_water & teacher_water & ((cell.flags & NIR_WATER_POSSIBLE) > 0)
    classes[nir_water] = water_class
    confidence[nir_water] = p[nir_water]
    classes[sar_only] = np.where(teacher_water[sar_only], water_class, SAR_ONLY_NON_WATER)
    confidence[sar_only] = -np.maximum(p, 1.0 - p)[sar_only]
    water = np.where(sar, p, np.nan).astype(np.float32)
    gates = np.full((3, h, w), NODATA_U8, dtype=np.uint8)
    m_water, m_non = gate_masks(p, None, water_class, DistillConfig(water_threshold=thresholds.water,
                                                                     non_water_threshold=thresholds.non_water))
    gates[0][sar] = m_water[sar]
    gates[1][sar] = m_non[sar]
    gates[2][both] = (model_water == teacher_water)[both]
    out["water"] = water[None]
    out["gates"] = gates
    return out


def _best_land(probs: np.ndarray, water_class: int) -> np.ndarray:
    land = probs.copy()
    land[water_class] = -1.0
    return np.argmax(land, axis=0)


def _best_land_in(classes: np.ndarray, confidence: np.ndarray, probs: np.ndarray, where: np.ndarray,
                  water_class: int) -> None:
    """The model's most probable land class and its probability on ``where`` (in place)."""
    best_land = _best_land(probs, water_class)
    classes[where] = best_land.astype(np.uint8)[where]
    confidence[where] = np.take_along_axis(probs, best_land[None], axis=0)[0][where]


def _expert_water_in(
    classes: np.ndarray, confidence: np.ndarray, probs: np.ndarray, p: np.ndarray, water: np.ndarray,
    where: np.ndarray, water_class: int,
) -> None:
    """Water where the expert says so, else the model's most probable land class (in place, on ``where``)."""
    best_land = _best_land(probs, water_class)
    share = np.take_along_axis(probs, best_land[None], axis=0)[0] / np.maximum(1.0 - probs[water_class], 1e-6)
    classes[where] = np.where(water, water_class, best_land).astype(np.uint8)[where]
    confidence[where] = np.where(water, p, (1.0 - p) * np.minimum(share, 1.0))[where]
