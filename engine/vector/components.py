"""Connected components of equal class over a class raster read block by block.

Each block is labelled on its own (4-connectivity, one :func:`scipy.ndimage.label` per class
present), every local component gets a global id, and only the ids on the block's four edges
are kept. Components of the same class that touch across a block border are merged by a
graph connected-components pass over those edge pairs, exactly as labelling the whole raster
at once would. Per component we keep its class, pixel count, the sum of the confidence
magnitude, how many of its pixels have a confidence and how many are SAR-only (negative
confidence), and how many blocks it has pieces in (each local component is one piece).

Memory is the edge ids (four lines per block) plus a few numbers per component, never the
raster: a scene of 8192 x 8192 pixels keeps a few MB whatever the block size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
from rasterio.windows import Window
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..progress import NULL_PROGRESS, Progress
from ..raster.io import iter_windows

#: reads ``(classes int64 (h, w), member bool (h, w), confidence float32 (h, w) or None)`` of a window
BlockReader = Callable[[Window], Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]]
FOUR = ndimage.generate_binary_structure(2, 1)


def label_classes(classes: np.ndarray, member: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """4-connected components of equal class among ``member`` pixels.

    Returns:
        (int64 labels, 0 outside members and 1..n inside; int64 class of each label 1..n,
        index 0 unused). Labels are numbered class by class in ascending class order, so the
        result depends only on the arrays.
    """
    labels = np.zeros(classes.shape, np.int64)
    comp_class: List[np.ndarray] = [np.zeros(1, np.int64)]
    n = 0
    if member.any():
        for value in np.unique(classes[member]):
            lab, k = ndimage.label(member & (classes == value), structure=FOUR)
            if k:
                inside = lab > 0
                labels[inside] = lab[inside] + n
                comp_class.append(np.full(k, value, np.int64))
                n += k
    return labels, np.concatenate(comp_class)


@dataclass
class ClassComponents:
    """Global components of a streamed class raster.

    Attributes:
        block: the block size the raster was read with (the same windows must be used again).
        offsets: global id offset of each block's local labels, by (row_off, col_off).
        root: component (root) of each global id; id 0 (background) is root 0.
        cls, pixels, conf_sum, conf_pixels, sar_only, pieces: per root (index 0 unused).
    """

    block: int
    offsets: Dict[Tuple[int, int], int]
    root: np.ndarray
    cls: np.ndarray
    pixels: np.ndarray
    conf_sum: np.ndarray
    conf_pixels: np.ndarray
    sar_only: np.ndarray
    pieces: np.ndarray

    @property
    def count(self) -> int:
        """Number of components (roots other than the background)."""
        return int((self.pixels > 0).sum())

    def roots(self, window: Window, labels: np.ndarray) -> np.ndarray:
        """Root of each pixel of a window labelled by :func:`label_classes`; 0 outside components."""
        offset = self.offsets[(int(window.row_off), int(window.col_off))]
        out = np.zeros(labels.shape, np.int64)
        inside = labels > 0
        out[inside] = self.root[labels[inside] + offset]
        return out


def _edge_pairs(a: np.ndarray, b: np.ndarray, cls: np.ndarray) -> Optional[np.ndarray]:
    """Pairs of global ids of the same class facing each other across a border (4-connectivity)."""
    both = (a > 0) & (b > 0)
    if not both.any():
        return None
    x, y = a[both], b[both]
    same = cls[x] == cls[y]
    return np.stack([x[same], y[same]]) if same.any() else None


def scan_components(
    width: int,
    height: int,
    block: int,
    read: BlockReader,
    progress: Progress = NULL_PROGRESS,
) -> ClassComponents:
    """One streamed pass: components of equal class, exact across block borders, and their statistics.

    Args:
        width, height: raster size.
        block: window edge (windows of :func:`engine.raster.io.iter_windows`).
        read: the block reader (classes, member mask, optional confidence).
        progress: reported and checked per block.
    """
    offsets: Dict[Tuple[int, int], int] = {}
    edges: Dict[Tuple[int, int], Tuple[np.ndarray, ...]] = {}
    stats: Dict[str, List[np.ndarray]] = {k: [np.zeros(1)] for k in ("cls", "pix", "csum", "cpix", "sar")}
    total = 0
    windows = list(iter_windows(width, height, block))
    for i, (win, _) in enumerate(windows):
        progress.check()
        classes, member, conf = read(win)
        labels, comp_class = label_classes(classes, member)
        n = comp_class.size - 1
        key = (int(win.row_off), int(win.col_off))
        offsets[key] = total
        flat = labels.ravel()
        stats["cls"].append(comp_class[1:].astype(np.float64))
        stats["pix"].append(np.bincount(flat, minlength=n + 1)[1:].astype(np.float64))
        if conf is not None:
            c = conf.ravel()
            ok = np.isfinite(c)
            stats["csum"].append(np.bincount(flat[ok], weights=np.abs(c[ok]).astype(np.float64), minlength=n + 1)[1:])
            stats["cpix"].append(np.bincount(flat[ok], minlength=n + 1)[1:].astype(np.float64))
            stats["sar"].append(np.bincount(flat[ok & (c < 0)], minlength=n + 1)[1:].astype(np.float64))
        else:
            for k in ("csum", "cpix", "sar"):
                stats[k].append(np.zeros(n))
        glob = np.where(labels > 0, labels + total, 0)
        edges[key] = (glob[0].copy(), glob[-1].copy(), glob[:, 0].copy(), glob[:, -1].copy())
        total += n
        progress.report((i + 1) / len(windows), "polygons: connected components")
    cls_id = np.concatenate(stats["cls"]).astype(np.int64)
    rows = sorted({r for r, _ in edges})
    cols = sorted({c for _, c in edges})
    pairs: List[np.ndarray] = []
    for r_prev, r in zip(rows, rows[1:]):  # horizontal borders
        above = np.concatenate([edges[(r_prev, c)][1] for c in cols])
        below = np.concatenate([edges[(r, c)][0] for c in cols])
        p = _edge_pairs(above, below, cls_id)
        if p is not None:
            pairs.append(p)
    for c_prev, c in zip(cols, cols[1:]):  # vertical borders
        left = np.concatenate([edges[(r, c_prev)][3] for r in rows])
        right = np.concatenate([edges[(r, c)][2] for r in rows])
        p = _edge_pairs(left, right, cls_id)
        if p is not None:
            pairs.append(p)
    edges.clear()
    ij = np.concatenate(pairs, axis=1) if pairs else np.zeros((2, 0), np.int64)
    graph = coo_matrix((np.ones(ij.shape[1], np.int8), (ij[0], ij[1])), shape=(total + 1, total + 1))
    n_roots, root = connected_components(graph, directed=False)
    root = root.astype(np.int64)
    if root[0] != 0:  # scipy numbers components from node 0 on: the background is root 0
        raise RuntimeError("unexpected component numbering")

    def per_root(values: np.ndarray) -> np.ndarray:
        return np.bincount(root, weights=values, minlength=n_roots)

    pieces = np.bincount(root, minlength=n_roots).astype(np.int64)
    pieces[0] = 0
    cls = np.zeros(n_roots, np.int64)
    cls[root] = cls_id
    return ClassComponents(
        block=block,
        offsets=offsets,
        root=root,
        cls=cls,
        pixels=per_root(np.concatenate(stats["pix"])).astype(np.int64),
        conf_sum=per_root(np.concatenate(stats["csum"])),
        conf_pixels=per_root(np.concatenate(stats["cpix"])).astype(np.int64),
        sar_only=per_root(np.concatenate(stats["sar"])).astype(np.int64),
        pieces=pieces,
    )
