"""Accuracy of a classified raster against a reference raster or polygon layer, by windows.

The prediction's grid is the frame: a reference raster is read onto it with nearest
resampling, a polygon layer is rasterised window by window, so memory stays bounded by
the window size whatever the scene size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import rasterio

from ..config import ClassSchema
from ..metrics import BoundaryFScore, ConfusionMatrix, thin_structure_classes
from ..progress import NULL_PROGRESS, Progress
from ..raster.grid import grid_of, read_on_grid
from ..raster.io import iter_windows, read_bands

PathLike = Union[str, Path]
RASTER_SUFFIXES = {".tif", ".tiff", ".vrt", ".img", ".jp2", ".asc", ".nc"}


def is_raster(path: PathLike) -> bool:
    """True for a raster GDAL opens, False for a vector layer (GeoPackage, shapefile ...)."""
    path = Path(path)
    if path.suffix.lower() in RASTER_SUFFIXES:
        return True
    try:
        with rasterio.open(path) as src:
            return src.count > 0
    except rasterio.errors.RasterioIOError:
        return False


def _check_prediction(path: Path, schema: ClassSchema) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"prediction raster {path} does not exist")
    with rasterio.open(path) as src:
        if src.count != 1 or np.dtype(src.dtypes[0]).kind not in "ui":
            raise ValueError(
                f"{path}: expected a single-band integer class raster (values {list(schema.ids)}), "
                f"got {src.count} band(s) of {src.dtypes[0]}"
            )


MIN_SCORED_PIXELS = 100
"""Fewer labelled pixels scored than this and the figures come with a warning."""


def evaluate_rasters(
    prediction: PathLike,
    reference: PathLike,
    schema: Optional[ClassSchema] = None,
    class_field: Optional[str] = None,
    layer: Optional[str] = None,
    block: int = 1024,
    progress: Progress = NULL_PROGRESS,
    boundary_tolerance: int = 2,
) -> Dict[str, Any]:
    """Confusion-matrix metrics and boundary F-scores of ``prediction`` against ``reference``.

    Args:
        prediction: single-band class raster (its nodata pixels are not evaluated).
        reference: label raster (255 = unlabelled), or a polygon layer with ``class_field``.
        schema: the classes; default the six of the method.
        class_field: attribute holding class ids or names (polygon reference only).
        layer: layer name inside a multi-layer vector file.
        block: window size in pixels.
        progress: progress and cancellation.
        boundary_tolerance: pixels of slack of the boundary F-score (:class:`BoundaryFScore`).

    Returns:
        the :meth:`ConfusionMatrix.compute` dict plus ``water_iou``, ``class_names``,
        ``unpredicted_pixels`` (labelled but without prediction), the
        :meth:`BoundaryFScore.compute` lists, ``boundary_f_named`` (road and shoreline) and the
        inputs.
    """
    schema = schema or ClassSchema()
    prediction, reference = Path(prediction), Path(reference)
    _check_prediction(prediction, schema)
    if not reference.exists():
        raise FileNotFoundError(f"reference {reference} does not exist")
    raster_ref = is_raster(reference)
    grid = grid_of(prediction)
    if not raster_ref:
        from ..raster.labels import class_field_of, rasterize_window, read_label_polygons

        class_field = class_field_of(reference, class_field, layer)
        # polygons are read once, then burnt window by window
        by_class, _ = read_label_polygons(reference, class_field, grid, schema, layer=layer)
    cm = ConfusionMatrix(schema.num_classes, schema.ignore_index)
    boundary = BoundaryFScore(schema.num_classes, boundary_tolerance, schema.ignore_index)
    halo = boundary.halo  # the boundary score needs context around each window
    unpredicted = 0
    windows = list(iter_windows(grid.width, grid.height, block, halo))
    for i, (window, padded) in enumerate(windows):
        progress.check()
        pred = read_bands(prediction, [1], padded)[0]
        if raster_ref:
            ref = read_on_grid(reference, [1], grid, padded, resampling="nearest")[0]
            ref = np.where(np.isfinite(ref), ref, schema.ignore_index).astype(np.int64)
        else:
            ref = rasterize_window(by_class, grid, padded, schema.ignore_index)[0].astype(np.int64)
        missing = ~np.isfinite(pred)
        core = (slice(halo, halo + int(window.height)), slice(halo, halo + int(window.width)))
        unpredicted += int((missing[core] & (ref[core] != schema.ignore_index)).sum())
        ref[missing] = schema.ignore_index
        pred = np.where(missing, 0, pred).astype(np.int64)
        try:
            boundary.update(pred, ref, core, present=~missing)
            cm.update(pred[core], ref[core])
        except ValueError as exc:
            raise ValueError(
                f"{prediction} against {reference}, window at row {window.row_off}, "
                f"column {window.col_off}: {exc}"
            ) from None
        progress.report((i + 1) / len(windows), f"evaluating window {i + 1}/{len(windows)}")
    result = cm.compute()
    if result["pixels"] == 0:
        raise ValueError(
            f"{reference} and {prediction} share no labelled pixel: check that they overlap "
            "and that the reference holds class ids of the schema"
        )
    if result["pixels"] < MIN_SCORED_PIXELS:  # a figure from a handful of pixels says nothing
        progress.warning(f"only {result['pixels']} labelled pixel(s) of {reference} lie under {prediction} "
                         f"({grid.width} x {grid.height} pixels): too few for the figures to mean anything; check "
                         "that the prediction covers the reference")
    result.update(boundary.compute())
    named = thin_structure_classes(schema.names, schema.water_class)
    result.update(
        boundary_f_named={name: result["boundary_f"][c] for name, c in named.items()},
        water_iou=result["iou"][schema.water_class],
        class_names=list(schema.names),
        unpredicted_pixels=unpredicted,
        prediction=str(prediction),
        reference=str(reference),
    )
    return result
