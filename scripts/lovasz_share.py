"""Share of the Lovász-softmax term in a stage-1 training step (default student, wCE + Dice + Lovász).

Times full training steps (forward, loss, backward, AdamW) with and without the Lovász term,
interleaved, on random inputs with blocky labels, one torch thread, and prints the medians.

Usage: python scripts/lovasz_share.py [--batch 8] [--size 256] [--repeats 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config import LossConfig, StudentConfig  # noqa: E402
from engine.losses.segmentation import SegmentationLoss  # noqa: E402
from engine.models import build_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = build_model(StudentConfig())
    optimizer = torch.optim.AdamW(net.parameters(), 1e-3)
    b, s = args.batch, args.size
    optical, sar = torch.rand(b, 3, s, s), torch.rand(b, 1, s, s)
    label = torch.randint(0, 6, (b, s // 16, s // 16)).repeat_interleave(16, 1).repeat_interleave(16, 2)
    label[:, :10] = 255
    losses = {
        "with": SegmentationLoss(LossConfig(), torch.ones(6)),
        "without": SegmentationLoss(LossConfig(lovasz_weight=0.0), torch.ones(6)),
    }

    def step(loss_fn) -> float:
        t0 = time.perf_counter()
        optimizer.zero_grad()
        loss_fn(net(optical, sar), label).backward()
        optimizer.step()
        return time.perf_counter() - t0

    step(losses["with"])
    times = {k: [] for k in losses}
    for _ in range(args.repeats):
        for name, fn in losses.items():
            times[name].append(step(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"step with Lovász {med['with']:.3f} s, without {med['without']:.3f} s "
          f"(min-max {min(times['with']):.3f}-{max(times['with']):.3f}, "
          f"{min(times['without']):.3f}-{max(times['without']):.3f}); "
          f"Lovász share {1 - med['without'] / med['with']:.3f}")


if __name__ == "__main__":
    main()
