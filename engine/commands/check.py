"""``python -m engine check``: versions, cores, the CPU's fast paths and the precision decisions."""

from __future__ import annotations

import argparse
from typing import Any, Dict

from ..cli import add_json_flag


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="report versions, cores, the CPU's fast paths (bf16, int8) and the precision decisions",
        description="Versions of torch and ONNX Runtime, the device, the cores this process may use, "
        "whether the CPU has native bf16 or int8 paths, and which precision each model measured on "
        "this machine runs at (engine.inference.precision). With --model, --optical and --sar, measure "
        "(again) the precision decision of that model on tiles of that scene first.",
    )
    parser.add_argument("--threads", type=int, default=0, help="threads the runs use (0: every available core)")
    parser.add_argument("--model", help="student checkpoint whose precision to measure")
    parser.add_argument("--teacher", help="teacher checkpoint measured with it")
    parser.add_argument("--optical", help="optical raster of a scene to measure on")
    parser.add_argument("--sar", help="SAR raster of a scene to measure on")
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    import torch

    from ..inference.backends import describe_device, resolve_device
    from ..inference.precision import environment_report, report_lines

    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:
        ort = None
    measured = _measure(args) if args.model else None
    report = environment_report(args.threads)
    device = describe_device(resolve_device("auto"))
    result = {"ok": True, "torch": torch.__version__, "onnxruntime": ort, "device": device, **report}
    if measured is not None:
        result["measured_now"] = measured
    result["summary"] = report_lines(report)
    return result


def _measure(args: argparse.Namespace) -> Dict[str, Any]:
    """Measure the precision decision of ``--model`` on the scene (replacing a cached one)."""
    import tempfile
    from pathlib import Path

    from ..config import InferenceConfig
    from ..inference import precision
    from ..inference.backends import resolve_device
    from ..inference.pipeline import prepare_job
    from ..progress import ConsoleProgress

    if not (args.optical and args.sar):
        raise ValueError("--model needs --optical and --sar: the scene whose tiles the precisions are compared on")
    cfg = InferenceConfig(tile_size=args.tile_size, overlap=args.overlap, batch_size=args.batch_size,
                          threads=args.threads, precision="auto")
    progress = ConsoleProgress(quiet=True)
    with tempfile.TemporaryDirectory(prefix="sgcad-check-") as out:
        job = prepare_job(args.optical, args.sar, args.model, Path(out), args.teacher, cfg, None, progress)
        backend = job.make_backend(
            resolve_device("auto"), progress, work_pixels=precision.AUTO_MIN_PIXELS, refresh_precision=True
        )
    d = backend.precision_decision
    return {"model": backend.precision_key, "tiles": len(job.plan.tiles), "precision": d.precision, "reason": d.reason,
            "measured": d.measured}
