"""The one window reader: a window of the model grid, read from both rasters, preprocessed.

Training patches, segmentation tiles and gate rasters all read through :class:`PairReader`:
each window is grown by the widest preprocessor's halo (the Lee filter's context), warped
onto the grid on the fly (``read_on_grid``; NaN outside a raster), converted and normalised
by the resolved inputs' preprocessors, and cropped back. NaN marks missing values; callers
decide what the networks get there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
from rasterio.windows import Window

from ..preprocess.pipeline import InputPreprocessor
from ..raster.grid import Grid, read_on_grid

PathLike = Union[str, Path]


@dataclass
class PairWindow:
    """Preprocessed arrays of one window (float32, NaN where missing)."""

    optical: Optional[np.ndarray]  # (Co, h, w), None when no optical raster is read
    sar: List[np.ndarray]  # (Cs, h, w) per preprocessor, in the order given


class PairReader:
    """Reads windows of ``grid`` from an optical (optional) and a SAR raster.

    Args:
        optical_path: optical raster, or None (SAR-only: the teacher, gate rasters).
        sar_path: SAR raster.
        grid: the model grid the windows refer to.
        optical_bands, sar_bands: 1-based bands, in the networks' order.
        preprocessors: one per network fed from these files (student first); the optical
            array comes from the first.
        cloud_mask: raster whose pixels at least ``cloud_cut`` mark the optical input as missing.
        sar_channels: per preprocessor, the positions in ``sar_bands`` it reads (default: all of
            them), when the networks read different SAR bands (a VV student beside the VV + VH
            water expert: ``[(0,), (0, 1)]``); the bands are read once.
        cloud_cut: 0.5 (any non-zero whole number; a probability from 50 %), or 50 for a percentage.
    """

    def __init__(
        self,
        optical_path: Optional[PathLike],
        sar_path: PathLike,
        grid: Grid,
        optical_bands: Sequence[int],
        sar_bands: Sequence[int],
        preprocessors: Sequence[InputPreprocessor],
        cloud_mask: Optional[PathLike] = None,
        sar_channels: Optional[Sequence[Sequence[int]]] = None,
        cloud_cut: float = 0.5,
    ) -> None:
        if not preprocessors:
            raise ValueError("PairReader needs at least one preprocessor")
        every = tuple(range(len(sar_bands)))
        self.sar_channels = [tuple(c) for c in sar_channels] if sar_channels else [every] * len(preprocessors)
        if len(self.sar_channels) != len(preprocessors):
            raise ValueError("PairReader needs one SAR channel selection per preprocessor")
        self.optical_path = Path(optical_path) if optical_path else None
        self.sar_path, self.grid = Path(sar_path), grid
        self.optical_bands, self.sar_bands = list(optical_bands), list(sar_bands)
        self.preprocessors = list(preprocessors)
        self.cloud_mask = Path(cloud_mask) if cloud_mask else None
        self.cloud_cut = float(cloud_cut)
        self.halo = max(p.halo for p in self.preprocessors)
        cfg = self.preprocessors[0].sar_cfg
        self.incidence_band = cfg.incidence_band if cfg.incidence_normalize else None

    def read(self, col: int, row: int, width: int, height: int, context: int = 0) -> PairWindow:
        """The window ``(col, row, width, height)`` grown by ``context`` pixels on every side."""
        h = self.halo + context
        win = Window(col - h, row - h, width + 2 * h, height + 2 * h)
        sar_raw = read_on_grid(self.sar_path, self.sar_bands, self.grid, win)
        incidence = None
        if self.incidence_band:
            incidence = read_on_grid(self.sar_path, [self.incidence_band], self.grid, win)[0]
        optical = None
        if self.optical_path is not None:
            opt_raw = read_on_grid(self.optical_path, self.optical_bands, self.grid, win)
            if self.cloud_mask is not None:
                cloud = read_on_grid(self.cloud_mask, [1], self.grid, win, resampling="nearest")[0]
                opt_raw[:, np.isfinite(cloud) & (cloud >= self.cloud_cut)] = np.nan
            optical = self._crop(self.preprocessors[0].optical(opt_raw), self.preprocessors[0])
        sar = []
        for pre, channels in zip(self.preprocessors, self.sar_channels):
            d = self.halo - pre.halo  # crop the shared halo down to what this chain needs
            raw = sar_raw if channels == tuple(range(len(sar_raw))) else sar_raw[list(channels)]
            inc = incidence
            if d:
                raw = raw[:, d:-d, d:-d]
                inc = incidence[d:-d, d:-d] if incidence is not None else None
            sar.append(pre.sar(raw, inc).astype(np.float32, copy=False))
        return PairWindow(optical.astype(np.float32, copy=False) if optical is not None else None, sar)

    def _crop(self, x: np.ndarray, pre: InputPreprocessor) -> np.ndarray:
        # the preprocessor crops its own halo; the rest of the shared halo is cropped here
        d = self.halo - pre.halo
        return x[:, d : x.shape[1] - d, d : x.shape[2] - d] if d else x
