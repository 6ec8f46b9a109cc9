"""Gathers finished cells into whole GeoTIFF blocks before they are written.

Cells follow tile edges; GeoTIFF blocks follow a fixed lattice. Writing only complete,
aligned blocks means each compressed block is encoded once (no read-back, no file growth)
and GDAL's block cache never has to hold half-written blocks.
"""

from __future__ import annotations

from typing import Dict, Iterable, Iterator, List, Tuple

import numpy as np

Rect = Tuple[int, int, int, int]  # x0, y0, x1, y1


class BlockAssembler:
    """Buffers products per output block and yields each block once all its cells arrived.

    Args:
        width, height: grid size.
        block: block edge in pixels (the GeoTIFF tile size).
        cells: rectangles of every cell that will arrive (from the blend accumulator).
        layout: ``{key: (bands, dtype, nodata)}`` of the product arrays.
    """

    def __init__(
        self,
        width: int,
        height: int,
        block: int,
        cells: Iterable[Rect],
        layout: Dict[str, Tuple[int, str, float]],
    ) -> None:
        self.width, self.height, self.block, self.layout = width, height, block, layout
        self._pending: Dict[Tuple[int, int], int] = {}
        for rect in cells:
            for key in self._blocks_of(rect):
                self._pending[key] = self._pending.get(key, 0) + 1
        self._buffers: Dict[Tuple[int, int], Dict[str, np.ndarray]] = {}
        self.peak_buffers = 0

    @property
    def blocks_total(self) -> int:
        return len(self._pending)

    def _blocks_of(self, rect: Rect) -> Iterator[Tuple[int, int]]:
        x0, y0, x1, y1 = rect
        b = self.block
        for by in range(y0 // b, (y1 - 1) // b + 1):
            for bx in range(x0 // b, (x1 - 1) // b + 1):
                yield bx, by

    def block_rect(self, key: Tuple[int, int]) -> Rect:
        bx, by = key
        b = self.block
        return bx * b, by * b, min((bx + 1) * b, self.width), min((by + 1) * b, self.height)

    def add(
        self, x0: int, y0: int, arrays: Dict[str, np.ndarray]
    ) -> List[Tuple[int, int, Dict[str, np.ndarray]]]:
        """Add one cell's products (arrays (bands, h, w)) placed at (x0, y0).

        Returns:
            ``(x0, y0, arrays)`` of every block this cell completed.
        """
        first = next(iter(arrays.values()))
        h, w = first.shape[-2:]
        done = []
        for key in self._blocks_of((x0, y0, x0 + w, y0 + h)):
            bx0, by0, bx1, by1 = self.block_rect(key)
            buf = self._buffers.get(key)
            if buf is None:
                buf = self._buffers[key] = {
                    k: np.full((n, by1 - by0, bx1 - bx0), nodata, dtype=dtype)
                    for k, (n, dtype, nodata) in self.layout.items()
                }
            ix0, iy0 = max(x0, bx0), max(y0, by0)
            ix1, iy1 = min(x0 + w, bx1), min(y0 + h, by1)
            for k, dst in buf.items():
                dst[:, iy0 - by0 : iy1 - by0, ix0 - bx0 : ix1 - bx0] = arrays[k][
                    :, iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0
                ]
            self._pending[key] -= 1
            if self._pending[key] == 0:
                done.append((bx0, by0, self._buffers.pop(key)))
        self.peak_buffers = max(self.peak_buffers, len(self._buffers))
        return done
