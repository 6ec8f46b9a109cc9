"""``python -m engine bench``: segmentation throughput and memory on this machine."""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict

from ..cli import add_flip_average_arg, add_json_flag, int_list


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure segmentation throughput (model-only vs pipeline), torch vs ONNX, and peak memory",
        description="Model-only and pipeline throughput on a synthetic scene, their ratio, torch vs ONNX "
        "Runtime on the same tiles, and the peak RSS of whole runs on two scene sizes (fresh processes).",
    )
    parser.add_argument("--size", type=int, default=2048, help="throughput scene size (2048; 0 = skip)")
    parser.add_argument(
        "--rss-sizes",
        type=int_list,
        default=[2048, 8192],
        help="scene sizes for peak RSS (2048,8192; empty = skip)",
    )
    parser.add_argument(
        "--model-size",
        choices=("default", "tiny"),
        default="default",
        help="networks for throughput: the default LightMCANet + HRNet-W18-small, or tiny ones",
    )
    parser.add_argument(
        "--rss-model-size",
        choices=("default", "tiny"),
        default="tiny",
        help="networks for the RSS runs (tiny keeps 8192x8192 to about a minute)",
    )
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto")
    parser.add_argument("--threads", type=int, default=0, help="threads of every side (0: the available cores)")
    parser.add_argument(
        "--precision", choices=("fp32", "bf16", "int8"), default="fp32", help="network precision (fp32)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions; median, min, max (3)")
    parser.add_argument(
        "--peer-size",
        type=int,
        default=0,
        help="scene size for the end-to-end comparison with GeoDeep/Deepness on our network (0 = skip)",
    )
    parser.add_argument(
        "--deepness-path",
        help="folder of the Deepness QGIS plugin's source (github.com/PUTvision/qgis-plugin-deepness) to "
        "run it on our network too; skipped when absent",
    )
    parser.add_argument(
        "--work", help="folder to keep scenes and checkpoints between runs (default: temporary)"
    )
    add_flip_average_arg(parser)
    parser.add_argument("--rss-worker", help=argparse.SUPPRESS)
    parser.add_argument("--quiet", action="store_true")
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from ..config import InferenceConfig
    from ..inference.bench import rss_worker, run_bench
    from ..progress import ConsoleProgress

    if args.rss_worker:
        return rss_worker(json.loads(args.rss_worker))
    cfg = InferenceConfig(
        tile_size=args.tile_size,
        overlap=args.overlap,
        batch_size=args.batch_size,
        device=args.device,
        backend=args.backend,
        threads=args.threads,
        precision=args.precision,
        flip_average=args.flip_average,
    )
    if args.repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {args.repeats}")
    result = run_bench(
        args.size,
        args.rss_sizes,
        cfg,
        args.model_size,
        args.rss_model_size,
        args.work,
        ConsoleProgress(quiet=args.quiet),
        repeats=args.repeats,
        peer_size=args.peer_size,
        deepness_path=args.deepness_path,
    )
    return {"ok": True, **result}
