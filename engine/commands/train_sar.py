"""``python -m engine train-sar``: the SAR-only land-cover model and its companion water head."""

from __future__ import annotations

import argparse
from typing import Any, Dict

from .train import (
    _data_args,
    _guarded,
    _inputs,
    _loss_cfg,
    _model_arg,
    _model_cfg,
    _progress,
    _schema,
    _seg_loss_args,
    _summary,
    _train_args,
    _train_cfg,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-sar",
        help="train the SAR-only land-cover model (K classes + water head; no optical image)",
        description="SAR-only land cover from one polarisation (HH or VV) or two (dual-pol): a SAR encoder, "
        "FPN decoder, SEGM gate, a K-class head and a companion water head (written as "
        "OUT/water_teacher.safetensors, usable as --teacher). Loss default: focal + Dice with class weights "
        "raised to --alpha-scale. --optical is not read.",
    )
    _data_args(parser)
    _train_args(parser, epochs=150, lr=1e-3)
    _model_arg(parser, "SAR-only")
    _seg_loss_args(parser)
    parser.set_defaults(loss="focal_dice")
    parser.add_argument("--water-head-weight", type=float, default=0.5,
                        help="weight of the companion water head's loss (0.5; 0 = K classes only)")
    parser.add_argument("--hr-injection", action="store_true",
                        help="inject the finest encoder features into every decoder scale")
    parser.add_argument("--refine-up", action="store_true",
                        help="progressive refine-up head (3x3 refinement + 2x upsampling to full resolution)")
    parser.add_argument("--schema", help="JSON file with the class schema (default: the six classes)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from ..config import StudentConfig
    from ..train.sar_stage import train_sar_only

    if args.optical:
        raise ValueError("train-sar is SAR-only: leave out --optical (train-student uses optical + SAR)")
    if args.sar_bands and len(args.sar_bands) > 2:
        raise ValueError(f"train-sar takes one or two SAR bands (--sar-bands), got {args.sar_bands}")
    if args.water_head_weight < 0:
        raise ValueError(f"--water-head-weight must be 0 or more, got {args.water_head_weight}")
    model_cfg = _model_cfg(StudentConfig, args)
    model_cfg.hr_injection = model_cfg.hr_injection or args.hr_injection
    model_cfg.refine_up = model_cfg.refine_up or args.refine_up
    loss_cfg = _loss_cfg(args)
    loss_cfg.water_head_weight = args.water_head_weight
    result = _guarded(args, "train-sar", lambda: train_sar_only(
        _inputs(args),
        args.out,
        model_cfg,
        _train_cfg(args),
        loss_cfg,
        _schema(args.schema),
        progress=_progress(args),
        resume=args.resume,
        overwrite=args.overwrite,
        init_from=args.init,
    ))
    out = _summary(result)
    out["water_teacher"] = result.get("water_teacher")
    if result.get("test", {}).get("water_head"):
        out["water_head"] = result["test"]["water_head"]
    return out
