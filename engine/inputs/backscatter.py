"""Sigma nought or terrain-flattened gamma nought: which backscatter a calibrated SAR raster holds.

Both are "calibrated Sentinel-1 backscatter", but not the same number. Gamma nought references the
backscatter to the area seen across the beam, so on flat ground it is sigma nought divided by the
cosine of the incidence angle: 0.6 dB brighter at 30 degrees, 1.0 dB at 37, 1.6 dB at 46 (the IW
swath spans 29-46 degrees). Radiometrically terrain-corrected products (OPERA RTC-S1, ASF HyP3 RTC,
SNAP terrain flattening, pyroSAR's GAMMA workflow) deliver gamma nought; ESA's GRD calibration, Google
Earth Engine and Sen1Floods11 deliver sigma nought. The models read sigma nought (their levels were
measured on it, docs/data.md), and a water cut sits within a dB of where calm water and dark land meet:
read as it is, gamma nought water looks less like water. So a gamma nought raster is multiplied by
``cos(GAMMA0_INCIDENCE_DEG)`` (-0.98 dB) before anything reads it. Measured on the Camargue scenes
(pyroSAR gamma nought): the lower Rhône's evaluation polygons 91.0 -> 98.3 water IoU, its training
polygons 99.0 -> 99.2, the Camargue's 100 (docs/experiments/zero_shot_real.md, "Gamma nought").

The raster says which it holds in its band names, tags or file name; a user may say it instead.
Nothing said: sigma nought, as a Sentinel-1 GRD calibrated by ESA's tools.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import rasterio

from ..config import SAR_BACKSCATTER
from ..preprocess.sar import GAMMA0_INCIDENCE_DEG, gamma0_to_sigma0_factor
from .names import band_names
from .units import metadata_text

PathLike = Union[str, Path]

# "gamma0", "Gamma0_VV", "gamma_0", "gamma-nought", "γ0"; RTC products (OPERA "RTC-S1", HyP3 "RTC30_G",
# pyroSAR "gamma0-rtc"); pyroSAR's earlier GAMMA naming "..._geo_norm_db" (terrain-flattened)
_GAMMA0_WORDS = re.compile(
    r"gamma[\s_-]?0|gamma[\s_-]?nought|γ0|γ⁰|(^|[^a-z])rtc([^a-z]|\d|$)|_geo_norm(_|\.|$)", re.IGNORECASE)
# "sigma0", "Sigma0_VV", "sigma_0", "sigma-nought", "σ0"
_SIGMA0_WORDS = re.compile(r"sigma[\s_-]?0|sigma[\s_-]?nought|σ0|σ⁰", re.IGNORECASE)
# ASF HyP3 RTC product names carry their radiometry after the pixel size: "_RTC30_G_" gamma, "_RTC30_S_" sigma
_HYP3_RADIOMETRY = re.compile(r"_rtc\d+_([gs])_", re.IGNORECASE)


@dataclass(frozen=True)
class BackscatterDecision:
    """Which backscatter a SAR raster holds, and how that was found."""

    convention: str  # "sigma0" or "gamma0"
    how: str  # "given", "metadata" or "default"
    reason: str = ""

    @property
    def factor(self) -> float:
        """Linear power factor that brings the raster to sigma nought."""
        return gamma0_to_sigma0_factor(self.convention)

    def line(self) -> str:
        """What the log says, or "" for sigma nought nobody had to decide about."""
        if self.convention != "gamma0":
            return ""
        return (f"gamma nought ({self.how}{': ' + self.reason if self.reason else ''}), read as sigma nought "
                f"x cos {GAMMA0_INCIDENCE_DEG:g} deg ({10 * math.log10(self.factor):+.2f} dB): the models read "
                "sigma nought; if it is sigma nought, set --sar-backscatter sigma0 / SAR_BACKSCATTER")


def _named(text: str) -> Optional[str]:
    hyp3 = _HYP3_RADIOMETRY.search(text)
    if hyp3:
        return "gamma0" if hyp3.group(1).lower() == "g" else "sigma0"
    gamma, sigma = bool(_GAMMA0_WORDS.search(text)), bool(_SIGMA0_WORDS.search(text))
    if gamma == sigma:  # neither, or both (a file holding both names decides nothing)
        return None
    return "gamma0" if gamma else "sigma0"


def detect_backscatter(path: PathLike, bands: Sequence[int], given: str = "auto") -> BackscatterDecision:
    """Decide whether ``path`` holds sigma or gamma nought: as given, else by the names of its bands (they
    say what each band holds), else by its band and file tags (a processing history there may name both),
    else by its file name, else sigma nought."""
    if given not in SAR_BACKSCATTER:
        raise ValueError(f"SAR backscatter must be one of {list(SAR_BACKSCATTER)}, got {given!r}")
    if given != "auto":
        return BackscatterDecision(given, "given")
    with rasterio.open(path) as src:
        every = band_names(src)
        names = " ".join(every[b - 1] for b in bands)
    for where, text in (("band names", names), ("band or file tags", metadata_text(path, bands)),
                        ("file name", Path(path).name)):
        found = _named(text)
        if found:
            return BackscatterDecision(found, "metadata", f"named in the {where}")
    return BackscatterDecision("sigma0", "default")
