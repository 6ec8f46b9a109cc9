"""Building blocks shared by the student and the teacher."""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F  # noqa: N812  (the usual torch alias)
from torch import nn


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """Convolution (no bias, BN follows), batch norm and optionally ReLU."""
    layers = [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions and a (projected) shortcut."""

    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(cin, cout, 3, stride)
        self.conv2 = conv_bn_relu(cout, cout, 3, 1, relu=False)
        self.shortcut = (
            conv_bn_relu(cin, cout, 1, stride, relu=False) if stride != 1 or cin != cout else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """ResNet bottleneck block (1x1 reduce, 3x3, 1x1 expand by 4); HRNet's first stage."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.body = nn.Sequential(
            conv_bn_relu(cin, planes, 1),
            conv_bn_relu(planes, planes, 3, stride),
            conv_bn_relu(planes, cout, 1, relu=False),
        )
        self.shortcut = (
            conv_bn_relu(cin, cout, 1, stride, relu=False) if stride != 1 or cin != cout else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class SEGM(nn.Module):
    """SAR edge guidance: a spatial gate from shallow SAR features modulates decoder features.

    ``G = sigmoid(convs(sar_shallow))`` is one channel (an edge-like map) broadcast over the
    feature channels. With ``residual`` the output is ``F + F * G``, so a gate near zero leaves
    the features unchanged instead of erasing them; otherwise ``F * G``.
    """

    def __init__(self, sar_channels: int, hidden: int = 32, residual: bool = True) -> None:
        super().__init__()
        self.residual = residual
        self.edge = nn.Sequential(
            conv_bn_relu(sar_channels, hidden, 3),
            conv_bn_relu(hidden, hidden, 3),
            nn.Conv2d(hidden, 1, 1),
        )

    def gate(self, sar_shallow: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        """The gate ``G`` in [0, 1] at ``size``, shape (B, 1, H, W)."""
        g = torch.sigmoid(self.edge(sar_shallow))
        if g.shape[-2:] != tuple(size):
            g = F.interpolate(g, size=size, mode="bilinear", align_corners=False)
        return g

    def modulate(self, features: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """Apply a gate from :meth:`gate` to ``features``."""
        return features + features * gate if self.residual else features * gate

    def forward(self, features: torch.Tensor, sar_shallow: torch.Tensor) -> torch.Tensor:
        return self.modulate(features, self.gate(sar_shallow, features.shape[-2:]))


def pad_to_multiple(x: torch.Tensor, multiple: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Pad the bottom/right of (B, C, H, W) by edge replication to a multiple of ``multiple``.

    Replication (not reflection) works for any size, even smaller than the padding.

    Returns:
        The padded tensor and the original ``(H, W)`` to crop back to.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


def check_input(model: str, name: str, x: torch.Tensor, expected: int, field: str, hint: str = "") -> None:
    """Raise a ``ValueError`` saying what ``model`` expects when ``x`` is not (B, expected, H, W)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{model} expects {name} as a (batch, bands, height, width) tensor; got {shape}")
    got = x.shape[1]
    if got != expected:
        noun = "band" if expected == 1 else "bands"
        raise ValueError(
            f"{model} expects {name} with {expected} {noun} ({field}); got {name} with {got} "
            f"band{'s' if got != 1 else ''}. Select {expected} {name} {noun} or build the model "
            f"with {field.split('.')[-1]}={got}{hint}"
        )
