"""Water on one SAR date: the water expert's probability, a water / land raster and a report.

The map a disaster mapper needs when only the image after the event is at hand (a before date
gives the flood itself: :mod:`engine.flood.mapping`). The water expert is chosen by
:mod:`engine.water.experts` (the VV + VH pair where the bands are named so) and streamed by
:func:`engine.inference.sar_only.water_probability`; the water / land raster is written from the
probability window by window. Everything is written in a temporary folder inside the output
folder and moved into place at the end, so a failed or cancelled run leaves the folder as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np
import rasterio

from ..config import InferenceConfig
from ..files import output_folder
from ..inputs.contract import check_sar_levels, check_sar_noise_floor
from ..progress import NULL_PROGRESS, Progress
from ..raster.grid import grid_of, row_areas_m2
from ..raster.io import check_output, iter_windows, open_writer
from ..validate import RunLock, check_output_folder, check_outputs_not_inputs

PathLike = Union[str, Path]
PROBABILITY, WATER, REPORT = "water_probability.tif", "water.tif", "water_report.json"
NO_SAR = 255  # water.tif: 1 water, 0 not water, 255 no SAR value
BLOCK = 512


def map_water_date(
    sar: PathLike,
    out_dir: PathLike,
    teacher_path: PathLike,
    cfg: Optional[InferenceConfig] = None,
    *,
    sar_bands: Optional[Sequence[int]] = None,
    sar_units: str = "auto",
    sar_calibration: float = 0.0,
    sar_levels: str = "auto",
    sar_backscatter: str = "auto",
    sar_noise_floor: str = "auto",
    water_threshold: float = 0.5,
    overwrite: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> Dict[str, Any]:
    """Map the water of one SAR date into ``out_dir``.

    Args:
        sar: the SAR raster (any units the input contract reads).
        out_dir: receives ``water_probability.tif``, ``water.tif`` and ``water_report.json``.
        teacher_path: the water teacher (its VV + VH companion beside it is used where it applies).
        cfg: tiles, device, threads, flip averaging.
        sar_bands, sar_units, sar_calibration, sar_levels, sar_backscatter, sar_noise_floor: user overrides
            (auto: as detected).
        water_threshold: water where the probability reaches this (0.5).
        overwrite: replace the outputs of an earlier run.
        progress: reporting and cancellation.

    Returns:
        The report: paths, the model that mapped the date, water share and area, warnings.

    Raises:
        ValueError: inputs that cannot work, outputs that exist without ``overwrite``.
        Canceled: on cancel; the output folder is left as it was.
    """
    from ..inference.sar_only import water_probability

    t0 = time.perf_counter()
    if not 0.0 < water_threshold < 1.0:
        raise ValueError(f"the water threshold is a probability in (0, 1), got {water_threshold}")
    for path, what in ((sar, "SAR"), (teacher_path, "teacher")):
        if not path or not Path(path).exists():
            raise FileNotFoundError(f"{what} input {path} does not exist")
    check_sar_levels(sar_levels, "")
    check_sar_noise_floor(sar_noise_floor)
    out = check_output_folder(out_dir)
    finals = {name: out / name for name in (PROBABILITY, WATER, REPORT)}
    check_outputs_not_inputs(finals.values(), {"SAR": sar, "teacher": teacher_path})
    with output_folder(out):  # a refused or failed run leaves no empty folder behind
        for path in finals.values():
            check_output(path, overwrite)
        with RunLock(out, "water"):
            tmp = out / f".water-tmp-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            try:
                res = water_probability(sar, teacher_path, tmp / PROBABILITY, cfg=cfg or InferenceConfig(),
                                        sar_bands=sar_bands, sar_units=sar_units, sar_calibration=sar_calibration,
                                        sar_levels=sar_levels, sar_backscatter=sar_backscatter,
                                        sar_noise_floor=sar_noise_floor,
                                        progress=progress.sub(0.0, 0.9))
                counts = _write_water(tmp / PROBABILITY, tmp / WATER, water_threshold, progress.sub(0.9, 1.0))
                report = {
                    "sar": str(sar), "teacher": Path(res["teacher"]).name, "water_threshold": water_threshold,
                    "water_share": round(counts["water"] / max(counts["valid"], 1), 4),
                    "water_km2": round(counts["water_m2"] / 1e6, 4), "valid_km2": round(counts["valid_m2"] / 1e6, 4),
                    "valid_pixels": counts["valid"], "scene_cut": res["scene_cut"],
                    "cross_polarised": res["cross_polarised"], "warnings": res["inputs"]["warnings"],
                    "inputs": res["inputs"], "device": res["device"], "seconds": round(time.perf_counter() - t0, 2),
                }
                (tmp / REPORT).write_text(json.dumps(report, indent=1, default=str))
                for name, final in finals.items():
                    os.replace(tmp / name, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    progress.info(f"water on {100 * report['water_share']:.1f} % of the SAR footprint ({report['water_km2']} km²), "
                  f"mapped by {report['teacher']}")
    return dict(report, paths={name: str(path) for name, path in finals.items()})


def _write_water(prob_path: Path, out_path: Path, threshold: float, progress: Progress) -> Dict[str, float]:
    """``water.tif`` (uint8) from the probability, window by window; water and valid counts and areas."""
    grid = grid_of(prob_path)
    counts = {"water": 0, "valid": 0, "water_m2": 0.0, "valid_m2": 0.0}
    windows = list(iter_windows(grid.width, grid.height, BLOCK))
    with rasterio.open(prob_path) as src, open_writer(out_path, grid, 1, "uint8", NO_SAR, False, ["water"]) as dst:
        for k, (window, _) in enumerate(windows):
            progress.check()
            p = src.read(1, window=window)
            valid = np.isfinite(p)
            water = valid & (p >= threshold)
            dst.write(np.where(valid, water, NO_SAR).astype(np.uint8)[None], window=window)
            areas = row_areas_m2(grid, int(window.row_off), int(window.height))[:, None]
            counts["water"] += int(water.sum())
            counts["valid"] += int(valid.sum())
            counts["water_m2"] += float((water * areas).sum())
            counts["valid_m2"] += float((valid * areas).sum())
            progress.report((k + 1) / len(windows), "water / land")
    return counts
