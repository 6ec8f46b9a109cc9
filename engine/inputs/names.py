"""What each band of a raster is called: its description, else, in a virtual raster, its source's name.

QGIS's *Build Virtual Raster* with "Place each input file into a separate band" (``gdalbuildvrt
-separate``) leaves every band description empty, and lists the band files in the order the user
picked them, alphabetical by default: Sentinel-2's B02, B03, B04, B08 become bands 1-4, which an
unnamed raster's convention reads as red, green, blue. The files' own names (``..._B04.jp2``,
``..._VV.tif``) say which band is which, so a virtual band without a description is called by its
source: the source band's description, else the name of a one-band source file. A band mosaicked
from several tiles is called by all of its sources' names (they agree on the band).
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, List, Tuple

import rasterio

_SOURCE = re.compile(r"<SourceFilename([^>]*)>([^<]+)</SourceFilename>\s*<SourceBand>(\d+)</SourceBand>")


def band_names(src: Any) -> List[str]:
    """Every band's name ("" where nothing says) of an open rasterio dataset."""
    names = [d or "" for d in src.descriptions]
    if src.driver != "VRT" or all(names):
        return names
    # a run asks several times (roles, units, backscatter); a mosaic may hold hundreds of source files
    try:
        sources = _virtual_band_names(src.name, os.stat(src.name).st_mtime_ns)
    except OSError:  # a VRT GDAL reads from elsewhere (/vsizip/): not cached
        sources = tuple(_virtual_band_name(src, b) for b in range(1, src.count + 1))
    return [name or source for name, source in zip(names, sources)]


@lru_cache(maxsize=32)
def _virtual_band_names(path: str, mtime_ns: int) -> Tuple[str, ...]:
    """The source names of every band of the VRT ``path`` (``mtime_ns``: a rewritten VRT is read again)."""
    with rasterio.open(path) as src:
        return tuple(_virtual_band_name(src, b) for b in range(1, src.count + 1))


def _virtual_band_name(src: Any, band: int) -> str:
    found: List[str] = []
    for xml in src.tags(band, ns="vrt_sources").values():
        for attributes, filename, source_band in _SOURCE.findall(xml):
            path = Path(filename)
            if 'relativeToVRT="1"' in attributes:
                path = Path(src.name).parent / filename
            name = _source_band_name(path, int(source_band))
            if name and name not in found:
                found.append(name)
    return " ".join(found)


def _source_band_name(path: Path, band: int) -> str:
    try:
        with rasterio.open(path) as source:
            if not 1 <= band <= source.count:
                return ""
            return source.descriptions[band - 1] or (path.stem if source.count == 1 else "")
    except rasterio.errors.RasterioIOError:  # a source that moved: the VRT itself will say so when read
        return ""
