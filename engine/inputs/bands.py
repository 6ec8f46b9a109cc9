"""Which bands of a raster a model reads when the user does not choose them.

A model reads bands by role. The optical networks read red, green, blue: every bundled model, and
every model trained on the default bands 1, 2, 3 of an RGB raster. A SAR network reads a
co-polarised band first, then a cross-polarised one (the teacher learnt open water as dark
co-polarised backscatter). Band numbers alone do not carry those roles: a 13-band Sentinel-2
stack's bands 1, 2, 3 are B1 (coastal aerosol), B2 (blue) and B3 (green). Read as red, green,
blue, the bundled student called 0.5 % of a flooded Sentinel-2 chip water where the hand label
has 27 % (water IoU 1.5 %; 39.3 % with bands 4, 3, 2; docs/inputs.md, "Band roles").

So when a raster says what its bands are, the roles choose them: band descriptions (colour words,
or band names such as ``B4``, ``B04``, ``SR_B4``; Landsat 4-7 numbering when the file or band
names say Landsat 4, 5 or 7), then a band's wavelength tag, then GDAL's colour interpretation; SAR
bands by their polarisation in the descriptions (:func:`engine.inputs.units.polarisations`), or, for
two unnamed bands, by their calibrated levels (:func:`engine.inputs.levels.unnamed_co_cross`).
Bands the user chose are never changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import rasterio
from rasterio.enums import ColorInterp

from ..config import BandMapping
from .levels import MIN_CO_CROSS_DB, band_medians_db, unnamed_co_cross
from .names import band_names
from .units import PathLike, polarisation_names, polarisations

OPTICAL_ROLES = ("red", "green", "blue")
"""What a 3-band optical model reads when its band names do not say: the product's convention."""
SAR_ROLES = ("co", "cross")
"""What the first and second SAR band of a model are when their names do not say."""

_S2_L8_NUMBERS = {"2": "blue", "3": "green", "4": "red", "8": "nir"}
"""Sentinel-2 band numbers (the usual reading of a name such as B4); Landsat 8/9 share the colours."""
_OLI_NUMBERS = {"2": "blue", "3": "green", "4": "red", "5": "nir"}
"""Landsat 8 and 9 (OLI) band numbers: their B8 is the panchromatic band, their NIR is B5."""
_OLI_SENSOR = re.compile(r"(?<![a-z0-9])lc0?[89](?![0-9])|landsat[ _-]?[89](?![0-9])")
_TM_NUMBERS = {"1": "blue", "2": "green", "3": "red", "4": "nir"}
"""Landsat 4, 5 and 7 (TM, ETM+) band numbers."""
_TM_SENSOR = re.compile(r"(?<![a-z0-9])(?:lt0?[45]|le0?7)(?![0-9])|landsat[ _-]?[457](?![0-9])")
_SENSOR = re.compile(r"s2[abc]_|msil[12]|sentinel|landsat|(?<![a-z0-9])l[ceot]0?[45789]")
"""A Sentinel-2 or Landsat product in the file or band names: their band numbers mean bands."""
_BAND_TOKEN = re.compile(r"(?<![a-z0-9])(?:sr_)?b0?(\d{1,2}|8a)(?![a-z0-9])")
_COLOUR_WORDS = re.compile(r"(?<![a-z])(red[ _-]?edge|red|green|blue|nir|near[ _-]?infra[ _-]?red)(?![a-z])")
_COLOUR_INTERP = {ColorInterp.red: "red", ColorInterp.green: "green", ColorInterp.blue: "blue"}
_POLARISATION_NAMES = {"vv": "co", "hh": "co", "co": "co", "vh": "cross", "hv": "cross", "cross": "cross"}
# nm; a band whose centre lies in one of these is that colour (Sentinel-2, Landsat 4-9 centres fit)
_WAVELENGTHS_NM = (("blue", 440.0, 510.0), ("green", 510.0, 590.0), ("red", 620.0, 700.0), ("nir", 760.0, 900.0))

_BGRN = ("blue", "green", "red", "nir")
# Vendors' multispectral files that name no band: the band order their product specifications give,
# recognised by the file-naming convention and the band count. PlanetScope and SkySat analytic
# ("..._3B_AnalyticMS_SR.tif", "..._ssc1_u0001_analytic.tif"): blue, green, red, NIR; PlanetScope
# 8-band ("..._8b"): coastal blue, blue, green I, green, yellow, red, red edge, NIR. Maxar (WorldView,
# GeoEye, QuickBird) multispectral ("18MAR01104512-M2AS-058338349010_01_P001.TIF"): blue, green, red,
# NIR1; 8 bands: coastal, blue, green, yellow, red, red edge, NIR1, NIR2.
_VENDOR_ORDERS = (
    ("PlanetScope/SkySat analytic", re.compile(r"(?:_3b|_ssc\d[a-z0-9_]*)_analytic(?:ms)?(?![a-z])"),
     {4: _BGRN, 8: ("coastal", "blue", "green_i", "green", "yellow", "red", "red_edge", "nir")}),
    ("Maxar multispectral", re.compile(r"-m[1-3][a-z]{2}-\d{12}_\d{2}_p\d{3}"),
     {4: _BGRN, 8: ("coastal", "blue", "green", "yellow", "red", "red_edge", "nir", "nir2")}),
)


@dataclass(frozen=True)
class BandChoice:
    """Bands chosen by role for one input, and what the choice rests on."""

    bands: Tuple[int, ...]
    roles: Tuple[str, ...]
    how: str

    def line(self, what: str, path: PathLike, stored: Sequence[int]) -> str:
        """One line for the run's log: which bands, as what, and why not the model's numbers."""
        bands = ("bands " if len(self.bands) > 1 else "band ") + ", ".join(str(b) for b in self.bands)
        return (f"{what}: {bands} of {Path(path).name} read as {', '.join(self.roles)} ({self.how}); "
                f"the model's band numbers {list(stored)} hold other bands in this raster")


def _colour_from_text(text: str, numbers: dict) -> Optional[str]:
    words = {w for w in _COLOUR_WORDS.findall(text) if not w.startswith("red") or w == "red"}
    words = {"nir" if w.startswith("near") else w for w in words}
    if len(words) == 1:
        return words.pop()
    if words:
        return None
    tokens = _BAND_TOKEN.findall(text)
    if len(set(tokens)) > 1 and re.search(r"_b\d+$", text):
        tokens = tokens[:-1]  # engine stack names a band "<file stem>_b<band>": the suffix is not a sensor band
    return numbers.get(tokens[0]) if len(set(tokens)) == 1 else None


def _colour_from_wavelength(tags: dict) -> Optional[str]:
    for key, value in tags.items():
        if "wavelength" not in key.lower() or "unit" in key.lower():
            continue
        match = re.match(r"\s*([0-9.]+)", str(value))
        if not match:
            continue
        nm = float(match.group(1))
        nm = nm * 1000.0 if nm < 5.0 else nm  # micrometres
        return next((name for name, low, high in _WAVELENGTHS_NM if low <= nm < high), None)
    return None


def _counting(descriptions: Sequence[str]) -> bool:
    """Whether a few bands are named only by their position (B1, B2, B3, B4 on bands 1-4)."""
    return len(descriptions) <= 4 and all(
        re.fullmatch(rf"b0?{i}", d.strip()) for i, d in enumerate(descriptions, start=1))


def picture_colours(path: PathLike) -> Optional[str]:
    """The colours a raster's bands claim (GDAL colour interpretation red, green, blue, alpha or a
    palette), as words; None when no band claims one. Backscatter is never stored that way: a SAR
    input that says so is an optical image or a rendered picture (GDAL gives three-band 8-bit
    GeoTIFFs red, green, blue by default)."""
    with rasterio.open(path) as src:
        interp = list(src.colorinterp)
    words = [c.name for c in interp if c in (*_COLOUR_INTERP, ColorInterp.alpha, ColorInterp.palette)]
    return ", ".join(words) if words else None


def check_sar_not_picture(path: PathLike, with_optical: bool = False) -> None:
    """Refuse a SAR input whose bands claim colours (:func:`picture_colours`) or are named red, green and
    blue (:func:`optical_roles`: B04, B03, B02 ...); ``with_optical``: an optical input was given too, so the
    two may have been swapped.

    Raises:
        ValueError: naming the raster, the colours and the remedy.
    """
    swapped = " (are the optical and SAR inputs swapped?)" if with_optical else ""
    colours = picture_colours(path)
    if colours:
        raise ValueError(f"SAR raster {Path(path).name} says its bands are {colours} (GDAL colour interpretation): "
                         f"that is an optical image or a rendered picture, not radar backscatter; choose the SAR "
                         f"raster{swapped}")
    roles, how = optical_roles(path)
    with rasterio.open(path) as src:
        names = band_names(src)
        context = " ".join([Path(path).name, *names, *(str(v) for v in src.tags().values())]).lower()
    # band numbers alone (SAR_b2 ... as earlier releases named aligned bands) say nothing without a sensor
    named = how and how != "colour interpretation" and _BY_COUNT not in how and (
        _SENSOR.search(context) or any(_COLOUR_WORDS.search(n.lower()) for n in names) or "metadata" in how)
    if named:  # red, green and blue named: optical bands
        said = [names[roles.index(r)] or r for r in OPTICAL_ROLES]
        raise ValueError(f"SAR raster {Path(path).name} holds red, green and blue bands ({how}: {', '.join(said)}): "
                         f"that is an optical image, not radar backscatter; choose the SAR raster{swapped}")


def check_optical_not_sar(path: PathLike) -> None:
    """Refuse an optical input whose bands are named as radar polarisations (``VV``, ``Sigma0_VH_db``): the
    SAR given as the optical image, which was read as a dim 8-bit picture.

    Raises:
        ValueError: naming the raster, its bands and the remedy.
    """
    with rasterio.open(path) as src:
        names = band_names(src)
        count = src.count
    pols = polarisation_names(path, range(1, count + 1)) if any(names) else [None] * count
    said = [n for n, p in zip(names, pols) if p]
    if said:
        raise ValueError(f"optical raster {Path(path).name} holds radar bands ({', '.join(said)}): that is SAR, not "
                         "an optical image; choose the optical raster (are the optical and SAR inputs swapped?)")


def check_not_complex(path: PathLike, what: str) -> None:
    """Refuse complex values (a single-look complex radar product: I and Q, not backscatter).

    Raises:
        ValueError: naming the raster, its data type and how to make detected backscatter.
    """
    with rasterio.open(path) as src:
        dtypes = set(src.dtypes)
    complex_types = sorted(d for d in dtypes if d.startswith("complex"))
    if complex_types:
        raise ValueError(
            f"{what} raster {Path(path).name} holds complex values ({', '.join(complex_types)}): a single-look "
            "complex (SLC) product, whose numbers are phase and amplitude, not backscatter. Give a detected product "
            "(Sentinel-1 GRD, calibrated to sigma0), or make one from the SLC first: calibrate, take the intensity "
            "and multilook (SNAP: Calibration, Multilooking, Terrain Correction)"
        )


def check_optical_not_paletted(path: PathLike, bands: Sequence[int]) -> None:
    """Refuse optical bands that hold colour-table indices (a paletted picture, as some exports and
    web-map downloads are): their numbers are entries of a table, not brightness.

    Raises:
        ValueError: naming the raster and how to expand it to red, green and blue.
    """
    with rasterio.open(path) as src:
        interp = list(src.colorinterp)
    paletted = sorted({b for b in bands if 1 <= b <= len(interp) and interp[b - 1] == ColorInterp.palette})
    if paletted:
        raise ValueError(
            f"optical raster {Path(path).name}: band {', '.join(map(str, paletted))} holds colour-table indices "
            "(a paletted picture): its numbers are entries of a table, not brightness. Expand it to red, green and "
            "blue first: Raster > Conversion > PCT to RGB in QGIS, or gdal_translate -expand rgb IN.tif OUT.tif"
        )


VIRTUAL_BAND_FILES = "names of the virtual raster's band files"


def _named_by(src) -> str:
    """What the band names of an open raster are: its descriptions, or its virtual bands' files."""
    return VIRTUAL_BAND_FILES if any(n and not d for n, d in zip(band_names(src), src.descriptions)) else (
        "band descriptions")


def optical_roles(path: PathLike) -> Tuple[List[Optional[str]], str]:
    """The colour of every band of an optical raster (None where it does not say), and how known."""
    with rasterio.open(path) as src:
        descriptions = [d.lower() for d in band_names(src)]
        named_by = _named_by(src)
        tags = [src.tags(b) for b in range(1, src.count + 1)]
        interp = list(src.colorinterp)
        context = " ".join([Path(path).name.lower(), *descriptions, *(str(v).lower() for v in src.tags().values())])
    numbers = (_TM_NUMBERS if _TM_SENSOR.search(context) else _OLI_NUMBERS if _OLI_SENSOR.search(context)
               else _S2_L8_NUMBERS)
    by_name = [_colour_from_text(d, numbers) for d in descriptions]
    if _counting(descriptions) and not _SENSOR.search(context):
        by_name = [None] * len(descriptions)  # "B1" ... "B4" on bands 1 ... 4 may only count them
    sources = (
        (named_by, by_name),
        ("band names in the metadata", [_colour_from_text(str(t.get("BANDNAME", "")).lower(), numbers) for t in tags]),
        ("wavelengths in the metadata", [_colour_from_wavelength(t) for t in tags]),
        # before the colour interpretation: a writer may tag a 4-band file RGB + alpha whatever it holds
        _vendor_order(Path(path).name.lower(), len(descriptions)),
        ("colour interpretation", [_COLOUR_INTERP.get(c) for c in interp]),
        _sentinel2_stack(descriptions, context),
    )
    for how, roles in sources:
        if all(r in roles for r in OPTICAL_ROLES):
            return roles, how
    return [None] * len(descriptions), ""


# Sentinel-2 stacks in band order (B1 ... B12 with B8A; L1C adds B10): by far the most common rasters of
# 12 or 13 bands, and the order every Sentinel-2 chip collection (Sen1Floods11, BigEarthNet, EuroSAT) keeps
_S2_STACK_ORDERS = {
    12: ("coastal", "blue", "green", "red", "red_edge", "red_edge", "red_edge", "nir", "nir_narrow", "water_vapour",
         "swir", "swir"),
    13: ("coastal", "blue", "green", "red", "red_edge", "red_edge", "red_edge", "nir", "nir_narrow", "water_vapour",
         "cirrus", "swir", "swir"),
}
_BY_COUNT = "bands that name none"  # a guess from the count: never evidence that a SAR input is optical
_GENERIC_NAME = re.compile(r"(?:band[ _-]?\d*|bands|layer[ _-]?\d*)?")


def _sentinel2_stack(descriptions: Sequence[str], context: str) -> Tuple[str, List[Optional[str]]]:
    """(how, roles) for a 12- or 13-band raster that names no band and no other sensor: a Sentinel-2 stack in
    band order, whose bands 4, 3, 2 are red, green, blue; no roles otherwise."""
    count = len(descriptions)
    if count not in _S2_STACK_ORDERS or _TM_SENSOR.search(context) or not all(
            _GENERIC_NAME.fullmatch(d.strip()) for d in descriptions):
        return "", [None] * count
    how = (f"{count} {_BY_COUNT}, read as a Sentinel-2 stack in band order (B1-B12 with B8A"
           f"{', B10' if count == 13 else ''}); if it is another stack, choose the bands: --optical-bands / "
           "OPTICAL_BANDS, or tick them in the dock")
    return how, list(_S2_STACK_ORDERS[count])


def _vendor_order(name: str, count: int) -> Tuple[str, List[Optional[str]]]:
    """(how, roles) from a vendor's file name and band count (:data:`_VENDOR_ORDERS`); no roles otherwise."""
    for vendor, pattern, orders in _VENDOR_ORDERS:
        if pattern.search(name) and count in orders:
            return f"the {vendor} band order ({', '.join(orders[count])})", list(orders[count])
    return "", [None] * count


def model_roles(bands: BandMapping, modality: str) -> Optional[Tuple[str, ...]]:
    """The roles of a model's input bands, from its band names or the product's convention.

    Generic names (``optical_b1``, ``sar``) take the convention only for the default bands: an
    optical model on bands 1, 2, 3 reads red, green, blue; a SAR model's bands 1 (and 2) read co-
    (and cross-) polarised backscatter. A model trained on other numbered bands keeps its numbers.
    """
    stored = tuple(bands.optical_bands if modality == "optical" else bands.sar_bands)
    names = tuple(n.lower() for n in (bands.optical_names if modality == "optical" else bands.sar_names))
    if modality == "optical":
        if names and all(n in OPTICAL_ROLES + ("nir",) for n in names):
            return names
        return OPTICAL_ROLES if stored == (1, 2, 3) else None
    if names and all(n in _POLARISATION_NAMES for n in names):
        return tuple(_POLARISATION_NAMES[n] for n in names)
    return SAR_ROLES[: len(stored)] if stored == tuple(range(1, len(stored) + 1)) and len(stored) <= 2 else None


def generic_mapping(modality: str) -> BandMapping:
    """A model that reads the convention's roles (:data:`OPTICAL_ROLES` on bands 1, 2, 3; one
    co-polarised SAR band): what a new model or a model-free step (flood mapping) reads."""
    optical = (1, 2, 3) if modality == "optical" else ()
    return BandMapping(optical_bands=optical, optical_names=(), sar_bands=(1,), sar_names=("sar",))


def _pick(raster_roles: Sequence[Optional[str]], wanted: Sequence[str]) -> Optional[Tuple[int, ...]]:
    picked: List[int] = []
    for role in wanted:
        bands = [i + 1 for i, r in enumerate(raster_roles) if r == role and i + 1 not in picked]
        if not bands:
            return None
        if role in OPTICAL_ROLES and len(bands) > 1:
            return None  # two bands say they are red: the raster does not tell
        picked.append(bands[0])
    return tuple(picked)


def choose_bands(path: PathLike, bands: BandMapping, modality: str) -> Optional[BandChoice]:
    """Bands of ``path`` holding the roles the model reads, when they differ from its band numbers.

    Returns None when the raster does not say which band holds each role, or when the model's own
    band numbers already hold them (or the model's roles are not known).
    """
    wanted = model_roles(bands, modality)
    if not wanted:
        return None
    stored = tuple(bands.optical_bands if modality == "optical" else bands.sar_bands)
    if modality == "optical":
        roles, how = optical_roles(path)
    else:
        with rasterio.open(path) as src:
            count, named_by = src.count, _named_by(src)
        if count < 2:
            return None
        roles, how = list(polarisations(path, range(1, count + 1))), f"polarisations in the {named_by}"
        order = unnamed_co_cross(path) if count in (2, 3) and not any(roles) else None
        if order is not None:  # two unnamed bands (and an angle): calibrated levels say which is co-polarised
            roles = [{order.co_band: "co", order.cross_band: "cross"}.get(b) for b in range(1, count + 1)]
            how = f"their levels ({order.reason()})"
    picked = _pick(roles, wanted)
    if picked is None or picked == stored:
        return None
    with rasterio.open(path) as src:
        names = band_names(src)
    said = [names[b - 1] for b in picked]
    if how in ("band descriptions", VIRTUAL_BAND_FILES) or all(said):
        how = f"{how}: {', '.join(str(d) for d in said)}"
    return BandChoice(picked, tuple(_role_name(r, modality) for r in wanted), how)


def _role_name(role: str, modality: str) -> str:
    if modality == "optical":
        return role
    return "co-polarised" if role == "co" else "cross-polarised"


def roles_of(path: Optional[PathLike], bands: Sequence[int], modality: str) -> Optional[Tuple[str, ...]]:
    """What the raster says the given bands are (``red``...; ``vv``...), as a model stores them in
    its band names so that it reads them by role later; None where the raster does not say."""
    if path is None or not bands:
        return None
    if modality == "optical":
        roles = optical_roles(path)[0]
    else:
        with rasterio.open(path) as src:
            roles = polarisation_names(path, range(1, src.count + 1))
    picked = [roles[b - 1] if 1 <= b <= len(roles) else None for b in bands]
    return tuple(picked) if all(picked) and len(set(picked)) == len(picked) else None  # type: ignore[arg-type]


def model_bands_in(
    path: Optional[PathLike], model: BandMapping, modality: str
) -> Tuple[Tuple[int, ...], Tuple[str, ...]]:
    """The bands of ``path`` a model reads when none are chosen (:func:`choose_bands`, else its
    own numbers), and their names for a model trained on from them (roles where the raster says)."""
    stored = tuple(model.optical_bands if modality == "optical" else model.sar_bands)
    names = tuple(model.optical_names if modality == "optical" else model.sar_names)
    choice = choose_bands(path, model, modality) if path is not None else None
    if choice is None:
        return stored, names
    return choice.bands, roles_of(path, choice.bands, modality) or names


def training_bands(
    optical: Optional[PathLike], sar: Optional[PathLike], optical_bands: Sequence[int] = (),
    sar_bands: Sequence[int] = (),
) -> BandMapping:
    """The bands a new model learns from: those given, else those holding red, green, blue and a
    co-polarised band where the rasters say so, else 1, 2, 3 and 1; named by role where known, so
    that the model reads the same bands of the next raster whatever their numbers."""
    out = []
    inputs = ((optical, optical_bands, "optical", (1, 2, 3)), (sar, sar_bands, "sar", (1,)))
    for path, given, modality, default in inputs:
        bands = tuple(int(b) for b in given)
        if not bands:
            choice = choose_bands(path, generic_mapping(modality), modality) if path is not None else None
            bands = choice.bands if choice else default
        prefix = "optical_b" if modality == "optical" else "sar_b"
        out.append((bands, roles_of(path, bands, modality) or tuple(f"{prefix}{b}" for b in bands)))
    (o_bands, o_names), (s_bands, s_names) = out
    return BandMapping(optical_bands=o_bands, sar_bands=s_bands, optical_names=o_names, sar_names=s_names)


def unnamed_optical_warning(path: PathLike, bands: BandMapping) -> Optional[str]:
    """A warning when a many-band optical raster does not say which band is red, green, blue and
    the model's band numbers are read as those colours."""
    if model_roles(bands, "optical") != OPTICAL_ROLES:
        return None
    with rasterio.open(path) as src:
        count = src.count
    roles, _ = optical_roles(path)
    if count < 4 or any(roles):
        return None
    stored = ", ".join(str(b) for b in bands.optical_bands)
    return (f"optical raster {Path(path).name} has {count} bands and does not say which is red, green or blue; "
            f"bands {stored} are read as red, green, blue. If that is not their order (a Sentinel-2 stack's "
            "bands 1-3 are B1 coastal, B2 blue, B3 green: use 4, 3, 2), choose the bands: --optical-bands / "
            "OPTICAL_BANDS, or tick them in the dock")


def unnamed_sar_warning(path: PathLike, bands: BandMapping, units: str) -> Optional[str]:
    """A warning when the band a model reads as co-polarised, in a many-band SAR raster whose names do not
    say which band is which, lies :data:`~engine.inputs.levels.MIN_CO_CROSS_DB` or more under another band
    (median dB): it looks cross-polarised. Two unnamed bands (and an angle) are already ordered by their
    levels (:func:`choose_bands`); ``units``: the raster's, as decided (uncalibrated numbers are not judged)."""
    wanted = model_roles(bands, "sar")
    if not wanted or wanted[0] != "co":
        return None
    with rasterio.open(path) as src:
        count = src.count
    every = tuple(range(1, count + 1))
    if count < 2 or any(polarisations(path, every)) or (count in (2, 3) and unnamed_co_cross(path) is not None):
        return None
    medians = band_medians_db(path, every, units)
    read = bands.sar_bands[0]
    if medians is None or not 1 <= read <= count:
        return None
    brightest = int(np.nanargmax(medians)) + 1
    under = medians[brightest - 1] - medians[read - 1]
    if not under >= MIN_CO_CROSS_DB:
        return None
    return (f"SAR raster {Path(path).name} has {count} bands whose names do not say which is co-polarised (VV or HH); "
            f"band {read} is read as co-polarised, but it lies {under:.1f} dB under band {brightest} (medians), as a "
            "cross-polarised band does. Choose the co-polarised band: --sar-bands / SAR_BANDS, or tick it in the dock")
