"""Radar shadow and layover: where the SAR cannot see the ground, so cannot see water.

Both follow from the local incidence angle ``theta_loc``, the angle between the radar beam and
the normal of the terrain:

- **layover** where ``theta_loc <= 0``: a slope facing the radar is steeper than the incidence
  angle, its top is imaged before its foot;
- **radar shadow** where ``theta_loc >= 90``: a slope facing away from the radar is steeper than
  the beam's grazing angle, the beam does not reach it.

``theta_loc`` is read from a local-incidence-angle raster (degrees, signed: negative values
mean layover, as processors such as SNAP or pyroSAR write them), or computed from a DEM in the
range plane: with ``g`` the terrain's rise per metre along the look direction (the horizontal
direction from the sensor to the ground, azimuth clockwise from north; about 80 deg for a
right-looking ascending Sentinel-1 pass, about 280 deg for a descending one),
``theta_loc = theta - atan(g)``. This is the local rule only: it flags the slopes themselves,
not flat ground lying in the shadow cast by a ridge further up range, and it neglects the
slope across the range direction. Grids must be north-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from rasterio.windows import Window

from ..raster.grid import Grid, read_on_grid

SHADOW_DEG = 90.0
LAYOVER_DEG = 0.0
EARTH_M_PER_DEG = 111_320.0


def classify_local_incidence(
    theta_loc: np.ndarray, shadow_deg: float = SHADOW_DEG, layover_deg: float = LAYOVER_DEG
) -> Tuple[np.ndarray, np.ndarray]:
    """(shadow, layover) boolean masks from local incidence angles in degrees (NaN: neither)."""
    with np.errstate(invalid="ignore"):
        return theta_loc >= shadow_deg, theta_loc <= layover_deg


def local_incidence_from_dem(
    dem: np.ndarray, dx_m: float, dy_m: float, look_azimuth_deg: float, incidence_deg: float
) -> np.ndarray:
    """Local incidence angle (degrees) of the interior of a DEM window (one pixel cropped per side).

    Args:
        dem: (h + 2, w + 2) heights in metres on a north-up grid (row 0 north), NaN = unknown.
        dx_m, dy_m: pixel width and height in metres.
        look_azimuth_deg: horizontal look direction, sensor to ground, clockwise from north.
        incidence_deg: the beam's incidence angle on the ellipsoid at these pixels.
    """
    dz_de = (dem[1:-1, 2:] - dem[1:-1, :-2]) / (2.0 * dx_m)  # rise towards east
    dz_dn = (dem[:-2, 1:-1] - dem[2:, 1:-1]) / (2.0 * dy_m)  # rise towards north (rows grow south)
    phi = math.radians(look_azimuth_deg)
    rise = dz_de * math.sin(phi) + dz_dn * math.cos(phi)
    return incidence_deg - np.degrees(np.arctan(rise))


@dataclass
class Geometry:
    """What is known of one date's viewing geometry (any of it may be missing)."""

    local_incidence: Optional[str] = None  # raster of local incidence angles (degrees)
    look_azimuth: Optional[float] = None  # with a DEM: look direction, degrees from north
    incidence: float = 39.0  # with a DEM: incidence angle on the ellipsoid (degrees)

    def usable(self, dem: Optional[str]) -> bool:
        return bool(self.local_incidence) or (dem is not None and self.look_azimuth is not None)


def pixel_metres(grid: Grid, row: float) -> Tuple[float, float]:
    """Pixel width and height in metres at a row of ``grid`` (geographic grids: spherical approximation)."""
    rx, ry = grid.res
    crs = grid.crs
    if crs.is_projected:
        factor = float(crs.linear_units_factor[1]) if hasattr(crs, "linear_units_factor") else 1.0
        return rx * factor, ry * factor
    lat = grid.transform.f + grid.transform.e * row
    return rx * EARTH_M_PER_DEG * math.cos(math.radians(lat)), ry * EARTH_M_PER_DEG


def shadow_layover(
    geometry: Geometry,
    dem: Optional[str],
    grid: Grid,
    window: Window,
    shadow_deg: float = SHADOW_DEG,
    layover_deg: float = LAYOVER_DEG,
) -> Tuple[np.ndarray, np.ndarray]:
    """(shadow, layover) masks of a window of ``grid`` for one date; all False without geometry."""
    h, w = int(window.height), int(window.width)
    if geometry.local_incidence:
        theta = read_on_grid(geometry.local_incidence, [1], grid, window)[0]
        return classify_local_incidence(theta, shadow_deg, layover_deg)
    if dem is None or geometry.look_azimuth is None:
        return np.zeros((h, w), bool), np.zeros((h, w), bool)
    grown = Window(window.col_off - 1, window.row_off - 1, w + 2, h + 2)
    heights = read_on_grid(dem, [1], grid, grown)[0]
    dx, dy = pixel_metres(grid, window.row_off + h / 2)
    theta = local_incidence_from_dem(heights, dx, dy, geometry.look_azimuth, geometry.incidence)
    return classify_local_incidence(theta, shadow_deg, layover_deg)
