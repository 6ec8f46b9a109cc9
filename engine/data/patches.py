"""Split first, crop later: leakage-free train/val/test patches from a label raster.

The label grid is cut into large square tiles; whole tiles are assigned to the splits by a
seeded shuffle (0.70/0.15/0.15 by default); patches are then cropped inside each tile, so
no patch of one split overlaps a patch of another. Rare-class windows are added to the
training split only. The result is a JSON-able manifest (format in ``docs/data.md``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

import numpy as np
import rasterio
from rasterio.windows import Window

from ..config import ClassSchema, PatchConfig, to_dict
from ..progress import NULL_PROGRESS, Progress

PathLike = Union[str, Path]
SPLITS = ("train", "val", "test")
MANIFEST_VERSION = 1
MIN_TILES = 7  # enough labelled tiles that 0.70/0.15/0.15 gives each split at least one


def _tile_windows(width: int, height: int, tile: int, patch: int) -> List[Tuple[int, int, int, int]]:
    """Non-overlapping tiles; an edge remainder narrower than one patch is dropped."""
    out = []
    for row in range(0, height, tile):
        for col in range(0, width, tile):
            w, h = min(tile, width - col), min(tile, height - row)
            if w >= patch and h >= patch:
                out.append((col, row, w, h))
    return out


def _positions(start: int, length: int, size: int, stride: int) -> List[int]:
    """Window offsets covering [start, start+length) with windows of ``size``; last one flush."""
    if length < size:
        return []
    last = start + length - size
    pos = list(range(start, last + 1, stride))
    if pos[-1] != last:
        pos.append(last)
    return pos


def _counts(label: np.ndarray, num_classes: int) -> List[int]:
    return np.bincount(label[label < num_classes].ravel(), minlength=num_classes)[:num_classes].tolist()


def _assign_splits(n: int, ratios: Sequence[float], rng: np.random.Generator) -> List[str]:
    """Split names for ``n`` tiles: each split gets at least one tile when n >= 3."""
    order = rng.permutation(n)
    n_val = max(1, int(round(ratios[1] * n)))
    n_test = max(1, int(round(ratios[2] * n)))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"{n} labelled tiles cannot feed three splits")
    names = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    out = [""] * n
    for rank, idx in enumerate(order):
        out[idx] = names[rank]
    return out


def _stratified_splits(
    tile_counts: List[List[int]], ratios: Sequence[float], seed: int, tries: int = 500
) -> Tuple[List[str], List[str]]:
    """Seeded tile splits in which val and test hold every class found in 3+ tiles, if possible.

    Random tile splits of a small scene easily leave a rare class (often water) out of the
    validation split, which then cannot select a model for that class. Shuffles are drawn in
    a fixed order from ``seed`` and the first one that misses no (split, class) pair wins;
    otherwise the one missing the fewest, and the misses are returned.
    """
    rng = np.random.default_rng(seed)
    present = np.array(tile_counts) >= 16  # a class "is in" a tile with at least 16 pixels
    wanted = np.nonzero(present.sum(0) >= 3)[0]
    best: Tuple[int, List[str], List[str]] = (10**9, [], [])
    for _ in range(tries):
        splits = _assign_splits(len(tile_counts), ratios, rng)
        misses = [f"{s}:{c}" for s in SPLITS for c in wanted
                  if not any(present[i, c] for i, name in enumerate(splits) if name == s)]
        if len(misses) < best[0]:
            best = (len(misses), splits, misses)
        if not misses:
            break
    return best[1], best[2]


def build_manifest(
    label_path: PathLike,
    cfg: PatchConfig = PatchConfig(),
    schema: ClassSchema = ClassSchema(),
    progress: Progress = NULL_PROGRESS,
) -> Dict[str, Any]:
    """Tiles, splits and patches of a label raster (255 = unlabelled).

    The tile size starts at ``cfg.tile_size`` and is halved (down to one patch) until at
    least :data:`MIN_TILES` tiles hold labelled pixels, so small scenes still feed every
    split; the manifest's ``warnings`` says when that happened.

    Raises:
        ValueError: the raster is smaller than one patch or holds too few labelled areas.
    """
    label_path = Path(label_path)
    with rasterio.open(label_path) as src:
        label = src.read(1)  # uint8: 1 byte per pixel, the only full-size array here
        width, height = src.width, src.height
    if width < cfg.patch_size or height < cfg.patch_size:
        raise ValueError(
            f"{label_path}: {width}x{height} pixels is smaller than one {cfg.patch_size}x{cfg.patch_size} patch"
        )
    k = schema.num_classes
    warnings: List[str] = []
    tile = max(cfg.tile_size, cfg.patch_size)
    while True:
        tiles = [t for t in _tile_windows(width, height, tile, cfg.patch_size)
                 if (label[t[1]:t[1] + t[3], t[0]:t[0] + t[2]] < k).any()]
        if len(tiles) >= MIN_TILES or tile <= cfg.patch_size:
            break
        tile = max(cfg.patch_size, tile // 2)
    if len(tiles) < 3:
        raise ValueError(
            f"{label_path}: only {len(tiles)} area(s) of {cfg.patch_size}x{cfg.patch_size} px hold labels; "
            "train/val/test need at least 3: label more of the scene or use smaller patches"
        )
    if tile < cfg.tile_size:
        warnings.append(
            f"tile size reduced from {cfg.tile_size} to {tile} px so that every split gets data "
            f"({len(tiles)} labelled tiles)"
        )
    tile_counts = [_counts(label[r:r + h, c:c + w], k) for c, r, w, h in tiles]
    splits, missing = _stratified_splits(tile_counts, cfg.split_ratios, cfg.seed)
    if missing:
        warnings.append(f"no tile assignment gives every split each class; missing {missing}")

    patches: List[Dict[str, Any]] = []
    size = cfg.patch_size
    rare_ids = [schema.id_of(name) for name in cfg.rare_classes]
    for t_index, ((col, row, w, h), split) in enumerate(zip(tiles, splits)):
        progress.check()
        for r in _positions(row, h, size, size):
            for c in _positions(col, w, size, size):
                counts = _counts(label[r:r + size, c:c + size], k)
                if sum(counts):
                    patches.append({"split": split, "window": [c, r, size, size], "tile": t_index,
                                    "class_counts": counts, "resampled": False})
        if split == "train" and rare_ids:
            stride = cfg.rare_stride
            for r in _positions(row, h, size, stride):
                for c in _positions(col, w, size, stride):
                    counts = _counts(label[r:r + size, c:c + size], k)
                    if any(counts[i] >= cfg.rare_min_pixels and counts[i] >= cfg.rare_min_fraction * size * size
                           for i in rare_ids):
                        patches.append({"split": split, "window": [c, r, size, size], "tile": t_index,
                                        "class_counts": counts, "resampled": True})
        progress.report((t_index + 1) / len(tiles), "cutting patches")
    summary = {
        s: {"patches": sum(p["split"] == s for p in patches),
            "resampled": sum(p["split"] == s and p["resampled"] for p in patches),
            "class_pixels": np.sum([p["class_counts"] for p in patches if p["split"] == s and not p["resampled"]]
                                   or [[0] * k], axis=0).tolist()}
        for s in SPLITS
    }
    empty = [s for s in SPLITS if summary[s]["patches"] == 0]
    if empty:
        raise ValueError(f"{label_path}: split(s) {empty} got no labelled patch; label more of the scene")
    return {
        "version": MANIFEST_VERSION,
        "sources": {"label": str(label_path)},
        "width": width,
        "height": height,
        "patch_size": size,
        "tile_size": tile,
        "config": to_dict(cfg),
        "classes": list(schema.names),
        "tiles": [{"window": list(t), "split": s} for t, s in zip(tiles, splits)],
        "patches": patches,
        "summary": summary,
        "warnings": warnings,
    }


def windows_overlap(a: Sequence[int], b: Sequence[int]) -> bool:
    """True when two (col, row, width, height) windows share at least one pixel."""
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def save_manifest(manifest: Dict[str, Any], path: PathLike) -> Path:
    """Write the manifest as JSON atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(path)
    return path


def load_manifest(path: PathLike) -> Dict[str, Any]:
    """Read and check a manifest written by :func:`save_manifest`."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable patch manifest ({exc})") from exc
    missing = [key for key in ("version", "patches", "tiles", "patch_size") if key not in manifest]
    if missing:
        raise ValueError(f"{path}: not a patch manifest (missing {missing})")
    if manifest["version"] > MANIFEST_VERSION:
        raise ValueError(f"{path}: manifest version {manifest['version']} is newer than this engine reads")
    return manifest


def patch_window(patch: Dict[str, Any]) -> Window:
    col, row, w, h = patch["window"]
    return Window(col, row, w, h)
