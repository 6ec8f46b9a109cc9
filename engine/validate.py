"""Checks and fault messages shared by the command line, Processing and the dock.

One place decides: the engine commands, the Processing algorithms (their
``checkParameterValues`` and their runs) and therefore the dock call these functions, so a
request is refused or warned about with the same sentence whatever the interface.

* :func:`check_outputs_not_inputs`: an output never replaces or sits on an input, with
  ``--overwrite`` or without.
* :func:`check_writable`: the destination folder exists and can be written to (probed).
* :func:`check_pair_overlap`: optical and SAR footprints overlap on the output grid; a warning
  with the numbers when the overlap is smaller than one tile.
* :func:`check_tiling`: tile size and overlap.
* :func:`choose_vector_layer`: a vector file with several layers needs the layer named.
* :func:`check_model_file`: an SGCAD model of the right kind (the name does not matter).
* :class:`RunLock`: one run at a time per output folder, naming the other run.
* :func:`describe_error`: any exception as one line naming the file and the remedy, with the
  exit status the command line uses (docs/errors.md lists them).

Nothing here imports QGIS.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
import signal
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

PathLike = Union[str, Path]

#: Exit statuses of ``python -m engine`` (docs/errors.md).
EXIT_OK, EXIT_INTERNAL, EXIT_USER, EXIT_IO, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 3, 130, 143
STOPS = {
    signal.SIGINT: ("interrupted (Ctrl-C): stopped; no output was written", EXIT_INTERRUPTED),
    signal.SIGTERM: ("terminated (SIGTERM): stopped; no output was written", EXIT_TERMINATED),
}
"""The line and exit status of a command-line run stopped by a signal."""

TILE_MIN, TILE_MAX = 64, 8192

#: An optical/SAR overlap narrower than one tile is warned about only below this share (%) of the output grid.
MIN_OVERLAP_SHARE = 95.0

#: An output grid is refused when it has more pixels than both of these: MAX_GRID_UPSAMPLING times the inputs'
#: pixels over the same area (10 times finer per axis) and MAX_GRID_PIXELS (a 10000 x 10000 grid).
MAX_GRID_UPSAMPLING, MAX_GRID_PIXELS = 100.0, 1e8

#: Files a training run writes into its run folder (engine.train); inputs must not be among them.
TRAINING_RUN_FILES = (
    "best.safetensors",
    "best.safetensors.json",
    "state.safetensors",
    "state.safetensors.json",
    "metrics.json",
    "history.csv",
    "history.json",
    "report.html",
    "gates.tif",
    "kd_ratio.tif",
    "labels.tif",
    "manifest.json",
    "data.json",
    "plots/learning_curves.png",
    "plots/kd_ratio.png",
    "plots/confusion_test.png",
)


#: Files a fine-tune (and the label-free water adaptation) moves into its run folder (engine.train.finetune).
FINETUNE_RUN_FILES = (
    "student.safetensors",
    "student.safetensors.json",
    "teacher.safetensors",
    "teacher.safetensors.json",
    "teacher_vvvh.safetensors",  # the VV + VH companion, when the pair adapted (engine.water.experts)
    "teacher_vvvh.safetensors.json",
    "metrics.json",
    "history.json",
    "report.html",
    "gates.tif",
    "kd_ratio.tif",
    "pseudo_labels.tif",
    "water_change.tif",  # a label-free adaptation's map against the zero-shot one
)

#: The files each algorithm / command with an output folder writes into it: an input inside the
#: folder must not carry one of these names (checked before any work, on every interface).
FOLDER_OUTPUTS: Dict[str, Tuple[str, ...]] = {
    "segment": ("classes.tif", "classes.tif.aux.xml", "confidence.tif", "water_probability.tif", "gates.tif"),
    "trainteacher": TRAINING_RUN_FILES,
    "trainstudent": TRAINING_RUN_FILES,
    "distill": TRAINING_RUN_FILES,
    "finetune": FINETUNE_RUN_FILES,
    "adaptwater": FINETUNE_RUN_FILES,
    "exportpatches": ("manifest.json", "labels.tif", "patches.gpkg"),
}


class SgcadError(ValueError):
    """A problem the user can fix. ``str()`` is one line naming the file and what to do."""

    exit_code = EXIT_USER


class FaultError(SgcadError):
    """An input/output fault: a destination that cannot be written, a full disk, too little memory."""

    exit_code = EXIT_IO


# --------------------------------------------------------------------------- outputs vs inputs
def _plain(path: Any) -> Optional[Path]:
    """A local file-system path from an input value (QGIS ``path|layername=x`` kept to ``path``)."""
    if path is None:
        return None
    text = str(path).split("|", 1)[0].strip()
    if not text or text.startswith(("/vsi", "memory:", "TEMPORARY")) or "://" in text:
        return None
    return Path(text)


def _vrt_sources(path: Path) -> List[Path]:
    """The files a virtual raster reads (QGIS's Build Virtual Raster, the plugin's no-data declarations):
    writing onto one of them would replace the input as surely as writing onto the VRT."""
    if path.suffix.lower() != ".vrt" or not path.is_file():
        return []
    import rasterio

    try:
        with rasterio.open(path) as src:
            return [Path(f) for f in src.files[1:]]
    except rasterio.errors.RasterioIOError:
        return []


def _same_file(a: Path, b: Path) -> bool:
    """Same file after resolving links (``..``, symlinks) or through a hard link."""
    try:
        if a.resolve() == b.resolve():
            return True
    except (OSError, RuntimeError):
        pass
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs_not_inputs(outputs: Iterable[Any], inputs: Mapping[str, Any]) -> None:
    """Refuse when an output would be written onto an input, with ``--overwrite`` or without.

    Paths are compared after resolving ``..`` and symbolic links, and hard links to one file
    count as the same file. Give every file an output writes, e.g. the files that a folder output
    creates inside the folder, so that an input named like an output is caught.

    Args:
        outputs: output file paths.
        inputs: what each input is (``"SAR"``, ``"model"``) -> its path (None and "" skipped).

    Raises:
        SgcadError: naming the output, the input and the remedy.
    """
    given = [(label, p, "") for label, value in inputs.items() if (p := _plain(value)) is not None]
    given += [(label, source, f" (read through {vrt.name})") for label, vrt, _ in list(given)
              for source in _vrt_sources(vrt)]
    for out in outputs:
        target = _plain(out)
        if target is None:
            continue
        for label, source, via in given:
            if _same_file(target, source):
                raise SgcadError(
                    f"{target}: this output would replace the {label} input {source}{via}; inputs are never replaced, "
                    "not even with --overwrite (OVERWRITE=true): choose another output name or folder"
                )


def check_distinct_outputs(outputs: Mapping[str, Any]) -> None:
    """Refuse two outputs of one run that are the same file (the second would replace the first)."""
    seen: List[Tuple[str, Path]] = []
    for label, value in outputs.items():
        p = _plain(value)
        if p is None:
            continue
        for other_label, other in seen:
            if _same_file(p, other):
                raise SgcadError(
                    f"{p}: the {other_label} and the {label} would be the same file; give them different names"
                )
        seen.append((label, p))


# --------------------------------------------------------------------------- destination
def check_output_folder(folder: PathLike) -> Path:
    """An output folder path must not be an existing file (it is created when missing)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise SgcadError(f"{folder}: exists and is a file, not a folder; choose an output folder")
    if folder.is_symlink() and not folder.exists():
        raise SgcadError(f"{folder}: a link to {os.readlink(folder)}, which does not exist; create that folder or "
                         "choose another output folder")
    blocker = _file_in_the_way(folder)
    if blocker is not None:
        raise SgcadError(f"{folder}: {blocker} is a file, not a folder; choose another output folder")
    return folder


def _file_in_the_way(path: PathLike) -> Optional[Path]:
    """The nearest existing parent of ``path`` when it is a file (so nothing can be made under it), else None."""
    for parent in Path(str(path)).parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def check_writable(folder: PathLike, what: str = "output folder", target: Optional[PathLike] = None) -> None:
    """Refuse a destination folder that cannot be written to, by creating and removing a small file.

    ``os.access`` is not enough: it says yes to root on read-only mounts' files and knows nothing of
    quotas or network shares. ``target`` (the file to be written) is named in the message.

    Raises:
        FaultError: the folder is read-only, not permitted, or full.
    """
    folder = Path(folder)
    probe = folder / f".sgcad-probe-{uuid.uuid4().hex[:8]}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileNotFoundError:
        raise SgcadError(f"{folder}: {what} does not exist; create it or choose another") from None
    except OSError as exc:
        raise FaultError(describe_os_error(exc, target or folder, writing=True)) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        probe.unlink()


def _block_end(band: Any) -> int:
    """The last byte a GeoTIFF band's blocks reach (block offsets and sizes from the TIFF tags)."""
    bx, by = band.GetBlockSize()
    nx, ny = -(-band.XSize // max(bx, 1)), -(-band.YSize // max(by, 1))
    end = 0
    for y in range(ny):
        for x in range(nx):
            offset = band.GetMetadataItem(f"BLOCK_OFFSET_{x}_{y}", "TIFF")
            if offset:  # 0 or missing: a sparse block never written, read as nodata
                end = max(end, int(offset) + int(band.GetMetadataItem(f"BLOCK_SIZE_{x}_{y}", "TIFF") or 0))
    return end


def verify_geotiff(path: PathLike, final: Optional[PathLike] = None) -> None:
    """Refuse a GeoTIFF that was not written completely (a full disk, a file-size limit).

    GDAL reports such write errors only on its error channel, not as exceptions, so a run could
    otherwise finish "successfully" with a truncated file. The TIFF directory must open and every
    block (overviews included) must lie inside the file.

    Raises:
        FaultError: naming ``final`` (the name the file stands for) and the likely cause.
    """
    from osgeo import gdal

    path = Path(path)
    size = path.stat().st_size
    problem = None
    try:
        ds = gdal.Open(str(path))
    except RuntimeError:
        ds = None
    if ds is None:
        problem = f"its TIFF directory is missing after {size} bytes"
    else:
        try:
            end = 0
            for i in range(1, ds.RasterCount + 1):
                band = ds.GetRasterBand(i)
                overviews = [band.GetOverview(k) for k in range(band.GetOverviewCount())]
                end = max([end, _block_end(band)] + [_block_end(o) for o in overviews])
            if end > size:
                problem = f"its blocks reach byte {end} but the file has {size}"
        finally:
            ds = None
    if problem is None:
        return
    raise FaultError(incomplete_write(Path(final) if final else final_name(path), path, problem))


def incomplete_write(where: PathLike, written: PathLike, problem: str) -> str:
    """The sentence for an output that could not be written completely, with its likely cause.

    GDAL words a full disk or a file-size limit as a broken TIFF; the process's file-size limit and
    the free space of the folder tell which it was.
    """
    written = Path(written)
    try:
        size = written.stat().st_size
    except OSError:  # already removed by the clean-up: unknown
        size = None
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        limit = None if soft == resource.RLIM_INFINITY else soft
    except (ImportError, OSError, ValueError):
        limit = None
    if limit is not None and (size is None or size >= limit - 4096):
        return describe_os_error(OSError(errno.EFBIG, "File too large"), where, writing=True)
    try:
        free = shutil.disk_usage(written.parent).free
    except OSError:
        free = None
    if free is not None and free < 1024 * 1024:
        return describe_os_error(OSError(errno.ENOSPC, "No space left on device"), where, writing=True)
    return (
        f"{where}: could not be written completely ({problem}); nothing was kept. "
        "Check the free space and the disk, then run again"
    )


# --------------------------------------------------------------------------- georeferencing and overlap
def no_georeferencing(path: PathLike, control_points: int = 0) -> str:
    """The sentence for a raster without CRS or geotransform (``engine.raster.grid`` raises it too).

    ``control_points``: its ground control points. A raster placed by those alone (a raw Sentinel-1
    GRD or SLC measurement file is) shows in QGIS, warped on the fly, but has no map grid to read
    windows from: it needs warping, not the Georeferencer.
    """
    if control_points:
        return (
            f"{path}: placed by {control_points} ground control points only, with no map grid (as a raw "
            "Sentinel-1 GRD or SLC measurement file is): warp it onto a map grid first (QGIS: Raster > "
            "Projections > Warp (Reproject); GDAL: gdalwarp -t_srs EPSG:<code> -r bilinear). For a Sentinel-1 SAR "
            "raster, a calibrated, terrain-corrected product (sigma0 or gamma0 from SNAP, pyroSAR or a processing "
            "service) gives the water expert the levels it learnt"
        )
    return (
        f"{path}: no georeferencing (CRS and geotransform are required; "
        "georeference the raster, e.g. with QGIS's Georeferencer, first)"
    )


def subdatasets_problem(path: PathLike, subdatasets: Sequence[str]) -> str:
    """The sentence for a container (NetCDF, HDF) whose rasters are subdatasets, not bands of the file."""
    shown = ", ".join(subdatasets[:4]) + (f" and {len(subdatasets) - 4} more" if len(subdatasets) > 4 else "")
    return (
        f"{path}: holds no raster band of its own but {len(subdatasets)} subdataset(s) ({shown}); extract the "
        f"ones to map into one GeoTIFF first (gdal_translate '{subdatasets[0]}' vv.tif, then python -m engine "
        "stack or sgcad:stackbands for several)"
    )


def gdal_name_problem(value: str) -> Optional[str]:
    """The sentence for a GDAL virtual path (/vsizip/...) or subdataset name (NETCDF:"f.nc":var) given as a
    file, which the commands cannot check, lock or write beside; None for anything else."""
    # DRIVER:"file":name or DRIVER:/file:name (a CRS such as EPSG:32631 has no quote or path after its colon)
    if not (value.startswith("/vsi") or re.match(r'^[A-Za-z][A-Za-z0-9_]+:([A-Za-z0-9_]+:)*("|/|[A-Za-z]:\\)', value)):
        return None
    return (
        f"{value}: a GDAL virtual path or subdataset name; the commands read plain files: extract it first "
        f"(unzip; gdal_translate '{value}' extracted.tif for a raster, ogr2ogr extracted.gpkg '{value}' for "
        "polygons) and give that file"
    )


def local_crs_problem(path: PathLike, crs: Any) -> Optional[str]:
    """The sentence for a raster whose CRS is a local (engineering) one, or None.

    Such a CRS is not placed on the Earth: areas on the ellipsoid, UTM zones and the other inputs' CRSs cannot be
    related to it (its areas came out 10^10 times too large, and an input in any other CRS failed in PROJ).
    """
    if crs is None or crs.is_geographic or crs.is_projected:
        return None
    wkt = crs.to_wkt()
    name = wkt.split('"')[1] if '"' in wkt else "unnamed"
    return (
        f"{path}: its CRS ('{name}') is a local (engineering) CRS, not placed on the Earth, so ground areas and "
        "the other inputs cannot be related to it; assign the raster's real CRS first (QGIS: Raster > "
        "Projections > Assign Projection; GDAL: gdal_edit.py -a_srs EPSG:<code>)"
    )


def check_georeferenced(path: PathLike) -> None:
    """Raise ``SgcadError`` when a raster has no CRS or no geotransform, or a local CRS (the grid module's
    opener decides, as every reader meets it)."""
    from .raster.grid import open_georeferenced

    open_georeferenced(path).close()


def _fmt_box(box: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in box) + ")"


def overlap_pixels(path: PathLike, grid: Any) -> Tuple[int, int, Tuple[float, float, float, float]]:
    """How many whole pixels of ``grid`` a raster's footprint covers: (width, height, its box in the grid CRS)."""
    import rasterio
    from rasterio.warp import transform_bounds

    from .raster.grid import footprint_bounds

    check_georeferenced(path)  # else transform_bounds fails with "CRS is invalid: None", naming no file
    with rasterio.open(path) as src:
        box = tuple(transform_bounds(src.crs, grid.crs, *footprint_bounds(src.transform, src.width, src.height),
                                     densify_pts=21))
    left, bottom, right, top = grid.bounds
    x0, y0, x1, y1 = max(box[0], left), max(box[1], bottom), min(box[2], right), min(box[3], top)
    rx, ry = grid.res
    w = int((x1 - x0) / rx + 1e-6) if x1 > x0 else 0
    h = int((y1 - y0) / ry + 1e-6) if y1 > y0 else 0
    return w, h, box


def check_pair_overlap(
    optical_path: PathLike,
    sar_path: PathLike,
    grid: Any,
    tile_size: Optional[int] = None,
    labels: Tuple[str, str] = ("optical", "SAR"),
) -> Optional[str]:
    """Refuse an optical/SAR pair that does not overlap on ``grid``; say so when the overlap is small.

    Args:
        optical_path, sar_path: georeferenced rasters.
        grid: the output grid (an ``engine.raster.grid.Grid``).
        tile_size: tile edge of the run; an overlap narrower than one tile gets a warning.
        labels: what the two rasters are, for the message.

    Returns:
        a warning sentence with the numbers, or None.

    Raises:
        SgcadError: no overlap (or less than one pixel of the grid), with both extents.
    """
    ow, oh, obox = overlap_pixels(optical_path, grid)
    sw, sh, sbox = overlap_pixels(sar_path, grid)
    left = max(obox[0], sbox[0])
    right = min(obox[2], sbox[2])
    bottom = max(obox[1], sbox[1])
    top = min(obox[3], sbox[3])
    rx, ry = grid.res
    span_w = (min(right, grid.bounds[2]) - max(left, grid.bounds[0])) / rx if right > left else 0.0
    span_h = (min(top, grid.bounds[3]) - max(bottom, grid.bounds[1])) / ry if top > bottom else 0.0
    both_w, both_h = int(span_w + 1e-6), int(span_h + 1e-6)
    crs = grid.crs.to_string()
    if min(ow, oh, sw, sh, both_w, both_h) < 1:
        raise SgcadError(
            f"{optical_path} and {sar_path} do not overlap ({labels[0]} extent {_fmt_box(obox)}, "
            f"{labels[1]} extent {_fmt_box(sbox)} in {crs}); choose rasters that cover the same area"
        )
    # whole pixels to the nearest: footprints of one scene cut or reprojected apart differ by a fraction of a pixel
    both_w, both_h = min(int(span_w + 0.5), grid.width), min(int(span_h + 0.5), grid.height)
    share = 100.0 * both_w * both_h / max(grid.width * grid.height, 1)
    narrow = both_w < min(tile_size or 0, grid.width) or both_h < min(tile_size or 0, grid.height)
    if tile_size and narrow and share < MIN_OVERLAP_SHARE:  # a scene under a tile, nearly all overlapped: fine
        return (
            f"{optical_path} and {sar_path} overlap on only {both_w}x{both_h} pixels "
            f"({both_w * rx:g} x {both_h * ry:g} in {crs} units, {share:.1f} % of the {grid.width}x{grid.height}-pixel "
            f"output grid), less than one {tile_size}-pixel tile; the map outside the overlap is nodata "
            "(or SAR-only water/non-water with a teacher): check that these are the rasters you meant"
        )
    return None


def check_grid_size(width: int, height: int, res: float, native_res: float, unit: str = "m") -> None:
    """Refuse an output grid far finer than its inputs and large, before anything is allocated or written.

    Args:
        width, height: the output grid's size in pixels.
        res: its pixel size (CRS units).
        native_res: the finest input pixel size over the same area, in the same units.
        unit: the CRS unit, for the message.

    Raises:
        SgcadError: more than ``MAX_GRID_UPSAMPLING`` times the inputs' pixels and more than
            ``MAX_GRID_PIXELS``, with the numbers and the smallest pixel size accepted.
    """
    pixels = float(width) * float(height)
    scale = res / native_res  # output pixel edge in input pixels
    native = pixels * scale**2  # the inputs' pixels over the same area
    limit = max(MAX_GRID_UPSAMPLING * native, MAX_GRID_PIXELS)
    if pixels <= limit:
        return
    floor = res * math.sqrt(pixels / limit)
    step = 10.0 ** (math.floor(math.log10(floor)) - 1)  # two significant digits, rounded up: the figure passes
    floor = math.ceil(floor / step - 1e-9) * step
    raise SgcadError(
        f"output pixel size {res:g} {unit} (--resolution, RESOLUTION) would make a {width} x {height} grid "
        f"({pixels:.2g} pixels) where the inputs have {native_res:.3g} {unit} pixels "
        f"({width * scale:.0f} x {height * scale:.0f} over the same area); choose a pixel size of at least "
        f"{floor:.2g} {unit}, or 0 for the inputs' own"
    )


# --------------------------------------------------------------------------- settings
def check_tiling(tile_size: int, overlap: int) -> None:
    """Tile size within [TILE_MIN, TILE_MAX] and overlap below half of it (CLI and Processing alike)."""
    if not TILE_MIN <= int(tile_size) <= TILE_MAX:
        raise SgcadError(
            f"tile size {tile_size} is outside {TILE_MIN}..{TILE_MAX} pixels (--tile-size, TILE_SIZE); a tile "
            f"larger than the scene is reduced to the scene anyway, so {TILE_MAX} is never too small"
        )
    if not 0 <= int(overlap) < int(tile_size) // 2:
        raise SgcadError(
            f"tile overlap {overlap} must be between 0 and {int(tile_size) // 2 - 1} pixels, below half the "
            f"tile size {tile_size} (--overlap, OVERLAP)"
        )


def check_learning_rate(lr: float, option: str = "--lr, LR") -> None:
    """A learning rate above 0 and finite: at 0 nothing is learnt, yet the run would look like a result."""
    if not (math.isfinite(lr) and lr > 0):
        raise SgcadError(f"learning rate {lr:g} must be more than 0 ({option}): at {lr:g} the networks cannot learn, "
                         "and the run would report the starting model as a result")


def check_model_file(path: PathLike, kind: Optional[str] = None, label: str = "model") -> Any:
    """An SGCAD model file of ``kind`` ("student"/"teacher"), whatever its name; returns its metadata.

    Raises:
        SgcadError / FileNotFoundError: missing, not an SGCAD model, truncated, or of another kind.
    """
    from .models.checkpoint import check_fits, read_metadata

    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: {label} file not found")
    if Path(path).is_dir():
        raise SgcadError(f"{path}: is a folder; the {label} must be a .safetensors model file")
    meta = read_metadata(path)
    if kind:
        check_fits(meta, path, kind)
    return meta


# --------------------------------------------------------------------------- vector layers
def check_single_layer(path: PathLike, what: str) -> None:
    """Refuse a vector file whose first layer is not its only spatial one: readers that take the first layer would
    otherwise say the file "holds no polygons" when the user meant another of its layers."""
    layers = vector_layers(path)
    spatial = [name for name, geometry in layers if geometry]
    if len(spatial) > 1 or (spatial and layers[0][0] != spatial[0]):
        raise SgcadError(
            f"{path} holds layers {[name for name, _ in layers]}; the {what} must come from a file with one polygon "
            "layer: save the layer you mean to its own file (or choose it in Processing)"
        )


def unzip_hint(path: PathLike) -> str:
    """A remedy for a zip archive given as a vector file ('' for anything else)."""
    return "; it is a zip archive: unzip it and give the .shp or .gpkg inside" if str(path).lower().endswith(
        ".zip") else ""


def vector_layers(path: PathLike) -> List[Tuple[str, bool]]:
    """(name, has geometry) of every layer of a vector file."""
    from osgeo import gdal, ogr

    with _gdal_exceptions(gdal):
        try:
            ds = ogr.Open(str(path))
        except RuntimeError as exc:
            raise SgcadError(f"{path}: not a vector file GDAL/OGR can read ({exc}){unzip_hint(path)}") from None
    if ds is None:
        raise SgcadError(f"{path}: not a vector file GDAL/OGR can read{unzip_hint(path)}")
    out = []
    for i in range(ds.GetLayerCount()):
        lyr = ds.GetLayer(i)
        out.append((lyr.GetName(), lyr.GetGeomType() != ogr.wkbNone))
    return out


@contextlib.contextmanager
def _gdal_exceptions(gdal) -> Iterator[None]:
    previous = gdal.GetUseExceptions()
    gdal.UseExceptions()
    try:
        yield
    finally:
        if not previous:
            gdal.DontUseExceptions()


def labels_layer(path: PathLike, layer: Optional[str] = None) -> Optional[str]:
    """:func:`choose_vector_layer` for a polygon label file; for a label raster (or a missing file, reported
    where it is read) ``layer`` as given. A polygon layer needs no class field named here: without one its
    ``class`` attribute is read (:func:`engine.raster.labels.class_field_of`)."""
    from .train.evaluate import is_raster

    if not Path(path).exists() or is_raster(path):
        return layer
    return choose_vector_layer(path, layer)


def choose_vector_layer(path: PathLike, layer: Optional[str] = None) -> Optional[str]:
    """The layer of a vector file to read: ``layer`` when given, else the only layer with geometry.

    A file with several layers holding geometries (a GeoPackage with labels and an AOI, …) is never
    read from its first layer by chance: the layer must be named. Attribute-only tables (e.g. the
    ``layer_styles`` table QGIS adds to a GeoPackage) do not count.

    Returns:
        the layer name to pass on (None for single-layer formats such as Shapefile or GeoJSON).

    Raises:
        SgcadError: the named layer does not exist, or several layers and none named.
    """
    p = _plain(path)
    if p is None or not p.exists() or p.is_dir():
        return layer
    layers = vector_layers(p)
    names = [n for n, _ in layers]
    spatial = [n for n, geometry in layers if geometry]
    if layer:
        if layer not in names:
            raise SgcadError(f"{p}: no layer named {layer!r}; its layers are {names}")
        return layer
    if len(spatial) > 1:
        raise SgcadError(
            f"{p} holds {len(spatial)} layers with geometries ({', '.join(spatial)}); say which one to read: "
            f"--layer NAME on the command line, or in Processing the layer itself or '{p}|layername=NAME'"
        )
    if len(spatial) == 1 and len(names) > 1:
        return spatial[0]
    return None


# --------------------------------------------------------------------------- run lock
LOCK_NAME = ".sgcad-run.lock"
_HELD: Dict[str, Tuple[int, int]] = {}  # lock path -> (thread id, depth) held by this process
_HELD_GUARD = threading.Lock()


def _process_start(pid: int) -> Optional[str]:
    """The start time of a process (Linux /proc), to tell a live owner from a reused pid."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[-1].split()[19] if ")" in text else None


def _alive(owner: Dict[str, Any]) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # another machine's run (shared folder): never taken over automatically
    pid = int(owner.get("pid", -1))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    start = owner.get("pid_start")
    return not (start and _process_start(pid) not in (None, start))


def lock_owner(folder: PathLike) -> Optional[Dict[str, Any]]:
    """The live run holding ``folder`` (its lock's JSON), or None when free or the lock is stale."""
    path = Path(folder) / LOCK_NAME
    try:
        owner = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        try:  # being written this instant, or garbage: live if recent
            recent = time.time() - path.stat().st_mtime < 60
            return {"id": "?", "pid": "?", "host": "?", "started": "?"} if recent else None
        except OSError:
            return None
    return owner if _alive(owner) else None


def locked_message(folder: PathLike, owner: Dict[str, Any]) -> str:
    return (
        f"{folder} is being written by another SGCAD run ({owner.get('command', 'run')} {owner.get('id')}, "
        f"pid {owner.get('pid')} on {owner.get('host')}, started {owner.get('started')}); wait for it to finish or "
        f"choose another output folder (if no such run is going, delete {Path(folder) / LOCK_NAME})"
    )


def check_unlocked(folder: PathLike) -> None:
    """Refuse early (e.g. in ``checkParameterValues``) when a live run holds ``folder``."""
    owner = lock_owner(folder)
    if owner is not None:
        key = str((Path(folder) / LOCK_NAME).absolute())
        with _HELD_GUARD:
            mine = key in _HELD and _HELD[key][0] == threading.get_ident()
        if not mine:
            raise SgcadError(locked_message(folder, owner))


class RunLock:
    """One run at a time per output folder: ``folder/.sgcad-run.lock`` names the run holding it.

    The lock is a file created exclusively, holding the run's id, pid, host, start time and
    command. A lock whose process is gone (same host: the pid does not exist or belongs to a newer
    process) is stale and taken over; a live one refuses the second run, naming the first. The same
    thread may take a lock it already holds (nested engine calls). The folder is created if needed, and
    removed on release (with the parents the run made) when the run left nothing in it.

    Raises:
        SgcadError: another live run holds the folder.
        FaultError: the folder cannot be written to.
    """

    def __init__(self, folder: PathLike, command: str = "run") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command
        self.id = uuid.uuid4().hex[:12]
        self._key = str(self.path.absolute())
        self._owned = False
        self._made: List[Path] = []

    def acquire(self) -> RunLock:
        with _HELD_GUARD:
            held = _HELD.get(self._key)
            if held is not None and held[0] == threading.get_ident():
                _HELD[self._key] = (held[0], held[1] + 1)
                return self
        check_output_folder(self.folder)
        # the folders this run makes: a run refused or failed before writing leaves none of them behind
        self._made = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FaultError(describe_os_error(exc, self.folder, writing=True)) from None
        record = {
            "id": self.id,
            "pid": os.getpid(),
            "pid_start": _process_start(os.getpid()),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": self.command,
        }
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = lock_owner(self.folder)
                if owner is not None:
                    raise SgcadError(locked_message(self.folder, owner)) from None
                stale = self.path.with_name(f"{LOCK_NAME}.stale-{uuid.uuid4().hex[:8]}")
                with contextlib.suppress(FileNotFoundError):
                    os.replace(self.path, stale)  # only one taker renames it; the others retry
                    stale.unlink()
                continue
            except OSError as exc:
                raise FaultError(describe_os_error(exc, self.folder, writing=True)) from None
            try:
                os.write(fd, json.dumps(record).encode("utf-8"))
            finally:
                os.close(fd)
            self._owned = True
            with _HELD_GUARD:
                _HELD[self._key] = (threading.get_ident(), 1)
            return self
        raise SgcadError(f"{self.folder}: could not take its run lock {self.path}; try again")

    def release(self) -> None:
        with _HELD_GUARD:
            held = _HELD.get(self._key)
            if held is not None and held[0] == threading.get_ident() and held[1] > 1:
                _HELD[self._key] = (held[0], held[1] - 1)
                return
            if not self._owned:
                return
            _HELD.pop(self._key, None)
        self._owned = False
        with contextlib.suppress(OSError):
            if json.loads(self.path.read_text()).get("id") == self.id:
                self.path.unlink()
        for folder in self._made:  # innermost first; rmdir removes only what is still empty
            try:
                folder.rmdir()
            except OSError:
                break

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


# --------------------------------------------------------------------------- error translation
_TEMP_NAMES = (
    re.compile(r"^\.(?P<stem>.+)\.tmp-[0-9a-f]{8}(?P<suffix>\.[^.]+)$"),  # engine.raster.io.atomic_output
    re.compile(r"^\.(?P<stem>.+)\.[0-9a-f]{8}\.tmp(?P<suffix>\.tif)$"),  # engine.inference.outputs.OutputSet
    re.compile(r"^\.(?P<stem>.+)\.[0-9a-f]{8}\.tmp(?P<suffix>)$"),  # engine.files.atomic_write_bytes
    re.compile(r"^\.(?P<stem>.+)\.part(?P<suffix>\.[^.]+)$"),  # patch outlines, copied rasters
    re.compile(r"^(?P<stem>[^.].*\.json)\.tmp(?P<suffix>)$"),  # engine.data.patches.save_manifest
)
_FULL = ("no space left", "free disk space", "disk full", "disk quota", "quota exceeded")
_TOO_LARGE = ("file too large",)
_READ_ONLY = ("read-only file system",)
_DENIED = ("permission denied", "operation not permitted")
_MISSING = ("no such file or directory", "does not exist in the file system", "not a directory")
_CORRUPT = (
    "not recognized as a supported file format",
    "ireadblock failed",
    "tiffread",
    "tifffilltile",
    "tiffreaddirectory",
    "tiffscanlinesize",
    "not a tiff",
    "tiff directory",
    "read error",
    "corrupt",
    "truncat",
    "unexpected end",
    "failed to read",
    "bad magic",
    "jpeglib",
    "zipdecode",
    "lzwdecode",
    "decoding error",
)


def final_name(path: PathLike) -> Path:
    """The output a temporary file stands for (``.classes.1a2b3c4d.tmp.tif`` -> ``classes.tif``)."""
    p = Path(path)
    for pattern in _TEMP_NAMES:
        m = pattern.match(p.name)
        if m:
            return p.with_name(m.group("stem") + m.group("suffix"))
    return p


def _is_temp(path: PathLike) -> bool:
    return final_name(path) != Path(path)


_PATH_IN_TEXT = re.compile(r"'(?P<q>[^']*[/\\][^']*)'|(?P<p>(?:(?<![A-Za-z])[A-Za-z]:)?[/\\][^\s,;:'\"()]+)")


def _path_in(text: str) -> Optional[str]:
    m = _PATH_IN_TEXT.search(text)
    if not m:
        return None
    return (m.group("q") or m.group("p")).rstrip(".")


def _detail(text: str, path: Optional[str]) -> str:
    """GDAL's own words without the path and boilerplate, kept short."""
    detail = text.replace("Read or write failed.", "")
    if path:
        detail = detail.replace(f"'{path}'", "").replace(path, "")
    detail = re.sub(r"\s+", " ", detail).strip(" .,:;")
    return detail[:160]


def _where(path: Optional[PathLike]) -> str:
    return str(final_name(path)) if path else "a file"


def describe_os_error(exc: BaseException, path: Optional[PathLike] = None, writing: Optional[bool] = None) -> str:
    """One line for an operating-system or GDAL I/O error: the file, what happened, what to do."""
    code = exc.errno if isinstance(exc, OSError) else None  # GDAL's CPLE errno is its own error class
    text = str(exc)
    lowered = text.lower()
    if path is None:
        path = getattr(exc, "filename", None) or _path_in(text)
    where = _where(path)
    if writing is None:
        writing = path is not None and (_is_temp(path) or not Path(path).exists() or Path(path).is_dir())
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)) or any(k in lowered for k in _FULL):
        return (
            f"{where}: no space left on the disk (or the disk quota is reached); nothing was kept. "
            "Free some space or choose an output folder on another disk"
        )
    if code == errno.EFBIG or any(k in lowered for k in _TOO_LARGE):
        return (
            f"{where}: file too large for this file system or for the file-size limit of this process (ulimit -f); "
            "nothing was kept. Choose a folder on another file system, raise the limit, or process a smaller area"
        )
    if code == errno.EROFS or any(k in lowered for k in _READ_ONLY):
        return f"{where}: the file system is read-only; nothing was written. Choose an output folder you can write to"
    if type(exc).__name__ == "CPLE_NoWriteAccessError":
        writing = True
    if code in (errno.EACCES, errno.EPERM) or writing and type(exc).__name__ == "CPLE_NoWriteAccessError" or any(
        k in lowered for k in _DENIED
    ):
        if writing:
            return (
                f"{where}: permission denied, cannot write there; nothing was written. "
                "Choose an output folder you can write to, or change its permissions"
            )
        return f"{where}: permission denied, cannot be read; check the file's permissions"
    blocker = _file_in_the_way(path) if path is not None else None
    if blocker is not None:  # ENOTDIR, or GDAL's own "not found" for a path through a file
        return f"{where}: {blocker} is a file, not a folder; choose another path"
    if code in (errno.ENOENT, errno.ENOTDIR) or any(k in lowered for k in _MISSING):
        return f"{where}: file or folder not found; check the path"
    if code == errno.EISDIR:
        return f"{where}: is a folder, not a file; give a file name"
    if code == errno.ENOTEMPTY:
        return f"{where}: the folder is not empty; choose an empty or new folder"
    if code is None and path is not None and _is_temp(path):  # a GDAL error on our own output while writing it
        return incomplete_write(where, path, _detail(text, str(path)))
    if any(k in lowered for k in _CORRUPT):
        return (
            f"{where}: cannot be read: the file is corrupt, truncated or not a raster GDAL can open "
            f"({_detail(text, path if isinstance(path, str) else str(path) if path else None)}); "
            "re-create, re-download or re-export it"
        )
    reason = getattr(exc, "strerror", None) or _detail(text, str(path) if path else None) or type(exc).__name__
    return f"{where}: input/output error ({reason}); check the file, the folder and the disk"


def describe_error(exc: BaseException) -> Tuple[str, int, bool]:
    """An exception as ``(one line, exit status, expected)``.

    ``expected`` is False for errors that are bugs (the traceback then matters and the line says
    how to get it). Messages name the file and the remedy; docs/errors.md lists them.
    """
    from .progress import Canceled

    name = type(exc).__name__
    if isinstance(exc, Canceled):
        return f"canceled: {exc}; no output was written", EXIT_INTERRUPTED, True
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C); stopped, no output was written", EXIT_INTERRUPTED, True
    if isinstance(exc, SgcadError):
        return str(exc), exc.exit_code, True
    if isinstance(exc, json.JSONDecodeError):
        where = f"line {exc.lineno}, column {exc.colno}"
        return f"a JSON file is not valid JSON ({exc.msg} at {where}); fix or recreate it", EXIT_USER, True
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower() or "OutOfMemory" in name:
        return (
            "out of memory; use a smaller tile size or batch size (--tile-size/--batch-size, TILE_SIZE/BATCH_SIZE), "
            "fewer threads, or the CPU instead of the GPU",
            EXIT_IO,
            True,
        )
    if name in ("RasterioIOError",) or name.startswith("CPLE_") or isinstance(exc, OSError):
        if isinstance(exc, FileNotFoundError) and getattr(exc, "filename", None) is None and str(exc):
            return str(exc), EXIT_USER, True  # the engine's own "X: file not found"
        message = describe_os_error(exc)
        if message.startswith(("a file: input/output error",)) and not isinstance(exc, OSError):
            message = f"{_detail(str(exc), None)}; check the input files and the output folder"
        code = EXIT_USER if (": cannot be read" in message or "not found" in message) else EXIT_IO
        return message, code, True
    if name == "SafetensorError":
        return f"a model file is corrupt or truncated ({exc}); copy or download it again", EXIT_USER, True
    if isinstance(exc, ValueError) or name == "ArgumentTypeError":  # the latter: an option checked after parsing
        return str(exc), EXIT_USER, True
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (
        f"internal error: {name}{': ' + detail if detail else ''} (a bug; run again with --debug for the traceback "
        "and report it)",
        EXIT_INTERNAL,
        False,
    )
