"""The three stages as :class:`~engine.train.loop.StageTask`: teacher, stage 1 and stage 2."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from ..config import ClassSchema, DistillConfig, LossConfig, to_dict
from ..losses import binary_water_target, build_segmentation_loss, build_teacher_loss, gated_distillation
from ..metrics import ConfusionMatrix
from .loop import Batch, StageTask, _autocast, _to_device


class TeacherTask(StageTask):
    """SAR-only water expert: binary target (water / other), CE (or RIFT) + edge-aware BCE."""

    stage = "teacher"
    class_names = ["non-water", "water"]
    water_index = 1

    def __init__(
        self, schema: ClassSchema, loss_cfg: LossConfig, class_weights: Optional[torch.Tensor]
    ) -> None:
        self.schema = schema
        self.criterion = build_teacher_loss(loss_cfg, class_weights, schema.ignore_index)
        self.record = {"loss": to_dict(loss_cfg)}  # stored in the model's metadata (train)

    def to(self, device: torch.device) -> TeacherTask:
        self.criterion.to(device)
        return self

    def target(self, batch: Batch) -> torch.Tensor:
        return binary_water_target(batch["label"], self.schema.water_class, self.schema.ignore_index)

    def logits(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(batch["sar"])

    def eval_loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.criterion(logits, self.target(batch), batch["sar"])

    def loss(self, model: nn.Module, batch: Batch, epoch: int) -> Tuple[torch.Tensor, Dict[str, float]]:
        logits = self.logits(model, batch).float()
        loss = self.criterion(logits, self.target(batch), batch["sar"])
        return loss, {k: float(v) for k, v in self.criterion.last_terms.items()}


class StudentTask(StageTask):
    """Stage 1: the optical + SAR student on the full schema, wCE + Dice + Lovász or RIFT
    (``LossConfig.kind``)."""

    stage = "stage1"

    def __init__(
        self, schema: ClassSchema, loss_cfg: LossConfig, class_weights: Optional[torch.Tensor]
    ) -> None:
        self.schema = schema
        self.class_names = list(schema.names)
        self.water_index = schema.water_class
        self.criterion = build_segmentation_loss(loss_cfg, class_weights, schema.ignore_index)
        self.record: Dict[str, Any] = {"loss": to_dict(loss_cfg)}  # stored in the model's metadata (train)

    def to(self, device: torch.device) -> StudentTask:
        self.criterion.to(device)
        return self

    def target(self, batch: Batch) -> torch.Tensor:
        return batch["label"]

    def logits(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(batch["optical"], batch["sar"])

    def eval_loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.criterion(logits, batch["label"])

    def loss(self, model: nn.Module, batch: Batch, epoch: int) -> Tuple[torch.Tensor, Dict[str, float]]:
        logits = self.logits(model, batch).float()
        loss = self.criterion(logits, batch["label"])
        return loss, {k: float(v) for k, v in self.criterion.last_terms.items()}


class DistillTask(StudentTask):
    """Stage 2: stage-1 loss plus ``lambda_kd`` x the confidence-gated water distillation.

    The teacher is frozen (eval mode, no gradient). During the first ``warmup_epochs`` the
    distillation term is off and the teacher is not even run; afterwards every batch logs the
    KD-region ratio |M| / pixels and its water / non-water split.
    """

    stage = "stage2"

    def __init__(
        self,
        schema: ClassSchema,
        loss_cfg: LossConfig,
        class_weights: Optional[torch.Tensor],
        teacher: nn.Module,
        distill_cfg: DistillConfig,
    ) -> None:
        super().__init__(schema, loss_cfg, class_weights)
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.cfg = distill_cfg
        self.record.update({
            "distill": {
                "lambda_kd": distill_cfg.lambda_kd,
                "gated": distill_cfg.gated,
                "water_threshold": distill_cfg.water_threshold,
                "non_water_threshold": distill_cfg.non_water_threshold,
                "warmup_epochs": distill_cfg.warmup_epochs,
            }
        })

    def to(self, device: torch.device) -> DistillTask:
        super().to(device)
        self.teacher.to(device).eval()
        return self

    def stopping_starts(self) -> int:
        return self.cfg.warmup_epochs

    @staticmethod
    def teacher_input(batch: Batch) -> torch.Tensor:
        """The teacher's SAR values: its own chain's when they differ from the student's."""
        return batch.get("teacher_sar", batch["sar"])

    @torch.no_grad()
    def teacher_water(self, sar: torch.Tensor) -> torch.Tensor:
        """The teacher's water probability (B, H, W), in float32."""
        return torch.softmax(self.teacher(sar).float(), dim=1)[:, 1]

    def loss(self, model: nn.Module, batch: Batch, epoch: int) -> Tuple[torch.Tensor, Dict[str, float]]:
        logits = self.logits(model, batch).float()
        seg = self.criterion(logits, batch["label"])
        logs: Dict[str, Any] = {
            "seg_loss": float(seg.detach()),
            **{k: float(v) for k, v in self.criterion.last_terms.items()},
        }
        if epoch < self.cfg.warmup_epochs or self.cfg.lambda_kd == 0:
            logs["kd_active"] = 0.0
            if self.cfg.lambda_kd == 0 and epoch >= self.cfg.warmup_epochs:
                logs.update(self._gate_stats(batch))  # the control run still reports its would-be gates
            return seg, logs
        kd = gated_distillation(
            logits,
            self.teacher_water(self.teacher_input(batch)),
            batch["label"],
            self.schema.water_class,
            self.cfg,
            self.schema.ignore_index,
        )
        pixels = float(batch["label"].numel())
        logs.update(
            kd_active=1.0,
            kd_loss=float(kd.loss.detach()),
            kd_ratio=kd.ratio,
            kd_ratio_water=kd.n_water / pixels,
            kd_ratio_non_water=kd.n_non_water / pixels,
        )
        return seg + self.cfg.lambda_kd * kd.loss, logs

    def _gate_stats(self, batch: Batch) -> Dict[str, float]:
        p_t = self.teacher_water(self.teacher_input(batch))
        dummy = torch.zeros((p_t.shape[0], self.schema.num_classes) + p_t.shape[1:], device=p_t.device)
        kd = gated_distillation(
            dummy, p_t, batch["label"], self.schema.water_class, self.cfg, self.schema.ignore_index
        )
        pixels = float(batch["label"].numel())
        return {
            "kd_ratio": kd.ratio,
            "kd_ratio_water": kd.n_water / pixels,
            "kd_ratio_non_water": kd.n_non_water / pixels,
        }

    @torch.no_grad()
    def test_extras(self, model: nn.Module, loader: Any, device: torch.device, amp: bool) -> Dict[str, Any]:
        """Fusion evaluation: teacher vs student water maps on the test split."""
        water, ignore = self.schema.water_class, self.schema.ignore_index
        student_cm, teacher_cm, pair_cm = ConfusionMatrix(2), ConfusionMatrix(2), ConfusionMatrix(2)
        agree = valid_total = 0
        model.eval()
        for batch in loader:
            batch = _to_device(batch, device)
            with _autocast(device, amp):
                s_water = (self.logits(model, batch).argmax(1) == water).long()
                t_water = (self.teacher_water(self.teacher_input(batch)) > 0.5).long()
            target = binary_water_target(batch["label"], water, ignore)
            student_cm.update(s_water, target)
            teacher_cm.update(t_water, target)
            valid = target != ignore
            pair_cm.update(s_water[valid], t_water[valid])  # teacher as the reference
            agree += int((s_water == t_water)[valid].sum())
            valid_total += int(valid.sum())
        s, t, p = student_cm.compute(), teacher_cm.compute(), pair_cm.compute()
        return {
            "fusion": {
                "water_agreement": agree / valid_total if valid_total else None,
                "student_water_iou": s["iou"][1],
                "teacher_water_iou": t["iou"][1],
                "student_vs_teacher_water_iou": p["iou"][1],
                "student_water_precision": s["precision"][1],
                "teacher_water_precision": t["precision"][1],
                "student_water_recall": s["recall"][1],
                "teacher_water_recall": t["recall"][1],
                "pixels": valid_total,
            }
        }
