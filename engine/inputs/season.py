"""A SAR scene acquired in a high-latitude winter, when its name says so.

Frozen ground, dry snow over peat and wet snow darken C-band backscatter towards open water's level: on the
project's real snowy pair (Hudson Bay Lowlands, 11 January) the SAR water expert calls 46 % of the scene water
(docs/experiments/zero_shot_real.md, "Snow"). A SAR raster alone cannot tell, but a Sentinel-1 product name
carries its acquisition date, and the raster its latitude: a run then says what to check.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Optional, Union

import rasterio
from rasterio.warp import transform

PathLike = Union[str, Path]
WINTER_LATITUDE = 45.0
"""Degrees from the equator from which a winter scene may be snow-covered or frozen."""
WINTER_MONTHS = {"north": (12, 1, 2, 3), "south": (6, 7, 8, 9)}
# a Sentinel-1 product or band file name: S1A_IW_GRDH_1SDV_20200111T232323_..., s1b-iw-grd-vv-20200111t232323-...
_S1_DATE = re.compile(r"(?<![a-z0-9])s1[abcd][_-].*?[_-](\d{4})(\d{2})(\d{2})t\d{6}", re.IGNORECASE)


def acquisition_date(path: PathLike) -> Optional[date]:
    """The acquisition date a Sentinel-1 product name in the file or folder name gives, or None."""
    for name in (Path(path).name, Path(path).parent.name):
        found = _S1_DATE.search(name)
        if found:
            try:
                return date(*(int(g) for g in found.groups()))
            except ValueError:
                return None
    return None


def centre_latitude(path: PathLike) -> Optional[float]:
    """The latitude of the raster's centre, or None without a coordinate reference system."""
    with rasterio.open(path) as src:
        if src.crs is None:
            return None
        left, bottom, right, top = src.bounds
        _, lat = transform(src.crs, "EPSG:4326", [(left + right) / 2], [(bottom + top) / 2])
    return float(lat[0])


def winter_warning(path: PathLike) -> Optional[str]:
    """A warning when the SAR raster's name dates it to a winter month at 45 degrees or more from the equator."""
    when = acquisition_date(path)
    if when is None:
        return None
    lat = centre_latitude(path)
    if lat is None or abs(lat) < WINTER_LATITUDE:
        return None
    if when.month not in WINTER_MONTHS["north" if lat > 0 else "south"]:
        return None
    return (f"SAR {Path(path).name} was acquired on {when.isoformat()} at {abs(lat):.1f} degrees "
            f"{'north' if lat > 0 else 'south'}, in winter: frozen ground and wet snow darken backscatter towards "
            "open water's level (on the project's real snowy pair the water expert called 46 % of the scene water). "
            "Check the water map against an optical image or a snow map before using it; with an optical image the "
            "class map's water is checked against it")
