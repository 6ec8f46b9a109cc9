"""Parameter counts, FLOPs per input pixel and CPU forward time of registered networks."""

from __future__ import annotations

import time
from typing import Any, Dict, Tuple

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .registry import model_spec


def example_inputs(config: Any, height: int, width: int, batch: int = 1) -> Tuple[torch.Tensor, ...]:
    """Random inputs of the right band counts for the network ``config.name``."""
    kind = model_spec(config.name).kind
    gen = torch.Generator().manual_seed(0)
    sar = torch.rand(batch, config.sar_channels, height, width, generator=gen)
    if kind == "teacher":
        return (sar,)
    return (torch.rand(batch, config.optical_channels, height, width, generator=gen), sar)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def flops_per_pixel(model: nn.Module, config: Any, size: int = 256) -> float:
    """Forward FLOPs (torch's FLOP counter: one multiply-add = 2 FLOPs) per input pixel,
    measured on a ``size`` x ``size`` input in eval mode."""
    inputs = example_inputs(config, size, size)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / float(size * size)


def forward_seconds(model: nn.Module, config: Any, size: int = 512, repeats: int = 3) -> float:
    """Median wall time of one eval-mode forward pass on a ``size`` x ``size`` tile (after a
    warm-up pass), with the current ``torch.get_num_threads()``."""
    inputs = example_inputs(config, size, size)
    model.eval()
    times = []
    with torch.inference_mode():
        model(*inputs)
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            model(*inputs)
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def describe(config: Any, flop_size: int = 256, time_size: int = 0, repeats: int = 3) -> Dict[str, Any]:
    """Figures of one network at ``config``: parameters, FLOPs/pixel and optionally CPU time."""
    from .registry import build_model

    spec = model_spec(config.name)
    torch.manual_seed(0)
    model = build_model(config)
    info: Dict[str, Any] = {
        "name": spec.name,
        "kind": spec.kind,
        "description": spec.description,
        "parameters": count_parameters(model),
        "flops_per_pixel": flops_per_pixel(model, config, flop_size),
        "flop_input": f"{flop_size}x{flop_size}",
    }
    info["gflops_256"] = info["flops_per_pixel"] * 256 * 256 / 1e9
    if time_size:
        info["forward_seconds"] = forward_seconds(model, config, time_size, repeats)
        info["time_input"] = f"{time_size}x{time_size}"
        info["threads"] = torch.get_num_threads()
    return info
