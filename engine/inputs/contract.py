"""The model-input contract: one place decides bands, units and normalisation for every run.

Given what a model says about its inputs (an :class:`InputRecipe`, read from its file or the
defaults of a new model) and a user's optical and SAR rasters with optional overrides,
:func:`resolve_inputs` decides once

* which bands are read (the model's, or the user's choice of the same count);
* which units each file holds (:mod:`.units`: detected, from metadata, or given);
* how values become features (optical: to reflectance-like 0-1; SAR: to linear power, Lee
  filter, dB) and how features are normalised: optical surface reflectance by the model's
  **fixed reflectance range** (a small clip keeps its brightness), 8-bit and other digital
  numbers by **this raster's** 2-98 % percentiles (the paper's rule; any linear unit cancels
  out; an 8-bit band too narrow for its own stretch is read near its 8-bit values); calibrated SAR
  by the **fixed dB range stored in the model** (so water stays dark in absolute terms);
  uncalibrated SAR digital numbers are brought to the training data's level and said so;
* whether the scene is far from the training data (:mod:`.shift`).

Segmentation, every training stage, fine-tuning, distillation, gate rasters and evaluation
read their windows through the result (:mod:`.reader`), so the networks see the same values
in every step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import rasterio

from ..config import (
    PHYSICAL_OPTICAL_UNITS,
    SAR_LEVELS,
    SAR_NOISE_FLOOR,
    BandMapping,
    ModelMetadata,
    NormalizationRecord,
    OpticalPreprocessConfig,
    SarPreprocessConfig,
)
from ..preprocess.normalize import (
    clipped_white_share,
    fixed_record,
    read_from_black,
    reads_every_pixel,
    record_from_features,
    sample_features,
    widen_narrow_bands,
)
from ..preprocess.optical import conversion_for
from ..preprocess.pipeline import InputPreprocessor
from ..progress import NULL_PROGRESS, Progress
from ..validate import subdatasets_problem
from . import shift
from .backscatter import detect_backscatter
from .bands import (
    check_not_complex,
    check_optical_not_paletted,
    check_optical_not_sar,
    check_sar_not_picture,
    choose_bands,
    model_roles,
    roles_of,
    unnamed_optical_warning,
    unnamed_sar_warning,
)
from .levels import PolarisationBalance, cross_read_as_co, polarisation_balance
from .noise_floor import estimate_noise_floors
from .season import winter_warning
from .units import (
    SAR_LABELS,
    TYPICAL_MEDIAN_DB,
    UnitsDecision,
    detect_optical_units,
    detect_sar_units,
    polarisations,
    sample_values,
)

PathLike = Union[str, Path]
# An 8-bit picture of a landscape spans far more than 16 of its 255 levels between its 2nd and 98th
# percentiles. A narrower band is one surface filling the picture: stretched by its percentiles, a
# snowfield saturated at 255 became black (read as water) and a calm sea became texture. Such a band
# is read toward its place on the 8-bit scale instead (docs/inputs.md, "8-bit pictures").
DISPLAY_MIN_SPAN = 16 / 255
# A picture with this share of its pixels white in every band (255) has its bright end clipped, as a
# true-colour rendition (Sentinel-2 TCI) clips snow and cloud: a fixed rendition of reflectance, not a
# stretch of this scene. Its dark end is then read from black, not from its 2nd percentile, which over
# snow with trees stretched the trees to black, read as water (docs/inputs.md, "8-bit pictures").
CLIPPED_WHITE_SHARE = 0.05
# ... unless its dark end shows haze (path radiance): blue's 2nd percentile at least this (0-1 scale;
# reflectance 0.04 on a TCI's scale, above clear L2A dark ends of 0.010-0.021).
# Read from black, a hazy picture's lifted dark end is read as water: hazy TCI-like pictures with a white
# cloud fell to 10-64 % admissible classes (docs/experiments/zero_shot_real.md, "8-bit pictures of snow").
PICTURE_HAZE_BLUE = 0.10
STATS_DECIMALS = 3  # stored statistics: a dB copy and a linear copy of a scene store the same


@dataclass
class InputOverrides:
    """What a user may set instead of the model's defaults and the detected units."""

    optical_bands: Tuple[int, ...] = ()
    sar_bands: Tuple[int, ...] = ()
    optical_units: str = "auto"
    sar_units: str = "auto"
    sar_calibration: float = 0.0  # units "dn": power = DN**2 / constant; 0 = not given
    sar_levels: str = "auto"  # one of config.SAR_LEVELS
    sar_backscatter: str = "auto"  # one of config.SAR_BACKSCATTER: sigma or gamma nought (auto: named by the file)
    sar_noise_floor: str = "auto"  # one of config.SAR_NOISE_FLOOR: a model's VH floor taken off (off: never)


@dataclass
class InputRecipe:
    """What a model says about its inputs: bands, chains, stored ranges, training statistics."""

    bands: BandMapping = field(default_factory=BandMapping)
    optical: OpticalPreprocessConfig = field(default_factory=OpticalPreprocessConfig)
    sar: SarPreprocessConfig = field(default_factory=SarPreprocessConfig)
    optical_record: Optional[NormalizationRecord] = None
    sar_record: Optional[NormalizationRecord] = None
    stats: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, meta: ModelMetadata) -> InputRecipe:
        return cls(
            meta.bands,
            meta.optical_preprocess,
            meta.sar_preprocess,
            meta.optical_normalization,
            meta.sar_normalization,
            meta.input_stats or {},
        )


@dataclass
class ResolvedInputs:
    """Everything a run needs to read its inputs, and what it should tell the user."""

    optical_path: Optional[Path]
    sar_path: Path
    bands: BandMapping
    optical_units: Optional[UnitsDecision]
    sar_units: UnitsDecision
    optical_cfg: OpticalPreprocessConfig
    sar_cfg: SarPreprocessConfig
    optical_record: Optional[NormalizationRecord]
    sar_record: Optional[NormalizationRecord]
    stats: Dict[str, Any]
    warnings: List[str] = field(default_factory=list)
    lines: List[str] = field(default_factory=list)
    sar_relative_levels: bool = False  # the water teacher's cut then comes from the scene
    sar_only_problem: Optional[str] = None  # why a map from this SAR alone would say nothing (it is refused)
    optical_snow_or_cloud: str = ""  # why the optical scene is mostly snow or cloud (shift.snow_or_cloud), or ""
    noise_floor_line: str = ""  # what was done with a VH noise floor, when the model asks for one to come off

    @property
    def preprocessor(self) -> InputPreprocessor:
        return InputPreprocessor(self.sar_cfg, self.optical_cfg, self.sar_record, self.optical_record)

    def report(self, progress: Progress) -> None:
        """Say the decisions (one line per input) and the warnings."""
        for line in self.lines:
            progress.info(line)
        for text in self.warnings:
            progress.warning(text)

    def stored(self) -> Dict[str, Any]:
        """The :class:`~engine.config.ModelMetadata` fields of a model trained on these inputs."""
        return {
            "bands": self.bands,
            "optical_preprocess": self.optical_cfg,
            "sar_preprocess": dataclasses.replace(self.sar_cfg, calibration_constants=()),
            "optical_normalization": self.optical_record,
            "sar_normalization": self.sar_record,
            "input_stats": self.stats,
        }

    def summary(self) -> Dict[str, Any]:
        """JSON-able decisions for results and reports."""
        out = {"sar_units": self.sar_units.units, "warnings": list(self.warnings), "lines": list(self.lines)}
        if self.optical_units is not None:
            out["optical_units"] = self.optical_units.units
        return out


def _bands(given: Sequence[int], stored: Sequence[int], what: str) -> Tuple[int, ...]:
    if not given:
        return tuple(int(b) for b in stored)
    if len(given) != len(stored):
        raise ValueError(
            f"{len(given)} {what} band(s) {list(given)} given, but the model takes {len(stored)} {what} "
            f"band(s) (trained on bands {list(stored)}); choose {len(stored)}"
        )
    return tuple(int(b) for b in given)


def _check_band_count(
    path: Path, bands: Tuple[int, ...], what: str, roles: Optional[Tuple[str, ...]], flag: str
) -> None:
    """Refuse bands the raster lacks, saying what the model reads (before any sampling names a band number)."""
    with rasterio.open(path) as src:
        count, subdatasets = src.count, src.subdatasets
    if all(1 <= b <= count for b in bands):
        return
    if count == 0 and subdatasets:
        raise ValueError(subdatasets_problem(path, subdatasets))
    reads = f" ({', '.join(roles)})" if roles else ""
    missing = next(b for b in bands if not 1 <= b <= count)
    # products that come one band per file (Sentinel-2 JP2s, ASF's VV and VH files) are stacked first
    stack = (" One band per file (a Sentinel-2 band, a VV or VH file)? Stack them into one raster first: "
             "sgcad:stackbands (Stack bands into one raster), which also names the bands, or python -m engine "
             "stack") if count == 1 else ""
    raise ValueError(
        f"{what} raster {path.name} has {count} band(s): band {missing} does not exist"
        f"{' (bands are numbered from 1)' if missing < 1 else ''}; the model reads "
        f"{len(bands)}{reads} from bands {', '.join(str(b) for b in bands)}. Give a raster with those bands, or "
        f"choose its bands ({flag}).{stack}"
    )


def _role_names(bands: BandMapping, modality: str) -> Optional[Tuple[str, ...]]:
    roles = model_roles(bands, modality)
    if not roles or modality == "optical":
        return roles
    return tuple("co-polarised" if r == "co" else "cross-polarised" for r in roles)


def _by_role(
    path: Path, recipe: BandMapping, modality: str, stored: Tuple[int, ...], lines: List[str]
) -> Tuple[int, ...]:
    """The bands holding the roles the model reads, where the raster says so (:mod:`.bands`)."""
    choice = choose_bands(path, recipe, modality)
    if choice is None:
        return stored
    lines.append(choice.line("optical" if modality == "optical" else "SAR", path, stored))
    return choice.bands


def _mapping(
    recipe: BandMapping, optical: Tuple[int, ...], sar: Tuple[int, ...],
    optical_path: Optional[Path] = None, sar_path: Optional[Path] = None,
) -> BandMapping:
    same_o, same_s = optical == tuple(recipe.optical_bands), sar == tuple(recipe.sar_bands)
    return BandMapping(
        optical_bands=optical,
        sar_bands=sar,
        optical_names=tuple(recipe.optical_names) if same_o else (
            roles_of(optical_path, optical, "optical") or tuple(f"optical_b{b}" for b in optical)),
        sar_names=tuple(recipe.sar_names) if same_s else (
            roles_of(sar_path, sar, "sar") or tuple(f"sar_b{b}" for b in sar)),
    )


def _rounded(stats: List[Dict[str, float]]) -> List[Dict[str, float]]:
    return [{k: (round(v, STATS_DECIMALS) if isinstance(v, float) else v) for k, v in b.items()} for b in stats]


def _dn_constants(
    path: Path, bands: Sequence[int], trained: Dict[str, Any]
) -> Tuple[Tuple[float, ...], List[float]]:
    """Per-band constants bringing uncalibrated amplitude numbers to the training data's level.

    Returns:
        (constants, target medians in dB).
    """
    values, _ = sample_values(path, bands)
    trained_bands = trained.get("bands", [])
    pols = polarisations(path, bands)
    constants, targets = [], []
    for i, v in enumerate(values):
        v = v[v > 0]
        if v.size == 0:
            raise ValueError(f"{path}: SAR band {bands[i]} has no positive value to calibrate")
        median_db = float(np.median(10.0 * np.log10(v * v)))
        known = i < len(trained_bands) and "p50" in trained_bands[i]
        target = trained_bands[i]["p50"] if known else TYPICAL_MEDIAN_DB[pols[i]]
        constants.append(float(10.0 ** ((median_db - target) / 10.0)))
        targets.append(float(target))
    return tuple(constants), targets


Chain = Union[OpticalPreprocessConfig, SarPreprocessConfig]


def resolve_chain(
    cfg: Chain,
    path: PathLike,
    bands: Sequence[int],
    units: str = "auto",
    calibration: float = 0.0,
    trained: Optional[Dict[str, Any]] = None,
    backscatter: str = "auto",
) -> Tuple[Chain, UnitsDecision, Optional[str]]:
    """A copy of a chain with this file's units resolved, the decision, and a warning if any.

    Optical units set the linear conversion to reflectance-like values (``custom`` keeps the
    chain's own). SAR digital numbers without a calibration constant are brought to the level
    of ``trained`` statistics (or typical backscatter), with a warning saying so. Calibrated SAR
    also gets its backscatter (``backscatter``: as given, else named by the file; gamma nought is
    read as sigma nought, :mod:`engine.inputs.backscatter`); the units decision carries it.
    """
    path = Path(path)
    if isinstance(cfg, OpticalPreprocessConfig):
        decision = detect_optical_units(path, bands, units)
        out = dataclasses.replace(cfg, units=decision.units,
                                  zero_is_nodata=shift.optical_zeros_are_missing(path, bands))
        if decision.units != "custom":
            out.scale, out.offset = conversion_for(decision.units, decision.offset_dn)
        return out, decision, None
    decision = detect_sar_units(path, bands, units)
    # digital numbers are matched to the model's level below: no backscatter convention to honour
    found = detect_backscatter(path, bands, backscatter if decision.units != "dn" or calibration > 0 else "sigma0")
    decision.backscatter = found
    out = dataclasses.replace(cfg, units=decision.units, calibration_constant=calibration, calibration_constants=(),
                              backscatter=found.convention, band_offsets_db=(), noise_floors_db=(),
                              zero_is_nodata=shift.zeros_are_missing(path, bands, decision.units),
                              fill_is_nodata=bool(decision.stats.get("fills_missing")))
    note = None
    likelier = decision.stats.get("likelier_units")
    if likelier:
        stats = decision.stats
        note = (f"SAR {path.name} was given as {SAR_LABELS[decision.units]}, but its values look like "
                f"{SAR_LABELS[likelier]}: read as given their median is {stats['median_db_as_given']:.1f} dB, read "
                f"as {likelier} {stats['median_db_as_likelier']:.1f} dB, and their spread fits that reading better. "
                "Read the wrong way, water is missed or land called water: if unsure, set the SAR units to auto "
                "(SAR_UNITS / --sar-units).")
    if decision.units == "dn" and calibration <= 0:
        out.calibration_constants, targets = _dn_constants(path, bands, trained or {})
        note = (
            f"SAR {path.name} is not calibrated (amplitude digital numbers, no calibration constant): its "
            f"level was matched to median(s) of {', '.join(f'{t:.1f}' for t in targets)} dB, so absolute "
            "backscatter is an estimate; give the product's calibration constant (--sar-calibration / "
            "SAR_CALIBRATION) for calibrated values. If the file holds dB or power stored as integers whose scale "
            "and offset were lost on the way (dB x 100, say), restore them first (gdal_edit.py -scale S -offset O)."
        )
    return out, decision, note


def reads_fixed_reflectance(mode: str, cfg: OpticalPreprocessConfig) -> bool:
    """Whether an optical raster of these (resolved) units is read in the fixed reflectance range."""
    return mode == "physical" and cfg.units in PHYSICAL_OPTICAL_UNITS


def _record(
    mode: str,
    stored: Optional[NormalizationRecord],
    table: np.ndarray,
    cfg: Union[OpticalPreprocessConfig, SarPreprocessConfig],
    bands: Tuple[int, ...],
    path: Path,
    what: str,
) -> Optional[NormalizationRecord]:
    if not cfg.robust_normalize:
        return None
    if mode == "physical" and isinstance(cfg, OpticalPreprocessConfig):
        if reads_fixed_reflectance(mode, cfg):
            return fixed_record(bands, cfg, *cfg.reflectance_range)
        record = record_from_features(table, cfg, bands, source=str(path))
        return widen_narrow_bands(record, DISPLAY_MIN_SPAN) if cfg.units == "uint8" else record
    if mode == "scene":
        return record_from_features(table, cfg, bands, source=str(path))
    if mode != "fixed":
        raise ValueError(f"{what} normalisation must be 'scene', 'physical' (optical) or 'fixed', got {mode!r}")
    if stored is None:
        if isinstance(cfg, SarPreprocessConfig):
            return fixed_record(bands, cfg, *cfg.fixed_range)
        raise ValueError(f"the model has no stored {what} range for its 'fixed' normalisation")
    if len(stored.bands) != len(bands):
        raise ValueError(
            f"the model's {what} range covers {len(stored.bands)} band(s), but {len(bands)} are read"
        )
    return stored


def _clipped_clear(table: np.ndarray, roles: Sequence[str]) -> bool:
    """Whether an 8-bit picture is clipped white (:data:`CLIPPED_WHITE_SHARE`) without haze at its dark
    end (:data:`PICTURE_HAZE_BLUE`): such a picture is read from black instead of its 2nd percentiles."""
    if clipped_white_share(table, shift.DISPLAY_TOP) < CLIPPED_WHITE_SHARE:
        return False
    ends = {role: float(np.nanpercentile(row, 2)) for role, row in zip(roles, table) if np.isfinite(row).any()}
    # path radiance lifts blue most; a lifted blue dark end keeps the stretch whatever the other bands do
    # (thin grey haze or smoke lifts them all)
    return ends.get("blue", 0.0) < PICTURE_HAZE_BLUE


def _stretch_line(record: NormalizationRecord, own: bool, units: str) -> str:
    if own:
        return f"optical stretch: this raster's 2-98 % percentiles ({units} values have no physical scale)"
    low, high = record.bands[0].p_low, record.bands[0].p_high
    return f"optical stretch: fixed surface reflectance {low:g}-{high:g} ({units})"


def resolve_inputs(
    recipe: InputRecipe,
    optical: Optional[PathLike],
    sar: PathLike,
    overrides: Optional[InputOverrides] = None,
    progress: Progress = NULL_PROGRESS,
    seed: int = 0,
) -> ResolvedInputs:
    """Decide bands, units, feature chains and normalisation of one optical + SAR pair.

    Args:
        recipe: the model's (or a new model's) input recipe.
        optical: the optical raster, or None for SAR-only uses (the teacher).
        sar: the SAR raster.
        overrides: bands, units and calibration the user chose.
        progress: progress and cancellation (sampling reads a few windows of each raster).
        seed: seeds the sample.

    Raises:
        FileNotFoundError: an input does not exist.
        ValueError: bands that do not exist or do not fit the model, inputs without valid
            pixels, units that are not known, a SAR raster whose bands claim colours (a picture).
    """
    overrides = overrides or InputOverrides()
    sar_path = Path(sar)
    optical_path = Path(optical) if optical else None
    for path, what in ((optical_path, "optical"), (sar_path, "SAR")):
        if path is not None and not path.exists():
            raise FileNotFoundError(f"{what} raster {path} does not exist")
        if path is not None:
            check_not_complex(path, what)
    # checked first: swapped inputs otherwise fail on the optical side, with a less helpful message
    check_sar_not_picture(sar_path, optical_path is not None)
    if optical_path is not None:
        check_optical_not_sar(optical_path)
    o_bands = _bands(overrides.optical_bands, recipe.bands.optical_bands, "optical")
    s_bands = _bands(overrides.sar_bands, recipe.bands.sar_bands, "SAR")
    lines: List[str] = []
    warnings: List[str] = []
    stats: Dict[str, Any] = {}
    for given, what, roles in ((overrides.optical_bands, "optical", _role_names(recipe.bands, "optical")),
                               (overrides.sar_bands, "SAR", _role_names(recipe.bands, "sar"))):
        repeated = sorted({int(b) for b in given if list(given).count(b) > 1})
        if repeated:  # one band fed as two of the model's: its answers rest on information it does not have
            warnings.append(f"{what} band(s) {repeated} chosen more than once ({list(given)}): the model reads each "
                            f"of its {what} bands{' (' + ', '.join(roles) + ')' if roles else ''} as a different "
                            "measurement, so its answers are unreliable; choose distinct bands")
    if not overrides.sar_bands:
        s_bands = _by_role(sar_path, recipe.bands, "sar", s_bands, lines)
    guessed_sar = not overrides.sar_bands and s_bands == tuple(recipe.bands.sar_bands)  # neither chosen nor named
    if optical_path is not None and not overrides.optical_bands:
        o_bands = _by_role(optical_path, recipe.bands, "optical", o_bands, lines)
        same = o_bands == tuple(recipe.bands.optical_bands)
        note = unnamed_optical_warning(optical_path, recipe.bands) if same else None
        warnings += [note] if note else []

    _check_band_count(sar_path, s_bands, "SAR", _role_names(recipe.bands, "sar"), "--sar-bands / SAR_BANDS")
    if optical_path is not None:
        check_optical_not_paletted(optical_path, o_bands)
        _check_band_count(optical_path, o_bands, "optical", _role_names(recipe.bands, "optical"),
                          "--optical-bands / OPTICAL_BANDS")
    sar_cfg, sar_units, note = resolve_chain(
        recipe.sar, sar_path, s_bands, overrides.sar_units, overrides.sar_calibration, recipe.stats.get("sar", {}),
        overrides.sar_backscatter,
    )
    warnings += [note] if note else []
    note = unnamed_sar_warning(sar_path, recipe.bands, sar_units.units) if guessed_sar else None
    warnings += [note] if note else []
    if not (sar_units.units == "dn" and overrides.sar_calibration <= 0):  # uncalibrated: already matched in level
        offsets, note = cross_read_as_co(sar_path, s_bands, model_roles(recipe.bands, "sar"))
        sar_cfg = dataclasses.replace(sar_cfg, band_offsets_db=offsets)
        warnings += [note] if note else []
    lines.append(sar_units.line(sar_path))
    relative, balance = sar_levels_of(sar_path, overrides.sar_levels, sar_units.units, overrides.sar_calibration)
    if balance is not None and balance.relative and overrides.sar_levels == "calibrated":
        warnings.append(f"SAR levels of {sar_path.name} were given as calibrated, but its {balance.reason()}; "
                        "if no water is found, use --sar-levels relative / SAR_LEVELS=relative")
    if relative:
        why = "as given" if overrides.sar_levels == "relative" else (
            balance.reason() if balance is not None and balance.relative
            else "digital numbers without a calibration constant")
        # the scene's split is there whether or not it holds water: dry pasture chips got 57-61 %
        lines.append(f"SAR levels of {sar_path.name}: relative ({why}); the water teacher's cut comes from this "
                     "scene, which it splits in two even without open water: check the water map of a dry scene")
    check_sar_noise_floor(overrides.sar_noise_floor)
    floor_line = ""
    if sar_cfg.noise_floor_band and overrides.sar_noise_floor == "off":
        floor_line = (f"SAR {sar_path.name}: the cross-polarised band is read with any noise floor kept, as asked "
                      "(--sar-noise-floor off / SAR_NOISE_FLOOR)")
    elif sar_cfg.noise_floor_band and not relative:  # a floor in dB needs calibrated levels
        floors, floor_line = estimate_noise_floors(sar_path, s_bands, sar_cfg, progress.sub(0.0, 0.1), seed)
        sar_cfg = dataclasses.replace(sar_cfg, noise_floors_db=floors)
    lines += [floor_line] if floor_line else []
    table, _ = sample_features(sar_path, s_bands, sar_cfg, progress=progress.sub(0.1, 0.5), seed=seed)
    sar_record = _record(recipe.sar.normalization, recipe.sar_record, table, sar_cfg, s_bands, sar_path, "SAR")
    sar_stats = shift.band_stats(table, s_bands)
    if sar_record is not None:
        shift.add_range_shares(sar_stats, table, sar_record)
    warnings += shift.sar_warnings(
        sar_stats, sar_path.name, sar_units.units, sar_record, recipe.stats.get("sar"),
        fixed=recipe.sar.normalization == "fixed", raw=sar_units.stats, zeros_missing=sar_cfg.zero_is_nodata,
    )
    stats["sar"] = {"units": sar_units.units, "bands": _rounded(sar_stats)}
    winter = winter_warning(sar_path)
    warnings += [winter] if winter else []
    sar_problem = shift.sar_only_problem(sar_stats, sar_path.name, sar_units.units, sar_units.stats)
    if any(not b.get("n") for b in sar_stats):  # nothing valid (zeros read as missing): an empty map, optical or not
        raise ValueError(sar_problem)

    optical_units, optical_cfg, optical_record, bright = None, recipe.optical, None, ""
    if optical_path is not None:
        optical_cfg, optical_units, _ = resolve_chain(recipe.optical, optical_path, o_bands, overrides.optical_units)
        lines.append(optical_units.line(optical_path))
        table, _ = sample_features(optical_path, o_bands, optical_cfg, progress=progress.sub(0.5, 1.0), seed=seed)
        optical_record = _record(
            recipe.optical.normalization, recipe.optical_record, table, optical_cfg, o_bands, optical_path, "optical"
        )
        roles = model_roles(recipe.bands, "optical") or ()
        mode = recipe.optical.normalization
        fixed = optical_record is not None and reads_fixed_reflectance(mode, optical_cfg)
        own_stretch = optical_record is not None and mode != "fixed" and not fixed
        clipped = mode == "physical" and own_stretch and optical_units.units == "uint8" and _clipped_clear(table, roles)
        if clipped:
            optical_record = read_from_black(optical_record)
            lines.append(f"optical stretch: from black to this raster's 98th percentiles (at least "
                         f"{CLIPPED_WHITE_SHARE:.0%} of its pixels are white in every band: a rendition clipped "
                         "at 255, as a true-colour image clips snow and cloud)")
        elif mode == "physical" and optical_record is not None:
            lines.append(_stretch_line(optical_record, own_stretch, optical_units.units))
        optical_stats = shift.band_stats(table, o_bands)
        problem = shift.optical_problem(optical_stats, optical_path.name)
        if problem:
            raise ValueError(problem)
        with rasterio.open(optical_path) as src:
            read_whole = reads_every_pixel(src.width, src.height, optical_cfg.sample_size)
        warnings += shift.optical_warnings(optical_stats, optical_path.name, read_whole and own_stretch, fixed,
                                           optical_units.units, roles)
        stats["optical"] = {"units": optical_units.units, "bands": _rounded(optical_stats)}
        bright = shift.snow_or_cloud(optical_stats, optical_units.units, fixed)
    return ResolvedInputs(
        optical_path,
        sar_path,
        _mapping(recipe.bands, o_bands, s_bands, optical_path, sar_path),
        optical_units,
        sar_units,
        optical_cfg,
        sar_cfg,
        optical_record,
        sar_record,
        stats,
        warnings,
        lines,
        relative,
        sar_problem,
        bright,
        floor_line,
    )


def check_sar_levels(levels: str, whose: str = "") -> None:
    """Refuse a SAR levels value that is not one of ``config.SAR_LEVELS`` (``whose``: " of the after
    date", say, for the message)."""
    if levels not in SAR_LEVELS:
        raise ValueError(f"SAR levels{whose} must be one of {list(SAR_LEVELS)}, got {levels!r}")


def check_sar_noise_floor(noise_floor: str) -> None:
    """Refuse a noise-floor choice that is not one of ``config.SAR_NOISE_FLOOR``."""
    if noise_floor not in SAR_NOISE_FLOOR:
        raise ValueError(f"SAR noise floor must be one of {list(SAR_NOISE_FLOOR)}, got {noise_floor!r}")


def relative_sar_levels(
    levels: str, units: str, calibration: float, balance: Optional[PolarisationBalance] = None
) -> bool:
    """Whether SAR levels are only relative (``config.SAR_LEVELS``): as given, or, for ``auto``,
    digital numbers without a calibration constant, or polarisations whose balance rules out
    calibrated backscatter (:mod:`.levels`)."""
    check_sar_levels(levels)
    if levels != "auto":
        return levels == "relative"
    return (units == "dn" and calibration <= 0) or (balance is not None and balance.relative)


def sar_levels_of(
    path: PathLike, levels: str, units: str, calibration: float
) -> Tuple[bool, Optional[PolarisationBalance]]:
    """Whether a SAR raster's levels are only relative (:func:`relative_sar_levels`), and its
    polarisation balance where it was looked at (unless the levels are given as relative)."""
    balance = None if levels == "relative" else polarisation_balance(path, units)
    return relative_sar_levels(levels, units, calibration, balance), balance


def resolve_for(
    resolved: ResolvedInputs, recipe: InputRecipe, progress: Progress = NULL_PROGRESS
) -> InputPreprocessor:
    """The preprocessor of a second model (the teacher) reading the same SAR file.

    The units already decided are kept (no second detection, no second warning); the second
    model's own chain and stored range apply.
    """
    return preprocessor_for(
        recipe, resolved.sar_cfg, resolved.sar_path, resolved.bands.sar_bands,
        resolved.optical_cfg, resolved.optical_record, progress,
    )


def preprocessor_for(
    recipe: InputRecipe,
    runtime_sar: SarPreprocessConfig,
    sar_path: PathLike,
    sar_bands: Sequence[int],
    optical_cfg: Optional[OpticalPreprocessConfig] = None,
    optical_record: Optional[NormalizationRecord] = None,
    progress: Progress = NULL_PROGRESS,
) -> InputPreprocessor:
    """A model's preprocessor for a SAR file whose units were already resolved (``runtime_sar``)."""
    bands = tuple(sar_bands)
    if len(recipe.bands.sar_bands) != len(bands):
        raise ValueError(
            f"the teacher takes {len(recipe.bands.sar_bands)} SAR band(s) but {len(bands)} are read for the "
            "student; both networks are fed the same SAR bands"
        )
    sar_cfg = dataclasses.replace(
        recipe.sar,
        units=runtime_sar.units,
        calibration_constant=runtime_sar.calibration_constant,
        calibration_constants=runtime_sar.calibration_constants,
        backscatter=runtime_sar.backscatter,
        zero_is_nodata=runtime_sar.zero_is_nodata,
        fill_is_nodata=runtime_sar.fill_is_nodata,
    )
    if recipe.sar.normalization == "scene" and recipe.sar.robust_normalize:
        table, _ = sample_features(sar_path, bands, sar_cfg, progress=progress)
        record = record_from_features(table, sar_cfg, bands, source=str(sar_path))
    else:
        record = _record(recipe.sar.normalization, recipe.sar_record, np.empty((len(bands), 0)), sar_cfg, bands,
                         Path(sar_path), "SAR")
    return InputPreprocessor(sar_cfg, optical_cfg or recipe.optical, record, optical_record)


def takes_optical(meta: ModelMetadata) -> bool:
    """Whether a model reads an optical image: False for a SAR-only model (no optical band)."""
    return meta.bands.optical_channels > 0


def optical_for(meta: ModelMetadata, optical: Optional[PathLike], what: str, progress: Progress) -> Optional[Path]:
    """The optical raster a run of this model reads: None for a SAR-only model (a given one is
    ignored, with a note); required otherwise.

    Raises:
        ValueError: no optical raster for a model that needs one.
    """
    if not takes_optical(meta):
        if optical:
            progress.info(f"{what} is a SAR-only model: the optical image {optical} is not read")
        return None
    if not optical:
        raise ValueError(
            f"{what} was trained on optical + SAR and needs an optical image; give one, "
            "or use a SAR-only model (the bundled sgcad_student_sar_only.safetensors, or one trained with "
            "python -m engine train-sar)"
        )
    return Path(optical)
