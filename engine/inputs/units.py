"""Which units a raster's values are in, read from its metadata and its values, never assumed.

Optical rasters come as 8-bit display values, reflectance x 10000 (Sentinel-2, Landsat
surface reflectance), reflectance 0-1 or other digital numbers; SAR rasters as linear power
(sigma0 / gamma0), decibels, amplitude (the square root of power) or uncalibrated amplitude
digital numbers (Sentinel-1 GRD measurement files). Each decision says how it was made, in
plain words with the numbers behind it, and a user override always wins.

Linear power and calibrated amplitude cannot be told apart by the shape of their values
(amplitude speckle looks like power speckle with more looks), only by their level: read as
power, amplitude gives half the dB spread and a median near -6 dB instead of -12 dB. The
decision compares both readings with the backscatter of typical scenes and says when it is
unsure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from ..config import OPTICAL_FILL_AT_MOST, OPTICAL_FILL_TOP, OPTICAL_UNITS, SAR_FILL_BELOW, SAR_FILL_VALUES, SAR_UNITS
from ..raster.io import band_scaling
from .names import band_names

PathLike = Union[str, Path]
SAMPLE_SIDE = 512  # decimated read for detection: the units show at any scale
SAMPLE_BLOCKS = 32  # blocks read from a large tiled raster without overviews, spread over it
MIN_VALID_SAMPLE = 1000  # fewer valid values in those blocks: read the whole raster decimated

OPTICAL_LABELS = {
    "uint8": "8-bit values (0-255)",
    "reflectance10000": "reflectance x 10000",
    "reflectance": "reflectance (0-1)",
    "dn": "digital numbers of unknown scale",
    "custom": "custom linear scaling",
    "landsat_c2": "Landsat Collection 2 surface reflectance (x 2.75e-5 - 0.2)",
}
SAR_LABELS = {
    "linear": "linear power (sigma0/gamma0)",
    "db": "decibels",
    "amplitude": "amplitude (square root of power)",
    "dn": "uncalibrated amplitude digital numbers",
}

# Backscatter of typical mixed scenes, in dB as power: median and 2-98 % spread (measured on
# the real scenes in shared/data: co-polarised medians -11 to -13 dB, cross-polarised -16 to
# -21 dB, spreads 11 to 31 dB; docs/inputs.md). Used only to choose between power and
# amplitude for non-negative calibrated values; the polarisation comes from the band
# description or the file name when they name it.
TYPICAL_MEDIAN_DB = {"co": -12.0, "cross": -19.0, None: -14.0}
MEDIAN_SPREAD_DB = 5.0
TYPICAL_RANGE_DB, RANGE_SPREAD_DB = 18.0, 7.0
BRIGHT_SCENE_DARK_END = 5000.0  # 2nd percentile (file units) under which a bright uint16 scene is reflectance x 10000
# an optical sample mostly under 0 with a median under this is dB backscatter (reflectance dips a little under 0
# over dark water, after an offset: -0.01 in reflectance, -100 in reflectance x 10000 over a lake scene at most)
OPTICAL_NEGATIVE_MEDIAN = -1.0
UNSURE_MARGIN = 1.0  # score difference below which the choice is reported as unsure

_DB_WORDS = re.compile(r"(^|[^a-z])(db|decibels?)([^a-z]|$)")
_AMPLITUDE_WORDS = re.compile(r"(^|[^a-z])(amplitude|amp)([^a-z]|$)")
_LANDSAT_C2_WORDS = re.compile(r"(^|[^a-z0-9])l[cote]0[4-9]_l2s[pr]_|(^|[^a-z0-9])sr_b[1-7]([^0-9]|$)", re.IGNORECASE)
S2_ADD_OFFSET = -1000.0
"""Sentinel-2's BOA_ADD_OFFSET (L2A) and RADIO_ADD_OFFSET (L1C) since processing baseline 04.00."""
S2_OFFSET_BASELINE = 400
"""The first processing baseline (04.00, 25 January 2022) whose values carry the offset."""
_S2_BASELINE = re.compile(r"msil(?:1c|2a)_\d{8}t\d{6}_n(\d{4})_", re.IGNORECASE)
# an ESA band file's own name (``T33UUP_20230615T101031_B04_10m.jp2``), as copied out of a .SAFE or served
# by the Planetary Computer: ESA never harmonises, so one sensed from baseline 04.00 on carries the offset
_S2_BAND_FILE = re.compile(r"(?<![a-z0-9])t\d{2}[a-z]{3}_(\d{8})t\d{6}_b(?:\d{2}|8a)(?:_\d{2}m)?(?![a-z0-9])",
                           re.IGNORECASE)
S2_OFFSET_FROM = "20220125"
"""The day processing baseline 04.00 went into operation: every ESA product sensed since carries the offset."""
_SENTINEL2_WORDS = re.compile(r"msil1c|msil2a|(^|[^a-z0-9])s2[ab]_", re.IGNORECASE)
_POWER_WORDS = re.compile(r"(sigma0|sigma_0|gamma0|gamma_0|beta0|beta_0|intensity|linear|power)")


@dataclass
class UnitsDecision:
    """The units of one input and how they were found."""

    modality: str  # "optical" or "sar"
    units: str
    how: str  # "given" (override), "metadata" or "detected"
    reason: str
    unsure: bool = False
    offset_dn: float = 0.0  # optical: additive offset in file units (Sentinel-2 BOA_ADD_OFFSET)
    stats: Dict[str, float] = field(default_factory=dict)
    backscatter: Any = None  # SAR: the file's engine.inputs.backscatter.BackscatterDecision, once resolved

    def line(self, path: PathLike) -> str:
        """One line for logs, e.g. ``optical: reflectance (0-1) detected (99.5 % <= 0.41) in s2.tif``."""
        labels = OPTICAL_LABELS if self.modality == "optical" else SAR_LABELS
        name = "optical" if self.modality == "optical" else "SAR"
        how = "from metadata" if self.how == "metadata" else self.how
        text = f"{name}: {labels.get(self.units, self.units)} {how}"
        if self.reason:
            text += f" ({self.reason})"
        if self.unsure:
            parameter = "--optical-units / OPTICAL_UNITS" if self.modality == "optical" else "--sar-units / SAR_UNITS"
            text += f"; unsure: set {parameter} if this is wrong"
        text = f"{text} in {Path(path).name}"
        extra = self.backscatter.line() if self.backscatter is not None else ""
        return f"{text}; {extra}" if extra else text


def sample_pixels(path: PathLike, bands: Sequence[int], max_side: int = SAMPLE_SIDE) -> Tuple[np.ma.MaskedArray, Any]:
    """``(C, N)`` masked values of the same pixels in each band (about ``max_side``² of them), and the dtype.

    A decimated read of the whole raster, which uses the file's overviews when it has them;
    a large tiled file without overviews is sampled by :data:`SAMPLE_BLOCKS` of its own blocks
    instead, because a decimated read would decode every block (2.4 s for an 8192² pair here).
    """
    with rasterio.open(path) as src:
        missing = [b for b in bands if not 1 <= int(b) <= src.count]
        if missing:
            raise ValueError(
                f"{path}: band {missing[0]} does not exist; the raster has {src.count} band(s), "
                f"numbered 1..{src.count}"
            )
        dtype = np.dtype(src.dtypes[int(bands[0]) - 1])
        data = None if src.overviews(int(bands[0])) else _block_sample(src, [int(b) for b in bands], max_side)
        if data is None:
            scale = max(src.width, src.height) / max_side
            shape = (max(1, int(src.height / max(scale, 1))), max(1, int(src.width / max(scale, 1))))
            data = src.read(
                [int(b) for b in bands], out_shape=(len(bands),) + shape, resampling=Resampling.nearest, masked=True
            )
        scaling = band_scaling(src, [int(b) for b in bands])
    data = np.ma.masked_invalid(np.ma.asarray(data, dtype=np.float64).reshape(len(bands), -1))
    if scaling is not None:  # declared scale and offset: the values are read in the product's units
        data = data * scaling[0][:, None].astype(np.float64) + scaling[1][:, None].astype(np.float64)
        dtype = np.dtype(np.float32)
    return data, dtype


def sample_values(path: PathLike, bands: Sequence[int], max_side: int = SAMPLE_SIDE) -> Tuple[List[np.ndarray], Any]:
    """Valid values (nodata and NaN removed) of each band from about ``max_side``² pixels
    (:func:`sample_pixels`), and the dtype."""
    data, dtype = sample_pixels(path, bands, max_side)
    return [np.asarray(band.compressed()) for band in data], dtype


def _block_sample(src: Any, bands: List[int], max_side: int) -> Optional[np.ma.MaskedArray]:
    """(C, N) masked values of :data:`SAMPLE_BLOCKS` seeded blocks of a tiled raster, thinned to about
    ``max_side``² pixels; None for striped or small rasters, or when too few pixels are valid."""
    block_h, block_w = src.block_shapes[bands[0] - 1]
    rows, cols = -(-src.height // block_h), -(-src.width // block_w)
    if block_h == 1 or block_w >= src.width or rows * cols <= SAMPLE_BLOCKS:
        return None
    picked = np.sort(np.random.default_rng(0).choice(rows * cols, SAMPLE_BLOCKS, replace=False))
    step = max(1, int(np.ceil(np.sqrt(block_h * block_w * SAMPLE_BLOCKS / max_side**2))))
    parts = []
    for i in picked:
        row, col = divmod(int(i), cols)
        window = Window(col * block_w, row * block_h, min(block_w, src.width - col * block_w),
                        min(block_h, src.height - row * block_h))
        parts.append(src.read(bands, window=window, masked=True)[:, ::step, ::step].reshape(len(bands), -1))
    data = np.ma.concatenate(parts, axis=1)
    return data if int(np.ma.count(data, axis=1).min()) >= MIN_VALID_SAMPLE else None


def metadata_text(path: PathLike, bands: Sequence[int]) -> str:
    """Band descriptions, units and tags of the raster and its bands, lower case."""
    with rasterio.open(path) as src:
        parts = [str(v) for v in src.tags().values()] + [f"{k}" for k in src.tags()]
        names = band_names(src)
        for b in bands:
            parts += [names[b - 1], src.units[b - 1] or ""]
            parts += [f"{k} {v}" for k, v in src.tags(b).items()]
    return " ".join(parts).lower()


def _s2_offset(path: PathLike, bands: Sequence[int], names: str) -> Tuple[float, str]:
    """Sentinel-2 L2A/L1C additive offset (processing baseline >= 04.00) and where it was read: the file's
    ``BOA_ADD_OFFSET`` / ``RADIO_ADD_OFFSET`` tags, else the baseline of an ESA product name in the path (a band
    file inside its ``.SAFE`` folder) or the band names, else the sensing date of an ESA band file's own name.
    A date alone in another name does not say: harmonised collections (Earth Engine's ``S2_SR_HARMONIZED``,
    Earth Search's) have taken the offset off, and name their files otherwise. ``names``: the file's
    name and :func:`metadata_text`."""
    with rasterio.open(path) as src:
        tags = dict(src.tags())
        for b in bands:
            tags.update(src.tags(b))
    for key, value in tags.items():
        if "ADD_OFFSET" in key.upper():
            try:
                return float(value), f"offset {float(value):g} from the file's metadata ({key})"
            except ValueError:
                continue
    text = f"{Path(path).absolute()} {names}"
    if Path(path).suffix.lower() == ".vrt" and Path(path).is_file():  # its sources' paths: the band files in a .SAFE
        with open(path, encoding="utf-8", errors="replace") as vrt:
            text += vrt.read(1 << 20)
    found = _S2_BASELINE.search(text)
    if found:  # N9999: no baseline (BigEarthNet's names)
        if S2_OFFSET_BASELINE <= int(found.group(1)) < 9999:
            return S2_ADD_OFFSET, f"offset {S2_ADD_OFFSET:g}: processing baseline N{found.group(1)} in the product name"
        return 0.0, ""
    band_file = _S2_BAND_FILE.search(text)
    if band_file and band_file.group(1) >= S2_OFFSET_FROM:  # older ones may be either: reprocessed or not
        return S2_ADD_OFFSET, (f"offset {S2_ADD_OFFSET:g}: ESA band file {band_file.group(0)} sensed on or after "
                               "25 January 2022 (processing baseline 04.00)")
    return 0.0, ""


def _check_not_decibels(path: PathLike, bands: Sequence[int], values: List[np.ndarray]) -> None:
    """Refuse optical bands whose values are mostly negative: SAR backscatter in dB given as the optical
    image (surface reflectance dips under 0 only a little, over dark water, after an offset)."""
    pooled = np.concatenate(values) if values else np.empty(0)
    if pooled.size == 0:
        return
    negative, p50 = float((pooled < 0).mean()), float(np.median(pooled))
    if negative > 0.5 and p50 < OPTICAL_NEGATIVE_MEDIAN:
        raise ValueError(
            f"optical raster {Path(path).name}: {100 * negative:.0f} % of the values of band(s) {list(bands)} are "
            f"negative (median {p50:.3g}); no unit of reflectance is, but radar backscatter in dB is: that looks like "
            "SAR, not an optical image. Choose the optical raster (are the optical and SAR inputs swapped?)")


def detect_optical_units(path: PathLike, bands: Sequence[int], given: str = "auto") -> UnitsDecision:
    """Decide the units of an optical raster's bands.

    Rules: a given unit wins; 8-bit types are 8-bit values; a float raster whose 99.5th
    percentile is at most 1.6 holds reflectance 0-1 (a little above 1 for specular highlights);
    integers or floats up to 255 hold 8-bit values; integers named as a Landsat Collection 2
    Level-2 product (``LC09_L2SP_``, ``SR_B4`` in the file or band names) are its surface
    reflectance; larger values named as a Sentinel-2 product (``MSIL2A``, ``MSIL1C``,
    ``S2A_``/``S2B_``) whose 99.5th percentile is below 16000 are reflectance x 10000, however
    bright (snow); so are values whose median is below 6000 and 99.5th percentile below 16000,
    and brighter ones (snow, sand) whose non-zero values' 2nd percentile is below 5000 (reported
    unsure); anything else is digital numbers (unsure when its 99.5th percentile is below 16000:
    a pure snowfield reads like that).
    """
    if given not in OPTICAL_UNITS:
        raise ValueError(f"optical units must be one of {list(OPTICAL_UNITS)}, got {given!r}")
    values, dtype = sample_values(path, bands)
    values = [v[(v > OPTICAL_FILL_AT_MOST) & (v != OPTICAL_FILL_TOP)] for v in values]  # fills (-9999, 65535)
    _check_not_decibels(path, bands, values)
    names = f"{Path(path).name} {metadata_text(path, bands)}"
    offset, offset_why = _s2_offset(path, bands, names)
    if given != "auto":
        return UnitsDecision("optical", given, "given", "", offset_dn=offset if given == "reflectance10000" else 0.0)
    pooled = np.concatenate(values) if values else np.empty(0)
    if pooled.size == 0:
        raise ValueError(f"{path}: optical band(s) {list(bands)} hold no valid pixel (all nodata, NaN or fill values "
                         f"at or under {OPTICAL_FILL_AT_MOST:g})")
    p50, p995, top = (float(v) for v in np.percentile(pooled, [50, 99.5, 100]))
    positive = pooled[pooled > 0]  # a fill collar of zeros without a nodata value is not a dark end
    p2 = float(np.percentile(positive, 2)) if positive.size else 0.0
    stats = {"p2 of positives": p2, "median": p50, "p99.5": p995, "max": top}
    if dtype.itemsize == 1 and dtype.kind in "ui":
        return UnitsDecision("optical", "uint8", "detected", f"{dtype.name} data", stats=stats)
    if dtype.kind == "f" and p995 <= 1.6:
        why = f"float, 99.5 % of values <= {p995:.3g}"
        return UnitsDecision("optical", "reflectance", "detected", why, stats=stats)
    if top <= 255.5:
        return UnitsDecision("optical", "uint8", "detected", f"{dtype.name}, all values <= {top:.0f}", stats=stats)
    if _LANDSAT_C2_WORDS.search(names) and dtype.kind in "ui":
        why = f"{dtype.name}, a Landsat Collection 2 Level-2 product name in the file or band names"
        return UnitsDecision("optical", "landsat_c2", "metadata", why, stats=stats)
    if _SENTINEL2_WORDS.search(names) and p995 <= 16000:
        # a snow-covered Sentinel-2 scene has the median of digital numbers; its name says what it is
        why = f"{dtype.name}, a Sentinel-2 product name in the file or band names, 99.5 % <= {p995:.0f}"
        why += f", {offset_why}" if offset else ""
        return UnitsDecision("optical", "reflectance10000", "metadata", why, offset_dn=offset, stats=stats)
    if offset or (p50 < 6000 and p995 <= 16000):
        why = f"{dtype.name}, median {p50:.0f}, 99.5 % <= {p995:.0f}"
        if offset:
            why += f", {offset_why}"
        return UnitsDecision("optical", "reflectance10000", "detected", why, offset_dn=offset, stats=stats)
    if p995 <= 16000 and p2 < BRIGHT_SCENE_DARK_END:
        # a bright scene (snow, sand, haze) in reflectance x 10000: a high median, but a dark end
        # (forest, shadow, water) where reflectance has it; Landsat Collection 2 surface
        # reflectance (scale 2.75e-5, offset -0.2) starts at about 7,300
        why = f"{dtype.name}, median {p50:.0f} but 2 % <= {p2:.0f} and 99.5 % <= {p995:.0f}: a bright scene"
        return UnitsDecision("optical", "reflectance10000", "detected", why, unsure=True, stats=stats)
    return UnitsDecision(
        "optical", "dn", "detected", f"{dtype.name}, median {p50:.0f}: not a known reflectance scaling",
        unsure=p995 <= 16000, stats=stats,  # a snowfield in reflectance x 10000 also reads like this
    )


def polarisation_names(path: PathLike, bands: Sequence[int]) -> List[Optional[str]]:
    """``"vv"``, ``"vh"``, ``"hh"``, ``"hv"`` or None per band, from band names (``Sigma0_VV_db`` is VV;
    :func:`engine.inputs.names.band_names`), else the file name."""
    with rasterio.open(path) as src:
        every = band_names(src)
        names = [every[b - 1] for b in bands]
    if not any(names) and len(bands) == 1:
        names = [Path(path).stem]
    out: List[Optional[str]] = []
    for name in names:
        found = set(re.findall(r"(?:^|[^a-z])(vv|hh|vh|hv)(?:[^a-z]|$)", name.lower()))
        out.append(found.pop() if len(found) == 1 else None)
    return out


def polarisations(path: PathLike, bands: Sequence[int]) -> List[Optional[str]]:
    """``"co"``, ``"cross"`` or None per band (:func:`polarisation_names`)."""
    return [None if n is None else ("co" if n in ("vv", "hh") else "cross") for n in polarisation_names(path, bands)]


def _plausibility(values_db: List[np.ndarray], pols: Sequence[Optional[str]]) -> float:
    """Distance of the bands' median and 2-98 % spread (dB) from typical backscatter; lower is likelier."""
    score = 0.0
    for v, pol in zip(values_db, pols):
        p2, p50, p98 = np.percentile(v, [2, 50, 98])
        score += ((p50 - TYPICAL_MEDIAN_DB[pol]) / MEDIAN_SPREAD_DB) ** 2
        score += ((p98 - p2 - TYPICAL_RANGE_DB) / RANGE_SPREAD_DB) ** 2
    return score / max(len(values_db), 1)


def _power_or_amplitude(
    path: PathLike, bands: Sequence[int], values: List[np.ndarray]
) -> Tuple[float, float, Dict[str, float]]:
    """How unlike typical backscatter non-negative values are read as power and as amplitude
    (:func:`_plausibility`), and their median in dB each way."""
    positive = [np.maximum(v, 1e-10) for v in values if v.size]
    as_db = {"linear": [10.0 * np.log10(v) for v in positive], "amplitude": [20.0 * np.log10(v) for v in positive]}
    pols = polarisations(path, bands)
    if len(positive) == 2 and not any(pols):  # two unnamed bands: the brighter is co-polarised in either reading
        pols = ["co", "cross"] if np.median(positive[0]) >= np.median(positive[1]) else ["cross", "co"]
    medians = {u: float(np.median(np.concatenate(db))) for u, db in as_db.items()}
    return _plausibility(as_db["linear"], pols), _plausibility(as_db["amplitude"], pols), medians


def _metadata_units(text: str) -> Optional[str]:
    if _DB_WORDS.search(text):
        return "db"
    if _AMPLITUDE_WORDS.search(text):
        return "amplitude"
    if _POWER_WORDS.search(text):
        return "linear"
    return None


def _fill_zero_share(data: np.ma.MaskedArray, valid: int) -> float:
    """Share of the ``valid`` sampled values that are 0 at pixels where no band holds backscatter: a fill.
    A 0 beside another band's backscatter is a value under the noise floor
    (:func:`engine.preprocess.sar.missing_as_nan`)."""
    values = np.ma.filled(data, np.nan)  # (C, N)
    zero = values == 0
    if values.shape[0] > 1:
        signal = np.isfinite(values) & (values != 0) & (values >= SAR_FILL_BELOW)
        zero &= ~signal.any(axis=0)
    return float(zero.sum() / max(valid, 1))


def _infinite_share(path: PathLike, data: np.ma.MaskedArray) -> Dict[str, float]:
    """The share of the sampled values that are +inf: read as missing, like NaN, but nobody writes them on
    purpose (an overflow, a division by zero), so they are worth a word. (-inf dB is a zero intensity:
    :func:`engine.preprocess.sar.missing_as_nan` decides whether it is a fill or the darkest level.)"""
    with rasterio.open(path) as src:
        if src.nodata is not None and np.isposinf(src.nodata):  # declared: nothing to say
            return {"posinf_share": 0.0}
    raw = np.ma.getdata(data)
    return {"posinf_share": float(np.isposinf(raw).sum() / max(raw.size, 1))}


def detect_sar_units(path: PathLike, bands: Sequence[int], given: str = "auto") -> UnitsDecision:
    """Decide the units of a SAR raster's bands.

    Rules: a given unit wins; then values decide what they can: more than 5 % negative values
    can only be decibels. Non-negative values are checked against the file's metadata (band
    descriptions, units, tags naming dB, amplitude, sigma0/gamma0/intensity); integer types and
    values far above 1 (median > 5) are uncalibrated amplitude numbers; otherwise the reading
    as power or as amplitude that looks more like typical backscatter wins.
    """
    if given not in SAR_UNITS:
        raise ValueError(f"SAR units must be one of {list(SAR_UNITS)}, got {given!r}")
    data, dtype = sample_pixels(path, bands)
    values = [np.asarray(band.compressed()) for band in data]
    every = np.concatenate(values) if values else np.empty(0)
    below = np.unique(every[every < SAR_FILL_BELOW])
    fills = below.size <= SAR_FILL_VALUES  # a few constants (-9999) stand for missing data; many values are data
    if fills:
        values = [v[v >= SAR_FILL_BELOW] for v in values]
    pooled = np.concatenate(values) if values else np.empty(0)
    if pooled.size == 0:
        raise ValueError(f"{path}: SAR band(s) {list(bands)} hold no valid pixel (all nodata, NaN or fill values "
                         f"under {SAR_FILL_BELOW:g})")
    negative = float((pooled < 0).mean())
    p50 = float(np.median(pooled))
    stats = {"negative_share": negative, "median": p50, "zero_share": _fill_zero_share(data, pooled.size),
             "fills_missing": fills, "fill_share": float((every < SAR_FILL_BELOW).mean()) if fills else 0.0,
             "fill_value": float(below.min()) if below.size else 0.0, **_infinite_share(path, data)}
    if given in ("linear", "amplitude", "dn") and negative > 0.05:
        raise ValueError(
            f"SAR {Path(path).name} was given as {SAR_LABELS[given]}, but {100 * negative:.0f} % of its values are "
            f"negative (median {p50:.3g}); {SAR_LABELS[given]} never is, backscatter in dB mostly is. Set the SAR "
            "units to db or auto (SAR_UNITS / --sar-units)")
    if given in ("linear", "amplitude"):  # given, but judged too: read the other way, the 0 % water of a slip
        s_power, s_amplitude, medians = _power_or_amplitude(path, bands, values)
        scores = {"linear": s_power, "amplitude": s_amplitude}
        other = "amplitude" if given == "linear" else "linear"
        if scores[given] - scores[other] > UNSURE_MARGIN:  # as sure as a detection that is not called unsure
            stats.update(likelier_units=other, median_db_as_given=medians[given], median_db_as_likelier=medians[other])
    if given != "auto":
        return UnitsDecision("sar", given, "given", "", stats=stats)
    if negative > 0.05:
        return UnitsDecision("sar", "db", "detected", f"{100 * negative:.0f} % of values are negative", stats=stats)
    hint = _metadata_units(metadata_text(path, bands))
    if hint is not None:
        if hint == "db":  # said dB, but no negative values: report, the shift check warns
            return UnitsDecision("sar", "db", "metadata", "the band metadata names dB", stats=stats)
        return UnitsDecision("sar", hint, "metadata", f"the band metadata names {SAR_LABELS[hint]}", stats=stats)
    if dtype.kind in "ui" or p50 > 5.0:
        return UnitsDecision(
            "sar", "dn", "detected",
            f"{dtype.name}, non-negative, median {p50:.3g}: not calibrated backscatter", stats=stats,
        )
    s_power, s_amplitude, median_db = _power_or_amplitude(path, bands, values)
    units = "linear" if s_power <= s_amplitude else "amplitude"
    stats.update(power_score=s_power, amplitude_score=s_amplitude, median_db=median_db[units])
    reason = f"non-negative; read as {SAR_LABELS[units].split(' (')[0]} the median is {median_db[units]:.1f} dB"
    return UnitsDecision(
        "sar", units, "detected", reason, unsure=abs(s_power - s_amplitude) < UNSURE_MARGIN, stats=stats
    )
