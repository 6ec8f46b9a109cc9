"""``python -m engine pretrain-sar``: self-supervised SAR encoder pretraining (DI3CL) on unlabelled SAR."""

from __future__ import annotations

import argparse
from typing import Any, Dict

from ..cli import add_json_flag, add_units_args, int_list
from ..cores import apply_threads


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..config import PretrainConfig

    d = PretrainConfig()
    parser = subparsers.add_parser(
        "pretrain-sar",
        help="pretrain a SAR encoder on unlabelled SAR rasters (DI3CL), to initialise the student or teacher",
        description="Contrastive pretraining with a momentum encoder and a queue of negatives, a Dynamic Instance "
        "term on regions of the overlap of two augmented views and a Contour Consistency term on shallow "
        "features (docs/pretraining.md). Rasters of any size are read by windows. Writes sar_encoder.safetensors; "
        "pass it to `finetune --sar-encoder`. A cancelled or killed run continues from its last state when run "
        "again with the same --out.",
    )
    parser.add_argument("--sar", required=True, nargs="+", help="one or more SAR rasters (no labels needed)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--like", help="student or teacher model whose architecture and input recipe to follow")
    parser.add_argument("--target", choices=("student", "teacher"), default=None,
                        help="encoder shape: the student's SAR branch or the teacher (default: --like's kind, "
                        f"else {d.target})")
    parser.add_argument("--sar-bands", type=int_list, help="1-based SAR bands (default: the model's, or band 1)")
    parser.add_argument("--steps", type=int, default=d.steps, help=f"optimiser steps ({d.steps})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"view pairs per step ({d.batch_size})")
    parser.add_argument("--view-size", type=int, default=d.view_size, help=f"view edge, multiple of 32 ({d.view_size})")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"AdamW learning rate ({d.lr:g})")
    parser.add_argument("--no-di", action="store_true", help="without the Dynamic Instance term (ablation)")
    parser.add_argument("--no-cc", action="store_true", help="without the Contour Consistency term (ablation)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: default)")
    parser.add_argument("--restart", action="store_true", help="do not continue an earlier run in --out")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier encoder in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_units_args(parser)
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from ..config import PretrainConfig
    from ..inputs.contract import InputOverrides
    from ..models.checkpoint import read_metadata
    from ..pretrain.trainer import pretrain_sar
    from ..progress import ConsoleProgress
    from ..validate import RunLock, check_output_folder

    apply_threads(args.threads)
    target = args.target or (read_metadata(args.like).kind if args.like else PretrainConfig.target)
    cfg = PretrainConfig(
        target=target, steps=args.steps, batch_size=args.batch_size, view_size=args.view_size, lr=args.lr,
        di_weight=0.0 if args.no_di else PretrainConfig.di_weight,
        cc_weight=0.0 if args.no_cc else PretrainConfig.cc_weight,
        seed=args.seed, device=args.device, amp=not args.no_amp,
    )
    overrides = InputOverrides((), (), "auto", args.sar_units, args.sar_calibration,
                               sar_backscatter=args.sar_backscatter)
    out = check_output_folder(args.out)
    with RunLock(out, "pretrain-sar"):
        result = pretrain_sar(args.sar, out, cfg, like=args.like, sar_bands=tuple(args.sar_bands or ()),
                              overrides=overrides, progress=ConsoleProgress(quiet=args.quiet),
                              resume=not args.restart, overwrite=args.overwrite)
    return {"ok": True, **result}
