"""Scene-adaptive open-water threshold for SAR dB images, and the water mask it gives.

Method (label-free, in the spirit of operational split-based flood mapping):

1. Optional speckle smoothing in dB (NaN-aware median, default 5 x 5) so the two modes separate.
2. One streamed pass accumulates the scene histogram and, per ``tile_size`` tile, a histogram.
   A tile *qualifies* when all of these hold (defaults in :class:`WaterThresholdConfig`):
   - at least ``min_valid_fraction`` of its area is valid (NaN/nodata excluded);
   - two Gaussians fitted to its histogram (EM, started from its Otsu split) are separated:
     Ashman's D >= ``min_ashman_d``;
   - surface ratio: each mode holds at least ``min_class_fraction`` of the tile's pixels;
   - its dark mode's mean lies below the scene's Otsu threshold (the tile's dark class is the
     scene's dark class, not e.g. fields next to forest), and below ``max_water_mean_db`` if set.
3. Each qualifying tile gets a threshold (Kittler-Illingworth minimum error between its two
   means, or Otsu); the scene threshold is their median (``combine="median"``) or the same
   method on the pooled histogram of those tiles (``"pooled"``).
4. Hierarchical split (in the spirit of HSBA): a tile that does not qualify is split into
   quarters, down to ``min_tile_size``, and each quarter is tested the same way. Those smaller
   tiles are used only when fewer than ``min_tiles`` full-size tiles qualify (a small scene, or
   water in narrow channels), so a scene with enough large bimodal tiles keeps their threshold.
5. The chosen tiles must agree: their pooled histogram passes the same bimodality tests (tiles
   that split water from land do; tiles that split built-up from fields at unrelated levels do
   not). Fallbacks, stated in :attr:`ThresholdResult.method`: fewer than ``min_tiles`` tiles
   qualify at every level, or they disagree -> ``"global_otsu"`` if the whole-scene histogram passes the same bimodality
   tests, else ``"none"``: no water is mapped (a scene without a dark mode has no detectable
   open water).
6. Hysteresis region growing: seeds are pixels below ``threshold - seed_k * water_std``; water
   is every pixel below ``threshold + grow_k * land_std`` connected (8-neighbours) to a seed.
   The spreads come from the two-Gaussian fit of the pooled qualifying tiles (or the scene).
   Components are exact over the whole raster, computed window by window
   (:mod:`.components`); nothing is decimated.

Everything streams by windows of ``block`` pixels: the raster is read three times (histograms,
components, output), smoothing is recomputed each time with a halo, so results do not depend on
the block size.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple, Union

import numpy as np
from rasterio.windows import Window

from ..progress import NULL_PROGRESS, Progress
from ..raster.io import iter_windows, open_writer
from .components import StreamedComponents, label_window, streamed_components
from .histogram import Bins, Mixture, fit_two_gaussians, kittler_illingworth_index, otsu_index
from .source import SarSource, WindowReader, array_source, file_source, smoothed_reader

WATER, LAND, NODATA = 1, 0, 255
WATER_MEAN_CAP_DB = -15.0
"""Highest dark-mode mean of a tile that can be open water in calibrated sigma0. Calm to breezy
open water in co-polarised C-band lies below it; the dark modes of dry fields that split a tile
in two lie above it (-12 to -14 dB on the BigEarthNet chips, docs/experiments/zero_shot_real.md).
On cross-polarised bands it excludes nothing."""


@dataclass
class WaterThresholdConfig:
    """Parameters of the split-based threshold and the region growing (see the module docstring)."""

    smoothing: str = "median"
    smoothing_size: int = 5
    tile_size: int = 64
    min_tile_size: int = 32
    block: int = 512
    min_valid_fraction: float = 0.5
    min_ashman_d: float = 2.0
    min_class_fraction: float = 0.1
    min_tiles: int = 5
    max_water_mean_db: Optional[float] = None
    tile_method: str = "ki"
    combine: str = "median"
    seed_k: float = 1.0
    grow_k: float = 0.5
    connectivity: int = 8
    bins: Bins = field(default_factory=Bins)

    def __post_init__(self) -> None:
        if self.tile_method not in ("ki", "otsu"):
            raise ValueError(f"tile_method must be 'ki' or 'otsu', got {self.tile_method!r}")
        if self.combine not in ("median", "pooled"):
            raise ValueError(f"combine must be 'median' or 'pooled', got {self.combine!r}")
        if self.tile_size < 8 or self.block < self.tile_size:
            raise ValueError(f"tile_size must be >= 8 and block >= tile_size, got {self.tile_size}, {self.block}")
        if not 8 <= self.min_tile_size <= self.tile_size:
            raise ValueError(f"min_tile_size must be 8..tile_size ({self.tile_size}), got {self.min_tile_size}")
        self.block = -(-self.block // self.tile_size) * self.tile_size  # tiles never straddle windows


def for_levels(cfg: WaterThresholdConfig, relative_levels: bool) -> WaterThresholdConfig:
    """``cfg`` for a raster's SAR levels: relative levels (not sigma0) have no level to cap the water mode at."""
    return dataclasses.replace(cfg, max_water_mean_db=None) if relative_levels else cfg


def threshold_config(relative_levels: bool = False) -> WaterThresholdConfig:
    """The threshold's settings for a SAR raster: calibrated sigma0 caps the water mode at
    :data:`WATER_MEAN_CAP_DB` (:func:`for_levels`)."""
    return for_levels(WaterThresholdConfig(max_water_mean_db=WATER_MEAN_CAP_DB), relative_levels)


@dataclass
class ThresholdResult:
    """Scene threshold (dB), how it was found, and the hysteresis thresholds derived from it."""

    threshold: float
    method: str
    note: str
    otsu: float
    ki: float
    mixture: Optional[Mixture]
    seed_threshold: float
    grow_threshold: float
    valid_pixels: int
    tiles_valid: int
    tiles_bimodal: int
    tiles_selected: int
    tile_thresholds: List[float]

    @property
    def has_water(self) -> bool:
        return self.method != "none"

    def to_dict(self) -> dict:
        r = _rounded
        return {
            "threshold_db": r(self.threshold),
            "method": self.method,
            "note": self.note,
            "global_otsu_db": r(self.otsu),
            "global_ki_db": r(self.ki),
            "mixture": self.mixture.to_dict() if self.mixture else None,
            "seed_threshold_db": r(self.seed_threshold),
            "grow_threshold_db": r(self.grow_threshold),
            "valid_pixels": self.valid_pixels,
            "tiles_valid": self.tiles_valid,
            "tiles_bimodal": self.tiles_bimodal,
            "tiles_selected": self.tiles_selected,
            "tile_thresholds_db": [r(t) for t in self.tile_thresholds],
        }


def _rounded(v: Optional[float]) -> Optional[float]:
    """dB value for JSON: 3 decimals, None for NaN."""
    return None if v is None or not math.isfinite(v) else round(float(v), 3)


def _bimodal(hist: np.ndarray, cfg: WaterThresholdConfig) -> Optional[Tuple[Mixture, int]]:
    """The two-Gaussian fit and Otsu index of a histogram that passes the D and surface-ratio tests."""
    bins = cfg.bins
    k = otsu_index(hist, bins)
    if k is None:
        return None
    n = hist.sum()
    low = hist[:k].sum() / n
    if not cfg.min_class_fraction <= low <= 1 - cfg.min_class_fraction:
        return None
    # cheap pre-test on the truncated classes (their D usually overstates the fitted one) before EM
    c, p = bins.centers, hist / n
    m0, m1 = np.dot(p[:k], c[:k]) / low, np.dot(p[k:], c[k:]) / (1 - low)
    v0 = np.dot(p[:k], (c[:k] - m0) ** 2) / low
    v1 = np.dot(p[k:], (c[k:] - m1) ** 2) / (1 - low)
    if math.sqrt(2.0) * (m1 - m0) / math.sqrt(v0 + v1 + 1e-12) < cfg.min_ashman_d:
        return None
    mix = fit_two_gaussians(hist, bins, k)
    if mix is None or mix.ashman_d < cfg.min_ashman_d:
        return None
    if min(mix.weights) < cfg.min_class_fraction:
        return None
    return mix, k


def _split_index(hist: np.ndarray, mix: Mixture, otsu_k: int, cfg: WaterThresholdConfig) -> int:
    """A bimodal histogram's threshold index: Otsu, or Kittler-Illingworth between the fitted means."""
    if cfg.tile_method == "otsu":
        return otsu_k
    bins = cfg.bins
    search = tuple(int(v) for v in np.clip(bins.index(np.array(mix.means)) + 1, 1, bins.n - 1))
    k = kittler_illingworth_index(hist, bins, cfg.min_class_fraction / 2, search)
    return otsu_k if k is None else k


def _scan(
    source: SarSource, cfg: WaterThresholdConfig, progress: Progress
) -> Tuple[np.ndarray, int, List[Tuple[int, np.ndarray, Mixture, int]]]:
    """One pass over the windows: scene histogram, count of valid full-size tiles, and the bimodal
    tiles' ``(level, histogram, mixture, threshold index)``; level 0 is full size, level n a tile
    split n times (module docstring, step 4)."""
    bins, ts = cfg.bins, cfg.tile_size
    read = smoothed_reader(source, cfg.smoothing, cfg.smoothing_size)
    scene = np.zeros(bins.n, np.int64)
    tiles: List[Tuple[Tuple[int, int, int], np.ndarray, Mixture, int]] = []
    tiles_valid = 0

    def visit(v: np.ndarray, y: int, x: int, size: int, level: int, origin: Tuple[int, int]) -> bool:
        """Test one tile; split it when it fails and may still be split. True if it was valid."""
        t = v[y : y + size, x : x + size]
        if np.isfinite(t).sum() < cfg.min_valid_fraction * size * size:  # area of a full tile
            return False
        hist = bins.count(t)
        fit = _bimodal(hist, cfg)
        if fit is not None:
            tiles.append(((origin[0] + y, origin[1] + x, level), hist, fit[0], _split_index(hist, fit[0], fit[1], cfg)))
        elif size // 2 >= cfg.min_tile_size:
            half = size // 2
            for dy in (0, half):
                for dx in (0, half):
                    visit(v, y + dy, x + dx, half, level + 1, origin)
        return True

    windows = list(iter_windows(source.width, source.height, cfg.block))
    for i, (win, _) in enumerate(windows):
        progress.check()
        v = read(win)
        scene += bins.count(v)
        for ty in range(0, v.shape[0], ts):
            for tx in range(0, v.shape[1], ts):
                tiles_valid += visit(v, ty, tx, ts, 0, (int(win.row_off), int(win.col_off)))
        progress.report((i + 1) / len(windows), "water threshold: tile histograms")
    tiles.sort(key=lambda tile: tile[0])  # raster order, whatever the window size
    return scene, tiles_valid, [(key[2], *rest) for key, *rest in tiles]


def estimate_threshold(
    source: SarSource, cfg: Optional[WaterThresholdConfig] = None, progress: Progress = NULL_PROGRESS
) -> ThresholdResult:
    """Streamed pass: scene histogram, qualifying tiles and the scene threshold (module docstring).

    Raises:
        ValueError: the source has no valid pixel.
    """
    cfg = cfg or WaterThresholdConfig()
    bins, edges, nan = cfg.bins, cfg.bins.edges, float("nan")
    scene, tiles_valid, tiles = _scan(source, cfg, progress)
    valid = int(scene.sum())
    if valid == 0:
        raise ValueError(f"{source.name}: no valid pixel (all nodata/NaN)")
    k_otsu, k_ki = otsu_index(scene, bins), kittler_illingworth_index(scene, bins)
    otsu = edges[k_otsu] if k_otsu is not None else nan
    ki = edges[k_ki] if k_ki is not None else nan
    water_cap = cfg.max_water_mean_db if cfg.max_water_mean_db is not None else np.inf
    qualified = [(level, h, m, k) for level, h, m, k in tiles if m.means[0] < min(otsu, water_cap)]
    levels = sorted({level for level, *_ in qualified}) or [0]
    depth = next((d for d in levels if sum(level <= d for level, *_ in qualified) >= cfg.min_tiles), levels[-1])
    chosen = [(h, m, k) for level, h, m, k in qualified if level <= depth]
    common = {"otsu": otsu, "ki": ki, "valid_pixels": valid, "tiles_valid": tiles_valid}
    common.update(tiles_bimodal=sum(level <= depth for level, *_ in tiles), tiles_selected=len(chosen),
                  tile_thresholds=[edges[k] for *_, k in chosen])
    full = sum(level == 0 for level, *_ in qualified)
    split_further = f", the others split down to {cfg.tile_size >> depth} px" if depth else ""
    counted = f"{len(chosen)} tiles qualified ({full} of {tiles_valid} {cfg.tile_size}-px tiles{split_further})"
    pooled_fit = None
    if len(chosen) >= cfg.min_tiles:  # the tiles must agree: together they are bimodal too
        pooled = np.sum([h for h, _, _ in chosen], axis=0)
        pooled_fit = _bimodal(pooled, cfg)
    if pooled_fit is not None:
        mix = pooled_fit[0]
        if cfg.combine == "median":
            threshold = float(np.median([edges[k] for *_, k in chosen]))
        else:
            threshold = float(edges[_split_index(pooled, mix, pooled_fit[1], cfg)])
        method, note = "split", counted
    else:
        reason = (f"only {counted} (< {cfg.min_tiles})" if len(chosen) < cfg.min_tiles else
                  f"{counted} but they split different things (their pooled histogram is not bimodal)")
        fit = _bimodal(scene, cfg) if k_otsu is not None else None
        if fit is not None and fit[0].means[0] < water_cap:
            mix, threshold, method = fit[0], otsu, "global_otsu"
            note = f"{reason}; the scene histogram is bimodal"
        else:
            mix, threshold, method = None, nan, "none"
            note = f"{reason} and the scene histogram is not bimodal: no water mapped"
    seed = grow = threshold  # NaN when there is no water; no growing when no spreads are known
    if mix is not None and method != "none":
        seed = min(threshold - cfg.seed_k * mix.stds[0], threshold)
        grow = max(threshold + cfg.grow_k * mix.stds[1], threshold)
    return ThresholdResult(threshold, method, note, mixture=mix, seed_threshold=seed, grow_threshold=grow, **common)


def _grow_masks(read: WindowReader, result: ThresholdResult) -> Callable[[Window], Tuple[np.ndarray, np.ndarray]]:
    def masks(win: Window) -> Tuple[np.ndarray, np.ndarray]:
        v = read(win)
        with np.errstate(invalid="ignore"):
            return v < result.grow_threshold, v < result.seed_threshold

    return masks


def grow_components(
    source: SarSource,
    result: ThresholdResult,
    cfg: Optional[WaterThresholdConfig] = None,
    progress: Progress = NULL_PROGRESS,
) -> StreamedComponents:
    """Streamed pass: components of ``value < grow_threshold`` and whether each holds a seed."""
    cfg = cfg or WaterThresholdConfig()
    read = smoothed_reader(source, cfg.smoothing, cfg.smoothing_size)
    return streamed_components(
        source.width, source.height, cfg.block, _grow_masks(read, result), cfg.connectivity, progress
    )


def iter_water_masks(
    source: SarSource,
    result: ThresholdResult,
    cfg: Optional[WaterThresholdConfig] = None,
    grow: bool = True,
    progress: Progress = NULL_PROGRESS,
) -> Iterator[Tuple[Window, np.ndarray, np.ndarray]]:
    """Yield ``(window, smoothed dB, uint8 mask)`` per window: 1 water, 0 not, 255 nodata.

    With ``grow`` the mask is the hysteresis region growing; without it, ``value < threshold``.
    """
    cfg = cfg or WaterThresholdConfig()
    read = smoothed_reader(source, cfg.smoothing, cfg.smoothing_size)
    comps = grow_components(source, result, cfg, progress.sub(0.0, 0.5)) if grow and result.has_water else None
    windows = list(iter_windows(source.width, source.height, cfg.block))
    for i, (win, _) in enumerate(windows):
        progress.check()
        v = read(win)
        with np.errstate(invalid="ignore"):
            if not result.has_water:
                water = np.zeros(v.shape, bool)
            elif comps is None:
                water = v < result.threshold
            else:
                labels, _ = label_window(v < result.grow_threshold, cfg.connectivity)
                water = comps.pixel_stats(win, labels)[1]
        mask = np.where(np.isfinite(v), water.astype(np.uint8), np.uint8(NODATA)).astype(np.uint8)
        yield win, v, mask
        progress.sub(0.5 if comps else 0.0, 1.0).report((i + 1) / len(windows), "water mask")


def map_water(
    db: np.ndarray, cfg: Optional[WaterThresholdConfig] = None, grow: bool = True, progress: Progress = NULL_PROGRESS
) -> Tuple[np.ndarray, ThresholdResult]:
    """Whole-array convenience: (uint8 mask 1/0/255, threshold result) of an (H, W) dB array."""
    cfg = cfg or WaterThresholdConfig()
    source = array_source(db)
    result = estimate_threshold(source, cfg, progress.sub(0.0, 0.3))
    out = np.empty(db.shape, np.uint8)
    for win, _, mask in iter_water_masks(source, result, cfg, grow, progress.sub(0.3, 1.0)):
        out[win.row_off : win.row_off + win.height, win.col_off : win.col_off + win.width] = mask
    return out, result


def map_water_file(
    sar_path: Union[str, Path],
    band: int = 1,
    out_path: Optional[Union[str, Path]] = None,
    cfg: Optional[WaterThresholdConfig] = None,
    to_db: Optional[Callable[[np.ndarray], np.ndarray]] = None,
    grow: bool = True,
    overwrite: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> dict:
    """Threshold a dB GeoTIFF band; with ``out_path``, write the uint8 water mask (255 = nodata).

    Returns:
        ``result`` (the threshold result as a dict), ``water_fraction`` of valid pixels and
        ``path`` of the mask when written.
    """
    cfg = cfg or WaterThresholdConfig()
    source = file_source(sar_path, band, to_db)
    result = estimate_threshold(source, cfg, progress.sub(0.0, 0.3))
    counts = np.zeros(2, np.int64)
    masks = iter_water_masks(source, result, cfg, grow, progress.sub(0.3, 1.0))
    if out_path is None:
        for _, _, mask in masks:
            counts += np.bincount(mask[mask != NODATA], minlength=2)[:2]
    else:
        with open_writer(out_path, source.grid, 1, "uint8", NODATA, overwrite, ["water"]) as dst:
            for win, _, mask in masks:
                counts += np.bincount(mask[mask != NODATA], minlength=2)[:2]
                dst.write(mask[None], window=win)
    out = {"result": result.to_dict(), "water_fraction": float(counts[1] / max(counts.sum(), 1))}
    if out_path is not None:
        out["path"] = str(out_path)
    return out
