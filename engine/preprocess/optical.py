"""Optical feature chain: linear scaling (e.g. digital numbers to reflectance)."""

from __future__ import annotations

from typing import List

import numpy as np

from ..config import OpticalPreprocessConfig


def optical_steps(cfg: OpticalPreprocessConfig) -> List[str]:
    """Names of the feature steps ``cfg`` applies, as stored in a normalisation record."""
    if cfg.scale == 1.0 and cfg.offset == 0.0:
        return []
    return [f"linear(scale={cfg.scale:g},offset={cfg.offset:g})"]


def optical_to_features(arr: np.ndarray, cfg: OpticalPreprocessConfig) -> np.ndarray:
    """Scale optical values linearly: ``arr * cfg.scale + cfg.offset``; NaN stays NaN.

    Args:
        arr: (C, H, W) raw optical values, NaN where nodata.
        cfg: the scale and offset.

    Returns:
        float32 (C, H, W).
    """
    x = np.asarray(arr, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"optical array must be (C, H, W), got shape {x.shape}")
    if cfg.scale == 1.0 and cfg.offset == 0.0:
        return x
    return x * np.float32(cfg.scale) + np.float32(cfg.offset)
