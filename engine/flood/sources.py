"""One SAR date as decibels on the flood map's grid, whatever its own grid and units.

The units of each date's file are resolved on their own (:func:`engine.inputs.contract.resolve_chain`:
detected, from metadata, or given), so a before date in linear power and an after date in dB
mix freely. Windows are warped onto the output grid on the fly (:func:`engine.raster.grid.read_on_grid`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
from rasterio.windows import Window

from ..config import SarPreprocessConfig
from ..inputs.bands import check_sar_not_picture, choose_bands, generic_mapping
from ..inputs.contract import resolve_chain
from ..inputs.shift import zero_fill_warning
from ..inputs.units import UnitsDecision
from ..preprocess.sar import to_linear_power
from ..raster.grid import Grid, read_on_grid
from ..water.source import SarSource

PathLike = Union[str, Path]
DB_FLOOR = 1e-6  # linear power floor before the log (-60 dB)


@dataclass
class DateSar:
    """A date's SAR band resolved to dB on a grid."""

    source: SarSource
    units: UnitsDecision
    note: Optional[str]
    band: int


def db_source(
    path: PathLike, band: int, grid: Grid, units: str = "auto", calibration: float = 0.0, name: str = ""
) -> DateSar:
    """A :class:`~engine.water.source.SarSource` of ``path``'s band in dB on ``grid``.

    Raises:
        FileNotFoundError, ValueError: a missing file, a band that does not exist, unknown units.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"SAR raster {path} does not exist")
    check_sar_not_picture(path)
    chain = SarPreprocessConfig(lee_filter=False, to_db=True, robust_normalize=False)
    cfg, decision, note = resolve_chain(chain, path, (band,), units, calibration)
    zeros = zero_fill_warning(path.name, decision.units, decision.stats)
    note = "; ".join(n for n in (note, zeros) if n) or None

    def read(window: Window) -> np.ndarray:
        raw = read_on_grid(path, [band], grid, window)
        with np.errstate(invalid="ignore", divide="ignore"):
            power = to_linear_power(raw, cfg)
            db = 10.0 * np.log10(np.maximum(power, DB_FLOOR))
        db[~np.isfinite(raw)] = np.nan
        return db[0].astype(np.float32)

    label = name or f"{path.name} band {band}"
    return DateSar(SarSource(grid.width, grid.height, read, grid, label), decision, note, band)


def footprint_share(source: SarSource, block: int = 512, step: int = 4) -> float:
    """Share of the grid the date covers with valid values (decimated estimate)."""
    from ..raster.io import iter_windows

    valid = total = 0
    for win, _ in iter_windows(source.width, source.height, block):
        v = source.read(win)[::step, ::step]
        valid += int(np.isfinite(v).sum())
        total += v.size
    return valid / max(total, 1)


REGISTRATION_WINDOW = 512
"""Edge (pixels) of the central window two dates are compared on for a shift."""
REGISTRATION_PEAK = 20.0
"""Phase-correlation peak, in standard deviations of the correlation surface, above which two dates are read
as the same place: 69 for the real Camargue pair (2015 and 2017, shifted or not), 6-7 for two different
places (the Camargue and the lower Rhone; two Sen1Floods11 chips)."""
REGISTRATION_MIN_SHIFT = 2
"""A whole-pixel shift at least this long is reported; below it lies the registration of terrain-corrected
products (under a pixel) and the rounding of the peak."""


def registration_shift(after: SarSource, before: SarSource) -> Optional[Tuple[int, int]]:
    """The (columns, rows) by which ``before`` must move to lie on ``after``, read by phase correlation of their
    dB over a central window; None when the peak does not stand out (other places, or a scene changed beyond
    recognition) or the dates share too few valid pixels."""
    size = min(REGISTRATION_WINDOW, after.width, after.height)
    if size < 32:
        return None
    window = Window((after.width - size) // 2, (after.height - size) // 2, size, size)
    a, b = after.read(window).astype(np.float64), before.read(window).astype(np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    if both.mean() < 0.5:
        return None
    taper = np.outer(np.hanning(size), np.hanning(size))
    spectra = [np.fft.fft2(np.where(both, v - v[both].mean(), 0.0) * taper) for v in (a, b)]
    cross = spectra[0] * np.conj(spectra[1])
    surface = np.fft.ifft2(cross / (np.abs(cross) + 1e-12)).real
    if surface.max() < REGISTRATION_PEAK * surface.std():
        return None
    peak = np.unravel_index(np.argmax(surface), surface.shape)
    row, col = (int(v) if v <= size // 2 else int(v) - size for v in peak)
    return col, row


def bands_of(bands: Tuple[int, ...], path: Optional[PathLike] = None) -> int:
    """The one band a date is mapped from: the first given; else the co-polarised band where the
    band descriptions say which it is (a VH, VV raster: 2; :mod:`engine.inputs.bands`); else 1."""
    if bands:
        return int(bands[0])
    choice = choose_bands(path, generic_mapping("sar"), "sar") if path is not None else None
    return choice.bands[0] if choice else 1
