"""Stage-2 gate masks and the KD-region-ratio grid as GeoTIFFs over the training area.

The teacher runs block by block over the label grid (with context around each block, so
block edges do not change its answer); each labelled pixel is classed as water-gated,
non-water-gated or not distilled, exactly as the training loss gates it. A coarse raster
gives, per block, the share of gated pixels: where distillation acts on the scene.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from affine import Affine
from rasterio.windows import Window

from ..config import ClassSchema, DistillConfig
from ..inputs.reader import PairReader
from ..losses.distill import gate_masks
from ..preprocess.nodata import fill_sar_nodata
from ..preprocess.pipeline import InputPreprocessor
from ..progress import NULL_PROGRESS, Progress
from ..raster.grid import Grid
from ..raster.io import iter_windows, open_writer, read_bands

NO_GATE, WATER_GATE, NON_WATER_GATE, NODATA = 0, 1, 2, 255


def gate_classes(
    p_water: np.ndarray, label: np.ndarray, schema: ClassSchema, cfg: DistillConfig
) -> np.ndarray:
    """uint8 map: 1 water gate, 2 non-water gate, 0 labelled but not distilled, 255 unlabelled.

    The rule is :func:`engine.losses.distill.gate_masks`, the one training uses.
    """
    valid = label != schema.ignore_index
    m_water, m_non = gate_masks(p_water, label, schema.water_class, cfg, schema.ignore_index)
    out = np.full(label.shape, NO_GATE, dtype=np.uint8)
    out[m_water] = WATER_GATE
    out[m_non] = NON_WATER_GATE
    out[~valid] = NODATA
    return out


def write_gate_rasters(
    teacher: torch.nn.Module,
    preprocessor: InputPreprocessor,
    sar_path: Path,
    sar_bands: Sequence[int],
    label_path: Path,
    grid: Grid,
    schema: ClassSchema,
    cfg: DistillConfig,
    out_dir: Path,
    block: int = 256,
    context: int = 32,
    windows: Optional[List[Tuple[int, int, int, int]]] = None,
    device: torch.device = torch.device("cpu"),
    overwrite: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> Dict[str, object]:
    """Write ``gates.tif`` (label grid) and ``kd_ratio.tif`` (one pixel per block).

    Args:
        teacher: the frozen teacher.
        preprocessor: the teacher's preprocessing of this SAR file (from the resolved inputs).
        sar_path, sar_bands: the SAR raster and its bands.
        label_path: label raster on ``grid`` (255 unlabelled).
        grid: the label grid.
        schema, cfg: classes and gate thresholds.
        out_dir: folder receiving both files.
        block: block edge in pixels (the ratio grid's cell size).
        context: pixels of SAR around each block given to the teacher.
        windows: restrict to these ``(col, row, width, height)`` windows (e.g. patches around
            user polygons); pixels elsewhere stay 255. Default: the whole grid.
        device: where the teacher runs.

    Returns:
        paths and the overall ratios (``kd_ratio``, ``kd_ratio_water``, ``kd_ratio_non_water``
        over the labelled blocks).
    """
    out_dir = Path(out_dir)
    teacher.eval().to(device)
    cells_x, cells_y = -(-grid.width // block), -(-grid.height // block)
    coarse = Grid(grid.crs_wkt, grid.transform * Affine.scale(block), cells_x, cells_y)
    ratio = np.full((3, cells_y, cells_x), np.nan, dtype=np.float32)
    wanted = _block_mask(windows, block, cells_x, cells_y)
    reader = PairReader(None, sar_path, grid, (), sar_bands, [preprocessor])
    totals = np.zeros(3, dtype=np.int64)  # pixels, water gates, non-water gates
    blocks = list(iter_windows(grid.width, grid.height, block))
    gates_path = out_dir / "gates.tif"
    with open_writer(
        gates_path, grid, 1, "uint8", nodata=NODATA, overwrite=overwrite, band_names=["gate"]
    ) as dst:
        for i, (win, _) in enumerate(blocks):
            progress.check()
            cy, cx = int(win.row_off) // block, int(win.col_off) // block
            h, w = int(win.height), int(win.width)
            label = read_bands(label_path, [1], win)[0]
            label = np.where(np.isfinite(label), label, schema.ignore_index).astype(np.int64)
            label = _restrict(label, win, windows, schema.ignore_index)
            if not wanted[cy, cx] or not (label != schema.ignore_index).any():
                dst.write(np.full((1, h, w), NODATA, np.uint8), window=win)
                continue
            sar = reader.read(int(win.col_off), int(win.row_off), w, h, context).sar[0]  # context kept
            sar = fill_sar_nodata(sar)  # as at inference
            with torch.no_grad():
                logits = teacher(torch.from_numpy(sar[None]).to(device)).float()
            p = torch.softmax(logits, 1)[0, 1].cpu().numpy()[context : context + h, context : context + w]
            gates = gate_classes(p, label, schema, cfg)
            dst.write(gates[None], window=win)
            counts = np.array([h * w, (gates == WATER_GATE).sum(), (gates == NON_WATER_GATE).sum()])
            totals += counts
            ratio[:, cy, cx] = [
                (counts[1] + counts[2]) / counts[0],
                counts[1] / counts[0],
                counts[2] / counts[0],
            ]
            progress.report((i + 1) / len(blocks), f"gate masks: block {i + 1}/{len(blocks)}")
    ratio_path = out_dir / "kd_ratio.tif"
    with open_writer(
        ratio_path,
        coarse,
        3,
        "float32",
        nodata=float("nan"),
        overwrite=overwrite,
        band_names=["kd_ratio", "kd_ratio_water", "kd_ratio_non_water"],
    ) as dst:
        dst.write(ratio)
    n = max(int(totals[0]), 1)
    return {
        "gates": str(gates_path),
        "kd_ratio_grid": str(ratio_path),
        "gate_block": block,
        "kd_ratio": float(totals[1] + totals[2]) / n,
        "kd_ratio_water": float(totals[1]) / n,
        "kd_ratio_non_water": float(totals[2]) / n,
    }


def _block_mask(windows, block: int, cells_x: int, cells_y: int) -> np.ndarray:
    if windows is None:
        return np.ones((cells_y, cells_x), dtype=bool)
    mask = np.zeros((cells_y, cells_x), dtype=bool)
    for col, row, w, h in windows:
        mask[row // block : -(-(row + h) // block), col // block : -(-(col + w) // block)] = True
    return mask


def _restrict(label: np.ndarray, win: Window, windows, ignore: int) -> np.ndarray:
    """Keep labels only inside the requested windows (fine-tuning around user polygons)."""
    if windows is None:
        return label
    keep = np.zeros(label.shape, dtype=bool)
    c0, r0 = int(win.col_off), int(win.row_off)
    for col, row, w, h in windows:
        ys = slice(max(row - r0, 0), max(min(row + h - r0, label.shape[0]), 0))
        xs = slice(max(col - c0, 0), max(min(col + w - c0, label.shape[1]), 0))
        keep[ys, xs] = True
    return np.where(keep, label, ignore)
