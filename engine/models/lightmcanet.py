"""LightMCANet: the light optical+SAR student (METHOD.md, Student)."""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F  # noqa: N812  (the usual torch alias)
from torch import nn

from ..config import StudentConfig
from .blocks import SEGM, check_input, pad_to_multiple
from .refine import HighResInjection, RefineUpHead
from .registry import DECODERS, ENCODERS, FUSIONS, register_model


@register_model(
    "lightmcanet",
    config_cls=StudentConfig,
    kind="student",
    description="pseudo-Siamese ResNet encoders, LightMCAM fusion, FPN decoder, SEGM gate",
)
class LightMCANet(nn.Module):
    """Two encoders of one shape (separate weights), per-stage fusion, FPN decoder, SEGM.

    ``forward(optical, sar)`` takes (B, optical_channels, H, W) and (B, sar_channels, H, W) of
    the same size, any H and W, and returns class logits (B, num_classes, H, W).

    Args:
        config: the :class:`~engine.config.StudentConfig`; ``encoder``, ``fusion`` and
            ``decoder`` name registered parts.
    """

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.config = config
        encoder = ENCODERS.get(config.encoder)
        self.optical_encoder = encoder(config.optical_channels, config)
        self.sar_encoder = encoder(config.sar_channels, config)
        oc, sc = self.optical_encoder.channels, self.sar_encoder.channels
        fusion = FUSIONS.get(config.fusion)
        self.fusions = nn.ModuleList(
            fusion(config, i, oc[i], sc[i], config.decoder_channels) for i in range(len(oc))
        )
        self.decoder = DECODERS.get(config.decoder)(config, [config.decoder_channels] * len(oc))
        self.segm = SEGM(sc[0], residual=config.segm_residual) if config.segm else None
        levels = [config.decoder_channels] * len(oc)
        self.inject = HighResInjection(levels) if config.hr_injection else None
        if config.refine_up:  # the input image guides each refinement step
            guide = config.optical_channels + config.sar_channels
            self.refine = RefineUpHead(config.decoder_channels, config.num_classes, 4, guide)
        else:
            self.head = nn.Conv2d(config.decoder_channels, config.num_classes, 1)
        self.stride = self.optical_encoder.stride

    def check_inputs(self, optical: torch.Tensor, sar: torch.Tensor) -> None:
        """Raise ``ValueError`` saying what the model expects when the inputs do not fit."""
        check_input("LightMCANet", "optical", optical, self.config.optical_channels,
                    "StudentConfig.optical_channels")
        check_input("LightMCANet", "SAR", sar, self.config.sar_channels, "StudentConfig.sar_channels")
        if optical.shape[0] != sar.shape[0] or optical.shape[-2:] != sar.shape[-2:]:
            raise ValueError(
                "LightMCANet expects optical and SAR of the same batch size and height x width "
                f"(resample both onto one grid); got optical {tuple(optical.shape)} "
                f"and SAR {tuple(sar.shape)}"
            )

    def features(self, optical: torch.Tensor, sar: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Decoder feature (after SEGM) and the SEGM gate at stride 4, on padded inputs."""
        opt_feats = self.optical_encoder(optical)
        sar_feats = self.sar_encoder(sar)
        fused = [fuse(o, s) for fuse, o, s in zip(self.fusions, opt_feats, sar_feats)]
        if self.inject is not None:
            fused = self.inject(fused)
        feature = self.decoder(fused)
        out = {"feature": feature}
        if self.segm is not None:
            out["gate"] = self.segm.gate(sar_feats[0], feature.shape[-2:])
            out["feature"] = self.segm.modulate(feature, out["gate"])
        return out

    def forward(self, optical: torch.Tensor, sar: torch.Tensor) -> torch.Tensor:
        self.check_inputs(optical, sar)
        optical, (h, w) = pad_to_multiple(optical, self.stride)
        sar, _ = pad_to_multiple(sar, self.stride)
        feature = self.features(optical, sar)["feature"]
        if self.config.refine_up:
            logits = self.refine(feature, torch.cat([optical, sar], 1))
        else:
            logits = self.head(feature)
        if logits.shape[-2:] != optical.shape[-2:]:
            logits = F.interpolate(logits, size=optical.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :h, :w]
