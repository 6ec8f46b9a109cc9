"""Area of interest: a bounding box or the polygons of a vector file, on the model grid.

The AOI crops the output grid to its extent (whole pixels), selects the tiles that touch it,
and masks pixels outside it to nodata.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from affine import Affine
from rasterio.features import geometry_mask

from ..raster.grid import Grid
from ..validate import SgcadError, check_single_layer
from ..vector.geometry import area_polygons, linear, to_crs, union_all

AoiLike = Union[str, Path, Sequence[float]]

#: A polygon AOI whose pixel window is at most this large is checked for covering a pixel centre (fast).
_CENTRE_CHECK_PIXELS = 4_000_000


@dataclass
class Aoi:
    """An AOI in the CRS of a grid: its geometry (OGR) and its pixel window on that grid."""

    geometry: object  # osgeo.ogr.Geometry in the grid CRS
    grid: Grid
    is_box: bool

    def pixel_window(self) -> Tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the pixels whose area meets the AOI, clipped to the grid."""
        minx, maxx, miny, maxy = self.geometry.GetEnvelope()
        inv = ~self.grid.transform
        cols, rows = zip(*(inv * (x, y) for x in (minx, maxx) for y in (miny, maxy)))
        eps = 1e-6  # an edge exactly on a pixel boundary does not pull in the next pixel
        x0, x1 = math.floor(min(cols) + eps), math.ceil(max(cols) - eps)
        y0, y1 = math.floor(min(rows) + eps), math.ceil(max(rows) - eps)
        return max(x0, 0), max(y0, 0), min(x1, self.grid.width), min(y1, self.grid.height)

    def intersects(self, grid: Grid, x0: int, y0: int, x1: int, y1: int) -> bool:
        """Whether the pixel rectangle [x0, x1) x [y0, y1) of ``grid`` meets the AOI."""
        from osgeo import ogr

        t = grid.transform
        corners = [t * (x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))]
        ring = ogr.Geometry(ogr.wkbLinearRing)
        for x, y in corners:
            ring.AddPoint_2D(x, y)
        poly = ogr.Geometry(ogr.wkbPolygon)
        poly.AddGeometry(ring)
        return bool(self.geometry.Intersects(poly))

    def mask(self, grid: Grid, x0: int, y0: int, width: int, height: int) -> Optional[np.ndarray]:
        """Boolean (h, w), True for pixels whose centre is inside; None when all are inside."""
        if self.is_box:
            return None  # the grid was cropped to the box: every pixel is inside
        transform = grid.transform * Affine.translation(x0, y0)
        shape = json.loads(self.geometry.ExportToJson())
        return geometry_mask([shape], out_shape=(height, width), transform=transform, invert=True)


def _srs(wkt_or_user: str):
    from osgeo import osr

    srs = osr.SpatialReference()
    if srs.SetFromUserInput(wkt_or_user) != 0:
        raise ValueError(f"AOI: cannot understand the CRS {wkt_or_user!r}; give e.g. EPSG:32631")
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)  # x = easting/longitude
    return srs


def load_aoi(aoi: AoiLike, grid: Grid) -> Aoi:
    """Parse an AOI and bring it into the grid's CRS.

    Args:
        aoi: a vector file (polygons; every feature of its first layer is used), or a box
            ``(minx, miny, maxx, maxy)`` / ``"minx,miny,maxx,maxy[,CRS]"`` in the grid CRS
            unless a CRS is given.
        grid: the model grid.

    Raises:
        ValueError: unreadable file, no polygon with an area, malformed or flat box, an AOI outside
            the grid, or polygons that cover no pixel centre of it.
    """
    from osgeo import ogr, osr

    target = _srs(grid.crs_wkt)
    if isinstance(aoi, (str, Path)) and Path(aoi).exists():
        geom, source = _read_polygons(Path(aoi)), None
        is_box = False
    else:
        if isinstance(aoi, Path) or (isinstance(aoi, str) and "," not in aoi):  # a file name, not a box
            raise FileNotFoundError(f"AOI {aoi}: file not found; give an existing polygon file or a box "
                                    "'minx,miny,maxx,maxy[,CRS]'")
        parts = [p.strip() for p in aoi.split(",")] if isinstance(aoi, str) else list(aoi)
        if len(parts) not in (4, 5):
            raise ValueError(f"AOI {aoi!r}: expected a polygon file or a box 'minx,miny,maxx,maxy[,CRS]'")
        try:
            minx, miny, maxx, maxy = (float(v) for v in parts[:4])
        except ValueError:
            raise ValueError(
                f"AOI {aoi!r}: the box coordinates must be numbers (or the file does not exist)"
            ) from None
        if not (minx < maxx and miny < maxy):
            raise SgcadError(_empty_box(aoi, minx, miny, maxx, maxy))
        if len(parts) == 4:
            _check_not_xmin_xmax_order(aoi, (minx, miny, maxx, maxy), grid)
        geom = ogr.CreateGeometryFromWkt(
            f"POLYGON(({minx} {miny},{maxx} {miny},{maxx} {maxy},{minx} {maxy},{minx} {miny}))"
        )
        source = _srs(str(parts[4])) if len(parts) == 5 else None
        is_box = source is None
    if source is None and not is_box:
        source = geom.GetSpatialReference()
    if source is not None and not source.IsSame(target):
        source.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        to_crs(geom, osr.CoordinateTransformation(source, target), f"AOI {aoi}: cannot be brought into the grid's CRS",
               source)
    result = Aoi(geom, grid, is_box)
    x0, y0, x1, y1 = result.pixel_window()
    if x1 <= x0 or y1 <= y0 or not result.intersects(grid, 0, 0, grid.width, grid.height):
        left, bottom, right, top = grid.bounds
        raise ValueError(
            f"AOI {aoi!r} does not overlap the scene (grid extent {left:.1f}, {bottom:.1f}, "
            f"{right:.1f}, {top:.1f} in the grid CRS)"
        )
    if not is_box and (x1 - x0) * (y1 - y0) <= _CENTRE_CHECK_PIXELS and not result.mask(grid, x0, y0, x1 - x0,
                                                                                         y1 - y0).any():
        rx, ry = grid.res
        units = grid.crs.linear_units.lower()
        unit = " m" if units in ("metre", "meter", "m") else f" {units}"
        raise SgcadError(
            f"AOI {aoi}: the area of interest covers no pixel centre of the {rx:.3g}{unit} grid (its polygons "
            f"cover {geom.GetArea():.3g}{unit}², one pixel {rx * ry:.3g}{unit}²), so nothing would be mapped; "
            "draw a larger area (at least one pixel) or leave the area of interest empty"
        )
    return result


def _check_not_xmin_xmax_order(aoi: AoiLike, box: Tuple[float, float, float, float], grid: Grid) -> None:
    """Refuse a box typed in QGIS's extent order (xmin, xmax, ymin, ymax): read as minx, miny, maxx, maxy it is
    a box hundreds of times larger that still covers the scene, so it mapped far more than asked, silently."""
    a, b, c, d = box
    left, bottom, right, top = grid.bounds
    if not (a < b and c < d and a < right and b > left and c < top and d > bottom):
        return  # the other order makes no box on the scene
    if (c - a) * (d - b) <= 100 * (b - a) * (d - c):
        return
    raise SgcadError(
        f"AOI {aoi}: read as minx,miny,maxx,maxy it is {c - a:.6g} x {d - b:.6g} grid units, while the scene is "
        f"{right - left:.6g} x {top - bottom:.6g}; it looks like QGIS's xmin,xmax,ymin,ymax order: give "
        f"'{a:.10g},{c:.10g},{b:.10g},{d:.10g}'"
    )


def _empty_box(aoi: AoiLike, minx: float, miny: float, maxx: float, maxy: float) -> str:
    """Why a box is refused: which side has no extent, with its numbers."""
    flat = [f"zero width (x {minx:.12g} to {maxx:.12g})" if minx == maxx else "",
            f"zero height (y {miny:.12g} to {maxy:.12g})" if miny == maxy else ""]
    if any(flat):
        problem = " and ".join(f for f in flat if f)
        return (f"AOI box {aoi!r}: the area of interest has {problem}; draw a rectangle with an area, "
                "or leave the area of interest empty for the whole scene")
    return f"AOI box {aoi!r}: needs minx < maxx and miny < maxy (give minx,miny,maxx,maxy)"


def _read_polygons(path: Path):
    from osgeo import ogr

    ds = ogr.Open(str(path))
    if ds is None or ds.GetLayerCount() == 0:
        raise ValueError(f"AOI {path}: not a readable vector file (GeoPackage, Shapefile, GeoJSON ...)")
    if ds.GetLayerCount() > 1:  # the first layer is read: refuse a file where the user may mean another
        check_single_layer(path, "area of interest")
    layer = ds.GetLayer(0)
    name, srs = layer.GetName(), layer.GetSpatialRef()
    parts, kinds, flat, feature, g = [], Counter(), 0, None, None
    for feature in layer:
        g = feature.GetGeometryRef()
        kind = ogr.GT_Flatten(linear(g).GetGeometryType()) if g is not None else None
        if kind not in (ogr.wkbPolygon, ogr.wkbMultiPolygon, ogr.wkbGeometryCollection):
            kinds[ogr.GeometryTypeToName(kind).lower() if kind is not None else "empty geometry"] += 1
            continue
        g = area_polygons(g)
        if g is None:  # a ring without area (too few points, all points on a line)
            flat += 1
            continue
        parts.append(g)
    union = union_all(parts)
    # release in order (geometry, feature, layer, data source): a traceback keeping this frame alive would
    # otherwise let the garbage collector free the data source first and crash on the rest
    g = feature = layer = None
    ds = None
    if union is None:
        found = [f"{n} {kind}(s)" for kind, n in kinds.items()]
        if flat:
            found.append(f"{flat} polygon(s) without an area (invalid or degenerate rings)")
        holds = ", ".join(found) if found else "no features"
        raise SgcadError(
            f"AOI {path}: layer {name!r} holds no polygon with an area ({holds}); "
            "an area of interest needs polygons: draw or choose a polygon layer"
        )
    if srs is None:
        raise ValueError(f"AOI {path}: the layer has no CRS; assign one (e.g. in QGIS) first")
    union.AssignSpatialReference(srs)
    return union
