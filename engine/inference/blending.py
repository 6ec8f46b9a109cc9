"""Seamless blending of overlapping tile probabilities with bounded memory.

Each tile's probabilities are multiplied by a smooth weight that ramps from ~0 to 1 across
the overlap on every side that has a neighbour (the outer quarter of the overlap is dropped,
then a raised-cosine rise: two facing ramps sum to one, so the blend is a partition of
unity). Accumulation is kept per *cell*: the grid is cut at every tile edge, so each cell
is covered by a fixed set of tiles. A cell is released as soon as its last tile has been
added, which keeps only a thin band of pixels in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from .tiling import Tile, TilePlan, cuts

RAMPS = ("cosine", "linear", "none")


def ramp(length: int, width: int, kind: str = "cosine") -> np.ndarray:
    """Rising weight profile of ``length`` samples that reaches one after ``width`` samples.

    The first quarter of ``width`` is (almost) zero: a network sees zero padding near a tile
    edge, so those pixels are taken from the neighbour instead. The middle half rises
    (raised cosine or linear), the last quarter is one. Mirrored profiles of two tiles that
    overlap by ``width`` sum to one. Weights stay strictly positive so a pixel that only one
    tile covers (e.g. next to a skipped tile) keeps that tile's value.
    """
    if kind not in RAMPS:
        raise ValueError(f"blend ramp must be one of {RAMPS}, got {kind!r}")
    out = np.ones(length, dtype=np.float32)
    width = min(width, length)
    if width <= 0 or kind == "none":
        return out
    margin, rise = width // 4, width - 2 * (width // 4)
    t = (np.arange(rise, dtype=np.float64) + 0.5) / rise  # pixel centres, never 0 or 1
    out[:margin] = 0.0
    out[margin : margin + rise] = np.sin(0.5 * np.pi * t) ** 2 if kind == "cosine" else t
    return np.maximum(out, 1e-6)


def tile_weight(tile: Tile, plan: TilePlan, kind: str = "cosine") -> np.ndarray:
    """Weight (h, w) of a tile: ramps on sides facing another tile, flat at the scene border."""

    def profile(start: int, size: int, total: int) -> np.ndarray:
        w = np.ones(size, dtype=np.float32)
        if start > 0:
            w *= ramp(size, plan.overlap, kind)
        if start + size < total:
            w *= ramp(size, plan.overlap, kind)[::-1]
        return w

    wy = profile(tile.y0, tile.height, plan.height)
    wx = profile(tile.x0, tile.width, plan.width)
    return np.outer(wy, wx).astype(np.float32)


@dataclass
class Cell:
    """A finished rectangle of the grid with its blended values.

    Attributes:
        x0, y0: top-left pixel on the grid.
        probs: (K, h, w) blended class probabilities.
        water: (h, w) blended teacher water probability, or None without a teacher.
        flags: (h, w) uint8 input validity bits (see :mod:`.products`).
    """

    x0: int
    y0: int
    probs: np.ndarray
    water: Optional[np.ndarray]
    flags: np.ndarray

    @property
    def width(self) -> int:
        return self.flags.shape[1]

    @property
    def height(self) -> int:
        return self.flags.shape[0]


class _Acc:
    __slots__ = ("sums", "weight", "flags", "pending")

    def __init__(self, channels: int, h: int, w: int, pending: int) -> None:
        self.sums = np.zeros((channels, h, w), dtype=np.float32)
        self.weight = np.zeros((h, w), dtype=np.float32)
        self.flags = np.zeros((h, w), dtype=np.uint8)
        self.pending = pending


class BlendAccumulator:
    """Blends tile outputs into cells and hands back each cell once all its tiles are in.

    Args:
        plan: the tiles that will be added (each exactly once, in any order).
        num_classes: K, the student's class count.
        with_water: whether a teacher water probability is blended too.
        kind: ramp shape, one of :data:`RAMPS`.
    """

    def __init__(self, plan: TilePlan, num_classes: int, with_water: bool, kind: str = "cosine") -> None:
        self.plan, self.k, self.with_water, self.kind = plan, num_classes, with_water, kind
        self.xc = cuts(plan.tiles, "x", plan.width)
        self.yc = cuts(plan.tiles, "y", plan.height)
        self._xi = {v: i for i, v in enumerate(self.xc)}
        self._yi = {v: i for i, v in enumerate(self.yc)}
        self._pending: Dict[Tuple[int, int], int] = {}
        for t in plan.tiles:
            for key in self._cells_of(t):
                self._pending[key] = self._pending.get(key, 0) + 1
        self._live: Dict[Tuple[int, int], _Acc] = {}
        self._weights: Dict[Tuple[int, int, int, int], np.ndarray] = {}
        self.peak_live_pixels = 0

    def _cells_of(self, t: Tile) -> List[Tuple[int, int]]:
        ix = range(self._xi[t.x0], self._xi[t.x1])
        iy = range(self._yi[t.y0], self._yi[t.y1])
        return [(i, j) for j in iy for i in ix]

    def _weight(self, t: Tile) -> np.ndarray:
        # weights depend only on which sides touch the border: a handful of distinct arrays
        key = (t.x0 > 0, t.y0 > 0, t.x1 < self.plan.width, t.y1 < self.plan.height)
        if key not in self._weights:
            self._weights[key] = tile_weight(t, self.plan, self.kind)
        return self._weights[key]

    @property
    def cells_total(self) -> int:
        return len(self._pending)

    def cell_rects(self) -> List[Tuple[int, int, int, int]]:
        """(x0, y0, x1, y1) of every cell some tile covers: what :meth:`add` will release."""
        return [(self.xc[i], self.yc[j], self.xc[i + 1], self.yc[j + 1]) for i, j in self._pending]

    def add(
        self, tile: Tile, probs: np.ndarray, water: Optional[np.ndarray], flags: np.ndarray
    ) -> List[Cell]:
        """Add one tile's outputs; return the cells this tile completed.

        Args:
            tile: a tile of the plan.
            probs: (K, h, w) class probabilities of the tile.
            water: (h, w) teacher water probability, or None.
            flags: (h, w) uint8 validity bits of the tile's inputs.
        """
        w = self._weight(tile)
        done: List[Cell] = []
        channels = self.k + (1 if self.with_water else 0)
        for i, j in self._cells_of(tile):
            x0, x1, y0, y1 = self.xc[i], self.xc[i + 1], self.yc[j], self.yc[j + 1]
            acc = self._live.get((i, j))
            if acc is None:
                acc = self._live[(i, j)] = _Acc(channels, y1 - y0, x1 - x0, self._pending[(i, j)])
            ty, tx = slice(y0 - tile.y0, y1 - tile.y0), slice(x0 - tile.x0, x1 - tile.x0)
            ww = w[ty, tx]
            acc.sums[: self.k] += probs[:, ty, tx] * ww
            if self.with_water:
                acc.sums[self.k] += water[ty, tx] * ww
            acc.weight += ww
            acc.flags |= flags[ty, tx]
            acc.pending -= 1
            if acc.pending == 0:
                del self._live[(i, j)]
                acc.sums /= acc.weight
                done.append(
                    Cell(x0, y0, acc.sums[: self.k], acc.sums[self.k] if self.with_water else None, acc.flags)
                )
        live = sum(a.weight.size for a in self._live.values())
        self.peak_live_pixels = max(self.peak_live_pixels, live)
        return done

    @property
    def live_cells(self) -> int:
        return len(self._live)
