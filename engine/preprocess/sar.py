"""SAR feature chain: calibration, incidence-angle normalisation, Lee filter, decibels.

Robust normalisation is separate (:mod:`.normalize`) because its percentiles come from the
whole raster, not from the array at hand.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np
from scipy import ndimage

from ..config import SAR_BACKSCATTER, SAR_FILL_BELOW, SarPreprocessConfig

GAMMA0_INCIDENCE_DEG = 37.0
"""Incidence angle at which gamma nought is brought to sigma nought (:mod:`engine.inputs.backscatter`):
the middle of Sentinel-1's IW swath (29-46 degrees); at its edges the error is -0.4 / +0.6 dB."""


def box_sum(values: np.ndarray, size: int) -> np.ndarray:
    """Sum over a ``size`` x ``size`` window centred on each pixel of the last two axes; zeros
    outside the array. The dtype is kept.

    Sums shifted slices in a fixed order per pixel instead of a running sum, so a pixel's
    result depends only on its own neighbourhood and is bit-identical whether the array is
    processed whole or in windows with a halo.
    """
    r = size // 2
    padded = np.pad(values, [(0, 0)] * (values.ndim - 2) + [(r, r), (r, r)])
    h, w = values.shape[-2:]
    rows = padded[..., 0:h, :].copy()
    for k in range(1, size):
        rows += padded[..., k : k + h, :]
    out = rows[..., 0:w].copy()
    for k in range(1, size):
        out += rows[..., k : k + w]
    return out


def _inside_counts(h: int, w: int, size: int) -> np.ndarray:
    """``box_sum`` of an all-ones (h, w) array, from the per-axis counts (exact small integers)."""
    r = size // 2

    def counts(n: int) -> np.ndarray:
        i = np.arange(n)
        return (np.minimum(i + r, n - 1) - np.maximum(i - r, 0) + 1).astype(np.float32)

    return np.outer(counts(h), counts(w))


def lee_filter(img: np.ndarray, window: int = 7, looks: float = 1.0) -> np.ndarray:
    """Lee speckle filter on linear intensity, ignoring NaN in the window statistics.

    With local mean m and variance v over the valid pixels of the window,
    Ci = sqrt(v) / m and Cu = 1 / sqrt(looks), the weight W = clip(1 - Cu^2 / Ci^2, 0, 1)
    blends the local mean (W = 0, homogeneous area) with the pixel itself (W = 1, edges,
    point targets). NaN pixels stay NaN; pixels outside the array count as missing.

    Args:
        img: (H, W) or (C, H, W) linear intensity; NaN marks nodata.
        window: odd window size.
        looks: equivalent number of looks L of the data.

    Returns:
        float32 array of the input's shape.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"Lee window must be an odd positive size, got {window}")
    if looks <= 0:
        raise ValueError(f"number of looks must be positive, got {looks}")
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 3:
        return np.stack([lee_filter(b, window, looks) for b in arr])
    if arr.ndim != 2:
        raise ValueError(f"Lee filter expects a (H, W) or (C, H, W) array, got shape {arr.shape}")
    # float32 throughout (half the memory traffic of float64): the window sums of at most 49-121
    # values keep the variance to about 1e-6 of the mean square, far below the speckle's.
    valid = np.isfinite(arr)
    all_valid = bool(valid.all())
    x0 = arr if all_valid else np.where(valid, arr, np.float32(0.0))
    sums = box_sum(np.stack([x0, x0 * x0]), window)  # one pass for both moments
    n = _inside_counts(*arr.shape, window) if all_valid else box_sum(valid.astype(np.float32), window)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mean = sums[0] / n
        var = np.maximum(sums[1] / n - mean * mean, np.float32(0.0))
        ci2 = var / (mean * mean)
        weight = np.clip(np.float32(1.0) - np.float32(1.0 / looks) / ci2, np.float32(0.0), np.float32(1.0))
    weight = np.where(np.isfinite(weight), weight, np.float32(0.0))  # flat or zero-mean window: keep the mean
    out = mean + weight * (x0 - mean)
    if not all_valid:
        out[~valid] = np.nan
    return out.astype(np.float32, copy=False)


def _needs_linear(cfg: SarPreprocessConfig) -> bool:
    """dB input must go back to linear power for any step other than staying in dB."""
    return cfg.lee_filter or cfg.incidence_normalize or not cfg.to_db


def _constants(cfg: SarPreprocessConfig, bands: int) -> np.ndarray:
    values = cfg.calibration_constants or (cfg.calibration_constant,) * bands
    if len(values) != bands or min(values) <= 0:
        raise ValueError(
            f"SAR units 'dn' need a positive calibration constant per band (power = DN**2 / constant); "
            f"got {list(values)} for {bands} band(s): give the product's constant or let the units be detected"
        )
    return np.asarray(values, dtype=np.float32).reshape(-1, 1, 1)


def sar_steps(cfg: SarPreprocessConfig) -> List[str]:
    """Names of the feature steps ``cfg`` applies after the conversion to linear power, as stored
    in a normalisation record (the conversion belongs to each file and is reported per run)."""
    steps = []
    if cfg.incidence_normalize:
        src = f"band {cfg.incidence_band}" if cfg.incidence_band else f"{cfg.incidence_angle_deg} deg"
        steps.append(f"incidence({src})")
    if cfg.lee_filter:
        steps.append(f"lee(window={cfg.lee_window},looks={cfg.lee_looks:g})")
    if cfg.to_db:
        steps.append("db")
    return steps


def gamma0_to_sigma0_factor(convention: str) -> float:
    """The linear power factor that brings a raster of this resolved backscatter to sigma nought
    (``SarPreprocessConfig.backscatter``; "auto", never resolved by the input contract, is read as it is)."""
    if convention == "gamma0":
        return float(np.cos(np.deg2rad(GAMMA0_INCIDENCE_DEG)))
    if convention in ("sigma0", "auto"):
        return 1.0
    raise ValueError(f"SAR backscatter must be one of {list(SAR_BACKSCATTER)}, got {convention!r}")


FILL_AREA_HALO = 2
"""Context pixels the fill test's 3 x 3 opening needs: a fill strip cut by a window's edge stays a fill."""


def missing_as_nan(x: np.ndarray, cfg: SarPreprocessConfig) -> np.ndarray:
    """Raw SAR values that are fills, not backscatter, as NaN: anything under :data:`SAR_FILL_BELOW`
    (-9999, -inf dB) where ``cfg.fill_is_nodata`` says so, and exact zeros (0 dB in float dB) where
    ``cfg.zero_is_nodata`` does.

    A fill marks a pixel missing in every band, over an area. Where another band of the (C, H, W) pixel holds
    backscatter, or where the pixels around it do (3 x 3), such a value is backscatter under the noise floor
    instead: thermal noise removal sets VH over calm water to 0 (-inf in dB), speckled among small values,
    while VV is there. It is kept, and reads as the darkest level.
    """
    zeros = cfg.zero_is_nodata and cfg.units in ("linear", "amplitude", "dn", "db")
    if not (cfg.fill_is_nodata or zeros):
        return x
    fill = x < np.float32(SAR_FILL_BELOW) if cfg.fill_is_nodata else np.zeros(x.shape, bool)
    if zeros:
        fill |= x == 0  # a no-data border, not the darkest water
    if not fill.any():
        return x
    if x.ndim == 3:
        missing = (fill | np.isnan(x)).all(axis=0)
        area = ndimage.maximum_filter(ndimage.minimum_filter(missing, size=3, mode="nearest"), size=3, mode="nearest")
        fill &= (area & missing)[None]  # an opening: whole 3 x 3 areas and their edges, not lone values
    return np.where(fill, np.float32(np.nan), x) if fill.any() else x


def to_linear_power(x: np.ndarray, cfg: SarPreprocessConfig) -> np.ndarray:
    """Convert raw values in ``cfg.units`` to linear sigma-nought power (float32, NaN kept): fills are
    missing (:func:`missing_as_nan`); gamma nought (``cfg.backscatter``) is brought to sigma nought
    (:mod:`engine.inputs.backscatter`)."""
    return _sigma0_power(missing_as_nan(np.asarray(x, np.float32), cfg), cfg)


def _sigma0_power(x: np.ndarray, cfg: SarPreprocessConfig) -> np.ndarray:
    """Linear sigma-nought power of raw values whose fills are already NaN (with the file's band offsets and
    noise floors)."""
    power = _power(x, cfg)
    gain = _level_gain_db(cfg, x.shape[0])
    power = power if gain is None else power * np.power(np.float32(10.0), gain / np.float32(10.0))
    return _without_noise_floor(power, cfg)


NOISE_FLOOR_KEEP_DB = 24.0
"""What is left of power at or under a noise floor taken off: the floor minus this many dB (as the generator's noise
removal leaves it), so the darkest pixels stay ordered and finite instead of zero or negative."""


def _without_noise_floor(power: np.ndarray, cfg: SarPreprocessConfig) -> np.ndarray:
    """Power minus ``cfg.noise_floors_db`` per band (0.0: nothing), as thermal-noise removal does."""
    floors = cfg.noise_floors_db
    if not any(floors):
        return power
    if len(floors) != power.shape[0]:
        raise ValueError(f"SAR noise floors {list(floors)} do not match the {power.shape[0]} band(s) read")
    noise = np.asarray([10.0 ** (f / 10.0) if f else 0.0 for f in floors], np.float32).reshape(-1, 1, 1)
    kept = noise * np.float32(10.0 ** (-NOISE_FLOOR_KEEP_DB / 10.0))
    return np.maximum(power - noise, kept)  # NaN stays NaN


def _level_gain_db(cfg: SarPreprocessConfig, bands: int) -> Optional[np.ndarray]:
    """What the file's levels need, per band, as a (C, 1, 1) dB array (None: nothing): gamma nought brought to
    sigma nought, and ``cfg.band_offsets_db`` (a cross-polarised band read as co-polarised)."""
    gain = np.full(bands, 10.0 * np.log10(gamma0_to_sigma0_factor(cfg.backscatter)), np.float32)
    if any(cfg.band_offsets_db):
        if len(cfg.band_offsets_db) != bands:
            raise ValueError(f"SAR band offsets {list(cfg.band_offsets_db)} do not match the {bands} band(s) read")
        gain += np.asarray(cfg.band_offsets_db, np.float32)
    return gain.reshape(-1, 1, 1) if gain.any() else None


def _power(x: np.ndarray, cfg: SarPreprocessConfig) -> np.ndarray:
    units = cfg.units
    if units == "linear":
        return x
    if units == "db":
        return np.power(np.float32(10.0), x / np.float32(10.0))
    if units == "amplitude":
        return x * x
    if units == "dn":
        return x * x / _constants(cfg, x.shape[0])
    raise ValueError(
        f"SAR units {units!r} are not resolved; resolve them per file (engine.inputs.resolve_inputs) "
        "to one of linear, db, amplitude, dn"
    )


def sar_to_features(
    arr: np.ndarray, cfg: SarPreprocessConfig, incidence: Optional[np.ndarray] = None
) -> np.ndarray:
    """Apply the SAR feature chain (everything except robust normalisation).

    Args:
        arr: (C, H, W) raw SAR values in ``cfg.units`` (resolved: linear, db, amplitude or dn);
            NaN nodata.
        cfg: which steps run and their parameters.
        incidence: (H, W) incidence angle in degrees, when ``cfg.incidence_band`` is used.

    Returns:
        float32 (C, H, W) features (dB when ``cfg.to_db``), NaN kept.
    """
    x = np.asarray(arr, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"SAR array must be (C, H, W), got shape {x.shape}")
    x = missing_as_nan(x, cfg)
    # dB input that only stays dB skips the round trip through linear power
    db_in = cfg.units == "db" and not _needs_linear(cfg)
    if not db_in:
        x = _sigma0_power(x, cfg)  # fills already NaN (above)
    else:
        x = np.maximum(x, np.float32(10.0 * np.log10(cfg.db_floor)))  # under the noise floor (kept above), NaN kept
        gain = _level_gain_db(cfg, x.shape[0])
        x = x if gain is None else x + gain
    if cfg.incidence_normalize:
        if incidence is None:
            if cfg.incidence_angle_deg is None:
                raise ValueError(
                    "incidence-angle normalisation needs an angle band (incidence_band) "
                    "or a constant angle (incidence_angle_deg)"
                )
            incidence = np.float32(cfg.incidence_angle_deg)
        cos = np.cos(np.deg2rad(np.asarray(incidence, dtype=np.float32)))
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(cos > 1e-3, x / cos, np.nan).astype(np.float32)
    if cfg.lee_filter:
        x = lee_filter(x, cfg.lee_window, cfg.lee_looks)
    if cfg.to_db and not db_in:
        nan = ~np.isfinite(x)
        x = np.float32(10.0) * np.log10(np.maximum(x, np.float32(cfg.db_floor)))
        x[nan] = np.nan
    return x.astype(np.float32, copy=False)
