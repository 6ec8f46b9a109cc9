"""Tiling plan for large scenes: overlapping tiles, AOI selection, processing order.

Tiles have one size for the whole scene (the last tile of a row or column is shifted back
inside the scene instead of being cropped), so every batch stacks without padding. Tiles
are ordered in vertical strips, row by row inside a strip: the set of partially blended
pixels then stays a narrow band whose size does not depend on the scene's width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Tile:
    """One network input window on the target grid (pixel offsets and size)."""

    index: int
    col: int  # position in the tile lattice
    row: int
    x0: int  # window on the grid
    y0: int
    width: int
    height: int

    @property
    def x1(self) -> int:
        return self.x0 + self.width

    @property
    def y1(self) -> int:
        return self.y0 + self.height


def tile_starts(length: int, tile: int, stride: int) -> List[int]:
    """Start offsets of tiles of size ``min(tile, length)`` covering ``[0, length)``.

    The last start is moved back to ``length - tile`` so no tile leaves the scene.
    """
    if length <= tile:
        return [0]
    n = math.ceil((length - tile) / stride) + 1
    return sorted({min(i * stride, length - tile) for i in range(n)})


@dataclass
class TilePlan:
    """The tiles to compute over a ``width`` x ``height`` grid.

    Attributes:
        width, height: grid size in pixels.
        tile_size: requested tile edge; actual tiles are ``min(tile_size, dimension)``.
        overlap: pixels shared by neighbouring tiles (the blend ramp width).
        tiles: selected tiles in processing order.
        total: tiles in the full lattice before AOI selection.
    """

    width: int
    height: int
    tile_size: int
    overlap: int
    tiles: List[Tile]
    total: int

    @property
    def tile_shape(self) -> Tuple[int, int]:
        """(height, width) shared by every tile."""
        return min(self.tile_size, self.height), min(self.tile_size, self.width)

    @property
    def stride(self) -> int:
        return self.tile_size - self.overlap

    def batches(self, batch_size: int) -> Iterator[List[Tile]]:
        """The tiles in processing order, ``batch_size`` at a time."""
        return batched(self.tiles, batch_size)


def plan_tiles(
    width: int,
    height: int,
    tile_size: int = 512,
    overlap: int = 64,
    keep: Optional[Callable[[int, int, int, int], bool]] = None,
    strip_width: int = 2048,
) -> TilePlan:
    """Plan overlapping tiles over a grid.

    Args:
        width, height: grid size in pixels.
        tile_size: tile edge in pixels.
        overlap: pixels shared by neighbouring tiles; must be below ``tile_size / 2`` so that
            only direct neighbours overlap and each ramp meets exactly one other.
        keep: optional ``keep(x0, y0, x1, y1) -> bool``; tiles for which it returns False
            (e.g. outside the area of interest) are not computed.
        strip_width: approximate width in pixels of the vertical strips that set the order.

    Raises:
        ValueError: sizes that cannot be tiled.
    """
    if width < 1 or height < 1:
        raise ValueError(f"cannot tile an empty grid of {width}x{height} pixels")
    if tile_size < 16:
        raise ValueError(f"tile size must be at least 16 pixels, got {tile_size}")
    if overlap < 0 or 2 * overlap >= tile_size:
        raise ValueError(
            f"overlap must be between 0 and half the tile size ({tile_size // 2 - 1}), got {overlap}"
        )
    stride = tile_size - overlap
    tw, th = min(tile_size, width), min(tile_size, height)
    xs, ys = tile_starts(width, tile_size, stride), tile_starts(height, tile_size, stride)
    per_strip = max(1, round(strip_width / stride))
    tiles: List[Tile] = []
    for first in range(0, len(xs), per_strip):
        for r, y in enumerate(ys):
            for c in range(first, min(first + per_strip, len(xs))):
                x = xs[c]
                if keep is None or keep(x, y, x + tw, y + th):
                    tiles.append(Tile(len(tiles), c, r, x, y, tw, th))
    return TilePlan(width, height, tile_size, overlap, tiles, len(xs) * len(ys))


def batched(items: Iterable[T], size: int) -> Iterator[List[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    chunk: List[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def cuts(tiles: Sequence[Tile], axis: str, length: int) -> List[int]:
    """Sorted unique tile edges along ``axis`` ("x" or "y"), including 0 and ``length``."""
    edges = {0, length}
    for t in tiles:
        a, b = (t.x0, t.x1) if axis == "x" else (t.y0, t.y1)
        edges.update((a, b))
    return sorted(edges)
