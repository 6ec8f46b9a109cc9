"""Optical feature chain: conversion of the file's values to reflectance-like values (0-1)."""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

from ..config import OPTICAL_FILL_AT_MOST, OPTICAL_FILL_TOP, OpticalPreprocessConfig

# (scale, offset) to reflectance-like values for each unit; "dn" assumes the full 16-bit range
# (its true scale is unknown, and per-scene normalisation makes any linear scale irrelevant)
UNIT_CONVERSION = {
    "uint8": (1.0 / 255.0, 0.0),
    "reflectance10000": (1.0e-4, 0.0),
    "reflectance": (1.0, 0.0),
    "dn": (1.0 / 65535.0, 0.0),
    "landsat_c2": (2.75e-5, -0.2),  # USGS Collection 2 Level-2 surface reflectance
}


def conversion_for(units: str, offset_dn: float = 0.0) -> Tuple[float, float]:
    """``(scale, offset)`` taking values in ``units`` to reflectance-like values.

    Args:
        units: one of :data:`UNIT_CONVERSION`'s keys.
        offset_dn: an additive offset in the file's own units, e.g. Sentinel-2's
            ``BOA_ADD_OFFSET`` of -1000 since processing baseline 04.00.
    """
    if units not in UNIT_CONVERSION:
        raise ValueError(f"optical units {units!r} have no fixed conversion; expected one of {sorted(UNIT_CONVERSION)}")
    scale, offset = UNIT_CONVERSION[units]
    return scale, offset + offset_dn * scale


def optical_steps(cfg: OpticalPreprocessConfig) -> List[str]:
    """Names of the feature steps ``cfg`` applies, as stored in a normalisation record: a custom
    scaling only (the conversion of known units belongs to each file and is reported per run)."""
    if cfg.units != "custom" or (cfg.scale == 1.0 and cfg.offset == 0.0):
        return []
    return [f"linear(scale={cfg.scale:g},offset={cfg.offset:g})"]


def optical_to_features(arr: np.ndarray, cfg: OpticalPreprocessConfig) -> np.ndarray:
    """Scale optical values linearly: ``arr * cfg.scale + cfg.offset``; NaN stays NaN.

    Args:
        arr: (C, H, W) raw optical values, NaN where nodata.
        cfg: resolved units with their scale and offset (see :func:`conversion_for`).

    Returns:
        float32 (C, H, W).
    """
    if cfg.units == "auto":
        raise ValueError(
            "optical units are not resolved; resolve them per file (engine.inputs.resolve_inputs)"
        )
    x = np.asarray(arr, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"optical array must be (C, H, W), got shape {x.shape}")
    # -9999 in any band, 65535 in every band: fills, not reflectance
    missing = (x <= np.float32(OPTICAL_FILL_AT_MOST)).any(0) | (x == np.float32(OPTICAL_FILL_TOP)).all(0)
    if cfg.zero_is_nodata:
        missing |= (x == 0).all(0)  # a fill in every band: missing, not black
    if missing.any():
        x = np.where(missing, np.float32(np.nan), x)
    if cfg.scale == 1.0 and cfg.offset == 0.0:
        return x
    return x * np.float32(cfg.scale) + np.float32(cfg.offset)
