"""Polynomial learning-rate decay, stepped once per iteration (METHOD.md, Training stages)."""

from __future__ import annotations

from typing import List

import torch
from torch.optim.lr_scheduler import LRScheduler


class PolyLR(LRScheduler):
    """``lr = base_lr * (1 - it / total_iters) ** power``, floored at ``min_lr``.

    Its state is plain numbers, so a checkpoint stores it as JSON (no pickling).

    Args:
        optimizer: the optimizer whose groups are scheduled.
        total_iters: iterations of the whole run (epochs x batches per epoch).
        power: decay exponent (0.9 in the paper).
        min_lr: lower bound, so the last iterations still move the weights a little.
        last_epoch: index of the last iteration done (-1 for a fresh run).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_iters: int,
        power: float = 0.9,
        min_lr: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if total_iters < 1:
            raise ValueError(f"PolyLR: total_iters must be at least 1, got {total_iters}")
        self.total_iters = int(total_iters)
        self.power = float(power)
        self.min_lr = float(min_lr)
        super().__init__(optimizer, last_epoch)

    def factor(self, iteration: int) -> float:
        """The multiplier of the base learning rate after ``iteration`` steps."""
        done = min(max(iteration, 0), self.total_iters)
        return (1.0 - done / self.total_iters) ** self.power

    def get_lr(self) -> List[float]:
        f = self.factor(self.last_epoch)
        return [max(base * f, self.min_lr) for base in self.base_lrs]
