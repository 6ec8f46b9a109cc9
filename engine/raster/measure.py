"""Ground measures (m², m) of geometries drawn in a raster grid's coordinates.

Users give minimum areas in m² and tolerances in metres, and expect areas in m² and km², whatever
the raster's CRS. On a projected CRS a map unit is the CRS's linear unit. On a geographic CRS
(many Sentinel-1 products and Sen1Floods11 chips are in EPSG:4326) areas and lengths are taken on
the CRS's ellipsoid, as QGIS measures them and as the flood report's pixel areas are
(:mod:`.ellipsoid`): exact for edges along parallels and meridians, which is every edge of a
polygon traced from a north-up grid, so a polygon layer's areas add up to the flood report's. A
slanted edge's length mixes its east and north parts in quadrature. On a projected CRS that distorts
areas (Web Mercator; :func:`.grid.projected_area_scale`) a polygon's map-unit area is scaled by the CRS's
area scale at its centroid's row, and lengths by its square root (exact scale for a conformal CRS), so the
polygons' areas add up to the reports' there too. A CRS with no ground unit (an engineering CRS) is not
measured.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np
from osgeo import ogr, osr

from .ellipsoid import ellipsoid_of
from .grid import Grid, projected_area_scale


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
        self.ellipsoid = ellipsoid_of(grid.crs_wkt) if self.geographic else None
        t = grid.transform
        self._pixel_area_units = abs(t.a * t.e - t.b * t.d)
        # the grid's centre: where a geographic grid's pixel area and degree length are taken
        self._centre = t * (grid.width / 2.0, grid.height / 2.0)
        self._pixel = (t.a, t.b, t.d, t.e)
        # a distorting projection's ground / map area ratio by row (None: map units are ground units)
        self._scale = projected_area_scale(grid) if self.unit_m is not None else None
        self._inverse = ~t

    @property
    def measured(self) -> bool:
        """Whether ground measures exist (a projected or a geographic CRS)."""
        return self.geographic or self.unit_m is not None

    def area_perimeter(self, geom: ogr.Geometry, area: float,
                       perimeter: float) -> Tuple[Optional[float], Optional[float]]:
        """Area (m²) and perimeter (m, holes included) of a polygon or multipolygon whose map-unit
        ``area`` and ``perimeter`` are known; None when not measured."""
        if self.unit_m is not None:
            centroid = geom.Centroid()
            scale = self._area_scale(centroid.GetX(), centroid.GetY()) if not centroid.IsEmpty() else 1.0
            return area * self.unit_m**2 * scale, perimeter * self.unit_m * math.sqrt(scale)
        if not self.geographic:
            return None, None
        area = perimeter = 0.0
        for polygon in _polygons(geom):
            for k in range(polygon.GetGeometryCount()):
                ring = polygon.GetGeometryRef(k)
                ring_area, ring_length = self.ellipsoid.ring(np.asarray(ring.GetPoints(), np.float64)[:, :2])
                area += ring_area if k == 0 else -ring_area  # ring 0 is the outer boundary
                perimeter += ring_length
        return area, perimeter

    def pixel_area_m2(self) -> Optional[float]:
        """Ground area of one pixel (at the grid's centre on a geographic grid)."""
        if self.unit_m is not None:
            return self._pixel_area_units * self.unit_m**2 * self._area_scale(*self._centre)
        if not self.geographic:
            return None
        x, y = self._centre
        a, b, d, e = self._pixel
        corners = [(x, y), (x + a, y + d), (x + a + b, y + d + e), (x + b, y + e), (x, y)]
        return self.ellipsoid.ring(np.asarray(corners, np.float64))[0]

    def metres_per_unit(self) -> Optional[float]:
        """Ground length of one map unit; on a geographic grid, of one degree at the grid's centre,
        the geometric mean of its east-west and north-south lengths (a tolerance is then
        approximate: exact north-south, off by the square root of cos(latitude) east-west)."""
        if self.unit_m is not None:
            return self.unit_m * math.sqrt(self._area_scale(*self._centre))
        if not self.geographic:
            return None
        lat = self._centre[1]
        east = max(float(self.ellipsoid.parallel_radius(lat)), 1e-6 * self.ellipsoid.semi_major_m)
        return math.radians(1.0) * math.sqrt(east * float(self.ellipsoid.meridian_radius(lat)))

    def _area_scale(self, x: float, y: float) -> float:
        """Ground / map area ratio of a projected grid at map point (x, y): 1 where the CRS keeps areas."""
        if self._scale is None:
            return 1.0
        row = (self._inverse * (x, y))[1]
        return float(np.interp(row, *self._scale))


def _polygons(geom: ogr.Geometry) -> Sequence[ogr.Geometry]:
    if ogr.GT_Flatten(geom.GetGeometryType()) == ogr.wkbPolygon:
        return [geom]
    return [geom.GetGeometryRef(i) for i in range(geom.GetGeometryCount())]
