"""Scene statistics and the domain-shift warning: a scene far from what a model was trained on.

Statistics are taken from the feature values the networks' normalisation starts from
(reflectance-like optical values; SAR in dB after the speckle filter), on the bounded sample
that also gives a scene's percentiles. A model stores the same statistics of its training
data, so a run can say in plain words, with the numbers and the parameter to set, when a
band is constant, saturated, mostly clipped by the model's range, or far from the training
data's level.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import rasterio

from ..config import SAR_FILL_BELOW, NormalizationRecord

PathLike = Union[str, Path]

CLIPPED_SHARE = 0.3  # warn when this share of a band falls outside a fixed range at one end
STUCK_SHARE = 0.25  # warn when this share of a band sits on its minimum or maximum value
# fewer valid optical pixels than one 256 x 256 tile: the per-scene stretch then describes the
# clip, not the scene (docs/experiments/zero_shot_real.md, "Small clips")
SMALL_CLIP_PIXELS = 256 * 256
# surface reflectance read in a fixed range: every band's 2nd percentile above this is rare
# outside snow and desert, and is what Sentinel-2's +1000 offset (baseline 04.00) looks like
BRIGHT_DARK_END = 0.1
SAR_MEDIAN_SHIFT_DB = 8.0  # warn when a SAR band's median is this far from training's
DB_MEDIAN_POSSIBLE = (-60.0, 40.0)  # a median outside, read as dB, is no radar's backscatter
# top-of-atmosphere reflectance: path reflectance lifts the darkest pixels, most in blue, least in red;
# surface reflectance products keep dark water, shadow and forest near 0.01-0.03 in blue
# (2nd percentiles, docs/experiments/zero_shot_real.md, "8-bit pictures of snow": 0.010-0.021 on three
# L2A chips, about 0.08-0.09 on their hazy copies and on a real L1C chip); above 0.25 it is snow or cloud
TOA_BLUE_DARK_END = (0.045, 0.25)
# every visible band's median at least this: a scene mostly of snow or cloud, whose dark end is forest and
# shadow lit by blue skylight (a real snowy L2A chip: dark end blue 0.18, green 0.14, red 0.13; medians
# 0.64-0.72), so neither the haze nor the +1000 offset can be read from it
SNOW_OR_CLOUD_MEDIAN = 0.4
DISPLAY_TOP = 254.5 / 255  # an 8-bit value of 255, as the reflectance-like feature the chain makes of it
ZERO_FILL_SHARE = 0.01  # warn when this share of linear / amplitude SAR values is exactly 0 (fill, not data)


def band_stats(table: np.ndarray, bands: Sequence[int]) -> List[Dict[str, float]]:
    """Per band: valid count, 2/50/98 % quantiles, min, max and the shares on min and on max."""
    out = []
    for i, band in enumerate(bands):
        v = table[i][np.isfinite(table[i])]
        if v.size == 0:
            out.append({"band": int(band), "n": 0})
            continue
        lo, hi = float(v.min()), float(v.max())
        p2, p50, p98 = (float(x) for x in np.percentile(v, [2, 50, 98]))
        out.append(
            {
                "band": int(band),
                "n": int(v.size),
                "p2": p2,
                "p50": p50,
                "p98": p98,
                "min": lo,
                "max": hi,
                "share_at_min": float((v == lo).mean()),
                "share_at_max": float((v == hi).mean()),
                "share_negative": float((v < 0).mean()),
            }
        )
    return out


def _constant(b: Dict[str, float]) -> bool:
    return b["max"] - b["min"] <= 1e-6 * max(1.0, abs(b["max"]))


def sar_only_problem(stats: List[Dict[str, Any]], path: str, units: str = "",
                     raw: Optional[Dict[str, float]] = None) -> Optional[str]:
    """Why a map from this SAR alone would say nothing (a band without valid pixels, or constant, or
    decibels no radar measures), or None. A SAR-only water map refuses such input: with optical
    beside it, a model still sees something, and the run only warns. ``raw``: the file's own values'
    statistics (``median``)."""
    median = (raw or {}).get("median")
    if units == "db" and median is not None and not DB_MEDIAN_POSSIBLE[0] <= median <= DB_MEDIAN_POSSIBLE[1]:
        return (f"SAR {path} is read as dB, but its median is {median:.4g} dB; radar backscatter lies between about "
                "-50 and +30 dB. If a fill value (-9999, for instance) marks missing data, set the raster's nodata "
                "value; if the values are scaled (dB x 100 or x 10 in integers), divide them (Raster Calculator); "
                "otherwise give the true units (SAR_UNITS / --sar-units)")
    for b in stats:
        name = f"SAR band {b['band']} of {path}"
        if not b.get("n"):
            all_zero = (raw or {}).get("zero_share") == 1
            zeros = " (all its values are exactly 0, read as missing data)" if all_zero else ""
            return (f"{name} has no valid pixel in the sampled area{zeros}: nothing can be mapped from it; check the "
                    "band choice and its nodata value")
        if b["n"] < 2:
            return f"{name} holds a single valid pixel: too little to map; give a larger raster"
        if _constant(b):
            return (f"{name} is constant ({b['max']:.4g} dB everywhere): no water can be mapped from it. If 0 (or "
                    "another value) marks missing data, set the raster's nodata value (Layer Properties > "
                    "Transparency, or gdal_translate -a_nodata); otherwise choose another SAR band or raster")
    return None


def optical_problem(stats: List[Dict[str, Any]], path: str) -> Optional[str]:
    """Why an optical image would tell the model nothing (every band empty or only zeros), or None. Such an
    image is refused: the model would classify land cover from zeros, and say it used the optical image."""
    empty = [b["band"] for b in stats if not b.get("n") or (_constant(b) and b["max"] == 0)]
    if not stats or len(empty) < len(stats):
        return None
    return (f"optical raster {path}: its band(s) {empty} hold only zeros or no valid pixel in the sampled area, so "
            "no optical information would reach the model. Check the band choice and the raster's nodata value, "
            "or map from the SAR alone with a SAR-only model (the bundled sgcad_student_sar_only.safetensors)")


def _top_of_atmosphere(stats: List[Dict[str, float]], roles: Sequence[str]) -> Optional[str]:
    """The blue, green and red dark ends (2nd percentiles) as text when they show path reflectance."""
    ends = {role: b.get("p2") for role, b in zip(roles, stats) if b.get("n")}
    if not all(ends.get(role) is not None for role in ("blue", "green", "red")):
        return None
    blue, green, red = ends["blue"], ends["green"], ends["red"]
    if TOA_BLUE_DARK_END[0] <= blue <= TOA_BLUE_DARK_END[1] and blue > green > red:
        return f"blue {blue:.3f}, green {green:.3f}, red {red:.3f}"
    return None


def snow_or_cloud(stats: List[Dict[str, float]], units: str, fixed_reflectance: bool) -> str:
    """Why the optical scene is mostly snow or cloud, or "" when it is not known to be: reflectance whose every
    visible band's median is at least :data:`SNOW_OR_CLOUD_MEDIAN`, or an 8-bit picture whose every band's median
    is 255 (more than half of it clipped white). An unsaturated picture's brightness is a display choice: never."""
    medians = [b["p50"] for b in stats if b.get("n")]
    if not medians:
        return ""
    if fixed_reflectance and min(medians) >= SNOW_OR_CLOUD_MEDIAN:
        return f"every visible band's median is at least {SNOW_OR_CLOUD_MEDIAN:g} reflectance"
    if units == "uint8" and min(medians) >= DISPLAY_TOP:
        return "more than half of every band is 255, white"
    return ""


def optical_warnings(
    stats: List[Dict[str, float]], path: str, read_whole: bool = False, fixed_reflectance: bool = False,
    units: str = "", roles: Sequence[str] = (),
) -> List[str]:
    """Constant, all-zero and saturated optical bands (values are reflectance-like), a clip too
    small for its own contrast stretch, and reflectance with no dark end.

    ``read_whole``: the sample holds every pixel of the raster, so its counts are the raster's own
    (a sparse sample of a large, mostly empty raster says nothing about the clip's size).
    ``fixed_reflectance``: the values are read in a fixed reflectance range, so an additive
    offset brightens the whole input (a per-raster stretch would cancel it).
    ``units``: the file's resolved units; 8-bit values at 255 are named as saturated white.
    ``roles``: the model's name for each band (``red``, ``green``, ``blue`` ...), in ``stats``' order.
    """
    out = []
    medians = [b["p50"] for b in stats if b.get("n")]
    bright = fixed_reflectance and bool(snow_or_cloud(stats, units, fixed_reflectance))
    fixed_reflectance = fixed_reflectance and not bright
    if bright:
        out.append(
            f"optical {path} is bright in every visible band (medians {', '.join(f'{m:.2f}' for m in medians)} "
            "reflectance): a scene mostly of snow or cloud. Under snow the SAR water expert reads frozen ground "
            "and wet snow as water (46 % of the project's real snowy sample): its water probability and the "
            "answers where the optical is missing are not to be trusted there. With a water teacher the class map's "
            "water stands only where the teacher and the student both say water, and where a NIR band allows it. "
            "Mark cloud with a cloud mask (--cloud-mask / CLOUD_MASK)."
        )
    toa = _top_of_atmosphere(stats, roles) if fixed_reflectance else None
    if toa:
        out.append(
            f"optical {path} looks like top-of-atmosphere reflectance (a Sentinel-2 L1C or another product "
            f"without atmospheric correction): its darkest 2 % are brightest in blue and least bright in red "
            f"({toa}), the haze of the air above, where surface reflectance keeps dark water, shadow and forest "
            "near 0.01-0.03 in blue. The model learnt surface reflectance: hazy vegetation can be called water "
            "(33-80 % of three hazy pasture chips). Give the surface-reflectance product (Sentinel-2 L2A, Landsat "
            "Level-2) or correct the image first (for instance DOS1 in the Semi-Automatic Classification Plugin)."
        )
    valid = max((b["n"] for b in stats), default=0)
    dark_ends = [b["p2"] for b in stats if b.get("n")]
    if fixed_reflectance and dark_ends and min(dark_ends) >= BRIGHT_DARK_END:
        out.append(
            f"optical {path}: no band has 2 % of its pixels darker than {BRIGHT_DARK_END:g} reflectance (2nd "
            f"percentiles {', '.join(f'{v:.3f}' for v in dark_ends)}). Outside snow, cloud and desert a scene "
            "nearly always has darker water, shadow or forest. If this is a Sentinel-2 product of processing "
            "baseline 04.00 or later (from January 2022), every value carries +1000 and the file does not say "
            "so: subtract 1000 (Raster Calculator), use a harmonised product, or keep the product's name with "
            "its baseline (..._N0400_... or later) or ESA's band file name (T33UUP_20230615T101031_B04_10m) in "
            "the file or folder name, which is then read; the model reads reflectance in a fixed range, so the "
            "offset brightens the whole map."
        )
    if read_whole and 0 < valid < SMALL_CLIP_PIXELS:
        out.append(
            f"optical {path} is a small clip ({valid:,} valid pixels): its contrast stretch (2-98 % percentiles) "
            "comes from this clip alone, so the classes depend on where it was cut. For a steadier map, "
            "give the whole scene instead and limit segmentation with an area of interest (AOI): the "
            "stretch then comes from the whole raster."
        )
    for b in stats:
        name = f"optical band {b['band']} of {path}"
        if b["n"] == 0:
            out.append(f"{name} has no valid pixel in the sampled area; check the band choice and its nodata value.")
        elif _constant(b) and b["max"] == 0:
            out.append(
                f"{name} holds only zeros ({b['n']} sampled pixels): the network gets no optical information "
                "from it; check the band choice, or set the raster's nodata value if 0 marks missing data."
            )
        elif units == "uint8" and b["max"] >= DISPLAY_TOP and b["share_at_max"] > STUCK_SHARE:
            out.append(
                f"{name}: {100 * b['share_at_max']:.0f} % of valid pixels are at 255, the top of the 8-bit range: "
                "surfaces brighter than the picture's range (snow, cloud, bright roofs), read as the brightest "
                "white. If 255 marks missing data instead, set the raster's nodata value to 255; a product in "
                "reflectance (Sentinel-2 L2A, Landsat Level-2) keeps snow's brightness and is read better."
            )
        elif _constant(b):
            out.append(
                f"{name} is constant (every sampled pixel is {b['max']:.4g}): the network gets no information "
                "from it; choose another band (OPTICAL_BANDS / --optical-bands)."
            )
        else:
            for end, share in (("maximum", b["share_at_max"]), ("minimum", b["share_at_min"])):
                if share > STUCK_SHARE:
                    value = b["max"] if end == "maximum" else b["min"]
                    out.append(
                        f"{name}: {100 * share:.0f} % of valid pixels equal its {end} {value:.4g} (saturated or "
                        "fill values); set the raster's nodata value if they mark missing data."
                    )
    return out


def more_than_8_bits(path: PathLike, bands: Sequence[int]) -> bool:
    """Whether every band of ``bands`` is stored in more than 8 bits: there an exact 0 is a fill, while an
    8-bit picture may quantise dark ground or water to 0 (optical pixels 0 in every band, linear SAR)."""
    with rasterio.open(path) as src:
        return all(np.dtype(src.dtypes[b - 1]).itemsize > 1 for b in bands)


def optical_zeros_are_missing(path: PathLike, bands: Sequence[int]) -> bool:
    """Whether an optical pixel 0 in every band is a fill: in files of more than 8 bits, and in Sentinel-2's
    8-bit true-colour image (``..._TCI_10m.jp2``), whose product specification makes 0 its no-data value."""
    return more_than_8_bits(path, bands) or bool(re.search(r"(?<![a-z0-9])tci(?![a-z])", Path(path).name.lower()))


def zeros_are_missing(path: PathLike, bands: Sequence[int], units: str) -> bool:
    """Whether exact 0s of this SAR file covering an area are a fill, read as missing data
    (:func:`engine.preprocess.sar.missing_as_nan` keeps a lone 0 among values): in linear power, amplitude or
    digital numbers stored in more than 8 bits no surface returns exactly nothing, while Sentinel-1 GRD
    borders and exports without a nodata value hold 0 (read as power, the darkest surface: open water).
    An 8-bit picture may quantise dark water to 0, so there 0 stays a value (and is warned about). In float
    dB, 0 dB is a bright value, but never exactly over an area: SNAP writes 0 where a dB band has no data."""
    if units == "db":
        with rasterio.open(path) as src:
            return all(np.dtype(src.dtypes[b - 1]).kind == "f" for b in bands)
    return units in ("linear", "amplitude", "dn") and more_than_8_bits(path, bands)


def zero_fill_warning(path: str, units: str, raw: Optional[Dict[str, float]], missing: bool = False) -> Optional[str]:
    """A warning when many linear / amplitude SAR values are exactly 0 without a nodata value (a fill);
    ``missing``: they are read as missing data (:func:`zeros_are_missing`)."""
    zeros = (raw or {}).get("zero_share", 0.0)
    if units not in ("linear", "amplitude", "dn", "db") or zeros < ZERO_FILL_SHARE or (units == "db" and not missing):
        return None
    if missing and units == "db":
        return (f"SAR {path}: {100 * zeros:.1f} % of its values are exactly 0 dB and no nodata value marks them; "
                "0 dB is bright backscatter but never exactly the same over an area, so where they cover one in "
                "every band they are read as missing data (SNAP writes 0 where a dB band has no data) and mapped "
                "as nodata. Set the raster's nodata value to 0 to say so and silence this "
                "(gdal_translate -a_nodata 0).")
    if missing:
        return (f"SAR {path}: {100 * zeros:.1f} % of its values are exactly 0 and no nodata value marks them; in "
                f"{units} units no surface returns exactly nothing, so where they cover an area in every band they "
                "are read as missing data (a Sentinel-1 scene's no-data border is often stored as 0) and mapped as "
                "nodata, while a 0 among backscatter (thermal noise removal over calm water) is read as the darkest "
                "level. Set the raster's nodata value to 0 to say every 0 is missing and silence this "
                "(gdal_translate -a_nodata 0).")
    return (f"SAR {path}: {100 * zeros:.1f} % of its values are exactly 0 and no nodata value marks them. In "
            f"{units} units 0 means no backscatter at all, so those pixels read as the darkest surface, open "
            "water; a Sentinel-1 scene's no-data border is often stored as 0. If 0 marks missing data, set the "
            "raster's nodata value to 0 (Layer Properties > Transparency, or gdal_translate -a_nodata 0).")


def fill_value_warning(path: str, raw: Optional[Dict[str, float]]) -> Optional[str]:
    """A warning when SAR values under ``SAR_FILL_BELOW`` (-9999 ...) stand in for missing data without a
    nodata value; they are read as missing (:func:`engine.preprocess.sar.missing_as_nan`)."""
    share = (raw or {}).get("fill_share", 0.0)
    if share < ZERO_FILL_SHARE:
        return None
    return (f"SAR {path}: {100 * share:.1f} % of its values are under {SAR_FILL_BELOW:g} (down to "
            f"{raw['fill_value']:.6g}) and no nodata value marks them; no radar measures backscatter there, so "
            "they are read as missing data and mapped as nodata. Set the raster's nodata value to say so and "
            "silence this (gdal_translate -a_nodata).")


def infinite_value_warning(path: str, raw: Optional[Dict[str, float]]) -> Optional[str]:
    """A warning when SAR values are +inf: no backscatter is, so they are mapped as nodata, and they say the
    processing that made the file went wrong somewhere."""
    share = (raw or {}).get("posinf_share", 0.0)
    if share <= 0:
        return None
    shown = f"{100 * share:.1f} %" if share >= 0.001 else "under 0.1 %"  # a few pixels are not "0.0 %"
    return (f"SAR {path}: {shown} of its sampled values are +inf (an overflow or a division by zero "
            "in the processing that made the file). No backscatter is infinite, so those pixels are read as "
            "missing data and mapped as nodata; write them as nodata to silence this.")


def sar_warnings(
    stats: List[Dict[str, float]],
    path: str,
    units: str,
    record: Optional[NormalizationRecord],
    trained: Optional[Dict[str, Any]],
    fixed: bool,
    raw: Optional[Dict[str, float]] = None,
    zeros_missing: bool = False,
) -> List[str]:
    """Zeros without nodata, constant bands, dB values that are not dB, clipping by a fixed range, a
    shifted level.

    ``raw`` holds the file's own values' statistics (``negative_share``, ``median``, ``zero_share``),
    which say whether values read as dB can be dB, and whether zeros fill missing data.
    """
    out = [w for w in (zero_fill_warning(path, units, raw, zeros_missing), fill_value_warning(path, raw),
                       infinite_value_warning(path, raw)) if w]
    trained_bands = (trained or {}).get("bands", [])
    for i, b in enumerate(stats):
        name = f"SAR band {b['band']} of {path}"
        if b["n"] == 0:
            out.append(f"{name} has no valid pixel in the sampled area; check the band choice and its nodata value.")
            continue
        if _constant(b):
            out.append(f"{name} is constant ({b['max']:.4g} dB everywhere): the networks get no SAR information.")
            continue
        if units == "db" and raw and raw.get("negative_share", 1.0) < 0.05:
            out.append(
                f"{name} is read as dB, but {100 * raw['negative_share']:.0f} % of its values are negative "
                f"(median {raw['median']:.3g}): backscatter in dB is mostly negative, so these look like linear "
                "power or amplitude values; set the SAR units to auto, linear or amplitude "
                "(SAR_UNITS / --sar-units)."
            )
        if fixed and record is not None and i < len(record.bands):
            low, high = record.bands[i].p_low, record.bands[i].p_high
            below, above = b.get("share_below_range", 0.0), b.get("share_above_range", 0.0)
            for share, side, edge in ((below, "below", low), (above, "above", high)):
                if share > CLIPPED_SHARE:
                    out.append(
                        f"{name}: {100 * share:.0f} % of pixels are {side} {edge:.1f} dB, the model's range "
                        f"[{low:.1f}, {high:.1f}] dB, and reach the network clipped; if the file is not calibrated "
                        "backscatter, set its units or calibration constant (SAR_UNITS / --sar-units, "
                        "--sar-calibration)."
                    )
        if i < len(trained_bands) and "p50" in trained_bands[i]:
            message = _level_shift(name, b, trained_bands[i])
            if message:
                out.append(message)
    return out


def _level_shift(name: str, b: Dict[str, float], t: Dict[str, float]) -> Optional[str]:
    """A band whose median is far from the training data's, said in the words that fit the direction.

    A scene mostly under open water has a dark median too. When its bright end still reaches the
    training data's land (p98 at or above the training median), the level is right and only the
    mix of surfaces differs: nothing is said. A dark scene without that bright end may be a flood
    or a calibration error; the message names both.
    """
    shift = b["p50"] - t["p50"]
    if abs(shift) <= SAR_MEDIAN_SHIFT_DB or (shift < 0 and b["p98"] >= t["p50"]):
        return None
    head = (f"{name}: median {b['p50']:.1f} dB, while the model's training data had {t['p50']:.1f} dB "
            f"(2-98 %: {t['p2']:.1f} to {t['p98']:.1f} dB)")
    if shift < 0 and b["p50"] >= t["p2"]:
        return (f"{head}, and its brightest 2 % only reach {b['p98']:.1f} dB. If open water covers most of this "
                "scene, that is expected; if not, check the SAR units and calibration (SAR_UNITS / --sar-units, "
                "--sar-calibration): a wrong constant darkens every pixel.")
    return (f"{head}; its answers may be unreliable. Check the SAR units and band (a cross-polarised band where "
            "the model expects co-polarised is 6-10 dB darker).")


def add_range_shares(stats: List[Dict[str, float]], table: np.ndarray, record: NormalizationRecord) -> None:
    """Add the shares of each band's sample below and above the record's range (in place)."""
    for i, b in enumerate(stats):
        if i >= len(record.bands) or b["n"] == 0:
            continue
        v = table[i][np.isfinite(table[i])]
        b["share_below_range"] = float((v < record.bands[i].p_low).mean())
        b["share_above_range"] = float((v > record.bands[i].p_high).mean())
