"""A patch set around user-drawn polygons, for stage-2-style fine-tuning of an existing student.

A user corrects a map by drawing a few polygons with a class each. Fine-tuning then trains
only on patch windows around those polygons: the label raster covers just the training area
(the windows' bounding box, on the model grid), is 255 outside the polygons, and the windows
are split into train and validation so that overlapping windows stay in one split. The
result is a patch-set folder (``manifest.json`` + ``labels.tif``) that
:func:`engine.train.stages.distill` reads like any exported patch set.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from affine import Affine
from rasterio.windows import Window

from ..config import ClassSchema
from ..files import atomic_write_bytes
from ..progress import NULL_PROGRESS, Progress
from ..raster.grid import Grid
from ..raster.io import iter_windows, open_writer

PathLike = Union[str, Path]
Win = Tuple[int, int, int, int]  # col, row, width, height


def polygon_boxes(path: PathLike, grid: Grid, layer: Optional[str] = None) -> List[Tuple[float, float, float, float]]:
    """Pixel boxes (x0, y0, x1, y1) on ``grid`` of every polygon of a vector layer (any CRS)."""
    from osgeo import ogr, osr

    ds = ogr.Open(str(path))
    if ds is None:
        raise ValueError(f"{path}: not a readable vector file")
    lyr = ds.GetLayerByName(layer) if layer else ds.GetLayer(0)
    if lyr is None:
        raise ValueError(f"{path}: no layer {layer!r}")
    target = osr.SpatialReference(wkt=grid.crs_wkt)
    target.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    source = lyr.GetSpatialRef()
    transform = None
    if source is not None and not source.IsSame(target):
        source.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        transform = osr.CoordinateTransformation(source, target)
    inverse = ~grid.transform
    boxes = []
    for feature in lyr:
        geom = feature.GetGeometryRef()
        if geom is None or geom.IsEmpty():
            continue
        geom = geom.Clone()
        if transform is not None:
            geom.Transform(transform)
        minx, maxx, miny, maxy = geom.GetEnvelope()
        cols, rows = zip(*(inverse * (x, y) for x in (minx, maxx) for y in (miny, maxy)))
        boxes.append((min(cols), min(rows), max(cols), max(rows)))
    return boxes


def windows_around(boxes: Sequence[Tuple[float, float, float, float]], grid: Grid, size: int) -> List[Win]:
    """Patch windows of ``size`` covering each box (centred on small ones), inside the grid.

    Raises:
        ValueError: the grid is smaller than one patch, or no polygon lies on the grid.
    """
    if grid.width < size or grid.height < size:
        raise ValueError(f"the grid ({grid.width}x{grid.height}) is smaller than one {size}-pixel patch")
    found = set()
    for x0, y0, x1, y1 in boxes:
        if x1 <= 0 or y1 <= 0 or x0 >= grid.width or y0 >= grid.height:
            continue  # outside the imagery
        nx, ny = max(1, math.ceil((x1 - x0) / size)), max(1, math.ceil((y1 - y0) / size))
        # centre the block of nx x ny windows on the box
        cx0 = (x0 + x1) / 2 - nx * size / 2
        cy0 = (y0 + y1) / 2 - ny * size / 2
        for j in range(ny):
            for i in range(nx):
                col = int(round(min(max(cx0 + i * size, 0), grid.width - size)))
                row = int(round(min(max(cy0 + j * size, 0), grid.height - size)))
                found.add((col, row, size, size))
    if not found:
        raise ValueError("none of the polygons lies on the imagery; draw them over the scene")
    return sorted(found, key=lambda w: (w[1], w[0]))


def _overlap(a: Win, b: Win) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def split_windows(windows: Sequence[Win], val_fraction: float = 0.2, seed: int = 42) -> Dict[str, List[Win]]:
    """Train/val split in which overlapping windows always share a split (no leakage).

    With a single group of overlapping windows there is nothing to hold out: validation then
    uses the training windows (``shared`` is True), so model selection is optimistic.
    """
    groups: List[List[Win]] = []
    for w in windows:
        touching = [g for g in groups if any(_overlap(w, o) for o in g)]
        merged = [w] + [o for g in touching for o in g]
        groups = [g for g in groups if g not in touching] + [merged]
    if len(groups) == 1:
        return {"train": list(windows), "val": list(windows), "shared": True}
    order = np.random.default_rng(seed).permutation(len(groups))
    wanted = max(1, int(round(val_fraction * len(windows))))
    val: List[Win] = []
    train: List[Win] = []
    for n, k in enumerate(order):
        last = n == len(order) - 1
        if len(val) < wanted and not (last and not train):  # the last group trains if nothing else does
            val.extend(groups[k])
        else:
            train.extend(groups[k])
    return {"train": sorted(train), "val": sorted(val), "shared": False}


def write_polygon_patch_set(
    polygons: PathLike,
    class_field: str,
    optical: PathLike,
    sar: PathLike,
    grid: Grid,
    schema: ClassSchema,
    out_dir: PathLike,
    patch_size: int = 256,
    layer: Optional[str] = None,
    val_fraction: float = 0.2,
    seed: int = 42,
    overwrite: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> Dict[str, Any]:
    """Rasterise the polygons around their patch windows and write a patch set for fine-tuning.

    Args:
        polygons: vector file with the drawn polygons.
        class_field: attribute holding class ids or names of ``schema``.
        optical, sar: the rasters the patches are read from (on the fly, onto the label grid).
        grid: the model grid (e.g. the SAR's); the label raster covers the windows' bounding box.
        schema: the student's classes.
        out_dir: folder receiving ``labels.tif`` and ``manifest.json``.
        patch_size: window edge in pixels.
        layer: layer name inside a multi-layer vector file.
        val_fraction: share of windows held out for validation.
        seed: seeds the split.
        overwrite: replace an existing patch set.
        progress: progress and cancellation.

    Returns:
        ``manifest`` and ``labels`` paths, the ``patch_size`` used (at most the grid's size),
        the ``windows`` on the label grid, the label ``grid`` and the labelled pixels per class.
    """
    from ..data.patches import MANIFEST_VERSION
    from ..raster.labels import rasterize_window, read_label_polygons

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # a scene smaller than one patch is trained on whole (the networks pad any input size)
    patch_size = min(patch_size, grid.width, grid.height)
    windows = windows_around(polygon_boxes(polygons, grid, layer), grid, patch_size)
    c0, r0 = min(w[0] for w in windows), min(w[1] for w in windows)
    c1, r1 = max(w[0] + w[2] for w in windows), max(w[1] + w[3] for w in windows)
    area = Grid(grid.crs_wkt, grid.transform * Affine.translation(c0, r0), c1 - c0, r1 - r0)
    local = [(c - c0, r - r0, w, h) for c, r, w, h in windows]
    label_path = out / "labels.tif"
    by_class, report = read_label_polygons(polygons, class_field, area, schema, layer)
    k = schema.num_classes
    counts: Dict[Win, List[int]] = {}
    with open_writer(label_path, area, 1, "uint8", schema.ignore_index, overwrite, ["class"]) as dst:
        dst.write_colormap(1, {i: (*schema.rgb(i), 255) for i in schema.ids})
        for block, _ in iter_windows(area.width, area.height, 1024):  # unlabelled everywhere first
            dst.write(np.full((1, int(block.height), int(block.width)), schema.ignore_index, np.uint8), window=block)
        for n, (col, row, w, h) in enumerate(local):
            progress.check()
            array, _ = rasterize_window(by_class, area, Window(col, row, w, h), schema.ignore_index)
            dst.write(array[None], window=Window(col, row, w, h))
            counts[(col, row, w, h)] = np.bincount(array.ravel(), minlength=256)[:k].tolist()
            progress.report((n + 1) / len(local), f"labels around polygons: window {n + 1}/{len(local)}")
    if not any(sum(c) for c in counts.values()):
        raise ValueError(f"{polygons}: no polygon covers a pixel centre of the imagery (too small or outside?)")
    split = split_windows(local, val_fraction, seed)
    tiles = [{"window": list(w), "split": name} for name in ("train", "val") for w in split[name]]
    patches = [
        {
            "split": t["split"],
            "window": t["window"],
            "tile": i,
            "class_counts": counts[tuple(t["window"])],
            "resampled": False,
        }
        for i, t in enumerate(tiles)
    ]
    manifest = {
        "version": MANIFEST_VERSION,
        "kind": "polygon-patches",
        "sources": {"optical": str(Path(optical).resolve()), "sar": str(Path(sar).resolve()), "label": label_path.name},
        "width": area.width,
        "height": area.height,
        "patch_size": patch_size,
        "tile_size": patch_size,
        "grid": area.to_dict(),
        "classes": list(schema.names),
        "shared_validation": split["shared"],
        "tiles": tiles,
        "patches": patches,
        "polygons": {k: v for k, v in report.items() if isinstance(v, (int, float, str, dict))},
    }
    manifest_path = out / "manifest.json"
    atomic_write_bytes(manifest_path, json.dumps(manifest, indent=1).encode("utf-8"), overwrite=True)
    total = np.sum(list(counts.values()), axis=0)
    return {
        "manifest": str(manifest_path),
        "labels": str(label_path),
        "patch_size": patch_size,
        "windows": local,
        "grid": area,
        "shared_validation": split["shared"],
        "class_pixels": {schema.names[i]: int(n) for i, n in enumerate(total)},
    }
