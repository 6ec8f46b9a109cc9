"""Ground measures (m², m) of geometries drawn in a raster grid's coordinates.

Users give minimum areas in m² and tolerances in metres, and expect areas in m² and km², whatever
the raster's CRS. On a projected CRS a map unit is the CRS's linear unit. On a geographic CRS
(many Sentinel-1 products and Sen1Floods11 chips are in EPSG:4326) areas and lengths are taken on
the sphere of radius :data:`~engine.raster.grid.EARTH_RADIUS_M`, the one the flood report's pixel
areas use: an area is the polygon's area in the sphere's cylindrical equal-area projection
(x = longitude, y = sin latitude), and an edge's length is measured along its parallel or meridian
(mixed in quadrature for a slanted edge). Both are exact for edges along parallels and meridians,
which is every edge of a polygon traced from a north-up grid, so a polygon layer's areas add up to
the flood report's. Areas on the WGS84 ellipsoid differ from that sphere's by -0.45 % at the equator,
+0.2 % at 45° and +0.6 % at 60° of latitude. A CRS with no ground unit (an engineering CRS) is not
measured.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np
from osgeo import ogr, osr

from .grid import EARTH_RADIUS_M, Grid


class GroundMeasure:
    """Areas and lengths on the ground of geometries in ``grid``'s CRS.

    Args:
        grid: the raster grid whose map coordinates the geometries use.
    """

    def __init__(self, grid: Grid) -> None:
        srs = osr.SpatialReference()
        srs.ImportFromWkt(grid.crs_wkt)
        self.geographic = bool(srs.IsGeographic())
        self.unit_m: Optional[float] = float(srs.GetLinearUnits()) if srs.IsProjected() else None
        t = grid.transform
        self._pixel_area_units = abs(t.a * t.e - t.b * t.d)
        # the grid's centre: where a geographic grid's pixel area and degree length are taken
        self._centre = t * (grid.width / 2.0, grid.height / 2.0)
        self._pixel = (t.a, t.b, t.d, t.e)

    @property
    def measured(self) -> bool:
        """Whether ground measures exist (a projected or a geographic CRS)."""
        return self.geographic or self.unit_m is not None

    def area_perimeter(self, geom: ogr.Geometry, area: float,
                       perimeter: float) -> Tuple[Optional[float], Optional[float]]:
        """Area (m²) and perimeter (m, holes included) of a polygon or multipolygon whose map-unit
        ``area`` and ``perimeter`` are known; None when not measured."""
        if self.unit_m is not None:
            return area * self.unit_m**2, perimeter * self.unit_m
        if not self.geographic:
            return None, None
        area = perimeter = 0.0
        for polygon in _polygons(geom):
            for k in range(polygon.GetGeometryCount()):
                ring = polygon.GetGeometryRef(k)
                ring_area, ring_length = sphere_ring(np.asarray(ring.GetPoints(), np.float64)[:, :2])
                area += ring_area if k == 0 else -ring_area  # ring 0 is the outer boundary
                perimeter += ring_length
        return area, perimeter

    def pixel_area_m2(self) -> Optional[float]:
        """Ground area of one pixel (at the grid's centre on a geographic grid)."""
        if self.unit_m is not None:
            return self._pixel_area_units * self.unit_m**2
        if not self.geographic:
            return None
        x, y = self._centre
        a, b, d, e = self._pixel
        corners = [(x, y), (x + a, y + d), (x + a + b, y + d + e), (x + b, y + e), (x, y)]
        return sphere_ring(np.asarray(corners, np.float64))[0]

    def metres_per_unit(self) -> Optional[float]:
        """Ground length of one map unit; on a geographic grid, of one degree at the grid's centre,
        the geometric mean of its east-west and north-south lengths (a tolerance is then
        approximate: exact north-south, off by the square root of cos(latitude) east-west)."""
        if self.unit_m is not None:
            return self.unit_m
        if not self.geographic:
            return None
        metres_per_degree = math.radians(EARTH_RADIUS_M)
        return metres_per_degree * math.sqrt(max(math.cos(math.radians(self._centre[1])), 1e-6))


def sphere_ring(lonlat: np.ndarray) -> Tuple[float, float]:
    """Area (m², unsigned) and length (m) of a closed ring of (longitude, latitude) degrees (module docstring)."""
    lon, lat = np.radians(lonlat[:, 0]), np.radians(lonlat[:, 1])
    x, y = lon, np.sin(lat)
    area = 0.5 * abs(float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))) * EARTH_RADIUS_M**2
    east = np.diff(lon) * np.cos(0.5 * (lat[1:] + lat[:-1]))  # exact along a parallel: both ends share it
    length = float(np.sum(np.hypot(east, np.diff(lat)))) * EARTH_RADIUS_M
    return area, length


def _polygons(geom: ogr.Geometry) -> Sequence[ogr.Geometry]:
    if ogr.GT_Flatten(geom.GetGeometryType()) == ogr.wkbPolygon:
        return [geom]
    return [geom.GetGeometryRef(i) for i in range(geom.GetGeometryCount())]
