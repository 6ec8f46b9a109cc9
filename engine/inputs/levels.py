"""Whether a SAR raster's levels are calibrated backscatter: what its polarisations say.

The water teacher's cut holds for calibrated sigma0 (:mod:`engine.water.calibration`). Amplitude
digital numbers without a calibration constant are known to be relative. A raster in dB can be
relative too (an airborne product whose channels were scaled for display), and its values alone
do not say so: Rotterdam's HH looks like a dry Sentinel-1 pasture (docs/experiments/zero_shot_real.md).
Its polarisations do. In calibrated backscatter the cross-polarised channel stays well under the
co-polarised one: a cloud of randomly oriented thin dipoles, the most depolarising natural target,
gives cross / co = 1/3 (-4.8 dB), and surfaces and double bounce much less. So the cross band is
under the co band at almost every pixel; two dates of one polarisation are not (either can be
the darker where land floods or dries). Measured medians of
co minus cross dB: Sentinel-1 chips 5.0-7.5 dB (BigEarthNet, Sen1Floods11), synthetic C-, L- and
X-band scenes 6.5-8.5 dB; SpaceNet 6 Rotterdam 2.4 (HH - HV) and 2.7 (VV - VH).

The co- and cross-polarised bands are known from band descriptions (VV, HH; VH, HV), or, without
descriptions, in a 4-band raster in the usual quad-pol order HH, HV, VH, VV whose bands 2 and 3
agree as reciprocity says they must (HV = VH). Two unnamed bands are told apart by their levels
(:func:`unnamed_co_cross`). Only pixels above every sensor's noise floor count,
so a scene of calm open sea, where both channels sink to the floor, is not taken for relative.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np
import rasterio

from .units import detect_sar_units, metadata_text, polarisation_names, polarisations, sample_pixels

PathLike = Union[str, Path]
MIN_CO_CROSS_DB = 3.5
"""Median co minus cross-polarised dB under which levels are not calibrated backscatter (the
random-volume limit 4.8 dB, less a margin for speckle; calibrated scenes measured 5.0 and above)."""
RECIPROCITY_DB = 1.0
"""Bands 2 and 3 of an unnamed 4-band raster are HV and VH when their median difference is under this."""
ABOVE_NOISE_DB = -18.0
"""Co-polarised pixels counted: above this, read as sigma0, the cross channel is above the noise floor."""
MIN_COUNTED_SHARE = 0.1
"""Fewer counted pixels than this share of the valid ones: no evidence either way."""
MIN_CROSS_UNDER_SHARE = 0.9
"""Two unnamed bands are co- and cross-polarised when the darker one is under the other at this share
of the counted pixels, or more. Measured: 0.96-1.00 on 14 Sentinel-1 VV / VH pairs (Sen1Floods11,
BigEarthNet); 0.60 for two dates of the Camargue's VV; 0.80 for Rotterdam's HH / HV (not sigma0)."""
_OTHER_SENSOR = re.compile(r"(^|[^a-z])(hh|hv)([^a-z]|$)|alos|palsar|nisar|saocom|l-band")
"""Words in a file's name or tags that say its two bands are not Sentinel-1 VV + VH (the only pair the
water expert's companion learnt); then unnamed bands are not guessed from their levels."""
MAX_CO_CROSS_DB = 20.0
"""A wider median gap is not two polarisations (measured up to 15.0 dB, on a chip of windy open water)."""
CO_MEDIAN_DB = (-30.0, 5.0)
"""Median of a co-polarised band read as sigma0: outside it, the brighter band is not backscatter
(an incidence-angle or elevation band beside the SAR, for instance)."""
ANGLE_RANGE_DEG = (10.0, 65.0)
"""An unnamed band whose valid values all lie in this range of degrees, beside two others, is an incidence
angle: Google Earth Engine's Sentinel-1 collection has bands VV, VH and angle (29-46 degrees over the IW
swath), and its GeoTIFF exports can arrive without band names. Backscatter never lies there: dB is mostly
negative, power and amplitude are under a few units."""
CROSS_AS_CO_DB = 7.0
"""dB added to a cross-polarised band (VH, HV) that a model reads where it learnt a co-polarised one (VV, HH):
the co minus cross gap of the two levels a water cut separates in the C-band generator the models learnt,
calm water 8 dB and farmland 6.5 dB (docs/data.md); measured medians 5.0-7.5 dB on Sentinel-1 chips (above)."""


@dataclass(frozen=True)
class PolarisationBalance:
    """Median co- minus cross-polarised backscatter of one raster, and how the bands were known."""

    co_bands: Tuple[int, ...]
    cross_bands: Tuple[int, ...]
    how: str  # "band descriptions" or "quad-pol order, bands 2 and 3 reciprocal"
    median_db: float

    @property
    def relative(self) -> bool:
        """Whether the balance rules out calibrated backscatter."""
        return self.median_db < MIN_CO_CROSS_DB

    def reason(self) -> str:
        """Why, in a few words with the numbers."""
        gap = f"only {self.median_db:.1f} dB under" if self.median_db >= 0 else \
            f"{-self.median_db:.1f} dB above (are the bands named right?)"
        return (
            f"cross-polarised band(s) {_listed(self.cross_bands)} {gap} co-polarised "
            f"band(s) {_listed(self.co_bands)} (median; {self.how}); in calibrated backscatter cross-polarised "
            "sits about 5 dB or more under co-polarised"
        )


def _listed(bands: Tuple[int, ...]) -> str:
    return ", ".join(str(b) for b in bands)


def _to_db(values: np.ndarray, units: str) -> np.ndarray:
    if units == "db":
        return values
    floor = np.maximum(values, 1e-10)
    return 10.0 * np.log10(floor) if units == "linear" else 20.0 * np.log10(floor)


def _bands_by_name(path: PathLike, count: int) -> Optional[Tuple[List[int], List[int]]]:
    kinds = polarisations(path, range(1, count + 1))
    co = [i + 1 for i, k in enumerate(kinds) if k == "co"]
    cross = [i + 1 for i, k in enumerate(kinds) if k == "cross"]
    return (co, cross) if co and cross else None


def polarisation_balance(path: PathLike, units: str) -> Optional[PolarisationBalance]:
    """The raster's co/cross balance, or None when its bands, units or pixels cannot tell.

    Args:
        path: the SAR raster (every band is looked at, not only those a model reads).
        units: its units as decided (:func:`engine.inputs.units.detect_sar_units`); ``dn``
            (uncalibrated numbers) is relative anyway and not looked at.
    """
    if units not in ("db", "linear", "amplitude"):
        return None
    with rasterio.open(path) as src:
        count = src.count
    if count < 2:  # one band: no polarisation to compare (and its file name is not read as a band name)
        return None
    named = _bands_by_name(path, count)
    if named is not None:
        co, cross = named
        how = "band descriptions"
    elif count == 4:
        co, cross = [1, 4], [2, 3]
        how = "quad-pol order, bands 2 and 3 reciprocal"
    else:
        return None
    data, _ = sample_pixels(path, co + cross)
    db = _to_db(np.ma.filled(data, np.nan), units)
    ok = np.isfinite(db).all(axis=0)
    if not ok.any():
        return None
    co_db, cross_db = db[: len(co)][:, ok].mean(axis=0), db[len(co):][:, ok]
    if named is None and abs(float(np.median(cross_db[0] - cross_db[1]))) >= RECIPROCITY_DB:
        return None  # bands 2 and 3 are not a reciprocal pair: not a quad-pol raster in that order
    counted = co_db > ABOVE_NOISE_DB
    if counted.mean() < MIN_COUNTED_SHARE:
        return None
    median = float(np.median(co_db[counted] - cross_db.mean(axis=0)[counted]))
    return PolarisationBalance(tuple(co), tuple(cross), how, round(median, 2))


@dataclass(frozen=True)
class CoCrossOrder:
    """Which of two unnamed bands is co-polarised, read from their levels (:func:`unnamed_co_cross`)."""

    co_band: int
    cross_band: int
    median_db: float
    under_share: float
    angle_band: Optional[int] = None  # a third band read as the incidence angle, left out

    def reason(self) -> str:
        angle = f"; band {self.angle_band} holds 10-65 degrees: an incidence angle" if self.angle_band else ""
        return (f"band {self.cross_band} is {self.median_db:.1f} dB under band {self.co_band} (median) and under it at "
                f"{100 * self.under_share:.0f} % of pixels, as cross- under co-polarised backscatter{angle}")


def unnamed_co_cross(path: PathLike, units: str = "auto") -> Optional[CoCrossOrder]:
    """The co- and cross-polarised band of a two-band raster whose bands carry no polarisation name, or of a
    three-band one whose third band (any of the three) is an incidence angle (:data:`ANGLE_RANGE_DEG`).

    Calibrated backscatter only (``units`` db, linear or amplitude; ``auto``: detected). The brighter
    band (by median) is co-polarised when the other lies at least :data:`MIN_CO_CROSS_DB` under it
    (median) and under it at :data:`MIN_CROSS_UNDER_SHARE` of the pixels above the noise floor.
    Otherwise None: two dates, two frequencies or uncalibrated levels cannot be told from a VV + VH
    pair, and no guess is made.
    """
    with rasterio.open(path) as src:
        count = src.count
    if count not in (2, 3):
        return None
    every = tuple(range(1, count + 1))
    said = f"{Path(path).stem.lower()} {metadata_text(path, every)}"
    if any(polarisations(path, every)) or _OTHER_SENSOR.search(said):
        return None
    stat = Path(path).stat()
    return _order_by_levels(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size, units, count)


def band_medians_db(path: PathLike, bands: Tuple[int, ...], units: str) -> Optional[np.ndarray]:
    """Median dB of each band of a calibrated SAR raster in ``units`` (db, linear or amplitude), NaN where a
    band has no valid pixel; None for other units or when nothing is valid."""
    if units not in ("db", "linear", "amplitude"):
        return None
    data, _ = sample_pixels(path, bands)
    db = _to_db(np.ma.filled(data.astype(np.float64), np.nan), units)
    with np.errstate(all="ignore"):
        medians = np.array([np.nanmedian(b) if np.isfinite(b).any() else np.nan for b in db])
    return None if np.isnan(medians).all() else medians


def _angle_band(data: np.ma.MaskedArray) -> Optional[int]:
    """The one band (1-based) of a three-band sample whose valid values all lie in :data:`ANGLE_RANGE_DEG`."""
    inside = []
    for band in range(data.shape[0]):
        values = np.ma.compressed(data[band])
        values = values[np.isfinite(values)]
        if values.size and ANGLE_RANGE_DEG[0] <= values.min() and values.max() <= ANGLE_RANGE_DEG[1]:
            inside.append(band + 1)
    return inside[0] if len(inside) == 1 else None


@functools.lru_cache(maxsize=32)
def _order_by_levels(path: str, mtime_ns: int, size: int, units: str, count: int = 2) -> Optional[CoCrossOrder]:
    """:func:`unnamed_co_cross`'s reading of the pixels, once per file version: one run asks for it from
    the water expert's choice and from every model's band roles."""
    data, _ = sample_pixels(path, tuple(range(1, count + 1)))  # read once: the angle and the pair's levels
    angle = _angle_band(data) if count == 3 else None
    if count == 3 and angle is None:
        return None
    pair = tuple(b for b in range(1, count + 1) if b != angle)
    try:
        units = detect_sar_units(path, pair, units).units
    except ValueError:  # no valid pixel: the input contract says so, naming the layer and band
        return None
    if units not in ("db", "linear", "amplitude"):
        return None
    db = _to_db(np.ma.filled(data[[b - 1 for b in pair]], np.nan), units)
    ok = np.isfinite(db).all(axis=0)
    if ok.sum() < 100:
        return None
    co = 0 if np.median(db[0, ok]) >= np.median(db[1, ok]) else 1
    counted = ok & (db[co] > ABOVE_NOISE_DB)
    if counted.sum() < MIN_COUNTED_SHARE * ok.sum():
        return None
    gap = db[co, counted] - db[1 - co, counted]
    median, under = float(np.median(gap)), float((gap > 0).mean())
    if not MIN_CO_CROSS_DB <= median <= MAX_CO_CROSS_DB or under < MIN_CROSS_UNDER_SHARE:
        return None
    if not CO_MEDIAN_DB[0] <= float(np.median(db[co, ok])) <= CO_MEDIAN_DB[1]:
        return None
    return CoCrossOrder(pair[co], pair[1 - co], round(median, 2), round(under, 3), angle)


def cross_read_as_co(path: PathLike, bands: Tuple[int, ...], roles: Optional[Tuple[str, ...]]
                     ) -> Tuple[Tuple[float, ...], Optional[str]]:
    """Per-band dB offsets for the bands a model reads, and a warning, where a band named cross-polarised
    (VH, HV: band names, else a one-band file's name) takes a co-polarised role of the model.

    Read as it is, a VH-only raster is co-polarised backscatter 7 dB darker than the models learnt: the
    water expert called 64 % of the Nigeria chip water (its label: 51 %). Raised by
    :data:`CROSS_AS_CO_DB`, every level sits where the model learnt its co-polarised counterpart.
    """
    if not roles or len(roles) != len(bands):
        return (), None
    names = polarisation_names(path, bands)
    hits = [i for i, (role, name) in enumerate(zip(roles, names)) if role == "co" and name in ("vh", "hv")]
    if not hits:
        return (), None
    listed = ", ".join(f"band {bands[i]} ({str(names[i]).upper()})" for i in hits)
    return tuple(CROSS_AS_CO_DB if i in hits else 0.0 for i in range(len(bands))), (
        f"SAR {listed} of {Path(path).name} is cross-polarised, where the model reads a co-polarised band (VV or "
        f"HH): it is read {CROSS_AS_CO_DB:g} dB brighter, the usual gap between the two over water and land. If "
        "the scene has a VV or HH band, give it (with VH: the water expert then reads both)"
    )
