"""Observed flood extent, permanent water, flood likelihood and exclusion from two SAR dates.

The after date's grid is the output grid (cropped to the areas of interest when given); the
before date is warped onto it on the fly, and each date's units are resolved on their own, so
the two dates may differ in grid, resolution and units.

Water on each date (``method``):

- ``teacher`` (default): the SAR water teacher streamed over the date
  (:func:`engine.inference.sar_only.water_probability`); water where ``p >= water_threshold``.
- ``threshold``: the classical scene-adaptive threshold of :mod:`engine.water.threshold`
  (split-based bimodal tiles, Kittler-Illingworth, hysteresis region growing) fitted to each
  date on its own; water = the grown mask; the probability is the posterior of the two
  Gaussians fitted to the date's histogram.
- A date with an optical image and a student model is mapped by the student
  (``engine segment``; the teacher, when given, answers where the optical is missing): water
  is the student's water class; as ``engine segment`` keeps only the top class's probability
  ``c``, the water probability is ``c`` where the student says water and ``(1 - c) / (K - 1)``
  elsewhere (the rest shared evenly by the other classes: an estimate), the teacher's own
  probability on SAR-only pixels.

Per pixel, with ``p_a``, ``p_b`` the water probabilities after and before:

- ``flood_extent.tif`` (uint8): 0 not water on either date, 1 **observed flood** (water after,
  not before), 2 **permanent water** (both), 3 receded water (before only), 254 excluded
  (exclusion codes 2-4 below), 255 no data on a date;
- ``flood_likelihood.tif`` (float32): ``p_a * (1 - p_b)``, the probability that the pixel is
  water after and was not before if the two dates' errors are independent (not masked by the
  exclusion layer; NaN without data);
- ``exclusion.tif`` (uint8): where SAR cannot see water: 1 no SAR value on a date, 2 radar
  shadow on a date, 3 layover on a date (:mod:`.terrain`: from local-incidence rasters, or a
  DEM with each date's look direction), 4 **low backscatter**: both dates below ``low_db``
  (speckle-filtered, default -23 dB, meant for C-band VV; about -30 dB for VH) but not water on
  both dates: surfaces as dark as calm water (dry sand, tarmac, smooth bare soil) that a flood
  would not change, where no water can be confirmed or ruled out; 0 usable;
- ``water_after.tif``, ``water_before.tif`` (float32): each date's water probability on the grid;
- ``flood_report.json`` / ``.html``: flooded area (km²) per area-of-interest polygon and totals;
- optionally ``flood_polygons.gpkg``: the observed flood as polygons (``engine.vector``), with the
  mean flood likelihood of each polygon as ``mean_conf``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from .. import __version__
from ..config import InferenceConfig
from ..files import output_folder
from ..inputs.contract import check_sar_levels, check_sar_noise_floor, sar_levels_of
from ..progress import NULL_PROGRESS, Progress
from ..raster.ancillary import check_dem, check_local_incidence
from ..raster.grid import Grid, grid_of, read_on_grid
from ..raster.io import check_output, iter_windows, open_writer, read_bands
from ..validate import RunLock, check_output_folder, check_outputs_not_inputs, check_unlocked
from ..water.experts import choose_for_dates, load_water_expert
from ..water.source import smoothed_reader
from ..water.threshold import (
    ThresholdResult,
    WaterThresholdConfig,
    estimate_threshold,
    for_levels,
    iter_water_masks,
    threshold_config,
)
from .report import EXCLUSION_CLASSES, FLOOD_CLASSES, AreaCounter, load_zones, summarise, write_reports
from .sources import REGISTRATION_MIN_SHIFT, DateSar, bands_of, db_source, footprint_share, registration_shift
from .terrain import Geometry, shadow_layover

PathLike = Union[str, Path]
METHODS = ("teacher", "threshold")
OUTPUTS = {
    "flood": "flood_extent.tif",
    "likelihood": "flood_likelihood.tif",
    "exclusion": "exclusion.tif",
    "water_after": "water_after.tif",
    "water_before": "water_before.tif",
}
REPORTS = ("flood_report.json", "flood_report.html")
POLYGONS = "flood_polygons.gpkg"
DRY, FLOOD, PERMANENT, RECEDED, EXCLUDED, NODATA = 0, 1, 2, 3, 254, 255
EX_NODATA, EX_SHADOW, EX_LAYOVER, EX_LOW = 1, 2, 3, 4


@dataclass
class FloodDate:
    """One SAR date, optionally with an optical image of the same day and its viewing geometry."""

    sar: PathLike
    bands: Tuple[int, ...] = ()
    units: str = "auto"
    calibration: float = 0.0
    levels: str = "auto"  # calibrated or relative SAR levels (config.SAR_LEVELS): the teacher's water cut
    backscatter: str = "auto"  # sigma or gamma nought (config.SAR_BACKSCATTER; auto: named by the file)
    noise_floor: str = "auto"  # config.SAR_NOISE_FLOOR: the VV + VH expert's VH floor taken off (off: kept)
    optical: Optional[PathLike] = None
    optical_bands: Tuple[int, ...] = ()
    optical_units: str = "auto"
    geometry: Geometry = field(default_factory=Geometry)


@dataclass
class FloodConfig:
    """How water, flood and exclusion are decided (module docstring)."""

    method: str = "teacher"
    water_threshold: float = 0.5
    low_db: float = -23.0
    smoothing: str = "median"
    smoothing_size: int = 5
    shadow_deg: float = 90.0
    layover_deg: float = 0.0
    shared_threshold: bool = True
    min_change_db: float = 3.0
    darkened_water_is_flood: bool = True
    grow: bool = True
    threshold: WaterThresholdConfig = field(default_factory=threshold_config)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"flood method must be one of {METHODS}, got {self.method!r}")
        if not 0.0 < self.water_threshold < 1.0:
            raise ValueError(f"water threshold must be between 0 and 1, got {self.water_threshold}")


def _date(value: Union[FloodDate, PathLike]) -> FloodDate:
    return value if isinstance(value, FloodDate) else FloodDate(value)


class _DateWater:
    """One date's water on the output grid, window by window, in the order of ``iter_windows``."""

    def __init__(self, name: str, sar: DateSar, cfg: FloodConfig) -> None:
        self.name, self.sar, self.cfg = name, sar, cfg
        self.prob_path: Optional[Path] = None  # teacher / student: probability raster
        self.decision_band: Optional[int] = None  # student: band holding its water decision
        self.threshold: Optional[ThresholdResult] = None
        self.info: Dict[str, Any] = {"units": sar.units.units, "band": sar.band}

    def windows(self, grid: Grid, progress: Progress) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield (smoothed dB, water bool, probability) per window."""
        cfg = self.cfg
        if self.threshold is not None:
            mix = self.threshold.mixture
            for _, db, mask in iter_water_masks(self.sar.source, self.threshold, cfg.threshold, cfg.grow, progress):
                yield db, mask == 1, _posterior(db, mix, self.threshold.has_water)
            return
        read = smoothed_reader(self.sar.source, cfg.smoothing, cfg.smoothing_size)
        windows = list(iter_windows(grid.width, grid.height, cfg.threshold.block))
        for i, (win, _) in enumerate(windows):
            prob = read_on_grid(self.prob_path, [1], grid, win)[0]
            if self.decision_band:
                water = read_on_grid(self.prob_path, [self.decision_band], grid, win, "nearest")[0] == 1
            else:
                with np.errstate(invalid="ignore"):
                    water = prob >= cfg.water_threshold
            yield read(win), water, prob
            progress.report((i + 1) / len(windows), f"flood map: {self.name}")


def _posterior(db: np.ndarray, mix, has_water: bool) -> np.ndarray:
    """Posterior water probability of dB values under a two-Gaussian (water, land) mixture."""
    if mix is None or not has_water:
        return np.where(np.isfinite(db), 0.0, np.nan).astype(np.float32)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        logs = [
            math.log(max(w, 1e-12)) - math.log(max(s, 1e-6)) - 0.5 * ((db - m) / max(s, 1e-6)) ** 2
            for w, m, s in zip(mix.weights, mix.means, mix.stds)
        ]
        p = 1.0 / (1.0 + np.exp(np.clip(logs[1] - logs[0], -60, 60)))
    return p.astype(np.float32)


def map_flood(
    after: Union[FloodDate, PathLike],
    before: Union[FloodDate, PathLike],
    out_dir: PathLike,
    cfg: Optional[FloodConfig] = None,
    *,
    teacher_path: Optional[PathLike] = None,
    teacher: Optional[Tuple[Any, Any]] = None,
    student_path: Optional[PathLike] = None,
    inference: Optional[InferenceConfig] = None,
    aoi: Optional[PathLike] = None,
    aoi_name_field: Optional[str] = None,
    dem: Optional[PathLike] = None,
    truth: Optional[PathLike] = None,
    vectorize: bool = False,
    vector_min_area: float = 0.0,
    overwrite: bool = False,
    progress: Optional[Progress] = None,
) -> Dict[str, Any]:
    """Map a flood from a before and an after SAR date (module docstring).

    Args:
        after, before: the two dates (a path, or a :class:`FloodDate` with bands, units,
            optical image and viewing geometry).
        out_dir: folder for the outputs (created if missing).
        cfg: method and thresholds.
        teacher_path: SAR water teacher (required by ``method="teacher"``; with a student it
            answers where a date's optical image is missing).
        teacher: an already loaded ``(network, metadata)`` to use instead of ``teacher_path``
            for the SAR-only dates (a custom network, or one loaded once for several runs).
        student_path: student model, used for the dates that have an optical image.
        inference: tile size, overlap, batch size, device and threads of the networks.
        aoi: polygon file: the map is cut to the polygons' extent and the report gives the
            flooded area of each polygon (named by ``aoi_name_field``, default its first text field).
        dem: elevation raster (metres) for shadow/layover with each date's look direction.
        truth: reference flood raster (1 = flooded, 0 = not, other = unknown), for scores.
        vectorize: also write the observed flood as polygons (``flood_polygons.gpkg``), dropping
            those smaller than ``vector_min_area`` (m² on the ground, whatever the CRS).
        overwrite: replace existing outputs.
        progress: reporting and cancellation.

    Returns:
        ``outputs`` (paths), ``totals`` and ``areas`` (km²), per-date details (units, water
        fraction, thresholds), ``scores`` (with ``truth``), ``grid``, ``seconds``, ``warnings``.

    Raises:
        ValueError: missing or unusable inputs (no teacher for the teacher method, dates that
            do not overlap, unknown bands), existing outputs without ``overwrite``.
        Canceled: on cancel; no output and no temporary file is left.
    """
    t0 = time.perf_counter()
    cfg = cfg or FloodConfig()
    progress = progress or NULL_PROGRESS
    inference = inference or InferenceConfig()
    after, before = _date(after), _date(before)
    uses_student = {name: bool(d.optical and student_path) for name, d in (("after", after), ("before", before))}
    _check_request(after, before, out_dir, cfg, teacher_path, teacher is not None, student_path, aoi, dem, truth,
                   uses_student, vectorize, overwrite)
    out = Path(out_dir)
    with output_folder(out):  # a refused or failed run leaves no empty folder behind
        full = grid_of(after.sar)
        grid, zones = full, []
        zone_warnings: List[str] = []
        if aoi is not None:
            zones, zone_warnings = _zones_seen(load_zones(aoi, full, aoi_name_field), aoi, after.sar)
            x0, y0 = min(z.window[0] for z in zones), min(z.window[1] for z in zones)
            x1, y1 = max(z.window[2] for z in zones), max(z.window[3] for z in zones)
            grid = full.window_grid(Window(x0, y0, x1 - x0, y1 - y0))
            seen = {z.name for z in zones}
            zones = [z for z in load_zones(aoi, grid, aoi_name_field) if z.name in seen]
        warnings: List[str] = zone_warnings + _check_terrain(after, before, dem, grid, cfg)
        dates = {}
        for name, d in (("after", after), ("before", before)):
            sar = db_source(d.sar, bands_of(d.bands, d.sar), grid, d.units, d.calibration, name, d.backscatter)
            progress.info(f"{name}: " + sar.units.line(d.sar))
            if sar.note:
                warnings.append(f"{name}: {sar.note}")
            dates[name] = _DateWater(name, sar, cfg)
        warnings += _pair_warnings(after, before, dates, grid, cfg.threshold.block)
        for text in warnings:
            progress.warning(text)

        with RunLock(out, "flood"):
            tmp = out / f".flood-tmp-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            try:
                loaded = {}  # each water expert is loaded once, whichever dates it maps
                experts = {}  # one water expert for both dates (engine.water.experts.choose_for_dates)
                if teacher is None and cfg.method == "teacher":
                    experts = choose_for_dates(teacher_path, {n: (d.sar, d.bands, d.units) for n, d in (
                        ("after", after), ("before", before)) if not uses_student[n]})
                spans = {"after": (0.02, 0.38), "before": (0.38, 0.74)}
                for name, d in (("after", after), ("before", before)):
                    sub = progress.sub(*spans[name])
                    water = dates[name]
                    if uses_student[name]:
                        water.prob_path = _student_water(d, name, student_path, teacher_path, grid, tmp, inference, sub)
                        water.decision_band = 2
                        water.info["method"] = "student"
                    elif cfg.method == "teacher":
                        from ..inference.sar_only import water_probability

                        model, bands = teacher_path, d.bands or None
                        if teacher is None:
                            choice = experts[name]
                            model, bands = choice.path, choice.sar_bands or bands
                            if choice.reason:
                                progress.info(f"{name}: {choice.reason}")
                            if model not in loaded:
                                progress.info(f"loading {model}")
                                loaded[model] = load_water_expert(choice, teacher_path)
                        res = water_probability(
                            d.sar, model, tmp / f"water_{name}.tif", grid, inference, sar_bands=bands,
                            sar_units=water.sar.units.units, sar_calibration=d.calibration, sar_levels=d.levels,
                            sar_backscatter=d.backscatter, sar_noise_floor=d.noise_floor,
                            teacher=teacher or loaded[model], progress=sub,
                        )
                        water.prob_path = Path(res["path"])
                        water.info.update(method="teacher", teacher=Path(model).name if model else "",
                                          teacher_water_fraction=res["water_fraction"],
                                          tiles=res["tiles"], device=res["device"], scene_cut=res.get("scene_cut"),
                                          cross_polarised=res.get("cross_polarised"))
                        # the date's own reading said some of these already (zeros, fills): once is enough
                        warnings += [t for w in res["inputs"]["warnings"] if (t := f"{name}: {w}") not in warnings]
                    else:
                        relative = sar_levels_of(d.sar, d.levels, water.sar.units.units, d.calibration)[0]
                        water.threshold = estimate_threshold(water.sar.source, for_levels(cfg.threshold, relative), sub)
                        water.info.update(method="threshold", threshold=water.threshold.to_dict(),
                                          sar_levels="relative" if relative else "calibrated")
                if cfg.method == "threshold":
                    warnings += _share_thresholds(dates, uses_student, progress, cfg.shared_threshold)
                result = _combine(after, before, dates, grid, cfg, out, zones, dem, truth, overwrite,
                                  progress.sub(0.74, 0.95))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            outputs = result.pop("outputs")
            if truth is not None and not (result.get("scores") or {}).get("scored_pixels"):
                warnings.append(f"the reference flood {truth} holds no pixel valued 0 (not flooded) or 1 (flooded) "
                                "where both dates have data: nothing was scored. Give a raster of 0 and 1 over the "
                                "same place")
                progress.warning(warnings[-1])
            report = {
                "after": str(after.sar),
                "before": str(before.sar),
                "method": cfg.method + (" (student where optical given)" if any(uses_student.values()) else ""),
                "engine": __version__,
                "totals": result["totals"],
                "areas": result["areas"],
                "scores": result.get("scores"),
                "dates": {n: w.info for n, w in dates.items()},
                "warnings": warnings,
                "settings": {
                    "method": cfg.method, "water_threshold": cfg.water_threshold, "low_db": cfg.low_db,
                    "smoothing": f"{cfg.smoothing} {cfg.smoothing_size}x{cfg.smoothing_size}",
                    "shadow_deg": cfg.shadow_deg, "layover_deg": cfg.layover_deg,
                    "teacher": str(teacher_path or ""), "student": str(student_path or ""), "dem": str(dem or ""),
                    "aoi": str(aoi or ""), "grid": f"{grid.width}x{grid.height} at {grid.res[0]:g} x {grid.res[1]:g}",
                },
                "seconds": round(time.perf_counter() - t0, 3),
            }
            outputs.update(write_reports(out, report, overwrite))
            if vectorize:
                from ..vector.polygonize import vectorize_classes

                progress.report(0.95, "flood polygons")
                vec = vectorize_classes(
                    outputs["flood"], out / POLYGONS, confidence_path=outputs["likelihood"], classes=[FLOOD],
                    min_area=vector_min_area, layer_name="flood", names={v: k for v, k, _, _ in FLOOD_CLASSES},
                    overwrite=overwrite, progress=progress.sub(0.95, 1.0),
                )
                outputs["polygons"] = vec["path"]
                result["polygons"] = vec["polygons"]
        progress.report(1.0, "flood map written")
        left, bottom, right, top = grid.bounds
        return {
            "outputs": outputs,
            **result,
            "dates": report["dates"],
            "method": report["method"],
            "grid": {"width": grid.width, "height": grid.height, "res": list(grid.res), "crs": grid.crs.to_string(),
                     "bounds": [left, bottom, right, top]},
            "warnings": warnings,
            "seconds": round(time.perf_counter() - t0, 3),
        }


def _check_terrain(after: FloodDate, before: FloodDate, dem: Optional[PathLike], grid: Grid,
                   cfg: FloodConfig) -> List[str]:
    """Refuse local incidence rasters and a DEM that are not of this place or hold something else
    (:mod:`engine.raster.ancillary`); a warning where the DEM is given but no date uses it."""
    scene = "after SAR" + (" within the areas of interest" if grid != grid_of(after.sar) else "")
    for name, d in (("after", after), ("before", before)):
        if d.geometry.local_incidence:
            check_local_incidence(d.geometry.local_incidence, grid,
                                  f"{name} local incidence raster (--{name}-local-incidence / "
                                  f"{name.upper()}_LOCAL_INCIDENCE)", scene, cfg.shadow_deg, cfg.layover_deg)
    if not dem:
        return []
    check_dem(dem, grid, "DEM (--dem / DEM)", scene)
    if any(not d.geometry.local_incidence and d.geometry.look_azimuth is not None for d in (after, before)):
        return []
    return [f"the DEM {dem} is not used: shadow and layover come from a DEM only for a date with a look "
            "direction (--after-look-azimuth / AFTER_LOOK_AZIMUTH, --before-look-azimuth / BEFORE_LOOK_AZIMUTH) "
            "and no local incidence raster"]


def _pair_warnings(after: FloodDate, before: FloodDate, dates: Dict[str, _DateWater], grid: Grid,
                   block: int) -> List[str]:
    """Whether the two dates can be compared: the before date's coverage of the after date (none at all is
    an error), a shift between them, and one raster given as both dates."""
    out = []
    share = footprint_share(dates["before"].sar.source, block)
    if share == 0:
        raise ValueError(f"the before date {before.sar} has no valid pixel where the after date {after.sar} lies; "
                         "choose two dates of the same place")
    if share < 0.98:
        out.append(f"the before date covers {100 * share:.1f} % of the after date's area; the rest is no data")
    shift = registration_shift(dates["after"].sar.source, dates["before"].sar.source)
    if shift is not None and max(abs(v) for v in shift) >= REGISTRATION_MIN_SHIFT:
        east, north = -shift[0] * grid.res[0], shift[1] * grid.res[1]
        out.append(
            f"the before date lies {east:+g} m east and {north:+g} m north of the after date ({abs(shift[0])} "
            f"columns, {abs(shift[1])} rows; cross-correlation of the two dates' dB): a shifted date maps false "
            "flood and receded water along every shore. Co-register the dates (one processor and DEM for both) first")
    same_band = bands_of(before.bands, before.sar) == bands_of(after.bands, after.sar)
    if same_band and Path(before.sar).resolve() == Path(after.sar).resolve():
        out.append(f"the before and after dates are the same raster ({Path(after.sar).name}): nothing can have "
                   "changed, so no flood is mapped; give the image from before the event as the before date")
    return out


def _share_thresholds(dates: Dict[str, _DateWater], uses_student: Dict[str, bool], progress: Progress,
                      shared_threshold: bool = True) -> List[str]:
    """Decide each date's threshold and say it.

    Both dates are calibrated backscatter of the same place, so open water has the same level
    on both. With ``shared_threshold`` (default) both dates use the threshold and spreads of
    the after date, which holds the flood and so the larger water mode (the before date's when
    the after date has no water mode): a change is then a change of backscatter, not of
    thresholds. Otherwise each date keeps its own, and a date with too little water for a
    bimodal histogram borrows the other's instead of mapping no water.
    """
    notes = []
    fitted = {n: w for n, w in dates.items() if w.threshold is not None and not uses_student[n]}
    shared = [w for w in fitted.values() if w.threshold.has_water and w.threshold.mixture is not None]
    if shared_threshold and len(fitted) == 2 and shared:
        best = next((w for w in shared if w.name == "after"), shared[0])
        for water in fitted.values():
            if water is best:
                continue
            own = water.threshold
            water.threshold = dataclasses.replace(
                best.threshold, method=f"{best.name} date's", note=f"shared with the {best.name} date")
            water.info["threshold"] = dict(water.threshold.to_dict(), own=own.to_dict())
        for name, water in fitted.items():
            result = water.threshold
            progress.info(f"{name}: water threshold {result.threshold:.2f} dB ({result.method}; {result.note})")
        return notes
    for name, water in fitted.items():
        other = fitted.get("before" if name == "after" else "after")
        result = water.threshold
        if not result.has_water and other is not None and other.threshold.has_water:
            borrowed = dataclasses.replace(
                other.threshold, note=f"no water mode of its own ({result.note}); the {other.name} date's threshold")
            borrowed.method = f"{other.name} date's"
            water.threshold = borrowed
            water.info["threshold"] = dict(borrowed.to_dict(), own=result.to_dict())
            notes.append(f"{name}: no water mode found ({result.note}); the {other.name} date's threshold "
                         f"{borrowed.threshold:.2f} dB is used")
    for name, water in fitted.items():
        result = water.threshold
        progress.info(f"{name}: water threshold {result.threshold:.2f} dB ({result.method}; {result.note})")
    return notes


#: A zone whose area lies outside the after date by more than this is said to be partly unmapped.
ZONE_OUTSIDE_WARNING = 0.01


def _zones_seen(zones: List[Any], aoi: PathLike, after_sar: PathLike) -> Tuple[List[Any], List[str]]:
    """The zones that meet the after date, and warnings naming those outside it, wholly or in part (their figures
    would read as a dry or unflooded area; a zone wholly outside also widened the map to the scene's edge)."""
    seen = [z for z in zones if z.outside_share < 0.999]
    if not seen:
        raise ValueError(f"the areas of interest in {aoi} do not overlap the after date {after_sar}")
    warnings = []
    gone = [z.name for z in zones if z.outside_share >= 0.999]
    if gone:
        warnings.append(f"{len(gone)} area(s) of interest lie outside the after date {after_sar} and are not mapped: "
                        f"{', '.join(gone[:10])}{' ...' if len(gone) > 10 else ''}")
    for z in seen:
        if z.outside_share > ZONE_OUTSIDE_WARNING:
            warnings.append(f"area of interest {z.name}: {100 * z.outside_share:.0f} % of it lies outside the after "
                            "date; its figures cover the part inside only (outside_scene_share in the report)")
    return seen, warnings


def _check_request(after, before, out_dir, cfg, teacher_path, given, student_path, aoi, dem, truth, uses_student,
                   vectorize, overwrite) -> None:
    """Every check that needs no pixel: files, models, outputs, the lock."""
    for path, what in ((after.sar, "after SAR"), (before.sar, "before SAR"), (after.optical, "after optical"),
                       (before.optical, "before optical"), (teacher_path, "teacher"), (student_path, "student"),
                       (aoi, "areas of interest"), (dem, "DEM"), (truth, "reference flood"),
                       (after.geometry.local_incidence, "after local incidence"),
                       (before.geometry.local_incidence, "before local incidence")):
        if path and not Path(path).exists():
            raise FileNotFoundError(f"{what} input {path} does not exist")
    needs_teacher = cfg.method == "teacher" and not all(uses_student.values())
    if needs_teacher and not (teacher_path or given):
        raise ValueError("the teacher method needs the SAR water teacher model (--teacher); or use --method threshold")
    if student_path and not (after.optical or before.optical):
        raise ValueError("a student model was given but no optical image of either date (--after-optical, "
                         "--before-optical); the student needs optical + SAR")
    for name, d in (("after", after), ("before", before)):
        if d.geometry.look_azimuth is not None and not dem and not d.geometry.local_incidence:
            raise ValueError(f"a look direction was given for the {name} date but no DEM (--dem) to apply it to")
        check_sar_levels(d.levels, f" of the {name} date")
        check_sar_noise_floor(d.noise_floor)
    from ..models.checkpoint import read_metadata

    for path, kind in ((teacher_path, "teacher"), (student_path, "student")):
        if path:
            meta = read_metadata(path)
            if meta.kind != kind:
                raise ValueError(f"{path} is a {meta.kind} checkpoint; the {kind} model is expected here")
    check_output_folder(out_dir)
    names = list(OUTPUTS.values()) + list(REPORTS) + ([POLYGONS] if vectorize else [])
    written = [Path(out_dir) / n for n in names]
    inputs = {"after SAR": after.sar, "before SAR": before.sar, "after optical": after.optical,
              "before optical": before.optical, "teacher": teacher_path, "student": student_path, "DEM": dem,
              "areas of interest": aoi, "reference flood": truth}
    check_outputs_not_inputs(written, inputs)
    if Path(out_dir).is_dir():
        for p in written:
            check_output(p, overwrite)
        check_unlocked(out_dir)


def _student_water(d: FloodDate, name: str, student_path, teacher_path, grid: Grid, tmp: Path,
                   inference: InferenceConfig, progress: Progress) -> Path:
    """The student's water probability of one date on that date's SAR grid (module docstring)."""
    from ..inference.pipeline import segment_scene
    from ..models.checkpoint import read_metadata

    sar_grid = grid_of(d.sar)
    box = transform_bounds(grid.crs, sar_grid.crs, *grid.bounds, densify_pts=21)
    seg = segment_scene(
        d.optical, d.sar, student_path, tmp / f"segment_{name}", teacher_path=teacher_path, cfg=inference,
        aoi=box, progress=progress.sub(0.0, 0.9), optical_bands=d.optical_bands or None,
        sar_bands=d.bands or None, grid="sar", optical_units=d.optical_units, sar_units=d.units,
        sar_calibration=d.calibration, sar_levels=d.levels, sar_backscatter=d.backscatter,
        sar_noise_floor=d.noise_floor,
    )
    schema = read_metadata(student_path).schema
    others = max(schema.num_classes - 1, 1)
    classes, conf = seg["outputs"]["classes"], seg["outputs"]["confidence"]
    native = grid_of(classes)
    path = tmp / f"water_{name}_student.tif"
    with open_writer(path, native, 2, "float32", math.nan, False, ["water_probability", "water"]) as dst:
        for win, _ in iter_windows(native.width, native.height, 1024):
            progress.check()
            c = read_bands(classes, [1], win)[0]
            k = read_bands(conf, [1], win)[0]
            water = c == schema.water_class
            sar_only = k < 0  # the teacher answered: |k| = max(p, 1 - p)
            k = np.abs(k)
            p = np.where(water, k, np.where(sar_only, 1.0 - k, (1.0 - k) / others)).astype(np.float32)
            invalid = ~np.isfinite(c) | ~np.isfinite(k)
            p[invalid] = np.nan
            decision = np.where(invalid, np.nan, water).astype(np.float32)
            dst.write(np.stack([p, decision]), window=win)
    progress.report(1.0, f"{name}: student water")
    return path


def _class_table(classes) -> Tuple[Dict[int, Tuple[int, int, int, int]], str]:
    cmap = {}
    for value, _, _, colour in classes:
        rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
        cmap[value] = (*rgb, 0 if value in (0, 255) else 255)
    names = json.dumps({str(v): k for v, k, _, _ in classes})
    return cmap, names


def _combine(after, before, dates, grid, cfg, out, zones, dem, truth, overwrite, progress) -> Dict[str, Any]:
    """The per-pixel rules over windows of the grid; writes the five rasters."""
    block = cfg.threshold.block
    windows = list(iter_windows(grid.width, grid.height, block))
    counter = AreaCounter(grid, zones)
    confusion = np.zeros(4, np.int64)  # tp, fp, fn, pixels scored
    water_pixels = {"after": 0, "before": 0}
    valid_pixels = {"after": 0, "before": 0}
    paths = {k: out / v for k, v in OUTPUTS.items()}
    flood_cmap, flood_names = _class_table(FLOOD_CLASSES)
    ex_cmap, ex_names = _class_table(EXCLUSION_CLASSES)
    tags = {"sgcad_engine": __version__, "after": str(after.sar), "before": str(before.sar), "method": cfg.method}
    gen_a = dates["after"].windows(grid, progress.sub(0.0, 0.5))
    gen_b = dates["before"].windows(grid, progress.sub(0.5, 1.0))
    with contextlib.ExitStack() as stack:
        def writer(key: str, dtype: str, nodata, band: str):
            return stack.enter_context(open_writer(paths[key], grid, 1, dtype, nodata, overwrite, [band]))

        w_flood = writer("flood", "uint8", NODATA, "flood_extent")
        w_flood.write_colormap(1, flood_cmap)
        w_flood.update_tags(**tags, class_names=flood_names, meaning="0 dry, 1 flood, 2 permanent water, "
                            "3 receded, 254 excluded, 255 no data")
        w_ex = writer("exclusion", "uint8", None, "exclusion")
        w_ex.write_colormap(1, ex_cmap)
        w_ex.update_tags(**tags, class_names=ex_names, meaning="0 usable, 1 no data, 2 shadow, 3 layover, "
                         "4 low backscatter on both dates")
        w_like = writer("likelihood", "float32", math.nan, "flood_likelihood")
        w_like.update_tags(**tags, meaning="p_after * (1 - p_before)")
        w_pa = writer("water_after", "float32", math.nan, "water_probability_after")
        w_pb = writer("water_before", "float32", math.nan, "water_probability_before")
        for (win, _), (db_a, water_a, p_a), (db_b, water_b, p_b) in zip(windows, gen_a, gen_b):
            progress.check()
            valid_a = np.isfinite(db_a) & np.isfinite(p_a)
            valid_b = np.isfinite(db_b) & np.isfinite(p_b)
            valid = valid_a & valid_b
            water_a &= valid_a
            water_b &= valid_b
            sh_a, lay_a = shadow_layover(after.geometry, dem, grid, win, cfg.shadow_deg, cfg.layover_deg)
            sh_b, lay_b = shadow_layover(before.geometry, dem, grid, win, cfg.shadow_deg, cfg.layover_deg)
            with np.errstate(invalid="ignore"):
                low = (db_a < cfg.low_db) & (db_b < cfg.low_db) & ~(water_a & water_b)
            exclusion = np.zeros(db_a.shape, np.uint8)
            exclusion[low] = EX_LOW
            exclusion[lay_a | lay_b] = EX_LAYOVER
            exclusion[sh_a | sh_b] = EX_SHADOW
            exclusion[~valid] = EX_NODATA
            flood = classify_change(water_a, water_b, db_a, db_b, p_a, p_b, cfg)
            flood[(exclusion >= EX_SHADOW)] = EXCLUDED
            flood[~valid] = NODATA
            likelihood = (p_a * (1.0 - p_b)).astype(np.float32)
            likelihood[~valid] = np.nan
            p_a = np.where(valid_a, p_a, np.nan).astype(np.float32)
            p_b = np.where(valid_b, p_b, np.nan).astype(np.float32)
            for dst, arr in ((w_flood, flood), (w_ex, exclusion), (w_like, likelihood), (w_pa, p_a), (w_pb, p_b)):
                dst.write(arr[None], window=win)
            counter.add(win, flood)
            for name, w, v in (("after", water_a, valid_a), ("before", water_b, valid_b)):
                water_pixels[name] += int(w.sum())
                valid_pixels[name] += int(v.sum())
            if truth is not None:
                ref = read_on_grid(truth, [1], grid, win, "nearest")[0]
                scored = valid & np.isin(ref, (0, 1))
                pred, real = (flood == FLOOD) & scored, (ref == 1) & scored
                confusion += (int((pred & real).sum()), int((pred & ~real).sum()), int((~pred & real).sum()),
                              int(scored.sum()))
    for name in ("after", "before"):
        dates[name].info["water_fraction"] = round(water_pixels[name] / max(valid_pixels[name], 1), 6)
        dates[name].info["valid_pixels"] = valid_pixels[name]
    result: Dict[str, Any] = {
        "outputs": {k: str(v) for k, v in paths.items()},
        "totals": summarise(counter.totals),
        "areas": [{"name": z.name, **summarise(z.totals), "outside_scene_share": round(z.outside_share, 4)}
                  for z in zones],
    }
    if truth is not None:
        result["scores"] = flood_scores(*confusion)
    return result


def classify_change(water_a: np.ndarray, water_b: np.ndarray, db_a: np.ndarray, db_b: np.ndarray,
                    p_a: np.ndarray, p_b: np.ndarray, cfg: FloodConfig) -> np.ndarray:
    """Flood-extent classes from the two dates' water decisions and backscatter change.

    Water after and not before is a flood only where the backscatter fell by at least
    ``cfg.min_change_db`` (open water over land is 5-15 dB darker); receded water likewise
    needs a rise. Where the dates disagree but the backscatter did not change that much, the
    pixel did not change: it is permanent water when the mean of the two water probabilities
    reaches the water threshold, else not water. Speckle at the edge of the water decision
    then flips no pixel between flood and receded.
    """
    with np.errstate(invalid="ignore"):
        change = db_a - db_b
        fell, rose = change <= -cfg.min_change_db, change >= cfg.min_change_db
        unchanged_water = (p_a + p_b) / 2.0 >= cfg.water_threshold
    out = np.full(water_a.shape, DRY, np.uint8)
    out[water_a & water_b] = PERMANENT
    only_a, only_b = water_a & ~water_b, ~water_a & water_b
    out[only_a & fell] = FLOOD
    out[only_b & rose] = RECEDED
    out[(only_a & ~fell | only_b & ~rose) & unchanged_water] = PERMANENT
    if cfg.darkened_water_is_flood:
        out[water_a & water_b & fell] = FLOOD
    return out


def flood_scores(tp: int, fp: int, fn: int, pixels: int) -> Dict[str, Any]:
    """IoU, precision, recall and F1 of the observed flood against a reference."""
    def ratio(a: float, b: float) -> Optional[float]:
        return round(a / b, 6) if b > 0 else None

    return {
        "flood_iou": ratio(tp, tp + fp + fn),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "true_positive_pixels": int(tp),
        "false_positive_pixels": int(fp),
        "false_negative_pixels": int(fn),
        "scored_pixels": int(pixels),
    }


ProgressFn = Callable[[float, str], None]
