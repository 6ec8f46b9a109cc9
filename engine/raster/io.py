"""Raster reading and writing: windows, NaN-for-nodata reads and atomic GeoTIFF outputs.

Every output goes to a temporary file in the destination folder and is renamed only when
complete, so an error or a cancel never leaves a half-written file under the real name.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.windows import Window

from ..validate import verify_geotiff

if TYPE_CHECKING:  # pragma: no cover
    from .grid import Grid

PathLike = Union[str, Path]

GTIFF_OPTIONS: Dict[str, Any] = {
    "driver": "GTiff",
    "tiled": True,
    "blockxsize": 256,
    "blockysize": 256,
    "compress": "deflate",
    "BIGTIFF": "IF_SAFER",
}
_SIDECARS = (".aux.xml", ".ovr", "-wal", "-shm", "-journal")


def iter_windows(width: int, height: int, block: int, halo: int = 0) -> Iterator[Tuple[Window, Window]]:
    """Cover a ``width`` x ``height`` raster with ``block``-sized windows, row by row.

    Yields:
        ``(window, padded)``: the core window (clipped to the raster; the cores tile it
        without overlap) and the same window grown by ``halo`` pixels on every side. The
        padded window may reach outside the raster; the readers here return NaN there, so
        ``padded`` data cropped by ``halo`` on each side lines up with ``window``.
    """
    if block <= 0 or halo < 0:
        raise ValueError(f"block must be positive and halo non-negative, got {block}, {halo}")
    for row in range(0, height, block):
        for col in range(0, width, block):
            w, h = min(block, width - col), min(block, height - row)
            yield Window(col, row, w, h), Window(col - halo, row - halo, w + 2 * halo, h + 2 * halo)


WATER_MAP_NAMES = ("not water", "water")
"""The classes of a water map (``engine water`` / ``sgcad:watermap``'s ``water.tif``: 0 not water, 1 water)."""


def is_water_map(src: Any) -> bool:
    """Whether an open raster is a water map: one band described "water" and no class names (a class map
    of ``segment`` carries its ``class_names`` tag)."""
    return (src.descriptions[0] or "").strip().lower() == "water" and "class_names" not in src.tags()


def check_bands(src: Any, bands: Sequence[int], path: PathLike) -> None:
    """Raise ``ValueError`` naming the file when a requested 1-based band does not exist."""
    if len(bands) == 0:
        raise ValueError(f"{path}: no bands requested")
    if src.count == 0 and src.subdatasets:
        from ..validate import subdatasets_problem

        raise ValueError(subdatasets_problem(path, src.subdatasets))
    for b in bands:
        if not isinstance(b, (int, np.integer)) or not 1 <= int(b) <= src.count:
            raise ValueError(
                f"{path}: band {b} does not exist; the raster has {src.count} band(s), numbered 1..{src.count}"
            )


def read_bands(path: PathLike, bands: Sequence[int], window: Optional[Window] = None) -> np.ndarray:
    """Read bands as float32 (C, h, w), NaN where the source is nodata or NaN.

    ``window`` may reach outside the raster (e.g. a window padded by a halo): the part
    outside is NaN.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    with rasterio.open(path) as src:
        check_bands(src, bands, path)
        return read_bands_from(src, bands, window)


def read_bands_from(src: Any, bands: Sequence[int], window: Optional[Window] = None) -> np.ndarray:
    """:func:`read_bands` from a dataset already open (bands already checked): one open per read."""
    if window is None:
        window = Window(0, 0, src.width, src.height)
    col, row, w, h = (int(v) for v in (window.col_off, window.row_off, window.width, window.height))
    out = np.full((len(bands), h, w), np.nan, dtype=np.float32)
    c0, r0 = max(col, 0), max(row, 0)
    c1, r1 = min(col + w, src.width), min(row + h, src.height)
    if c1 <= c0 or r1 <= r0:
        return out
    inner = Window(c0, r0, c1 - c0, r1 - r0)
    data = src.read(list(bands), window=inner).astype(np.float32, copy=False)
    for i, b in enumerate(bands):
        nd = src.nodatavals[b - 1]
        if nd is not None and not np.isnan(nd):
            data[i][data[i] == np.float32(nd)] = np.nan
    _apply_dataset_mask(src, bands, inner, data)
    scaling = band_scaling(src, bands)
    if scaling is not None:
        data = data * scaling[0][:, None, None] + scaling[1][:, None, None]
    out[:, r0 - row : r1 - row, c0 - col : c1 - col] = data
    return out


def band_scaling(src: Any, bands: Sequence[int]) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """GDAL's scale and offset of each band (value = stored x scale + offset), or None when every band is
    stored as it is. A product that declares them (int16 dB x 100 with scale 0.01) is read in its units."""
    scales = np.array([src.scales[b - 1] for b in bands], np.float32)
    offsets = np.array([src.offsets[b - 1] for b in bands], np.float32)
    if np.all(scales == 1) and np.all(offsets == 0):
        return None
    return scales, offsets


def _apply_dataset_mask(src: Any, bands: Sequence[int], window: Window, data: np.ndarray) -> None:
    """NaN where GDAL's mask of a band says no data beyond its nodata value: an alpha band (drone
    orthophotos, QGIS's rendered exports) or a per-dataset mask (``.msk``, internal masks)."""
    masks: Dict[int, np.ndarray] = {}
    for i, b in enumerate(bands):
        flags = src.mask_flag_enums[b - 1]
        if MaskFlags.alpha not in flags and MaskFlags.per_dataset not in flags:
            continue
        key = 0 if MaskFlags.per_dataset in flags else b  # one mask for every band of the dataset
        if key not in masks:
            masks[key] = src.read_masks(b, window=window) == 0
        data[i][masks[key]] = np.nan


def has_valid_data(path: PathLike, bands: Sequence[int], block: int = 1024) -> bool:
    """True as soon as one window holds a valid (non-nodata, non-NaN) pixel in every band asked."""
    with rasterio.open(path) as src:
        width, height = src.width, src.height
    for window, _ in iter_windows(width, height, block):
        if np.isfinite(read_bands(path, bands, window)).any():
            return True
    return False


def _remove_quietly(path: Path) -> None:
    for p in [path] + [path.with_name(path.name + s) for s in _SIDECARS]:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def check_output(path: PathLike, overwrite: bool = False) -> Path:
    """Validate an output path: its folder must exist and be writable; an existing file needs ``overwrite``.

    Raises:
        ValueError: the output exists (without ``overwrite``), is a folder, or its folder is missing.
        engine.validate.FaultError: the folder cannot be written to (read-only, permission, full).
    """
    from ..validate import check_output_folder, check_writable

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; give an output file name")
    if path.exists() and not overwrite:
        raise ValueError(f"{path}: output exists; choose another name or pass overwrite=True (--overwrite)")
    if not path.parent.is_dir():
        check_output_folder(path.parent)  # names a file standing where a folder should be
        raise ValueError(f"{path}: output folder {path.parent} does not exist")
    check_writable(path.parent, target=path)
    return path


def _commit(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``path``; without ``overwrite`` never replace a file that appeared meanwhile.

    A hard link fails when the name exists, so a second run that wrote the same output at the same
    time is refused instead of silently replacing the first's file. File systems without hard links
    fall back to a check and a rename.
    """
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise ValueError(
            f"{path}: output exists (written by another run while this one was running); choose another name "
            "or pass overwrite=True (--overwrite)"
        ) from None
    except OSError:
        if path.exists():
            raise ValueError(
                f"{path}: output exists; choose another name or pass overwrite=True (--overwrite)"
            ) from None
        os.replace(tmp, path)
        return
    tmp.unlink()


@contextlib.contextmanager
def atomic_output(path: PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only on success.

    The temporary name keeps the suffix, so GDAL/OGR pick the same driver. On any exception
    (including ``Canceled``) the temporary file and its side-cars are removed.

    Raises:
        ValueError: ``path`` exists and ``overwrite`` is false, or its folder is missing.
    """
    path = check_output(path, overwrite)
    tmp = path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"{path}: nothing was written")
        if tmp.suffix.lower() in (".tif", ".tiff"):
            verify_geotiff(tmp, path)  # GDAL reports a full disk only on its error channel
        _commit(tmp, path, overwrite)
        aux = tmp.with_name(tmp.name + ".aux.xml")
        if aux.exists():
            os.replace(aux, path.with_name(path.name + ".aux.xml"))
    finally:
        _remove_quietly(tmp)


def gtiff_profile(grid: Grid, count: int, dtype: str, nodata: Optional[float], **options: Any) -> Dict[str, Any]:
    """Creation profile of a tiled, compressed GeoTIFF on ``grid``."""
    profile = dict(GTIFF_OPTIONS)
    if grid.width < 256 or grid.height < 256:  # GeoTIFF tiles must not exceed tiny rasters much
        profile.update(tiled=False)
        profile.pop("blockxsize")
        profile.pop("blockysize")
    profile.update(
        width=grid.width,
        height=grid.height,
        count=count,
        dtype=dtype,
        crs=grid.crs,
        transform=grid.transform,
        nodata=nodata,
    )
    if np.dtype(dtype).kind == "f":
        profile["predictor"] = 3
    profile.update(options)
    return profile


def source_tag(name: str, tags: Dict[str, str]) -> str:
    """The ``source`` tag of a raster written from the file ``name`` whose tags are ``tags``: its name, and
    the name it came from in turn (an aligned raster aligned again), as the input contract reads names."""
    return f"{name}, from {tags['source']}" if tags.get("source") else name


@contextlib.contextmanager
def open_writer(
    path: PathLike,
    grid: Grid,
    count: int,
    dtype: str = "float32",
    nodata: Optional[float] = None,
    overwrite: bool = False,
    band_names: Optional[Sequence[str]] = None,
    **options: Any,
) -> Iterator[Any]:
    """Open a GeoTIFF on ``grid`` for windowed writing (``dst.write(arr, window=...)``).

    The file appears under ``path`` only after the ``with`` block ends without error.
    """
    with atomic_output(path, overwrite) as tmp:
        with rasterio.open(tmp, "w", **gtiff_profile(grid, count, dtype, nodata, **options)) as dst:
            if band_names:
                for i, name in enumerate(band_names, start=1):
                    dst.set_band_description(i, str(name))
            yield dst


def write_raster(
    path: PathLike,
    array: np.ndarray,
    grid: Grid,
    nodata: Optional[float] = None,
    overwrite: bool = False,
    band_names: Optional[Sequence[str]] = None,
    colormap: Optional[Dict[int, Tuple[int, int, int]]] = None,
    **options: Any,
) -> Path:
    """Write a (C, H, W) or (H, W) array on ``grid`` atomically; returns ``path``."""
    arr = array[None] if array.ndim == 2 else array
    if arr.shape[1:] != grid.shape:
        raise ValueError(f"{path}: array shape {arr.shape[1:]} does not match the grid {grid.shape}")
    with open_writer(path, grid, arr.shape[0], str(arr.dtype), nodata, overwrite, band_names, **options) as dst:
        dst.write(arr)
        if colormap:
            dst.write_colormap(1, colormap)
    return Path(path)
