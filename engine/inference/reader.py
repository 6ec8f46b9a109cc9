"""Reads tiles of an optical + SAR pair onto the model grid, preprocessed and flagged.

Each tile window is read through the shared window reader of the input contract
(:mod:`engine.inputs.reader`: grown by the halo, warped onto the grid on the fly, converted
and normalised as resolved for this pair of files, cropped back). Missing optical becomes 0
and missing SAR its nearest valid pixel of the tile (:mod:`engine.preprocess.nodata`); which
inputs were present is kept per pixel in validity flags (:mod:`.products`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from ..inputs.reader import PairReader
from ..preprocess.nodata import fill_sar_nodata
from ..preprocess.pipeline import InputPreprocessor
from ..raster.grid import Grid
from .products import OPTICAL_VALID, SAR_VALID
from .spectral import NirEvidence
from .tiling import Tile

PathLike = Union[str, Path]


@dataclass
class TileBatch:
    """Network inputs of a batch of tiles (float32, no NaN) and their validity flags (uint8)."""

    tiles: List[Tile]
    optical: np.ndarray  # (B, Co, h, w)
    sar: np.ndarray  # (B, Cs, h, w) for the student
    teacher_sar: Optional[np.ndarray]  # (B, Ct, h, w) when the teacher reads or normalises SAR differently
    flags: np.ndarray  # (B, h, w)


class TileReader:
    """Reads, aligns and normalises tiles of a scene (through :class:`~engine.inputs.reader.PairReader`).

    Args:
        optical_path, sar_path: input rasters (any CRS/resolution; warped onto ``grid``); no
            optical raster (None) for a SAR-only model.
        grid: the model grid.
        optical_bands, sar_bands: 1-based bands feeding the networks.
        preprocessor: the student's preprocessing (from the resolved inputs).
        teacher_preprocessor: the teacher's, when it differs from the student's SAR chain.
        cloud_mask: optional raster; pixels at least ``cloud_cut`` mark the optical input as missing.
        teacher_sar_bands: 1-based SAR bands the teacher reads when they are not the student's
            (the VV + VH water expert beside a VV student: ``sar_bands`` then come first).
        cloud_cut: the cloud mask's value from which a pixel is cloud (0.5: any non-zero whole number, or a
            probability from 50 %; :func:`engine.raster.ancillary.check_cloud_mask` decides it).
        nir: the optical's NIR band and limit, flagging pixels no open water is (:mod:`.spectral`).
    """

    def __init__(
        self,
        optical_path: Optional[PathLike],
        sar_path: PathLike,
        grid: Grid,
        optical_bands: Sequence[int],
        sar_bands: Sequence[int],
        preprocessor: InputPreprocessor,
        teacher_preprocessor: Optional[InputPreprocessor] = None,
        cloud_mask: Optional[PathLike] = None,
        teacher_sar_bands: Sequence[int] = (),
        cloud_cut: float = 0.5,
        nir: Optional[NirEvidence] = None,
    ) -> None:
        chains = [preprocessor] + ([teacher_preprocessor] if teacher_preprocessor is not None else [])
        read, channels = list(sar_bands), None
        if teacher_sar_bands and tuple(teacher_sar_bands) != tuple(sar_bands):
            if teacher_preprocessor is None:
                raise ValueError("a teacher reading other SAR bands than the student needs its own preprocessor")
            read += [b for b in teacher_sar_bands if b not in read]
            channels = [tuple(range(len(sar_bands))), tuple(read.index(b) for b in teacher_sar_bands)]
        self.pair = PairReader(optical_path, sar_path, grid, optical_bands, read, chains, cloud_mask, channels,
                               cloud_cut)
        self.has_teacher_chain = teacher_preprocessor is not None
        self.grid, self.optical_path, self.nir = grid, optical_path, nir

    def read_region(self, x0: int, y0: int, width: int, height: int, fill: bool = True) -> Tuple:
        """(optical, sar, teacher_sar or None, flags) of a grid region, preprocessed.

        ``fill=False`` leaves missing SAR as NaN (for regions cut into tiles, each filled alone).
        """
        window = self.pair.read(x0, y0, width, height)
        optical, sar = window.optical, window.sar[0]
        if optical is None:  # a SAR-only model: zero optical bands, never "missing"
            optical = np.zeros((0,) + sar.shape[1:], np.float32)
        teacher_sar = window.sar[1] if self.has_teacher_chain else None
        finite_o, finite_s = np.isfinite(optical), np.isfinite(sar)
        flags = np.where(finite_o.all(axis=0), OPTICAL_VALID, 0).astype(np.uint8)
        flags |= np.where(finite_s.all(axis=0), SAR_VALID, 0).astype(np.uint8)
        if self.nir is not None:
            flags |= self.nir.flags(self.optical_path, self.grid, x0, y0, width, height)
        # one pass per array (np.nan_to_num makes three: NaN, +inf, -inf)
        optical[~finite_o] = 0.0
        if fill:
            sar = fill_sar_nodata(sar)
            teacher_sar = fill_sar_nodata(teacher_sar) if teacher_sar is not None else None
        return optical, sar, teacher_sar, flags

    def read_tile(self, tile: Tile) -> Tuple:
        """(optical, sar, teacher_sar or None, flags) of one tile."""
        return self.read_region(tile.x0, tile.y0, tile.width, tile.height)

    def read(self, tiles: Sequence[Tile]) -> TileBatch:
        """Read a batch of equally sized tiles.

        Tiles of one tile row are read and preprocessed as one region and then cut apart: the
        preprocessing is local (halo-bounded), so the result equals tile-by-tile reading, with
        overlaps and compressed source blocks decoded once instead of once per tile.
        """
        parts: dict = {}
        for row in sorted({t.y0 for t in tiles}):
            group = [t for t in tiles if t.y0 == row]
            x0, x1 = min(t.x0 for t in group), max(t.x1 for t in group)
            if (x1 - x0) > 2 * sum(t.width for t in group):  # far apart: read separately
                for t in group:
                    parts[t.index] = self.read_tile(t)
                continue
            optical, sar, teacher_sar, flags = self.read_region(x0, row, x1 - x0, group[0].height, fill=False)
            for t in group:  # filled tile by tile, so the result equals reading each tile alone
                cut = np.s_[..., t.x0 - x0 : t.x1 - x0]
                parts[t.index] = (optical[cut], fill_sar_nodata(sar[cut]),
                                  fill_sar_nodata(teacher_sar[cut]) if teacher_sar is not None else None, flags[cut])
        ordered = [parts[t.index] for t in tiles]
        teacher = np.stack([p[2] for p in ordered]) if self.has_teacher_chain else None
        return TileBatch(
            list(tiles),
            np.stack([p[0] for p in ordered]),
            np.stack([p[1] for p in ordered]),
            teacher,
            np.stack([p[3] for p in ordered]),
        )
