"""``python -m engine models``: registered networks with parameters, FLOPs and CPU time."""

from __future__ import annotations

import argparse
from typing import Any, Dict

from ..cli import add_json_flag


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list registered networks with parameter count and FLOPs per pixel",
        description="List every registered network at its default configuration with its parameter "
        "count and forward FLOPs per input pixel (torch's FLOP counter on a square input).",
    )
    parser.add_argument("--flop-size", type=int, default=256, help="side of the FLOP-count input (256)")
    parser.add_argument(
        "--time", type=int, default=0, metavar="SIZE",
        help="also time a CPU forward pass on a SIZE x SIZE tile (e.g. 512); 0 = off",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed passes, median reported (3)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    import torch

    from ..models import list_models, model_spec
    from ..models.profile import describe

    if args.flop_size < 32 or args.time < 0:
        raise ValueError("--flop-size must be at least 32 and --time must be 0 or a tile size")
    if args.threads:
        torch.set_num_threads(args.threads)
    models = []
    for name in list_models():
        config = model_spec(name).default_config()
        models.append(describe(config, args.flop_size, args.time, args.repeats))
    return {"ok": True, "models": models}
