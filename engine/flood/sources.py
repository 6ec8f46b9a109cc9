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


def bands_of(bands: Tuple[int, ...], path: Optional[PathLike] = None) -> int:
    """The one band a date is mapped from: the first given; else the co-polarised band where the
    band descriptions say which it is (a VH, VV raster: 2; :mod:`engine.inputs.bands`); else 1."""
    if bands:
        return int(bands[0])
    choice = choose_bands(path, generic_mapping("sar"), "sar") if path is not None else None
    return choice.bands[0] if choice else 1
