"""``python -m engine stack``: bands of several files (mixed resolutions) onto one grid."""

from __future__ import annotations

import argparse
from typing import Any, Dict

from ..cli import add_json_flag
from ..progress import ConsoleProgress


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from ..raster.grid import grid_of
    from ..raster.stack import parse_band_source, stack_bands
    from ..validate import check_outputs_not_inputs

    sources = [parse_band_source(s) for s in args.bands]
    inputs = {f"band source {i + 1}": path for i, (path, _) in enumerate(sources)}
    check_outputs_not_inputs([args.output], {**inputs, "grid raster": args.grid})
    grid = grid_of(args.grid) if args.grid else None
    return stack_bands(sources, args.output, grid=grid, overwrite=args.overwrite,
                       progress=ConsoleProgress(quiet=bool(args.json)))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stack", help="stack bands of several rasters (any resolution/CRS) onto one grid")
    p.add_argument("bands", nargs="+", help="FILE or FILE:BAND (1-based), in output order")
    p.add_argument("--output", required=True, help="stacked GeoTIFF (float32, NaN nodata)")
    p.add_argument("--grid", default="", help="raster whose grid to use (default: the finest input)")
    p.add_argument("--overwrite", action="store_true")
    add_json_flag(p)
    p.set_defaults(func=run)
