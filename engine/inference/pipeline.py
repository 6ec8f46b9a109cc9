"""Large-scene segmentation: ``segment_scene`` from rasters and checkpoints to GeoTIFFs.

The scene is never loaded whole: tiles are read onto the model grid on the fly, run through
the student (and the SAR-only teacher), blended without seams, and written block by block
(:mod:`.streaming`). All outputs are committed together at the end (:mod:`.outputs`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from rasterio.windows import Window

from .. import __version__
from ..config import InferenceConfig
from ..cores import apply_threads, threads_for
from ..files import output_folder
from ..inputs.contract import InputOverrides, InputRecipe, optical_for, resolve_for, resolve_inputs
from ..progress import NULL_PROGRESS, Progress
from ..raster.ancillary import CloudMaskReading, check_cloud_mask
from ..raster.grid import Grid, check_output_size, default_grid, grid_of, north_up
from ..validate import (
    RunLock,
    SgcadError,
    check_output_folder,
    check_outputs_not_inputs,
    check_pair_overlap,
    check_single_layer,
    check_tiling,
    check_unlocked,
    verify_geotiff,
)
from ..water.experts import ExpertChoice, choose_water_expert
from ..water.scene_cut import spread, with_scene_cut
from .aoi import AoiLike, load_aoi
from .backends import describe_device, make_backend, resolve_device
from .flips import flip_averaged
from .outputs import OutputSet, output_paths
from .precision import decide as decide_precision
from .precision import weights_key as precision_key
from .products import SAR_VALID, Thresholds
from .reader import TileReader
from .spectral import NirEvidence, nir_evidence
from .streaming import stream_segmentation
from .tiling import plan_tiles

PathLike = Union[str, Path]
GRIDS = ("sar", "optical")


def scene_grid(
    optical_path: PathLike, sar_path: PathLike, grid: str = "sar", resolution: Optional[float] = None,
    check_size: bool = True,
) -> Grid:
    """The model grid: the SAR's (default) or the optical's native grid, or both footprints'
    intersection at ``resolution`` when one is given (its size checked unless ``check_size`` is False:
    a run with an area of interest checks the area it maps)."""
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {GRIDS}, got {grid!r}")
    if optical_path is None and grid == "optical":
        raise ValueError("the output grid cannot be the optical image's: this run reads no optical image")
    if resolution:
        return default_grid(optical_path or sar_path, sar_path, resolution=resolution, check_size=check_size)
    return north_up(grid_of(sar_path if grid == "sar" else optical_path))


@contextlib.contextmanager
def bounded_gdal_cache(limit: int = 64 * 1024 * 1024) -> Iterator[None]:
    """Cap GDAL's block cache during a run, then restore it.

    GDAL keeps written blocks in its cache (default 5 % of RAM) and compresses them only
    when they are evicted or the file is closed: uncapped, a large scene would sit in memory
    uncompressed until the end. With a cap, finished blocks are compressed and written while
    the network runs and memory stays flat whatever the scene size.
    """
    from osgeo import gdal

    previous = gdal.GetCacheMax()
    gdal.SetCacheMax(min(previous, limit))
    try:
        yield
    finally:
        gdal.SetCacheMax(previous)


def segment_scene(
    optical_path: PathLike,
    sar_path: PathLike,
    model_path: PathLike,
    out_dir: PathLike,
    teacher_path: Optional[PathLike] = None,
    cfg: Optional[InferenceConfig] = None,
    aoi: Optional[AoiLike] = None,
    progress: Optional[Progress] = None,
    overwrite: bool = False,
    *,
    optical_bands: Optional[Sequence[int]] = None,
    sar_bands: Optional[Sequence[int]] = None,
    cloud_mask: Optional[PathLike] = None,
    grid: str = "sar",
    resolution: Optional[float] = None,
    backend: Any = None,
    optical_units: str = "auto",
    sar_units: str = "auto",
    sar_calibration: float = 0.0,
    sar_levels: str = "auto",
    sar_backscatter: str = "auto",
    sar_noise_floor: str = "auto",
) -> Dict[str, Any]:
    """Segment a scene with a student (and optional teacher) checkpoint.

    Args:
        optical_path, sar_path: input rasters (any CRS/resolution; aligned per tile).
        model_path: student checkpoint (``.safetensors`` with metadata).
        out_dir: folder for ``classes.tif``, ``confidence.tif`` and, with a teacher,
            ``water_probability.tif`` and ``gates.tif``.
        teacher_path: SAR-only water teacher; enables the water probability, the gates and
            water/non-water answers where the optical input is missing.
        cfg: tiling, batching, device and backend settings.
        aoi: polygon file or box (see :func:`.aoi.load_aoi`); only tiles touching it are run.
        progress: reporting and cancellation.
        overwrite: replace existing outputs.
        optical_bands, sar_bands: 1-based bands of these files to feed the model, when they
            differ from the bands the model was trained on (same counts).
        cloud_mask: raster whose non-zero pixels mark the optical input as missing.
        grid: ``"sar"`` or ``"optical"``: whose native grid the outputs use.
        resolution: output pixel size instead (grid over both footprints).
        backend: an object with ``predict``/``num_classes``/``has_teacher`` to use instead of
            the checkpoints' networks (custom models, tests); ``model_path`` is then only read
            for its metadata.
        optical_units, sar_units: units of these files (``"auto"``: detected; see
            :mod:`engine.inputs.units`); the decisions and any domain-shift warning are
            reported through ``progress`` and returned under ``"inputs"``.
        sar_calibration: calibration constant of uncalibrated SAR numbers (power = DN**2 / it).
        sar_levels: calibrated or relative SAR levels (``config.SAR_LEVELS``); on relative levels
            the teacher's water cut comes from the scene (:mod:`engine.water.scene_cut`).
        sar_backscatter: sigma or gamma nought (``config.SAR_BACKSCATTER``; ``"auto"``: named by the file).
        sar_noise_floor: ``config.SAR_NOISE_FLOOR``: the VV + VH water expert's VH read with its floor taken
            off (``"auto"``) or as it is (``"off"``).

    Returns:
        written paths and run figures (tiles, timings, throughput, device, class pixels).

    Raises:
        ValueError: unreadable inputs, bands or checkpoints that do not fit, an AOI outside the
            scene, or existing outputs without ``overwrite``.
        Canceled: on cancel; no output or temporary file is left.
    """
    cfg = cfg or InferenceConfig()
    progress = progress or NULL_PROGRESS
    t0 = time.perf_counter()
    job = prepare_job(
        optical_path, sar_path, model_path, out_dir, teacher_path, cfg, aoi, progress,
        optical_bands=optical_bands, sar_bands=sar_bands, cloud_mask=cloud_mask, grid=grid,
        resolution=resolution, backend=backend, optical_units=optical_units, sar_units=sar_units,
        sar_calibration=sar_calibration, sar_levels=sar_levels, sar_backscatter=sar_backscatter,
        sar_noise_floor=sar_noise_floor,
    )
    meta, region, plan = job.meta, job.region, job.plan
    # a second run into this folder is refused, naming this one; a failed or cancelled run leaves
    # no empty folder it made
    with output_folder(out_dir), RunLock(out_dir, "segment"):
        outputs = OutputSet(out_dir, job.keys, region, meta.schema, overwrite=overwrite, tags=job.tags)

        device = resolve_device(cfg.device)
        apply_threads(cfg.threads)  # per calling thread: this is the compute thread

        def ready_backend() -> Any:  # called by the stream once its reader is reading ahead
            nonlocal backend
            if backend is None:
                backend = job.make_backend(device, progress)
            progress.info(
                f"device: {describe_device(device)}, backend: {getattr(backend, 'name', 'custom')}, "
                f"precision: {getattr(backend, 'precision', 'fp32')}, "
                f"threads: {torch.get_num_threads()}, tiles: {len(plan.tiles)}/{plan.total}"
                + (", averaged over 4 flips" if cfg.flip_average else "")
            )
            return backend

        reader = job.reader()
        with outputs, bounded_gdal_cache():
            stats = stream_segmentation(
                plan,
                reader.read,
                ready_backend,
                outputs,
                meta.schema.water_class,
                cfg.batch_size,
                job.thresholds,
                job.mask,
                cfg.blend,
                progress.sub(0.0, 0.95),
                cfg.queue_size,
            )
            progress.check()
            progress.report(0.96, "overviews and colour table")
            t_commit = time.perf_counter()
            paths = outputs.commit()
            _verify_outputs(paths)
            commit_s = time.perf_counter() - t_commit
    gaps = _optical_gaps(stats, "water" in job.keys)
    if gaps:
        progress.warning(gaps)
    progress.report(1.0, "done")
    wall = time.perf_counter() - t0
    names = dict(zip(meta.schema.ids, meta.schema.names))
    return {
        "outputs": {k: str(v) for k, v in paths.items()},
        "grid": {
            "width": region.width,
            "height": region.height,
            "res": list(region.res),
            "crs": region.crs.to_string(),
        },
        "tiles": len(plan.tiles),
        "tiles_total": plan.total,
        "device": describe_device(device),
        "backend": getattr(backend, "name", "custom"),
        "precision": getattr(backend, "precision", "fp32"),
        "flip_average": cfg.flip_average,
        "scene_cut": getattr(backend, "scene_cut", None),  # relative SAR levels: the teacher's cut
        "threads": torch.get_num_threads(),
        "seconds": round(wall, 3),
        "pixels_per_second": round(region.width * region.height / max(wall, 1e-9), 1),
        "timings": {
            "read_s": round(stats.read_s, 3),
            "network_s": round(stats.compute_s, 3),
            "blend_write_s": round(stats.write_s, 3),
            "network_waited_for_input_s": round(stats.wait_input_s, 3),
            "stream_s": round(stats.wall_s, 3),
            "backend_s": round(stats.backend_s, 3),
            "commit_s": round(commit_s, 3),
        },
        "class_pixels": {names.get(k, str(k)): v for k, v in stats.class_pixels.items()},
        "sar_only_pixels": stats.sar_only_pixels,
        "water_nir_check": {"band": job.nir.band if job.nir else None, "limit": job.nir.limit if job.nir else None,
                            "reason": job.nir_line},
        "snow_or_cloud": {"reason": job.resolved.optical_snow_or_cloud, "water_needs_expert": job.water_needs_expert},
        "sar_pixels": stats.sar_pixels,
        "sar_without_optical_pixels": stats.sar_without_optical_pixels,
        "inputs": _with_warnings(job.resolved.summary(), job.warnings + ([gaps] if gaps else [])),
        "memory": {"peak_blend_pixels": stats.peak_live_cells, "peak_pending_blocks": stats.peak_live_blocks},
    }


def _optical_gaps(stats: Any, teacher: bool) -> Optional[str]:
    """A warning when, without a teacher, a share of the SAR footprint had no optical input and got no answer."""
    share = stats.sar_without_optical_pixels / max(stats.sar_pixels, 1)
    if teacher or share < 0.01:
        return None
    return (f"{share:.1%} of the pixels with SAR have no optical data (nodata, cloud mask or outside the optical "
            "footprint) and were left unclassified: give a water teacher (--teacher / TEACHER) for a SAR-only "
            "water / non-water answer there")


@dataclass
class SceneJob:
    """Everything a segmentation decides before the first tile: checkpoints' metadata, the resolved
    inputs, the grid, the AOI and the tile plan (shared by :func:`segment_scene` and the sharded
    runs of :mod:`.shards`)."""

    optical_path: PathLike
    sar_path: PathLike
    model_path: PathLike
    teacher_path: Optional[PathLike]
    cfg: InferenceConfig
    meta: Any
    resolved: Any
    teacher_pre: Any
    o_bands: Sequence[int]
    s_bands: Sequence[int]
    cloud_mask: Optional[PathLike]
    region: Grid
    plan: Any
    keep: Optional[Callable]
    mask: Optional[Callable]
    keys: List[str]
    tags: Dict[str, str]
    warnings: List[str]
    expert: Optional[ExpertChoice] = None  # the VV + VH water expert, when it maps this SAR's water
    cloud_cut: float = 0.5  # cloud where the mask is at least this (raster.ancillary.check_cloud_mask)
    nir: Optional[NirEvidence] = None  # the optical's NIR band, when it checks the student's water (.spectral)
    nir_line: str = ""  # which NIR check the run makes, and why (or why none)
    choices: Tuple[str, ...] = ()  # the input readings the user chose instead of "auto" (units, levels, ...)

    @property
    def thresholds(self) -> Thresholds:
        sar_only_model = len(self.o_bands) == 0
        return Thresholds(self.cfg.water_threshold, self.cfg.non_water_threshold,
                          water_from_expert=sar_only_model and self.cfg.water_from_expert,
                          water_needs_expert=self.water_needs_expert)

    @property
    def water_needs_expert(self) -> bool:
        """A scene mostly of snow or cloud, mapped with a water expert: the class map's water needs it too."""
        return bool(self.resolved.optical_snow_or_cloud and self.o_bands and "water" in self.keys)

    def reader(self) -> TileReader:
        return TileReader(
            self.optical_path, self.sar_path, self.region, self.o_bands, self.s_bands,
            self.resolved.preprocessor, self.teacher_pre, self.cloud_mask,
            self.expert.sar_bands if self.expert is not None else (), self.cloud_cut, self.nir,
        )

    def make_backend(
        self, device: torch.device, progress: Progress, work_pixels: Optional[int] = None,
        refresh_precision: bool = False,
    ):
        """The networks of the checkpoints on ``device`` (torch or ONNX Runtime, ``cfg.backend``);
        ``refresh_precision`` measures ``precision="auto"`` again instead of reading its cache."""
        from ..models.checkpoint import load_model

        cfg, plan = self.cfg, self.plan
        if work_pixels is None:
            work_pixels = len(plan.tiles) * plan.tile_shape[0] * plan.tile_shape[1]
        progress.info(f"loading {self.model_path}" + (f" and {self.teacher_path}" if self.teacher_path else ""))
        student = flip_averaged(load_model(self.model_path, "student")[0], cfg.flip_average)
        teacher = None
        if self.expert is not None:
            from ..water.experts import load_water_expert

            teacher = flip_averaged(load_water_expert(self.expert, self.teacher_path)[0], cfg.flip_average)
        elif self.teacher_path:
            teacher = flip_averaged(load_model(self.teacher_path, "teacher")[0], cfg.flip_average)
        scene_cut = None
        if teacher is not None and self.resolved.sar_relative_levels:
            teacher, scene_cut = with_scene_cut(teacher.to(device), _teacher_sample(self.reader(), plan, progress),
                                                device)
            scene_cut = round(scene_cut, 4)
            progress.info(f"relative SAR levels: water where the teacher's probability is >= {scene_cut:.2f} "
                          "(the scene's cut)")
        samples = _sample_batches(self.reader, plan, cfg.batch_size)

        def build(precision: str):
            return make_backend(
                cfg.backend,
                student,
                teacher,
                self.meta.schema.num_classes,
                len(self.o_bands),
                len(self.s_bands),
                plan.tile_shape,
                device,
                cfg.amp,
                cfg.threads,
                info=progress.info,
                work_pixels=work_pixels,
                precision=precision,
                calibration=samples()[0] if precision == "int8" else None,
                teacher_sar_channels=len(self.expert.sar_bands) if self.expert is not None else None,
            )

        # the weights' digest names a cached decision: only "auto" looks one up
        key = precision_key(student, teacher, plan.tile_shape, cfg.batch_size) if cfg.precision == "auto" else ""
        decision = decide_precision(
            cfg.precision, build, samples, self.meta.schema.names, device.type, cfg.backend, key,
            threads_for(cfg.threads), work_pixels, refresh=refresh_precision,
        )
        progress.info(f"precision: {decision.precision} ({decision.reason})")
        backend = build(decision.precision)
        backend.precision_decision, backend.precision_key = decision, key
        backend.scene_cut = scene_cut
        return backend


def _teacher_sample(reader: TileReader, plan: Any, progress: Progress):
    """``(teacher SAR, SAR valid)`` of tiles spread over the scene, for the scene's water cut."""
    for tile in spread(plan.tiles):
        progress.check()
        _, sar, teacher_sar, flags = reader.read_tile(tile)
        yield (sar if teacher_sar is None else teacher_sar)[None], ((flags & SAR_VALID) > 0)[None]


def _sample_batches(reader: Callable[[], TileReader], plan: Any, batch_size: int) -> Callable[[], Tuple]:
    """``samples() -> (calibration, validation)`` batches of real tiles, read once when first asked:
    the plan's first batch and one from its middle (other tiles, where the plan has them)."""
    memo: List[Tuple] = []

    def samples() -> Tuple:
        if not memo:
            tile_reader = reader()
            batches = list(plan.batches(batch_size))
            picked = [tile_reader.read(batches[i]) for i in sorted({0, len(batches) // 2})]
            memo.extend((b.optical, b.sar, b.teacher_sar) for b in picked)
        return memo[0], memo[-1]

    return samples


def prepare_job(
    optical_path: PathLike,
    sar_path: PathLike,
    model_path: PathLike,
    out_dir: PathLike,
    teacher_path: Optional[PathLike],
    cfg: InferenceConfig,
    aoi: Optional[AoiLike],
    progress: Progress,
    *,
    optical_bands: Optional[Sequence[int]] = None,
    sar_bands: Optional[Sequence[int]] = None,
    cloud_mask: Optional[PathLike] = None,
    grid: str = "sar",
    resolution: Optional[float] = None,
    backend: Any = None,
    optical_units: str = "auto",
    sar_units: str = "auto",
    sar_calibration: float = 0.0,
    sar_levels: str = "auto",
    sar_backscatter: str = "auto",
    sar_noise_floor: str = "auto",
    output_keys: Optional[Callable[[List[str]], List[Path]]] = None,
    lock_check: bool = True,
) -> SceneJob:
    """The checks and decisions of :func:`segment_scene` before any tile is computed.

    ``output_keys`` maps the output keys to the files the run will write, when they are not
    ``segment_scene``'s (the sharded layout); they must not be inputs. ``lock_check=False``
    skips the refusal of a folder another run holds (shards of one job lock block folders).
    """
    from ..models.checkpoint import read_metadata

    for p, what in ((optical_path, "optical"), (sar_path, "SAR"), (model_path, "model")):
        if p and not Path(p).exists():  # no optical image: allowed for a SAR-only model (below)
            raise FileNotFoundError(f"{what} input {p} does not exist")
    keys = ["classes", "confidence"] + (
        ["water", "gates"] if (teacher_path or getattr(backend, "has_teacher", False)) else []
    )
    _check_request(optical_path, sar_path, model_path, out_dir, teacher_path, cfg, aoi, cloud_mask, keys,
                   written=output_keys(keys) if output_keys else None, lock_check=lock_check)
    meta = read_metadata(model_path)
    if meta.kind != "student":
        raise ValueError(f"{model_path} is a {meta.kind} checkpoint; segment needs a student (--model)")
    optical_path = optical_for(meta, optical_path, str(model_path), progress)
    teacher_meta = read_metadata(teacher_path) if teacher_path else None
    if teacher_meta is not None and teacher_meta.kind != "teacher":
        raise ValueError(f"{teacher_path} is a {teacher_meta.kind} checkpoint; --teacher needs a teacher")
    overrides = InputOverrides(tuple(optical_bands or ()), tuple(sar_bands or ()), optical_units, sar_units,
                               sar_calibration, sar_levels, sar_backscatter, sar_noise_floor)
    resolved = resolve_inputs(InputRecipe.of(meta), optical_path, sar_path, overrides, progress.sub(0.0, 0.03))
    resolved.report(progress)
    pre = resolved.preprocessor
    o_bands, s_bands = resolved.bands.optical_bands, resolved.bands.sar_bands
    teacher_pre, expert = None, None
    if teacher_meta is not None:
        expert = _pair_expert(teacher_path, sar_path, sar_bands, sar_units, s_bands)
    if expert is not None:  # the pair reads VV and VH, through its own resolution of this SAR's bands
        progress.info(expert.reason)
        pair_recipe = InputRecipe.of(read_metadata(expert.path))
        pair_overrides = dataclasses.replace(overrides, optical_bands=(), sar_bands=expert.sar_bands)
        snow = bool(resolved.optical_snow_or_cloud and pair_recipe.sar.noise_floor_band)
        if snow:
            # under snow the darkest VH is frozen ground, not calm water at a noise floor: taking that off made
            # the expert call 68 % of the real snowy pair water (47 % with it kept), and its class map 0.6-2.0 %
            pair_overrides = dataclasses.replace(pair_overrides, sar_noise_floor="off")
            progress.info("the optical is mostly snow or cloud: the VV + VH water expert reads VH with its noise floor "
                          "kept (the darkest VH of a snow scene is frozen ground, not calm water)")
        pair_inputs = resolve_inputs(pair_recipe, None, sar_path, pair_overrides)
        if pair_inputs.noise_floor_line and not snow:  # the student's reading says the rest; this is the expert's
            progress.info(pair_inputs.noise_floor_line)
        teacher_pre = pair_inputs.preprocessor
    elif teacher_meta is not None:
        teacher_pre = resolve_for(resolved, InputRecipe.of(teacher_meta))
        if (teacher_pre.sar_cfg, teacher_pre.sar_record) == (pre.sar_cfg, pre.sar_record):
            teacher_pre = None  # the same SAR values feed both networks: read them once

    full = scene_grid(optical_path, sar_path, grid, resolution, check_size=aoi is None)
    overlap_warning = check_pair_overlap(optical_path, sar_path, full, cfg.tile_size) if optical_path else None
    if overlap_warning:
        progress.warning(overlap_warning)
    cloud = check_cloud_mask(cloud_mask, full) if cloud_mask else CloudMaskReading()
    cloud_warning = cloud.warning
    if cloud_warning:
        progress.warning(cloud_warning)
    unused = _water_from_expert_unused(cfg, o_bands, teacher_meta is not None)
    if unused:
        progress.warning(unused)
    region, keep, mask = full, None, None
    if aoi is not None:
        area = load_aoi(aoi, full)
        x0, y0, x1, y1 = area.pixel_window()
        region = full.window_grid(Window(x0, y0, x1 - x0, y1 - y0))
        keep = lambda a, b, c, d: area.intersects(region, a, b, c, d)  # noqa: E731
        mask = None if area.is_box else (lambda a, b, w, h: area.mask(region, a, b, w, h))
        if resolution:  # a fine pixel size is refused for the area mapped, not for the whole scene
            check_output_size(region, optical_path or sar_path, sar_path)
    nir, nir_line = nir_evidence(optical_path, resolved.optical_cfg, cfg.water_max_nir, teacher_meta is not None)
    if nir_line:
        progress.info(nir_line)
    if resolved.optical_snow_or_cloud and o_bands and teacher_meta is not None:
        progress.info(f"the optical is mostly snow or cloud ({resolved.optical_snow_or_cloud}): the class map's water "
                      "stands only where the SAR water expert also says water")
    plan = plan_tiles(region.width, region.height, cfg.tile_size, cfg.overlap, keep)
    if not plan.tiles:
        raise ValueError(f"no tile of the {region.width}x{region.height} grid touches the AOI {aoi!r}")

    tags = {
        "sgcad_engine": __version__,
        "model": Path(model_path).name,
        "teacher": (f"{Path(teacher_path).name} + {expert.path.name}" if expert is not None
                    else Path(teacher_path).name if teacher_path else ""),
        "optical": str(optical_path or ""),
        "sar": str(sar_path),
    }
    return SceneJob(
        optical_path, sar_path, model_path, teacher_path, cfg, meta, resolved, teacher_pre, o_bands, s_bands,
        cloud_mask, region, plan, keep, mask, keys, tags, [w for w in (overlap_warning, cloud_warning, unused) if w],
        expert, cloud.cut, nir, nir_line, _user_choices(overrides),
    )


def _user_choices(overrides: InputOverrides) -> Tuple[str, ...]:
    """The readings a user set instead of "auto": the same files read another way give other answers."""
    given = (("optical_units", overrides.optical_units), ("sar_units", overrides.sar_units),
             ("sar_calibration", overrides.sar_calibration), ("sar_levels", overrides.sar_levels),
             ("sar_backscatter", overrides.sar_backscatter), ("sar_noise_floor", overrides.sar_noise_floor))
    return tuple(f"{name} {value}" for name, value in given if value not in ("auto", 0.0))


def _water_from_expert_unused(cfg: InferenceConfig, optical_bands: Sequence[int], teacher: bool) -> Optional[str]:
    """Why ``cfg.water_from_expert`` does nothing in this run, or None when it applies."""
    if not cfg.water_from_expert:
        return None
    if optical_bands:
        return ("water from the expert applies to SAR-only models; this model reads optical bands and keeps "
                "its own water class")
    if not teacher:
        return "water from the expert needs a water teacher (--teacher / TEACHER): the model's own water is kept"
    return None


def _pair_expert(teacher_path: PathLike, sar_path: PathLike, chosen: Optional[Sequence[int]], sar_units: str,
                 student_bands: Sequence[int]) -> Optional[ExpertChoice]:
    """The VV + VH water expert for the teacher's part of a segmentation (water probability, gates, the answer
    where optical is missing), chosen as the water map chooses it (:mod:`engine.water.experts`), when the
    student reads the co-polarised band alone and the user chose no SAR band; else None (the teacher alone
    reads the student's band, as before)."""
    if chosen or len(student_bands) != 1:
        return None
    choice = choose_water_expert(teacher_path, sar_path, None, sar_units)
    if not choice.dual_pol or choice.sar_bands[0] != student_bands[0]:
        return None
    return choice


def _check_request(
    optical_path, sar_path, model_path, out_dir, teacher_path, cfg, aoi, cloud_mask, keys, written=None,
    lock_check=True,
) -> None:
    """The checks every interface shares before any work: tiling, outputs vs inputs, the AOI file, the lock."""
    check_tiling(cfg.tile_size, cfg.overlap)
    check_output_folder(out_dir)
    aoi_file = str(aoi) if isinstance(aoi, (str, Path)) and Path(str(aoi)).is_file() else None
    inputs = {
        "optical": optical_path,
        "SAR": sar_path,
        "model": model_path,
        "teacher": teacher_path,
        "cloud mask": cloud_mask,
        "area of interest": aoi_file,
    }
    written = list(written if written is not None else output_paths(out_dir, keys).values())
    check_outputs_not_inputs(written + [p.with_name(p.name + ".aux.xml") for p in written], inputs)
    if aoi_file:
        check_single_layer(aoi_file, "area of interest")
    if lock_check:
        check_unlocked(out_dir)


def _with_warnings(summary: Dict[str, Any], extra: Sequence[str]) -> Dict[str, Any]:
    if extra:
        summary = dict(summary)
        summary["warnings"] = list(summary.get("warnings") or []) + list(extra)
    return summary


def _verify_outputs(paths: Dict[str, Path]) -> None:
    """Remove every output when one was not written completely (GDAL reports a full disk only in its log)."""
    try:
        for path in paths.values():
            verify_geotiff(path)
    except SgcadError:
        for path in paths.values():
            for p in (Path(path), Path(f"{path}.aux.xml"), Path(f"{path}.ovr")):
                p.unlink(missing_ok=True)
        raise
