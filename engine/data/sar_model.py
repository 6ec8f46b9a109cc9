"""Radiometry of synthetic scenes: backscatter per surface, band and polarisation; reflectance.

Every number here is documented with its source in ``docs/data.md`` ("Synthetic SAR:
distributions and sources"): published typical values, checked against the real Sentinel-1
chips in ``shared/data`` (``scripts/measure_real_sar.py``). Backscatter is sigma0 in dB at
the sensor's reference incidence angle; ``spread`` is the parcel-to-parcel standard deviation
and ``slope`` the change per degree of incidence. Speckle and thermal noise come on top.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

CLASSES = ("farmland", "city", "village", "water", "forest", "road")
"""Label classes a synthetic scene needs in its schema (looked up by name)."""

SURFACES = CLASSES + ("runway", "sand", "smooth_field", "wet_snow", "rough_water")
"""What the radar sees. The extra surfaces are labelled with a land class (runway: road;
sand, smooth bare fields and wet snow: the class beneath); ``rough_water`` is the
wind-roughened limit that water moves towards."""
SURFACE = {name: i for i, name in enumerate(SURFACES)}

POLARISATIONS = ("VV", "VH", "HH", "HV")


@dataclass(frozen=True)
class Sensor:
    """A SAR sensor family: band, geometry, noise and typical products."""

    name: str
    band: str  # "C", "L" or "X"
    ref_incidence: float  # degrees; the tables hold values at this angle
    incidence: Tuple[float, float]  # near and far incidence of a typical swath, degrees
    nesz_db: float  # noise-equivalent sigma0
    resolution_m: float  # resolution cell of the typical product
    pixel_sizes: Tuple[float, ...]  # typical product pixel spacings, metres
    polarisations: Tuple[str, ...]  # the usual acquisition


SENSORS: Dict[str, Sensor] = {
    "s1": Sensor("Sentinel-1 IW GRDH (C-band)", "C", 38.0, (30.0, 46.0), -26.0, 20.0, (10.0, 10.0, 20.0),
                 ("VV", "VH")),
    "alos2": Sensor("ALOS-2 PALSAR-2 stripmap (L-band)", "L", 36.0, (29.0, 43.0), -28.0, 10.0, (6.25, 10.0, 12.5),
                    ("HH", "HV")),
    "x": Sensor("TerraSAR-X / COSMO-SkyMed stripmap (X-band)", "X", 35.0, (25.0, 45.0), -22.0, 3.0, (2.0, 3.0, 5.0),
                ("HH", "VV")),
}

# (mean dB at the reference incidence, parcel spread dB, slope dB/degree) per surface, band
# and polarisation kind: co-pol VV, co-pol HH, cross-pol "X" (VH = HV by reciprocity)
_B = Tuple[float, float, float]
BACKSCATTER: Dict[str, Dict[str, Dict[str, _B]]] = {
    "C": {
        "farmland": {"VV": (-11.5, 2.5, -0.15), "HH": (-12.0, 2.5, -0.17), "X": (-18.0, 2.5, -0.10)},
        "city": {"VV": (-3.0, 2.5, -0.05), "HH": (-2.0, 2.5, -0.05), "X": (-11.0, 2.5, -0.05)},
        "village": {"VV": (-6.5, 2.0, -0.08), "HH": (-5.5, 2.0, -0.08), "X": (-14.0, 2.0, -0.06)},
        "water": {"VV": (-20.0, 1.5, -0.30), "HH": (-23.0, 1.5, -0.40), "X": (-28.0, 1.5, -0.15)},
        "forest": {"VV": (-7.5, 1.0, -0.07), "HH": (-7.5, 1.0, -0.07), "X": (-13.0, 1.0, -0.05)},
        "road": {"VV": (-16.0, 2.0, -0.25), "HH": (-17.0, 2.0, -0.25), "X": (-24.0, 2.0, -0.15)},
        "runway": {"VV": (-22.0, 1.5, -0.30), "HH": (-24.0, 1.5, -0.35), "X": (-29.0, 1.5, -0.15)},
        "sand": {"VV": (-20.0, 2.0, -0.25), "HH": (-21.0, 2.0, -0.25), "X": (-27.0, 2.0, -0.15)},
        "smooth_field": {"VV": (-17.5, 1.5, -0.30), "HH": (-18.5, 1.5, -0.30), "X": (-25.0, 1.5, -0.15)},
        "wet_snow": {"VV": (-20.0, 1.5, -0.20), "HH": (-21.0, 1.5, -0.20), "X": (-27.0, 1.5, -0.15)},
        "rough_water": {"VV": (-12.0, 1.0, -0.30), "HH": (-15.0, 1.0, -0.35), "X": (-23.0, 1.0, -0.15)},
    },
    "L": {
        "farmland": {"VV": (-14.0, 3.0, -0.15), "HH": (-13.0, 3.0, -0.15), "X": (-22.0, 3.0, -0.10)},
        "city": {"VV": (-3.0, 3.0, -0.05), "HH": (-1.0, 3.0, -0.05), "X": (-12.0, 3.0, -0.05)},
        "village": {"VV": (-6.5, 2.5, -0.08), "HH": (-5.0, 2.5, -0.08), "X": (-15.0, 2.5, -0.06)},
        "water": {"VV": (-23.0, 1.5, -0.30), "HH": (-26.0, 1.5, -0.35), "X": (-31.0, 1.5, -0.10)},
        "forest": {"VV": (-8.5, 1.0, -0.05), "HH": (-7.0, 1.0, -0.05), "X": (-12.5, 1.0, -0.04)},
        "road": {"VV": (-19.0, 2.0, -0.25), "HH": (-20.0, 2.0, -0.25), "X": (-28.0, 2.0, -0.15)},
        "runway": {"VV": (-25.0, 1.5, -0.30), "HH": (-27.0, 1.5, -0.35), "X": (-32.0, 1.5, -0.10)},
        "sand": {"VV": (-24.0, 2.0, -0.25), "HH": (-25.0, 2.0, -0.25), "X": (-32.0, 2.0, -0.10)},
        "smooth_field": {"VV": (-19.5, 1.5, -0.30), "HH": (-20.0, 1.5, -0.30), "X": (-28.0, 1.5, -0.10)},
        "wet_snow": {"VV": (-17.5, 1.5, -0.20), "HH": (-17.0, 1.5, -0.20), "X": (-25.0, 1.5, -0.10)},
        "rough_water": {"VV": (-16.0, 1.0, -0.30), "HH": (-19.0, 1.0, -0.35), "X": (-28.0, 1.0, -0.10)},
    },
    "X": {
        "farmland": {"VV": (-10.5, 2.5, -0.15), "HH": (-11.0, 2.5, -0.15), "X": (-17.0, 2.5, -0.10)},
        "city": {"VV": (-2.0, 3.0, -0.05), "HH": (-1.0, 3.0, -0.05), "X": (-10.0, 3.0, -0.05)},
        "village": {"VV": (-5.5, 2.0, -0.08), "HH": (-5.0, 2.0, -0.08), "X": (-13.0, 2.0, -0.06)},
        "water": {"VV": (-20.0, 2.0, -0.35), "HH": (-22.5, 2.0, -0.40), "X": (-28.0, 1.5, -0.15)},
        "forest": {"VV": (-8.5, 1.0, -0.07), "HH": (-8.5, 1.0, -0.07), "X": (-14.0, 1.0, -0.05)},
        "road": {"VV": (-16.0, 2.0, -0.25), "HH": (-17.0, 2.0, -0.25), "X": (-24.0, 2.0, -0.15)},
        "runway": {"VV": (-21.0, 1.5, -0.30), "HH": (-23.0, 1.5, -0.35), "X": (-28.0, 1.5, -0.15)},
        "sand": {"VV": (-18.0, 2.0, -0.25), "HH": (-19.0, 2.0, -0.25), "X": (-26.0, 2.0, -0.15)},
        "smooth_field": {"VV": (-16.0, 1.5, -0.30), "HH": (-17.0, 1.5, -0.30), "X": (-24.0, 1.5, -0.15)},
        "wet_snow": {"VV": (-22.0, 1.5, -0.20), "HH": (-22.5, 1.5, -0.20), "X": (-28.0, 1.5, -0.15)},
        "rough_water": {"VV": (-10.0, 1.0, -0.35), "HH": (-13.0, 1.0, -0.40), "X": (-22.0, 1.0, -0.15)},
    },
}

# wet snow on a forest canopy or in a built-up area darkens it less than open ground (dB)
SNOW_FOREST_DB = {"C": -2.0, "L": -1.0, "X": -3.0}
SNOW_URBAN_DB = -1.0
CORNER_REFLECTOR_GAIN = 6.0  # double-bounce corners in city blocks: about +8 dB on a few pixels

# surface reflectance (red, green, blue) of what the optical sensor sees
REFLECTANCE: Dict[str, Tuple[float, float, float]] = {
    "crop": (0.05, 0.09, 0.04),  # green vegetation: green peak, red absorbed by chlorophyll
    "bare_soil": (0.20, 0.16, 0.11),
    "city": (0.16, 0.15, 0.14),
    "village": (0.17, 0.12, 0.09),  # tile roofs and gardens
    "water": (0.035, 0.05, 0.06),
    "turbid": (0.03, 0.02, 0.005),  # added to water by suspended sediment
    "algae": (0.0, 0.025, -0.005),  # added to green (algal, harbour) water: green above blue
    "forest": (0.025, 0.045, 0.02),
    "road": (0.10, 0.10, 0.095),
    "runway": (0.22, 0.22, 0.21),  # concrete
    "sand": (0.35, 0.30, 0.22),
    "smooth_field": (0.18, 0.15, 0.10),  # rolled bare soil
    "dark_roof": (0.04, 0.05, 0.06),  # as dark as water
    "snow": (0.72, 0.75, 0.78),  # wet, not fresh snow
    "snow_forest": (0.16, 0.18, 0.21),
    "snow_urban": (0.42, 0.43, 0.45),
    "cloud": (0.70, 0.71, 0.73),
}
CLOUD_SHADOW = 0.35  # fraction of the light left under a cloud shadow
OPTICAL_NOISE = 0.003  # reflectance units, per band and pixel


def pol_kind(pol: str) -> str:
    """The table column of a polarisation: ``VV``, ``HH`` or ``X`` (cross-pol)."""
    pol = pol.upper()
    if pol not in POLARISATIONS:
        raise ValueError(f"polarisation {pol!r} is not one of {POLARISATIONS}")
    return "X" if pol in ("VH", "HV") else pol


def backscatter_table(sensor: str, pol: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean_db, spread_db, slope_db_per_deg)`` arrays indexed by surface code."""
    band, kind = SENSORS[sensor].band, pol_kind(pol)
    rows = [BACKSCATTER[band][name][kind] for name in SURFACES]
    return tuple(np.array(col, dtype=np.float64) for col in zip(*rows))  # type: ignore[return-value]


def psf_kernel(sigma_px: float) -> Tuple[np.ndarray, float]:
    """A 1-D Gaussian point-spread kernel and the 2-D sum of its squared weights.

    Filtering white noise of variance ``v`` with the separable kernel leaves variance
    ``v * sum_sq``; speckle is drawn with ``looks * sum_sq`` looks so that after filtering each
    pixel still has ``looks`` looks while neighbours are correlated as in real products.
    """
    if sigma_px <= 0:
        return np.ones(1), 1.0
    radius = max(1, int(math.ceil(3 * sigma_px)))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_px) ** 2)
    k /= k.sum()
    return k, float((k**2).sum() ** 2)


def sigma_from_resolution(resolution_m: float, pixel_m: float) -> float:
    """Gaussian sigma in pixels of a point-spread function whose half-power width is ``resolution_m``."""
    return resolution_m / (2 * math.sqrt(2 * math.log(2))) / pixel_m
