"""Connected components of a mask computed window by window, exact across window borders.

Each window is labelled on its own (scipy), its components get global ids, and only the
labels on the window's four edges are kept. Components that touch across a window border are
then merged with a graph connected-components pass over those edge pairs. Memory is the edge
labels plus a few numbers per component, never the whole mask, and the result equals labelling
the whole mask at once. Per component we keep its size and whether it holds a seed pixel,
which is what region growing and blob-size rules need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import numpy as np
from rasterio.windows import Window
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..progress import NULL_PROGRESS, Progress
from ..raster.io import iter_windows

MaskFn = Callable[[Window], Tuple[np.ndarray, np.ndarray]]
_STRUCTURES = {4: ndimage.generate_binary_structure(2, 1), 8: np.ones((3, 3), dtype=bool)}


def label_window(mask: np.ndarray, connectivity: int = 8) -> Tuple[np.ndarray, int]:
    """Label a boolean mask with 4- or 8-connectivity; returns (int64 labels, count)."""
    if connectivity not in _STRUCTURES:
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    labels, n = ndimage.label(mask, structure=_STRUCTURES[connectivity])
    return labels.astype(np.int64), int(n)


@dataclass
class StreamedComponents:
    """Global components of a streamed mask: per window id offsets and per component statistics."""

    offsets: Dict[Tuple[int, int], int]
    root: np.ndarray
    size: np.ndarray
    seeded: np.ndarray
    connectivity: int

    def roots(self, window: Window, labels: np.ndarray) -> np.ndarray:
        """Global component (root) of each pixel of a window labelled by :func:`label_window`; -1 = none."""
        offset = self.offsets[(int(window.row_off), int(window.col_off))]
        out = np.full(labels.shape, -1, dtype=np.int64)
        inside = labels > 0
        out[inside] = self.root[labels[inside] + offset]
        return out

    def pixel_stats(self, window: Window, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(component size, component holds a seed) per pixel; (0, False) outside components."""
        r = self.roots(window, labels)
        inside = r >= 0
        size = np.zeros(labels.shape, dtype=np.int64)
        seeded = np.zeros(labels.shape, dtype=bool)
        size[inside] = self.size[r[inside]]
        seeded[inside] = self.seeded[r[inside]]
        return size, seeded


def _edge_pairs(a: np.ndarray, b: np.ndarray, connectivity: int) -> List[np.ndarray]:
    """Pairs of global ids facing each other across a border (rows ``a`` and ``b`` side by side)."""
    cand = [(a, b)]
    if connectivity == 8:
        cand += [(a[:-1], b[1:]), (a[1:], b[:-1])]
    out = []
    for x, y in cand:
        both = (x > 0) & (y > 0)
        if both.any():
            out.append(np.stack([x[both], y[both]]))
    return out


def streamed_components(
    width: int,
    height: int,
    block: int,
    mask_fn: MaskFn,
    connectivity: int = 8,
    progress: Progress = NULL_PROGRESS,
) -> StreamedComponents:
    """Connected components of ``mask_fn``'s member mask over a ``width`` x ``height`` raster.

    Args:
        width, height: raster size.
        block: window size (windows from :func:`engine.raster.io.iter_windows`).
        mask_fn: ``window -> (member, seed)`` boolean arrays of the window's shape.
        connectivity: 4 or 8.
        progress: reported per window; cancel is checked per window.
    """
    offsets: Dict[Tuple[int, int], int] = {}
    edges: Dict[Tuple[int, int], Tuple[np.ndarray, ...]] = {}
    sizes: List[np.ndarray] = [np.zeros(1, np.int64)]
    seeds: List[np.ndarray] = [np.zeros(1, bool)]
    total = 0
    windows = list(iter_windows(width, height, block))
    for i, (win, _) in enumerate(windows):
        progress.check()
        member, seed = mask_fn(win)
        labels, n = label_window(member, connectivity)
        key = (int(win.row_off), int(win.col_off))
        offsets[key] = total
        sizes.append(np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.int64))
        seeds.append(np.bincount(labels[seed & member], minlength=n + 1)[1:] > 0)
        glob = np.where(labels > 0, labels + total, 0)
        edges[key] = (glob[0].copy(), glob[-1].copy(), glob[:, 0].copy(), glob[:, -1].copy())
        total += n
        progress.report((i + 1) / len(windows), "connected components")
    rows = sorted({r for r, _ in edges})
    cols = sorted({c for _, c in edges})
    pairs: List[np.ndarray] = []
    for r_prev, r in zip(rows, rows[1:]):  # horizontal borders: full-width rows, corners included
        above = np.concatenate([edges[(r_prev, c)][1] for c in cols])
        below = np.concatenate([edges[(r, c)][0] for c in cols])
        pairs += _edge_pairs(above, below, connectivity)
    for c_prev, c in zip(cols, cols[1:]):  # vertical borders: full-height columns
        left = np.concatenate([edges[(r, c_prev)][3] for r in rows])
        right = np.concatenate([edges[(r, c)][2] for r in rows])
        pairs += _edge_pairs(left, right, connectivity)
    ij = np.concatenate(pairs, axis=1) if pairs else np.zeros((2, 0), np.int64)
    graph = coo_matrix((np.ones(ij.shape[1], np.int8), (ij[0], ij[1])), shape=(total + 1, total + 1))
    n_roots, root = connected_components(graph, directed=False)
    size_per_id, seed_per_id = np.concatenate(sizes), np.concatenate(seeds)
    size = np.bincount(root, weights=size_per_id, minlength=n_roots).astype(np.int64)
    seeded = np.bincount(root, weights=seed_per_id.astype(np.float64), minlength=n_roots) > 0
    return StreamedComponents(offsets, root.astype(np.int64), size, seeded, connectivity)
