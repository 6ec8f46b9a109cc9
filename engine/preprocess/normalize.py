"""Robust 2-98 % normalisation with percentiles from a bounded sample of the whole raster.

The percentiles are computed once per raster and kept in a :class:`NormalizationRecord`,
so every tile of a scene, in training and in inference, is scaled identically. Which record a
run applies (this raster's percentiles, or a fixed physical range stored in the model) is
decided by the input contract (:mod:`engine.inputs.contract`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import rasterio
from rasterio.windows import Window

from ..config import (
    BandNormalization,
    NormalizationRecord,
    OpticalPreprocessConfig,
    SarPreprocessConfig,
    from_dict,
    save_json,
)
from ..progress import NULL_PROGRESS, Progress
from ..raster.grid import Grid, read_on_grid
from ..raster.io import check_bands, iter_windows, read_bands_from
from .optical import optical_steps, optical_to_features
from .sar import FILL_AREA_HALO, sar_steps, sar_to_features

PreprocessConfig = Union[SarPreprocessConfig, OpticalPreprocessConfig]
SAMPLE_BLOCK = 256
MIN_SAMPLE_WINDOWS = 16


def modality_of(cfg: PreprocessConfig) -> str:
    return "sar" if isinstance(cfg, SarPreprocessConfig) else "optical"


def features(arr: np.ndarray, cfg: PreprocessConfig, incidence: Optional[np.ndarray] = None) -> np.ndarray:
    """The modality's feature chain (no normalisation) on a (C, H, W) array."""
    if isinstance(cfg, SarPreprocessConfig):
        return sar_to_features(arr, cfg, incidence)
    return optical_to_features(arr, cfg)


def feature_halo(cfg: PreprocessConfig) -> int:
    """Context pixels the feature chain needs around a window: the Lee window's radius, and at least the
    fill test's (:data:`engine.preprocess.sar.FILL_AREA_HALO`) where SAR fills are looked for."""
    if not isinstance(cfg, SarPreprocessConfig):
        return 0
    lee = cfg.lee_window // 2 if cfg.lee_filter else 0
    return max(lee, FILL_AREA_HALO) if cfg.zero_is_nodata or cfg.fill_is_nodata else lee


def steps_of(cfg: PreprocessConfig) -> list:
    steps = sar_steps(cfg) if isinstance(cfg, SarPreprocessConfig) else optical_steps(cfg)
    if cfg.robust_normalize:
        steps.append(f"robust({cfg.low_percentile:g},{cfg.high_percentile:g})")
    return steps


def record_from_features(
    feats: np.ndarray,
    cfg: PreprocessConfig,
    bands: Sequence[int],
    nodata: Optional[float] = None,
    source: str = "",
    seed: int = 0,
) -> NormalizationRecord:
    """Percentiles of feature values (C, N) or (C, H, W), NaN excluded, at most ``cfg.sample_size`` each."""
    rng = np.random.default_rng(seed)
    out = []
    for i, band in enumerate(bands):
        values = feats[i].ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise ValueError(
                f"{source or 'input'}: band {band} has no valid pixels (all nodata/NaN) "
                "in the sampled area; check the band choice and the nodata value"
            )
        if values.size > cfg.sample_size:  # with replacement: O(sample), not a permutation of all values
            values = values[rng.integers(0, values.size, cfg.sample_size)]
        p_low, p_high = np.percentile(values, [cfg.low_percentile, cfg.high_percentile])
        out.append(
            BandNormalization(
                band=int(band), p_low=float(p_low), p_high=float(p_high), steps=tuple(steps_of(cfg)), nodata=nodata
            )
        )
    return NormalizationRecord(modality=modality_of(cfg), bands=tuple(out), source=source)


def sample_windows(sample_size: int) -> int:
    """How many 256-px windows :func:`sample_features` reads of a larger raster: about
    ``sample_size`` pixels, and at least MIN_SAMPLE_WINDOWS so a small sample still spreads."""
    return max(MIN_SAMPLE_WINDOWS, math.ceil(sample_size / (SAMPLE_BLOCK * SAMPLE_BLOCK)))


def reads_every_pixel(width: int, height: int, sample_size: int) -> bool:
    """Whether :func:`sample_features` reads the whole raster (its counts are then the raster's)."""
    return math.ceil(width / SAMPLE_BLOCK) * math.ceil(height / SAMPLE_BLOCK) <= sample_windows(sample_size)


def sample_features(
    path: Union[str, Path],
    bands: Sequence[int],
    cfg: PreprocessConfig,
    grid: Optional[Grid] = None,
    progress: Progress = NULL_PROGRESS,
    seed: int = 0,
) -> Tuple[np.ndarray, Optional[float]]:
    """A bounded, seeded sample of a raster's feature values: ``(table (C, N) with NaN padding, nodata)``.

    Windows of 256 x 256 on the raster's 256-pixel grid (or ``grid``'s, read through
    :func:`read_on_grid`), seeded and spread over the whole raster, about ``cfg.sample_size``
    pixels and at least 16 windows. Each window is read without a halo, so it decodes one
    block of a 256-tiled GeoTIFF instead of four; the feature chain's halo is then cropped on
    the window's sides inside the raster, so the pooled values equal the streamed ones there.

    Raises:
        ValueError: a band is missing.
    """
    path = Path(path)
    halo = feature_halo(cfg)
    incidence_band = getattr(cfg, "incidence_band", None) if getattr(cfg, "incidence_normalize", False) else None
    read_list = list(bands) + ([incidence_band] if incidence_band else [])
    with rasterio.open(path) as src:
        width, height = (grid.width, grid.height) if grid else (src.width, src.height)
        nodatas = [src.nodatavals[b - 1] for b in bands] if all(1 <= b <= src.count for b in bands) else []
        if grid is None:
            check_bands(src, read_list, path)
        windows = [w for w, _ in iter_windows(width, height, SAMPLE_BLOCK)]
        wanted = sample_windows(cfg.sample_size)
        if len(windows) > wanted:
            rng = np.random.default_rng(seed)
            windows = [windows[i] for i in sorted(rng.choice(len(windows), wanted, replace=False))]
        pooled: List[List[np.ndarray]] = [[] for _ in bands]
        for k, window in enumerate(windows):
            progress.check()
            raw = read_on_grid(path, read_list, grid, window) if grid else read_bands_from(src, read_list, window)
            inc = raw[len(bands)] if incidence_band else None
            feats = _crop_inner_sides(features(raw[: len(bands)], cfg, inc), window, width, height, halo)
            for i in range(len(bands)):
                v = feats[i][np.isfinite(feats[i])]
                pooled[i].append(v)
            progress.report((k + 1) / len(windows), f"sampling {path.name}")
    nodata = next((float(v) for v in nodatas if v is not None), None)
    stacked = [np.concatenate(p) if p else np.empty(0, np.float32) for p in pooled]
    longest = max(s.size for s in stacked)
    table = np.full((len(bands), longest), np.nan, dtype=np.float32)
    for i, s in enumerate(stacked):
        table[i, : s.size] = s
    return table, nodata


def _crop_inner_sides(feats: np.ndarray, window: Window, width: int, height: int, halo: int) -> np.ndarray:
    """Drop ``halo`` pixels on the window's sides that border more raster (their filter lacked context)."""
    if not halo:
        return feats
    col, row, w, h = (int(v) for v in (window.col_off, window.row_off, window.width, window.height))
    left, top = (halo if col > 0 else 0), (halo if row > 0 else 0)
    right, bottom = (halo if col + w < width else 0), (halo if row + h < height else 0)
    return feats[:, top : h - bottom, left : w - right]


def compute_normalization(
    path: Union[str, Path],
    bands: Sequence[int],
    cfg: PreprocessConfig,
    grid: Optional[Grid] = None,
    progress: Progress = NULL_PROGRESS,
    seed: int = 0,
) -> NormalizationRecord:
    """Per-band 2-98 % percentiles of a raster's features from a bounded, seeded sample.

    Args:
        path: the raster.
        bands: 1-based bands, in the order the network sees them.
        cfg: the modality's preprocessing configuration (its type selects the chain; its
            units must be resolved).
        grid: read the raster warped onto this grid; default its own grid.
        progress: progress and cancellation.
        seed: seeds the choice of windows and the subsample.

    Raises:
        ValueError: a band is missing, or the sampled bands hold no valid pixel.
    """
    table, nodata = sample_features(path, bands, cfg, grid, progress, seed)
    return record_from_features(table, cfg, bands, nodata, source=str(path), seed=seed)


def fixed_record(bands: Sequence[int], cfg: PreprocessConfig, low: float, high: float) -> NormalizationRecord:
    """A record scaling every band by the same physical range ``[low, high]`` (feature units)."""
    if not high > low:
        raise ValueError(f"a fixed normalisation range needs low < high, got [{low}, {high}]")
    steps = tuple(steps_of(cfg)[:-1] + [f"fixed({low:g},{high:g})"]) if cfg.robust_normalize else ()
    return NormalizationRecord(
        modality=modality_of(cfg),
        bands=tuple(BandNormalization(int(b), float(low), float(high), steps) for b in bands),
        source="fixed range",
    )


def widen_narrow_bands(
    record: NormalizationRecord, min_span: float, scale: Tuple[float, float] = (0.0, 1.0)
) -> NormalizationRecord:
    """Move each band whose range is narrower than ``min_span`` toward the unit's full ``scale``.

    A band without contrast of its own (a picture saturated white over snow, a sea) would be
    stretched from noise, or, if constant, read as 0 everywhere. The weight of the full scale
    grows from 0 at ``min_span`` to 1 at a span of 0, so a constant band is read at its place on
    the unit's scale, and no band's reading jumps as its span crosses ``min_span``.
    """
    bands = []
    for b in record.bands:
        weight = min(max(1.0 - (b.p_high - b.p_low) / min_span, 0.0), 1.0)
        if weight > 0.0:
            b = dataclasses.replace(b, p_low=b.p_low + (scale[0] - b.p_low) * weight,
                                    p_high=b.p_high + (scale[1] - b.p_high) * weight)
        bands.append(b)
    return dataclasses.replace(record, bands=tuple(bands))


def clipped_white_share(table: np.ndarray, top: float) -> float:
    """Share of the sampled pixels (columns of ``table``, one row per band, scaled to 0-1) at the top of
    the scale in every band: white clipped by the rendition; pixels with a NaN band are left out."""
    table = np.asarray(table, dtype=np.float64)
    valid = np.isfinite(table).all(axis=0)
    if not valid.any():
        return 0.0
    return float((table[:, valid] >= top).all(axis=0).mean())


def read_from_black(record: NormalizationRecord) -> NormalizationRecord:
    """Each band read from 0 (its low end moved to the bottom of the scale), its high end kept."""
    return dataclasses.replace(record, bands=tuple(dataclasses.replace(b, p_low=0.0) for b in record.bands))


def apply_normalization(arr: np.ndarray, record: NormalizationRecord) -> np.ndarray:
    """Scale each band to [0, 1] by its record: clip((x - p_low) / (p_high - p_low), 0, 1); NaN kept."""
    x = np.asarray(arr, dtype=np.float32)
    if x.ndim != 3 or x.shape[0] != len(record.bands):
        raise ValueError(
            f"{record.modality} normalisation record has {len(record.bands)} band(s) "
            f"but the array has shape {x.shape} (expected ({len(record.bands)}, H, W))"
        )
    out = np.empty_like(x)
    for i, b in enumerate(record.bands):
        span = max(b.p_high - b.p_low, 1e-12)  # constant band: everything maps to 0
        out[i] = np.clip((x[i] - np.float32(b.p_low)) / np.float32(span), 0.0, 1.0)
    return out


def save_record(record: NormalizationRecord, path: Union[str, Path]) -> Path:
    """Save a record as JSON (atomically)."""
    save_json(record, Path(path))
    return Path(path)


def load_record(path: Union[str, Path]) -> NormalizationRecord:
    """Load a record saved by :func:`save_record`; a malformed file raises ``ValueError``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        return from_dict(NormalizationRecord, data)
    except (json.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not a normalisation record ({exc})") from exc
