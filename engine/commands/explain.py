"""``python -m engine explain``: a short text explaining a segmentation from its measured numbers."""

from __future__ import annotations

import argparse
from typing import Any, Dict

from ..cli import add_json_flag, nonempty_int_list


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="explain a segmentation from its numbers (class shares, confidence, SAR-only share, gates)",
        description="Read the rasters of a segmentation run (classes.tif, confidence.tif and, with a water "
        "expert, water_probability.tif and gates.tif) and write a short text from measured quantities: class "
        "shares, mean confidence per class, where the model is least sure, the share answered from SAR alone, "
        "where the water expert and the model agree, the most confused classes (with --labels) and what to "
        "do next. Deterministic, no language model. Writes explanation.json and a section of report.html "
        "into the run folder.",
    )
    parser.add_argument("--run", required=True, help="output folder of `engine segment`")
    parser.add_argument("--labels", help="reference label raster, or polygon layer (classes in --class-field)")
    parser.add_argument("--class-field", help="attribute of the polygon layer holding class ids or names (class)")
    parser.add_argument("--layer", help="layer name inside a multi-layer vector file")
    area = parser.add_mutually_exclusive_group()
    area.add_argument("--aoi", help="explain only this area: polygon file or minx,miny,maxx,maxy[,CRS]")
    area.add_argument("--window", type=nonempty_int_list, metavar="COL,ROW,WIDTH,HEIGHT",
                      help="explain only this pixel window of the run (e.g. a tile)")
    parser.add_argument("--low-confidence", type=float, default=0.6,
                        help="confidence below which a pixel counts as uncertain (0.6)")
    parser.add_argument("--no-write", action="store_true", help="print only; write no file")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier explanation")
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from ..explain import explain_run
    from ..progress import ConsoleProgress
    from ..validate import labels_layer

    if args.window is not None and len(args.window) != 4:
        raise ValueError(f"--window needs four integers COL,ROW,WIDTH,HEIGHT, got {args.window}")
    if args.labels:
        args.layer = labels_layer(args.labels, args.layer)
    result = explain_run(
        args.run,
        labels=args.labels,
        class_field=args.class_field,
        layer=args.layer,
        aoi=args.aoi,
        window=args.window,
        low_confidence=args.low_confidence,
        write=not args.no_write,
        overwrite=args.overwrite,
        progress=ConsoleProgress(quiet=True),  # warnings only (polygons skipped, repaired or overlapping)
    )
    out: Dict[str, Any] = {"ok": True, "text": result["text"]}
    for key in ("json", "report"):
        if key in result:
            out[key] = result[key]
    if args.json:  # the measured numbers and which of them the text cites
        out.update(numbers=result["numbers"], cited=result["cited"])
    return out
