"""One preprocessing object shared by training datasets and large-scene inference.

Both read raw windows grown by :attr:`InputPreprocessor.halo` pixels on every side (NaN
outside the raster), call the preprocessor and get normalised arrays for the core window.
Because the Lee filter then sees the same neighbourhood as on the whole raster, tiles
processed this way equal the whole-scene result.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..config import NormalizationRecord, OpticalPreprocessConfig, SarPreprocessConfig
from .normalize import apply_normalization, feature_halo
from .optical import optical_to_features
from .sar import sar_to_features


class InputPreprocessor:
    """Feature chains plus robust normalisation for an optical + SAR pair.

    Args:
        sar_cfg: SAR chain settings.
        optical_cfg: optical chain settings.
        sar_record: SAR percentiles (required when ``sar_cfg.robust_normalize``).
        optical_record: optical percentiles (required when ``optical_cfg.robust_normalize``).
    """

    def __init__(
        self,
        sar_cfg: Optional[SarPreprocessConfig] = None,
        optical_cfg: Optional[OpticalPreprocessConfig] = None,
        sar_record: Optional[NormalizationRecord] = None,
        optical_record: Optional[NormalizationRecord] = None,
    ) -> None:
        self.sar_cfg = sar_cfg or SarPreprocessConfig()
        self.optical_cfg = optical_cfg or OpticalPreprocessConfig()
        for cfg, rec, name in ((self.sar_cfg, sar_record, "SAR"), (self.optical_cfg, optical_record, "optical")):
            if cfg.robust_normalize and rec is None:
                raise ValueError(
                    f"{name} robust normalisation is on but no {name} normalisation record was given; "
                    "compute one with compute_normalization or switch robust_normalize off"
                )
        self.sar_record = sar_record
        self.optical_record = optical_record

    @property
    def halo(self) -> int:
        """Pixels of context needed on every side of a window (Lee window // 2, else 0)."""
        return feature_halo(self.sar_cfg)

    def _crop(self, x: np.ndarray) -> np.ndarray:
        h = self.halo
        return x[:, h : x.shape[1] - h, h : x.shape[2] - h] if h else x

    def optical(self, raw: np.ndarray) -> np.ndarray:
        """Normalise an optical (C, H+2h, W+2h) array; returns (C, H, W) float32, NaN kept."""
        x = self._crop(optical_to_features(raw, self.optical_cfg))
        if self.optical_cfg.robust_normalize:
            x = apply_normalization(x, self.optical_record)
        return x

    def sar(self, raw: np.ndarray, incidence: Optional[np.ndarray] = None) -> np.ndarray:
        """Normalise a SAR (C, H+2h, W+2h) array; returns (C, H, W) float32, NaN kept."""
        x = self._crop(sar_to_features(raw, self.sar_cfg, incidence))
        if self.sar_cfg.robust_normalize:
            x = apply_normalization(x, self.sar_record)
        return x

    def __call__(
        self, optical_raw: np.ndarray, sar_raw: np.ndarray, incidence: Optional[np.ndarray] = None
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Preprocess a pair of raw windows that include the halo; returns the cropped pair."""
        if optical_raw.shape[1:] != sar_raw.shape[1:]:
            raise ValueError(
                f"optical window {optical_raw.shape[1:]} and SAR window {sar_raw.shape[1:]} differ; "
                "read both on the same grid"
            )
        if min(sar_raw.shape[1:]) <= 2 * self.halo:
            raise ValueError(f"window {sar_raw.shape[1:]} is not larger than twice the halo {self.halo}")
        return self.optical(optical_raw), self.sar(sar_raw, incidence)
