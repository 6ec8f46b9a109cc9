"""Confidence-weighted water pseudo-labels from the scene threshold, for label-free adaptation.

Per valid pixel, with ``v`` the smoothed dB, ``t`` the scene threshold and the two-Gaussian fit
(water mean/std ``mu_w``/``s_w``, land std ``s_l``), the rules apply in this order:

1. ``too_dark``: ``v < mu_w - dark_k * s_w``: far below the water mode. Radar shadow, the
   noise floor, or smooth dry surfaces (tarmac, sand) are that dark; SAR does not tell them
   from water reliably -> ignore (255).
2. Water needs the region growing: a pixel below ``t`` outside any seeded grown component
   (``unseeded_dark``) -> ignore; a seeded component smaller than ``min_blob_px`` pixels
   (``small_blob``: speckle or shadow specks) -> ignore.
3. ``water`` (1): in a kept seeded component and ``z_w = (t - v) / s_w >= z_min``.
4. ``non_water`` (0): outside every seeded component and ``z_l = (v - t) / s_l >= z_min``.
5. Everything else (within ``z_min`` spreads of the threshold, or in the hysteresis band of a
   grown component) is ``ambiguous`` -> ignore.

Confidence (float32) is ``min(1, z / z_full)`` on labelled pixels, 0 on ignored ones and NaN
on nodata. A scene with no detectable water (threshold method ``"none"``) gets no labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
from rasterio.windows import Window

from ..progress import NULL_PROGRESS, Progress
from ..raster.io import iter_windows, open_writer
from .components import label_window
from .source import SarSource, array_source, file_source, smoothed_reader
from .threshold import NODATA, ThresholdResult, WaterThresholdConfig, estimate_threshold, grow_components

RULES = ("water", "non_water", "too_dark", "unseeded_dark", "small_blob", "ambiguous", "nodata")


@dataclass
class PseudoLabelConfig:
    """Rules of the pseudo-labels (module docstring); distances are in spreads of the fitted modes."""

    z_min: float = 1.0
    z_full: float = 2.0
    dark_k: float = 3.0
    min_blob_px: int = 20


def _label_window(
    v: np.ndarray, size: np.ndarray, seeded: np.ndarray, result: ThresholdResult, cfg: PseudoLabelConfig
) -> Tuple[np.ndarray, np.ndarray, Dict[str, int]]:
    t, mix = result.threshold, result.mixture
    valid = np.isfinite(v)
    label = np.full(v.shape, NODATA, np.uint8)
    conf = np.where(valid, 0.0, np.nan).astype(np.float32)
    counts = dict.fromkeys(RULES, 0)
    counts["nodata"] = int((~valid).sum())
    if not result.has_water or mix is None:
        counts["ambiguous"] = int(valid.sum())
        return label, conf, counts
    with np.errstate(invalid="ignore"):
        z_w = (t - v) / mix.stds[0]
        z_l = (v - t) / mix.stds[1]
        too_dark = valid & (v < mix.means[0] - cfg.dark_k * mix.stds[0])
        kept = seeded & (size >= cfg.min_blob_px)
        rules = {
            "small_blob": valid & ~too_dark & seeded & ~kept & (v < t),
            "unseeded_dark": valid & ~too_dark & ~seeded & (v < t),
            "water": valid & ~too_dark & kept & (z_w >= cfg.z_min),
            "non_water": valid & ~seeded & (z_l >= cfg.z_min),
        }
    label[rules["water"]] = 1
    label[rules["non_water"]] = 0
    conf[rules["water"]] = np.minimum(1.0, z_w[rules["water"]] / cfg.z_full)
    conf[rules["non_water"]] = np.minimum(1.0, z_l[rules["non_water"]] / cfg.z_full)
    counts["too_dark"] = int(too_dark.sum())
    for name, m in rules.items():
        counts[name] = int(m.sum())
    counts["ambiguous"] = int(valid.sum()) - sum(counts[k] for k in RULES if k not in ("nodata", "ambiguous"))
    return label, conf, counts


MIXED_SHARE = 0.05
"""A block is mixed when at least this share of its valid pixels lies on each side of the threshold."""


def mixed_blocks(
    source: SarSource,
    result: ThresholdResult,
    area: Tuple[int, int, int, int],
    block: int,
    count: int,
    cfg: Optional[WaterThresholdConfig] = None,
    seed: int = 0,
    progress: Progress = NULL_PROGRESS,
) -> List[Tuple[int, int, int, int]]:
    """Up to ``count`` blocks where the scene's water meets its land, for a label-free adaptation
    that can read only a few blocks of a large scene (random blocks often hold no water at all).

    Blocks are ``(col0, row0, col1, row1)`` on a ``block``-pixel lattice from the corner of
    ``area``. A block qualifies when at least :data:`MIXED_SHARE` of its valid smoothed dB lies
    on each side of the threshold. The ``3 * count`` most balanced qualify for a seeded draw of
    ``count``. Empty when the threshold found no water.
    """
    cfg = cfg or WaterThresholdConfig()
    if not result.has_water or count < 1:
        return []
    read = smoothed_reader(source, cfg.smoothing, cfg.smoothing_size)
    c0, r0, c1, r1 = area
    starts = [(c, r) for r in range(r0, r1, block) for c in range(c0, c1, block)]
    scored = []
    for i, (c, r) in enumerate(starts):
        progress.check()
        box = (c, r, min(c + block, c1), min(r + block, r1))
        values = read(Window(c, r, box[2] - c, box[3] - r))
        values = values[np.isfinite(values)]
        if values.size:
            share = float((values < result.threshold).mean())
            if MIXED_SHARE <= share <= 1 - MIXED_SHARE:
                scored.append((abs(share - 0.5), box))
        progress.report((i + 1) / len(starts), "finding where water meets land")
    best = [box for _, box in sorted(scored)[: 3 * count]]
    picked = np.random.default_rng(seed).permutation(len(best))[:count]
    return [best[i] for i in sorted(picked)]


def iter_pseudo_labels(
    source: SarSource,
    result: ThresholdResult,
    cfg: Optional[WaterThresholdConfig] = None,
    label_cfg: Optional[PseudoLabelConfig] = None,
    progress: Progress = NULL_PROGRESS,
) -> Iterator[Tuple[Window, np.ndarray, np.ndarray, Dict[str, int]]]:
    """Yield ``(window, uint8 label, float32 confidence, rule counts)`` window by window."""
    cfg, label_cfg = cfg or WaterThresholdConfig(), label_cfg or PseudoLabelConfig()
    comps = grow_components(source, result, cfg, progress.sub(0.0, 0.5)) if result.has_water else None
    read = smoothed_reader(source, cfg.smoothing, cfg.smoothing_size)
    windows = list(iter_windows(source.width, source.height, cfg.block))
    for i, (win, _) in enumerate(windows):
        progress.check()
        v = read(win)
        size, seeded = np.zeros(v.shape, np.int64), np.zeros(v.shape, bool)
        if comps is not None:
            with np.errstate(invalid="ignore"):
                labels, _ = label_window(v < result.grow_threshold, cfg.connectivity)
            size, seeded = comps.pixel_stats(win, labels)
        yield (win, *_label_window(v, size, seeded, result, label_cfg))
        progress.sub(0.5, 1.0).report((i + 1) / len(windows), "pseudo-labels")


def pseudo_labels_array(
    db: np.ndarray,
    cfg: Optional[WaterThresholdConfig] = None,
    label_cfg: Optional[PseudoLabelConfig] = None,
    progress: Progress = NULL_PROGRESS,
) -> Tuple[np.ndarray, np.ndarray, dict]:
    """Whole-array convenience: (uint8 label 0/1/255, float32 confidence, report) of an (H, W) dB array."""
    cfg = cfg or WaterThresholdConfig()
    source = array_source(db)
    result = estimate_threshold(source, cfg, progress.sub(0.0, 0.3))
    label, conf = np.empty(db.shape, np.uint8), np.empty(db.shape, np.float32)
    counts = dict.fromkeys(RULES, 0)
    for win, lab, cf, c in iter_pseudo_labels(source, result, cfg, label_cfg, progress.sub(0.3, 1.0)):
        sl = np.s_[win.row_off : win.row_off + win.height, win.col_off : win.col_off + win.width]
        label[sl], conf[sl] = lab, cf
        counts = {k: counts[k] + c[k] for k in RULES}
    return label, conf, {"threshold": result.to_dict(), "pixels": counts}


def write_pseudo_labels(
    sar_path: Union[str, Path],
    label_path: Union[str, Path],
    confidence_path: Union[str, Path],
    band: int = 1,
    cfg: Optional[WaterThresholdConfig] = None,
    label_cfg: Optional[PseudoLabelConfig] = None,
    to_db: Optional[Callable[[np.ndarray], np.ndarray]] = None,
    overwrite: bool = False,
    progress: Progress = NULL_PROGRESS,
    result: Optional[ThresholdResult] = None,
) -> dict:
    """Write the pseudo-label raster (uint8: 0 non-water, 1 water, 255 ignore) and its confidence.

    Both GeoTIFFs are on the SAR band's grid and appear only when both are complete. ``result``:
    the threshold of this band with ``cfg`` when already estimated (saves a pass over the raster).

    Returns:
        Report: ``threshold`` (the threshold result), ``pixels`` (count per rule), the paths.
    """
    cfg = cfg or WaterThresholdConfig()
    source = file_source(sar_path, band, to_db)
    result = result or estimate_threshold(source, cfg, progress.sub(0.0, 0.3))
    counts = dict.fromkeys(RULES, 0)
    with open_writer(label_path, source.grid, 1, "uint8", NODATA, overwrite, ["water_pseudo_label"]) as lab_dst:
        with open_writer(confidence_path, source.grid, 1, "float32", float("nan"), overwrite, ["confidence"]) as cf_dst:
            for win, lab, cf, c in iter_pseudo_labels(source, result, cfg, label_cfg, progress.sub(0.3, 1.0)):
                lab_dst.write(lab[None], window=win)
                cf_dst.write(cf[None], window=win)
                counts = {k: counts[k] + c[k] for k in RULES}
    return {
        "threshold": result.to_dict(),
        "pixels": counts,
        "label_path": str(label_path),
        "confidence_path": str(confidence_path),
    }
