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
from ..raster.io import WATER_MAP_NAMES, is_water_map, iter_windows, read_bands

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


SAR_ONLY_NON_WATER = 254
"""Class-map value of segment's SAR-only "not water" pixels (engine.inference.products; not imported: no torch)."""
def _check_prediction(path: Path, schema: ClassSchema) -> bool:
    """Refuse what cannot be a class map; True when ``path`` is a water map (0/1) rather than a class map."""
    if not path.is_file():
        raise FileNotFoundError(f"prediction raster {path} does not exist")
    with rasterio.open(path) as src:
        if src.count != 1 or np.dtype(src.dtypes[0]).kind not in "ui":
            raise ValueError(
                f"{path}: expected a single-band integer class raster (values {list(schema.ids)}), "
                f"got {src.count} band(s) of {src.dtypes[0]}"
            )
        return is_water_map(src)


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

    A water map (watermap's ``water.tif``, band "water", 0/1) as prediction or reference is scored
    as the two classes not water / water, the class ids of the other side folded onto them.
    Segment's 254 (SAR-only not water) counts as not water in ``water_iou`` and is left out of the
    per-class scores of a class map; both are said in ``notes`` (and as a warning).

    Args:
        prediction: single-band class raster or water map (its nodata pixels are not evaluated).
        reference: label raster (255 = unlabelled), or a polygon layer with ``class_field``.
        schema: the classes; default the six of the method.
        class_field: attribute holding class ids or names (polygon reference only).
        layer: layer name inside a multi-layer vector file.
        block: window size in pixels.
        progress: progress and cancellation.
        boundary_tolerance: pixels of slack of the boundary F-score (:class:`BoundaryFScore`).

    Returns:
        the :meth:`ConfusionMatrix.compute` dict (over ``class_names``) plus ``water_iou``,
        ``water_pixels``, ``scored_as``, ``sar_only_non_water_pixels``, ``notes``,
        ``unpredicted_pixels`` (labelled but without prediction), the :meth:`BoundaryFScore.compute`
        lists, ``boundary_f_named`` (road and shoreline) and the inputs.
    """
    schema = schema or ClassSchema()
    prediction, reference = Path(prediction), Path(reference)
    water_map = _check_prediction(prediction, schema)
    if not reference.exists():
        raise FileNotFoundError(f"reference {reference} does not exist")
    raster_ref = is_raster(reference)
    ref_water_map = False
    if raster_ref:
        with rasterio.open(reference) as src:
            ref_water_map = is_water_map(src)
    # a water map (prediction or reference) only says water / not water: both sides fold onto that
    binary = water_map or ref_water_map
    names = WATER_MAP_NAMES if binary else tuple(schema.names)
    ignore = schema.ignore_index
    grid = grid_of(prediction)
    if not raster_ref:
        from ..raster.labels import class_field_of, rasterize_window, read_label_polygons

        class_field = class_field_of(reference, class_field, layer)
        # polygons are read once, then burnt window by window
        by_class, _ = read_label_polygons(reference, class_field, grid, schema, layer=layer, progress=progress)
    cm = ConfusionMatrix(len(names), ignore)
    water_cm = ConfusionMatrix(2, ignore)  # water vs not water; segment's 254 counts as not water here
    boundary = BoundaryFScore(len(names), boundary_tolerance, ignore)
    halo = boundary.halo  # the boundary score needs context around each window
    unpredicted = sar_only = 0
    windows = list(iter_windows(grid.width, grid.height, block, halo))
    for i, (window, padded) in enumerate(windows):
        progress.check()
        pred = read_bands(prediction, [1], padded)[0]
        if raster_ref:
            ref = read_on_grid(reference, [1], grid, padded, resampling="nearest")[0]
            ref = np.where(np.isfinite(ref), ref, ignore).astype(np.int64)
        else:
            ref = rasterize_window(by_class, grid, padded, ignore)[0].astype(np.int64)
        missing = ~np.isfinite(pred)
        core = (slice(halo, halo + int(window.height)), slice(halo, halo + int(window.width)))
        unpredicted += int((missing[core] & (ref[core] != ignore)).sum())
        ref[missing] = ignore
        pred = np.where(missing, 0, pred).astype(np.int64)
        try:
            if not ref_water_map:
                ref = _fold_to_water(ref, schema, "reference") if binary else ref
            if not water_map:
                _check_class_values(pred[core], ref[core] != ignore, schema)
            non_water = (pred == SAR_ONLY_NON_WATER) & (ref != ignore) & (not water_map)
            sar_only += int(non_water[core].sum())
            water_pred = pred == (1 if water_map else schema.water_class)
            water_ref = np.where(ref == ignore, ignore, ref == (1 if binary else schema.water_class))
            water_cm.update(water_pred[core], water_ref[core])
            if binary:
                pred = water_pred.astype(np.int64)
            else:  # 254 says "not water" but not which land class: left out of the per-class scores
                ref[non_water] = ignore
            boundary.update(pred, ref, core, present=~missing)
            cm.update(pred[core], ref[core])
        except ValueError as exc:
            raise ValueError(
                f"{prediction} against {reference}, window at row {window.row_off}, "
                f"column {window.col_off}: {exc}"
            ) from None
        progress.report((i + 1) / len(windows), f"evaluating window {i + 1}/{len(windows)}")
    result = cm.compute()
    water_result = water_cm.compute()
    if water_result["pixels"] == 0:
        raise ValueError(
            f"{reference} and {prediction} share no labelled pixel: check that they overlap "
            "and that the reference holds class ids of the schema"
        )
    if water_result["pixels"] < MIN_SCORED_PIXELS:  # a figure from a handful of pixels says nothing
        progress.warning(f"only {water_result['pixels']} labelled pixel(s) of {reference} lie under {prediction} "
                         f"({grid.width} x {grid.height} pixels): too few for the figures to mean anything; check "
                         "that the prediction covers the reference")
    notes = []
    if binary:
        which = prediction if water_map else reference
        notes.append(f"{which.name} is a water map (0 not water, 1 water): scored as water / not water"
                     + ("" if ref_water_map else f", the reference's {schema.names[schema.water_class]} class "
                        "against all its other classes"))
    if sar_only:
        notes.append(f"{sar_only} labelled pixel(s) of {prediction.name} hold {SAR_ONLY_NON_WATER} (not water, land "
                     "class unknown: SAR only): counted as not water"
                     + ("" if binary else " in the water IoU, left out of the per-class scores"))
    for note in notes:
        progress.warning(note)
    result.update(boundary.compute())
    named = thin_structure_classes(names, 1 if binary else schema.water_class)
    result.update(
        boundary_f_named={name: result["boundary_f"][c] for name, c in named.items()},
        water_iou=water_result["iou"][1],
        water_pixels=water_result["pixels"],
        scored_as="water / not water" if binary else "classes",
        sar_only_non_water_pixels=sar_only,
        notes=notes,
        class_names=list(names),
        unpredicted_pixels=unpredicted,
        prediction=str(prediction),
        reference=str(reference),
    )
    return result


def _check_class_values(pred: np.ndarray, labelled: np.ndarray, schema: ClassSchema) -> None:
    """Refuse prediction values on labelled pixels that are neither class ids nor segment's 254."""
    values = pred[labelled]
    bad = (values < 0) | ((values >= schema.num_classes) & (values != SAR_ONLY_NON_WATER))
    if bad.any():
        raise ValueError(
            f"prediction holds value(s) {np.unique(values[bad])[:5].tolist()} on labelled pixels; expected class "
            f"ids 0..{schema.num_classes - 1} (or {SAR_ONLY_NON_WATER}, segment's SAR-only not water)"
        )


def _fold_to_water(ref: np.ndarray, schema: ClassSchema, what: str) -> np.ndarray:
    """Class ids of ``schema`` (ignore kept) as 1 water / 0 not water; other values refused."""
    ignore = schema.ignore_index
    bad = (ref != ignore) & ((ref < 0) | (ref >= schema.num_classes))
    if bad.any():
        raise ValueError(
            f"{what} holds value(s) {np.unique(ref[bad])[:5].tolist()} that are neither a class id "
            f"0..{schema.num_classes - 1} nor the ignore value {ignore}"
        )
    return np.where(ref == ignore, ignore, ref == schema.water_class).astype(np.int64)
