"""Checks of the ancillary rasters a run reads beside its SAR and optical images.

A wrong file in one of these slots does not fail on its own: a dB SAR raster read as local incidence
angles marks every pixel as layover (the flood map then excludes the whole scene), a DEM or a cloud mask
of another place is never read, a float SAR raster as a cloud mask is "cloud" everywhere (the map falls
back to SAR-only water / non-water). So each is checked, before any pixel is computed, for overlap with
the scene and for values that fit what it must hold: local incidence angles in degrees, heights in
metres, a cloud mask of 0 / 1 or a cloud probability or percentage. Values are taken from a decimated
read of the raster's first band over the scene (at most ``SAMPLE_SIDE`` pixels a side).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import rasterio
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from ..validate import SgcadError, overlap_pixels
from .grid import Grid

PathLike = Union[str, Path]

SAMPLE_SIDE = 512
# heights on Earth's land surface (Dead Sea shore -430 m, Everest 8849 m), with room for DEM noise
LOWEST_M, HIGHEST_M = -450.0, 9000.0


@dataclass(frozen=True)
class Values:
    """What a sample of a raster's first band holds (over the scene).

    Attributes:
        low, median, high: 2nd, 50th and 98th percentiles of the valid values.
        minimum, maximum: extremes of the sample.
        bands: the raster's band count.
        integer: every sampled value is a whole number.
        sample: the valid values (float64).
    """

    low: float
    median: float
    high: float
    minimum: float
    maximum: float
    bands: int
    integer: bool
    sample: np.ndarray

    def text(self) -> str:
        """``values -25.1…3.2 (median -12.3)``: the middle 96 % of the sample and its median."""
        return f"values {self.low:.3g}…{self.high:.3g} (median {self.median:.3g})"


def check_overlap(path: PathLike, grid: Grid, what: str, scene: str) -> None:
    """Refuse a raster that covers no whole pixel of ``grid``.

    Raises:
        SgcadError: naming ``what`` (the input, with its option and parameter), both extents and the CRS.
    """
    w, h, box = overlap_pixels(path, grid)
    if min(w, h) < 1:
        raise SgcadError(
            f"{what} {path} does not overlap the {scene} (its extent {_box(box)}, the {scene}'s "
            f"{_box(grid.bounds)} in {grid.crs.to_string()}); give a raster of the same place"
        )


def _box(box) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in box) + ")"


def sample_values(path: PathLike, grid: Grid) -> Optional[Values]:
    """Band 1 of ``path`` over ``grid``'s footprint, decimated; None where no pixel there is valid."""
    with rasterio.open(path) as src:
        left, bottom, right, top = transform_bounds(grid.crs, src.crs, *grid.bounds, densify_pts=21)
        inv = ~src.transform
        cols, rows = zip(*(inv * (x, y) for x in (left, right) for y in (bottom, top)))
        c0, c1 = max(int(math.floor(min(cols))), 0), min(int(math.ceil(max(cols))), src.width)
        r0, r1 = max(int(math.floor(min(rows))), 0), min(int(math.ceil(max(rows))), src.height)
        if c1 <= c0 or r1 <= r0:
            return None
        step = max(1, math.ceil(max(c1 - c0, r1 - r0) / SAMPLE_SIDE))
        shape = (max(1, (r1 - r0) // step), max(1, (c1 - c0) // step))
        data = src.read(1, window=Window(c0, r0, c1 - c0, r1 - r0), out_shape=shape, masked=True)
        bands = src.count
    values = np.ma.compressed(data).astype(np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    low, median, high = np.percentile(values, [2, 50, 98])
    return Values(float(low), float(median), float(high), float(values.min()), float(values.max()), bands,
                  bool(np.all(values == np.round(values))), values)


def check_local_incidence(path: PathLike, grid: Grid, what: str, scene: str,
                          shadow_deg: float = 90.0, layover_deg: float = 0.0) -> None:
    """Refuse a raster that does not hold local incidence angles in degrees over the scene.

    Angles at or below ``layover_deg`` are layover and at or above ``shadow_deg`` shadow, and both are
    excluded from the flood map; a raster of which most is either is not the date's local incidence (a dB
    SAR raster: all "layover"), nor are angles in radians (all under 1.6).

    Raises:
        SgcadError: no overlap with ``grid``, or values that are not angles in degrees.
    """
    check_overlap(path, grid, what, scene)
    values = sample_values(path, grid)
    if values is None:
        raise SgcadError(f"{what} {path} holds no valid pixel over the {scene}; give the date's local incidence "
                         "angles in degrees")
    with np.errstate(invalid="ignore"):
        excluded = float(np.mean((values.sample <= layover_deg) | (values.sample >= shadow_deg)))
    if 0.0 <= values.low and values.high <= 0.5 * math.pi + 0.05 and values.maximum <= math.pi:
        raise SgcadError(f"{what} {path}: {values.text()} look like angles in radians; local incidence angles "
                         "are read in degrees (0–90): convert the raster to degrees")
    if excluded > 0.5:
        raise SgcadError(
            f"{what} {path}: {values.text()} are not local incidence angles in degrees (0–90; "
            f"{100 * excluded:.0f} % of them would be excluded as layover (<= {layover_deg:g}) or shadow "
            f"(>= {shadow_deg:g})); give the date's local incidence angle raster in degrees"
        )


def check_dem(path: PathLike, grid: Grid, what: str, scene: str) -> None:
    """Refuse a DEM that does not overlap the scene or whose values are not heights in metres.

    Raises:
        SgcadError: no overlap, no valid pixel, or heights outside -450…9000 m.
    """
    check_overlap(path, grid, what, scene)
    values = sample_values(path, grid)
    if values is None:
        raise SgcadError(f"{what} {path} holds no valid height over the {scene}; give a DEM of this place")
    if values.low < LOWEST_M or values.high > HIGHEST_M:
        raise SgcadError(
            f"{what} {path}: {values.text()} are not heights in metres ({LOWEST_M:g}…{HIGHEST_M:g} on Earth); "
            "give an elevation raster in metres"
        )


#: A cloud probability marks cloud from 50 % on, the middle of the 0.4-0.5 that cloud-probability products
#: suggest for their masks: a mask that read every non-zero probability as cloud dropped clear optical too.
CLOUD_PROBABILITY_CUT = 0.5
#: Whole numbers up to this, more than two of them, are class codes (Sentinel-2 SCL 0-11, Fmask 0-4), not a mask.
CLASS_CODE_MAX = 11


@dataclass(frozen=True)
class CloudMaskReading:
    """How a cloud mask is read: cloud where its first band is at least ``cut``, and what to tell the user."""

    cut: float = CLOUD_PROBABILITY_CUT  # 0.5: any whole number but 0, or a probability (0-1) from 50 %
    warning: Optional[str] = None


def check_cloud_mask(path: PathLike, grid: Grid, what: str = "cloud mask (--cloud-mask / CLOUD_MASK)",
                     scene: str = "scene") -> CloudMaskReading:
    """Refuse a cloud mask that does not overlap the scene or is not a mask; decide how to read it.

    A 0 / 1 (or 0 / 255) mask is cloud wherever it is non-zero; a cloud probability (fractions of 0-1) or a
    percentage (0-100, whole numbers or not) is cloud from 50 % on. Negative values or values above 255 are
    something else (SAR in dB, reflectance, heights).

    Returns:
        the cut and a warning (extra bands not read, a probability or percentage read from 50 %, class
        codes read as "any non-zero", a mask that is cloud nearly everywhere), or no warning.

    Raises:
        SgcadError: no overlap, or values that no cloud mask holds.
    """
    check_overlap(path, grid, what, scene)
    values = sample_values(path, grid)
    if values is None:
        return CloudMaskReading(warning=f"{what} {path} holds no valid pixel over the {scene}: it masks nothing")
    bands = f", {values.bands} bands" if values.bands > 1 else ""
    if values.minimum < 0 or values.maximum > 255:
        raise SgcadError(
            f"{what} {path}: band 1 holds {values.text()}, from {values.minimum:.3g} to {values.maximum:.3g}"
            f"{bands}; a cloud mask holds 0 (clear) and 1 (cloud), or a cloud probability (0–1) or "
            "percentage (0–100), in its first band"
        )
    notes = []
    if values.bands > 1:
        notes.append(f"only its first band of {values.bands} is read")
    distinct = np.unique(values.sample)
    cut = CLOUD_PROBABILITY_CUT
    if not values.integer and values.maximum <= 1:
        notes.append(f"it holds fractions ({values.text()}), read as a cloud probability: cloud from "
                     f"{cut:g} on")
    elif values.maximum <= 100 and (not values.integer or (distinct.size > 2 and values.maximum > CLASS_CODE_MAX)):
        cut = 100 * CLOUD_PROBABILITY_CUT
        notes.append(f"it holds {values.text()}, read as a cloud percentage: cloud from {cut:g} % on")
    elif values.integer and distinct.size > 2 and values.maximum <= CLASS_CODE_MAX:
        notes.append(f"it holds the whole numbers {', '.join(f'{v:g}' for v in distinct[:12])}, like class codes "
                     "(Sentinel-2 SCL, Fmask), and every non-zero code counts as cloud; give a 0/1 mask of the cloud "
                     "classes instead (e.g. SCL 3, 8, 9, 10 with the raster calculator)")
    elif values.integer and distinct.size > 2:  # up to 255: a scaled probability, or a picture
        notes.append(f"it holds {distinct.size} different whole numbers up to {values.maximum:g} and every non-zero "
                     "pixel counts as cloud; if it is a probability scaled to 255, give a 0/1 mask instead")
    elif not values.integer:  # fractions above 100: no known scale
        notes.append(f"it holds fractional values ({values.text()}) and every pixel from {cut:g} on counts as cloud")
    cloudy = float(np.mean(values.sample >= cut))
    if cloudy >= 0.95:
        notes.append("the optical image is not used there: the map is SAR-only water / non-water")
    if not notes:
        return CloudMaskReading(cut)
    return CloudMaskReading(cut, f"{what} {path} marks {100 * cloudy:.0f} % of the {scene} as cloud; "
                                 + "; ".join(notes))
