"""Polygon labels (GeoPackage, Shapefile, GeoJSON; any CRS) rasterised onto a grid.

Rule for overlaps: where polygons of *different* classes overlap, the pixels are set to the
ignore value (255) and counted in the report, because either label may be wrong there and
training on a guess teaches the guess. Overlapping polygons of the same class are harmless.
A pixel belongs to a polygon when its centre lies inside it (GDAL's default rule).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
from osgeo import ogr, osr
from rasterio.features import rasterize
from rasterio.windows import Window

from ..config import ClassSchema
from ..progress import NULL_PROGRESS, Progress
from ..validate import unzip_hint
from ..vector.geometry import linear, polygon_parts, quiet_gdal, to_crs, union_all
from .grid import Grid
from .io import iter_windows, open_writer

ogr.UseExceptions()
osr.UseExceptions()

PathLike = Union[str, Path]


def _open_layer(vector_path: PathLike, layer: Optional[str]):
    path = Path(vector_path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: label file not found")
    try:
        ds = ogr.Open(str(path))
    except RuntimeError as exc:
        raise ValueError(f"{path}: not a vector file OGR can read ({exc}){unzip_hint(path)}") from exc
    if ds is None or ds.GetLayerCount() == 0:
        raise ValueError(f"{path}: no vector layer in it")
    lyr = ds.GetLayerByName(layer) if layer else ds.GetLayer(0)
    if lyr is None:
        names = [ds.GetLayer(i).GetName() for i in range(ds.GetLayerCount())]
        raise ValueError(f"{path}: no layer named {layer!r}; layers: {names}")
    return ds, lyr


DEFAULT_CLASS_FIELD = "class"
"""The attribute a polygon layer's classes are read from when none is named (as fine-tuning reads them)."""


def class_field_of(vector_path: PathLike, class_field: Optional[str], layer: Optional[str] = None,
                   option: str = "--class-field / CLASS_FIELD") -> str:
    """``class_field``, or :data:`DEFAULT_CLASS_FIELD` when none is given and the layer has it.

    Raises:
        ValueError: none given and no such field; the message lists the layer's fields.
    """
    if class_field:
        return class_field
    _, lyr = _open_layer(vector_path, layer)
    defn = lyr.GetLayerDefn()
    fields = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    if DEFAULT_CLASS_FIELD in fields:
        return DEFAULT_CLASS_FIELD
    raise ValueError(f"{vector_path} is a polygon layer without a {DEFAULT_CLASS_FIELD!r} field: give the attribute "
                     f"holding the classes ({option}); its fields: {fields}")


def read_label_polygons(
    vector_path: PathLike,
    class_field: str,
    grid: Grid,
    schema: ClassSchema,
    layer: Optional[str] = None,
    progress: Progress = NULL_PROGRESS,
) -> Tuple[Dict[int, List[dict]], Dict[str, Any]]:
    """Read polygons, repair what OGR can, and group them by class id in the grid's CRS.

    Returns:
        ``({class_id: [GeoJSON geometry, ...]}, report)`` where the report counts features
        read, repaired, and skipped (empty, null or not polygonal), with their feature ids and
        classes; the skipped and repaired ones are also said in one warning
        (:func:`skipped_message`).

    Raises:
        ValueError: the field does not exist, holds values that are not classes of the schema,
            or the layer holds points or lines instead of polygons.
    """
    ds, lyr = _open_layer(vector_path, layer)
    kind = _NON_POLYGON.get(ogr.GT_Flatten(lyr.GetGeomType()))
    if kind:  # a point or line layer would otherwise be blamed on "no overlap" further on
        raise ValueError(_non_polygon_message(vector_path, kind))
    defn = lyr.GetLayerDefn()
    fields = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    if class_field not in fields:
        raise ValueError(f"{vector_path}: no field {class_field!r}; fields: {fields}")
    src_srs = lyr.GetSpatialRef()
    if src_srs is None:
        raise ValueError(f"{vector_path}: the layer has no coordinate reference system; assign the one its "
                         "coordinates are in (QGIS: Layer Properties > Source > Assigned CRS; ogr2ogr -a_srs "
                         "EPSG:<code>; a Shapefile needs its .prj file beside it)")
    dst_srs = osr.SpatialReference()
    dst_srs.ImportFromWkt(grid.crs.to_wkt())
    for srs in (src_srs, dst_srs):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = osr.CoordinateTransformation(src_srs, dst_srs)

    by_class: Dict[int, List[dict]] = {}
    shapes: Dict[int, List[ogr.Geometry]] = {}  # the same polygons, to measure where classes overlap
    codes: set = set()  # class values given as numbers
    report: Dict[str, Any] = {"features": 0, "repaired": [], "skipped": [], "bad_values": {}}
    for feature in lyr:
        report["features"] += 1
        fid = feature.GetFID()
        geom = feature.GetGeometryRef()
        value = feature.GetField(class_field)
        if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
            codes.add(int(float(value)))
        if geom is None or geom.IsEmpty():
            report["skipped"].append({"fid": fid, "class": value, "reason": "has no geometry"})
            continue
        geom = linear(geom.Clone())  # QGIS digitises arcs; GEOS measures none
        shape = ogr.GT_Flatten(geom.GetGeometryType())
        if shape in _NON_POLYGON:
            report["skipped"].append({"fid": fid, "class": value, "reason": f"is a {geom.GetGeometryName().lower()}, "
                                      "not a polygon", "kind": _NON_POLYGON[shape]})
            continue
        with quiet_gdal():  # GEOS's raw "Warning 1: Self-intersection ..." lines: the warning below says it
            valid = geom.IsValid()
            if not valid:
                geom = geom.MakeValid()
        if not valid:
            if geom is None or geom.IsEmpty():
                report["skipped"].append({"fid": fid, "class": value, "reason": "is invalid and not repairable"})
                continue
        geom = polygon_parts(geom)
        if geom is None:  # make-valid left lines or points: a polygon without area (too few points, flat)
            report["skipped"].append({"fid": fid, "class": value, "reason": _NO_AREA})
            continue
        try:
            class_id = schema.id_of(value)
        except ValueError:
            report["bad_values"].setdefault("NULL" if value is None else str(value), []).append(fid)
            continue
        to_crs(geom, transform, f"{vector_path}: feature {fid} cannot be brought into the raster's CRS "
               f"({grid.crs.to_string()})", src_srs)
        by_class.setdefault(class_id, []).append(json.loads(geom.ExportToJson()))
        shapes.setdefault(class_id, []).append(geom)
        if not valid:
            report["repaired"].append(fid)
    del ds  # closes the data source
    if not report["features"]:
        raise ValueError(f"{vector_path}: the layer holds no features; draw polygons (with a {class_field!r} "
                         "field) over the scene, or choose another layer")
    if report["bad_values"]:
        shown = dict(list(report["bad_values"].items())[:10])
        raise ValueError(
            f"{vector_path}: field {class_field!r} holds values that are not classes of the schema "
            f"(value: feature ids) {shown}; use one of the ids {list(schema.ids)} or names {list(schema.names)}"
            f"{'; ' + _id_key(schema) if codes else ''}"
        )
    kinds = {k.get("kind") for k in report["skipped"]}
    if not by_class and len(report["skipped"]) == report["features"] and len(kinds) == 1 and None not in kinds:
        raise ValueError(_non_polygon_message(vector_path, kinds.pop()))
    del report["bad_values"]
    report["per_class_features"] = {schema.names[c]: len(g) for c, g in sorted(by_class.items())}
    report["overlap_lost"] = _overlap_losses(shapes, schema)
    message = skipped_message(vector_path, report)
    if message:
        progress.warning(message)
    if codes and min(codes) > 0:  # 1..6 read as ids 1..6 shifts every class by one, silently
        report["codes_from"] = min(codes)
        progress.warning(f"{Path(vector_path).name}: field {class_field!r} holds class codes {sorted(codes)}, read "
                         f"as the schema's ids; none is 0. {_id_key(schema)}: if yours count from 1, subtract 1, or "
                         "give class names instead")
    return by_class, report


def _id_key(schema: ClassSchema) -> str:
    """``ids count from 0: 0 farmland, 1 city, ...``."""
    return "ids count from 0: " + ", ".join(f"{i} {n}" for i, n in zip(schema.ids, schema.names))


def no_overlap_note(by_class: Dict[int, List[dict]], grid: Grid) -> str:
    """The polygons' extent beside the grid's, in the grid's CRS, and what usually causes them to miss it."""
    xs, ys = [], []
    for geometries in by_class.values():
        for geometry in geometries:
            envelope = ogr.CreateGeometryFromJson(json.dumps(geometry)).GetEnvelope()
            xs += envelope[:2]
            ys += envelope[2:]
    if not xs:
        return ""
    left, bottom, right, top = grid.bounds
    return (f" (polygons over x {min(xs):.6g}..{max(xs):.6g}, y {min(ys):.6g}..{max(ys):.6g}; the raster over x "
            f"{left:.6g}..{right:.6g}, y {bottom:.6g}..{top:.6g} in {grid.crs.to_string()}: another place, latitude "
            "and longitude swapped, or a wrong CRS declared?)")


_NON_POLYGON = {ogr.wkbPoint: "points", ogr.wkbMultiPoint: "points", ogr.wkbLineString: "lines",
                ogr.wkbMultiLineString: "lines"}
_NO_AREA = "is invalid and has no area (too few points, or an outline that folds onto itself)"


def _non_polygon_message(vector_path: PathLike, kind: str) -> str:
    return (f"{vector_path} holds {kind}; polygons are expected: draw polygons around the areas of each class "
            f"(or buffer the {kind} into polygons)")


#: A class whose drawn area overlaps other classes' polygons on this share or more is said (its pixels there are
#: unlabelled): a background polygon drawn under the others once left none of their pixels labelled, silently.
CLASS_OVERLAP_WARNING = 0.01


def _overlap_losses(shapes: Dict[int, List[ogr.Geometry]], schema: ClassSchema) -> Dict[str, float]:
    """Per class, the share of its drawn area that polygons of other classes overlap (left unlabelled)."""
    unions = {c: union_all(g) for c, g in shapes.items()}
    unions = {c: u for c, u in unions.items() if u is not None and u.GetArea() > 0}
    if len(unions) < 2:
        return {}
    lost = {}
    with quiet_gdal():
        for c, own in unions.items():
            others = union_all([u for k, u in unions.items() if k != c])
            share = own.Intersection(others).GetArea() / own.GetArea() if others is not None else 0.0
            if share > 0:
                lost[schema.names[c]] = round(min(share, 1.0), 4)
    return lost


def skipped_message(vector_path: PathLike, report: Dict[str, Any]) -> Optional[str]:
    """One warning naming the features :func:`read_label_polygons` skipped or repaired, the polygons that lie off
    the imagery and the share where classes overlap; None when there is nothing to say."""
    skipped, repaired = report.get("skipped") or [], report.get("repaired") or []
    outside = report.get("outside_imagery") or 0
    lost = {name: share for name, share in (report.get("overlap_lost") or {}).items() if share >= CLASS_OVERLAP_WARNING}
    if not skipped and not repaired and not outside and not lost:
        return None
    parts = []
    if outside:
        parts.append(f"{outside} of {report['features']} polygon(s) lie off the imagery and are not used")
    if lost:
        shares = ", ".join(f"{name} {100 * share:.0f} %" for name, share in sorted(lost.items(), key=lambda kv: -kv[1]))
        parts.append(f"polygons of different classes overlap, and overlaps are left unlabelled; drawn area lost: "
                     f"{shares} (a large polygon drawn under smaller ones of other classes? cut them out of it)")
    if skipped:
        named = "; ".join(f"fid {k['fid']} ({k.get('class')}) {k['reason']}" for k in skipped[:10])
        more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        parts.append(f"{len(skipped)} of {report['features']} polygon(s) skipped: {named}{more}")
    if repaired:
        fids = ", ".join(str(f) for f in repaired[:10]) + (" ..." if len(repaired) > 10 else "")
        parts.append(f"{len(repaired)} invalid polygon(s) (self-intersecting) repaired with make-valid: fid {fids}")
    return f"{Path(vector_path).name}: " + "; ".join(parts)


def rasterize_window(
    by_class: Dict[int, List[dict]], grid: Grid, window: Window, ignore_index: int = 255
) -> Tuple[np.ndarray, int]:
    """Label array of one grid window and the number of pixels where classes conflict."""
    sub = grid.window_grid(window)
    shape = (sub.height, sub.width)
    label = np.full(shape, ignore_index, dtype=np.uint8)
    conflict = np.zeros(shape, dtype=bool)
    for class_id, geoms in sorted(by_class.items()):
        mask = rasterize(((g, 1) for g in geoms), out_shape=shape, transform=sub.transform,
                         fill=0, dtype="uint8").astype(bool)
        conflict |= mask & (label != ignore_index) & (label != class_id)
        label[mask & (label == ignore_index)] = class_id
    label[conflict] = ignore_index
    return label, int(conflict.sum())


def rasterize_labels(
    vector_path: PathLike,
    class_field: str,
    grid: Grid,
    schema: ClassSchema,
    layer: Optional[str] = None,
) -> Tuple[np.ndarray, Dict[str, Any]]:
    """Rasterise a polygon layer onto ``grid`` in memory: (uint8 labels, report).

    Unlabelled pixels, and pixels where polygons of different classes overlap, are
    ``schema.ignore_index``. For grids too large for memory use :func:`rasterize_labels_to_file`.
    """
    by_class, report = read_label_polygons(vector_path, class_field, grid, schema, layer)
    label, conflicts = rasterize_window(by_class, grid, Window(0, 0, grid.width, grid.height),
                                        schema.ignore_index)
    report["conflict_pixels"] = conflicts
    report["labelled_pixels"] = int((label != schema.ignore_index).sum())
    if report["labelled_pixels"] == 0:
        raise ValueError(f"{vector_path}: no polygon covers a pixel centre of the grid"
                         f"{no_overlap_note(by_class, grid) or ' (no overlap?)'}")
    return label, report


def rasterize_labels_to_file(
    vector_path: PathLike,
    class_field: str,
    grid: Grid,
    schema: ClassSchema,
    out_path: PathLike,
    layer: Optional[str] = None,
    block: int = 2048,
    overwrite: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> Dict[str, Any]:
    """Rasterise window by window into a GeoTIFF (uint8, nodata 255, colour table)."""
    by_class, report = read_label_polygons(vector_path, class_field, grid, schema, layer, progress)
    windows = [w for w, _ in iter_windows(grid.width, grid.height, block)]
    conflicts = labelled = 0
    with open_writer(out_path, grid, 1, "uint8", schema.ignore_index, overwrite, ["class"]) as dst:
        dst.write_colormap(1, {i: (*schema.rgb(i), 255) for i in schema.ids})
        for k, window in enumerate(windows):
            progress.check()
            label, n = rasterize_window(by_class, grid, window, schema.ignore_index)
            conflicts += n
            labelled += int((label != schema.ignore_index).sum())
            dst.write(label[None], window=window)
            progress.report((k + 1) / len(windows), "rasterising labels")
        if labelled == 0:
            raise ValueError(f"{vector_path}: no polygon covers a pixel centre of the grid"
                             f"{no_overlap_note(by_class, grid) or ' (no overlap?)'}")
    report.update(conflict_pixels=conflicts, labelled_pixels=labelled, path=str(out_path))
    return report
