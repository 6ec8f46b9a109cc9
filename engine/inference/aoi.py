"""Area of interest: a bounding box or the polygons of a vector file, on the model grid.

The AOI crops the output grid to its extent (whole pixels), selects the tiles that touch it,
and masks pixels outside it to nodata.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from affine import Affine
from rasterio.features import geometry_mask

from ..raster.grid import Grid

AoiLike = Union[str, Path, Sequence[float]]


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
        ValueError: unreadable file, no polygons, malformed box, or an AOI outside the grid.
    """
    from osgeo import ogr, osr

    target = _srs(grid.crs_wkt)
    if isinstance(aoi, (str, Path)) and Path(aoi).exists():
        geom, source = _read_polygons(Path(aoi)), None
        is_box = False
    else:
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
            raise ValueError(f"AOI box {aoi!r}: needs minx < maxx and miny < maxy")
        geom = ogr.CreateGeometryFromWkt(
            f"POLYGON(({minx} {miny},{maxx} {miny},{maxx} {maxy},{minx} {maxy},{minx} {miny}))"
        )
        source = _srs(str(parts[4])) if len(parts) == 5 else None
        is_box = source is None
    if source is None and not is_box:
        source = geom.GetSpatialReference()
    if source is not None and not source.IsSame(target):
        source.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        geom.Transform(osr.CoordinateTransformation(source, target))
    result = Aoi(geom, grid, is_box)
    x0, y0, x1, y1 = result.pixel_window()
    if x1 <= x0 or y1 <= y0 or not result.intersects(grid, 0, 0, grid.width, grid.height):
        left, bottom, right, top = grid.bounds
        raise ValueError(
            f"AOI {aoi!r} does not overlap the scene (grid extent {left:.1f}, {bottom:.1f}, "
            f"{right:.1f}, {top:.1f} in the grid CRS)"
        )
    return result


def _read_polygons(path: Path):
    from osgeo import ogr

    ds = ogr.Open(str(path))
    if ds is None or ds.GetLayerCount() == 0:
        raise ValueError(f"AOI {path}: not a readable vector file (GeoPackage, Shapefile, GeoJSON ...)")
    layer = ds.GetLayer(0)
    srs = layer.GetSpatialRef()
    union = None
    for feature in layer:
        g = feature.GetGeometryRef()
        if g is None or ogr.GT_Flatten(g.GetGeometryType()) not in (ogr.wkbPolygon, ogr.wkbMultiPolygon):
            continue
        g = g.Clone()
        union = g if union is None else union.Union(g)
    if union is None:
        raise ValueError(f"AOI {path}: layer {layer.GetName()!r} holds no polygons")
    if srs is None:
        raise ValueError(f"AOI {path}: the layer has no CRS; assign one (e.g. in QGIS) first")
    union.AssignSpatialReference(srs)
    return union
