"""Typed configuration shared by every part of the engine.

Each dataclass carries the defaults of ``docs/METHOD.md``; values the source paper leaves
open are marked *(chosen)* there. Every dataclass converts to and from plain JSON-able
dicts so that it can be stored next to a checkpoint and read back without pickling.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Type, TypeVar

IGNORE_INDEX = 255
"""Label value for unlabelled pixels: excluded from every loss and metric."""

CONTRACT_VERSION = 2
"""Version of the model-input contract a model file follows (1: the first release, whose
optical percentiles were stored in the training file's raw units)."""

T = TypeVar("T")


def to_dict(obj: Any) -> Any:
    """Convert a (nested) dataclass to JSON-able builtins (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(cls: Type[T], data: Dict[str, Any]) -> T:
    """Build dataclass ``cls`` from a dict, recursing into nested dataclass fields.

    Unknown keys raise ``ValueError`` naming them, so a typo in a config file is not
    silently ignored.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(names)}")
    hints = _resolved_hints(cls)
    kwargs: Dict[str, Any] = {}
    for key, value in data.items():
        kwargs[key] = _coerce(hints[key], value)
    return cls(**kwargs)


def _resolved_hints(cls: type) -> Dict[str, Any]:
    import typing

    return typing.get_type_hints(cls)


def _coerce(hint: Any, value: Any) -> Any:
    import typing

    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if value is None:
        return None
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value)
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value) if len(inner) == 1 else value
    if origin in (tuple, Tuple):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v) for v in value)
        return tuple(_coerce(a, v) for a, v in zip(args, value))
    if origin in (list, List):
        return [_coerce(args[0], v) for v in value] if args else list(value)
    if origin in (dict, Dict):
        return {k: _coerce(args[1], v) for k, v in value.items()} if args else dict(value)
    return value


def save_json(obj: Any, path: Path) -> None:
    """Write a dataclass (or builtins) as indented JSON, atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_dict(obj), indent=2, sort_keys=False))
    tmp.replace(path)


@dataclass
class ClassSchema:
    """Land-cover classes: names, IDs, display colours and which class is water.

    The schema is data stored with every model; no logic hard-codes class numbers.
    """

    names: Tuple[str, ...] = ("farmland", "city", "village", "water", "forest", "road")
    ids: Tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    colors: Tuple[str, ...] = ("#e8d170", "#d7301f", "#fc8d59", "#2b83ba", "#1a9641", "#636363")
    water_class: int = 3
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        self.names, self.ids, self.colors = tuple(self.names), tuple(self.ids), tuple(self.colors)
        if not (len(self.names) == len(self.ids) == len(self.colors)):
            raise ValueError("ClassSchema: names, ids and colors must have the same length")
        if sorted(self.ids) != list(range(len(self.ids))):
            raise ValueError(f"ClassSchema: ids must be 0..{len(self.ids) - 1}, got {self.ids}")
        if self.water_class not in self.ids:
            raise ValueError(f"ClassSchema: water_class {self.water_class} is not one of {self.ids}")
        if self.ignore_index in self.ids:
            raise ValueError("ClassSchema: ignore_index must not be a class id")

    @property
    def num_classes(self) -> int:
        return len(self.ids)

    def id_of(self, value: Any) -> int:
        """Return the class id for an id (int or numeric string) or a class name (any case).

        Raises:
            ValueError: naming the value and the accepted names/ids.
        """
        if isinstance(value, str):
            text = value.strip()
            lowered = [n.lower() for n in self.names]
            if text.lower() in lowered:
                return self.ids[lowered.index(text.lower())]
            try:
                value = int(float(text))
            except ValueError:
                value = text
        if isinstance(value, (int, float)) and int(value) == value and int(value) in self.ids:
            return int(value)
        raise ValueError(
            f"{value!r} is not a class of the schema; use one of the ids {list(self.ids)} "
            f"or names {list(self.names)}"
        )

    def rgb(self, class_id: int) -> Tuple[int, int, int]:
        h = self.colors[self.ids.index(class_id)].lstrip("#")
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


@dataclass
class BandMapping:
    """Which bands (1-based, as GDAL numbers them) of each input feed the networks."""

    optical_bands: Tuple[int, ...] = (1, 2, 3)
    sar_bands: Tuple[int, ...] = (1,)
    optical_names: Tuple[str, ...] = ("red", "green", "blue")
    sar_names: Tuple[str, ...] = ("sar",)

    @property
    def optical_channels(self) -> int:
        return len(self.optical_bands)

    @property
    def sar_channels(self) -> int:
        return len(self.sar_bands)


OPTICAL_UNITS = ("auto", "uint8", "reflectance10000", "reflectance", "dn", "custom", "landsat_c2")
"""Units an optical raster may hold: ``auto`` (detected per file, see :mod:`engine.inputs.units`),
8-bit display values, reflectance x 10000 (Sentinel-2), reflectance 0-1, other digital numbers,
``custom`` (``scale`` and ``offset`` as given), or Landsat Collection 2 surface reflectance
(x 2.75e-5 - 0.2)."""
PHYSICAL_OPTICAL_UNITS = ("reflectance10000", "reflectance", "landsat_c2")
"""Optical units whose values are surface reflectance, so a fixed range means the same everywhere."""

SAR_LEVELS = ("auto", "calibrated", "relative")
"""Whether a SAR raster's levels are calibrated backscatter (sigma0 / gamma0, as Sentinel-1 GRD) or
only relative (airborne or other uncalibrated products). ``auto``: relative for digital numbers
without a calibration constant, calibrated otherwise. On relative levels the water teacher keeps
its ranking of pixels but takes its water cut from the scene (:mod:`engine.water.scene_cut`)."""

PSEUDO_LABEL_LAYERS = ("head", "all")
"""Which of the water teacher's layers learn from automatic pseudo-labels: its 1x1 water classifier
(``head``) or every layer (``all``); ``FinetuneConfig.pseudo_label_layers``."""

SAR_BACKSCATTER = ("auto", "sigma0", "gamma0")
"""Which backscatter a calibrated SAR raster holds: sigma nought (Sentinel-1 GRD as calibrated by ESA,
Google Earth Engine, Sen1Floods11) or terrain-flattened gamma nought (RTC products: OPERA RTC-S1, ASF
HyP3, SNAP terrain flattening, pyroSAR). The models read sigma nought, so gamma nought is brought to it
(:mod:`engine.inputs.backscatter`). ``auto``: named by the file or its bands, else sigma nought."""

SAR_NOISE_FLOOR = ("auto", "off")
"""Whether a model that learnt noise-removed cross-polarised backscatter (``SarPreprocessConfig.noise_floor_band``:
the VV + VH water expert) gets each file's VH noise floor taken off: ``auto`` estimates it on calibrated levels
(:mod:`engine.inputs.noise_floor`); ``off`` reads the band as it is (a product known to be noise-removed, or a
scene whose darkest VH is dry land: desert, frozen ground)."""

SAR_UNITS = ("auto", "linear", "db", "amplitude", "dn")
"""Units a SAR raster may hold: ``auto`` (detected per file), linear power (sigma0 / gamma0),
decibels, amplitude (square root of power), or uncalibrated amplitude digital numbers
(power = DN**2 / calibration constant)."""


OPTICAL_FILL_AT_MOST = -1000.0
"""An optical value at or under this is a fill (-9999, -32768; -1000: Sentinel-2's NO_DATA 0 with the +1000 offset
of processing baseline 04.00 already taken off), read as missing: reflectance in any of the units read (0-1, x 10000,
digital numbers) is never that negative."""
OPTICAL_FILL_TOP = 65535.0
"""An optical pixel at this value in every band is missing: the 16-bit maximum is a fill, or saturation (Sentinel-2's
SATURATED) that leaves nothing to read; the units are decided without such values."""
SAR_FILL_BELOW = -80.0
"""A raw SAR value under this is a fill (-9999, -32768), read as missing data: power, amplitude and numbers are
never negative, and no radar measures backscatter under about -50 dB (Sentinel-1's noise floor: -22 to -30)."""
SAR_FILL_VALUES = 3
"""...when a file's sampled values under :data:`SAR_FILL_BELOW` take at most this many distinct values: fills are
constants, while many values there are data in other units (dB x 100 in integers), which the run refuses."""


@dataclass
class SarPreprocessConfig:
    """SAR chain; each step can be switched off (METHOD.md, Preprocessing).

    ``units`` belongs to a file, not to a model: a model stores the units of its training data
    for information, and every run resolves the units of the file at hand
    (:func:`engine.inputs.resolve_inputs`). Whatever the units, the chain converts to linear
    power first, so the Lee filter and the dB conversion see the same physical quantity.
    """

    units: str = "auto"
    calibration_constant: float = 0.0  # units "dn": power = DN**2 / constant; 0 = not given
    calibration_constants: Tuple[float, ...] = ()  # per band, resolved at run time for "dn"
    backscatter: str = "auto"  # SAR_BACKSCATTER, resolved per file: gamma0 is read as sigma0 (x cos 37 deg)
    # per band, resolved per file: dB added to a cross-polarised band a model reads as co-polarised
    band_offsets_db: Tuple[float, ...] = ()
    # 1-based position, among the model's SAR bands, of a cross-polarised band it learnt with the thermal noise
    # removed: each file's own noise floor is estimated and taken off that band (engine.inputs.noise_floor); 0: none
    noise_floor_band: int = 0
    noise_floors_db: Tuple[float, ...] = ()  # per band, resolved per file: the floor taken off (0.0: nothing)
    zero_is_nodata: bool = False  # resolved per file (engine.inputs.shift.zeros_are_missing): an exact 0 is a fill
    fill_is_nodata: bool = False  # resolved per file: values under SAR_FILL_BELOW are fills (SAR_FILL_VALUES)
    incidence_normalize: bool = False
    incidence_angle_deg: Optional[float] = None  # constant angle when no angle band is given
    incidence_band: Optional[int] = None  # 1-based band holding the angle in degrees
    lee_filter: bool = True
    lee_window: int = 7  # (chosen)
    lee_looks: float = 1.0  # (chosen)
    to_db: bool = True
    db_floor: float = 1e-6  # linear floor before log10, so zeros do not become -inf
    robust_normalize: bool = True
    # "fixed": the range stored in the model (a new model stores fixed_range), so calibrated
    # backscatter keeps its physical meaning across scenes; "scene": per-raster percentiles
    normalization: str = "fixed"
    fixed_range: Tuple[float, float] = (-35.0, 10.0)  # dB: below calm water, above bright urban
    low_percentile: float = 2.0
    high_percentile: float = 98.0
    sample_size: int = 1_000_000  # pixels sampled per band for percentiles and statistics


@dataclass
class OpticalPreprocessConfig:
    """Optical chain: conversion to reflectance-like values (0-1), then scaling to 0-1.

    ``units`` is resolved per file; the conversion ``x * scale + offset`` follows from it
    (``custom`` keeps the given ``scale`` and ``offset``). ``normalization``:

    - ``"scene"`` (the paper's rule): each raster is scaled by its own 2-98 % percentiles, so the
      same scene in 8-bit, 16-bit or reflectance units reaches the network identically; a small
      homogeneous clip (a field, a snowfield) is stretched until its texture fills the range;
    - ``"physical"``: surface reflectance (``reflectance10000``, ``reflectance``) is scaled by the
      fixed ``reflectance_range``, so a clip keeps its brightness whatever its size; 8-bit and
      other digital numbers, whose scale is a display choice, keep per-raster percentiles;
    - ``"fixed"``: the range stored in the model.
    """

    units: str = "auto"
    scale: float = 1.0
    offset: float = 0.0
    # resolved per file (engine.inputs.contract.resolve_chain): in a file of more than 8 bits, a pixel
    # that is exactly 0 in every band is a fill (Sentinel-2's NO_DATA), not black ground
    zero_is_nodata: bool = False
    robust_normalize: bool = True
    normalization: str = "physical"
    # (chosen) about the training scenes' median 98th percentile (0.31-0.36), below snow and cloud
    reflectance_range: Tuple[float, float] = (0.0, 0.35)
    low_percentile: float = 2.0
    high_percentile: float = 98.0
    sample_size: int = 1_000_000

    def __post_init__(self) -> None:
        # a scale of 0 writes zeros whatever the image holds; say so here, not as "a constant band" later
        if not math.isfinite(self.scale) or self.scale == 0:
            raise ValueError(f"optical scale {self.scale!r} must be a finite non-zero number (values are read as "
                             "value x scale + offset; 1 keeps the units)")


@dataclass
class BandNormalization:
    """The robust scaling of one band: out = clip((x - p_low) / (p_high - p_low), 0, 1)."""

    band: int
    p_low: float
    p_high: float
    steps: Tuple[str, ...] = ()
    nodata: Optional[float] = None


@dataclass
class NormalizationRecord:
    """Per-band scaling of one input, stored with data sets and every model."""

    modality: str = "optical"  # "optical" or "sar"
    bands: Tuple[BandNormalization, ...] = ()
    source: str = ""


@dataclass
class StudentConfig:
    """LightMCANet (METHOD.md, Student)."""

    name: str = "lightmcanet"
    optical_channels: int = 3
    sar_channels: int = 1
    num_classes: int = 6
    widths: Tuple[int, ...] = (32, 64, 128, 256)  # (chosen)
    blocks_per_stage: Tuple[int, ...] = (2, 2, 2, 2)
    encoder: str = "resnet"  # registered encoder (engine.models.registry.ENCODERS)
    fusion: str = "lightmcam"
    attention_stages: Tuple[int, ...] = (3,)  # 0-based stages fused by cross-attention
    pool_size: int = 8  # (chosen) SAR key/value grid
    attention_dim: int = 64
    decoder: str = "fpn"
    decoder_channels: int = 64
    segm: bool = True
    segm_residual: bool = True  # F + F*G rather than F*G (measure before changing)
    # fusion "claire" (engine.models.claire): bidirectional pooled cross-attention at these stages
    claire_stages: Tuple[int, ...] = (1, 2, 3)
    claire_heads: int = 4
    # ALOS-2 refinements (engine.models.refine); off by default so networks trained without them load
    hr_injection: bool = False  # the finest encoder features enter every decoder scale
    refine_up: bool = False  # alternate 3x3 refinement and 2x upsampling to full resolution


@dataclass
class TeacherConfig:
    """SAR-only HRNet water expert (METHOD.md, Teacher)."""

    name: str = "hrnet_w18_small"
    sar_channels: int = 1
    num_classes: int = 2  # non-water, water
    widths: Tuple[int, ...] = (18, 36, 72, 144)  # (chosen) W18-small v2
    blocks_per_branch: Tuple[int, ...] = (2, 2, 2, 2)
    modules_per_stage: Tuple[int, ...] = (1, 1, 3, 2)
    segm: bool = True
    segm_residual: bool = True  # F + F*G in the head, as in the student
    # Scales the network reads its input at, logits averaged at full resolution: (1.0, 0.5) adds a
    # pass over the 2 x 2 mean, the context wide water needs (a canal basin, a harbour) at 1.25
    # times the cost. Each scale is 1/k for a whole k. docs/experiments/zero_shot_real.md
    context_scales: Tuple[float, ...] = (1.0,)


@dataclass
class LossConfig:
    """Loss weights of every stage (METHOD.md, Training stages)."""

    ce_weight: float = 1.0  # (chosen)
    dice_weight: float = 0.5  # (chosen)
    lovasz_weight: float = 0.5  # (chosen)
    inverse_frequency_weights: bool = True
    teacher_edge_weight: float = 0.3
    teacher_edge_beta: float = 0.5
    # "sgcad": wCE + Dice + Lovász; "rift": class-weighted focal + Tversky (engine.losses.rift);
    # "focal_dice": alpha-scaled class weights in focal + Dice (engine.losses.focal_dice)
    kind: str = "sgcad"
    focal_gamma: float = 2.0
    tversky_alpha: float = 0.3  # weight of false positives
    tversky_beta: float = 0.7  # weight of false negatives
    focal_weight: float = 1.0  # (chosen)
    tversky_weight: float = 1.0  # (chosen)
    # "focal_dice" (ALOS-2 refinements, engine.losses.focal_dice): inverse-frequency weights
    # raised to alpha_scale inside focal (focal_gamma) + Dice
    alpha_scale: float = 0.5
    focal_dice_focal_weight: float = 0.5
    focal_dice_dice_weight: float = 0.5
    water_head_weight: float = 0.5  # (chosen) the SAR-only model's companion water head


@dataclass
class DistillConfig:
    """Confidence-gated, water-only distillation of stage 2."""

    lambda_kd: float = 0.1  # (chosen)
    water_threshold: float = 0.95
    non_water_threshold: float = 0.15
    warmup_epochs: int = 10
    gated: bool = True  # False: dense (ungated) distillation, for ablation


@dataclass
class PatchConfig:
    """Split-first-crop-later patching (METHOD.md, Preprocessing)."""

    tile_size: int = 4096
    patch_size: int = 256
    split_ratios: Tuple[float, float, float] = (0.70, 0.15, 0.15)
    seed: int = 42
    rare_classes: Tuple[str, ...] = ("road", "village", "city")
    rare_window: int = 256
    rare_stride: int = 128
    rare_min_pixels: int = 10
    rare_min_fraction: float = 0.03


@dataclass
class TrainConfig:
    """Optimisation settings shared by teacher, stage 1 and stage 2."""

    epochs: int = 150
    batch_size: int = 16
    lr: float = 1e-3  # (chosen); stage 2 uses lr * stage2_lr_factor
    weight_decay: float = 1e-4  # (chosen)
    poly_power: float = 0.9
    stage2_lr_factor: float = 0.1  # (chosen)
    early_stopping_patience: int = 20
    seed: int = 42
    device: str = "auto"
    amp: bool = True  # mixed precision, CUDA only
    num_workers: int = 0
    threads: int = 0  # 0: torch's default
    augment: bool = True
    max_batches_per_epoch: int = 0  # 0: whole split
    # BatchNorm running statistics: None = frozen when training continues from trained weights
    # (stage 2, fine-tuning: a few patches must not overwrite statistics learnt on many),
    # updated when a network starts from scratch
    freeze_batchnorm: Optional[bool] = None
    keep_epochs: bool = False  # also write each epoch's model (epochs/epoch_NNN.safetensors) to choose from later
    # epochs between writes of the resumable state (state.safetensors); the last epoch, an early
    # stop, a cancel and an error always write the last completed epoch's state (chosen)
    state_every: int = 5
    optical_dropout: float = 0.0  # share of training patches whose optical is blanked (cloud robustness)
    optical_haze: float = 0.0  # share of training patches given a path reflectance (top-of-atmosphere products)


@dataclass
class FinetuneConfig:
    """Interactive fine-tuning from a few drawn polygons (docs/finetune.md).

    The defaults were chosen from the measurements in docs/experiments/finetune_real.md.
    """

    steps: int = 120  # optimiser steps of each network (early stopping may end sooner)
    batch_size: int = 8
    crop_size: int = 96  # random crops around the polygons, from preprocessed tiles in memory
    # False: the student's encoders (and their BatchNorm) stay as trained; its fusion, decoder and
    # head learn. 3.4x cheaper per step, and better on the Rotterdam evaluation polygons
    # (mIoU 0.91 vs 0.65 with every layer learning; docs/finetune.md)
    train_encoders: bool = False
    lr: float = 3e-4
    weight_decay: float = 1e-4
    val_fraction: float = 0.25  # share of labelled pixels held out, as whole polygon groups
    val_margin: int = 16  # context around held-out polygons, cut out of the training imagery
    eval_every: int = 10  # steps between validations on the held-out polygons
    patience: int = 4  # validations without progress before stopping
    # distillation from the (fine-tuned) teacher: "labelled" is the paper's rule (gates on
    # labelled pixels), "unlabelled" adds the teacher's confident pixels of the whole area
    kd: str = "unlabelled"
    lambda_kd: float = 0.5
    update_teacher: bool = True  # fine-tune the water teacher on the polygons first
    teacher_steps: int = 60  # on four real SAR scenes: 30 left two below Otsu, 60 beat every baseline
    # without a water polygon, the teacher adapts to the scene from automatic, confidence-ranked
    # water / non-water pseudo-labels (split-based threshold + region growing; engine.water)
    pseudo_labels: bool = True
    # a pseudo non-water pixel is dropped where the teacher's water probability exceeds this:
    # the threshold's known failure is bright water (wind, flooded vegetation) that context tells
    # the teacher; on two Sen1Floods11 chips 8-10 % of pseudo non-water was water (1 disables)
    pseudo_label_veto: float = 0.5
    # which of the teacher's layers learn from pseudo-labels: "head" (its 1x1 water classifier) moves
    # the decision to the scene without relearning features from the threshold's mistakes (training
    # labels of four Sentinel-1 scenes: mean water IoU 93.3 against 92.2 with "all"; 3.4x faster);
    # drawn water polygons always train every layer
    pseudo_label_layers: str = "head"
    # the label-free adaptation is not kept when it takes this share or more of the zero-shot expert's water to
    # land: no pseudo-label calls that water land (the veto above), so such a change is the classifier's
    # extrapolation. On a chip of wind-roughened water, which the VV + VH pair finds through VH and the VV
    # pseudo-labels cannot see, it took 62 % away (water IoU 66.3 -> 26.3); on 23 other real scenes 0-22 %
    # (docs/experiments/zero_shot_real.md, "The removal gate"); 1 disables
    pseudo_label_max_removed: float = 0.25
    # nor when it takes this share or more of its own pseudo-water (that the zero-shot expert called water) to land:
    # a few dozen weights fitting the scene's confident water should keep nearly all of it. 15 real scenes lose
    # 0-0.4 %; the Camargue and the lower Rhône lose 5.5 and 5.3 %, where the adaptation read on crops lowers
    # logits that whole-scene reading never raised (lower Rhône evaluation polygons 94.6 -> 98.3 with the gate;
    # docs/experiments/zero_shot_real.md, "The own-water gate"); 1 disables
    pseudo_label_max_own_removed: float = 0.05
    # weight of the term keeping the starting student's confident answers of classes no polygon holds,
    # on unlabelled pixels (engine.losses.keep); without it they vanished from the map: a Sentinel-2
    # chip with water and farmland drawn kept 0.1 % of its 16.3 % city, village, forest and road, and
    # 24.8 % with it (docs/experiments/finetune_keep.md; 1 cost Rotterdam 2.9 points; 0 disables)
    keep_undrawn: float = 0.5
    keep_min_confidence: float = 0.5  # the starting model's probability of an undrawn class to keep it
    # weight of the term keeping the starting water expert's sure answers (probability >= 1 - c or
    # <= c, c = teacher_keep_confidence) on unlabelled pixels while drawn polygons train it (not on
    # relative SAR levels, where the polygons set the cut); 0 disables. docs/experiments/finetune_keep.md
    teacher_keep: float = 0.0
    teacher_keep_confidence: float = 0.1
    # the water expert's confident water is distilled on unlabelled pixels only while it calls at most this
    # share of the drawn non-water pixels water: SAR as dark as water under the user's land polygons (wet
    # snow, dry sand, tarmac) would otherwise be taught to the student everywhere (a synthetic wet-snow
    # scene with land polygons only: 0.5 % of its land called water before fine-tuning, 7.0 % after;
    # docs/finetune.md, "The water expert against your polygons"; 1 disables)
    teacher_contradiction: float = 0.25
    seed: int = 42


@dataclass
class PretrainConfig:
    """Self-supervised SAR encoder pretraining (DI3CL; docs/pretraining.md). All values *(chosen)*."""

    target: str = "student"  # encoder shape: the student's SAR branch ("student") or the teacher ("teacher")
    steps: int = 300
    batch_size: int = 16  # pairs of views per step
    view_size: int = 96  # view edge in pixels (a multiple of 32)
    block_size: int = 192  # edge of the window read from a raster; views are cut from it
    blocks_per_step: int = 4  # windows read per step (pairs are spread over them)
    min_scale: float = 0.5  # a view covers this share of the window edge at least
    min_overlap: float = 0.3  # overlap of the two views, as a share of the smaller view
    min_valid: float = 0.9  # share of valid (not nodata) pixels a window needs
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.99  # of the key (momentum) encoder
    temperature: float = 0.2
    queue_size: int = 4096  # negatives kept per queue (global views and regions)
    projection_dim: int = 128
    global_weight: float = 1.0  # whole-view MoCo term
    di_weight: float = 1.0  # Dynamic Instance term (0: ablation)
    di_regions: int = 4  # at most this many regions per pair, drawn inside the overlap
    di_min_size: float = 0.3  # a region's edge, as a share of the overlap's edge, at least
    roi_samples: int = 4  # bilinear samples per region edge (ROI pooling)
    cc_weight: float = 1.0  # Contour Consistency term (0: ablation)
    contour_fraction: float = 0.15  # strongest-gradient share of the filtered SAR taken as contours
    noise_std: float = 0.04  # additive noise on the normalised (dB) views: residual speckle
    contrast: float = 0.2
    brightness: float = 0.08
    checkpoint_every: int = 50  # steps between resumable states
    log_every: int = 10
    seed: int = 42
    device: str = "auto"
    amp: bool = True  # mixed precision, CUDA only


@dataclass
class InferenceConfig:
    """Large-scene segmentation."""

    tile_size: int = 512
    overlap: int = 64
    batch_size: int = 4
    device: str = "auto"
    backend: str = "auto"  # "torch", "onnx" or "auto"
    amp: bool = True
    threads: int = 0
    # network precision: "fp32", "bf16", "int8", or "auto" (measured per model and machine;
    # engine.inference.precision)
    precision: str = "auto"
    blend: str = "cosine"  # overlap weight ramp: "cosine", "linear" or "none"
    water_threshold: float = DistillConfig.water_threshold  # teacher gate: confident water above
    non_water_threshold: float = DistillConfig.non_water_threshold  # and confident non-water below
    queue_size: int = 2  # batches buffered between reader, network and writer threads
    # logits averaged over 4 flips of each tile (engine.inference.flips): 4x the network's time
    flip_average: bool = False
    # a SAR-only land-cover model run with a water teacher takes its class map's water from the teacher
    # (engine.inference.products): more flood water found, more false water on dry land
    # (docs/experiments/sar_only.md, "Water from the water expert"), so off unless asked
    water_from_expert: bool = False
    # the most NIR reflectance open water has (clear under ~0.05, turbid up to ~0.1-0.15): where the optical's NIR
    # band is above it, the student's water stands only where the SAR water expert agrees; at or under it, the
    # expert's water joins the map (engine.inference.spectral). A real snowy pair 4.5 -> 0.4 % water; two real
    # flood chips' water IoU 39.8 -> 63.2 and 0.7 -> 81.0 (docs/experiments/zero_shot_real.md, "Snow"); 0: NIR not read
    water_max_nir: float = 0.15


@dataclass
class ModelMetadata:
    """Everything a checkpoint carries beside its weights."""

    kind: str = "student"  # "student" or "teacher"
    model: Dict[str, Any] = field(default_factory=dict)  # StudentConfig or TeacherConfig dict
    schema: ClassSchema = field(default_factory=ClassSchema)
    bands: BandMapping = field(default_factory=BandMapping)
    optical_normalization: Optional[NormalizationRecord] = None
    sar_normalization: Optional[NormalizationRecord] = None
    sar_preprocess: SarPreprocessConfig = field(default_factory=SarPreprocessConfig)
    optical_preprocess: OpticalPreprocessConfig = field(default_factory=OpticalPreprocessConfig)
    train: Dict[str, Any] = field(default_factory=dict)
    metrics: Dict[str, Any] = field(default_factory=dict)
    # statistics of the training data (units, per-band quantiles of the features), used to
    # warn when a scene is far outside them (engine.inputs.shift)
    input_stats: Dict[str, Any] = field(default_factory=dict)
    contract_version: int = CONTRACT_VERSION
    engine_version: str = ""
    created: str = ""
