"""``python -m engine flood`` (flood map from two SAR dates) and ``flood-pair`` (a synthetic pair)."""

from __future__ import annotations

import argparse
from typing import Any, Dict

from ..cli import (
    add_json_flag,
    add_noise_floor_arg,
    add_sar_levels_arg,
    add_streaming_args,
    int_list,
    streaming_config,
)
from .bundled import BUNDLED_TEACHER, bundled


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..config import SAR_BACKSCATTER, SAR_UNITS

    parser = subparsers.add_parser(
        "flood",
        help="flood map from a before and an after SAR date: flood extent, likelihood, exclusion, report",
        description="Map water on each date (SAR water teacher, scene-adaptive threshold, or the student where "
        "an optical image of the date is given), then the observed flood (water after, not before), permanent "
        "water, a flood likelihood p_after * (1 - p_before), an exclusion layer where SAR cannot see water, "
        "and the flooded area per area-of-interest polygon (docs/flood.md). The after date's grid is the output "
        "grid; the before date is warped onto it and its units are resolved on their own.",
    )
    parser.add_argument("--after", required=True, help="SAR raster after the event (its grid is the output grid)")
    parser.add_argument("--before", required=True, help="SAR raster before the event (any grid, any units)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--method", choices=("teacher", "threshold"), default="teacher",
                        help="water on each date: the SAR water teacher (default) or the scene-adaptive threshold")
    parser.add_argument("--teacher", default=bundled(BUNDLED_TEACHER),
                        help="SAR water teacher model (.safetensors; default the bundled one, with its VV + VH "
                        "companion; read by --method teacher)")
    parser.add_argument("--student", help="student model: maps each date that has an optical image")
    parser.add_argument("--after-optical", help="optical image of the after date (with --student)")
    parser.add_argument("--before-optical", help="optical image of the before date (with --student)")
    parser.add_argument("--aoi", help="polygon file: maps are cut to its extent; the report gives each polygon's flood")
    parser.add_argument("--aoi-name-field", help="field naming the polygons in the report (default: first text field)")
    for date in ("after", "before"):
        parser.add_argument(f"--{date}-bands", type=int_list, default=[],
                            help=f"1-based band of the {date} SAR to map (default: by band names; a raster with bands "
                                 "named VV and VH is mapped by the VV + VH water expert)")
        parser.add_argument(f"--{date}-units", choices=SAR_UNITS, default="auto",
                            help=f"units of the {date} SAR: auto (detected), linear, db, amplitude, dn")
        parser.add_argument(f"--{date}-calibration", type=float, default=0.0,
                            help=f"calibration constant of the {date} SAR in units dn (sigma0 = DN^2 / constant)")
        parser.add_argument(f"--{date}-backscatter", choices=SAR_BACKSCATTER, default="auto",
                            help=f"backscatter of the {date} SAR: auto (named by the file, else sigma0), sigma0, "
                                 "gamma0 (terrain-flattened: read as sigma0 x cos 37 deg)")
        parser.add_argument(f"--{date}-local-incidence",
                            help=f"local incidence angle raster of the {date} date "
                            "(degrees; shadow >= 90, layover <= 0)")
        parser.add_argument(f"--{date}-look-azimuth", type=float,
                            help=f"with --dem: look direction of the {date} date, sensor to ground, degrees from north")
        parser.add_argument(f"--{date}-incidence", type=float, default=39.0,
                            help=f"with --dem: incidence angle of the {date} date on the ellipsoid (degrees, 39)")
    add_sar_levels_arg(parser)
    add_noise_floor_arg(parser)
    parser.add_argument("--dem", help="elevation raster in metres for shadow/layover (with the look azimuths)")
    parser.add_argument("--water-threshold", type=float, default=0.5,
                        help="water where the probability reaches this (teacher, student; 0.5)")
    parser.add_argument("--low-db", type=float, default=-23.0,
                        help="exclusion: both dates darker than this (dB, speckle-filtered; -23 for C-band VV)")
    parser.add_argument("--min-change-db", type=float, default=3.0,
                        help="a flood needs the backscatter to fall by at least this (dB; 3)")
    parser.add_argument("--own-thresholds", action="store_true",
                        help="threshold method: each date its own threshold instead of the after date's for both")
    parser.add_argument("--truth", help="reference flood raster (1 flooded, 0 not) to score the map against")
    parser.add_argument("--vectorize", action="store_true",
                        help="also write the flood as polygons (flood_polygons.gpkg)")
    parser.add_argument("--min-area", type=float, default=0.0, help="with --vectorize: drop polygons below this (m²)")
    add_streaming_args(parser)
    parser.set_defaults(func=run)

    pair = subparsers.add_parser(
        "flood-pair",
        help="write a synthetic before/after SAR pair with a known flood (for trying and testing 'flood')",
        description="Render a synthetic scene as the before date and flood a known area of it for the after "
        "date (calm-water backscatter with fresh speckle); flood_truth.tif is the known flood.",
    )
    pair.add_argument("--out", required=True, help="output folder")
    pair.add_argument("--size", type=int, default=512, help="pixels per side (512)")
    pair.add_argument("--seed", type=int, default=1, help="seed (1)")
    pair.add_argument("--resolution", type=float, default=10.0, help="pixel size in metres (10)")
    pair.add_argument("--flood", choices=("area", "lakes"), default="area",
                      help="area: compact flooded regions (default); lakes: a higher lake level")
    pair.add_argument("--flood-share", type=float, default=0.15, help="area: share of the scene flooded (0.15)")
    pair.add_argument("--sar-confusers", type=float, default=0.3, help="density of dark non-water surfaces (0.3)")
    pair.add_argument("--warp-before", action="store_true", help="write the before date on another grid")
    pair.add_argument("--overwrite", action="store_true", help="replace existing files")
    add_json_flag(pair)
    pair.set_defaults(func=run_pair)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from ..flood.mapping import FloodConfig, FloodDate, map_flood
    from ..flood.terrain import Geometry
    from ..progress import ConsoleProgress

    inference = streaming_config(args)

    def date(name: str) -> FloodDate:
        get = lambda key: getattr(args, f"{name}_{key}")  # noqa: E731
        return FloodDate(
            sar=getattr(args, name), bands=tuple(get("bands")), units=get("units"), calibration=get("calibration"),
            levels=args.sar_levels, backscatter=get("backscatter"), noise_floor=args.sar_noise_floor,
            optical=get("optical"),
            geometry=Geometry(get("local_incidence"), get("look_azimuth"), get("incidence")),
        )

    cfg = FloodConfig(
        method=args.method, water_threshold=args.water_threshold, low_db=args.low_db,
        min_change_db=args.min_change_db, shared_threshold=not args.own_thresholds,
    )
    result = map_flood(
        date("after"), date("before"), args.out, cfg, teacher_path=args.teacher, student_path=args.student,
        inference=inference, aoi=args.aoi, aoi_name_field=args.aoi_name_field, dem=args.dem, truth=args.truth,
        vectorize=args.vectorize, vector_min_area=args.min_area, overwrite=args.overwrite,
        progress=ConsoleProgress(quiet=args.quiet),
    )
    return {"ok": True, **result}


def run_pair(args: argparse.Namespace) -> Dict[str, Any]:
    from ..flood.synthetic import make_flood_pair

    result = make_flood_pair(
        args.out, size=args.size, seed=args.seed, flood=args.flood, flood_share=args.flood_share,
        resolution=args.resolution, sar_confusers=args.sar_confusers, warp_before=args.warp_before,
        overwrite=args.overwrite,
    )
    return {"ok": True, **result}
