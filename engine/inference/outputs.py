"""The set of GeoTIFFs a segmentation writes, created together or not at all.

Every file is written under a temporary name in the output folder; :meth:`OutputSet.commit`
adds overviews, colours and class names, then renames all of them. Any error or cancel
before that removes the temporary files, so a run leaves either every output or none, and
never touches an existing output unless ``overwrite`` is set.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, NoReturn, Optional, Sequence, Tuple, Union

import numpy as np
import rasterio
from rasterio.windows import Window

from ..config import ClassSchema
from ..cores import available_cores
from .products import NODATA_U8, SAR_ONLY_NON_WATER

PathLike = Union[str, Path]


@dataclass(frozen=True)
class OutputSpec:
    """One output file: name, bands, type, nodata and band descriptions."""

    key: str
    filename: str
    dtype: str
    nodata: float
    descriptions: Tuple[str, ...]
    meaning: str

    @property
    def count(self) -> int:
        return len(self.descriptions)


SPECS: Dict[str, OutputSpec] = {
    s.key: s
    for s in (
        OutputSpec(
            "classes",
            "classes.tif",
            "uint8",
            NODATA_U8,
            ("class",),
            f"class id of the schema; {SAR_ONLY_NON_WATER} = non-water from SAR only; 255 = nodata",
        ),
        OutputSpec(
            "confidence",
            "confidence.tif",
            "float32",
            math.nan,
            ("confidence",),
            "student max class probability; negative = SAR-only pixel, |value| = teacher confidence",
        ),
        OutputSpec(
            "water",
            "water_probability.tif",
            "float32",
            math.nan,
            ("teacher_water_probability",),
            "teacher (SAR-only) water probability",
        ),
        OutputSpec(
            "gates",
            "gates.tif",
            "uint8",
            NODATA_U8,
            ("teacher_confident_water", "teacher_confident_non_water", "teacher_student_agree"),
            "1 = true, 0 = false, 255 = nodata",
        ),
    )
}


def output_paths(out_dir: PathLike, keys: Sequence[str]) -> Dict[str, Path]:
    """Final paths of the outputs ``keys`` in ``out_dir``."""
    return {k: Path(out_dir) / SPECS[k].filename for k in keys}


class OutputSet:
    """Temporary GeoTIFFs for several outputs, committed together.

    Args:
        out_dir: folder of the outputs (created if missing).
        keys: which outputs of :data:`SPECS` to write.
        grid: target grid (``crs_wkt``, ``transform``, ``width``, ``height``).
        schema: class names and colours for the class map.
        overwrite: replace existing outputs; otherwise they are an error before any work.
        block: GeoTIFF tile edge (multiple of 16).
        compress: GeoTIFF compression (ZSTD level 1 by default: several times faster than
            DEFLATE at a similar size; DEFLATE where GDAL lacks ZSTD).
        overviews: build overviews on commit.
        tags: extra metadata written into every file.

    Raises:
        ValueError: an output exists and ``overwrite`` is false.
    """

    def __init__(
        self,
        out_dir: PathLike,
        keys: Sequence[str],
        grid,
        schema: ClassSchema,
        overwrite: bool = False,
        block: int = 256,
        compress: str = "zstd",
        overviews: bool = True,
        tags: Optional[Dict[str, str]] = None,
    ) -> None:
        unknown = [k for k in keys if k not in SPECS]
        if unknown:
            raise ValueError(f"unknown output(s) {unknown}; known: {sorted(SPECS)}")
        self.out_dir = Path(out_dir)
        self.paths = output_paths(out_dir, keys)
        existing = [str(p) for p in self.paths.values() if p.exists()]
        if existing and not overwrite:
            shown = existing[0] if len(existing) == 1 else f"{existing[0]} (and {len(existing) - 1} more outputs)"
            raise ValueError(f"{shown}: output exists; choose another name or pass overwrite=True (--overwrite)")
        self.keys, self.grid, self.schema = list(keys), grid, schema
        self.block, self.compress, self.overviews = block, compress, overviews
        self.tags = dict(tags or {})
        self._tmp: Dict[str, Path] = {}
        self._ds: Dict[str, rasterio.io.DatasetWriter] = {}

    def __enter__(self) -> OutputSet:
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def open(self) -> None:
        """Create the temporary files (tiled GeoTIFF, nodata set: unwritten blocks read as nodata)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex[:8]
        try:
            for key in self.keys:
                spec = SPECS[key]
                tmp = self.out_dir / f".{Path(spec.filename).stem}.{token}.tmp.tif"
                self._tmp[key] = tmp
                profile = dict(
                    driver="GTiff",
                    width=self.grid.width,
                    height=self.grid.height,
                    count=spec.count,
                    dtype=spec.dtype,
                    nodata=spec.nodata,
                    crs=self.grid.crs_wkt,
                    transform=self.grid.transform,
                    tiled=True,
                    blockxsize=self.block,
                    blockysize=self.block,
                    compress=self.compress,
                    BIGTIFF="IF_SAFER",
                )
                if spec.count > 1:  # separate measurements, not an RGB picture
                    profile["photometric"] = "MINISBLACK"
                profile.update(_compression_options(self.compress))
                if spec.dtype == "float32" and self.compress.lower() in ("deflate", "lzw", "zstd"):
                    profile["predictor"] = 3
                self._ds[key] = ds = rasterio.open(tmp, "w", **profile)
                self._describe(key, ds)
        except BaseException:  # Ctrl-C too: __exit__ does not run when __enter__ fails
            self.abort()
            raise

    def write(self, x0: int, y0: int, arrays: Dict[str, np.ndarray]) -> None:
        """Write (bands, h, w) arrays at pixel (x0, y0) of every open output."""
        for key, ds in self._ds.items():
            a = arrays[key]
            ds.write(a, window=Window(x0, y0, a.shape[-1], a.shape[-2]))

    def _describe(self, key: str, ds) -> None:
        # before any pixel is written: GDAL flushes blocks early (bounded cache), after which
        # the TIFF colour model can no longer change
        spec = SPECS[key]
        for i, text in enumerate(spec.descriptions, start=1):
            ds.set_band_description(i, text)
        tags = dict(self.tags, meaning=spec.meaning)
        if key == "classes":
            cmap = {i: (*self.schema.rgb(i), 255) for i in self.schema.ids}
            cmap[SAR_ONLY_NON_WATER] = (160, 160, 160, 255)
            cmap[NODATA_U8] = (0, 0, 0, 0)
            ds.write_colormap(1, cmap)
            names = {str(i): n for i, n in zip(self.schema.ids, self.schema.names)}
            names[str(SAR_ONLY_NON_WATER)] = "non-water (SAR only)"
            tags["class_names"] = json.dumps(names)
            tags["water_class"] = str(self.schema.water_class)
        ds.update_tags(**tags)

    def _finish(self, key: str) -> None:
        spec, ds = SPECS[key], self._ds.pop(key)
        ds.close()
        if key == "classes":
            _write_category_names(self._tmp[key], self.schema)
        if self.overviews:
            _build_overviews(self._tmp[key], "nearest" if spec.dtype == "uint8" else "average", self.paths[key])

    def commit(self) -> Dict[str, Path]:
        """Finish every file and rename all of them to their final names.

        Returns:
            the final paths by output key.
        """
        renamed: List[Path] = []
        try:
            # one thread per file (GDAL works without the GIL): the float outputs' averaged
            # overviews take most of the commit, and the network's cores are idle by now
            keys = list(self._ds)
            with ThreadPoolExecutor(max(1, min(len(keys), available_cores()))) as pool:
                list(pool.map(self._finish, keys))
            from ..validate import verify_geotiff

            for key in self.keys:  # GDAL only logs write errors (disk full): check before the renames
                verify_geotiff(self._tmp[key], self.paths[key])
            for key in self.keys:
                final, aux = self.paths[key], _aux(self._tmp[key])
                _aux(final).unlink(missing_ok=True)  # a stale legend of a replaced output
                if aux.exists():  # GTiff keeps category names and the RAT in the PAM sidecar
                    os.replace(aux, _aux(final))
                    renamed.append(_aux(final))
                os.replace(self._tmp[key], final)
                renamed.append(final)
        except BaseException:
            for p in renamed:  # all or nothing: undo the renames already done
                p.unlink(missing_ok=True)
            self.abort()
            raise
        self._tmp.clear()
        return dict(self.paths)

    def abort(self) -> None:
        """Close and delete every temporary file (safe to call more than once)."""
        for ds in self._ds.values():
            try:
                ds.close()
            except Exception:  # noqa: S110  (the file is deleted next; its close error is moot)
                pass
        self._ds.clear()
        for tmp in self._tmp.values():
            for p in (tmp, Path(str(tmp) + ".ovr"), _aux(tmp)):
                p.unlink(missing_ok=True)
        self._tmp.clear()

    @property
    def temp_paths(self) -> List[Path]:
        return list(self._tmp.values())


def _compression_options(compress: str) -> Dict[str, object]:
    """Fast settings of the codec (level 1: outputs are written while the network waits)."""
    name = compress.lower()
    if name == "zstd" and not _has_zstd():
        name = "deflate"
    return {
        "compress": name,
        **({"zstd_level": 1} if name == "zstd" else {"zlevel": 1} if name == "deflate" else {}),
    }


def _has_zstd() -> bool:
    from osgeo import gdal

    return "ZSTD" in (gdal.GetDriverByName("GTiff").GetMetadataItem("DMD_CREATIONOPTIONLIST") or "")


def _aux(path: Path) -> Path:
    return Path(str(path) + ".aux.xml")


def _build_overviews(path: Path, resampling: str, final: Optional[Path] = None) -> None:
    """Internal overviews down to about one 256 block, compressed like the file.

    Through GDAL's own bindings, which release the GIL while they work (rasterio's
    ``build_overviews`` holds it), so the outputs' overviews are built in parallel at commit.
    """
    from osgeo import gdal

    final = final or path
    try:
        ds = gdal.OpenEx(str(path), gdal.OF_RASTER | gdal.OF_UPDATE)
    except RuntimeError:  # when GDAL exceptions are on
        ds = None
    if ds is None:
        _raise_fault(path, final, gdal.GetLastErrorMsg())
    failed = False
    try:
        factors, size = [], max(ds.RasterXSize, ds.RasterYSize)
        while size // (2 ** (len(factors) + 1)) >= 128:
            factors.append(2 ** (len(factors) + 1))
        if not factors:
            return
        compression = ds.GetMetadataItem("COMPRESSION", "IMAGE_STRUCTURE") or "none"
        codec = _compression_options(compression)
        level = str(codec.get("zstd_level", codec.get("zlevel", "")))
        options = {
            "COMPRESS_OVERVIEW": codec["compress"].upper(), "ZSTD_LEVEL_OVERVIEW": level, "ZLEVEL_OVERVIEW": level
        }
        if ds.GetRasterBand(1).DataType == gdal.GDT_Float32:
            options["PREDICTOR_OVERVIEW"] = "3"
        options = {k: v for k, v in options.items() if v and v != "NONE"}
        previous = {k: gdal.GetThreadLocalConfigOption(k, None) for k in options}
        try:  # per thread: the outputs are finished in parallel
            for k, v in options.items():
                gdal.SetThreadLocalConfigOption(k, v)
            try:
                failed = ds.BuildOverviews(resampling.upper(), factors) != 0
            except RuntimeError:  # when GDAL exceptions are on
                failed = True
        finally:
            for k, v in previous.items():
                gdal.SetThreadLocalConfigOption(k, v)
        ds.SetMetadataItem("resampling", resampling, "rio_overview")
    finally:
        ds = None  # noqa: F841  (closing flushes the overviews)
    if failed:
        _raise_fault(path, final, gdal.GetLastErrorMsg())


def _raise_fault(path: Path, final: Path, gdal_message: str) -> NoReturn:
    """Always raises: :func:`verify_geotiff` names the output and the cause of a full disk or a
    size limit; anything else is reported with GDAL's message."""
    from ..validate import verify_geotiff

    verify_geotiff(path, final)
    raise RuntimeError(f"{final.name}: building its overviews failed: {gdal_message}")


def _write_category_names(path: Path, schema: ClassSchema) -> None:
    """Category names and a raster attribute table, which GIS software shows as legend."""
    from osgeo import gdal

    ds = gdal.Open(str(path), gdal.GA_Update)
    try:
        band = ds.GetRasterBand(1)
        names = [""] * 256
        for i, n in zip(schema.ids, schema.names):
            names[i] = n
        names[SAR_ONLY_NON_WATER] = "non-water (SAR only)"
        band.SetCategoryNames(names)
        rat = gdal.RasterAttributeTable()
        rat.CreateColumn("value", gdal.GFT_Integer, gdal.GFU_MinMax)
        rat.CreateColumn("class", gdal.GFT_String, gdal.GFU_Name)
        rows = [(i, n) for i, n in zip(schema.ids, schema.names)] + [(SAR_ONLY_NON_WATER, names[254])]
        rat.SetRowCount(len(rows))
        for r, (value, name) in enumerate(rows):
            rat.SetValueAsInt(r, 0, int(value))
            rat.SetValueAsString(r, 1, name)
        band.SetDefaultRAT(rat)
    finally:
        ds = None  # noqa: F841  (closing the GDAL dataset writes the changes)
