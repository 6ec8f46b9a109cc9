"""Water a co-polarised map cannot see: what the cross-polarised band says where the map says land.

The water expert reads one co-polarised band (VV or HH). Open water roughened by wind scatters
like a rough surface: its co-polarised backscatter rises to the level of fields (Sen1Floods11
Sri-Lanka_534068: water at -11 dB VV, like the land around it) while its cross-polarised
backscatter stays near the noise floor (-26 dB VH), because a surface hardly depolarises.
Land under -22 dB in C-band VH is rare (smooth bare soil, sand, tarmac, wet snow); -22 dB is a
common fixed Sentinel-1 VH water threshold. So when a large share of a scene is that dark in VH
while the water map calls it land, the map has probably missed water, and the run says so with
the figures. Only a band named VH is checked: Sentinel-1 acquires VV + VH over land, while L-band
HV (ALOS-2 HH + HV) puts fields near -22 dB, where this level would mean nothing.

Measured (``docs/experiments/zero_shot_real.md``, "Held-out Sen1Floods11 chips"): the share of
the footprint under -22 dB VH that the bundled teacher calls land is 0.1-11 % on thirteen
Sentinel-1 chips (dry and flooded) and 95 % on the wind-roughened Sri-Lanka chip.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np
import rasterio

from ..inputs.units import polarisation_names
from ..progress import NULL_PROGRESS, Progress
from ..raster.io import iter_windows
from .source import SarSource

PathLike = Union[str, Path]
CROSS_WATER_DB = -22.0
"""C-band VH backscatter under which a pixel is probably open water (Sentinel-1)."""
MISSED_SHARE_WARNING = 0.25
"""Share of the valid pixels dark in the cross band yet called land above which the run warns
(measured 0.001-0.11 on thirteen Sentinel-1 chips whose maps are not missing water this way)."""


@dataclass(frozen=True)
class CrossPolCheck:
    """What the cross-polarised band says about a water map."""

    band: int
    valid_pixels: int
    dark_share: float  # valid pixels under CROSS_WATER_DB in the cross band
    missed_share: float  # of those, the ones the map calls land, as a share of all valid pixels

    @property
    def suspicious(self) -> bool:
        return self.missed_share > MISSED_SHARE_WARNING

    def warning(self) -> Optional[str]:
        """The message for the user, or None when the map and the cross band agree well enough."""
        if not self.suspicious:
            return None
        return (
            f"SAR band {self.band} (cross-polarised) is under {CROSS_WATER_DB:.0f} dB on "
            f"{100 * self.missed_share:.0f} % of the SAR footprint where this water map finds land. Open water "
            "roughened by wind can be as bright as fields in the co-polarised band the water expert reads, "
            "while it stays dark in the cross-polarised band. Check the map against that band or an optical "
            "image; where it is water, let the VV + VH water expert map it (no SAR band chosen, bands named VV "
            f"and VH, or both bands chosen), or map this date from band {self.band}: with the scene-adaptive threshold "
            f"where the scene also holds land (python -m engine flood --method threshold --after-bands {self.band} "
            f"or --before-bands {self.band}; sgcad:floodmap: Method threshold, the date's SAR band {self.band}), or "
            f"with a fixed cut where it is nearly all water (band {self.band} < {CROSS_WATER_DB:.0f} dB in the "
            "Raster Calculator)"
        )

    def to_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out["warned"] = self.suspicious
        return out


def cross_band(path: PathLike, read_bands: Sequence[int]) -> Optional[int]:
    """The first band named VH that the map did not read, or None."""
    with rasterio.open(path) as src:
        count = src.count
    for band, name in zip(range(1, count + 1), polarisation_names(path, range(1, count + 1))):
        if name == "vh" and band not in read_bands:
            return band
    return None


def check_cross_polarised(cross_db: SarSource, band: int, probability_path: PathLike,
                          block: int = 512, progress: Progress = NULL_PROGRESS) -> CrossPolCheck:
    """Compare a water probability raster (NaN = no SAR) with the cross band in dB on its grid.

    Args:
        cross_db: the cross-polarised band in dB on the probability raster's grid.
        band: its band number in the SAR raster (for the message).
        probability_path: the water probability GeoTIFF (water where p >= 0.5).
        block: window edge; memory is one window of each.
        progress: cancellation, checked at every window.
    """
    valid = dark = missed = 0
    with rasterio.open(probability_path) as src:
        for window, _ in iter_windows(src.width, src.height, block):
            progress.check()
            p = src.read(1, window=window)
            db = cross_db.read(window)
            ok = np.isfinite(p) & np.isfinite(db)
            is_dark = ok & (db < CROSS_WATER_DB)
            valid += int(ok.sum())
            dark += int(is_dark.sum())
            missed += int((is_dark & (p < 0.5)).sum())
    total = max(valid, 1)
    return CrossPolCheck(band, valid, round(dark / total, 4), round(missed / total, 4))
