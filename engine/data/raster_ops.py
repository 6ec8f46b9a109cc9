"""Raster-to-raster operations behind the plugin's data algorithms: align a pair, preprocess a band set.

Both stream window by window (memory does not grow with the raster) and write through
:func:`~engine.raster.io.open_writer`, so an error or a cancel leaves no output behind.
Training and inference do not need these files (they align and preprocess on the fly); they
are for users who want to look at, share or reuse the aligned or preprocessed rasters.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import rasterio
from rasterio.enums import ColorInterp

from ..config import NormalizationRecord, OpticalPreprocessConfig, SarPreprocessConfig, save_json, to_dict
from ..inputs.bands import check_not_complex, check_sar_not_picture
from ..inputs.contract import resolve_chain
from ..preprocess.normalize import apply_normalization, compute_normalization, feature_halo, features
from ..progress import NULL_PROGRESS, Progress
from ..raster.grid import Grid, default_grid, grid_of, read_on_grid
from ..raster.io import check_output, iter_windows, open_writer, read_bands, source_tag
from ..validate import check_distinct_outputs, check_outputs_not_inputs

PathLike = Union[str, Path]
_COLOUR_ROLES = (ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.gray)
PreprocessConfig = Union[SarPreprocessConfig, OpticalPreprocessConfig]


def _data_bands(path: PathLike) -> list:
    """Every band but an alpha band: its mask is already NaN in the bands read (``read_on_grid``)."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: file not found")
    with rasterio.open(path) as src:
        return [b for b in range(1, src.count + 1) if src.colorinterp[b - 1] != ColorInterp.alpha]


def carry_band_metadata(path: PathLike, bands: Sequence[int], dst: Any) -> None:
    """Give ``dst`` (open for writing, one band per band of ``bands``) what ``path`` says of those bands:
    their descriptions, band and file tags, and colour roles (never alpha: the mask is already NaN).

    The input contract reads these to decide band roles, units and backscatter, so an aligned raster
    reads as its source reads; generic names such as ``optical_b4`` would instead say "Sentinel-2 band 4,
    red" of whatever the source's fourth band holds. The file name goes along as the tag ``source``.
    """
    with rasterio.open(path) as src:
        tags = {k: v for k, v in src.tags().items() if k != "AREA_OR_POINT"}
        dst.update_tags(**dict(tags, source=source_tag(Path(path).name, tags)))
        for i, b in enumerate(bands, start=1):
            if src.descriptions[b - 1]:
                dst.set_band_description(i, src.descriptions[b - 1])
            if src.tags(b):
                dst.update_tags(i, **src.tags(b))
        interp = [src.colorinterp[b - 1] for b in bands]
    if any(c in _COLOUR_ROLES for c in interp):
        dst.colorinterp = [c if c in _COLOUR_ROLES else ColorInterp.undefined for c in interp]


def align_pair(
    optical_path: PathLike,
    sar_path: PathLike,
    optical_out: PathLike,
    sar_out: PathLike,
    optical_bands: Optional[Sequence[int]] = None,
    sar_bands: Optional[Sequence[int]] = None,
    resolution: Optional[float] = None,
    crs: Optional[str] = None,
    bounds: Optional[Tuple[float, float, float, float]] = None,
    block: int = 1024,
    overwrite: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> Dict[str, Any]:
    """Write the chosen bands of an optical and a SAR raster onto their common grid.

    The grid is :func:`~engine.raster.grid.default_grid` (the SAR's resolution in a projected
    CRS, the intersection of both footprints) unless ``resolution``, ``crs`` or ``bounds`` say
    otherwise. Imagery is resampled bilinearly; outputs are float32 with NaN as nodata. The values
    are the inputs' own (scale and offset applied), so each output carries what its source says of
    them (:func:`carry_band_metadata`): an aligned raster reads as its source reads.

    Args:
        optical_path, sar_path: the inputs (any CRS and resolution).
        optical_out, sar_out: the aligned GeoTIFFs to write.
        optical_bands, sar_bands: 1-based bands to keep, in this order (default all but alpha).
        resolution: pixel size in target CRS units.
        crs: target CRS (e.g. ``EPSG:32631``); must be projected.
        bounds: (left, bottom, right, top) in the target CRS restricting the extent.
        block: window edge in pixels.
        overwrite: replace existing outputs.
        progress: progress and cancellation.

    Returns:
        the output paths and the grid (``width``, ``height``, ``res``, ``crs``).

    Raises:
        ValueError: no georeferencing, no overlap, a band that does not exist, existing outputs.
    """
    check_outputs_not_inputs([optical_out, sar_out], {"optical": optical_path, "SAR": sar_path})
    check_distinct_outputs({"aligned optical output": optical_out, "aligned SAR output": sar_out})
    optical_bands = list(optical_bands or _data_bands(optical_path))
    sar_bands = list(sar_bands or _data_bands(sar_path))
    for out in (optical_out, sar_out):
        check_output(out, overwrite)
    grid = default_grid(optical_path, sar_path, resolution=resolution, crs=crs, bounds=bounds)
    windows = [w for w, _ in iter_windows(grid.width, grid.height, block)]
    jobs = ((optical_path, optical_bands, optical_out, "optical"), (sar_path, sar_bands, sar_out, "SAR"))
    with contextlib.ExitStack() as stack:
        writers = [
            stack.enter_context(
                open_writer(out, grid, len(bands), "float32", float("nan"), overwrite))
            for _, bands, out, _ in jobs
        ]
        for (path, bands, _, _), dst in zip(jobs, writers):
            carry_band_metadata(path, bands, dst)
        valid = [0, 0]
        for k, window in enumerate(windows):
            progress.check()
            for j, ((path, bands, _, _), dst) in enumerate(zip(jobs, writers)):
                data = read_on_grid(path, bands, grid, window, resampling="bilinear")
                valid[j] += int(np.isfinite(data).all(axis=0).sum())
                dst.write(data, window=window)
            progress.report((k + 1) / len(windows), f"aligning window {k + 1}/{len(windows)}")
        for (path, bands, _, name), n in zip(jobs, valid):
            if n == 0:  # raised inside the writers: no partial output is left
                raise ValueError(
                    f"{path}: the {name} bands {bands} hold no valid pixel on the common grid "
                    "(all nodata/NaN there); check the nodata value and the band choice"
                )
    return {"optical": str(optical_out), "sar": str(sar_out), **_grid_summary(grid)}


def _grid_summary(grid: Grid) -> Dict[str, Any]:
    return {"width": grid.width, "height": grid.height, "res": list(grid.res), "crs": grid.crs.to_string()}


def preprocess_raster(
    path: PathLike,
    out_path: PathLike,
    bands: Sequence[int],
    cfg: PreprocessConfig,
    record_path: Optional[PathLike] = None,
    record: Optional[NormalizationRecord] = None,
    block: int = 1024,
    overwrite: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> Dict[str, Any]:
    """Write a raster's bands after the modality's feature chain and robust normalisation.

    The modality follows the type of ``cfg`` (SAR: calibration, incidence, Lee, dB; optical:
    linear scaling). The 2-98 % percentiles come from a bounded sample of the whole raster
    (or ``record`` when given), so every window is scaled alike; windows are read with the
    Lee filter's halo, so the result equals filtering the whole raster at once.

    Args:
        path: input raster.
        out_path: the preprocessed GeoTIFF (float32, NaN nodata; in [0, 1] when normalised).
        bands: 1-based bands, in the output's order.
        cfg: :class:`SarPreprocessConfig` or :class:`OpticalPreprocessConfig`.
        record_path: where to save the normalisation record (JSON), if wanted.
        record: reuse these percentiles instead of computing them.
        block: window edge in pixels.
        overwrite: replace existing outputs.
        progress: progress and cancellation.

    Returns:
        output paths, the steps applied and each band's ``p_low``/``p_high``.
    """
    check_outputs_not_inputs([out_path] + ([record_path] if record_path else []), {"raster": path})
    if record_path:
        check_distinct_outputs({"output": out_path, "normalisation record": record_path})
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: file not found")
    with rasterio.open(path) as src:
        count = src.count
    bands = [int(b) for b in bands]
    missing = [b for b in bands if not 1 <= b <= count]
    if not bands or missing:
        raise ValueError(f"{path}: band(s) {missing or bands} do not exist; the raster has {count} band(s)")
    for out in [out_path] + ([record_path] if record_path else []):
        check_output(out, overwrite)
    check_not_complex(path, "SAR" if isinstance(cfg, SarPreprocessConfig) else "optical")
    if isinstance(cfg, SarPreprocessConfig):  # a picture read as amplitude numbers would pass unnoticed
        check_sar_not_picture(path)
    # the file's units, decided as for every other run (cfg.units "auto": detected)
    calibration = getattr(cfg, "calibration_constant", 0.0)
    backscatter = getattr(cfg, "backscatter", "auto")  # SAR only
    cfg, decision, note = resolve_chain(cfg, path, bands, cfg.units, calibration, backscatter=backscatter)
    progress.info(decision.line(path))
    if note:
        progress.warning(note)
    normalise = cfg.robust_normalize
    if normalise and record is None:
        record = compute_normalization(path, bands, cfg, progress=progress.sub(0.0, 0.3))
    flat = [b.band for b in record.bands if b.p_high <= b.p_low] if normalise else []
    if flat:  # every pixel would come out 0: say so instead of writing a blank raster without a word
        progress.warning(f"{path}: band(s) {flat} hold one value between their 2nd and 98th percentiles (a constant "
                         "band, or too few pixels); normalised, they are 0 everywhere")
    incidence_band = cfg.incidence_band if getattr(cfg, "incidence_normalize", False) else None
    read_list = bands + ([incidence_band] if incidence_band else [])
    halo = feature_halo(cfg)
    grid = grid_of(path)  # refuses rasters without georeferencing, naming the file
    windows = list(iter_windows(grid.width, grid.height, block, halo))
    rest = progress.sub(0.3 if normalise else 0.0, 1.0)
    with open_writer(
        out_path, grid, len(bands), "float32", float("nan"), overwrite, [f"b{b}_preprocessed" for b in bands]
    ) as dst:
        for k, (window, padded) in enumerate(windows):
            rest.check()
            raw = read_bands(path, read_list, padded)
            x = features(raw[: len(bands)], cfg, raw[len(bands)] if incidence_band else None)
            if halo:
                x = x[:, halo:-halo, halo:-halo]
            if normalise:
                x = apply_normalization(x, record)
            dst.write(x.astype(np.float32, copy=False), window=window)
            rest.report((k + 1) / len(windows), f"preprocessing window {k + 1}/{len(windows)}")
    if record_path and record is not None:
        save_json(record, Path(record_path))
    return {
        "output": str(out_path),
        "units": decision.units,
        "record": str(record_path) if record_path and record is not None else None,
        "bands": [to_dict(b) for b in record.bands] if record is not None else [],
    }
