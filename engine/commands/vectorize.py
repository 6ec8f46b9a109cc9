"""``python -m engine vectorize``: a class map as GeoPackage polygons with attributes."""

from __future__ import annotations

import argparse
from typing import Any, Dict

from ..cli import add_json_flag


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "vectorize",
        help="polygonise a class map (e.g. classes.tif) into a GeoPackage layer with attributes",
        description="Trace the connected areas of each class of a class raster as polygons, merged across "
        "blocks (no seams), with class id and name, pixel count, area, perimeter and, with --confidence, "
        "the mean confidence and SAR-only share; streamed, so memory does not grow with the scene "
        "(docs/vector.md).",
    )
    parser.add_argument("--classes", required=True, help="class raster (e.g. classes.tif of 'engine segment')")
    parser.add_argument("--out", required=True, help="GeoPackage to write (.gpkg)")
    parser.add_argument(
        "--confidence", help="confidence raster (confidence.tif of 'engine segment'); negative = SAR only"
    )
    parser.add_argument(
        "--keep", default="", help="classes to keep, ids or names separated by commas, e.g. 'water' (default all)"
    )
    parser.add_argument(
        "--min-area", type=float, default=0.0,
        help="drop polygons and fill holes smaller than this, in m² on the ground (geographic CRSs too)",
    )
    parser.add_argument(
        "--simplify", type=float, default=0.0, help="Douglas-Peucker tolerance in metres (0: pixel outline)"
    )
    parser.add_argument(
        "--no-preserve-topology", action="store_true",
        help="plain Douglas-Peucker (may self-intersect) instead of the topology-preserving variant",
    )
    parser.add_argument("--layer", default="polygons", help="layer name in the GeoPackage (polygons)")
    parser.add_argument("--band", type=int, default=1, help="band of the class raster (1)")
    parser.add_argument("--block", type=int, default=1024, help="block edge in pixels (memory only; 1024)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from ..progress import ConsoleProgress
    from ..vector.polygonize import vectorize_classes

    keep = [k.strip() for k in args.keep.split(",") if k.strip()]
    result = vectorize_classes(
        args.classes,
        args.out,
        confidence_path=args.confidence,
        classes=keep or None,
        min_area=args.min_area,
        simplify=args.simplify,
        preserve_topology=not args.no_preserve_topology,
        block=args.block,
        layer_name=args.layer,
        band=args.band,
        overwrite=args.overwrite,
        progress=ConsoleProgress(quiet=args.quiet),
    )
    return {"ok": True, **result}
