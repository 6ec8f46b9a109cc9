"""A torch ``Dataset`` reading manifest patches by window from the aligned rasters.

Optical and SAR are read onto the label raster's grid through the input contract's window
reader (:mod:`engine.inputs.reader`), exactly as segmentation reads its tiles. Pixels where
either input is NaN/nodata get input 0 and label 255, so they never count in a loss.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from rasterio.windows import Window
from torch.utils.data import Dataset

from ..inputs.reader import PairReader
from ..preprocess.nodata import fill_sar_nodata
from ..preprocess.pipeline import InputPreprocessor
from ..raster.grid import grid_of
from ..raster.io import read_bands
from .augment import AugmentConfig
from .augment import augment as augment_patch

PathLike = Union[str, Path]


class PatchDataset(Dataset):
    """Patches of one split of a manifest (see :func:`engine.data.patches.build_manifest`).

    Args:
        optical_path: optical raster (any grid; warped onto the label grid per window), or None
            for a SAR-only model (items then hold a zero-band optical tensor).
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
        augment_cfg: augmentation settings.
        teacher_preprocessor: the teacher's SAR chain when it differs from the student's;
            items then hold ``teacher_sar`` too (stage 2 feeds the teacher its own values).
    """

    def __init__(
        self,
        optical_path: Optional[PathLike],
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
        teacher_preprocessor: Optional[InputPreprocessor] = None,
    ) -> None:
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {split!r}")
        # no optical raster (a SAR-only model): items hold a zero-band optical tensor
        self.optical_path = Path(optical_path) if optical_path else None
        self.sar_path, self.label_path = Path(sar_path), Path(label_path)
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
        chains = [preprocessor] + ([teacher_preprocessor] if teacher_preprocessor is not None else [])
        self.reader = PairReader(
            self.optical_path, self.sar_path, self.grid, self.optical_bands, self.sar_bands, chains
        )

    def set_teacher_preprocessor(self, teacher_preprocessor: InputPreprocessor) -> None:
        """Read the teacher's SAR values too (items gain ``teacher_sar``)."""
        self.reader = PairReader(
            self.optical_path, self.sar_path, self.grid, self.optical_bands, self.sar_bands,
            [self.preprocessor, teacher_preprocessor],
        )

    def __len__(self) -> int:
        return len(self.patches)

    def read(self, window: Window) -> Dict[str, np.ndarray]:
        """Normalised optical, SAR (and the teacher's SAR; NaN kept) and the raw label of one window."""
        data = self.reader.read(int(window.col_off), int(window.row_off), int(window.width), int(window.height))
        label = read_bands(self.label_path, (1,), window)[0]
        label = np.where(np.isnan(label), self.ignore_index, label).astype(np.int64)
        optical = data.optical if data.optical is not None else np.zeros((0,) + label.shape, np.float32)
        out = {"optical": optical, "sar": data.sar[0], "label": label}
        if len(data.sar) > 1:
            out["teacher_sar"] = data.sar[1]
        return out

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        col, row, w, h = self.patches[index]["window"]
        data = self.read(Window(col, row, w, h))
        invalid = np.isnan(data["optical"]).any(0) | np.isnan(data["sar"]).any(0)
        label = data["label"]
        label[invalid] = self.ignore_index
        optical = torch.from_numpy(np.nan_to_num(data["optical"], nan=0.0).astype(np.float32))
        sar = torch.from_numpy(fill_sar_nodata(data["sar"]))  # as at inference
        teacher = data.get("teacher_sar")
        if teacher is not None:  # augmented with the student's SAR, as one stack
            sar = torch.cat([sar, torch.from_numpy(fill_sar_nodata(teacher))])
        target = torch.from_numpy(label)
        if self.augment:
            optical, sar, target = augment_patch(optical, sar, target, self.augment_cfg, self.ignore_index)
        item = {"optical": optical, "sar": sar, "label": target}
        if teacher is not None:
            n = len(self.sar_bands)
            item["sar"], item["teacher_sar"] = sar[:n], sar[n:]
        return item
