"""Two water experts answering together: one reading VV, one reading VV and VH (engine.water.experts)."""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn


class PolarisationPair(nn.Module):
    """The mean water logits of a co-polarised teacher (band 1) and a co + cross one (bands 1, 2)."""

    def __init__(self, co_polarised: nn.Module, dual_pol: nn.Module) -> None:
        super().__init__()
        self.co_polarised, self.dual_pol = co_polarised, dual_pol

    def members(self) -> Tuple[nn.Module, nn.Module]:
        """The co-polarised expert and the dual-polarisation one, in that order."""
        return self.co_polarised, self.dual_pol

    def forward(self, sar: torch.Tensor) -> torch.Tensor:
        if sar.shape[1] != 2:
            raise ValueError(f"the VV + VH water expert reads 2 SAR channels (VV, VH), got {sar.shape[1]}")
        return (self.co_polarised(sar[:, :1]).float() + self.dual_pol(sar).float()) / 2
