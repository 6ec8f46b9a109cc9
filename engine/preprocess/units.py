"""Whether a SAR raster holds linear intensity or decibels, read from the data itself.

Models store the SAR chain they were trained with, but the units of the file a user brings
are a property of that file: Sentinel-1 GRD is linear, many processed products are dB.
Linear intensity is never negative, while dB backscatter of land and water mostly is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
import rasterio
from rasterio.enums import Resampling

UNITS = ("model", "auto", "linear", "db")


def detect_sar_units(path: Union[str, Path], bands: Sequence[int], max_side: int = 512) -> str:
    """``"db"`` when most valid pixels of a decimated read are negative, else ``"linear"``."""
    with rasterio.open(path) as src:
        scale = max(src.width, src.height) / max_side
        shape = (max(1, int(src.height / max(scale, 1))), max(1, int(src.width / max(scale, 1))))
        data = src.read(list(bands), out_shape=(len(bands),) + shape, resampling=Resampling.nearest,
                        masked=True).astype(np.float64)
    values = data.compressed()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError(f"{path}: SAR band(s) {list(bands)} hold no valid pixel")
    return "db" if (values < 0).mean() > 0.5 else "linear"


def input_is_db(units: str, path: Union[str, Path], bands: Sequence[int], model_value: bool) -> bool:
    """Resolve a ``--sar-units`` choice to the preprocessing flag ``input_is_db``."""
    if units not in UNITS:
        raise ValueError(f"SAR units must be one of {UNITS}, got {units!r}")
    if units == "model":
        return model_value
    if units == "auto":
        return detect_sar_units(path, bands) == "db"
    return units == "db"
