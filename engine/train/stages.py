"""The public training entry points: ``train_teacher``, ``train_student`` and ``distill``.

Each prepares the data (see :mod:`engine.train.data`), builds or loads the networks, and
runs the shared :class:`~engine.train.loop.Trainer` with the stage's task. The returned dict
holds the checkpoint path, validation and test metrics and the report paths.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from .. import __version__
from ..config import (
    ClassSchema,
    DistillConfig,
    LossConfig,
    ModelMetadata,
    StudentConfig,
    TeacherConfig,
    TrainConfig,
    to_dict,
)
from ..data.augment import set_augmentation
from ..inputs.contract import InputRecipe, preprocessor_for
from ..losses import inverse_frequency_weights
from ..models import build_model
from ..models.checkpoint import check_fits, load_model
from ..models.prior import remove_prior_correction
from ..progress import NULL_PROGRESS, Progress
from .data import PreparedData, TrainingInputs, combine_data, prepare_data
from .loop import Trainer, check_run_folder, resolve_device
from .tasks import DistillTask, StudentTask, TeacherTask

PathLike = Union[str, Path]


def _metadata(kind: str, model_cfg: Any, schema: ClassSchema, data: PreparedData) -> ModelMetadata:
    """A model's metadata: its network, classes and the input contract resolved for its data."""
    return ModelMetadata(
        kind=kind,
        model=to_dict(model_cfg),
        schema=schema,
        engine_version=__version__,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **data.stored,
    )


def _class_weights(histogram: List[int], loss_cfg: LossConfig, progress: Progress) -> Optional[torch.Tensor]:
    if not loss_cfg.inverse_frequency_weights:
        return None
    if sum(histogram) == 0:
        raise ValueError("the training split holds no labelled pixel; check the labels and the split ratios")
    weights = inverse_frequency_weights(histogram)
    progress.info("class weights " + ", ".join(f"{w:.3g}" for w in weights.tolist()))
    return weights


def _prepare(inputs, schema, out_dir, cfg, resume, overwrite, progress, recipe=None) -> PreparedData:
    """The run's data: one scene, or several (a list of inputs), each resolved on its own."""
    # before anything is written into the run folder: a finished run is not half-replaced
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    check_run_folder(Path(out_dir), resume, overwrite)
    many = isinstance(inputs, (list, tuple))
    parts = []
    for i, one in enumerate(inputs if many else [inputs]):
        sub = progress.sub(i / len(inputs), (i + 1) / len(inputs)) if many else progress
        folder = Path(out_dir) / f"scene{i:03d}" if many else Path(out_dir)
        parts.append(prepare_data(one, schema, folder, recipe=recipe, augment=cfg.augment, seed=cfg.seed,
                                  reuse=resume, progress=sub))
    data = parts[0] if not many else combine_data(parts)
    set_augmentation(data.datasets["train"], optical_dropout=cfg.optical_dropout, optical_haze=cfg.optical_haze)
    return data


def train_teacher(
    inputs: Union[TrainingInputs, Sequence[TrainingInputs]],
    out_dir: PathLike,
    teacher_cfg: Optional[TeacherConfig] = None,
    train_cfg: Optional[TrainConfig] = None,
    loss_cfg: Optional[LossConfig] = None,
    schema: Optional[ClassSchema] = None,
    progress: Progress = NULL_PROGRESS,
    resume: bool = False,
    overwrite: bool = False,
    init_from: Optional[PathLike] = None,
) -> Dict[str, Any]:
    """Train the SAR-only water teacher (binary water target, CE + edge-aware BCE).

    With ``init_from`` (a teacher model file) training continues from its weights and
    architecture, with BatchNorm statistics frozen (a small label set must not replace them).
    """
    schema, cfg, loss_cfg = schema or ClassSchema(), train_cfg or TrainConfig(), loss_cfg or LossConfig()
    teacher_cfg = teacher_cfg or TeacherConfig()
    teacher_cfg.sar_channels = _first(inputs).bands.sar_channels
    inputs = [_sar_only(i) for i in inputs] if isinstance(inputs, (list, tuple)) else _sar_only(inputs)
    data = _prepare(inputs, schema, out_dir, cfg, resume, overwrite, progress)
    water = data.histogram[schema.water_class]
    binary = [sum(data.histogram) - water, water]
    if water == 0:
        raise ValueError(
            f"the training split holds no {schema.names[schema.water_class]!r} pixel; "
            "the teacher learns water and needs some"
        )
    task = TeacherTask(schema, loss_cfg, _class_weights(binary, loss_cfg, progress))
    torch.manual_seed(cfg.seed)
    model, teacher_cfg = _initial(init_from, "teacher", teacher_cfg, data, progress=progress)
    meta = _metadata("teacher", teacher_cfg, schema, data)
    trainer = Trainer(task, model, meta, data.datasets, cfg, Path(out_dir), cfg.lr, progress,
                      pretrained=init_from is not None)
    return trainer.fit(resume=resume, overwrite=overwrite)


def _sar_only(inputs: TrainingInputs) -> TrainingInputs:
    """Rasters without an optical one train the teacher from SAR and labels alone (it reads no optical band)."""
    if inputs.optical or inputs.patch_set:
        return inputs
    return dataclasses.replace(inputs, bands=dataclasses.replace(inputs.bands, optical_bands=(), optical_names=()))


def train_student(
    inputs: Union[TrainingInputs, Sequence[TrainingInputs]],
    out_dir: PathLike,
    student_cfg: Optional[StudentConfig] = None,
    train_cfg: Optional[TrainConfig] = None,
    loss_cfg: Optional[LossConfig] = None,
    schema: Optional[ClassSchema] = None,
    progress: Progress = NULL_PROGRESS,
    resume: bool = False,
    overwrite: bool = False,
    init_from: Optional[PathLike] = None,
) -> Dict[str, Any]:
    """Stage 1: train LightMCANet on optical + SAR with wCE + Dice + Lovász (``init_from``: continue
    from a student model file, BatchNorm statistics frozen)."""
    schema, cfg, loss_cfg = schema or ClassSchema(), train_cfg or TrainConfig(), loss_cfg or LossConfig()
    student_cfg = student_cfg or StudentConfig()
    student_cfg.optical_channels = _first(inputs).bands.optical_channels
    student_cfg.sar_channels = _first(inputs).bands.sar_channels
    student_cfg.num_classes = schema.num_classes
    data = _prepare(inputs, schema, out_dir, cfg, resume, overwrite, progress)
    task = StudentTask(schema, loss_cfg, _class_weights(data.histogram, loss_cfg, progress))
    torch.manual_seed(cfg.seed)
    model, student_cfg = _initial(init_from, "student", student_cfg, data, schema, progress)
    meta = _metadata("student", student_cfg, schema, data)
    trainer = Trainer(task, model, meta, data.datasets, cfg, Path(out_dir), cfg.lr, progress,
                      pretrained=init_from is not None)
    return trainer.fit(resume=resume, overwrite=overwrite)


def distill(
    inputs: Union[TrainingInputs, Sequence[TrainingInputs]],
    out_dir: PathLike,
    student_path: PathLike,
    teacher_path: PathLike,
    train_cfg: Optional[TrainConfig] = None,
    loss_cfg: Optional[LossConfig] = None,
    distill_cfg: Optional[DistillConfig] = None,
    progress: Progress = NULL_PROGRESS,
    resume: bool = False,
    overwrite: bool = False,
    write_gate_rasters: bool = True,
    patch_windows: Optional[List[Tuple[int, int, int, int]]] = None,
) -> Dict[str, Any]:
    """Stage 2: fine-tune a stage-1 student with the teacher's confidence-gated water knowledge.

    The student keeps its class schema, band mapping and normalisation (its inputs are
    scaled as in stage 1). The learning rate is ``train_cfg.lr * train_cfg.stage2_lr_factor``.

    Args:
        inputs: training data (the same kind of scene the student was trained on).
        out_dir: run folder.
        student_path: stage-1 student checkpoint.
        teacher_path: teacher checkpoint.
        train_cfg, loss_cfg: optimisation and segmentation loss.
        distill_cfg: lambda_kd, gates, warm-up, gated or dense.
        progress: progress and cancellation.
        resume, overwrite: continue or replace a run in ``out_dir``.
        write_gate_rasters: write ``gates.tif`` and ``kd_ratio.tif`` over the training area.
        patch_windows: ``(col, row, width, height)`` windows of the label grid that the gate
            rasters cover (fine-tuning around user polygons); default the whole labelled area.
    """
    cfg, loss_cfg, distill_cfg = (
        train_cfg or TrainConfig(),
        loss_cfg or LossConfig(),
        distill_cfg or DistillConfig(),
    )
    student, s_meta = load_model(student_path, expected_kind="student")
    _without_prior(student, s_meta, student_path, progress)
    teacher, t_meta = load_model(teacher_path, expected_kind="teacher")
    schema = s_meta.schema
    check_fits(s_meta, student_path, bands=_first(inputs).bands)
    check_fits(t_meta, teacher_path, bands=_first(inputs).bands)
    # the student's own recipe (chains, stored SAR range); the units are this file's, resolved
    # exactly as segmentation resolves them
    data = _prepare(inputs, schema, out_dir, cfg, resume, overwrite, progress, recipe=InputRecipe.of(s_meta))
    teacher_pre = preprocessor_for(
        InputRecipe.of(t_meta), data.preprocessor.sar_cfg, data.sar, data.stored["bands"].sar_bands
    )
    if (teacher_pre.sar_cfg, teacher_pre.sar_record) != (data.preprocessor.sar_cfg, data.preprocessor.sar_record):
        progress.info("the teacher's SAR chain differs from the student's: each network gets its own values")
        for dataset in data.datasets.values():
            dataset.set_teacher_preprocessor(teacher_pre)
    task = DistillTask(
        schema, loss_cfg, _class_weights(data.histogram, loss_cfg, progress), teacher, distill_cfg
    )
    meta = _metadata("student", build_cfg(s_meta), schema, data)
    meta.train = {"student_checkpoint": str(student_path), "teacher_checkpoint": str(teacher_path)}
    task.record.update(meta.train)
    lr = cfg.lr * cfg.stage2_lr_factor
    trainer = Trainer(task, student, meta, data.datasets, cfg, Path(out_dir), lr, progress, pretrained=True)
    result = trainer.fit(resume=resume, overwrite=overwrite)
    if write_gate_rasters:
        from .gates import write_gate_rasters as write_gates

        result["gate_rasters"] = write_gates(
            teacher,
            teacher_pre,
            data.sar,
            data.stored["bands"].sar_bands,
            data.label,
            data.grid,
            schema,
            distill_cfg,
            Path(out_dir),
            block=_first(inputs).patch.patch_size,  # several scenes: the first one is drawn
            windows=patch_windows,
            device=resolve_device(cfg.device),
            overwrite=True,
            progress=progress,
        )
    return result


def _initial(init_from, kind: str, cfg, data: PreparedData, schema: Optional[ClassSchema] = None,
             progress: Progress = NULL_PROGRESS):
    """A new network from ``cfg``, or the one in ``init_from`` (its own architecture and weights)."""
    if init_from is None:
        return build_model(cfg), cfg
    model, meta = load_model(init_from, expected_kind=kind, schema=schema, bands=data.stored["bands"])
    _without_prior(model, meta, init_from, progress)
    cls = StudentConfig if kind == "student" else TeacherConfig
    from ..config import from_dict

    return model, from_dict(cls, meta.model)


def _without_prior(model, meta: ModelMetadata, path, progress: Progress = NULL_PROGRESS) -> None:
    """Training goes on from balanced logits: a folded class-prior correction is taken out."""
    if remove_prior_correction(model, meta.train) is not None:
        progress.info(f"{path}: its class-prior correction is taken out for training; the trained model has "
                      "none (re-apply it with scripts/set_class_prior.py)")


def _first(inputs):
    return inputs[0] if isinstance(inputs, (list, tuple)) else inputs


def build_cfg(meta: ModelMetadata) -> StudentConfig:
    from ..config import from_dict

    return from_dict(StudentConfig, meta.model)
