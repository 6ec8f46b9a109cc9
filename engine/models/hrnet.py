"""SAR-only HRNet water expert (METHOD.md, Teacher): HRNet-W18-small-v2 layout by default."""

from __future__ import annotations

import dataclasses
from typing import List, Sequence, Tuple

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


def context_poolings(scales: Sequence[float]) -> Tuple[int, ...]:
    """The pooling factor ``k`` of each scale ``1/k`` in ``TeacherConfig.context_scales``."""
    out = []
    for scale in scales:
        k = round(1.0 / scale) if scale > 0 else 0
        if not 1 <= k <= 16 or abs(k * scale - 1.0) > 1e-6:
            raise ValueError(f"TeacherConfig.context_scales must be 1/k for a whole k from 1 to 16 (1, 0.5, 0.25 ...), "
                             f"got {scale}")
        out.append(k)
    if not out or len(set(out)) != len(out):
        raise ValueError(f"TeacherConfig.context_scales must list distinct scales, got {tuple(scales)}")
    return tuple(out)


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
        self.poolings = context_poolings(config.context_scales)

    def set_context_scales(self, scales: Sequence[float]) -> None:
        """Read the input at ``scales`` from now on (the weights are the same at every scale)."""
        self.poolings = context_poolings(scales)
        self.config = dataclasses.replace(self.config, context_scales=tuple(float(s) for s in scales))

    def forward(self, sar: torch.Tensor) -> torch.Tensor:
        check_input("HRNetTeacher", "SAR", sar, self.config.sar_channels, "TeacherConfig.sar_channels")
        total = None
        for k in self.poolings:
            logits = self._one_scale(sar) if k == 1 else self._pooled(sar, k)
            total = logits if total is None else total + logits
        # a mean of logits: an offset folded into the head moves it as it moves each pass
        return total / len(self.poolings)

    def _pooled(self, sar: torch.Tensor, k: int) -> torch.Tensor:
        """Logits of the ``k`` x ``k`` mean of ``sar``, bilinearly back at its size."""
        x, (h, w) = pad_to_multiple(sar, k)
        logits = self._one_scale(F.avg_pool2d(x, k))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)[..., :h, :w]

    def _one_scale(self, sar: torch.Tensor) -> torch.Tensor:
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
