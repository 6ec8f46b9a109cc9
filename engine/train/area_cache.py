"""Preprocessed imagery of a fine-tuning area held in memory, and random crops drawn from it.

Interactive fine-tuning reads the imagery once through the input contract's window reader
(:mod:`engine.inputs.reader`), so every optimiser step costs only the networks:

* **canvas** tiles: the area around the training polygons (the whole area when it is small),
  with the training labels; crops for training are cut from them;
* **held-out** tiles: each held-out polygon group with a margin of context, with its labels.
  Their footprint is cut out of the canvas (inputs 0, labels ignored, no distillation), so no
  training crop ever contains a held-out pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from rasterio.windows import Window

from ..inputs.reader import PairReader
from ..preprocess.nodata import fill_sar_nodata
from ..progress import NULL_PROGRESS, Progress
from ..raster.grid import Grid
from ..raster.labels import rasterize_window
from .polygon_split import Box, Polygon

IGNORE = 255
WHOLE_AREA_PIXELS = 4_000_000  # an area this small is read whole, as one canvas tile
BLOCK = 512  # canvas block edge for larger areas


@dataclass
class Tile:
    """Network inputs of one grid box (missing optical 0, missing SAR its nearest valid pixel), its
    labels and validity."""

    box: Box
    split: str  # "canvas" (training) or "val"
    optical: np.ndarray  # (Co, h, w); Co is 0 on the SAR-only path
    sar: np.ndarray  # (Cs, h, w), the student's values (the teacher's on the SAR-only path)
    teacher_sar: np.ndarray  # (Cs, h, w), the teacher's values (the same array when equal)
    valid: np.ndarray  # (h, w) bool: inputs present and not held out
    label: np.ndarray  # (h, w) int64, 255 unlabelled
    teacher_water: Optional[np.ndarray] = None  # (h, w) teacher's water probability, once computed
    start_probs: Optional[np.ndarray] = None  # (K, h, w) float16, the starting student's, when kept
    teacher_start: Optional[np.ndarray] = None  # (2, h, w) float16, the starting teacher's, when kept

    @property
    def labelled(self) -> int:
        return int((self.label != IGNORE).sum())


def grow(box: Box, margin: int, grid: Grid) -> Box:
    return (max(box[0] - margin, 0), max(box[1] - margin, 0), min(box[2] + margin, grid.width),
            min(box[3] + margin, grid.height))


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def union(polygons: Sequence[Polygon]) -> Box:
    return (min(p.box[0] for p in polygons), min(p.box[1] for p in polygons),
            max(p.box[2] for p in polygons), max(p.box[3] for p in polygons))


def read_tile(reader: PairReader, grid: Grid, box: Box, split: str, polygons: Sequence[Polygon]) -> Tile:
    """Read one box through ``reader`` and rasterise ``polygons`` onto it."""
    c0, r0, c1, r1 = box
    data = reader.read(c0, r0, c1 - c0, r1 - r0)
    sar = data.sar[0]
    optical = data.optical if data.optical is not None else np.zeros((0,) + sar.shape[1:], np.float32)
    teacher = data.sar[1] if len(data.sar) > 1 else sar
    valid = np.isfinite(optical).all(0) & np.isfinite(sar).all(0)  # SAR alone when there is no optical
    by_class: Dict[int, List[dict]] = {}
    for p in polygons:
        by_class.setdefault(p.class_id, []).append(p.geometry)
    label, _ = rasterize_window(by_class, grid, Window(c0, r0, c1 - c0, r1 - r0), IGNORE)
    label = np.where(valid, label, IGNORE).astype(np.int64)
    optical = np.nan_to_num(optical, nan=0.0).astype(np.float32)  # blank optical means "none"
    sar_filled = fill_sar_nodata(sar)  # as at inference
    teacher_filled = sar_filled if teacher is sar else fill_sar_nodata(teacher)
    return Tile(box, split, optical, sar_filled, teacher_filled, valid, label)


def _cut_out(tile: Tile, held: Sequence[Box]) -> None:
    """Blank held-out boxes inside a canvas tile: no input, no label, no distillation. The SAR
    there becomes nodata, filled from outside the boxes as at inference."""
    cut = False
    for h in held:
        if not _overlaps(tile.box, h):
            continue
        rs = slice(max(h[1] - tile.box[1], 0), min(h[3], tile.box[3]) - tile.box[1])
        cs = slice(max(h[0] - tile.box[0], 0), min(h[2], tile.box[2]) - tile.box[0])
        tile.optical[:, rs, cs] = 0.0
        for a in (tile.sar, tile.teacher_sar):
            a[:, rs, cs] = np.nan
        tile.valid[rs, cs] = False
        tile.label[rs, cs] = IGNORE
        cut = True
    if cut:
        shared = tile.teacher_sar is tile.sar
        tile.sar[...] = fill_sar_nodata(tile.sar)
        if not shared:
            tile.teacher_sar[...] = fill_sar_nodata(tile.teacher_sar)


def canvas_boxes(grid: Grid, area: Box, train: Sequence[Box], context_blocks: int, seed: int) -> List[Box]:
    """The area whole when small; else the blocks touching the training boxes, plus
    ``context_blocks`` random other blocks of the area (unlabelled context)."""
    c0, r0, c1, r1 = area
    if (c1 - c0) * (r1 - r0) <= WHOLE_AREA_PIXELS:
        return [area]
    starts = [(c, r) for r in range(r0, r1, BLOCK) for c in range(c0, c1, BLOCK)]
    blocks = [(c, r, min(c + BLOCK, c1), min(r + BLOCK, r1)) for c, r in starts]
    touched = [b for b in blocks if any(_overlaps(b, t) for t in train)]
    rest = [b for b in blocks if b not in touched]
    order = np.random.default_rng(seed).permutation(len(rest))[:context_blocks]
    return touched + [rest[i] for i in order]


def build_cache(
    reader: PairReader,
    grid: Grid,
    train: Sequence[Polygon],
    val_groups: Sequence[Sequence[Polygon]],
    crop: int,
    val_margin: int,
    area: Optional[Box] = None,
    context_blocks: int = 4,
    seed: int = 0,
    progress: Progress = NULL_PROGRESS,
    focus: Sequence[Box] = (),
) -> List[Tile]:
    """Canvas tiles with the training labels (held-out boxes cut out) and held-out tiles.

    Args:
        reader: the window reader of the resolved inputs (student's and teacher's chains).
        grid: the model grid.
        train: the training polygons; ``val_groups``: the held-out polygons per group.
        crop: training crop edge (canvas blocks reach half a crop around training polygons).
        val_margin: context kept (and cut out of the canvas) around each held-out group.
        area: ``(col0, row0, col1, row1)`` the canvas is drawn from (default the whole grid).
        context_blocks: unlabelled blocks added when the area is too large to read whole.
        focus: boxes read like the training polygons' surroundings when the area is too large
            (a label-free adaptation's blocks where water meets land).
    """
    area = area or (0, 0, grid.width, grid.height)
    held = [grow(union(g), val_margin, grid) for g in val_groups]
    train_boxes = [grow(p.box, crop // 2, grid) for p in train] + list(focus)
    jobs: List[Tuple[Box, str, Sequence[Polygon]]] = [
        (b, "canvas", [p for p in train if _overlaps(p.box, b)])
        for b in canvas_boxes(grid, area, train_boxes, context_blocks, seed)
    ]
    jobs += [(h, "val", g) for h, g in zip(held, val_groups)]
    tiles = []
    for n, (box, split, polygons) in enumerate(jobs):
        progress.check()
        tile = read_tile(reader, grid, box, split, polygons)
        if split == "canvas":
            _cut_out(tile, held)
        tiles.append(tile)
        progress.report((n + 1) / len(jobs), f"reading the area: tile {n + 1}/{len(jobs)}")
    return tiles


class CropSampler:
    """Random crops for training from the canvas: centred on labelled pixels, or anywhere
    (unlabelled context, for distillation); flipped and rotated by multiples of 90°."""

    def __init__(self, tiles: Sequence[Tile], crop: int, seed: int) -> None:
        self.canvas = [t for t in tiles if t.split == "canvas"]
        self.labelled = [t for t in self.canvas if t.labelled]
        if not self.labelled:
            raise ValueError("no labelled training pixel: the polygons cover no valid pixel of the imagery")
        self.crop = crop
        self.rng = np.random.default_rng(seed)
        self.weights = np.array([t.labelled for t in self.labelled], np.float64)
        self.weights /= self.weights.sum()
        self.coords = [np.argwhere(t.label != IGNORE) for t in self.labelled]

    def _cut(self, tile: Tile, row: int, col: int) -> Dict[str, np.ndarray]:
        h, w = tile.label.shape
        k = self.crop
        r0 = min(max(row - k // 2, 0), max(h - k, 0))
        c0 = min(max(col - k // 2, 0), max(w - k, 0))
        rs, cs = slice(r0, min(r0 + k, h)), slice(c0, min(c0 + k, w))
        out = {}
        for name, fill in (("optical", 0.0), ("sar", 0.0), ("teacher_sar", 0.0), ("label", IGNORE),
                           ("teacher_water", np.nan), ("start_probs", np.nan), ("teacher_start", np.nan),
                           ("valid", False)):
            a = getattr(tile, name)
            if a is None:
                continue
            part = a[..., rs, cs]
            if part.shape[-2:] != (k, k):  # an area smaller than a crop: pad
                pad = [(0, 0)] * (part.ndim - 2) + [(0, k - part.shape[-2]), (0, k - part.shape[-1])]
                part = np.pad(part, pad, constant_values=fill)
            out[name] = part
        return out

    def batch(self, labelled: int, context: int = 0) -> Dict[str, torch.Tensor]:
        """``labelled`` crops centred on training labels, then ``context`` crops anywhere."""
        items = []
        for n in range(labelled + context):
            if n >= labelled:
                tile = self.canvas[self.rng.integers(len(self.canvas))]
                h, w = tile.label.shape
                item = self._cut(tile, int(self.rng.integers(h)), int(self.rng.integers(w)))
            else:
                i = int(self.rng.choice(len(self.labelled), p=self.weights))
                row, col = self.coords[i][self.rng.integers(len(self.coords[i]))]
                item = self._cut(self.labelled[i], int(row), int(col))
            k = int(self.rng.integers(4))
            flip = bool(self.rng.integers(2))
            for name, a in item.items():
                a = np.rot90(a, k, axes=(-2, -1))
                item[name] = np.ascontiguousarray(a[..., ::-1] if flip else a)
            items.append(item)
        return {name: torch.from_numpy(np.stack([it[name] for it in items])) for name in items[0]}


def canvas_area(canvas: Sequence[Tile], grid):
    """The grid of the box around the canvas tiles, and its (column, row) offset on ``grid``."""
    from affine import Affine

    from ..raster.grid import Grid

    c0, r0 = min(t.box[0] for t in canvas), min(t.box[1] for t in canvas)
    c1, r1 = max(t.box[2] for t in canvas), max(t.box[3] for t in canvas)
    return Grid(grid.crs_wkt, grid.transform * Affine.translation(c0, r0), c1 - c0, r1 - r0), c0, r0
