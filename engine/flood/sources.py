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
from ..inputs.bands import check_not_complex, check_sar_not_picture, choose_bands, generic_mapping
from ..inputs.contract import resolve_chain
from ..inputs.shift import fill_value_warning, zero_fill_warning
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
    path: PathLike, band: int, grid: Grid, units: str = "auto", calibration: float = 0.0, name: str = "",
    backscatter: str = "auto",
) -> DateSar:
    """A :class:`~engine.water.source.SarSource` of ``path``'s band in dB on ``grid``.

    Raises:
        FileNotFoundError, ValueError: a missing file, a band that does not exist, unknown units.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"SAR raster {path} does not exist")
    check_not_complex(path, "SAR")
    check_sar_not_picture(path)
    chain = SarPreprocessConfig(lee_filter=False, to_db=True, robust_normalize=False)
    cfg, decision, note = resolve_chain(chain, path, (band,), units, calibration, backscatter=backscatter)
    if cfg.zero_is_nodata and (decision.stats or {}).get("zero_share") == 1:
        raise ValueError(f"SAR {path} band {band}: every value is exactly 0, read as missing data, so this date holds "
                         "nothing to map; check the band choice and its nodata value")
    zeros = zero_fill_warning(path.name, decision.units, decision.stats, cfg.zero_is_nodata)
    fills = fill_value_warning(path.name, decision.stats)
    note = "; ".join(n for n in (note, zeros, fills) if n) or None

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
REGISTRATION_MIN_NCC = 0.5
"""Normalised cross-correlation of the two dates' dB at the best shift above which they are read as the same
place: 0.70 for the real Camargue pair (2015 ascending, 2017 descending), 0.77-0.78 with either date moved by up
to 40 % of the scene; 0.21-0.25 for two different places (the Camargue and the lower Rhone; two Sen1Floods11
chips)."""
REGISTRATION_MIN_OVERLAP = 0.25
"""Least share of the after date's valid window pixels a shift must keep shared to be considered."""
REGISTRATION_MIN_SHIFT = 2
"""A whole-pixel shift at least this long is reported; below it lies the registration of terrain-corrected
products (under a pixel) and the rounding of the peak."""


def masked_ncc(fixed: np.ndarray, moving: np.ndarray, min_overlap: float = REGISTRATION_MIN_OVERLAP) -> np.ndarray:
    """Normalised cross-correlation of two equal-shape images at every whole-pixel shift, over the pixels
    both hold (NaN elsewhere), computed with FFTs (Padfield 2012, masked FFT registration).

    Entry ``[r, c]`` scores ``moving`` displaced by (r, c) rows and columns (indices past the middle wrap
    to negative shifts); shifts sharing fewer than ``min_overlap`` of ``fixed``'s valid pixels score 0.
    Unlike a tapered phase correlation, a shift of a large part of the window, or a no-data collar, still
    peaks where the images agree.
    """
    h, w = fixed.shape
    shape = (2 * h - 1, 2 * w - 1)
    m_f, m_m = np.isfinite(fixed), np.isfinite(moving)
    f, m = np.where(m_f, fixed, 0.0), np.where(m_m, moving, 0.0)
    m_f, m_m = m_f.astype(np.float64), m_m.astype(np.float64)

    # each image's spectrum once: the six correlations below share them
    fixed_spectra = {k: np.fft.rfft2(x, shape) for k, x in (("mask", m_f), ("value", f), ("square", f * f))}
    moving_spectra = {k: np.conj(np.fft.rfft2(x, shape)) for k, x in (("mask", m_m), ("value", m), ("square", m * m))}

    def corr(x: str, y: str) -> np.ndarray:  # sum over p of fixed_x(p + s) moving_y(p), for every shift s
        return np.fft.irfft2(fixed_spectra[x] * moving_spectra[y], shape)

    count = np.round(corr("mask", "mask"))
    n = np.maximum(count, 1.0)
    s_f, s_m = corr("value", "mask"), corr("mask", "value")
    cov = corr("value", "value") - s_f * s_m / n
    var = (np.maximum(corr("square", "mask") - s_f ** 2 / n, 0.0)
           * np.maximum(corr("mask", "square") - s_m ** 2 / n, 0.0))
    enough = (count >= min_overlap * m_f.sum()) & (var > 1e-9)
    return np.where(enough, cov / np.sqrt(np.where(enough, var, 1.0)), 0.0)


def registration_shift(after: SarSource, before: SarSource) -> Optional[Tuple[int, int]]:
    """The (columns, rows) by which ``before`` must move to lie on ``after``, read by masked normalised
    cross-correlation of their dB over a central window (:func:`masked_ncc`); None when the best shift's
    correlation stays under :data:`REGISTRATION_MIN_NCC` (other places, or a scene changed beyond
    recognition) or the dates share too few valid pixels."""
    width, height = min(REGISTRATION_WINDOW, after.width), min(REGISTRATION_WINDOW, after.height)
    if min(width, height) < 32:
        return None
    window = Window((after.width - width) // 2, (after.height - height) // 2, width, height)
    a, b = after.read(window).astype(np.float64), before.read(window).astype(np.float64)
    if not np.isfinite(a).any() or not np.isfinite(b).any():
        return None
    ncc = masked_ncc(a, b)
    peak = np.unravel_index(np.argmax(ncc), ncc.shape)
    if ncc[peak] < REGISTRATION_MIN_NCC:
        return None
    row, col = (int(v) if v < size else int(v) - (2 * size - 1) for v, size in zip(peak, (height, width)))
    return col, row


def bands_of(bands: Tuple[int, ...], path: Optional[PathLike] = None) -> int:
    """The one band a date is mapped from: the first given; else the co-polarised band where the
    band descriptions say which it is (a VH, VV raster: 2; :mod:`engine.inputs.bands`); else 1."""
    if bands:
        return int(bands[0])
    choice = choose_bands(path, generic_mapping("sar"), "sar") if path is not None else None
    return choice.bands[0] if choice else 1
