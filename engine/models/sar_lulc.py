"""SAR-only land cover (ALOS-2 line of work, METHOD.md): K classes from SAR alone, plus water.

For users without a usable optical image (night, persistent cloud, or only SAR bought): one
SAR encoder (single polarisation, HH or VV, or dual polarisation: ``sar_channels`` 1 or 2),
the registered decoder, the SEGM edge gate, a K-class head and a companion binary water head
on the same features. The refinements of :mod:`engine.models.refine` (``hr_injection``,
``refine_up``) apply to both heads.

It is a ``student``-kind network with ``optical_channels = 0``: ``model(optical, sar)`` takes
an optical tensor of zero bands (what the data pipeline delivers when no optical raster is
given) so training, fine-tuning and segmentation run it through the student's code paths.
The water head, saved as a separate ``teacher``-kind file (``sarnet_water``, same weights),
serves wherever a water teacher is expected: ``model(sar) -> (B, 2, H, W)``.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F  # noqa: N812  (the usual torch alias)
from torch import nn

from ..config import StudentConfig
from .blocks import SEGM, check_input, pad_to_multiple
from .refine import HighResInjection, RefineUpHead
from .registry import DECODERS, ENCODERS, register_model

SAR_ONLY_MODEL = "sarnet"
SAR_ONLY_WATER = "sarnet_water"


@register_model(
    SAR_ONLY_MODEL,
    config_cls=StudentConfig,
    kind="student",
    defaults={"optical_channels": 0},
    description="SAR-only land cover: ResNet encoder, FPN decoder, SEGM, K-class + water heads",
)
class SarLandCoverNet(nn.Module):
    """SAR encoder, decoder, SEGM gate, K-class head and companion water head.

    Args:
        config: a :class:`~engine.config.StudentConfig` with ``optical_channels = 0``;
            ``encoder``/``decoder`` name registered parts, ``hr_injection`` and ``refine_up``
            switch the refinements on.
    """

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        if config.optical_channels != 0:
            raise ValueError(
                f"{SAR_ONLY_MODEL} takes SAR only: StudentConfig.optical_channels must be 0, "
                f"got {config.optical_channels}"
            )
        if config.sar_channels not in (1, 2):
            raise ValueError(
                f"{SAR_ONLY_MODEL} takes one polarisation (HH or VV) or two (dual-pol); "
                f"got StudentConfig.sar_channels={config.sar_channels}"
            )
        self.config = config
        self.encoder = ENCODERS.get(config.encoder)(config.sar_channels, config)
        sc = self.encoder.channels
        self.inject = HighResInjection(sc) if config.hr_injection else None
        self.decoder = DECODERS.get(config.decoder)(config, sc)
        self.segm = SEGM(sc[0], residual=config.segm_residual) if config.segm else None
        c = config.decoder_channels
        if config.refine_up:  # the SAR image guides each refinement step
            self.class_head = RefineUpHead(c, config.num_classes, 4, config.sar_channels)
            self.water_head = RefineUpHead(c, 2, 4, config.sar_channels)
        else:
            self.class_head = nn.Conv2d(c, config.num_classes, 1)
            self.water_head = nn.Conv2d(c, 2, 1)
        self.stride = self.encoder.stride

    def check_inputs(self, optical: Optional[torch.Tensor], sar: torch.Tensor) -> None:
        """Raise ``ValueError`` saying what the model expects when the inputs do not fit."""
        check_input(SAR_ONLY_MODEL, "SAR", sar, self.config.sar_channels, "StudentConfig.sar_channels")
        if optical is not None and optical.shape[1] != 0:
            raise ValueError(
                f"{SAR_ONLY_MODEL} is a SAR-only model; leave the optical input empty "
                f"(got {optical.shape[1]} optical band(s))"
            )

    def features(self, sar: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Decoder feature (after SEGM) at stride 4 and the SEGM gate, on padded SAR."""
        feats = self.encoder(sar)
        if self.inject is not None:
            feats = self.inject(feats)
        feature = self.decoder(feats)
        out = {"feature": feature}
        if self.segm is not None:
            out["gate"] = self.segm.gate(feats[0], feature.shape[-2:])
            out["feature"] = self.segm.modulate(feature, out["gate"])
        return out

    def _head(self, head: nn.Module, feature: torch.Tensor, sar: torch.Tensor) -> torch.Tensor:
        logits = head(feature, sar) if self.config.refine_up else head(feature)
        if logits.shape[-2:] != sar.shape[-2:]:
            logits = F.interpolate(logits, size=sar.shape[-2:], mode="bilinear", align_corners=False)
        return logits

    def forward_both(self, sar: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(class logits (B, K, H, W), water logits (B, 2, H, W)) of any-size SAR."""
        check_input(SAR_ONLY_MODEL, "SAR", sar, self.config.sar_channels, "StudentConfig.sar_channels")
        padded, (h, w) = pad_to_multiple(sar, self.stride)
        feature = self.features(padded)["feature"]
        classes = self._head(self.class_head, feature, padded)[..., :h, :w]
        water = self._head(self.water_head, feature, padded)[..., :h, :w]
        return classes, water

    def water_logits(self, sar: torch.Tensor) -> torch.Tensor:
        """Water vs non-water logits (B, 2, H, W); channel 1 is water, as the teacher's."""
        padded, (h, w) = pad_to_multiple(sar, self.stride)
        feature = self.features(padded)["feature"]
        return self._head(self.water_head, feature, padded)[..., :h, :w]

    def forward(
        self, optical: Optional[torch.Tensor], sar: torch.Tensor, with_water: bool = False
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Class logits; with ``with_water`` also the water logits (training calls it this way, so a
        distributed wrapper sees one forward for both heads)."""
        self.check_inputs(optical, sar)
        if with_water:
            return self.forward_both(sar)
        padded, (h, w) = pad_to_multiple(sar, self.stride)
        feature = self.features(padded)["feature"]
        return self._head(self.class_head, feature, padded)[..., :h, :w]


@register_model(
    SAR_ONLY_WATER,
    config_cls=StudentConfig,
    kind="teacher",
    defaults={"optical_channels": 0},
    description="the water head of a SAR-only land-cover network, used as a water teacher",
)
class SarWaterTeacher(SarLandCoverNet):
    """The same network (same weights) answering as a teacher: ``model(sar) -> (B, 2, H, W)``."""

    def forward(self, sar: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        check_input(SAR_ONLY_WATER, "SAR", sar, self.config.sar_channels, "StudentConfig.sar_channels")
        return self.water_logits(sar)
