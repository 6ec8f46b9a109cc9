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
        self.sar_record = sar_record
        self.optical_record = optical_record

    @staticmethod
    def _normalise(x: np.ndarray, cfg, record: Optional[NormalizationRecord], name: str) -> np.ndarray:
        if not cfg.robust_normalize:
            return x
        if record is None:  # checked here: a SAR-only run never normalises optical values
            raise ValueError(
                f"{name} robust normalisation is on but no {name} normalisation record was given; "
                "resolve the inputs (engine.inputs.resolve_inputs) or switch robust_normalize off"
            )
        return apply_normalization(x, record)

    @property
    def halo(self) -> int:
        """Pixels of context needed on every side of a window (:func:`.normalize.feature_halo`)."""
        return feature_halo(self.sar_cfg)

    def _crop(self, x: np.ndarray) -> np.ndarray:
        h = self.halo
        return x[:, h : x.shape[1] - h, h : x.shape[2] - h] if h else x

    def optical(self, raw: np.ndarray) -> np.ndarray:
        """Normalise an optical (C, H+2h, W+2h) array; returns (C, H, W) float32, NaN kept."""
        x = self._crop(optical_to_features(raw, self.optical_cfg))
        return self._normalise(x, self.optical_cfg, self.optical_record, "optical")

    def sar(self, raw: np.ndarray, incidence: Optional[np.ndarray] = None) -> np.ndarray:
        """Normalise a SAR (C, H+2h, W+2h) array; returns (C, H, W) float32, NaN kept."""
        x = self._crop(sar_to_features(raw, self.sar_cfg, incidence))
        return self._normalise(x, self.sar_cfg, self.sar_record, "SAR")

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
