"""Optical evidence against open water: the near-infrared band.

Open water absorbs near-infrared light: clear water reflects under about 0.05 of it, turbid water up
to about 0.1-0.15, while snow, vegetation and bare ground reflect 0.2-0.9. The student reads red, green
and blue only, and a dark bluish optical pixel can look like water to it. On a real snowy pair (Hudson
Bay Lowlands, January) it called 4.5 % of the scene water at the edges of snow-laden forest, where NIR
reads 0.14-0.38 and the SAR water expert says land (docs/experiments/zero_shot_real.md, "Snow").

The other way round, the student misses flood water that the SAR expert finds: on two real Sentinel-1 +
Sentinel-2 flood chips its water IoU was 39.8 and 0.7 where the expert scored 59.8 and 77.9.

So where the optical raster says which band is NIR, its values convert to reflectance and a water expert
runs, NIR decides whether open water is possible and the expert whether it is there. A pixel whose NIR
is above :attr:`engine.config.InferenceConfig.water_max_nir` is flagged
(:data:`engine.inference.products.NIR_NOT_WATER`) and keeps the student's water only where the expert
agrees; a pixel at or under it (:data:`engine.inference.products.NIR_WATER_POSSIBLE`) is water where the
expert says so (:func:`engine.inference.products.cell_products`). Measured: the snowy pair 4.5 -> 0.4 %
water, the two flood chips 39.8 -> 63.2 and 0.7 -> 81.0, no dry chip wetter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
from rasterio.windows import Window

from ..config import OpticalPreprocessConfig
from ..inputs.bands import optical_roles
from ..preprocess.optical import optical_to_features
from ..raster.grid import Grid, read_on_grid
from .products import NIR_NOT_WATER, NIR_WATER_POSSIBLE

PathLike = Union[str, Path]
REFLECTANCE_UNITS = ("reflectance10000", "reflectance", "landsat_c2", "custom")
"""Optical units whose conversion gives reflectance (8-bit pictures and other digital numbers do not)."""


@dataclass(frozen=True)
class NirEvidence:
    """Which band of the optical raster is NIR, how its values become reflectance, and the limit."""

    band: int
    optical_cfg: OpticalPreprocessConfig  # the optical raster's, as resolved for this run
    limit: float

    def flags(self, optical_path: PathLike, grid: Grid, x0: int, y0: int, width: int, height: int) -> np.ndarray:
        """uint8 (h, w): :data:`~.products.NIR_NOT_WATER` where NIR reflectance is above the limit,
        :data:`~.products.NIR_WATER_POSSIBLE` where it is at most the limit, 0 where the band has no value."""
        raw = read_on_grid(optical_path, [self.band], grid, Window(x0, y0, width, height))
        reflectance = optical_to_features(raw, self.optical_cfg)[0]
        with np.errstate(invalid="ignore"):
            return (np.where(reflectance > self.limit, NIR_NOT_WATER, 0)
                    | np.where(reflectance <= self.limit, NIR_WATER_POSSIBLE, 0)).astype(np.uint8)


def nir_band(optical_path: PathLike) -> Optional[int]:
    """The optical raster's NIR band (1-based) when its names, wavelengths, vendor order or Sentinel-2
    band count say which it is and only one band is NIR; None otherwise."""
    roles, _ = optical_roles(optical_path)
    bands = [i + 1 for i, role in enumerate(roles) if role == "nir"]
    return bands[0] if len(bands) == 1 else None


def nir_evidence(optical_path: Optional[PathLike], optical_cfg: OpticalPreprocessConfig, limit: float,
                 with_expert: bool) -> Tuple[Optional[NirEvidence], str]:
    """The NIR check of a segmentation, or None, and a line for the log saying which and why."""
    if not limit or optical_path is None:
        return None, ""
    band = nir_band(optical_path)
    if not with_expert:
        return None, ("" if band is None else f"optical band {band} is NIR, but without a water teacher (--teacher / "
                      "TEACHER) the class map's water is not read with it")
    if band is None:
        return None, ("the optical raster names no single NIR band: the student's water is not checked against "
                      "near-infrared reflectance")
    if optical_cfg.units not in REFLECTANCE_UNITS:
        return None, (f"the optical NIR band {band} is in {optical_cfg.units} units, not reflectance: the student's "
                      "water is not checked against it (give --optical-units / OPTICAL_UNITS if it is reflectance)")
    return NirEvidence(band, optical_cfg, float(limit)), (
        f"optical band {band} is NIR: where its reflectance is above {limit:g} (no open water reflects that much), "
        "the student's water stands only where the SAR water expert also says water, and at or under it the "
        "expert's water joins the map")
