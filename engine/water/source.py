"""A single SAR band in dB seen through windows, with optional speckle smoothing.

The water mapper only needs ``read(window) -> (h, w) float32 dB`` with NaN for nodata and for
any part of the window outside the raster, so it works the same on an in-memory array, a
GeoTIFF band, or a reader that converts units on the fly (``to_db``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import rasterio
from rasterio.windows import Window

from ..preprocess.sar import lee_filter
from ..raster.grid import Grid, grid_of
from ..raster.io import check_bands, read_bands

WindowReader = Callable[[Window], np.ndarray]
SMOOTHING = ("none", "median", "lee")


@dataclass
class SarSource:
    """A SAR band in dB: size, a window reader and (for files) the grid outputs are written on."""

    width: int
    height: int
    read: WindowReader
    grid: Optional[Grid] = None
    name: str = "array"


def array_source(db: np.ndarray, grid: Optional[Grid] = None, name: str = "array") -> SarSource:
    """Wrap an (H, W) dB array (NaN = nodata) as a :class:`SarSource`."""
    arr = np.asarray(db, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a (H, W) array of dB values, got shape {arr.shape}")
    h, w = arr.shape

    def read(window: Window) -> np.ndarray:
        col, row, ww, hh = (int(v) for v in (window.col_off, window.row_off, window.width, window.height))
        out = np.full((hh, ww), np.nan, dtype=np.float32)
        c0, r0, c1, r1 = max(col, 0), max(row, 0), min(col + ww, w), min(row + hh, h)
        if c1 > c0 and r1 > r0:
            out[r0 - row : r1 - row, c0 - col : c1 - col] = arr[r0:r1, c0:c1]
        return out

    return SarSource(w, h, read, grid, name)


def file_source(
    path: Union[str, Path], band: int = 1, to_db: Optional[Callable[[np.ndarray], np.ndarray]] = None
) -> SarSource:
    """A band of a raster as a :class:`SarSource`; values must be dB unless ``to_db`` converts them.

    Args:
        path: raster file; its nodata value and NaN are read as NaN.
        band: 1-based band number.
        to_db: optional conversion applied to each window read (e.g. linear sigma0 to dB).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    with rasterio.open(path) as src:
        check_bands(src, [band], path)
        width, height = src.width, src.height

    def read(window: Window) -> np.ndarray:
        values = read_bands(path, [band], window)[0]
        return np.asarray(to_db(values), dtype=np.float32) if to_db else values

    return SarSource(width, height, read, grid_of(path), f"{path} band {band}")


def nan_median(values: np.ndarray, size: int) -> np.ndarray:
    """Median over a ``size`` x ``size`` window of the valid neighbours; NaN pixels stay NaN.

    Pixels outside the array count as missing, so a windowed run with a ``size // 2`` halo
    equals the whole-array run exactly.
    """
    r = size // 2
    h, w = values.shape
    padded = np.pad(values.astype(np.float32), r, constant_values=np.nan)
    stack = np.stack([padded[i : i + h, j : j + w] for i in range(size) for j in range(size)])
    n = np.isfinite(stack).sum(axis=0)
    stack.sort(axis=0)  # NaN sorts last
    lo = np.take_along_axis(stack, np.maximum((n - 1) // 2, 0)[None], axis=0)[0]
    hi = np.take_along_axis(stack, np.maximum(n // 2, 0)[None], axis=0)[0]
    out = (0.5 * (lo + hi)).astype(np.float32)
    out[(n == 0) | ~np.isfinite(values)] = np.nan
    return out


def smooth_db(values: np.ndarray, method: str = "median", size: int = 3) -> np.ndarray:
    """Speckle smoothing of dB values: ``none``, ``median`` (in dB) or ``lee`` (on linear power).

    ``size`` is the odd window size; NaN is ignored in the window and kept where it was.
    """
    if method not in SMOOTHING:
        raise ValueError(f"smoothing must be one of {SMOOTHING}, got {method!r}")
    if method == "none" or size <= 1:
        return values.astype(np.float32)
    if size % 2 == 0:
        raise ValueError(f"smoothing window must be odd, got {size}")
    if method == "median":
        return nan_median(values, size)
    with np.errstate(invalid="ignore", divide="ignore"):
        # 4.4 looks: the equivalent number of looks of Sentinel-1 IW GRD high resolution
        lin = lee_filter(np.power(10.0, values.astype(np.float64) / 10.0).astype(np.float32), size, looks=4.4)
        return (10.0 * np.log10(lin)).astype(np.float32)


def smoothed_reader(source: SarSource, method: str = "median", size: int = 3) -> WindowReader:
    """A reader of smoothed dB for core windows: reads each window with the halo smoothing needs."""
    halo = 0 if method == "none" or size <= 1 else size // 2
    smooth_db(np.zeros((1, 1), np.float32), method, size)  # validate the arguments now

    def read(window: Window) -> np.ndarray:
        padded = Window(window.col_off - halo, window.row_off - halo, window.width + 2 * halo, window.height + 2 * halo)
        values = smooth_db(source.read(padded), method, size)
        return values[halo : values.shape[0] - halo, halo : values.shape[1] - halo]

    return read
