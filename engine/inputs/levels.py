"""Whether a SAR raster's levels are calibrated backscatter: what its polarisations say.

The water teacher's cut holds for calibrated sigma0 (:mod:`engine.water.calibration`). Amplitude
digital numbers without a calibration constant are known to be relative. A raster in dB can be
relative too (an airborne product whose channels were scaled for display), and its values alone
do not say so: Rotterdam's HH looks like a dry Sentinel-1 pasture (docs/experiments/zero_shot_real.md).
Its polarisations do. In calibrated backscatter the cross-polarised channel stays well under the
co-polarised one: a cloud of randomly oriented thin dipoles, the most depolarising natural target,
gives cross / co = 1/3 (-4.8 dB), and surfaces and double bounce much less. Measured medians of
co minus cross dB: Sentinel-1 chips 5.0-7.5 dB (BigEarthNet, Sen1Floods11), synthetic C-, L- and
X-band scenes 6.5-8.5 dB; SpaceNet 6 Rotterdam 2.4 (HH - HV) and 2.7 (VV - VH).

The co- and cross-polarised bands are known from band descriptions (VV, HH; VH, HV), or, without
descriptions, in a 4-band raster in the usual quad-pol order HH, HV, VH, VV whose bands 2 and 3
agree as reciprocity says they must (HV = VH). Only pixels above every sensor's noise floor count,
so a scene of calm open sea, where both channels sink to the floor, is not taken for relative.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np
import rasterio

from .units import polarisations, sample_pixels

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
