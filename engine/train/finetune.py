"""Fine-tuning from a few drawn polygons: fast, honestly validated, never collapsing.

The loop a user runs from the dock: draw polygons where the map is wrong, fine-tune, see the
map improve. In order:

1. the inputs are resolved by the input contract with the student's recipe (units detected,
   as segmentation does); the polygons are grouped in space and whole groups are held out
   for validation (:mod:`.polygon_split`);
2. tiles around the polygons, and unlabelled context tiles, are read once into memory
   (:mod:`.area_cache`); every step then costs only the networks;
3. the SAR water teacher is fine-tuned on the polygons (water vs the rest), or, when none holds
   water, adapts from automatic pseudo-labels (:mod:`.label_free`); then the student,
   with the segmentation losses plus distillation from the teacher: the paper's gates on
   labelled pixels and, by default, the teacher's confident pixels of the unlabelled area;
4. BatchNorm statistics stay frozen (:func:`.loop.train_mode`), the best state on the held-out
   polygons is kept (early stopping), and the held-out figures are reported next to a
   per-pixel linear classifier fitted on the same training polygons (:mod:`.baseline`).
   With nothing to hold out, accuracy is reported as unmeasured, never as a number.

All outputs are written into a temporary folder and moved into place at the end, so a cancel
or an error leaves the output folder as it was.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from rasterio.windows import Window

from .. import __version__
from ..config import PSEUDO_LABEL_LAYERS, ClassSchema, DistillConfig, FinetuneConfig, ModelMetadata, to_dict
from ..files import atomic_write_bytes
from ..inputs.contract import InputOverrides, InputRecipe, resolve_for, resolve_inputs, takes_optical
from ..inputs.reader import PairReader
from ..losses import (
    binary_water_target,
    build_segmentation_loss,
    build_teacher_loss,
    gate_masks,
    gated_distillation,
    inverse_frequency_weights,
    keep_undrawn_loss,
    loss_config_of,
)
from ..metrics import ConfusionMatrix, on_measured_classes
from ..models.checkpoint import load_model, save_model
from ..models.prior import remove_prior_correction
from ..progress import NULL_PROGRESS, Progress
from ..raster.grid import grid_of, north_up
from ..raster.labels import skipped_message
from ..validate import FINETUNE_RUN_FILES as OUTPUTS
from ..validate import check_learning_rate
from ..water.experts import choose_water_expert, companion_path
from ..water.scene_cut import spread, with_scene_cut
from .area_cache import IGNORE, CropSampler, Tile, build_cache, canvas_area
from .baseline import fit_lda
from .label_free import (
    change_codes,
    change_message,
    map_change,
    own_water_removed,
    pseudo_label_params,
    removed_share,
    water_edge_blocks,
    water_expert_for,
    with_pseudo_labels,
    write_pseudo_label_raster,
    write_water_change_raster,
)
from .loop import resolve_device, train_mode
from .polygon_split import PolygonSplit, read_polygons, split_polygons

PathLike = Union[str, Path]


def _groups(split_polys, all_groups) -> List[list]:
    index = {p.index: p for p in split_polys}
    return [[index[i] for i in g] for g in all_groups if g and g[0] in index]


@torch.no_grad()
def _predict(model: torch.nn.Module, tile: Tile, teacher: bool, device: torch.device) -> np.ndarray:
    """Class ids (student) or water probability (teacher) of a whole tile, in eval mode."""
    model.eval()
    if teacher:
        x = torch.from_numpy(tile.teacher_sar[None]).to(device)
        return torch.softmax(model(x).float(), 1)[0, 1].cpu().numpy()
    return _student_logits(model, tile, device).argmax(1)[0].cpu().numpy()


@torch.no_grad()
def _student_probs(model: torch.nn.Module, tile: Tile, device: torch.device) -> np.ndarray:
    """The student's class probabilities (K, h, w) over a whole tile, in eval mode."""
    return torch.softmax(_student_logits(model, tile, device), 1)[0].cpu().numpy()


def _student_logits(model: torch.nn.Module, tile: Tile, device: torch.device) -> torch.Tensor:
    model.eval()
    o, s = (torch.from_numpy(a[None]).to(device) for a in (tile.optical, tile.sar))
    return model(o, s).float()


def _held_out_without_pixels(split: PolygonSplit, val_tiles: Sequence[Tile], schema: ClassSchema) -> Optional[str]:
    """Why a class held out for validation is unmeasured after all: its held-out polygons cover no valid
    pixel (nodata in the imagery there), or None."""
    held = sorted({p.class_id for p in split.val})
    labels = np.concatenate([t.label.ravel() for t in val_tiles] + [np.empty(0, np.int64)])
    counts = np.bincount(labels[labels != IGNORE], minlength=schema.num_classes)
    blank = [c for c in held if counts[c] == 0]
    if not blank:
        return None
    names = ", ".join(f"{schema.names[c]} ({sum(p.class_id == c for p in split.val)} polygon(s))" for c in blank)
    return (f"the held-out polygons of {names} cover no valid pixel of the imagery (nodata there), so "
            f"{'that class is' if len(blank) == 1 else 'those classes are'} unmeasured; draw them where both "
            "rasters hold data")


def _score(tiles: Sequence[Tile], predict: Callable[[Tile], np.ndarray], classes: int) -> Dict[str, Any]:
    """Figures on the held-out polygons, over the classes they hold only: a class no held-out polygon
    holds is unmeasured (None), never 0.0, and every model's mIoU averages the same classes."""
    cm = ConfusionMatrix(classes, IGNORE)
    for tile in tiles:
        cm.update(predict(tile), tile.label)
    return on_measured_classes(cm.compute())


def _binary(label: np.ndarray, water: int) -> np.ndarray:
    return np.where(label == IGNORE, IGNORE, (label == water).astype(np.int64))


def _features(tile: Tile, teacher: bool) -> np.ndarray:
    arrays = (tile.teacher_sar,) if teacher else (tile.optical, tile.sar)
    return np.concatenate(arrays).reshape(sum(a.shape[0] for a in arrays), -1).T


def baseline_scores(
    train: Sequence[Tile], val: Sequence[Tile], classes: int, water: int, with_optical: bool = True
) -> Dict[str, Any]:
    """Per-pixel linear discriminant on the networks' inputs: fitted on training polygons,
    scored on the held-out ones (all classes; and water vs the rest on the SAR alone)."""
    out: Dict[str, Any] = {}
    for name, teacher in (("student", False), ("teacher", True)):
        if not teacher and not with_optical:
            continue
        x = np.concatenate([_features(t, teacher)[t.label.ravel() != IGNORE] for t in train])
        y = np.concatenate([t.label.ravel()[t.label.ravel() != IGNORE] for t in train])
        if teacher:
            y = (y == water).astype(np.int64)
        try:
            lda = fit_lda(x, y)
        except ValueError:
            out[name] = None
            continue
        n = 2 if teacher else classes

        def predict(tile: Tile, lda=lda, teacher=teacher) -> np.ndarray:
            return lda.predict(_features(tile, teacher)).reshape(tile.label.shape)

        tiles = [dataclasses.replace(t, label=_binary(t.label, water)) for t in val] if teacher else val
        out[name] = _score(tiles, predict, n)
    return out


class _Fitter:
    """Steps, validation every ``eval_every`` steps, early stopping and the best state."""

    def __init__(self, model, params, cfg: FinetuneConfig, steps: int, progress: Progress, label: str) -> None:
        self.model, self.cfg, self.steps, self.progress, self.label = model, cfg, steps, progress, label
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda i: 0.5 * (1 + np.cos(np.pi * min(i, steps) / max(steps, 1)))
        )
        self.history: List[Dict[str, Any]] = []

    def run(self, step_loss: Callable[[], Tuple[torch.Tensor, Dict[str, float]]],
            evaluate: Optional[Callable[[], float]]) -> Dict[str, Any]:
        best = evaluate() if evaluate else None
        start_score, best_step, bad = best, 0, 0
        best_state = copy.deepcopy(self.model.state_dict()) if evaluate else None
        logs: Dict[str, float] = {}
        for step in range(1, self.steps + 1):
            self.progress.check()
            train_mode(self.model, freeze_batchnorm=True)
            loss, terms = step_loss()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            for k, v in {"loss": float(loss.detach()), **terms}.items():
                logs[k] = logs.get(k, 0.0) + v
            self.progress.report(step / self.steps, f"fine-tuning the {self.label}: step {step}/{self.steps}")
            if step % self.cfg.eval_every and step != self.steps:
                continue
            record = {"step": step, **{k: v / self.cfg.eval_every for k, v in logs.items()}}
            logs = {}
            if evaluate:
                score = evaluate()
                record["val_score"] = score
                # a tie goes to the later model: it has learnt from the polygons, and a held-out
                # set that is already perfect (one water polygon: IoU 1.0) must not veto it
                if score >= best:
                    best, best_step, bad = score, step, 0
                    best_state = copy.deepcopy(self.model.state_dict())
                else:
                    bad += 1
            self.history.append(record)
            if evaluate and bad >= self.cfg.patience:
                break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        return {"steps_run": self.history[-1]["step"] if self.history else 0, "best_step": best_step,
                "start_score": start_score, "best_score": best, "history": self.history}


def _teacher_step(teacher, sampler: CropSampler, cfg: FinetuneConfig, criterion, water: int, device,
                  keep: bool = False):
    """One step's loss; ``keep``: the starting teacher's sure answers (tiles' ``teacher_start``) stay targets."""
    n_context = cfg.batch_size // 2 if keep else 0

    def step() -> Tuple[torch.Tensor, Dict[str, float]]:
        batch = sampler.batch(cfg.batch_size - n_context, n_context)
        sar = batch["teacher_sar"].to(device)
        label = batch["label"].to(device)
        logits = teacher(sar).float()
        loss = criterion(logits, binary_water_target(label, water, IGNORE), sar)
        if not keep:
            return loss, {}
        held = keep_undrawn_loss(logits, batch["teacher_start"].to(device).float(),
                                 (label == IGNORE) & batch["valid"].to(device), (0, 1),
                                 1.0 - cfg.teacher_keep_confidence)
        return loss + cfg.teacher_keep * held, {"keep_loss": float(held.detach())}
    return step


def _pseudo_target(label: torch.Tensor, p_water: torch.Tensor, valid: torch.Tensor, water: int, other: int,
                   dcfg: DistillConfig, teacher_water: bool = True) -> torch.Tensor:
    """Labels plus, on valid unlabelled pixels, water / non-water where the teacher is confident,
    so the one gate rule (:func:`engine.losses.distill.gate_masks`) gates them too; without
    ``teacher_water`` (the teacher contradicts the drawn land: :func:`_teacher_on_drawn_land`) only
    its non-water."""
    unlabelled = (label == IGNORE) & valid & torch.isfinite(p_water)
    sure_water = unlabelled & (p_water > dcfg.water_threshold) & teacher_water
    sure_other = unlabelled & (p_water < dcfg.non_water_threshold)
    out = torch.where(sure_water, torch.full_like(label, water), label)
    return torch.where(sure_other, torch.full_like(label, other), out)


def _student_step(student, sampler: CropSampler, cfg: FinetuneConfig, criterion, schema, use_teacher: bool,
                  device, kept: Sequence[int] = (), teacher_water: bool = True
                  ) -> Callable[[], Tuple[torch.Tensor, Dict[str, float]]]:
    """One step's loss; ``kept``: the undrawn classes whose starting answers stay targets (tiles' ``start_probs``);
    ``teacher_water``: whether the teacher's confident water on unlabelled pixels is distilled."""
    water = schema.water_class
    other = next(c for c in schema.ids if c != water)
    dcfg = DistillConfig(lambda_kd=cfg.lambda_kd)
    n_context = cfg.batch_size // 2 if ((use_teacher and cfg.kd == "unlabelled") or kept) else 0

    def step() -> Tuple[torch.Tensor, Dict[str, float]]:
        batch = sampler.batch(cfg.batch_size - n_context, n_context)
        label = batch["label"].to(device)
        logits = student(batch["optical"].to(device), batch["sar"].to(device)).float()
        loss = criterion(logits, label)
        terms = {"seg_loss": float(loss.detach())}
        if use_teacher and cfg.kd != "none":
            p_water = batch["teacher_water"].to(device)
            target = label
            if cfg.kd == "unlabelled":
                target = _pseudo_target(label, p_water, batch["valid"].to(device), water, other, dcfg, teacher_water)
            kd = gated_distillation(logits, torch.nan_to_num(p_water, nan=0.5), target, water, dcfg, IGNORE)
            loss = loss + cfg.lambda_kd * kd.loss
            pixels = float(label.numel())
            terms.update(kd_loss=float(kd.loss.detach()), kd_ratio=kd.ratio, kd_ratio_water=kd.n_water / pixels,
                         kd_ratio_non_water=kd.n_non_water / pixels)
        if kept:
            keep = keep_undrawn_loss(logits, batch["start_probs"].to(device).float(),
                                     (label == IGNORE) & batch["valid"].to(device), kept, cfg.keep_min_confidence)
            loss = loss + cfg.keep_undrawn * keep
            terms["keep_loss"] = float(keep.detach())
        return loss, terms
    return step


def write_gate_rasters(tiles: Sequence[Tile], grid, schema, cfg: FinetuneConfig, folder: Path,
                       teacher_water: bool = True) -> Dict[str, Any]:
    """``gates.tif`` over the training canvas (1 water gate, 2 non-water gate, 0 labelled but not
    distilled, 255 not distilled) and ``kd_ratio.tif``: per block of one crop, the share of valid
    pixels inside a gate (bands: all, water, non-water); ``teacher_water`` as for :func:`_student_step`."""
    from affine import Affine

    from ..raster.grid import Grid
    from ..raster.io import open_writer

    canvas = [t for t in tiles if t.split == "canvas" and t.teacher_water is not None]
    if not canvas:
        return {}
    area, c0, r0 = canvas_area(canvas, grid)
    block = cfg.crop_size
    ny, nx = -(-area.height // block), -(-area.width // block)
    # per ratio cell: valid pixels, pixels in a gate, in the water gate, in the non-water gate
    counts = np.zeros((4, ny * nx), np.int64)
    dcfg = DistillConfig()
    other = next(c for c in schema.ids if c != schema.water_class)
    with open_writer(folder / "gates.tif", area, 1, "uint8", 255, True, ["gate"]) as dst:
        for t in canvas:  # tile by tile: memory does not grow with the canvas's extent
            label, p, ok = (torch.from_numpy(a) for a in (t.label, t.teacher_water, t.valid))
            if cfg.kd == "unlabelled":
                label = _pseudo_target(label, p, ok, schema.water_class, other, dcfg, teacher_water)
            m_water, m_non = gate_masks(p, label, schema.water_class, dcfg, IGNORE)
            out = np.where(t.label != IGNORE, 0, 255).astype(np.uint8)
            if cfg.kd != "none":
                out[m_water.numpy()], out[m_non.numpy()] = 1, 2
            (tc0, tr0, tc1, tr1) = t.box
            dst.write(out[None], window=Window(tc0 - c0, tr0 - r0, tc1 - tc0, tr1 - tr0))
            cell = ((np.arange(tr0, tr1) - r0) // block)[:, None] * nx + ((np.arange(tc0, tc1) - c0) // block)[None]
            for k, mask in enumerate((t.valid, (out == 1) | (out == 2), out == 1, out == 2)):
                counts[k] += np.bincount(cell[mask], minlength=ny * nx)
    ratio = np.full((3, ny * nx), np.nan, np.float32)
    seen = counts[0] > 0
    ratio[:, seen] = counts[1:, seen] / counts[0, seen]
    coarse = Grid(area.crs_wkt, area.transform * Affine.scale(block), nx, ny)
    with open_writer(folder / "kd_ratio.tif", coarse, 3, "float32", float("nan"), True,
                     ["kd_ratio", "kd_ratio_water", "kd_ratio_non_water"]) as dst:
        dst.write(ratio.reshape(3, ny, nx))
    n = max(int(counts[0].sum()), 1)
    return {
        "kd_ratio": float(counts[1].sum() / n),
        "kd_ratio_water": float(counts[2].sum() / n),
        "kd_ratio_non_water": float(counts[3].sum() / n),
    }


def _teacher_on_drawn_land(tiles: Sequence[Tile], water: int) -> Dict[str, Any]:
    """The share of the drawn non-water pixels (training polygons) the teacher calls water (p > 0.5)."""
    called = drawn = 0
    for t in tiles:
        land = (t.label != IGNORE) & (t.label != water) & t.valid & np.isfinite(t.teacher_water)
        drawn += int(land.sum())
        called += int((t.teacher_water[land] > 0.5).sum())
    return {"pixels": drawn, "called_water": called, "share": round(called / drawn, 4) if drawn else None}


def _metadata(meta: ModelMetadata, resolved, record: Dict[str, Any], sar_bands: Optional[int] = None) -> ModelMetadata:
    """The fine-tuned model keeps its recipe (chains, stored ranges); it records the units and
    statistics of the scene it was fine-tuned on (of its first ``sar_bands`` SAR bands: the
    co-polarised member of a pair reads VV only), and the run."""
    out = copy.deepcopy(meta)
    out.sar_preprocess = dataclasses.replace(meta.sar_preprocess, units=resolved.sar_cfg.units)
    if resolved.optical_units is not None:
        out.optical_preprocess = dataclasses.replace(meta.optical_preprocess, units=resolved.optical_cfg.units)
    out.input_stats = copy.deepcopy(resolved.stats)
    if sar_bands is not None and "sar" in out.input_stats:
        out.input_stats["sar"]["bands"] = out.input_stats["sar"]["bands"][:sar_bands]
    out.train, out.engine_version = record, __version__
    out.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return out


def finetune_from_polygons(
    optical: Optional[PathLike],
    sar: PathLike,
    polygons: Optional[PathLike],
    class_field: str,
    student_path: Optional[PathLike],
    out_dir: PathLike,
    teacher_path: Optional[PathLike] = None,
    cfg: Optional[FinetuneConfig] = None,
    overrides: Optional[InputOverrides] = None,
    layer: Optional[str] = None,
    area: Optional[Tuple[int, int, int, int]] = None,
    device: str = "auto",
    progress: Progress = NULL_PROGRESS,
    overwrite: bool = False,
    sar_encoder: Optional[PathLike] = None,
) -> Dict[str, Any]:
    """Fine-tune a student (and its teacher) on polygons drawn over an optical + SAR scene.

    Args:
        optical, sar: the scene (any units; resolved by the input contract). Without an optical
            raster (or without a student) only the teacher is fine-tuned: the SAR-only path.
        polygons, class_field, layer: the drawn polygons and the field holding class ids or names;
            without polygons the teacher adapts to the scene from automatic pseudo-labels.
        student_path: the student to fine-tune; ``teacher_path``: its SAR water teacher.
        out_dir: receives ``student.safetensors``, ``teacher.safetensors`` (when fine-tuned),
            ``metrics.json``, ``report.html``, the gate rasters and, when the teacher learnt from
            automatic pseudo-labels, ``pseudo_labels.tif``.
        cfg: steps, crops, learning rate, validation, distillation (:class:`FinetuneConfig`).
        overrides: bands and units the user chose.
        area: ``(col0, row0, col1, row1)`` on the SAR grid the unlabelled context is drawn from.
        device: ``auto``, ``cpu`` or ``cuda[:n]``.
        progress: progress and cancellation (a cancel leaves ``out_dir`` as it was).
        overwrite: replace earlier outputs in ``out_dir``.
        sar_encoder: a pretrained SAR encoder (``engine pretrain-sar``) that replaces the SAR
            encoder of the network it was pretrained for (student or teacher) before fine-tuning;
            a student's encoders then learn only with ``cfg.train_encoders``.

    Returns:
        paths, ``validation`` (held-out figures, or None when unmeasured), ``baseline``,
        teacher figures, the polygon split, warnings and timings.
    """
    cfg = cfg or FinetuneConfig()
    check_learning_rate(cfg.lr)
    if cfg.kd not in ("none", "labelled", "unlabelled"):
        raise ValueError(f"distillation must be none, labelled or unlabelled, got {cfg.kd!r}")
    if cfg.pseudo_label_layers not in PSEUDO_LABEL_LAYERS:
        raise ValueError(f"pseudo_label_layers must be one of {PSEUDO_LABEL_LAYERS}, got {cfg.pseudo_label_layers!r}")
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    existing = [n for n in OUTPUTS if (out_dir / n).exists()]
    if existing and not overwrite:
        raise ValueError(f"{out_dir} already holds {', '.join(existing)}; choose another folder or overwrite")
    dev = resolve_device(device)
    torch.manual_seed(cfg.seed)
    if student_path is not None:
        from ..models.checkpoint import read_metadata

        if not takes_optical(read_metadata(student_path)):  # a SAR-only student reads no optical image
            if optical is not None:
                progress.info(f"{student_path} is a SAR-only model: the optical image {optical} is not read")
            optical = None
        elif optical is None:
            student_path = None
    if student_path is None and teacher_path is None:
        raise ValueError("fine-tuning needs a student (with an optical raster) or a teacher")
    if polygons is None and teacher_path is None:
        raise ValueError("without polygons only the water expert adapts to the scene (automatic pseudo-labels): "
                         "give a teacher")
    if polygons is None and student_path is not None:  # no labels: only the water expert adapts
        progress.info("no polygons: only the water expert adapts to this scene; the student and the optical image "
                      "are not read")
        student_path = optical = None
    student, s_meta = load_model(student_path, "student") if student_path else (None, None)
    teacher, t_meta = load_model(teacher_path, "teacher") if teacher_path else (None, None)
    co_meta = None  # the co-polarised member's metadata when the VV + VH pair adapts
    if polygons is None and teacher is not None:
        teacher, t_meta, co_meta, overrides = water_expert_for(teacher_path, sar, overrides, progress) or (
            teacher, t_meta, None, overrides)
    if sar_encoder:  # like the trained encoders, it stays frozen unless train_encoders (docs/pretraining.md)
        _apply_pretrained(sar_encoder, student, teacher, progress)
    schema = (s_meta or t_meta).schema
    resolved = resolve_inputs(InputRecipe.of(s_meta or t_meta), optical, sar, overrides, progress.sub(0.0, 0.03))
    if optical is None and resolved.sar_only_problem:  # SAR is all it learns from, as a SAR-only map refuses it
        raise ValueError(resolved.sar_only_problem)
    resolved.report(progress)
    warnings = list(resolved.warnings)
    chains = [resolved.preprocessor]
    if teacher is not None and student is not None:
        chains.append(resolve_for(resolved, InputRecipe.of(t_meta)))
    grid = north_up(grid_of(sar))
    reader = PairReader(optical, sar, grid, resolved.bands.optical_bands, resolved.bands.sar_bands, chains)

    start_student, kept = None, []  # kept: the undrawn classes whose starting answers stay targets
    if polygons is not None:
        polys, poly_report = read_polygons(polygons, class_field, grid, schema, layer)
        skipped = skipped_message(polygons, poly_report)
        if skipped:  # said with the other warnings (and kept in metrics.json)
            warnings.append(skipped)
        if student is not None and cfg.keep_undrawn > 0:
            kept = [c for c in schema.ids if c not in {p.class_id for p in polys}]
        if kept:  # the map the user saw, class-prior correction included
            start_student = copy.deepcopy(student)
        if student is not None and remove_prior_correction(student, s_meta.train) is not None:
            # the correction suits zero-shot maps; with the user's polygons the balanced losses
            # decide (kept in, it cost up to 25 points of mIoU on Rotterdam: docs/finetune.md)
            progress.info("the student's class-prior correction is taken out: the fine-tuned model learns this "
                          "scene's classes from your polygons")
    else:  # no labels at all: the teacher adapts to the scene from automatic pseudo-labels
        polys, poly_report, student = [], {"features": 0}, None
    # a held-out group and its margin of context are cut out of the training canvas: polygons
    # closer than that margin stay in one group, so a cut-out never takes a training polygon
    split = split_polygons(polys, gap=cfg.val_margin, val_fraction=cfg.val_fraction, seed=cfg.seed)
    drawn = sorted({p.class_id for p in polys})
    if len(drawn) == 1:
        warnings.append(
            f"all {len(polys)} polygons hold one class ({schema.names[drawn[0]]}): the fine-tune can only learn "
            "where that class is, not where it is not; draw polygons of the other classes where the map is wrong too"
        )
    if polys and not split.measured:
        warnings.append(
            "the polygons form one group (or one per class), so none could be held out: the fine-tuned model's "
            "accuracy is unmeasured; draw polygons in two or more separate places for an honest figure"
        )
    given = overrides or InputOverrides()
    if polygons is not None and teacher is not None and cfg.update_teacher and choose_water_expert(
            teacher_path, sar, given.sar_bands, given.sar_units).dual_pol:
        warnings.append(
            "this SAR raster has VV and VH, and its zero-shot water map comes from the VV + VH water expert; a "
            "fine-tune from polygons trains the VV teacher alone (trained as a pair on a few polygons, it collapsed "
            "on a real chip: docs/finetune.md), so maps made with the fine-tuned teacher read VV only and miss water "
            "that wind makes bright in VV. Compare its map with the zero-shot one"
        )
    for text in warnings[len(resolved.warnings):]:
        progress.warning(text)
    focus, scene_threshold = [], None
    if polygons is None and teacher is not None and cfg.update_teacher and cfg.pseudo_labels:
        focus, scene_threshold = water_edge_blocks(resolved, area or (0, 0, grid.width, grid.height), cfg.seed,
                                                    progress.sub(0.03, 0.06))
    tiles = build_cache(reader, grid, split.train, _groups(split.val, split.groups), cfg.crop_size, cfg.val_margin,
                        area, seed=cfg.seed, progress=progress.sub(0.06, 0.1), focus=focus)
    train_tiles = [t for t in tiles if t.split == "canvas"]
    water = schema.water_class
    val_tiles = [t for t in tiles if t.split == "val"]
    blank = _held_out_without_pixels(split, val_tiles, schema)
    if blank:
        warnings.append(blank)
        progress.warning(blank)
    t_read = time.perf_counter()
    result: Dict[str, Any] = {"split": split.summary(schema), "polygons": poly_report, "warnings": warnings,
                              "water_class": water, "classes": list(schema.names), "crop_size": cfg.crop_size,
                              "scene_cut": None}
    teacher_done = False
    teacher_water = True  # the teacher's confident water on unlabelled pixels is distilled
    hist = np.bincount(np.concatenate([t.label[t.label != IGNORE] for t in train_tiles] + [np.empty(0, np.int64)]),
                       minlength=256)
    binary = [int(hist[:schema.num_classes].sum() - hist[water]), int(hist[water])]
    drawn_cut = cfg.update_teacher and polygons is not None and min(binary) > 0
    if teacher is not None and resolved.sar_relative_levels and drawn_cut:
        # drawn water and land set the cut; starting from the scene's guess kept its over-called water
        # where no polygon was drawn (Rotterdam's evaluation polygons: 64.2 against 100.0)
        progress.info("relative SAR levels: the drawn water and land polygons set the water expert's cut")
    elif teacher is not None and resolved.sar_relative_levels:
        # relative SAR levels: the teacher's cut comes from this scene (engine.water.scene_cut) before its
        # pseudo-labels, gates or training see it, and the saved teacher keeps it
        teacher, cut = with_scene_cut(teacher.to(dev), ((t.teacher_sar[None], t.valid[None]) for t in spread(tiles)),
                                      dev)
        result["scene_cut"] = round(cut, 4)
        teacher_done = cfg.update_teacher
        progress.info(f"relative SAR levels: the water expert's cut moves to this scene's ({cut:.2f})")

    # -- the teacher: water vs the rest on the training polygons, or on automatic pseudo-labels
    teacher_tiles, zero_shot, water_change, zero_shot_state = tiles, None, None, None
    teacher_params = teacher.parameters() if teacher is not None else None
    if teacher is not None and cfg.update_teacher and (binary[1] == 0 or polygons is None) and cfg.pseudo_labels:
        teacher.to(dev)
        start = {id(t): _predict(teacher, t, True, dev) for t in train_tiles}  # the map the user saw
        zero_shot = [start[id(t)] > 0.5 for t in train_tiles] if polygons is None else None
        if polygons is None:  # kept if the adaptation takes the zero-shot water away
            zero_shot_state = copy.deepcopy(teacher.state_dict())
        teacher_tiles, result["pseudo_labels"] = with_pseudo_labels(
            tiles, resolved, schema, out_dir, progress, lambda t: start[id(t)], cfg.pseudo_label_veto, scene_threshold)
        del start
        pseudo = np.concatenate([t.label[t.label != IGNORE] for t in teacher_tiles if t.split == "canvas"])
        binary = [int((pseudo != water).sum()), int((pseudo == water).sum())]
        teacher_params, layers = pseudo_label_params(teacher, cfg.pseudo_label_layers)
        result["pseudo_labels"]["layers"] = layers
        progress.info(
            f"no water polygon: the water expert adapts to this scene from automatic pseudo-labels "
            f"({binary[1]} water, {binary[0]} non-water pixels; threshold "
            f"{result['pseudo_labels']['threshold'].get('threshold_db')} dB; learning: "
            f"{'its water classifier' if layers == 'head' else 'every layer'})"
        )
    if teacher is not None:
        teacher.to(dev)
        val_binary = [dataclasses.replace(t, label=_binary(t.label, water)) for t in val_tiles]
        evaluate_teacher = None
        if split.measured and any((t.label == 1).any() for t in val_binary):
            def evaluate_teacher() -> float:
                return _score(val_binary, lambda t: (_predict(teacher, t, True, dev) > 0.5).astype(np.int64),
                              2)["iou"][1] or 0.0
        if cfg.update_teacher and min(binary) > 0:
            weights = inverse_frequency_weights(binary)
            criterion = build_teacher_loss(loss_config_of(t_meta.train), weights, IGNORE).to(dev)  # the model's own
            # drawn labels only: pseudo-labels already come from the scene, and on relative levels the
            # starting answers rest on the Sentinel-1 cut the polygons replace
            keep = cfg.teacher_keep > 0 and teacher_tiles is tiles and not resolved.sar_relative_levels
            if keep:  # the drawn polygons teach; elsewhere the starting expert's sure answers stay
                for tile in train_tiles:
                    progress.check()
                    p_water = _predict(teacher, tile, True, dev)
                    tile.teacher_start = np.stack([1.0 - p_water, p_water]).astype(np.float16)
            sampler = CropSampler(teacher_tiles, cfg.crop_size, cfg.seed)
            fitter = _Fitter(teacher, teacher_params, cfg, cfg.teacher_steps, progress.sub(0.1, 0.4), "teacher")
            result["teacher_fit"] = fitter.run(_teacher_step(teacher, sampler, cfg, criterion, water, dev, keep),
                                               evaluate_teacher)
            for tile in train_tiles:
                tile.teacher_start = None  # used up: free the memory before the student's turn
            teacher_done = True
        elif cfg.update_teacher and polygons is None:
            note = (result.get("pseudo_labels") or {}).get("threshold", {}).get("note") or "pseudo-labels are off"
            kept = "keeps only this scene's cut" if result["scene_cut"] is not None else "is kept as it was"
            progress.warning(f"no water threshold could be trusted in this scene ({note}): the water expert {kept}; "
                             "draw water and land polygons to fine-tune it")
        elif cfg.update_teacher:
            progress.info("the polygons do not hold both water and other classes: the teacher is kept as it was")
        if evaluate_teacher:
            result["teacher_validation"] = _score(
                val_binary, lambda t: (_predict(teacher, t, True, dev) > 0.5).astype(np.int64), 2)
        for tile in tiles:
            tile.teacher_water = _predict(teacher, tile, True, dev).astype(np.float32)
        if zero_shot is not None and teacher_done:
            water_change = change_codes(train_tiles, zero_shot)
            result["pseudo_labels"]["change"] = map_change(water_change)
            progress.info(change_message(result["pseudo_labels"]["change"]))
            removed = removed_share(result["pseudo_labels"]["change"])
            own = own_water_removed([t.label for t in teacher_tiles if t.split == "canvas"], zero_shot,
                                    [t.teacher_water for t in train_tiles], water)
            result["pseudo_labels"]["change"]["own_water_to_land"] = round(own, 4)
            gate, own_gate = cfg.pseudo_label_max_removed, cfg.pseudo_label_max_own_removed
            wide = gate < 1 and removed >= gate
            if zero_shot_state is not None and (wide or (own_gate < 1 and own >= own_gate)):
                teacher.load_state_dict(zero_shot_state)  # with this scene's cut, where relative levels set one
                for tile in tiles:
                    tile.teacher_water = _predict(teacher, tile, True, dev).astype(np.float32)
                teacher_done = result["scene_cut"] is not None
                result["pseudo_labels"]["kept_zero_shot"] = True
                kept = "keeps only this scene's cut" if teacher_done else "is kept as it was"
                why = (f"took {removed:.0%} of the water the zero-shot expert maps to land, where no pseudo-label "
                       "said land (they leave out what the expert calls water)" if wide else
                       f"took {own:.1%} of the water its own pseudo-labels call water (and the zero-shot expert "
                       "too) to land")
                warnings.append(
                    f"the adaptation {why}: it is not kept, and the water expert {kept}. "
                    + ("Water its pseudo-labels cannot see (wind-roughened water, bright in VV and dark in VH) "
                       "does this; " if wide else "")
                    + "water_change.tif shows what it would have changed. Draw water and land polygons to fine-tune "
                    "it instead")
                progress.warning(warnings[-1])
        result["teacher_on_drawn_land"] = _teacher_on_drawn_land(train_tiles, water)
        share = result["teacher_on_drawn_land"]["share"]
        if student is not None and cfg.kd == "unlabelled" and share is not None and share > cfg.teacher_contradiction:
            teacher_water = False
            warnings.append(
                f"the water expert calls {share:.0%} of your non-water polygons water: there the SAR is as dark as "
                "water (wet snow, dry sand, tarmac or radar shadow?). Its water is therefore not taught to the "
                "student outside your polygons, and its water map of this scene is not to be trusted on such "
                "ground; draw water polygons, if the scene has water, so that it learns the difference")
            progress.warning(warnings[-1])
    t_teacher = time.perf_counter()

    # -- the student: segmentation losses + distillation from the teacher
    result["validation"] = result["baseline"] = None
    if student is not None:
        student.to(dev)
        classes = schema.num_classes
        weights = inverse_frequency_weights(hist[:classes]) if hist[:classes].sum() else None
        criterion = build_segmentation_loss(loss_config_of(s_meta.train), weights, IGNORE).to(dev)  # the model's own
        if start_student is not None:
            start_student.to(dev)
            for tile in train_tiles:
                progress.check()
                tile.start_probs = _student_probs(start_student, tile, dev).astype(np.float16)
            start_student = None
            progress.info(f"classes no polygon holds ({', '.join(schema.names[c] for c in kept)}) keep the "
                          "starting model's confident answers where nothing was drawn (keep_undrawn 0 turns this off)")
        result["undrawn_classes"] = [schema.names[c] for c in kept]
        sampler = CropSampler(tiles, cfg.crop_size, cfg.seed + 1)
        evaluate_student = None
        if split.measured:
            def evaluate_student() -> float:
                return _score(val_tiles, lambda t: _predict(student, t, False, dev), classes)["miou"] or 0.0
        encoders = ("optical_encoder.", "sar_encoder.", "encoder.")  # "encoder.": a SAR-only model's
        for name, param in student.named_parameters():  # frozen encoders: no backward through them
            param.requires_grad_(cfg.train_encoders or not name.startswith(encoders))
        params = [p for p in student.parameters() if p.requires_grad]
        fitter = _Fitter(student, params, cfg, cfg.steps, progress.sub(0.4, 0.9), "student")
        result["student_fit"] = fitter.run(
            _student_step(student, sampler, cfg, criterion, schema, teacher is not None, dev, kept, teacher_water),
            evaluate_student
        )
        if split.measured:
            result["validation"] = _score(val_tiles, lambda t: _predict(student, t, False, dev), classes)
    if split.measured:
        result["baseline"] = baseline_scores(train_tiles, val_tiles, schema.num_classes, water, student is not None)
    t_student = time.perf_counter()

    # -- outputs, through a temporary folder
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / f".finetune-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    pseudo_raster = change_raster = None
    try:
        record = {
            "stage": "finetune",
            "scene_cut": result["scene_cut"],  # relative SAR levels: the teacher's cut, taken from this scene
            "student_checkpoint": str(student_path),
            "teacher_checkpoint": str(teacher_path or ""),
            "config": to_dict(cfg),
            "split": result["split"],
            "validation": _brief(result["validation"]),
            "baseline": _brief((result["baseline"] or {}).get("student")),
        }
        if student is not None:
            save_model(work / "student.safetensors", student.cpu(), _metadata(s_meta, resolved, record))
        if teacher_done:
            t_record = dict(record, validation=_brief(result.get("teacher_validation")),
                            baseline=_brief((result["baseline"] or {}).get("teacher")))
            if co_meta is None:
                save_model(work / "teacher.safetensors", teacher.cpu(), _metadata(t_meta, resolved, t_record))
            else:  # the pair as two files, the companion named as choose_water_expert finds it
                save_model(work / "teacher.safetensors", teacher.co_polarised.cpu(),
                           _metadata(co_meta, resolved, t_record, sar_bands=1))
                save_model(companion_path(work / "teacher.safetensors"), teacher.dual_pol.cpu(),
                           _metadata(t_meta, resolved, t_record))
        if teacher is not None:
            result["gates"] = write_gate_rasters(tiles, grid, schema, cfg, work, teacher_water)
        if result.get("pseudo_labels") and teacher_done:  # what the adapted teacher learnt from
            pseudo_raster = write_pseudo_label_raster(teacher_tiles, grid, water, work / "pseudo_labels.tif")
        if water_change is not None:  # where the adapted map differs from the zero-shot one
            change_raster = write_water_change_raster(train_tiles, water_change, grid, work / "water_change.tif")
        result["timings"] = {"read_s": round(t_read - t0, 2), "teacher_s": round(t_teacher - t_read, 2),
                             "student_s": round(t_student - t_teacher, 2)}
        result["seconds"] = round(time.perf_counter() - t0, 2)
        atomic_write_bytes(work / "metrics.json", json.dumps(result, indent=1, default=str).encode("utf-8"))
        history = {"records": [dict(r, epoch=r["step"]) for r in result.get("student_fit", {}).get("history", [])]}
        atomic_write_bytes(work / "history.json", json.dumps(history, indent=1).encode("utf-8"))
        _report(work / "report.html", result, schema)
        written = {path.name for path in work.iterdir()}
        for path in work.iterdir():
            path.replace(out_dir / path.name)
        for name in existing:  # overwritten: an earlier run's file this run did not write would pass as this run's
            if name not in written:
                (out_dir / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["model"] = str(out_dir / "student.safetensors") if student is not None else None
    result["teacher"] = str(out_dir / "teacher.safetensors") if teacher_done else None
    # beside the teacher, where the water maps find it
    result["teacher_companion"] = str(companion_path(result["teacher"])) if result["teacher"] and co_meta else None
    result["report"] = str(out_dir / "report.html")
    for name in ("gates", "kd_ratio"):
        path = out_dir / f"{name}.tif"
        result[f"{name}_raster"] = str(path) if result.get("gates") and path.exists() else None
    result["pseudo_labels_raster"] = str(out_dir / "pseudo_labels.tif") if pseudo_raster else None
    result["water_change_raster"] = str(out_dir / "water_change.tif") if change_raster else None
    progress.report(1.0, "fine-tuning done")
    return result


def _apply_pretrained(path: PathLike, student, teacher, progress: Progress) -> str:
    """Load a pretrained SAR encoder into the network it fits; returns ``student`` or ``teacher``."""
    from ..pretrain.transfer import encoder_config, init_from_pretrained, load_encoder

    _, meta = load_encoder(path)
    target = meta.model.get("target")
    network = student if target == "student" else teacher
    if network is None:
        raise ValueError(f"{path} was pretrained for a {target}, but no {target} is fine-tuned in this run")
    if target == "student" and encoder_config(meta).widths != tuple(network.config.widths):
        raise ValueError(f"{path} was pretrained for SAR encoder widths {encoder_config(meta).widths}, the "
                         f"student has {tuple(network.config.widths)}; pretrain --like this student")
    init_from_pretrained(network, path)
    progress.info(f"the {target}'s SAR encoder starts from the pretrained {Path(path).name}")
    return target


def _brief(metrics: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    if not metrics:
        return None
    return {k: metrics.get(k) for k in ("oa", "kappa", "miou", "iou", "pixels")}


def _report(path: Path, result: Dict[str, Any], schema) -> None:
    from .report import metrics_table, write_html_report

    sections = []
    names = list(schema.names)
    if result["validation"] is None:
        sections.append({"title": "Accuracy", "html": "<p><b>Unmeasured</b>: no polygon group could be held "
                         "out. Draw polygons in two or more separate places to measure the fine-tuned model.</p>"})
    else:
        sections.append({"title": "Held-out polygons: fine-tuned student",
                         "html": metrics_table(result["validation"], names)})
        if result["baseline"] and result["baseline"].get("student"):
            sections.append({"title": "Held-out polygons: per-pixel linear classifier (same training polygons, "
                             "same inputs)", "html": metrics_table(result["baseline"]["student"], names)})
    if result.get("teacher_validation"):
        sections.append({"title": "Held-out polygons: teacher (water vs the rest)",
                         "html": metrics_table(result["teacher_validation"], ["not water", "water"])})
    facts = {"polygon groups": result["split"]["groups"], "validation": result["split"]["validation"],
             "seconds": result["seconds"], **{k: v for k, v in result["timings"].items()}}
    if result.get("undrawn_classes"):
        facts["classes no polygon holds, kept from the starting map"] = ", ".join(result["undrawn_classes"])
    change = (result.get("pseudo_labels") or {}).get("change")
    if change and change["water_after"] is not None:
        facts["water, adapted expert / zero-shot (pixels read)"] = (
            f"{change['water_after']:.1%} / {change['water_before']:.1%} of {change['pixels']} pixels; "
            f"water to land {change['water_to_land']:.1%}, land to water {change['land_to_water']:.1%}")
    drawn = result.get("teacher_on_drawn_land") or {}
    if drawn.get("share") is not None:
        facts["your non-water polygons called water by the water expert"] = (
            f"{drawn['share']:.1%} of {drawn['pixels']} pixels")
    if result["warnings"]:
        facts["warnings"] = " | ".join(result["warnings"])
    write_html_report(path, "SGCAD fine-tuning from polygons", sections, {}, facts)
