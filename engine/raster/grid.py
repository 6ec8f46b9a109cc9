"""Target grids: one CRS, transform and size on which optical, SAR and labels are read.

Alignment never writes resampled copies unless asked: :func:`read_on_grid` warps any window
of any raster onto a :class:`Grid` on the fly (GDAL warper on the source pixels around each window), so
large scenes stream and every tile of a scene sees the same geometry.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import calculate_default_transform, reproject, transform_bounds
from rasterio.warp import transform as transform_points
from rasterio.windows import Window

from .ellipsoid import ellipsoid_of
from .io import check_bands, read_bands_from

PathLike = Union[str, Path]
Bounds = Tuple[float, float, float, float]

_RESAMPLING = {
    "nearest": Resampling.nearest,
    "bilinear": Resampling.bilinear,
    "cubic": Resampling.cubic,
    "average": Resampling.average,
}


@dataclass(frozen=True)
class Grid:
    """A raster grid: CRS (WKT), affine transform (pixel corner -> map) and size in pixels."""

    crs_wkt: str
    transform: Affine
    width: int
    height: int

    @property
    def crs(self) -> CRS:
        return CRS.from_wkt(self.crs_wkt)

    @property
    def shape(self) -> Tuple[int, int]:
        return self.height, self.width

    @property
    def res(self) -> Tuple[float, float]:
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> Bounds:
        """(left, bottom, right, top) in the grid CRS: the box around its four corners (rotated or flipped too)."""
        return footprint_bounds(self.transform, self.width, self.height)

    def window_grid(self, window: Window) -> Grid:
        """The grid of a window of this grid (the window may reach outside it)."""
        col, row = int(window.col_off), int(window.row_off)
        return Grid(
            self.crs_wkt,
            self.transform * Affine.translation(col, row),
            int(window.width),
            int(window.height),
        )

    def same_as(self, other: Grid, tol: float = 1e-6) -> bool:
        """True when both grids have the same CRS, size and (within ``tol`` pixels) transform."""
        if (self.width, self.height) != (other.width, other.height) or self.crs != other.crs:
            return False
        a, b = self.transform, other.transform
        px = max(self.res)
        return all(abs(x - y) <= tol * px for x, y in zip(a[:6], b[:6]))

    def to_dict(self) -> Dict[str, Any]:
        return {
            "crs_wkt": self.crs_wkt,
            "transform": list(self.transform)[:6],
            "width": self.width,
            "height": self.height,
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> Grid:
        return cls(data["crs_wkt"], Affine(*data["transform"][:6]), int(data["width"]), int(data["height"]))


def footprint_bounds(transform: Affine, width: int, height: int) -> Bounds:
    """(left, bottom, right, top) around the four corners of a raster. rasterio's ``bounds`` keeps a south-up
    raster's bottom above its top, which made rasters that share a footprint "not overlap"."""
    xs, ys = zip(*(transform * (col, row) for col in (0, width) for row in (0, height)))
    return min(xs), min(ys), max(xs), max(ys)


def north_up(grid: Grid) -> Grid:
    """``grid`` with flipped axes (south-up, east-left) turned north-up on the same pixels; a rotated grid as it is.

    The networks learnt north-up images (the radar's look direction, shadows): a south-up SAR raster read as
    stored changed a third of a SAR-only map. A flipped raster is read onto this grid exactly, without resampling
    (:func:`read_on_grid`).
    """
    t = grid.transform
    if t.b or t.d or (t.a > 0 and t.e < 0):
        return grid
    left, _, _, top = grid.bounds
    return Grid(grid.crs_wkt, Affine(abs(t.a), 0.0, left, 0.0, -abs(t.e), top), grid.width, grid.height)


def open_georeferenced(path: PathLike):
    """The raster opened with rasterio, refused (``SgcadError``, a ``ValueError``) without a CRS and a geotransform,
    or with a local CRS; ``FileNotFoundError`` when it is missing."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    with warnings.catch_warnings():  # rasterio's own warning says less than the refusal below
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        src = rasterio.open(path)
    from ..validate import SgcadError, local_crs_problem, no_georeferencing

    if src.crs is None or src.transform == Affine.identity():
        control_points = len(src.gcps[0])
        src.close()
        raise SgcadError(no_georeferencing(path, control_points))
    local = local_crs_problem(path, src.crs)
    if local:
        src.close()
        raise SgcadError(local)
    return src


def grid_of(path: PathLike) -> Grid:
    """The native grid of a georeferenced raster.

    Raises:
        ValueError: when the raster has no CRS or no geotransform.
    """
    with open_georeferenced(path) as src:
        return Grid(src.crs.to_wkt(), src.transform, src.width, src.height)


def utm_crs_for(lon: float, lat: float) -> CRS:
    """The WGS 84 / UTM zone CRS containing a longitude/latitude."""
    zone = int(math.floor((lon + 180.0) / 6.0)) % 60 + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def _footprint(path: PathLike, crs: CRS) -> Bounds:
    with open_georeferenced(path) as src:
        return tuple(transform_bounds(src.crs, crs, *footprint_bounds(src.transform, src.width, src.height),
                                      densify_pts=21))


def _resolution_in(path: PathLike, crs: CRS) -> float:
    with open_georeferenced(path) as src:
        t = src.transform
        if src.crs == crs:  # a rotated pixel's size is the root of its area (a alone is size x cos(angle))
            return float(math.sqrt(abs(t.determinant)) if t.b or t.d else (abs(t.a) + abs(t.e)) / 2)
        t, _, _ = calculate_default_transform(src.crs, crs, src.width, src.height,
                                              *footprint_bounds(t, src.width, src.height))
        return float((abs(t.a) + abs(t.e)) / 2)


def default_grid(
    optical_path: PathLike,
    sar_path: PathLike,
    resolution: Optional[float] = None,
    crs: Optional[Union[str, CRS]] = None,
    bounds: Optional[Bounds] = None,
    min_size: int = 1,
    check_size: bool = True,
) -> Grid:
    """The common grid of an optical and a SAR raster.

    Defaults follow the method: the SAR resolution, in the optical CRS when it is projected,
    else in the UTM zone of the scene centre; the extent is the intersection of both
    footprints (and of ``bounds`` when given, in the target CRS). When the SAR already lies
    in the target CRS at the target resolution the grid is snapped to its pixels, so the SAR
    is read without resampling.

    Args:
        optical_path: optical raster.
        sar_path: SAR raster.
        resolution: pixel size in target CRS units; default the SAR's.
        crs: target CRS (anything ``rasterio.crs.CRS.from_user_input`` accepts).
        bounds: (left, bottom, right, top) in the target CRS to restrict the extent.
        min_size: smallest acceptable width and height in pixels (e.g. one patch).
        check_size: refuse a ``resolution`` that makes the grid far larger than the inputs.

    Raises:
        ValueError: no georeferencing, no overlap, an overlap smaller than ``min_size``, or a
            ``resolution`` that makes a grid far larger than the inputs (``validate.check_grid_size``),
            unless ``check_size`` is False (a run that maps a small area of it checks that area instead).
    """
    if crs is not None:
        target = CRS.from_user_input(crs)
        if not target.is_projected:
            raise ValueError(f"target CRS {target.to_string()} is not projected; give a metric CRS")
    else:
        with open_georeferenced(optical_path) as opt:
            if opt.crs.is_projected:
                target = opt.crs
            else:
                lon0, lat0, lon1, lat1 = transform_bounds(opt.crs, "EPSG:4326",
                                                          *footprint_bounds(opt.transform, opt.width, opt.height))
                target = utm_crs_for((lon0 + lon1) / 2, (lat0 + lat1) / 2)
    res = float(resolution) if resolution else _resolution_in(sar_path, target)
    if res <= 0:
        raise ValueError(f"resolution must be positive, got {res}")
    a, b = _footprint(optical_path, target), _footprint(sar_path, target)
    box = [max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])]
    if bounds is not None:
        box = [max(box[0], bounds[0]), max(box[1], bounds[1]), min(box[2], bounds[2]), min(box[3], bounds[3])]
    if box[0] >= box[2] or box[1] >= box[3]:
        raise ValueError(
            f"{optical_path} and {sar_path} do not overlap"
            + (f" inside bounds {tuple(bounds)}" if bounds is not None else "")
            + f" (optical extent {a}, SAR extent {b} in {target.to_string()})"
        )
    left, top = box[0], box[3]
    with open_georeferenced(sar_path) as sar:
        snap = sar.crs == target and abs(abs(sar.transform.a) - res) < 1e-9 * res
        if snap:  # align to the SAR pixel lattice
            ox, oy = sar.transform.c, sar.transform.f
            left = ox + math.ceil((box[0] - ox) / res - 1e-6) * res
            top = oy - math.ceil((oy - box[3]) / res - 1e-6) * res
    width = int(math.floor((box[2] - left) / res + 1e-6))
    height = int(math.floor((top - box[1]) / res + 1e-6))
    if width < max(min_size, 1) or height < max(min_size, 1):
        raise ValueError(
            f"the overlap of {optical_path} and {sar_path} is {max(width, 0)}x{max(height, 0)} pixels at "
            f"{res:g} m, smaller than the {min_size}x{min_size} needed (one patch); "
            "use a finer resolution or inputs that overlap more"
        )
    result = Grid(target.to_wkt(), Affine(res, 0.0, left, 0.0, -res, top), width, height)
    if resolution and check_size:  # a mistyped pixel size would otherwise run for hours and fill the disk
        check_output_size(result, optical_path, sar_path)
    return result


def check_output_size(grid: Grid, optical_path: PathLike, sar_path: PathLike) -> None:
    """Refuse ``grid`` (or the part of it a run maps) when it is far finer than its inputs and large.

    Args:
        grid: the output grid, or the window of it that will be mapped (an area of interest).
        optical_path, sar_path: the inputs whose finest pixel size is the reference.

    Raises:
        SgcadError: see :func:`engine.validate.check_grid_size`.
    """
    from ..validate import check_grid_size

    target = grid.crs
    native = min(_resolution_in(optical_path, target), _resolution_in(sar_path, target))
    unit = "m" if target.linear_units.lower() in ("metre", "meter", "m") else target.linear_units
    check_grid_size(grid.width, grid.height, abs(grid.transform.a), native, unit)


def read_on_grid(
    path: PathLike,
    bands: Sequence[int],
    grid: Grid,
    window: Optional[Window] = None,
    resampling: str = "bilinear",
) -> np.ndarray:
    """Read bands of a raster warped onto ``grid`` (or a window of it).

    The window may reach outside the grid; pixels without source data are NaN. A raster
    already on the grid is read directly, without resampling.

    Args:
        path: source raster (any CRS and resolution).
        bands: 1-based band numbers.
        grid: target grid.
        window: window of the grid to read; default the whole grid.
        resampling: ``"bilinear"`` for imagery, ``"nearest"`` for labels and masks.

    Returns:
        float32 array (C, h, w), NaN where nodata, NaN or outside the source.
    """
    if resampling not in _RESAMPLING:
        raise ValueError(f"resampling must be one of {sorted(_RESAMPLING)}, got {resampling!r}")
    window = window or Window(0, 0, grid.width, grid.height)
    sub = grid.window_grid(window)
    with open_georeferenced(path) as src:
        check_bands(src, bands, path)
        lattice = _lattice_window(src.transform, sub) if src.crs == grid.crs else None
        if lattice is not None:  # the same pixels: read them, flipped where the axes run the other way
            source_window, flip_x, flip_y = lattice
            data = read_bands_from(src, bands, source_window)
            return np.ascontiguousarray(data[:, ::-1 if flip_y else 1, ::-1 if flip_x else 1])
        return _warp_window(src, bands, sub, _RESAMPLING[resampling])


def _warp_window(src, bands: Sequence[int], sub: Grid, resampling: Resampling) -> np.ndarray:
    """Warp the source pixels around ``sub`` onto it, band by band, with NaN as nodata.

    Each band is read with its own nodata turned into NaN and warped on its own: GDAL's
    multi-band warper would otherwise treat a pixel as valid in every band when it is
    valid in any (seen on the Landsat sample, whose bands have nodata=0 at different
    pixels), leaking nodata values into the output.
    """
    out = np.full((len(bands), sub.height, sub.width), np.nan, np.float32)
    left, bottom, right, top = transform_bounds(sub.crs, src.crs, *sub.bounds, densify_pts=21)
    inv = ~src.transform
    cols, rows = zip(*(inv * (x, y) for x in (left, right) for y in (bottom, top)))
    margin = 3  # resampling kernels reach up to two source pixels beyond the footprint
    c0, c1 = max(int(math.floor(min(cols))) - margin, 0), min(int(math.ceil(max(cols))) + margin, src.width)
    r0, r1 = max(int(math.floor(min(rows))) - margin, 0), min(int(math.ceil(max(rows))) + margin, src.height)
    if c1 <= c0 or r1 <= r0:
        return out
    data = read_bands_from(src, bands, Window(c0, r0, c1 - c0, r1 - r0))
    src_transform = src.transform * Affine.translation(c0, r0)
    for i in range(len(bands)):
        reproject(
            data[i], out[i], src_transform=src_transform, src_crs=src.crs, src_nodata=np.nan,
            dst_transform=sub.transform, dst_crs=sub.crs, dst_nodata=np.nan, resampling=resampling,
        )
    return out


def _lattice_window(source: Affine, sub: Grid, tol: float = 1e-6) -> Optional[Tuple[Window, bool, bool]]:
    """The source window holding ``sub``'s pixels when both share one pixel lattice, and whether its columns and
    rows run the other way (a south-up or east-left source under a north-up grid); None when they do not.

    A rotated lattice must match as it is (the same transform up to whole pixels).
    """
    target = sub.transform
    size = max(abs(source.a), abs(source.b), abs(source.d), abs(source.e))
    if source.b or source.d or target.b or target.d:
        if any(abs(x - y) > tol * size for x, y in zip(source[:2] + source[3:5], target[:2] + target[3:5])):
            return None
        flip_x = flip_y = False
    else:
        if abs(abs(source.a) - abs(target.a)) > tol * size or abs(abs(source.e) - abs(target.e)) > tol * size:
            return None
        flip_x, flip_y = (source.a > 0) != (target.a > 0), (source.e > 0) != (target.e > 0)
    # the corner of sub that is the source window's first pixel corner
    col, row = ~source * target * (sub.width if flip_x else 0, sub.height if flip_y else 0)
    if abs(col - round(col)) >= 1e-3 or abs(row - round(row)) >= 1e-3:
        return None
    return Window(int(round(col)), int(round(row)), sub.width, sub.height), flip_x, flip_y


#: Largest departure of a projected CRS's area scale from 1 over a grid for which its map-unit areas
#: are reported as they are: UTM within its zone stays under 0.25 % and national grids under that, and
#: their users expect the CRS's own areas. Beyond it (Web Mercator: +26 % at 27° of latitude, +100 % at
#: 45°) the cells' areas are taken on the ellipsoid.
PLANAR_AREA_TOLERANCE = 0.005


def row_areas_m2(grid: Grid, row0: int, height: int) -> np.ndarray:
    """Area (m²) of one pixel of each row ``row0 .. row0 + height - 1`` of ``grid``; on a
    geographic grid the exact area of the cell on the CRS's ellipsoid (:mod:`.ellipsoid`); on a projected
    grid whose CRS distorts areas by more than :data:`PLANAR_AREA_TOLERANCE` (Web Mercator) the mean
    ellipsoidal area of the row's cells (:func:`projected_area_scale`)."""
    t = grid.transform
    crs = grid.crs
    if crs.is_projected:
        factor = _linear_factor(crs)
        planar = abs(t.a * t.e - t.b * t.d) * factor * factor
        scale = projected_area_scale(grid)
        if scale is None:
            return np.full(height, planar)
        return planar * np.interp(row0 + np.arange(height) + 0.5, *scale)
    ellipsoid = ellipsoid_of(grid.crs_wkt)
    if t.b or t.d:  # a rotated cell: its area in square degrees times the ellipsoid's m² per square degree there
        lat = np.array([(t * (grid.width / 2, row + 0.5))[1] for row in row0 + np.arange(height)])
        step = 1e-3
        per_degree = np.abs(ellipsoid.equal_area_y(lat + step) - ellipsoid.equal_area_y(lat - step)) / (2 * step)
        return ellipsoid.semi_major_m * math.radians(1.0) * per_degree * abs(t.determinant)
    lat_top = t.f + t.e * (row0 + np.arange(height))
    band = np.abs(ellipsoid.equal_area_y(lat_top) - ellipsoid.equal_area_y(lat_top + t.e))
    return ellipsoid.semi_major_m * math.radians(abs(t.a)) * band


@functools.lru_cache(maxsize=16)
def projected_area_scale(grid: Grid) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """(row centres, ellipsoidal / map-unit area of their cells) sampled over a projected ``grid``, or None
    where the CRS keeps areas within :data:`PLANAR_AREA_TOLERANCE` everywhere on it.

    Up to 257 rows x 9 columns of cells are taken to longitude and latitude on the CRS's own datum and
    measured on its ellipsoid (:meth:`.Ellipsoid.equal_area_y`: exact for cells bounded by parallels and
    meridians, as Mercator's are); a row's value is the mean of its columns and rows in between are
    interpolated, so a scene of any size costs one transform of a few thousand points.
    """
    from osgeo import osr

    rows = np.linspace(0.5, grid.height - 0.5, min(grid.height, 257))
    cols = np.linspace(0.5, grid.width - 0.5, min(grid.width, 9))
    c, r = np.meshgrid(cols, rows)
    corners = [(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)]
    xy = [grid.transform * (c + dc, r + dr) for dc, dr in corners]
    srs = osr.SpatialReference()
    srs.ImportFromWkt(grid.crs_wkt)
    geographic = CRS.from_wkt(srs.CloneGeogCS().ExportToWkt())
    xs = np.concatenate([np.ravel(x) for x, _ in xy])
    ys = np.concatenate([np.ravel(y) for _, y in xy])
    lon, lat = (np.asarray(v, np.float64).reshape(4, *c.shape) for v in transform_points(grid.crs, geographic, xs, ys))
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        return None  # cells off the projection's domain: nothing better than the map units
    ellipsoid = ellipsoid_of(grid.crs_wkt)
    # corners relative to the first (wrapped across the antimeridian): the shoelace then sums small numbers
    x = np.radians((lon - lon[0] + 180.0) % 360.0 - 180.0) * ellipsoid.semi_major_m
    y = ellipsoid.equal_area_y(lat) - ellipsoid.equal_area_y(lat[0])
    area = 0.5 * np.abs(sum(x[k] * y[(k + 1) % 4] - x[(k + 1) % 4] * y[k] for k in range(4)))
    t, factor = grid.transform, _linear_factor(grid.crs)
    ratio = area.mean(axis=1) / (abs(t.a * t.e - t.b * t.d) * factor * factor)
    if np.all(np.abs(ratio - 1.0) <= PLANAR_AREA_TOLERANCE):
        return None
    return rows, ratio


def _linear_factor(crs) -> float:
    try:
        return float(crs.linear_units_factor[1])
    except Exception:  # noqa: BLE001 - rasterio builds without the property: metres
        return 1.0
