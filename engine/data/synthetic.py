"""Seeded synthetic optical + SAR scenes with a six-class label, for tests, demos and training.

A scene is a set of smooth, seeded functions of the ground position (coarse random fields
sampled with cubic B-splines, polylines for rivers and roads, hashed parcel and block
identities) plus noise drawn in fixed 256 x 256 pixel tiles seeded by their position. Any
window is therefore computed on its own, identically whatever the window size, and a 16384 x
16384 scene is written window by window in bounded memory. Same seed, same scene. The SAR's
point-spread function and speckle correlation need a few pixels of context: each window is
computed with that halo, from the same position-seeded noise, so this still holds.

Structure sizes are physical: a structure unit is 2 m on the ground whatever the pixel size
(``resolution``), so at 10 m per pixel parcels, rivers and roads are five times smaller in
pixels, and each pixel averages several ground samples (mixed pixels at edges).

Appearance follows the classes of :class:`~engine.config.ClassSchema` (names, not ids, are
looked up). The SAR is calibrated linear sigma0 with absolute levels per surface, band and
polarisation (:mod:`.sar_model`, sources in ``docs/data.md``), an incidence-angle gradient
across the columns (near range on the left), terrain foreshortening and radar shadow,
wind-roughened water, dark land surfaces that are not water (runways, dry sand, smooth bare
fields, wet snow), correlated gamma speckle of ``looks`` looks and thermal noise. The optical
image is surface reflectance (red, green, blue) where cloud shadows, dark roofs and terrain
shadow look like water and clouds hide the ground.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from statistics import NormalDist
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window
from scipy import ndimage, special
from scipy.spatial import cKDTree

from ..config import ClassSchema
from ..progress import NULL_PROGRESS, Progress
from ..raster.grid import Grid
from ..raster.io import check_output, iter_windows, open_writer
from ..raster.polygons import polygonize_labels
from . import sar_model as sm
from .sar_model import CLASSES, REFLECTANCE, SENSORS, SURFACE

NOISE_TILE = 256
MAX_SPAN = 65536  # largest scene side in structure units (131 km): bounds the number of villages and roads
UNIT_M = 2.0  # metres per structure unit: at 2 m per pixel one pixel is one unit
RELIEF_M = 120.0  # relief amplitude (m) in hilly parts at sar_confusers=1: slopes up to ~55 deg, radar shadow
OPTICAL_UNITS = {"uint8": ("uint8", 255.0, 0), "reflectance10000": ("uint16", 10000.0, 0),
                 "reflectance": ("float32", 1.0, float("nan"))}  # dtype, scale from reflectance, nodata
NOISE_FLOOR_CUT = 10 ** -2.4  # noise-subtracted power is clipped 24 dB below the NESZ (as in the real chips)
_U64 = np.uint64


def _hash(seed: int, stream: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) from integer coordinates (splitmix64), the same wherever it is asked."""
    with np.errstate(over="ignore"):
        z = (
            _U64(seed & 0xFFFFFFFF) * _U64(0x9E3779B97F4A7C15)
            + _U64(stream) * _U64(0xBF58476D1CE4E5B9)
            + (np.asarray(a).astype(np.int64).astype(_U64) << _U64(32))
            + np.asarray(b).astype(np.int64).astype(_U64)
        )
        for mul in (0xBF58476D1CE4E5B9, 0x94D049BB133111EB):
            z = (z ^ (z >> _U64(30))) * _U64(mul)
        z = z ^ (z >> _U64(31))
    return (z >> _U64(11)).astype(np.float64) / float(1 << 53)


class _Field:
    """A smooth random field: seeded coarse noise sampled with a cubic B-spline."""

    def __init__(self, rng: np.random.Generator, size: int, cell: int, sigma: float) -> None:
        self.cell, self.margin = cell, 4
        n = size // cell + 2 * self.margin + 2
        raw = ndimage.gaussian_filter(rng.standard_normal((n, n)), sigma, mode="wrap")
        self.coef = (raw - raw.mean()) / (raw.std() + 1e-12)

    def _taps(self, coords: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        u = np.clip(coords / self.cell + self.margin, 1, self.coef.shape[0] - 3 - 1e-9)
        i0 = np.floor(u).astype(np.int64)
        t = u - i0
        w = np.stack(
            [(1 - t) ** 3 / 6, (3 * t**3 - 6 * t**2 + 4) / 6, (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6, t**3 / 6],
            axis=1,
        )
        return i0 - 1, w

    def sample(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Field values on the grid ``ys`` x ``xs`` (pixel coordinates), shape (len(ys), len(xs))."""
        iy, wy = self._taps(ys)
        ix, wx = self._taps(xs)
        c0, c1 = int(ix.min()), int(ix.max()) + 4
        rows = sum(wy[:, k, None] * self.coef[iy + k, c0:c1] for k in range(4))
        return sum(rows[:, ix - c0 + k] * wx[None, :, k] for k in range(4))


def _segment_distance(dist: np.ndarray, ys: np.ndarray, xs: np.ndarray, segs: np.ndarray, reach: float) -> None:
    """Lower ``dist`` (h, w) in place to the distance from pixel centres to line segments.

    Each segment only touches the pixels of its bounding box grown by ``reach``, so the
    cost follows the length of the lines, not the window area times their number.
    """
    near = (
        (np.minimum(segs[:, 0], segs[:, 2]) - reach <= xs[-1])
        & (np.maximum(segs[:, 0], segs[:, 2]) + reach >= xs[0])
        & (np.minimum(segs[:, 1], segs[:, 3]) - reach <= ys[-1])
        & (np.maximum(segs[:, 1], segs[:, 3]) + reach >= ys[0])
    )
    for ax, ay, bx, by in segs[near]:
        # index ranges by search, so any (ascending) pixel spacing works
        c_lo, c_hi = (int(i) for i in np.searchsorted(xs, [min(ax, bx) - reach, max(ax, bx) + reach], "left"))
        r_lo, r_hi = (int(i) for i in np.searchsorted(ys, [min(ay, by) - reach, max(ay, by) + reach], "left"))
        c_hi, r_hi = min(c_hi + 1, xs.size), min(r_hi + 1, ys.size)
        if c_lo >= c_hi or r_lo >= r_hi:
            continue
        px = xs[None, c_lo:c_hi]
        py = ys[r_lo:r_hi, None]
        dx, dy = bx - ax, by - ay
        t = np.clip(((px - ax) * dx + (py - ay) * dy) / max(dx * dx + dy * dy, 1e-12), 0.0, 1.0)
        d = np.hypot(px - ax - t * dx, py - ay - t * dy)
        np.minimum(dist[r_lo:r_hi, c_lo:c_hi], d, out=dist[r_lo:r_hi, c_lo:c_hi])


def _overlapping(xyr: np.ndarray, grow: float, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Indices of the discs (x, y, r) whose square grown to ``grow * r`` overlaps the grid ``ys`` x ``xs``."""
    x, y, r = xyr[:, 0], xyr[:, 1], grow * xyr[:, 2]
    return np.flatnonzero((x + r >= xs[0]) & (x - r <= xs[-1]) & (y + r >= ys[0]) & (y - r <= ys[-1]))


def _reach(ys: np.ndarray, xs: np.ndarray, cy: float, cx: float, reach: float) -> Tuple[slice, slice]:
    """Row and column slices of the grid ``ys`` x ``xs`` (ascending) within ``reach`` of (cx, cy)."""
    r0, r1 = np.searchsorted(ys, [cy - reach, cy + reach])
    c0, c1 = np.searchsorted(xs, [cx - reach, cx + reach])
    return slice(int(r0), int(r1) + 1), slice(int(c0), int(c1) + 1)


def _polyline(rng: np.random.Generator, size: int, step: float, wiggle: float) -> np.ndarray:
    """A meandering line from one edge across the scene, as (N, 2) x/y points."""
    side = rng.integers(4)
    pos = rng.uniform(0.1, 0.9) * size
    start, heading = {
        0: ((pos, -20.0), math.pi / 2),
        1: ((size + 20.0, pos), math.pi),
        2: ((pos, size + 20.0), -math.pi / 2),
        3: ((-20.0, pos), 0.0),
    }[int(side)]
    heading += rng.uniform(-0.4, 0.4)
    amps, lams, phases = rng.uniform(0.2, 1.0, 3) * wiggle, rng.uniform(60, 400, 3), rng.uniform(0, 6.3, 3)
    pts = [start]
    x, y, s = start[0], start[1], 0.0
    while -60 <= x <= size + 60 and -60 <= y <= size + 60 and s < 4 * size + 200:
        theta = heading + sum(a * math.sin(s / lam + p) for a, lam, p in zip(amps, lams, phases))
        x, y, s = x + step * math.cos(theta), y + step * math.sin(theta), s + step
        pts.append((x, y))
    return np.asarray(pts)


def _segments(line: np.ndarray) -> np.ndarray:
    return np.concatenate([line[:-1], line[1:]], axis=1)


class SyntheticScene:
    """The seeded structure of a scene; :meth:`render` computes any window of it.

    Args:
        size: width and height in pixels.
        seed: seeds everything.
        looks: equivalent number of looks of the SAR speckle (per pixel).
        misregistration: (dx, dy) shift of the SAR relative to the optical, in pixels.
        clouds: add clouds and their shadows to the optical image.
        confusers: add water-like dark roofs and terrain shadow to the optical image.
        schema: class schema whose names pick the classes.
        sensor: ``"s1"`` (C-band), ``"alos2"`` (L-band) or ``"x"`` (X-band); see ``sar_model.SENSORS``.
        polarisations: SAR bands, e.g. ``("VV",)``, ``("VV", "VH")``, ``("HH", "HV")``.
        resolution: pixel size in metres; structures keep their size in metres.
        sar_resolution: SAR resolution cell in metres (point-spread function and speckle
            correlation); None: twice the pixel size, as in most products; 0: none.
        incidence: (near, far) incidence angle in degrees from the left to the right column;
            None: the sensor's typical swath.
        wind: fraction of the water surface roughened by wind (backscatter rising towards the
            ``rough_water`` level), 0 for calm water everywhere.
        sar_confusers: 0-1, density of dark non-water surfaces in the SAR: airport runways,
            dry sand, smooth bare fields, and relief with radar shadow.
        snow: winter scene: wet snow on open land (white optical, dark SAR), forest and towns
            less affected; water stays open.
        lake_threshold: level of the smooth lake field above which there is a lake (2.1: about
            2 % of the area; lower for more water).
        calibration_db: offset added to the whole SAR in dB (a calibration error).
        noise_floor: add the sensor's thermal noise (noise-equivalent sigma0) to the SAR.
        noise_kept_db: thermal noise left in at this noise-equivalent sigma0 (dB), mean and
            fluctuation, instead of removed: a floor under dark surfaces, as in products made
            without noise removal (water in VH near -22 to -25 dB instead of -30); None: removed.
        optical_units: ``"uint8"`` (reflectance x 255), ``"reflectance10000"`` (uint16) or
            ``"reflectance"`` (float32, 0-1).
        supersample: ground samples per pixel side; None: more for coarser pixels (1 at 2 m,
            3 from 10 m).
        green_water: 0-1, green tint of the water (algae, harbour and canal water: the green
            band above the blue one), 0 for clear and turbid water only.
        dense_crops: 0-1, how dark the densest crop and pasture parcels get (1: as dark as
            forest in the optical image, so the SAR and the parcel shapes must tell them apart).
        water_shapes: 0-1, density of the water the default lakes and 20-36 m rivers lack
            (docs/data.md): with this probability a wide river (40-600 m),
            and on average 1.5 x this straight canals (30-200 m, right-angle bends) per 4 km,
            harbour basins (this x 30 % of city blocks, streets between them stay as quays)
            and ponds (this x 8 % of farmland parcels: fish ponds, salt pans, flooded
            fields). 0: the lakes and narrow rivers only.
    """

    def __init__(
        self,
        size: int,
        seed: int = 1,
        looks: float = 4.0,
        misregistration: Tuple[float, float] = (0.0, 0.0),
        clouds: bool = True,
        confusers: bool = True,
        schema: Optional[ClassSchema] = None,
        sensor: str = "s1",
        polarisations: Sequence[str] = ("VV",),
        resolution: float = 2.0,
        sar_resolution: Optional[float] = None,
        incidence: Optional[Tuple[float, float]] = None,
        wind: float = 0.2,
        sar_confusers: float = 0.3,
        snow: bool = False,
        lake_threshold: float = 2.1,
        calibration_db: float = 0.0,
        noise_floor: bool = True,
        noise_kept_db: Optional[float] = None,
        optical_units: str = "uint8",
        supersample: Optional[int] = None,
        green_water: float = 0.0,
        dense_crops: float = 0.0,
        water_shapes: float = 0.0,
    ) -> None:
        if size < 32:
            raise ValueError(f"synthetic scene size must be at least 32 pixels, got {size}")
        if looks <= 0:
            raise ValueError(f"looks must be positive, got {looks}")
        if resolution <= 0:
            raise ValueError(f"resolution must be a positive pixel size in metres, got {resolution}")
        if sensor not in SENSORS:
            raise ValueError(f"sensor must be one of {sorted(SENSORS)}, got {sensor!r}")
        pols = tuple(str(p).upper() for p in polarisations)
        if not pols or len(set(pols)) != len(pols):
            raise ValueError(f"polarisations must be distinct names among {sm.POLARISATIONS}, got {polarisations}")
        for p in pols:
            sm.pol_kind(p)
        if optical_units not in OPTICAL_UNITS:
            raise ValueError(f"optical_units must be one of {sorted(OPTICAL_UNITS)}, got {optical_units!r}")
        if not 0 <= wind <= 1 or not 0 <= sar_confusers <= 1:
            raise ValueError(f"wind and sar_confusers must be in [0, 1], got {wind} and {sar_confusers}")
        if not 0 <= green_water <= 1 or not 0 <= dense_crops <= 1 or not 0 <= water_shapes <= 1:
            raise ValueError(f"green_water, dense_crops and water_shapes must be in [0, 1], got {green_water}, "
                             f"{dense_crops} and {water_shapes}")
        self.green_water, self.dense_crops = float(green_water), float(dense_crops)
        self.water_shapes = float(water_shapes)
        self.size, self.seed, self.looks = int(size), int(seed), float(looks)
        self.shift = (float(misregistration[0]), float(misregistration[1]))
        self.clouds, self.confusers, self.snow = clouds, confusers, bool(snow)
        self.sensor, self.pols, self.res = sensor, pols, float(resolution)
        spec = SENSORS[sensor]
        self.incidence = tuple(float(a) for a in (incidence or spec.incidence))
        self.wind, self.sar_confusers, self.lake_threshold = float(wind), float(sar_confusers), float(lake_threshold)
        self.calibration_db, self.noise_floor, self.optical_units = float(calibration_db), noise_floor, optical_units
        self.noise_kept_db = None if noise_kept_db is None else float(noise_kept_db)
        self.scale = self.res / UNIT_M  # structure units per pixel
        self.sub = int(supersample or (1 if self.scale <= 1.5 else 2 if self.scale <= 3.5 else 3))
        self.sar_resolution = 2 * self.res if sar_resolution is None else float(sar_resolution)
        self.kernel, kernel_sq = sm.psf_kernel(sm.sigma_from_resolution(self.sar_resolution, self.res))
        self.halo = self.kernel.size // 2
        self.speckle_shape = self.looks * kernel_sq  # looks before the PSF correlates neighbours
        self.tables = [sm.backscatter_table(sensor, p) for p in pols]
        self.schema = schema or ClassSchema()
        missing = set(CLASSES) - {n.lower() for n in self.schema.names}
        if missing:
            raise ValueError(f"synthetic scenes need the classes {sorted(CLASSES)}; schema lacks {sorted(missing)}")
        self.cls = {n: self.schema.id_of(n) for n in CLASSES}
        self.surface_of_label = np.zeros(256, np.int64)
        for n in CLASSES:
            self.surface_of_label[self.cls[n]] = SURFACE[n]
        span = int(math.ceil(size * self.scale))  # scene width in structure units
        if span > MAX_SPAN:
            raise ValueError(f"a synthetic scene of {size} pixels at {resolution} m covers {span * UNIT_M / 1000:.0f} "
                             f"km; at most {MAX_SPAN * UNIT_M / 1000:.0f} km are supported: lower size or resolution")
        # smooth fields keep their physical scale up to 33 km, then coarsen so their memory stays bounded
        cell = 32 * max(1, int(math.ceil(span / 16384)))
        rng = np.random.default_rng([self.seed, 7])
        f = {name: _Field(rng, span, cell, sig) for name, sig in
             (("forest", 3.0), ("lake", 2.5), ("warp_x", 2.0), ("warp_y", 2.0), ("cloud", 2.0),
              ("terrain", 4.0), ("hills", 6.0), ("edge", 1.0), ("tone", 3.0))}
        self.fields = f
        self.edge_max = float(np.abs(f["edge"].coef).max())  # B-spline values never exceed their coefficients
        self.warp_max = 12 * math.hypot(np.abs(f["warp_x"].coef).max(), np.abs(f["warp_y"].coef).max())
        area = (span / 1024.0) ** 2
        self.cities = [(rng.uniform(0.15, 0.85) * span, rng.uniform(0.15, 0.85) * span,
                        rng.uniform(70, 160), rng.uniform(28, 44), rng.uniform(0, 40))
                       for _ in range(max(1, int(round(area * 1.5))))]
        self.villages = [(rng.uniform(0, span), rng.uniform(0, span), rng.uniform(16, 34))
                         for _ in range(max(2, int(round(area * 12))))]
        self._village_xyr = np.array(self.villages)
        self._city_xyr = np.array([c[:3] for c in self.cities])
        rivers = [_polyline(rng, span, 6.0, 0.9) for _ in range(max(1, int(round(span / 3072))))]
        self.river_segs = np.concatenate([_segments(r) for r in rivers])
        self.river_width = [rng.uniform(5, 9), rng.uniform(200, 600)]  # half-width, variation scale
        roads = [_polyline(rng, span, 24.0, 0.25) for _ in range(max(2, int(round(span / 384))))]
        # connect each village to the nearest main-road point with a straight track
        road_pts = np.concatenate(roads)
        nearest = cKDTree(road_pts).query([(vx, vy) for vx, vy, _ in self.villages])[1]
        tracks = [np.array([[vx, vy], road_pts[k]]) for (vx, vy, _), k in zip(self.villages, nearest)]
        self.road_segs = np.concatenate([_segments(r) for r in roads] + [_segments(_densify(t, 24.0)) for t in tracks])
        self.cloud_offset = (rng.uniform(25, 45), rng.uniform(15, 35))
        # a second stream for what was added later, so the structure above keeps its seeds
        rng2 = np.random.default_rng([self.seed, 8])
        for name, sig in (("wind", 3.0), ("sand", 3.0), ("snow", 2.0), ("sar_tone", 2.0)):
            f[name] = _Field(rng2, span, cell, sig)
        self.wind_peak = rng2.uniform(0.6, 1.0)  # how close the roughest water gets to rough_water
        self.runways = np.zeros((0, 4))
        self.runway_half = 0.0
        if rng2.random() < self.sar_confusers:  # an airport: one or two parallel runways
            cx, cy, angle = rng2.uniform(0.1, 0.9) * span, rng2.uniform(0.1, 0.9) * span, rng2.uniform(0, math.pi)
            length, self.runway_half = rng2.uniform(1500, 3000) / UNIT_M, rng2.uniform(22, 30) / UNIT_M
            gap = rng2.uniform(200, 400) / UNIT_M if rng2.random() < 0.3 else 0.0
            dx, dy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
            lines = [np.array([[cx - dx + o * -math.sin(angle), cy - dy + o * math.cos(angle)],
                               [cx + dx + o * -math.sin(angle), cy + dy + o * math.cos(angle)]])
                     for o in ((0.0, gap) if gap else (0.0,))]
            self.runways = np.concatenate([_segments(_densify(ln, 48.0)) for ln in lines])
        # a third stream: scenes drawn without water shapes keep every value above
        rng3 = np.random.default_rng([self.seed, 10])
        self.wide_river, self.wide_half = np.zeros((0, 4)), 0.0
        self.canals, self.canal_half = np.zeros((0, 4)), 0.0
        if self.water_shapes > 0:
            if rng3.random() < self.water_shapes:
                self.wide_half = float(np.exp(rng3.uniform(math.log(10.0), math.log(150.0))))  # 40-600 m wide
                self.wide_river = _segments(_polyline(rng3, span, 6.0, 0.5))
            count = int(rng3.poisson(1.5 * self.water_shapes * max(1.0, span / 2048)))  # per 4 km of side
            legs = [_canal(rng3, span) for _ in range(count)]
            if legs:
                self.canal_half = float(rng3.uniform(7.5, 50.0))  # 30-200 m wide
                self.canals = np.concatenate([_segments(_densify(p, 48.0)) for leg in legs for p in leg])

    def options(self) -> Dict[str, Any]:
        """The SAR and optical options in force (JSON-able), for records of a training set."""
        return {"sensor": self.sensor, "polarisations": list(self.pols), "looks": self.looks,
                "resolution": self.res, "sar_resolution": self.sar_resolution, "incidence": list(self.incidence),
                "wind": self.wind, "sar_confusers": self.sar_confusers, "snow": self.snow,
                "lake_threshold": self.lake_threshold, "calibration_db": self.calibration_db,
                "noise_floor": bool(self.noise_floor), "noise_kept_db": self.noise_kept_db,
                "optical_units": self.optical_units,
                "supersample": self.sub, "clouds": bool(self.clouds), "confusers": bool(self.confusers),
                "misregistration": list(self.shift), "green_water": self.green_water,
                "dense_crops": self.dense_crops, "water_shapes": self.water_shapes}

    # ----------------------------------------------------------------- structure
    def label_window(self, ys: np.ndarray, xs: np.ndarray) -> Dict[str, np.ndarray]:
        """Class ids and helper layers on the pixel-centre grid ``ys`` x ``xs`` (pixel coordinates)."""
        f, c = self.fields, self.cls
        ys, xs = ys * self.scale, xs * self.scale  # structure units from here on
        h, w = ys.size, xs.size
        wx = xs[None, :] + 12 * f["warp_x"].sample(ys, xs)
        wy = ys[:, None] + 12 * f["warp_y"].sample(ys, xs)
        parcel_i, parcel_j = np.floor(wy / 52.0), np.floor(wx / 64.0)
        label = np.full((h, w), c["farmland"], np.uint8)
        label[f["forest"].sample(ys, xs) > 0.85] = c["forest"]
        edge = f["edge"].sample(ys, xs)
        village = np.zeros((h, w), bool)
        for k in _overlapping(self._village_xyr, 2.0, ys, xs):
            vx, vy, r = self.villages[k]
            # only pixels that warping and the ragged edge can bring within reach are computed
            rr, cc = _reach(ys, xs, vy, vx, r * (1 + 0.25 * self.edge_max) + self.warp_max)
            village[rr, cc] |= np.hypot(wx[rr, cc] - vx, wy[rr, cc] - vy) < r * (1 + 0.25 * edge[rr, cc])
        label[village] = c["village"]
        city = np.zeros((h, w), bool)
        street = np.zeros((h, w), bool)
        block_id = np.zeros((h, w), np.int64)
        for k in _overlapping(self._city_xyr, 1.5, ys, xs):
            cx, cy, r, period, off = self.cities[k]
            rr, cc = _reach(ys, xs, cy, cx, r * (1 + 0.2 * self.edge_max))
            sy, sx = ys[rr, None], xs[None, cc]
            inside = np.hypot(sx - cx, sy - cy) < r * (1 + 0.2 * edge[rr, cc])
            on_street = ((sx + off) % period < 4) | ((sy + off) % period < 4)
            city[rr, cc] |= inside
            street[rr, cc] |= inside & on_street
            bid = (np.floor((sy + off) / period) * 1000 + np.floor((sx + off) / period)) + k * 10**6
            block_id[rr, cc] = np.where(inside, bid.astype(np.int64), block_id[rr, cc])
        label[city] = c["city"]
        runway = np.zeros((h, w), bool)
        if len(self.runways):
            run_d = np.full((h, w), np.inf)
            _segment_distance(run_d, ys, xs, self.runways, self.runway_half + 1)
            runway = (run_d < self.runway_half) & ~city
        water = f["lake"].sample(ys, xs) > self.lake_threshold
        dist = np.full((h, w), np.inf)
        _segment_distance(dist, ys, xs, self.river_segs, 20.0)
        half = self.river_width[0] * (1 + 0.4 * np.sin(xs[None, :] / self.river_width[1] + ys[:, None] / 350.0))
        water |= dist < half
        if self.water_shapes > 0:
            water |= self._shaped_water(ys, xs, label, parcel_i, parcel_j, city & ~street, block_id)
        runway &= ~water
        label[runway] = c["road"]
        label[water] = c["water"]
        road_d = np.full((h, w), np.inf)
        _segment_distance(road_d, ys, xs, self.road_segs, 4.0)
        road = (road_d < 2.2) | street
        label[road] = c["road"]
        return {"label": label, "parcel_i": parcel_i, "parcel_j": parcel_j, "block": block_id,
                "runway": runway & ~road, "uy": ys, "ux": xs}

    def _shaped_water(self, ys: np.ndarray, xs: np.ndarray, label: np.ndarray, parcel_i: np.ndarray,
                      parcel_j: np.ndarray, blocks: np.ndarray, block_id: np.ndarray) -> np.ndarray:
        """Wide river, canals, harbour basins and ponds on the grid ``ys`` x ``xs`` (structure units)."""
        water = np.zeros(label.shape, bool)
        if len(self.wide_river):
            dist = np.full(label.shape, np.inf)
            _segment_distance(dist, ys, xs, self.wide_river, 1.3 * self.wide_half + 1)
            water |= dist < self.wide_half * (1 + 0.25 * np.sin(xs[None, :] / 900.0 + ys[:, None] / 700.0))
        if len(self.canals):
            dist = np.full(label.shape, np.inf)
            _segment_distance(dist, ys, xs, self.canals, self.canal_half + 1)
            water |= dist < self.canal_half
        basin = _hash(self.seed, 40, block_id, np.zeros_like(block_id)) < 0.3 * self.water_shapes
        water |= blocks & basin
        pond = _hash(self.seed, 41, parcel_i, parcel_j) < 0.08 * self.water_shapes
        water |= pond & (label == self.cls["farmland"])
        return water

    def environment(self, ys: np.ndarray, xs: np.ndarray) -> Dict[str, np.ndarray]:
        """Smooth appearance layers at pixel centres, shared by the ground samples of each pixel."""
        f = self.fields
        uy, ux = ys * self.scale, xs * self.scale
        env = {"tone": f["tone"].sample(uy, ux), "sar_tone": f["sar_tone"].sample(uy, ux)}
        if self.wind > 0:
            env["wind"] = f["wind"].sample(uy, ux)
        if self.sar_confusers > 0:
            env["sand"] = f["sand"].sample(uy, ux)
        if self.snow:
            env["snow"] = f["snow"].sample(uy, ux)
        hills = np.clip(f["hills"].sample(uy, ux) - 0.3, 0, None)
        e = f["terrain"]
        if self.confusers:  # terrain shadow in the optical: slopes facing away from the sun darken strongly
            slope = (e.sample(uy, ux + 4) - e.sample(uy, ux - 4)) + (e.sample(uy + 4, ux) - e.sample(uy - 4, ux))
            env["shade"] = np.clip(1 - 6.0 * hills * np.clip(slope, 0, None), 0.3, 1.0)
        relief = RELIEF_M * self.sar_confusers
        if relief > 0:  # range slope of the height relief * hills * terrain (m per m)
            dh = np.clip(f["hills"].sample(uy, ux + 4) - 0.3, 0, None) - np.clip(f["hills"].sample(uy, ux - 4) - 0.3,
                                                                                  0, None)
            de = e.sample(uy, ux + 4) - e.sample(uy, ux - 4)
            env["grad"] = relief * (hills * de + dh * e.sample(uy, ux)) / (8 * UNIT_M)
        return env

    def surface_window(self, ys: np.ndarray, xs: np.ndarray,
                       env: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, np.ndarray]:
        """:meth:`label_window`, :meth:`environment` and ``code``, what the sensors see (``sar_model.SURFACES``)."""
        lab = self.label_window(ys, xs)
        lab.update(env if env is not None else self.environment(ys, xs))
        c, S = self.cls, SURFACE
        label = lab["label"]
        code = self.surface_of_label[label]
        code[lab["runway"]] = S["runway"]
        farm = label == c["farmland"]
        if self.sar_confusers > 0:
            sand = farm & (lab["sand"] > 2.6 - 1.4 * self.sar_confusers)
            code[sand] = S["sand"]
            smooth = _hash(self.seed, 33, lab["parcel_i"], lab["parcel_j"]) < 0.25 * self.sar_confusers
            code[farm & ~sand & smooth] = S["smooth_field"]
        snowed = np.zeros(label.shape, bool)
        if self.snow:
            snowed = lab["snow"] > -0.85  # about four fifths of the land under snow
            code[snowed & np.isin(code, [S["farmland"], S["sand"], S["smooth_field"]])] = S["wet_snow"]
        lab.update(code=code, snowed=snowed)
        return lab

    # ----------------------------------------------------------------- noise
    def _noise(self, stream: int, window: Window, draw) -> np.ndarray:
        """Noise from fixed 256-pixel tiles seeded by (seed, stream, tile row, tile col)."""
        col, row, w, h = (int(v) for v in (window.col_off, window.row_off, window.width, window.height))
        out = None
        t = NOISE_TILE
        for tr in range(row // t, (row + h - 1) // t + 1):
            for tc in range(col // t, (col + w - 1) // t + 1):
                rng = np.random.default_rng([self.seed, stream, tr + 1000, tc + 1000])
                tile = draw(rng, (t, t))
                if out is None:
                    out = np.empty(tile.shape[:-2] + (h, w), tile.dtype)
                r0, r1 = max(row, tr * t), min(row + h, tr * t + t)
                c0, c1 = max(col, tc * t), min(col + w, tc * t + t)
                out[..., r0 - row : r1 - row, c0 - col : c1 - col] = tile[..., r0 - tr * t : r1 - tr * t,
                                                                          c0 - tc * t : c1 - tc * t]
        return out

    # ----------------------------------------------------------------- rendering
    def render(self, window: Window) -> Dict[str, np.ndarray]:
        """Label (H, W) uint8, optical (3, H, W) in ``optical_units`` and SAR (P, H, W) float32 sigma0."""
        col, row, w, h = (int(v) for v in (window.col_off, window.row_off, window.width, window.height))
        hp = self.halo
        ys, xs = row - hp + np.arange(h + 2 * hp) + 0.5, col - hp + np.arange(w + 2 * hp) + 0.5
        core = (slice(hp, hp + h), slice(hp, hp + w))
        offsets = [((i + 0.5) / self.sub - 0.5, (j + 0.5) / self.sub - 0.5)
                   for i in range(self.sub) for j in range(self.sub)]
        dx, dy = self.shift
        label, refl, mean = None, 0.0, 0.0
        env = self.environment(ys, xs)
        for oy, ox in offsets:  # ground samples within each pixel, averaged in power / reflectance
            s = self.surface_window(ys + oy, xs + ox, env)
            refl = refl + self._reflectance(_crop(s, core))
            if dx == 0 and dy == 0:
                mean = mean + self._backscatter(s, xs)
            if oy == 0 and ox == 0:
                label = s["label"][core]
        if dx != 0 or dy != 0:  # the SAR sees the ground shifted by (dx, dy) pixels
            env = self.environment(ys + dy, xs + dx)
            for oy, ox in offsets:
                mean = mean + self._backscatter(self.surface_window(ys + oy + dy, xs + ox + dx, env), xs)
        if label is None:
            label = self.label_window(ys[core[0]], xs[core[1]])["label"]
        n = len(offsets)
        return {"label": label, "optical": self._optical(refl / n, ys[core[0]], xs[core[1]], window),
                "sar": self._sar(mean / n, window)}

    def _reflectance(self, s: Dict[str, np.ndarray]) -> np.ndarray:
        """Surface reflectance (3, H, W) before clouds and sensor noise."""
        c, S, label, code = self.cls, SURFACE, s["label"], s["code"]
        uy, ux = s["uy"], s["ux"]
        lut = np.zeros((len(sm.SURFACES), 3))
        for name in ("city", "village", "water", "forest", "road", "runway", "sand", "smooth_field"):
            lut[S[name]] = REFLECTANCE[name]
        lut[S["wet_snow"]] = REFLECTANCE["snow"]
        refl = np.moveaxis(lut[code], -1, 0)
        # farmland parcels: each its own mix of green crop and bare soil, and brightness
        u1 = _hash(self.seed, 11, s["parcel_i"], s["parcel_j"])
        u2 = _hash(self.seed, 12, s["parcel_i"], s["parcel_j"])
        farm = code == S["farmland"]
        soil = u1[farm] ** 2
        green, bare = np.asarray(REFLECTANCE["crop"])[:, None], np.asarray(REFLECTANCE["bare_soil"])[:, None]
        crop = green * (1 - soil) + bare * soil
        # dense parcels darken towards forest: (0.8 - 0.4 d) to 1.2 times the crop's reflectance
        refl[:, farm] = crop * (0.8 - 0.4 * self.dense_crops * (1 - soil) + (0.4 + 0.4 * self.dense_crops) * u2[farm])
        water = label == c["water"]
        turbid = np.clip(0.5 + 0.4 * s["sar_tone"], 0, 1)
        refl[:, water] += np.asarray(REFLECTANCE["turbid"])[:, None] * turbid[water]
        if self.green_water:
            refl[:, water] += np.asarray(REFLECTANCE["algae"])[:, None] * self.green_water
        refl *= 1 + 0.06 * s["tone"]
        urban = (label == c["city"]) | (label == c["village"])
        roof = _hash(self.seed, 13, s["block"], np.floor(uy[:, None] / 9) * 7 + np.floor(ux[None, :] / 9))
        refl[:, urban] *= 0.8 + 0.4 * roof[urban]
        if self.snow:
            snowed = s["snowed"]
            for mask, name in ((snowed & urban, "snow_urban"), (snowed & (label == c["forest"]), "snow_forest")):
                refl[:, mask] = np.asarray(REFLECTANCE[name])[:, None] * (0.85 + 0.3 * roof[mask])
            open_snow = code == S["wet_snow"]
            refl[:, open_snow] *= 0.95 + 0.1 * u2[open_snow]
        if self.confusers:
            # dark roofs: a fifth of city blocks and village houses are as dark as water
            dark = urban & (_hash(self.seed, 14, s["block"], np.floor(uy[:, None] / 11) + 0 * ux[None, :]) < 0.2)
            refl[:, dark] = np.asarray(REFLECTANCE["dark_roof"])[:, None] * (0.9 + 0.2 * roof[dark])
            refl *= s["shade"]
        return refl

    def _optical(self, refl: np.ndarray, ys: np.ndarray, xs: np.ndarray, window: Window) -> np.ndarray:
        """Clouds, cloud shadows and sensor noise on reflectance, written in ``optical_units``."""
        f = self.fields
        if self.clouds:
            uy, ux = ys * self.scale, xs * self.scale
            odx, ody = self.cloud_offset
            alpha = np.clip((f["cloud"].sample(uy, ux) - 1.4) / 0.5, 0, 1)
            shadow = np.clip((f["cloud"].sample(uy - ody, ux - odx) - 1.4) / 0.5, 0, 1)
            refl = refl * (1 - (1 - sm.CLOUD_SHADOW) * shadow)
            refl = refl * (1 - alpha) + np.asarray(REFLECTANCE["cloud"])[:, None, None] * alpha
        noise = self._noise(21, window, lambda r, s: r.standard_normal((3,) + s).astype(np.float32))
        refl = np.clip(refl + sm.OPTICAL_NOISE * noise, 0.0, 1.0)
        dtype, scale, _ = OPTICAL_UNITS[self.optical_units]
        if dtype == "float32":
            return refl.astype(np.float32)
        return np.clip(np.rint(refl * scale), 1, scale).astype(dtype)  # 0 stays free for nodata

    def _backscatter(self, s: Dict[str, np.ndarray], xs: np.ndarray) -> np.ndarray:
        """Mean linear sigma0 (P, H, W) of each polarisation, before speckle; ``xs`` are image columns."""
        c, S, code, label = self.cls, SURFACE, s["code"], s["label"]
        uy, ux = s["uy"], s["ux"]
        near, far = self.incidence
        theta = np.broadcast_to(near + (far - near) * xs[None, :] / self.size, code.shape)
        theta_loc, gain = theta, 1.0
        water = label == c["water"]
        if "grad" in s:  # slopes facing the radar (on the left) are brighter, steep far slopes in shadow
            theta_loc = theta - np.degrees(np.arctan(np.where(water, 0.0, s["grad"])))  # water lies flat
            gain = np.clip(np.sin(np.radians(theta)) / np.maximum(np.sin(np.radians(theta_loc)), 1e-3), 0, 8)
            gain = np.where(theta_loc >= 89.0, 0.0, gain)  # radar shadow: only thermal noise remains
        # one standard normal per parcel, urban block or smooth patch, partly shared by the polarisations
        parcel = special.ndtri(np.clip(_hash(self.seed, 50, s["parcel_i"], s["parcel_j"]), 1e-6, 1 - 1e-6))
        block = special.ndtri(np.clip(_hash(self.seed, 52, s["block"], s["parcel_i"] * 1000 + s["parcel_j"]),
                                      1e-6, 1 - 1e-6))
        urban = (label == c["city"]) | (label == c["village"])
        per_parcel = np.isin(code, [S[n] for n in ("farmland", "sand", "smooth_field", "wet_snow", "runway")])
        z_common = np.where(per_parcel, parcel, np.where(urban, block, s["sar_tone"]))
        wind = np.zeros(code.shape)
        if self.wind > 0:
            level = NormalDist().inv_cdf(1 - min(self.wind, 0.999))
            wind = self.wind_peak * np.clip((s["wind"] - level) / 0.8, 0, 1) * water
        bright = _hash(self.seed, 32, np.floor(uy[:, None] / 5) + 0 * ux[None, :], np.floor(ux[None, :] / 5))
        corners = np.where((label == c["city"]) & (bright > 0.85), sm.CORNER_REFLECTOR_GAIN, 1.0)
        band = SENSORS[self.sensor].band
        ref = SENSORS[self.sensor].ref_incidence
        out = np.empty((len(self.pols),) + code.shape)
        for k, (mean_db, spread, slope) in enumerate(self.tables):
            z_own = special.ndtri(np.clip(_hash(self.seed, 60 + k, s["parcel_i"] * 7 + s["block"], s["parcel_j"]),
                                          1e-6, 1 - 1e-6))
            z = 0.8 * z_common + 0.6 * z_own
            db = mean_db[code] + spread[code] * z + slope[code] * (theta_loc - ref)
            rough = SURFACE["rough_water"]
            rough_db = mean_db[rough] + spread[rough] * z + slope[rough] * (theta_loc - ref)
            db = np.where(water, (1 - wind) * db + wind * rough_db, db)
            if self.snow:
                db += s["snowed"] * (sm.SNOW_FOREST_DB[band] * (label == c["forest"]) + sm.SNOW_URBAN_DB * urban)
            out[k] = 10 ** (db / 10) * gain * corners
        return out

    def _sar(self, mean: np.ndarray, window: Window) -> np.ndarray:
        """Point-spread function, correlated gamma speckle, thermal noise and calibration offset."""
        hp, k = self.halo, self.kernel
        col, row, w, h = (int(v) for v in (window.col_off, window.row_off, window.width, window.height))
        big = Window(col - hp, row - hp, w + 2 * hp, h + 2 * hp)

        def psf(a: np.ndarray) -> np.ndarray:
            if hp:
                a = ndimage.convolve1d(ndimage.convolve1d(a, k, axis=-1, mode="nearest"), k, axis=-2, mode="nearest")
            return a[..., hp : hp + h, hp : hp + w]

        shape = self.speckle_shape
        nesz = 10 ** (SENSORS[self.sensor].nesz_db / 10)
        out = np.empty((len(self.pols), h, w), np.float32)
        for p in range(len(self.pols)):
            speckle = psf(self._noise(41 + 2 * p, big, lambda r, s: r.gamma(shape, 1.0 / shape, s)))
            sigma = psf(mean[p]) * speckle
            kept = self.noise_kept_db is not None
            if kept or self.noise_floor:
                thermal = psf(self._noise(42 + 2 * p, big, lambda r, s: r.gamma(shape, 1.0 / shape, s)))
                # left in: a floor at that NESZ under everything; removed: on average, not its fluctuation
                sigma = (sigma + 10 ** (self.noise_kept_db / 10) * thermal if kept
                         else np.maximum(sigma + nesz * (thermal - 1.0), NOISE_FLOOR_CUT * nesz))
            out[p] = sigma * 10 ** (self.calibration_db / 10)
        return out


def _crop(s: Dict[str, np.ndarray], core: Tuple[slice, slice]) -> Dict[str, np.ndarray]:
    """The core window of a surface layer dict (2-D layers, and the 1-D unit coordinates)."""
    out = {k: v[core] for k, v in s.items() if v.ndim == 2}
    out["uy"], out["ux"] = s["uy"][core[0]], s["ux"][core[1]]
    return out


def _canal(rng: np.random.Generator, size: int) -> List[np.ndarray]:
    """A canal: one to three straight legs with right-angle bends, from a point of the scene."""
    x, y = rng.uniform(0.1, 0.9, 2) * size
    heading = rng.uniform(0, 2 * math.pi)
    legs = []
    for _ in range(int(rng.integers(1, 4))):
        length = rng.uniform(0.3, 1.2) * size
        end = (x + length * math.cos(heading), y + length * math.sin(heading))
        legs.append(np.array([[x, y], end]))
        (x, y), heading = end, heading + rng.choice([-1.0, 1.0]) * math.pi / 2
    return legs


def _densify(line: np.ndarray, step: float) -> np.ndarray:
    (ax, ay), (bx, by) = line
    n = max(1, int(math.ceil(math.hypot(bx - ax, by - ay) / step)))
    t = np.linspace(0, 1, n + 1)[:, None]
    return line[0] + t * (line[1] - line[0])


def scene_grid(size: int, resolution: float = 2.0, crs: str = "EPSG:32631",
               origin: Tuple[float, float] = (590000.0, 5760000.0)) -> Grid:
    """The georeferencing of synthetic scenes: north-up, square pixels, a projected CRS."""
    return Grid(CRS.from_user_input(crs).to_wkt(), Affine(resolution, 0, origin[0], 0, -resolution, origin[1]),
                size, size)


def random_scene_options(
    rng: np.random.Generator,
    sensors: Optional[Sequence[str]] = None,
    polarisations: Optional[Sequence[str]] = None,
) -> Dict[str, Any]:
    """A varied but plausible set of :func:`generate_scene` options, for training sets.

    Draws the sensor, its polarisations, looks, pixel size and resolution cell, an incidence
    range, wind, SAR confuser density, snow (one scene in ten), the amount of water, a
    calibration offset of up to +-1.5 dB, and clouds. Values are plain Python (JSON-able).

    Args:
        rng: the generator to draw from (e.g. ``np.random.default_rng(seed)``).
        sensors: sensors to choose among (default all of ``sar_model.SENSORS``).
        polarisations: fixed polarisations (e.g. ``("VV", "VH")`` for a two-band network);
            default the sensor's usual single or dual polarisation.
    """
    names = list(sensors or SENSORS)
    sensor = names[int(rng.integers(len(names)))]
    spec = SENSORS[sensor]
    if polarisations is None:
        single = (spec.polarisations[0],)
        pols = spec.polarisations if rng.random() < 0.6 else single
    else:
        pols = tuple(polarisations)
    pixel = float(spec.pixel_sizes[int(rng.integers(len(spec.pixel_sizes)))])
    near, far = spec.incidence
    span = float(rng.uniform(0.5, far - near))  # a chip sees part of the swath
    start = float(rng.uniform(near, far - span))
    wind = 0.0 if rng.random() < 0.4 else float(rng.uniform(0.1, 0.7))
    looks = float(rng.uniform(3.5, 5.0)) if sensor == "s1" else float(rng.uniform(1.0, 5.0))
    return {
        "sensor": sensor,
        "polarisations": [str(p) for p in pols],
        "looks": round(looks, 2),
        "resolution": pixel,
        "sar_resolution": max(spec.resolution_m, 2 * pixel),
        "incidence": [round(start, 2), round(start + span, 2)],
        "wind": round(wind, 3),
        "sar_confusers": round(float(rng.uniform(0.0, 1.0)), 3),
        "snow": bool(rng.random() < 0.1),
        "lake_threshold": round(float(rng.uniform(0.5, 2.3)), 3),
        "calibration_db": round(float(rng.uniform(-1.5, 1.5)), 3),
        "clouds": bool(rng.random() < 0.5),
    }


def generate_scene(
    out_dir: Union[str, Path],
    size: int = 512,
    seed: int = 1,
    looks: float = 4.0,
    misregistration: Tuple[float, float] = (0.0, 0.0),
    clouds: bool = True,
    confusers: bool = True,
    resolution: float = 2.0,
    write_vector: Optional[bool] = None,
    block: int = 1024,
    schema: Optional[ClassSchema] = None,
    overwrite: bool = False,
    progress: Progress = NULL_PROGRESS,
    **options: Any,
) -> Dict[str, Any]:
    """Write a synthetic co-registered scene as GeoTIFFs (and the label as polygons).

    Files in ``out_dir``: ``optical.tif`` (3 bands red, green, blue reflectance in
    ``optical_units``: uint8 x 255 or uint16 x 10000 with 0 = nodata, or float32 0-1 with
    NaN = nodata), ``sar.tif`` (float32 linear sigma0, one band per polarisation named after
    it, NaN = nodata), ``label.tif`` (uint8 class ids with a colour table, 255 = nodata) and
    ``label.gpkg`` (polygons with ``class_id`` and ``class_name``). Rasters are written window
    by window, so memory does not grow with ``size``.

    Args:
        out_dir: folder for the files (created if missing).
        size: width and height in pixels.
        seed: same seed (and options), same scene.
        looks: SAR equivalent number of looks (gamma speckle).
        misregistration: (dx, dy) shift of the SAR against the optical, in pixels.
        clouds: clouds and cloud shadows in the optical image.
        confusers: dark roofs and terrain shadow in the optical image.
        resolution: pixel size in metres (structures keep their size in metres).
        write_vector: write ``label.gpkg``; default only for scenes up to 4096 pixels.
        block: window size for writing.
        schema: class schema (default the paper's six classes).
        overwrite: replace existing files.
        progress: progress and cancellation.
        **options: the other keyword arguments of :class:`SyntheticScene`: ``sensor``,
            ``polarisations``, ``sar_resolution``, ``incidence``, ``wind``, ``sar_confusers``,
            ``snow``, ``lake_threshold``, ``calibration_db``, ``noise_floor``, ``noise_kept_db``,
            ``optical_units``, ``supersample`` (e.g. from :func:`random_scene_options`).

    Returns:
        dict with paths ``optical``, ``sar``, ``label``, ``label_vector`` (or None), the scene's
        ``size``, ``seed``, ``resolution``, ``class_fractions`` (name -> fraction of pixels) and
        ``options`` (the SAR and optical options in force).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scene = SyntheticScene(size, seed, looks, misregistration, clouds, confusers, schema, resolution=resolution,
                           **options)
    grid = scene_grid(size, resolution)
    paths = {k: out / f"{k}.tif" for k in ("optical", "sar", "label")}
    write_vector = size <= 4096 if write_vector is None else write_vector
    vector = out / "label.gpkg"
    for p in list(paths.values()) + ([vector] if write_vector else []):
        check_output(p, overwrite)
    sch = scene.schema
    counts = np.zeros(256, np.int64)
    windows = list(iter_windows(size, size, block))
    opt_dtype, _, opt_nodata = OPTICAL_UNITS[scene.optical_units]
    with contextlib.ExitStack() as stack:
        opt = stack.enter_context(open_writer(paths["optical"], grid, 3, opt_dtype, opt_nodata, overwrite,
                                              ("red", "green", "blue"), photometric="RGB"))
        sar = stack.enter_context(open_writer(paths["sar"], grid, len(scene.pols), "float32", float("nan"),
                                              overwrite, scene.pols))
        lab = stack.enter_context(open_writer(paths["label"], grid, 1, "uint8", sch.ignore_index, overwrite,
                                              ("class",)))
        lab.write_colormap(1, {i: sch.rgb(i) + (255,) for i in sch.ids})
        for k, (window, _) in enumerate(windows):
            progress.check()
            tile = scene.render(window)
            opt.write(tile["optical"], window=window)
            sar.write(tile["sar"], window=window)
            lab.write(tile["label"][None], window=window)
            counts += np.bincount(tile["label"].ravel(), minlength=256)
            progress.report((k + 1) / (len(windows) + (1 if write_vector else 0)), "synthetic scene")
    result: Dict[str, Any] = {name: str(p) for name, p in paths.items()}
    result["label_vector"] = None
    if write_vector:
        polygonize_labels(paths["label"], vector, sch, overwrite=overwrite)
        result["label_vector"] = str(vector)
    progress.report(1.0, "synthetic scene written")
    total = float(size * size)
    result.update(
        size=size,
        seed=seed,
        resolution=resolution,
        class_fractions={n: float(counts[i]) / total for n, i in zip(sch.names, sch.ids)},
        options=scene.options(),
    )
    return result


def list_outputs(result: Dict[str, Any]) -> List[str]:
    """The file paths of a :func:`generate_scene` result."""
    return [result[k] for k in ("optical", "sar", "label", "label_vector") if result.get(k)]
