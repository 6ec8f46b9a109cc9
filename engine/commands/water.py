"""``python -m engine water`` (water on one SAR date, no before date and no label)."""

from __future__ import annotations

import argparse
from typing import Any, Dict

from ..cli import (
    add_noise_floor_arg,
    add_sar_levels_arg,
    add_streaming_args,
    add_units_args,
    int_list,
    streaming_config,
)
from .bundled import BUNDLED_TEACHER, bundled


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "water",
        help="water map of one SAR date with the water expert: probability, water / land, report",
        description="Map open water on one SAR image with the SAR water expert, before any label is drawn: "
        "water_probability.tif, water.tif (1 water, 0 not water, 255 no SAR) and water_report.json (the model "
        "that mapped it, water share and km², warnings). A raster whose bands are named VV and VH is mapped by "
        "the VV + VH water expert (docs/flood.md). For the flood itself, give a before date too: 'flood'.",
    )
    parser.add_argument("--sar", required=True, help="SAR raster (any units; see --sar-units)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--teacher", default=bundled(BUNDLED_TEACHER),
                        help="SAR water teacher (.safetensors; default the bundled one, with its VV + VH companion)")
    parser.add_argument("--sar-bands", type=int_list, default=[],
                        help="1-based SAR bands (default: by band names; one band: the VV teacher; two: VV, VH)")
    add_units_args(parser)
    add_sar_levels_arg(parser)
    add_noise_floor_arg(parser)
    parser.add_argument("--water-threshold", type=float, default=0.5,
                        help="water where the probability reaches this (0.5)")
    add_streaming_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from ..progress import ConsoleProgress
    from ..water.date_map import map_water_date

    if not args.teacher:
        raise ValueError("no water teacher: give --teacher (the bundled one is missing from resources/models)")
    inference = streaming_config(args)
    result = map_water_date(
        args.sar, args.out, args.teacher, inference, sar_bands=tuple(args.sar_bands), sar_units=args.sar_units,
        sar_calibration=args.sar_calibration, sar_levels=args.sar_levels, sar_backscatter=args.sar_backscatter,
        sar_noise_floor=args.sar_noise_floor,
        water_threshold=args.water_threshold,
        overwrite=args.overwrite, progress=ConsoleProgress(quiet=args.quiet),
    )
    return {"ok": True, **result}
