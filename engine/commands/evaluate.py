"""``python -m engine evaluate``: accuracy of a class raster against reference labels."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict

from ..cli import add_json_flag


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="compare a class raster with a reference raster or polygon layer (OA, Kappa, IoU ...)",
        description="Stream both inputs by windows on the prediction's grid and report OA, Cohen's "
        "Kappa, per-class IoU, mIoU, user's/producer's accuracy, F1 and the boundary F-score per class "
        "(roads, shoreline) within a pixel tolerance; 255 in the reference is ignored.",
    )
    parser.add_argument("--prediction", required=True, help="single-band class raster (e.g. classes.tif)")
    parser.add_argument(
        "--reference", required=True, help="label raster, or polygon layer (classes in --class-field)"
    )
    parser.add_argument("--class-field", help="attribute of the polygon layer holding class ids or names (class)")
    parser.add_argument("--layer", help="layer name inside a multi-layer vector file")
    parser.add_argument(
        "--model", help="take the class schema from this checkpoint (default: the six classes)"
    )
    parser.add_argument("--out", help="write the metrics as JSON here")
    parser.add_argument("--plot", help="write the confusion matrix as PNG here")
    parser.add_argument("--block", type=int, default=1024, help="window size in pixels (1024)")
    parser.add_argument(
        "--boundary-tolerance", type=int, default=2,
        help="pixels of slack of the boundary F-score reported for roads and the shoreline (2)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing --out/--plot files")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from ..config import ClassSchema
    from ..files import atomic_write_bytes
    from ..models.checkpoint import read_metadata
    from ..progress import ConsoleProgress
    from ..raster.io import check_output
    from ..train.evaluate import evaluate_rasters
    from ..validate import check_distinct_outputs, check_outputs_not_inputs, labels_layer

    if args.boundary_tolerance < 0:
        raise ValueError(f"--boundary-tolerance must be 0 or more pixels, got {args.boundary_tolerance}")
    if args.block < 16:
        raise ValueError(f"--block must be at least 16 pixels, got {args.block}")
    targets = [t for t in (args.out, args.plot) if t]
    check_outputs_not_inputs(targets, {"prediction": args.prediction, "reference": args.reference, "model": args.model})
    check_distinct_outputs({"metrics file (--out)": args.out, "plot (--plot)": args.plot})
    schema = read_metadata(args.model).schema if args.model else ClassSchema()
    for target in targets:  # a folder, an existing file without --overwrite, a missing or read-only folder
        check_output(target, args.overwrite)
    layer = labels_layer(args.reference, args.layer)
    result = evaluate_rasters(
        args.prediction,
        args.reference,
        schema,
        args.class_field,
        layer,
        args.block,
        ConsoleProgress(quiet=args.quiet),
        boundary_tolerance=args.boundary_tolerance,
    )
    if args.out:
        atomic_write_bytes(args.out, json.dumps(result, indent=2).encode("utf-8"))
        result["metrics_file"] = str(args.out)
    if args.plot:
        from ..train.report import plot_confusion

        plot_confusion(result["matrix"], result["class_names"], Path(args.plot), title="prediction vs reference")
        result["plot"] = str(args.plot)
    return {"ok": True, **result}
