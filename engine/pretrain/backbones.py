"""SAR encoders in the shapes of the networks they will initialise, seen as (shallow, deep) features.

``student``: the SAR branch of a student (a registered encoder, ResNet by default) built from a
:class:`~engine.config.StudentConfig`; shallow = its first stage (stride 4), deep = its last.
``teacher``: the HRNet teacher's backbone (stem, first stage, transitions, multi-branch stages)
built from a :class:`~engine.config.TeacherConfig`; shallow = the stem (stride 4), deep = all
branches upsampled to stride 4 and concatenated. ``encoder_module`` is the module whose
``state_dict`` keys are the target network's own (``sar_encoder.`` removed for a student).
"""

from __future__ import annotations

from typing import Tuple, Union

import torch
import torch.nn.functional as F  # noqa: N812  (the usual torch alias)
from torch import nn

from ..config import StudentConfig, TeacherConfig
from ..models.hrnet import HRNetTeacher
from ..models.registry import ENCODERS

ModelConfig = Union[StudentConfig, TeacherConfig]


class StudentSarBackbone(nn.Module):
    """The student's SAR branch: ``ENCODERS[config.encoder](config.sar_channels, config)``."""

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.encoder = ENCODERS.get(config.encoder)(config.sar_channels, config)
        self.shallow_channels = self.encoder.channels[0]
        self.deep_channels = self.encoder.channels[-1]

    @property
    def encoder_module(self) -> nn.Module:
        return self.encoder

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(x)
        return features[0], features[-1]


class TeacherSarBackbone(nn.Module):
    """The HRNet teacher without its head: the parts a pretrained file carries to a teacher."""

    PARTS = ("stem", "layer1", "transitions", "stages")

    def __init__(self, config: TeacherConfig) -> None:
        super().__init__()
        net = HRNetTeacher(config)
        for name in self.PARTS:
            setattr(self, name, getattr(net, name))
        self.shallow_channels = net.stem[-1][0].out_channels
        self.deep_channels = sum(config.widths)

    @property
    def encoder_module(self) -> nn.Module:
        return self

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        stem = self.stem(x)
        xs = [self.layer1(stem)]
        for transition, stage in zip(self.transitions, self.stages):
            xs = stage(transition(xs))
        size = xs[0].shape[-2:]
        deep = torch.cat([xs[0]] + [F.interpolate(t, size=size, mode="bilinear", align_corners=False)
                                    for t in xs[1:]], dim=1)
        return stem, deep


def build_backbone(target: str, config: ModelConfig) -> nn.Module:
    """The backbone for ``target`` (``student`` or ``teacher``) from the matching config."""
    if target == "student" and isinstance(config, StudentConfig):
        return StudentSarBackbone(config)
    if target == "teacher" and isinstance(config, TeacherConfig):
        return TeacherSarBackbone(config)
    raise ValueError(
        f"pretraining target must be 'student' (with a StudentConfig) or 'teacher' (with a TeacherConfig); "
        f"got {target!r} with {type(config).__name__}"
    )
