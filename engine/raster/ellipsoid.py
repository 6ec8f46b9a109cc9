"""The ellipsoid of a geographic CRS: ground areas and lengths from longitude and latitude.

QGIS measures areas and lengths on the project's ellipsoid, so the areas this project reports for a
geographic grid (flood report, water map, polygons, explain) are taken on the CRS's own ellipsoid
(WGS84 for EPSG:4326), not on a sphere: a sphere of 6 371 km is off by -0.45 % at the equator and
+0.6 % at 60° of latitude.

An area is exact for any polygon whose edges run along parallels and meridians (every pixel and
every outline traced from a north-up grid): it is the polygon's area in the ellipsoid's cylindrical
equal-area projection, x = a λ and y = a q(φ) / 2, with q the authalic function (Snyder 1987,
eq. 3-12). A length along a parallel is exact; along a meridian it uses the meridian's radius of
curvature at the edge's middle, within 1e-6 for edges under a degree.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from osgeo import osr


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid of revolution.

    Args:
        semi_major_m: equatorial radius a (m).
        flattening: f = (a - b) / a; 0 for a sphere.
    """

    semi_major_m: float
    flattening: float

    @property
    def e2(self) -> float:
        """First eccentricity squared."""
        return self.flattening * (2.0 - self.flattening)

    def equal_area_y(self, lat_deg: np.ndarray) -> np.ndarray:
        """y (m) of the cylindrical equal-area projection: a cell's area is a Δλ (radians) times Δy."""
        s = np.sin(np.radians(np.asarray(lat_deg, np.float64)))
        a, e2 = self.semi_major_m, self.e2
        if e2 < 1e-15:
            return a * s
        e = math.sqrt(e2)
        q = (1.0 - e2) * (s / (1.0 - e2 * s * s) - np.log((1.0 - e * s) / (1.0 + e * s)) / (2.0 * e))
        return 0.5 * a * q

    def parallel_radius(self, lat_deg: np.ndarray) -> np.ndarray:
        """Radius (m) of the parallel at ``lat_deg``: metres per radian of longitude."""
        phi = np.radians(np.asarray(lat_deg, np.float64))
        return self.semi_major_m * np.cos(phi) / np.sqrt(1.0 - self.e2 * np.sin(phi) ** 2)

    def meridian_radius(self, lat_deg: np.ndarray) -> np.ndarray:
        """Meridian's radius of curvature (m) at ``lat_deg``: metres per radian of latitude there."""
        phi = np.radians(np.asarray(lat_deg, np.float64))
        return self.semi_major_m * (1.0 - self.e2) / (1.0 - self.e2 * np.sin(phi) ** 2) ** 1.5

    def ring(self, lonlat: np.ndarray) -> tuple:
        """Area (m², unsigned) and length (m) of a closed ring of (longitude, latitude) degrees."""
        lon, lat = lonlat[:, 0], lonlat[:, 1]
        x, y = np.radians(lon) * self.semi_major_m, self.equal_area_y(lat)
        area = 0.5 * abs(float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1])))
        mid = 0.5 * (lat[1:] + lat[:-1])
        east = np.radians(np.diff(lon)) * self.parallel_radius(mid)  # exact along a parallel
        north = np.radians(np.diff(lat)) * self.meridian_radius(mid)
        return area, float(np.sum(np.hypot(east, north)))


@functools.lru_cache(maxsize=32)
def ellipsoid_of(crs_wkt: str) -> Ellipsoid:
    """The ellipsoid of a CRS given as WKT (a sphere where the CRS declares one)."""
    srs = osr.SpatialReference()
    srs.ImportFromWkt(crs_wkt)
    inverse = srs.GetInvFlattening()
    return Ellipsoid(float(srs.GetSemiMajor()), 1.0 / inverse if inverse else 0.0)
