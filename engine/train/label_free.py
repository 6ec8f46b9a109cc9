"""The label-free adaptation of the water expert: which expert adapts, where a large scene is read,
the automatic pseudo-labels on the canvas tiles, which layers learn, and how far the map moved.

:func:`engine.train.finetune.finetune_from_polygons` runs it when no polygon holds water; the
pseudo-labels themselves (split-based threshold, region growing) come from :mod:`engine.water`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from rasterio.windows import Window

from ..inputs.contract import InputOverrides
from ..progress import Progress
from ..water.calibration import water_heads
from ..water.experts import choose_water_expert, load_water_expert
from .area_cache import BLOCK, IGNORE, WHOLE_AREA_PIXELS, Tile, canvas_area

PathLike = Union[str, Path]
WATER_EDGE_BLOCKS = 6
"""Blocks where water meets land that a label-free adaptation of a large scene reads (of 512 px)."""


def water_expert_for(teacher_path: PathLike, sar: PathLike, overrides: Optional[InputOverrides],
                     progress: Progress) -> Optional[tuple]:
    """The VV + VH pair, its (companion's) metadata, the VV teacher's and the overrides reading its two
    bands, when the scene's zero-shot water map comes from the pair (:mod:`engine.water.experts`);
    None when it comes from ``teacher_path`` alone. A label-free adaptation then adapts the map the
    user saw: the pair learns as it answers, through its mean logits."""
    from ..models.checkpoint import read_metadata

    given = overrides or InputOverrides()
    choice = choose_water_expert(teacher_path, sar, given.sar_bands, given.sar_units)
    if not choice.dual_pol:
        return None
    progress.info(choice.reason + "; both adapt to this scene and are saved side by side")
    pair, dual_meta = load_water_expert(choice, teacher_path)
    return pair, dual_meta, read_metadata(teacher_path), dataclasses.replace(given, sar_bands=choice.sar_bands)


def water_edge_blocks(resolved, area: Tuple[int, int, int, int], seed: int, progress: Progress) -> Tuple[List, Any]:
    """Blocks of a large area where the scene threshold's water meets its land: a label-free
    adaptation reads these (plus the usual random blocks) instead of random blocks only, which
    often hold no water (:func:`engine.water.pseudo_labels.mixed_blocks`). Also returns the
    threshold estimated for them (None for an area read whole), which the pseudo-labels reuse."""
    from ..water.pseudo_labels import mixed_blocks
    from ..water.source import file_source
    from ..water.threshold import estimate_threshold, threshold_config

    if (area[2] - area[0]) * (area[3] - area[1]) <= WHOLE_AREA_PIXELS:
        return [], None  # read whole anyway
    cfg = threshold_config(resolved.sar_relative_levels)
    source = file_source(resolved.sar_path, resolved.bands.sar_bands[0], first_band_db(resolved))
    result = estimate_threshold(source, cfg, progress.sub(0.0, 0.5))
    blocks = mixed_blocks(source, result, area, BLOCK, WATER_EDGE_BLOCKS, cfg, seed, progress.sub(0.5, 1.0))
    if blocks:
        progress.info(f"large scene: the water expert adapts on {len(blocks)} blocks where the scene's water meets "
                      "its land, and a few others")
    return blocks, result


def first_band_db(resolved) -> Callable[[np.ndarray], np.ndarray]:
    """dB of the first SAR band the model reads, whatever the file's units (the threshold works in dB)."""
    from ..preprocess.sar import to_linear_power

    cfg = resolved.sar_cfg
    one_band = dataclasses.replace(cfg, calibration_constants=cfg.calibration_constants[:1],
                                   band_offsets_db=cfg.band_offsets_db[:1], noise_floors_db=cfg.noise_floors_db[:1])

    def to_db(values: np.ndarray) -> np.ndarray:
        power = to_linear_power(np.asarray(values, np.float32)[None], one_band)[0]
        return 10.0 * np.log10(np.maximum(power, 1e-10))
    return to_db


def with_pseudo_labels(tiles: Sequence[Tile], resolved, schema, out_dir: Path, progress: Progress,
                       teacher_water: Optional[Callable[[Tile], np.ndarray]] = None, veto: float = 1.0,
                       threshold=None):
    """Canvas tiles whose unlabelled pixels carry the scene's automatic water / non-water labels
    (split-based threshold, region growing, ambiguous pixels left out: :mod:`engine.water`);
    drawn labels win where they exist, held-out pixels stay out. Pseudo non-water is dropped
    where ``teacher_water(tile)`` exceeds ``veto``; ``threshold``: the scene's, when already estimated."""
    import tempfile

    from ..raster.io import read_bands
    from ..water.pseudo_labels import write_pseudo_labels
    from ..water.threshold import threshold_config

    other = next(c for c in schema.ids if c != schema.water_class)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".pseudo-") as tmp:
        report = write_pseudo_labels(resolved.sar_path, Path(tmp) / "labels.tif", Path(tmp) / "confidence.tif",
                                     band=resolved.bands.sar_bands[0],
                                     cfg=threshold_config(resolved.sar_relative_levels), to_db=first_band_db(resolved),
                                     progress=progress.sub(0.1, 0.15), result=threshold)
        out, vetoed = [], 0
        for t in tiles:
            if t.split != "canvas":
                out.append(t)
                continue
            c0, r0, c1, r1 = t.box
            raw = read_bands(report["label_path"], [1], Window(c0, r0, c1 - c0, r1 - r0))[0]
            if teacher_water is not None and veto < 1:
                drop = (raw == 0) & (teacher_water(t) > veto) & t.valid
                vetoed += int(drop.sum())
                raw = np.where(drop, IGNORE, raw)
            pseudo = np.where(raw == 1, schema.water_class, np.where(raw == 0, other, IGNORE))
            label = np.where(t.label != IGNORE, t.label, np.where(t.valid, pseudo, IGNORE)).astype(np.int64)
            out.append(dataclasses.replace(t, label=label))
    return out, dict({k: v for k, v in report.items() if k in ("threshold", "pixels")}, vetoed_by_teacher=vetoed)


def pseudo_label_params(teacher: torch.nn.Module, layers: str) -> Tuple[List[torch.nn.Parameter], str]:
    """The teacher's parameters that learn from pseudo-labels (``FinetuneConfig.pseudo_label_layers``)
    and which layers they are; the others are frozen, so no gradient is computed for them."""
    try:
        heads = water_heads(teacher)  # a pair's two heads: it learns as it answers, through its mean logits
    except ValueError:  # no separate two-class classifier
        heads = []
    if layers != "head" or not heads:
        return list(teacher.parameters()), "all"
    learning = [p for head in heads for p in head.parameters()]
    keep = {id(p) for p in learning}
    for param in teacher.parameters():
        param.requires_grad_(id(param) in keep)
    return learning, "head"


WATER_CHANGE_CODES = {"land in both": 0, "water in both": 1, "water to land": 2, "land to water": 3}
"""Per pixel read, how the adapted water map compares with the zero-shot one (``water_change.tif``;
255: not read, or no valid SAR)."""


def change_codes(tiles: Sequence[Tile], before: Sequence[np.ndarray]) -> List[np.ndarray]:
    """Per tile, :data:`WATER_CHANGE_CODES` of the adapted answers (the tiles' ``teacher_water``) against
    ``before`` (the zero-shot answers, water True)."""
    codes = WATER_CHANGE_CODES
    out = []
    for tile, was in zip(tiles, before):
        now = tile.teacher_water > 0.5
        code = np.where(was, np.where(now, codes["water in both"], codes["water to land"]),
                        np.where(now, codes["land to water"], codes["land in both"]))
        out.append(np.where(tile.valid & np.isfinite(tile.teacher_water), code, 255).astype(np.uint8))
    return out


def map_change(codes: Sequence[np.ndarray]) -> Dict[str, Any]:
    """How far the adapted water map moved from the zero-shot one (:func:`change_codes`), as shares of the
    valid pixels the adaptation read. Without labels the adaptation's accuracy is unknown; where the two
    maps differ is where a user should look."""
    counts = np.bincount(np.concatenate([c.ravel() for c in codes] + [np.empty(0, np.uint8)]), minlength=256)
    valid = int(counts[:4].sum())
    share = {name: (round(int(counts[v]) / valid, 4) if valid else None) for name, v in WATER_CHANGE_CODES.items()}
    if not valid:
        return {"pixels": 0, "water_before": None, "water_after": None, "water_to_land": None,
                "land_to_water": None, "changed": None}
    return {"pixels": valid,
            "water_before": round(share["water in both"] + share["water to land"], 4),
            "water_after": round(share["water in both"] + share["land to water"], 4),
            "water_to_land": share["water to land"], "land_to_water": share["land to water"],
            "changed": round(share["water to land"] + share["land to water"], 4)}


def removed_share(change: Dict[str, Any]) -> float:
    """The share of the zero-shot map's water that the adapted map calls land (0 where it had none)."""
    before, lost = change.get("water_before"), change.get("water_to_land")
    return float(lost / before) if before and lost is not None else 0.0


def own_water_removed(labels: Sequence[np.ndarray], before: Sequence[np.ndarray], after: Sequence[np.ndarray],
                      water: int) -> float:
    """Of the pixels the pseudo-labels call water and the zero-shot map (``before``, water True) calls water, the
    share the adapted answers (``after``, probabilities) call land: the adaptation contradicting its own labels."""
    mine = lost = 0
    for label, was, now in zip(labels, before, after):
        if label.shape != was.shape or now.shape != was.shape:
            raise ValueError(f"pseudo-labels {label.shape} and water maps {was.shape}, {now.shape} do not match")
        own = (label == water) & was
        mine += int(own.sum())
        lost += int((own & ~(now > 0.5)).sum())  # NaN (no SAR) is not > 0.5, but no pseudo-label lies there
    return lost / mine if mine else 0.0


def change_message(change: Dict[str, Any]) -> str:
    if change["water_after"] is None:
        return "the adapted water expert read no valid pixel"
    return (f"the adapted water expert calls {change['water_after']:.1%} of the {change['pixels']} pixels it read "
            f"water, the zero-shot one {change['water_before']:.1%}: {change['water_to_land']:.1%} went from water "
            f"to land and {change['land_to_water']:.1%} from land to water. Without labels its accuracy is "
            "unknown; compare the two water maps where they differ (water_change.tif in the run folder shows where)")


def write_pseudo_label_raster(tiles: Sequence[Tile], grid, water: int, path: Path) -> Optional[str]:
    """``pseudo_labels.tif`` over the training canvas: what the water expert learnt from without
    labels (1 water, 0 not water, 255 left out: near the threshold, specks, far darker than water,
    vetoed by the teacher, outside the canvas or without SAR). None when no pixel was labelled."""
    canvas = [t for t in tiles if t.split == "canvas"]
    if not canvas or not any((t.label != IGNORE).any() for t in canvas):
        return None
    values = [np.where((t.label != IGNORE) & t.valid, (t.label == water).astype(np.uint8), 255) for t in canvas]
    return _write_canvas(canvas, values, grid, path, "water_pseudo_label")


def write_water_change_raster(tiles: Sequence[Tile], codes: Sequence[np.ndarray], grid, path: Path) -> Optional[str]:
    """``water_change.tif`` over the pixels the adaptation read: each tile's :func:`change_codes`, so that a
    user can see where the adapted and the zero-shot water maps differ."""
    return _write_canvas(tiles, codes, grid, path, "water_change") if tiles else None


def _write_canvas(canvas: Sequence[Tile], values: Sequence[np.ndarray], grid, path: Path, name: str) -> str:
    """One uint8 band (nodata 255) over the box around the canvas tiles, each tile's ``values`` in its window."""
    from ..raster.io import open_writer

    area, c0, r0 = canvas_area(canvas, grid)
    with open_writer(path, area, 1, "uint8", 255, True, [name]) as dst:
        for t, v in zip(canvas, values):  # tile by tile: blocks no tile covers stay nodata, whatever the area's size
            window = Window(t.box[0] - c0, t.box[1] - r0, t.box[2] - t.box[0], t.box[3] - t.box[1])
            dst.write(v.astype(np.uint8)[None], window=window)
    return str(path)
