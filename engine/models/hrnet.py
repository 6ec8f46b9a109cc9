"""SAR-only HRNet water expert (METHOD.md, Teacher): HRNet-W18-small-v2 layout by default."""

from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F  # noqa: N812  (the usual torch alias)
from torch import nn

from ..config import TeacherConfig
from .blocks import SEGM, BasicBlock, Bottleneck, check_input, conv_bn_relu, pad_to_multiple
from .registry import register_model

STEM_CHANNELS = 64  # HRNet's stem and first-stage bottleneck width


class FusionModule(nn.Module):
    """One HRNet module: BasicBlocks on every branch, then every branch receives all others.

    A coarser branch reaches a finer one by 1x1 conv + bilinear upsampling; a finer branch
    reaches a coarser one by a chain of stride-2 3x3 convs.
    """

    def __init__(self, widths: Sequence[int], blocks: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(w, w) for _ in range(blocks)]) for w in widths
        )
        self.fuse = nn.ModuleList()
        for i, wi in enumerate(widths):
            row = nn.ModuleList()
            for j, wj in enumerate(widths):
                if j > i:
                    row.append(conv_bn_relu(wj, wi, 1, relu=False))
                elif j == i:
                    row.append(nn.Identity())
                else:
                    steps = [conv_bn_relu(wj, wj, 3, 2) for _ in range(i - j - 1)]
                    steps.append(conv_bn_relu(wj, wi, 3, 2, relu=False))
                    row.append(nn.Sequential(*steps))
            self.fuse.append(row)

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse):
            y = xs[i]
            for j, layer in enumerate(row):
                if j == i:
                    continue
                z = layer(xs[j])
                if j > i:
                    z = F.interpolate(z, size=xs[i].shape[-2:], mode="bilinear", align_corners=False)
                y = y + z
            out.append(F.relu(y))
        return out


class Transition(nn.Module):
    """Adapt the branch list of one stage to the next and add a half-resolution branch."""

    def __init__(self, cin: Sequence[int], cout: Sequence[int]) -> None:
        super().__init__()
        layers = []
        for i, c in enumerate(cout):
            if i < len(cin):
                layers.append(nn.Identity() if cin[i] == c else conv_bn_relu(cin[i], c, 3))
            else:
                layers.append(conv_bn_relu(cin[-1], c, 3, 2))
        self.layers = nn.ModuleList(layers)
        self.n_in = len(cin)

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        return [layer(xs[min(i, self.n_in - 1)]) for i, layer in enumerate(self.layers)]


@register_model(
    "hrnet_w18_small",
    config_cls=TeacherConfig,
    kind="teacher",
    description="SAR-only HRNet (W18-small-v2 layout) with SEGM head, binary water",
)
class HRNetTeacher(nn.Module):
    """HRNet: stem to 1/4, a bottleneck stage, then stages of 2, 3, 4 parallel branches.

    The head upsamples all branches to 1/4, concatenates them, mixes with a 1x1 conv, applies
    the SEGM gate computed from the stem's SAR features, and classifies. ``forward(sar)``
    returns (B, num_classes, H, W) logits at input resolution for any H and W; the water
    probability is ``softmax(logits, 1)[:, 1]``.

    Args:
        config: :class:`~engine.config.TeacherConfig`.
    """

    def __init__(self, config: TeacherConfig) -> None:
        super().__init__()
        self.config = config
        widths, blocks, modules = config.widths, config.blocks_per_branch, config.modules_per_stage
        if not (len(widths) == len(blocks) == len(modules)):
            raise ValueError(
                f"TeacherConfig widths {tuple(widths)}, blocks_per_branch {tuple(blocks)} and "
                f"modules_per_stage {tuple(modules)} must have the same length"
            )
        self.stem = nn.Sequential(
            conv_bn_relu(config.sar_channels, STEM_CHANNELS, 3, 2),
            conv_bn_relu(STEM_CHANNELS, STEM_CHANNELS, 3, 2),
        )
        planes, first = STEM_CHANNELS, []
        cin = STEM_CHANNELS
        for _ in range(modules[0] * blocks[0]):
            first.append(Bottleneck(cin, planes))
            cin = planes * Bottleneck.expansion
        self.layer1 = nn.Sequential(*first)
        self.transitions, self.stages = nn.ModuleList(), nn.ModuleList()
        current = [cin]
        for s in range(1, len(widths)):
            target = list(widths[: s + 1])
            self.transitions.append(Transition(current, target))
            self.stages.append(nn.Sequential(*[FusionModule(target, blocks[s]) for _ in range(modules[s])]))
            current = target
        total = sum(current)
        self.mix = conv_bn_relu(total, total, 1)
        self.segm = SEGM(STEM_CHANNELS, residual=config.segm_residual) if config.segm else None
        self.head = nn.Conv2d(total, config.num_classes, 1)
        self.stride = 2 ** (len(widths) + 1)

    def forward(self, sar: torch.Tensor) -> torch.Tensor:
        check_input("HRNetTeacher", "SAR", sar, self.config.sar_channels, "TeacherConfig.sar_channels")
        x, (h, w) = pad_to_multiple(sar, self.stride)
        stem = self.stem(x)
        xs = [self.layer1(stem)]
        for transition, stage in zip(self.transitions, self.stages):
            xs = stage(transition(xs))
        size = xs[0].shape[-2:]
        feats = [xs[0]] + [F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in xs[1:]]
        feature = self.mix(torch.cat(feats, dim=1))
        if self.segm is not None:
            feature = self.segm(feature, stem)
        logits = F.interpolate(self.head(feature), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :h, :w]
