"""SAR-only water probability of a whole scene with the water teacher, streamed tile by tile.

For SAR without optical (e.g. each date of a flood pair): the teacher runs over overlapping
tiles of a target grid, each tile read through the input contract
(:class:`engine.inputs.reader.PairReader` with the preprocessor of
:func:`engine.inputs.contract.resolve_inputs`: units detected or given, Lee filter, dB, the
teacher's stored range), the tiles' probabilities are blended without seams
(:mod:`.blending`) and written block by block (:mod:`.assembler`). The SAR may lie on another
grid: windows are warped onto the target grid on the fly. Memory is a band of tiles, not the
scene.

Output: one float32 GeoTIFF band, the teacher's water probability, NaN where the SAR has no
value (nodata or outside its footprint).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..config import InferenceConfig, ModelMetadata
from ..cores import apply_threads
from ..inputs.contract import InputOverrides, InputRecipe, resolve_inputs
from ..inputs.reader import PairReader
from ..preprocess.nodata import fill_sar_nodata
from ..progress import NULL_PROGRESS, Progress
from ..raster.grid import Grid, grid_of, north_up
from ..raster.io import open_writer
from ..water.scene_cut import spread, with_scene_cut
from .assembler import BlockAssembler
from .backends import TeacherWater, describe_device, resolve_device
from .blending import BlendAccumulator
from .flips import flip_averaged
from .tiling import plan_tiles

PathLike = Union[str, Path]
BLOCK = 256  # GeoTIFF tile edge of the output (engine.raster.io.GTIFF_OPTIONS)


def load_teacher(path: PathLike) -> Tuple[torch.nn.Module, ModelMetadata]:
    """The teacher network and its metadata (``ValueError`` when the file holds another kind)."""
    from ..models.checkpoint import load_model

    return load_model(path, "teacher")


def water_probability(
    sar_path: PathLike,
    teacher_path: Optional[PathLike],
    out_path: PathLike,
    grid: Optional[Grid] = None,
    cfg: Optional[InferenceConfig] = None,
    *,
    sar_bands: Optional[Sequence[int]] = None,
    sar_units: str = "auto",
    sar_calibration: float = 0.0,
    sar_levels: str = "auto",
    sar_backscatter: str = "auto",
    sar_noise_floor: str = "auto",
    teacher: Optional[Tuple[torch.nn.Module, ModelMetadata]] = None,
    band_name: str = "water_probability",
    overwrite: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> Dict[str, Any]:
    """Write the teacher's water probability of ``sar_path`` on ``grid`` to ``out_path``.

    Args:
        sar_path: SAR raster (any units the input contract reads; any CRS and resolution).
        teacher_path: SAR water teacher checkpoint (``.safetensors``); may be None with ``teacher``. Its
            dual-polarisation companion maps a raster with VV and VH (:mod:`engine.water.experts`).
        out_path: GeoTIFF to write (float32, NaN = no SAR value).
        grid: output grid; default the SAR's own.
        cfg: tile size, overlap, batch size, device, threads, AMP and blend ramp.
        sar_bands: 1-based SAR bands (default the teacher's).
        sar_units, sar_calibration: units of this file (``"auto"``: detected) and the
            calibration constant of uncalibrated numbers.
        sar_levels: calibrated or relative levels (``config.SAR_LEVELS``); on relative levels the
            water cut comes from the scene (:mod:`engine.water.scene_cut`).
        sar_backscatter: sigma or gamma nought (``config.SAR_BACKSCATTER``; ``"auto"``: named by the file).
        sar_noise_floor: ``config.SAR_NOISE_FLOOR``: the VV + VH expert's VH read with its floor taken off
            (``"auto"``) or as it is (``"off"``).
        teacher: an already loaded ``(network, metadata)`` of ``teacher_path`` (saves loading
            it twice for two dates).
        band_name: band description of the output.
        overwrite: replace an existing output.
        progress: reporting and cancellation.

    Returns:
        ``path``, ``teacher`` (the model that ran), ``inputs`` (units decisions and warnings), ``tiles``,
        ``device``, ``seconds``, ``valid_pixels``, ``mean_probability``, ``water_fraction`` (p >= 0.5 among
        valid pixels) and
        ``scene_cut`` (the cut as a probability of the teacher on relative SAR levels, else None) and
        ``cross_polarised`` (:class:`engine.water.cross_pol.CrossPolCheck` of a raster with a VH
        band the teacher did not read, on calibrated levels; else None).

    Raises:
        ValueError: a checkpoint that is not a teacher, bands that do not fit, a SAR raster
            that does not overlap the grid, an existing output without ``overwrite``.
        Canceled: on cancel; no output is left.
    """
    from ..models.checkpoint import read_metadata

    cfg = cfg or InferenceConfig()
    t0 = time.perf_counter()
    for p, what in ((sar_path, "SAR"), (None if teacher is not None else teacher_path, "teacher")):
        if p is not None and not Path(p).exists():
            raise FileNotFoundError(f"{what} input {p} does not exist")
    if teacher is None and teacher_path is not None:
        from ..water.experts import choose_water_expert, load_water_expert

        choice = choose_water_expert(teacher_path, sar_path, sar_bands, sar_units)
        if choice.reason:
            progress.info(choice.reason)
        if choice.dual_pol:
            teacher = load_water_expert(choice, teacher_path)
            teacher_path, sar_bands = choice.path, choice.sar_bands
    meta = teacher[1] if teacher is not None else read_metadata(teacher_path)
    if meta.kind != "teacher":
        raise ValueError(f"{teacher_path} is a {meta.kind} checkpoint; the SAR-only water map needs a teacher")
    overrides = InputOverrides(sar_bands=tuple(sar_bands or ()), sar_units=sar_units, sar_calibration=sar_calibration,
                               sar_levels=sar_levels, sar_backscatter=sar_backscatter,
                               sar_noise_floor=sar_noise_floor)
    resolved = resolve_inputs(InputRecipe.of(meta), None, sar_path, overrides, progress.sub(0.0, 0.03))
    if resolved.sar_only_problem:  # the SAR is all this map has: nothing to map is an error, not a warning
        raise ValueError(resolved.sar_only_problem)
    resolved.report(progress)
    grid = grid or north_up(grid_of(sar_path))
    reader = PairReader(None, sar_path, grid, (), resolved.bands.sar_bands, [resolved.preprocessor])
    plan = plan_tiles(grid.width, grid.height, cfg.tile_size, cfg.overlap)
    acc = BlendAccumulator(plan, 1, with_water=False, kind=cfg.blend)
    assembler = BlockAssembler(grid.width, grid.height, BLOCK, acc.cell_rects(), {"p": (1, "float32", math.nan)})

    device = resolve_device(cfg.device)
    apply_threads(cfg.threads)
    network = flip_averaged(teacher[0] if teacher is not None else load_teacher(teacher_path)[0], cfg.flip_average)
    scene_threshold = None
    if resolved.sar_relative_levels:
        network, scene_threshold = with_scene_cut(network.to(device), _sample(reader, plan, progress), device)
        progress.info(f"relative SAR levels: water where the teacher's probability is >= {scene_threshold:.2f} "
                      "(the scene's cut)")
    net = TeacherWater(network).to(device).eval()
    amp = bool(cfg.amp and device.type == "cuda")
    progress.info(
        f"water teacher on {describe_device(device)}: {len(plan.tiles)} tile(s) of {plan.tile_shape[1]}x"
        f"{plan.tile_shape[0]} over {grid.width}x{grid.height} pixels"
        + (", averaged over 4 flips" if cfg.flip_average else "")
    )
    counts = np.zeros(2, np.int64)
    p_sum = 0.0
    done_tiles = 0
    with open_writer(out_path, grid, 1, "float32", math.nan, overwrite, [band_name]) as dst:
        for batch in plan.batches(cfg.batch_size):
            progress.check()
            arrays, valid = [], []
            for tile in batch:
                sar = reader.read(tile.x0, tile.y0, tile.width, tile.height).sar[0]
                valid.append(np.isfinite(sar).all(axis=0))
                arrays.append(fill_sar_nodata(sar))
            x = torch.from_numpy(np.stack(arrays).astype(np.float32))
            if device.type == "cuda":
                x = x.pin_memory().to(device, non_blocking=True)
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                probs = net(x).float().cpu().numpy()
            for tile, p, ok in zip(batch, probs, valid):
                for cell in acc.add(tile, p[None], None, ok.astype(np.uint8)):
                    values = cell.probs[0].astype(np.float32)
                    values[cell.flags == 0] = np.nan
                    for bx, by, arrays_done in assembler.add(cell.x0, cell.y0, {"p": values[None]}):
                        block = arrays_done["p"]
                        finite = block[np.isfinite(block)]
                        counts += (finite.size, int((finite >= 0.5).sum()))
                        p_sum += float(finite.sum(dtype=np.float64))
                        dst.write(block, window=((by, by + block.shape[1]), (bx, bx + block.shape[2])))
            done_tiles += len(batch)
            progress.report(0.03 + 0.97 * done_tiles / len(plan.tiles),
                            f"water teacher: tile {done_tiles}/{len(plan.tiles)}")
    if counts[0] == 0:
        Path(out_path).unlink(missing_ok=True)
        raise ValueError(f"{sar_path} has no valid pixel on the output grid (no overlap, or all nodata)")
    inputs = resolved.summary()
    cross = None
    if not resolved.sar_relative_levels:
        try:
            cross = _cross_check(sar_path, resolved.bands.sar_bands, grid, out_path, sar_units, sar_calibration,
                                 progress, resolved.sar_cfg.backscatter)
        except BaseException:
            Path(out_path).unlink(missing_ok=True)  # a cancelled run leaves no output
            raise
        message = cross.warning() if cross is not None else None
        if message:
            progress.warning(message)
            inputs["warnings"].append(message)
    return {
        "path": str(out_path),
        "teacher": str(teacher_path or ""),
        "inputs": inputs,
        "cross_polarised": None if cross is None else cross.to_dict(),
        "tiles": len(plan.tiles),
        "device": describe_device(device),
        "seconds": round(time.perf_counter() - t0, 3),
        "valid_pixels": int(counts[0]),
        "mean_probability": round(p_sum / counts[0], 4),
        "water_fraction": round(float(counts[1]) / counts[0], 4),
        "scene_cut": None if scene_threshold is None else round(scene_threshold, 4),
        "flip_average": cfg.flip_average,
    }


def _cross_check(sar_path: PathLike, read_bands: Sequence[int], grid: Grid, prob_path: PathLike, units: str,
                 calibration: float, progress: Progress, backscatter: str = "auto"):
    """What the raster's VH band says about the water map (None without one)."""
    from ..flood.sources import db_source
    from ..water.cross_pol import check_cross_polarised, cross_band

    band = cross_band(sar_path, read_bands)
    if band is None:
        return None
    source = db_source(sar_path, band, grid, units, calibration, backscatter=backscatter).source
    return check_cross_polarised(source, band, prob_path, progress=progress)


def _sample(reader: PairReader, plan, progress: Progress):
    """``(sar, valid)`` of tiles spread over the scene, one at a time, for the scene's water cut."""
    for tile in spread(plan.tiles):
        progress.check()
        sar = reader.read(tile.x0, tile.y0, tile.width, tile.height).sar[0]
        yield fill_sar_nodata(sar)[None], np.isfinite(sar).all(axis=0)[None]
