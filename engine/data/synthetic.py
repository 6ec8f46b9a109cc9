"""Seeded synthetic optical + SAR scenes with a six-class label, for tests, demos and benchmarks.

A scene is a set of smooth, seeded functions of the pixel position (coarse random fields
sampled with cubic B-splines, polylines for rivers and roads, hashed parcel and block
identities) plus noise drawn in fixed 256 x 256 tiles seeded by their position. Any window
is therefore computed on its own, identically whatever the window size, and a 16384 x
16384 scene is written window by window in bounded memory. Same seed, same scene.

Appearance follows the classes of :class:`~engine.config.ClassSchema` (names, not ids, are
looked up): in the SAR, water is dark, city bright and speckle is multiplicative gamma
noise of ``looks`` looks; in the optical image, cloud shadows, dark roofs and terrain
shadow look like water and clouds hide the ground.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window
from scipy import ndimage

from ..config import ClassSchema
from ..progress import NULL_PROGRESS, Progress
from ..raster.grid import Grid
from ..raster.io import check_output, iter_windows, open_writer
from ..raster.polygons import polygonize_labels

NOISE_TILE = 256
_U64 = np.uint64

# SAR mean backscatter (linear sigma0) per class name
SAR_MEAN = {"farmland": 0.045, "city": 0.55, "village": 0.2, "water": 0.004, "forest": 0.11, "road": 0.015}
# optical mean colour (RGB, 8 bit) per class name
RGB_MEAN = {
    "farmland": (150, 160, 90),
    "city": (165, 160, 155),
    "village": (170, 120, 95),
    "water": (35, 55, 75),
    "forest": (45, 85, 45),
    "road": (125, 125, 120),
}


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
    y0, x0 = ys[0], xs[0]
    near = (
        (np.minimum(segs[:, 0], segs[:, 2]) - reach <= xs[-1])
        & (np.maximum(segs[:, 0], segs[:, 2]) + reach >= x0)
        & (np.minimum(segs[:, 1], segs[:, 3]) - reach <= ys[-1])
        & (np.maximum(segs[:, 1], segs[:, 3]) + reach >= y0)
    )
    for ax, ay, bx, by in segs[near]:
        c_lo = max(int(math.floor(min(ax, bx) - reach - x0)), 0)
        c_hi = min(int(math.ceil(max(ax, bx) + reach - x0)) + 1, xs.size)
        r_lo = max(int(math.floor(min(ay, by) - reach - y0)), 0)
        r_hi = min(int(math.ceil(max(ay, by) + reach - y0)) + 1, ys.size)
        if c_lo >= c_hi or r_lo >= r_hi:
            continue
        px = xs[None, c_lo:c_hi]
        py = ys[r_lo:r_hi, None]
        dx, dy = bx - ax, by - ay
        t = np.clip(((px - ax) * dx + (py - ay) * dy) / max(dx * dx + dy * dy, 1e-12), 0.0, 1.0)
        d = np.hypot(px - ax - t * dx, py - ay - t * dy)
        np.minimum(dist[r_lo:r_hi, c_lo:c_hi], d, out=dist[r_lo:r_hi, c_lo:c_hi])


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
        looks: equivalent number of looks of the SAR speckle.
        misregistration: (dx, dy) shift of the SAR relative to the optical, in pixels.
        clouds: add clouds and their shadows to the optical image.
        confusers: add water-like dark roofs and terrain shadow to the optical image.
        schema: class schema whose names pick the classes.
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
    ) -> None:
        if size < 32:
            raise ValueError(f"synthetic scene size must be at least 32 pixels, got {size}")
        if looks <= 0:
            raise ValueError(f"looks must be positive, got {looks}")
        self.size, self.seed, self.looks = int(size), int(seed), float(looks)
        self.shift = (float(misregistration[0]), float(misregistration[1]))
        self.clouds, self.confusers = clouds, confusers
        self.schema = schema or ClassSchema()
        missing = set(SAR_MEAN) - {n.lower() for n in self.schema.names}
        if missing:
            raise ValueError(f"synthetic scenes need the classes {sorted(SAR_MEAN)}; schema lacks {sorted(missing)}")
        self.cls = {n: self.schema.id_of(n) for n in SAR_MEAN}
        rng = np.random.default_rng([self.seed, 7])
        f = {name: _Field(rng, size, 32, sig) for name, sig in
             (("forest", 3.0), ("lake", 2.5), ("warp_x", 2.0), ("warp_y", 2.0), ("cloud", 2.0),
              ("terrain", 4.0), ("hills", 6.0), ("edge", 1.0), ("tone", 3.0))}
        self.fields = f
        area = (size / 1024.0) ** 2
        self.cities = [(rng.uniform(0.15, 0.85) * size, rng.uniform(0.15, 0.85) * size,
                        rng.uniform(70, 160), rng.uniform(28, 44), rng.uniform(0, 40))
                       for _ in range(max(1, int(round(area * 1.5))))]
        self.villages = [(rng.uniform(0, size), rng.uniform(0, size), rng.uniform(16, 34))
                         for _ in range(max(2, int(round(area * 12))))]
        rivers = [_polyline(rng, size, 6.0, 0.9) for _ in range(max(1, int(round(size / 3072))))]
        self.river_segs = np.concatenate([_segments(r) for r in rivers])
        self.river_width = [rng.uniform(5, 9), rng.uniform(200, 600)]  # half-width, variation scale
        roads = [_polyline(rng, size, 24.0, 0.25) for _ in range(max(2, int(round(size / 384))))]
        # connect each village to the nearest main-road point with a straight track
        road_pts = np.concatenate(roads)
        tracks = []
        for vx, vy, _ in self.villages:
            k = int(np.argmin(np.hypot(road_pts[:, 0] - vx, road_pts[:, 1] - vy)))
            tracks.append(np.array([[vx, vy], road_pts[k]]))
        self.road_segs = np.concatenate([_segments(r) for r in roads] + [_segments(_densify(t, 24.0)) for t in tracks])
        self.cloud_offset = (rng.uniform(25, 45), rng.uniform(15, 35))

    # ----------------------------------------------------------------- structure
    def label_window(self, ys: np.ndarray, xs: np.ndarray) -> Dict[str, np.ndarray]:
        """Class ids and helper layers on the pixel-centre grid ``ys`` x ``xs``."""
        f, c = self.fields, self.cls
        h, w = ys.size, xs.size
        wx = xs[None, :] + 12 * f["warp_x"].sample(ys, xs)
        wy = ys[:, None] + 12 * f["warp_y"].sample(ys, xs)
        parcel_i, parcel_j = np.floor(wy / 52.0), np.floor(wx / 64.0)
        label = np.full((h, w), c["farmland"], np.uint8)
        label[f["forest"].sample(ys, xs) > 0.85] = c["forest"]
        edge = f["edge"].sample(ys, xs)
        village = np.zeros((h, w), bool)
        for vx, vy, r in self.villages:
            if vx + 2 * r < xs[0] or vx - 2 * r > xs[-1] or vy + 2 * r < ys[0] or vy - 2 * r > ys[-1]:
                continue
            village |= np.hypot(wx - vx, wy - vy) < r * (1 + 0.25 * edge)
        label[village] = c["village"]
        city = np.zeros((h, w), bool)
        street = np.zeros((h, w), bool)
        block_id = np.zeros((h, w), np.int64)
        for k, (cx, cy, r, period, off) in enumerate(self.cities):
            if cx + 1.5 * r < xs[0] or cx - 1.5 * r > xs[-1] or cy + 1.5 * r < ys[0] or cy - 1.5 * r > ys[-1]:
                continue
            inside = np.hypot(xs[None, :] - cx, ys[:, None] - cy) < r * (1 + 0.2 * edge)
            gx, gy = (xs[None, :] + off) % period, (ys[:, None] + off) % period
            on_street = (gx < 4) | (gy < 4)
            city |= inside
            street |= inside & on_street
            bid = (np.floor((ys[:, None] + off) / period) * 1000 + np.floor((xs[None, :] + off) / period)) + k * 10**6
            block_id = np.where(inside, bid.astype(np.int64), block_id)
        label[city] = c["city"]
        water = f["lake"].sample(ys, xs) > 2.1
        dist = np.full((h, w), np.inf)
        _segment_distance(dist, ys, xs, self.river_segs, 20.0)
        half = self.river_width[0] * (1 + 0.4 * np.sin(xs[None, :] / self.river_width[1] + ys[:, None] / 350.0))
        water |= dist < half
        label[water] = c["water"]
        road_d = np.full((h, w), np.inf)
        _segment_distance(road_d, ys, xs, self.road_segs, 4.0)
        label[(road_d < 2.2) | street] = c["road"]
        return {"label": label, "parcel_i": parcel_i, "parcel_j": parcel_j, "block": block_id, "water_d": dist}

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
        """Label (H, W) uint8, optical (3, H, W) uint8 and SAR (1, H, W) float32 of a window."""
        col, row, w, h = (int(v) for v in (window.col_off, window.row_off, window.width, window.height))
        ys, xs = row + np.arange(h) + 0.5, col + np.arange(w) + 0.5
        lab = self.label_window(ys, xs)
        return {"label": lab["label"], "optical": self._optical(ys, xs, lab, window),
                "sar": self._sar(ys, xs, lab, window)}

    def _optical(self, ys: np.ndarray, xs: np.ndarray, lab: Dict[str, np.ndarray], window: Window) -> np.ndarray:
        f, c, label = self.fields, self.cls, lab["label"]
        rgb = np.zeros((3,) + label.shape, np.float64)
        lut = np.zeros((256, 3))
        for name, colour in RGB_MEAN.items():
            lut[c[name]] = colour
        rgb[:] = np.moveaxis(lut[label], -1, 0)
        # farmland parcels: each parcel its own crop colour and brightness
        u1 = _hash(self.seed, 11, lab["parcel_i"], lab["parcel_j"])
        u2 = _hash(self.seed, 12, lab["parcel_i"], lab["parcel_j"])
        farm = label == c["farmland"]
        crop = np.stack([120 + 80 * u1, 130 + 60 * u2, 60 + 50 * u1 * u2])
        rgb[:, farm] = crop[:, farm]
        tone = f["tone"].sample(ys, xs)
        rgb *= 1 + 0.06 * tone
        urban = (label == c["city"]) | (label == c["village"])
        roof = _hash(self.seed, 13, lab["block"], np.floor(ys[:, None] / 9) * 7 + np.floor(xs[None, :] / 9))
        rgb[:, urban] *= (0.8 + 0.4 * roof[urban])
        if self.confusers:
            # dark roofs: a fifth of city blocks and village houses are as dark as water
            dark = urban & (_hash(self.seed, 14, lab["block"], np.floor(ys[:, None] / 11) + 0 * xs[None, :]) < 0.2)
            rgb[:, dark] = np.array([38.0, 48.0, 62.0])[:, None] * (0.9 + 0.2 * roof[dark])
            # terrain shadow: slopes facing away from the sun in hilly areas darken strongly
            hills = np.clip(f["hills"].sample(ys, xs) - 0.3, 0, None)
            e = f["terrain"]
            slope = (e.sample(ys, xs + 4) - e.sample(ys, xs - 4)) + (e.sample(ys + 4, xs) - e.sample(ys - 4, xs))
            shade = np.clip(1 - 6.0 * hills * np.clip(slope, 0, None), 0.3, 1.0)
            rgb *= shade
        if self.clouds:
            dx, dy = self.cloud_offset
            alpha = np.clip((f["cloud"].sample(ys, xs) - 1.4) / 0.5, 0, 1)
            shadow = np.clip((f["cloud"].sample(ys - dy, xs - dx) - 1.4) / 0.5, 0, 1)
            rgb *= 1 - 0.65 * shadow
            rgb = rgb * (1 - alpha) + 235 * alpha
        noise = self._noise(21, window, lambda r, s: r.standard_normal((3,) + s).astype(np.float32))
        rgb += 4.0 * noise
        return np.clip(np.rint(rgb), 1, 255).astype(np.uint8)  # 0 stays free for nodata

    def _sar_mean(self, ys: np.ndarray, xs: np.ndarray, lab: Optional[Dict[str, np.ndarray]] = None) -> np.ndarray:
        lab = lab or self.label_window(ys, xs)
        c, label = self.cls, lab["label"]
        lut = np.zeros(256)
        for name, value in SAR_MEAN.items():
            lut[c[name]] = value
        mean = lut[label]
        farm = label == c["farmland"]
        mean[farm] *= 10 ** (0.25 * (_hash(self.seed, 31, lab["parcel_i"], lab["parcel_j"])[farm] - 0.5))
        city = label == c["city"]
        bright = _hash(self.seed, 32, np.floor(ys[:, None] / 5) + 0 * xs[None, :], np.floor(xs[None, :] / 5))
        mean[city] *= np.where(bright[city] > 0.85, 6.0, 1.0)  # double-bounce corners
        mean *= 10 ** (0.1 * self.fields["terrain"].sample(ys, xs))  # slopes facing the radar
        return mean

    def _sar(self, ys: np.ndarray, xs: np.ndarray, lab: Dict[str, np.ndarray], window: Window) -> np.ndarray:
        dx, dy = self.shift
        if dx == 0 and dy == 0:
            mean = self._sar_mean(ys, xs, lab)
        else:  # the SAR sees the ground shifted; bilinear blend gives sub-pixel shifts
            ix, iy = math.floor(dx), math.floor(dy)
            fx, fy = dx - ix, dy - iy
            m = self._sar_mean(np.append(ys, ys[-1] + 1) + iy, np.append(xs, xs[-1] + 1) + ix)
            mean = ((1 - fy) * ((1 - fx) * m[:-1, :-1] + fx * m[:-1, 1:])
                    + fy * ((1 - fx) * m[1:, :-1] + fx * m[1:, 1:]))
        looks = self.looks
        speckle = self._noise(41, window, lambda r, s: r.gamma(looks, 1.0 / looks, s).astype(np.float32))
        return (mean * speckle).astype(np.float32)[None]


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
) -> Dict[str, Any]:
    """Write a synthetic co-registered scene as GeoTIFFs (and the label as polygons).

    Files in ``out_dir``: ``optical.tif`` (3 x uint8 RGB, 0 = nodata), ``sar.tif`` (1 x
    float32 linear sigma0, NaN = nodata), ``label.tif`` (uint8 class ids with a colour
    table, 255 = nodata) and ``label.gpkg`` (polygons with ``class_id`` and ``class_name``).
    Rasters are written window by window, so memory does not grow with ``size``.

    Args:
        out_dir: folder for the files (created if missing).
        size: width and height in pixels.
        seed: same seed, same scene.
        looks: SAR equivalent number of looks (gamma speckle).
        misregistration: (dx, dy) shift of the SAR against the optical, in pixels.
        clouds: clouds and cloud shadows in the optical image.
        confusers: dark roofs and terrain shadow in the optical image.
        resolution: pixel size in metres.
        write_vector: write ``label.gpkg``; default only for scenes up to 4096 pixels.
        block: window size for writing.
        schema: class schema (default the paper's six classes).
        overwrite: replace existing files.
        progress: progress and cancellation.

    Returns:
        dict with paths ``optical``, ``sar``, ``label``, ``label_vector`` (or None) and the
        scene's ``size``, ``seed``, ``class_fractions`` (name -> fraction of pixels).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scene = SyntheticScene(size, seed, looks, misregistration, clouds, confusers, schema)
    grid = scene_grid(size, resolution)
    paths = {k: out / f"{k}.tif" for k in ("optical", "sar", "label")}
    write_vector = size <= 4096 if write_vector is None else write_vector
    vector = out / "label.gpkg"
    for p in list(paths.values()) + ([vector] if write_vector else []):
        check_output(p, overwrite)
    sch = scene.schema
    counts = np.zeros(256, np.int64)
    windows = list(iter_windows(size, size, block))
    with contextlib.ExitStack() as stack:
        opt = stack.enter_context(open_writer(paths["optical"], grid, 3, "uint8", 0, overwrite,
                                              ("red", "green", "blue"), photometric="RGB"))
        sar = stack.enter_context(open_writer(paths["sar"], grid, 1, "float32", float("nan"), overwrite,
                                              ("sigma0",)))
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
    )
    return result


def list_outputs(result: Dict[str, Any]) -> List[str]:
    """The file paths of a :func:`generate_scene` result."""
    return [result[k] for k in ("optical", "sar", "label", "label_vector") if result.get(k)]
