"""Class map to a GeoPackage polygon layer, streamed, with polygons merged across blocks.

Two streamed passes over the class raster, block by block (``block`` pixels, default 1024):

1. :func:`.components.scan_components`: connected components of equal class (4-connectivity),
   exact across block borders, with each component's pixel count, confidence sum and number of
   pieces (blocks it appears in). Components smaller than ``min_area`` are known here and are
   never traced.
2. Each block's components are traced by GDAL's polygoniser in global pixel coordinates (integer
   vertices). A component inside one block is final at once; the pieces of a component that
   crosses block borders are kept (as WKB) until its last piece has been traced, then unioned
   (exact: the pieces share integer vertices) and written. Then every polygon gets a canonical
   vertex list (:func:`.geometry.canonical`), loses holes smaller than ``min_area``, is moved to
   map coordinates, optionally simplified, measured and written.

The result does not depend on the block size: a tiled run writes the same polygons as a run
with one block covering the scene (tested). Memory holds the edge ids and per-component numbers
of pass 1 and the pieces of the components that are still open in pass 2, i.e. those crossing
the current block row; one component spanning the whole scene (a connected background class)
is held whole until the end, as its feature must be written whole.

Attributes: ``class_id``, ``class_name``, ``pixels`` (the component's pixel count), ``area`` and
``perimeter`` of the written polygon in map units, ``area_m2`` and ``perimeter_m`` on the ground
(on the CRS's ellipsoid for a geographic CRS, :mod:`engine.raster.measure`; empty only for a CRS without ground units),
``mean_conf`` (mean confidence of the component's pixels)
and ``sar_only`` (share of its pixels with negative confidence). ``engine segment`` writes the
teacher's confidence as a negative value where only SAR was available; the mean is taken over
the magnitude, so ``mean_conf`` is the confidence of whichever network answered there.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import rasterio
from affine import Affine
from osgeo import gdal, ogr, osr
from rasterio.windows import Window

from ..progress import NULL_PROGRESS, Progress
from ..raster.grid import Grid, grid_of, read_on_grid
from ..raster.io import WATER_MAP_NAMES, atomic_output, is_water_map, iter_windows, read_bands
from ..raster.measure import GroundMeasure
from .components import ClassComponents, label_classes, scan_components
from .geometry import (
    build_polygons,
    canonical_rings,
    drop_small_holes,
    polygon_parts,
    quiet_gdal,
    transform_rings,
    union_pieces,
)

gdal.UseExceptions()
ogr.UseExceptions()

PathLike = Union[str, Path]
FIELDS = (
    ("class_id", ogr.OFTInteger),
    ("class_name", ogr.OFTString),
    ("pixels", ogr.OFTInteger64),
    ("area", ogr.OFTReal),
    ("area_m2", ogr.OFTReal),
    ("perimeter", ogr.OFTReal),
    ("perimeter_m", ogr.OFTReal),
    ("mean_conf", ogr.OFTReal),
    ("sar_only", ogr.OFTReal),
)
TRANSACTION = 5000  # features per GeoPackage transaction


def class_names_of(path: PathLike) -> Dict[int, str]:
    """Class names stored in a class raster: the ``class_names`` JSON tag that SGCAD writes, a water map's
    two (:func:`~engine.raster.io.is_water_map`), else GDAL category names; empty when there are none."""
    with rasterio.open(path) as src:
        tag = src.tags().get("class_names")
        if is_water_map(src):
            return dict(enumerate(WATER_MAP_NAMES))
    if tag:
        try:
            return {int(k): str(v) for k, v in json.loads(tag).items()}
        except (ValueError, TypeError, AttributeError):
            pass
    ds = gdal.Open(str(path))
    try:
        cats = ds.GetRasterBand(1).GetCategoryNames() or []
    finally:
        ds = None  # noqa: F841
    return {i: n for i, n in enumerate(cats) if n}


def select_classes(
    wanted: Optional[Sequence[Union[int, str]]], names: Dict[int, str], path: PathLike
) -> Optional[List[int]]:
    """Class ids from ids or names (case-insensitive); None keeps every class.

    Raises:
        ValueError: a name that the raster does not hold.
    """
    if not wanted:
        return None
    by_name = {n.lower(): i for i, n in names.items()}
    out: List[int] = []
    for item in wanted:
        text = str(item).strip()
        if not text:
            continue
        try:
            out.append(int(text))
        except ValueError:
            if text.lower() not in by_name:
                known = ", ".join(f"{i} {n}" for i, n in sorted(names.items())) or "none stored"
                raise ValueError(f"{path}: no class named {text!r}; its classes are {known}") from None
            out.append(by_name[text.lower()])
    return sorted(set(out)) or None


#: colours of classes a raster's colour table does not give (ColorBrewer Set1/Dark2)
FALLBACK_COLORS = ("#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#a65628", "#f781bf", "#999999",
                   "#1b9e77", "#d95f02", "#7570b3", "#e7298a")


def class_colors_of(path: PathLike, band: int = 1) -> Dict[int, str]:
    """``#rrggbb`` per class value from the raster's colour table; empty without one."""
    with rasterio.open(path) as src:
        try:
            cmap = src.colormap(band)
        except ValueError:  # no colour table
            return {}
    return {int(v): "#{:02x}{:02x}{:02x}".format(*rgba[:3]) for v, rgba in cmap.items()}


def legend(per_class: Dict[str, Dict[str, Any]], colors: Dict[int, str]) -> List[Tuple[int, str, str]]:
    """``(class id, colour, label)`` of every class written, for styling the layer."""
    out = []
    for k, (name, entry) in enumerate(sorted(per_class.items(), key=lambda kv: kv[1]["class_id"])):
        cid = int(entry["class_id"])
        out.append((cid, colors.get(cid, FALLBACK_COLORS[k % len(FALLBACK_COLORS)]), f"{cid} {name}"))
    return out


def _malloc_trim() -> Callable[[], None]:
    """A function returning freed heap memory to the operating system (glibc's ``malloc_trim``).

    GEOS and OGR allocate and free many small blocks per polygon; glibc keeps freed memory in its
    arenas, so without trimming the resident size of a long run creeps up although nothing is
    held. Elsewhere (macOS, Windows, musl) this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return lambda: None
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


@contextlib.contextmanager
def _bounded_gdal_cache(limit: int = 64 * 1024 * 1024) -> Iterator[None]:
    previous = gdal.GetCacheMax()
    gdal.SetCacheMax(min(previous, limit))
    try:
        yield
    finally:
        gdal.SetCacheMax(previous)


class _Tracer:
    """GDAL's polygoniser on one block of root ids, in global pixel coordinates."""

    def __init__(self) -> None:
        self.mem = gdal.GetDriverByName("MEM")
        self.vmem = ogr.GetDriverByName("Memory")

    def trace(self, roots: np.ndarray, x0: int, y0: int) -> List[Tuple[int, ogr.Geometry]]:
        h, w = roots.shape
        if roots.max(initial=0) > np.iinfo(np.int32).max:
            raise ValueError("more than 2**31 components: use a larger minimum area or fewer classes")
        ds = self.mem.Create("", w, h, 1, gdal.GDT_Int32)
        ds.SetGeoTransform((float(x0), 1.0, 0.0, float(y0), 0.0, 1.0))
        ds.GetRasterBand(1).WriteArray(roots.astype(np.int32))
        mask = self.mem.Create("", w, h, 1, gdal.GDT_Byte)
        mask.GetRasterBand(1).WriteArray((roots > 0).astype(np.uint8))
        vds = self.vmem.CreateDataSource("pieces")
        layer = vds.CreateLayer("pieces", geom_type=ogr.wkbPolygon)
        layer.CreateField(ogr.FieldDefn("root", ogr.OFTInteger))
        gdal.Polygonize(ds.GetRasterBand(1), mask.GetRasterBand(1), layer, 0, [], callback=None)
        out = [(int(f.GetField(0)), f.GetGeometryRef().Clone()) for f in layer]
        layer = vds = ds = mask = None  # noqa: F841
        return out


def _check_other_layers(out_path: Path, layer_name: str) -> None:
    """Refuse to replace a GeoPackage that holds other layers than the one written: the output is written whole
    and renamed over the file, so ``overwrite`` deleted a project's label and AOI layers with it."""
    if not out_path.is_file():
        return
    from ..validate import SgcadError, vector_layers

    try:
        others = [name for name, _ in vector_layers(out_path) if name != layer_name]
    except SgcadError:  # not a vector file: nothing of the user's to lose but the file, which overwrite replaces
        others = []
    if others:
        raise ValueError(
            f"{out_path}: holds other layers ({', '.join(others[:8])}{' ...' if len(others) > 8 else ''}) that writing "
            "the polygons there would delete, --overwrite or not; write them to another GeoPackage"
        )


def vectorize_classes(
    classes_path: PathLike,
    out_path: PathLike,
    confidence_path: Optional[PathLike] = None,
    classes: Optional[Sequence[Union[int, str]]] = None,
    min_area: float = 0.0,
    simplify: float = 0.0,
    preserve_topology: bool = True,
    block: int = 1024,
    layer_name: str = "polygons",
    band: int = 1,
    names: Optional[Dict[int, str]] = None,
    overwrite: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> Dict[str, Any]:
    """Polygonise a class raster into a GeoPackage layer with attributes (module docstring).

    Args:
        classes_path: class raster (e.g. ``classes.tif`` of ``engine segment``); its nodata
            (255 for SGCAD class maps) and NaN make no polygon.
        out_path: the GeoPackage to write (``.gpkg``).
        confidence_path: optional confidence raster (``confidence.tif``) for ``mean_conf`` and
            ``sar_only``; read on the class raster's grid.
        classes: class ids or names to keep (e.g. ``["water"]``); default every class.
        min_area: polygons smaller than this (m² on the ground, whatever the CRS; map units²
            for a CRS without ground units) are dropped and holes smaller than this are filled;
            0 keeps everything. On a geographic grid the pixel area at the grid's centre converts it.
        simplify: Douglas-Peucker tolerance in metres on the ground (map units for a CRS without
            ground units; approximate on a geographic grid, :meth:`.GroundMeasure.metres_per_unit`);
            0 keeps the pixel outline.
        preserve_topology: simplify without self-intersections or holes leaving their polygon
            (GEOS topology-preserving simplifier); neighbouring polygons are simplified each on
            its own, so their shared border may open small gaps of up to ``simplify``.
        block: block edge in pixels (memory and speed only; the output does not depend on it).
        layer_name: GeoPackage layer name.
        band: band of the class raster.
        names: class names by id instead of those stored in the raster.
        overwrite: replace an existing output.
        progress: reporting and cancellation.

    Returns:
        ``path``, ``layer``, ``polygons`` written, ``per_class`` counts and areas, ``legend``
        (``(class id, colour, label)`` of each class written, colours from the raster's colour
        table), what was
        ``dropped`` (min area, collapsed by simplification), ``repaired`` (made valid after
        simplification), ``largest_area_m2``, ``holes_filled``, ``seconds`` and memory figures
        (``peak_open_pieces``). An empty layer and repairs are said as warnings.

    Raises:
        ValueError: unreadable or non-georeferenced input, a float class raster or an integer
            confidence raster, unknown class names, bad settings,
            an existing output without ``overwrite``.
        Canceled: on cancel; no output is left.
    """
    t0 = time.perf_counter()
    classes_path = Path(classes_path)
    if not classes_path.exists():
        raise FileNotFoundError(f"class raster {classes_path} does not exist")
    if confidence_path is not None and not Path(confidence_path).exists():
        raise FileNotFoundError(f"confidence raster {confidence_path} does not exist")
    if Path(out_path).suffix.lower() != ".gpkg":
        raise ValueError(f"{out_path}: the polygons are written as a GeoPackage; give a .gpkg file name")
    if min_area < 0 or simplify < 0:
        raise ValueError(f"minimum area and simplification tolerance must be >= 0, got {min_area}, {simplify}")
    if block < 16:
        raise ValueError(f"block must be at least 16 pixels, got {block}")
    _check_kinds(classes_path, band, confidence_path)
    _check_other_layers(Path(out_path), layer_name)
    grid = grid_of(classes_path)
    names = dict(names) if names else class_names_of(classes_path)
    keep = select_classes(classes, names, classes_path)
    t = grid.transform
    measure = GroundMeasure(grid)
    pixel_area = measure.pixel_area_m2() or abs(t.a * t.e - t.b * t.d)
    min_pixels = min_area / pixel_area if min_area > 0 else 0.0
    tolerance = simplify / (measure.metres_per_unit() or 1.0)  # map units

    def read(win: Window, with_confidence: bool = True) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        values = read_bands(classes_path, [band], win)[0]
        member = np.isfinite(values)
        cls = np.where(member, values, -1).astype(np.int64)
        if keep is not None:
            member &= np.isin(cls, keep)
        conf = None
        if confidence_path and with_confidence:
            conf = read_on_grid(confidence_path, [1], grid, win, "nearest")[0]
        return cls, member, conf

    with _bounded_gdal_cache():
        comps = scan_components(grid.width, grid.height, block, read, progress.sub(0.0, 0.4))
        wanted = comps.pixels >= max(min_pixels, 1)
        wanted[0] = False
        dropped_small = int(((comps.pixels > 0) & ~wanted).sum())
        srs = osr.SpatialReference()
        srs.ImportFromWkt(grid.crs_wkt)
        with atomic_output(out_path, overwrite) as tmp:
            writer = _Writer(tmp, layer_name, srs, names, comps, measure)
            try:
                stats = _trace_all(
                    grid, comps, wanted, read, writer, t, min_pixels, tolerance, preserve_topology,
                    progress.sub(0.4, 1.0),
                )
            finally:
                writer.close()
    stats.update(
        path=str(out_path),
        layer=layer_name,
        components=comps.count,
        classes_kept=keep if keep is not None else "all",
        dropped={"below_min_area": dropped_small, "collapsed_by_simplification": stats.pop("collapsed")},
        largest_area_m2=round(float(comps.pixels[1:].max(initial=0)) * pixel_area, 3),
        per_class=writer.per_class(),
        polygons=writer.written,
        legend=legend(writer.per_class(), class_colors_of(classes_path, band)),
        crs_units_m=measure.unit_m,
        ground_units="ellipsoid" if measure.geographic else ("crs" if measure.measured else "none"),
        seconds=round(time.perf_counter() - t0, 3),
        block=block,
    )
    for message in _empty_or_repaired(stats, classes_path, keep, min_area, simplify):
        progress.warning(message)
    progress.report(1.0, "polygons written")
    return stats


def _check_kinds(classes_path: Path, band: int, confidence_path: Optional[PathLike]) -> None:
    """Refuse a class raster that holds no class ids (floats) and a confidence raster that holds integers."""
    with rasterio.open(classes_path) as src:
        if not 1 <= band <= src.count:
            raise ValueError(f"{classes_path}: band {band} does not exist (the raster has {src.count} band(s))")
        dtype = src.dtypes[band - 1]
    if np.dtype(dtype).kind not in "ui":  # class ids are integers; floats would be truncated into classes
        raise ValueError(f"{classes_path}: expected an integer class raster (class ids, e.g. classes.tif of "
                         f"segment), got {dtype} in band {band}: a continuous raster is not a class map")
    if confidence_path is not None:
        with rasterio.open(confidence_path) as src:
            dtype = src.dtypes[0]
        if np.dtype(dtype).kind != "f":  # confidences are fractions; integers are class ids or counts
            raise ValueError(f"{confidence_path}: expected a float confidence raster (confidence.tif of segment, "
                             f"values -1..1), got {dtype}: an integer raster such as a class map is not a confidence")


def _empty_or_repaired(stats: Dict[str, Any], path: Path, keep: Optional[List[int]], min_area: float,
                       simplify: float) -> List[str]:
    """Warnings for an empty layer (with why) and for polygons that simplification made invalid."""
    out = []
    if stats["polygons"] == 0:
        dropped = stats["dropped"]
        if stats["components"] == 0:
            kept = "" if keep is None else f" of class(es) {keep}"
            out.append(f"{path.name} holds no pixel{kept} outside nodata: the polygon layer is empty")
        elif dropped["below_min_area"]:
            out.append(f"all {dropped['below_min_area']} connected area(s) are smaller than the minimum area "
                       f"{min_area:g} m² (the largest is {stats['largest_area_m2']:g} m²): the polygon layer is empty")
        elif dropped["collapsed_by_simplification"]:
            out.append(f"all {dropped['collapsed_by_simplification']} polygon(s) collapsed when simplified with a "
                       f"tolerance of {simplify:g} m: the polygon layer is empty; choose a smaller tolerance")
    elif stats["dropped"]["collapsed_by_simplification"]:
        out.append(f"{stats['dropped']['collapsed_by_simplification']} polygon(s) collapsed when simplified with a "
                   f"tolerance of {simplify:g} m and were left out")
    if stats["repaired"]:
        out.append(f"{stats['repaired']} polygon(s) became invalid (self-intersecting, holes outside their shell) "
                   f"when simplified with a tolerance of {simplify:g} m and were repaired (make-valid); a smaller "
                   "tolerance keeps outlines closer to the pixels")
    return out


def _trace_all(
    grid: Grid,
    comps: ClassComponents,
    wanted: np.ndarray,
    read,
    writer: _Writer,
    transform: Affine,
    min_pixels: float,
    simplify: float,
    preserve_topology: bool,
    progress: Progress,
) -> Dict[str, Any]:
    """Pass 2: trace each block, finish components whose last piece arrived, write them."""
    tracer = _Tracer()
    release = _malloc_trim()
    received = np.zeros(comps.pieces.shape, np.int32)
    open_pieces: Dict[int, List[bytes]] = {}
    peak_open = peak_bytes = open_bytes = 0
    holes = collapsed = repaired = 0
    windows = list(iter_windows(grid.width, grid.height, comps.block))

    def finish(root: int, geom: ogr.Geometry) -> None:
        nonlocal holes, collapsed, repaired
        rings, filled = drop_small_holes(canonical_rings(geom), min_pixels)
        holes += filled
        geom = build_polygons(transform_rings(rings, transform))
        if simplify > 0:
            geom = geom.SimplifyPreserveTopology(simplify) if preserve_topology else geom.Simplify(simplify)
            with quiet_gdal():  # the repairs are counted and said once, as a warning
                invalid = geom is not None and not geom.IsEmpty() and not geom.IsValid()
                if invalid:
                    # a coarse tolerance folds outlines over themselves (even GEOS's topology-preserving
                    # simplifier lets holes leave their shell): repaired, not written invalid
                    geom = polygon_parts(geom.MakeValid())
                    repaired += 1
            if geom is None or geom.IsEmpty() or geom.GetArea() <= 0:
                collapsed += 1
                return
        writer.write(root, geom)

    for i, (win, _) in enumerate(windows):
        progress.check()
        cls, member, _ = read(win, False)
        labels, _ = label_classes(cls, member)
        roots = comps.roots(win, labels)
        roots[~wanted[roots]] = 0
        for root, geom in tracer.trace(roots, int(win.col_off), int(win.row_off)):
            need = int(comps.pieces[root])
            if need == 1:
                finish(root, geom)
                continue
            wkb = bytes(geom.ExportToWkb(ogr.wkbNDR))
            open_pieces.setdefault(root, []).append(wkb)
            open_bytes += len(wkb)
            received[root] += 1
            if received[root] == need:
                pieces = open_pieces.pop(root)
                open_bytes -= sum(len(p) for p in pieces)
                finish(root, union_pieces(pieces))
        peak_open = max(peak_open, sum(len(v) for v in open_pieces.values()))
        peak_bytes = max(peak_bytes, open_bytes)
        if int(win.col_off) + int(win.width) >= grid.width:  # end of a block row
            release()
        progress.report((i + 1) / len(windows), f"polygons: block {i + 1}/{len(windows)}")
    if open_pieces:  # every piece of every component was traced: nothing may be left
        raise RuntimeError(f"{len(open_pieces)} component(s) were not completed")
    return {"holes_filled": holes, "collapsed": collapsed, "repaired": repaired, "peak_open_pieces": peak_open,
            "peak_open_piece_bytes": peak_bytes}


class _Writer:
    """Features into a GeoPackage layer, in transactions, with per-class totals."""

    def __init__(self, path: Path, layer_name: str, srs, names: Dict[int, str], comps: ClassComponents,
                 measure: GroundMeasure) -> None:
        self.ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
        self.layer = self.ds.CreateLayer(layer_name, srs=srs, geom_type=ogr.wkbMultiPolygon)
        for name, kind in FIELDS:
            field = ogr.FieldDefn(name, kind)
            if name == "class_name":
                field.SetWidth(64)
            self.layer.CreateField(field)
        self.defn = self.layer.GetLayerDefn()
        self.index = {name: self.defn.GetFieldIndex(name) for name, _ in FIELDS}
        self.names, self.comps, self.measure = names, comps, measure
        self.written = 0
        self.totals: Dict[int, List[float]] = {}  # class -> polygons, map-unit area, ground area
        self.layer.StartTransaction()

    def write(self, root: int, geom: ogr.Geometry) -> None:
        c = self.comps
        cls = int(c.cls[root])
        area, perimeter = geom.GetArea(), geom.Boundary().Length()
        area_m2, perimeter_m = self.measure.area_perimeter(geom, area, perimeter)
        feature = ogr.Feature(self.defn)
        f = self.index
        feature.SetField(f["class_id"], cls)
        feature.SetField(f["class_name"], self.names.get(cls, f"class {cls}"))
        feature.SetField(f["pixels"], int(c.pixels[root]))
        feature.SetField(f["area"], float(area))
        feature.SetField(f["perimeter"], float(perimeter))
        if area_m2 is not None:
            feature.SetField(f["area_m2"], float(area_m2))
            feature.SetField(f["perimeter_m"], float(perimeter_m))
        if c.conf_pixels[root] > 0:
            feature.SetField(f["mean_conf"], float(c.conf_sum[root] / c.conf_pixels[root]))
            feature.SetField(f["sar_only"], float(c.sar_only[root] / c.conf_pixels[root]))
        feature.SetGeometry(ogr.ForceToMultiPolygon(geom))
        self.layer.CreateFeature(feature)
        self.written += 1
        total = self.totals.setdefault(cls, [0, 0.0, 0.0])
        total[0] += 1
        total[1] += area
        total[2] += area_m2 or 0.0
        if self.written % TRANSACTION == 0:
            self.layer.CommitTransaction()
            self.layer.StartTransaction()

    def per_class(self) -> Dict[str, Dict[str, float]]:
        out = {}
        for cls, (n, area, area_m2) in sorted(self.totals.items()):
            entry = {"class_id": cls, "polygons": int(n), "area": round(float(area), 3)}
            if self.measure.measured:
                entry["area_km2"] = round(float(area_m2) / 1e6, 6)
            out[self.names.get(cls, f"class {cls}")] = entry
        return out

    def close(self) -> None:
        if self.ds is None:
            return
        try:
            self.layer.CommitTransaction()
        finally:
            self.layer = self.defn = None
            self.ds = None
