"""A torch ``Dataset`` reading manifest patches by window from the aligned rasters.

Optical and SAR are read onto the label raster's grid (warped per window when their grid
differs), with the preprocessor's halo so the Lee filter sees the same neighbourhood as on
the whole raster, then normalised. Pixels where either input is NaN/nodata get input 0 and
label 255, so they never count in a loss.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from rasterio.windows import Window
from torch.utils.data import Dataset

from ..preprocess.pipeline import InputPreprocessor
from ..raster.grid import grid_of, read_on_grid
from ..raster.io import read_bands
from .augment import AugmentConfig
from .augment import augment as augment_patch

PathLike = Union[str, Path]


class PatchDataset(Dataset):
    """Patches of one split of a manifest (see :func:`engine.data.patches.build_manifest`).

    Args:
        optical_path: optical raster (any grid; warped onto the label grid per window).
        sar_path: SAR raster (likewise).
        label_path: label raster whose grid the manifest windows refer to.
        manifest: the manifest dict.
        split: ``"train"``, ``"val"`` or ``"test"``.
        preprocessor: feature chains and normalisation shared with inference.
        augment: apply :func:`engine.data.augment.augment` (training split).
        seed: kept for reproducibility records; random draws use torch's generator.
        optical_bands: 1-based optical bands, in the model's order.
        sar_bands: 1-based SAR bands.
        ignore_index: label value of unlabelled pixels.
    """

    def __init__(
        self,
        optical_path: PathLike,
        sar_path: PathLike,
        label_path: PathLike,
        manifest: Dict[str, Any],
        split: str,
        preprocessor: InputPreprocessor,
        augment: bool = False,
        seed: int = 42,
        optical_bands: Sequence[int] = (1, 2, 3),
        sar_bands: Sequence[int] = (1,),
        ignore_index: int = 255,
        augment_cfg: Optional[AugmentConfig] = None,
    ) -> None:
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {split!r}")
        self.optical_path, self.sar_path, self.label_path = Path(optical_path), Path(sar_path), Path(label_path)
        self.grid = grid_of(label_path)
        if (self.grid.width, self.grid.height) != (manifest.get("width", self.grid.width),
                                                   manifest.get("height", self.grid.height)):
            raise ValueError(f"{label_path}: its size differs from the manifest's; rebuild the manifest")
        self.patches: List[Dict[str, Any]] = [p for p in manifest["patches"] if p["split"] == split]
        self.split = split
        self.preprocessor = preprocessor
        self.augment = augment
        self.augment_cfg = augment_cfg or AugmentConfig()
        self.seed = seed
        self.optical_bands = tuple(optical_bands)
        self.sar_bands = tuple(sar_bands)
        self.ignore_index = ignore_index

    def __len__(self) -> int:
        return len(self.patches)

    def read(self, window: Window) -> Dict[str, np.ndarray]:
        """Normalised optical, SAR (NaN kept) and the raw label of one grid window."""
        h = self.preprocessor.halo
        grown = Window(window.col_off - h, window.row_off - h, window.width + 2 * h, window.height + 2 * h)
        optical_raw = read_on_grid(self.optical_path, self.optical_bands, self.grid, grown)
        sar_raw = read_on_grid(self.sar_path, self.sar_bands, self.grid, grown)
        optical, sar = self.preprocessor(optical_raw, sar_raw)
        label = read_bands(self.label_path, (1,), window)[0]
        label = np.where(np.isnan(label), self.ignore_index, label).astype(np.int64)
        return {"optical": optical, "sar": sar, "label": label}

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        col, row, w, h = self.patches[index]["window"]
        data = self.read(Window(col, row, w, h))
        invalid = np.isnan(data["optical"]).any(0) | np.isnan(data["sar"]).any(0)
        label = data["label"]
        label[invalid] = self.ignore_index
        optical = torch.from_numpy(np.nan_to_num(data["optical"], nan=0.0).astype(np.float32))
        sar = torch.from_numpy(np.nan_to_num(data["sar"], nan=0.0).astype(np.float32))
        target = torch.from_numpy(label)
        if self.augment:
            optical, sar, target = augment_patch(optical, sar, target, self.augment_cfg, self.ignore_index)
        return {"optical": optical, "sar": sar, "label": target}
