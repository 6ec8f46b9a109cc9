"""Training the SAR-only land-cover network (``sarnet``): K classes and the companion water head.

The K-class head learns with the segmentation loss chosen by ``LossConfig.kind`` (the ALOS-2
line of work uses ``"focal_dice"``: alpha-scaled class weights inside focal + Dice), the water
head with the teacher's loss on the binary water target, weighted by
``LossConfig.water_head_weight``. Besides the land-cover model the run writes
``water_teacher.safetensors``: the same weights as a ``teacher``-kind file whose
``model(sar)`` answers water vs non-water, usable wherever a water teacher is expected
(distillation, fine-tuning, segmentation's teacher gate, flood mapping).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..config import BandMapping, ClassSchema, LossConfig, StudentConfig, TrainConfig, to_dict
from ..losses import binary_water_target, build_teacher_loss, inverse_frequency_weights
from ..metrics import ConfusionMatrix
from ..models.checkpoint import load_model, save_model
from ..models.sar_lulc import SAR_ONLY_MODEL, SAR_ONLY_WATER
from ..progress import NULL_PROGRESS, Progress
from .data import TrainingInputs
from .loop import Batch, Trainer, _autocast, _to_device
from .stages import _class_weights, _first, _initial, _metadata, _prepare
from .tasks import StudentTask

PathLike = Union[str, Path]
WATER_TEACHER = "water_teacher.safetensors"


class SarOnlyTask(StudentTask):
    """K classes from SAR (segmentation loss) + water vs non-water (teacher loss, weighted)."""

    stage = "sar_only"

    def __init__(
        self,
        schema: ClassSchema,
        loss_cfg: LossConfig,
        class_weights: Optional[torch.Tensor],
        water_weights: Optional[torch.Tensor],
    ) -> None:
        super().__init__(schema, loss_cfg, class_weights)
        self.water_criterion = build_teacher_loss(loss_cfg, water_weights, schema.ignore_index)
        self.water_weight = loss_cfg.water_head_weight

    def to(self, device: torch.device) -> SarOnlyTask:
        super().to(device)
        self.water_criterion.to(device)
        return self

    def loss(self, model: nn.Module, batch: Batch, epoch: int) -> Tuple[torch.Tensor, Dict[str, float]]:
        classes, water = model(batch["optical"], batch["sar"], with_water=True)
        seg = self.criterion(classes.float(), batch["label"])
        logs = {k: float(v) for k, v in self.criterion.last_terms.items()}
        if not self.water_weight:
            return seg, logs
        target = binary_water_target(batch["label"], self.schema.water_class, self.schema.ignore_index)
        water_loss = self.water_criterion(water.float(), target, batch["sar"])
        logs["water_head"] = float(water_loss.detach())
        return seg + self.water_weight * water_loss, logs

    @torch.no_grad()
    def test_extras(self, model: nn.Module, loader: Any, device: torch.device, amp: bool) -> Dict[str, Any]:
        """Water from the water head vs water from the K-class head, on the test split."""
        water, ignore = self.schema.water_class, self.schema.ignore_index
        head_cm, class_cm = ConfusionMatrix(2), ConfusionMatrix(2)
        core = getattr(model, "module", model)
        core.eval()
        for batch in loader:
            batch = _to_device(batch, device)
            with _autocast(device, amp):
                classes, water_logits = core.forward_both(batch["sar"])
            target = binary_water_target(batch["label"], water, ignore)
            head_cm.update(water_logits.float().argmax(1), target)
            class_cm.update((classes.float().argmax(1) == water).long(), target)
        head, cls = head_cm.compute(), class_cm.compute()
        return {"water_head": {"water_head_iou": head["iou"][1], "class_head_water_iou": cls["iou"][1],
                               "water_head_oa": head["oa"]}}


def sar_only_bands(bands: BandMapping) -> BandMapping:
    """The band mapping of a SAR-only model: the given SAR bands, no optical band."""
    if not 1 <= bands.sar_channels <= 2:
        raise ValueError(
            f"a SAR-only model takes one polarisation (HH or VV) or two (dual-pol); "
            f"{bands.sar_channels} SAR bands were given ({list(bands.sar_bands)})"
        )
    return dataclasses.replace(bands, optical_bands=(), optical_names=())


def train_sar_only(
    inputs: Union[TrainingInputs, Sequence[TrainingInputs]],
    out_dir: PathLike,
    model_cfg: Optional[StudentConfig] = None,
    train_cfg: Optional[TrainConfig] = None,
    loss_cfg: Optional[LossConfig] = None,
    schema: Optional[ClassSchema] = None,
    progress: Progress = NULL_PROGRESS,
    resume: bool = False,
    overwrite: bool = False,
    init_from: Optional[PathLike] = None,
) -> Dict[str, Any]:
    """Train the SAR-only land-cover network and write its water head as a teacher file.

    Args:
        inputs: SAR + labels (``optical`` is not read); one scene or several.
        out_dir: run folder.
        model_cfg: network settings (``name`` is set to ``sarnet``, ``optical_channels`` to 0).
        train_cfg, loss_cfg: optimisation and loss (``kind``, ``alpha_scale``, ``water_head_weight``).
        schema: the classes (default the six of the method).
        progress, resume, overwrite: as for :func:`~engine.train.stages.train_student`.
        init_from: continue from a SAR-only model file (its architecture and weights).

    Returns:
        the trainer's result, plus ``water_teacher`` (the teacher file's path).
    """
    schema, cfg = schema or ClassSchema(), train_cfg or TrainConfig()
    loss_cfg = loss_cfg or LossConfig(kind="focal_dice")
    many = isinstance(inputs, (list, tuple))
    parts = [dataclasses.replace(one, bands=sar_only_bands(one.bands)) for one in (inputs if many else [inputs])]
    inputs = parts if many else parts[0]
    model_cfg = dataclasses.replace(model_cfg or StudentConfig(), name=SAR_ONLY_MODEL, optical_channels=0)
    model_cfg.sar_channels = _first(inputs).bands.sar_channels
    model_cfg.num_classes = schema.num_classes
    data = _prepare(inputs, schema, out_dir, cfg, resume, overwrite, progress)
    water = data.histogram[schema.water_class]
    water_weights = None
    if water and loss_cfg.inverse_frequency_weights:
        water_weights = inverse_frequency_weights([sum(data.histogram) - water, water])
    task = SarOnlyTask(schema, loss_cfg, _class_weights(data.histogram, loss_cfg, progress), water_weights)
    torch.manual_seed(cfg.seed)
    model, model_cfg = _initial(init_from, "student", model_cfg, data, schema, progress)
    if model_cfg.name != SAR_ONLY_MODEL:
        raise ValueError(f"{init_from} is not a SAR-only model ({model_cfg.name}); start from a {SAR_ONLY_MODEL} file")
    meta = _metadata("student", model_cfg, schema, data)
    trainer = Trainer(task, model, meta, data.datasets, cfg, Path(out_dir), cfg.lr, progress,
                      pretrained=init_from is not None)
    result = trainer.fit(resume=resume, overwrite=overwrite)
    if Path(result["model"]).is_file():
        result["water_teacher"] = str(save_water_teacher(result["model"], Path(out_dir) / WATER_TEACHER))
    return result


def save_water_teacher(model_path: PathLike, out_path: PathLike) -> Path:
    """Write the water head of a SAR-only model file as a ``teacher``-kind file (same weights)."""
    model, meta = load_model(model_path, expected_kind="student")
    if meta.model.get("name") != SAR_ONLY_MODEL:
        raise ValueError(f"{model_path} is not a SAR-only land-cover model; it has no water head to export")
    metrics = (meta.metrics or {}).get("test") or {}
    teacher_meta = dataclasses.replace(
        meta, kind="teacher", model=dict(to_dict(meta.model), name=SAR_ONLY_WATER),
        train=dict(meta.train or {}, water_head_of=str(model_path)), metrics={"water_head": metrics.get("water_head")})
    return save_model(out_path, model, teacher_meta)
