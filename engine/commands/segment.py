"""``python -m engine segment``: land-cover map of a large scene from a trained model."""

from __future__ import annotations

import argparse
from typing import Any, Dict

from ..cli import add_json_flag, add_units_args, int_list


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment a large optical + SAR scene with a trained student (and teacher)",
        description="Stream a scene tile by tile onto the model grid, blend overlapping tiles and "
        "write classes.tif, confidence.tif and, with --teacher, water_probability.tif and gates.tif.",
    )
    parser.add_argument("--optical", required=True, help="optical raster")
    parser.add_argument("--sar", required=True, help="SAR raster")
    parser.add_argument("--model", required=True, help="student checkpoint (.safetensors)")
    parser.add_argument(
        "--teacher", help="SAR-only water teacher checkpoint (water probability, gates, SAR-only answers)"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--optical-bands", type=int_list, help="1-based optical bands, e.g. 1,2,3 (default: the model's)"
    )
    parser.add_argument("--sar-bands", type=int_list, help="1-based SAR bands, e.g. 1 (default: the model's)")
    parser.add_argument(
        "--aoi", help="polygon file, or box 'minx,miny,maxx,maxy[,CRS]' (grid CRS by default)"
    )
    parser.add_argument("--cloud-mask", help="raster whose non-zero pixels mark the optical input missing")
    parser.add_argument(
        "--grid", choices=("sar", "optical"), default="sar", help="output grid (default: sar)"
    )
    parser.add_argument("--resolution", type=float, help="output pixel size instead of a native grid")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument(
        "--backend",
        choices=("auto", "torch", "onnx"),
        default="auto",
        help="auto: ONNX Runtime on CPU, torch on CUDA",
    )
    parser.add_argument("--tile-size", type=int, default=512, help="tile edge in pixels (512)")
    parser.add_argument("--overlap", type=int, default=64, help="pixels shared by neighbouring tiles (64)")
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per network call (4)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for the network (0: default)")
    parser.add_argument("--no-amp", action="store_true", help="full precision on CUDA")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_units_args(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from ..config import InferenceConfig
    from ..inference.pipeline import segment_scene
    from ..progress import ConsoleProgress

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    cfg = InferenceConfig(
        tile_size=args.tile_size,
        overlap=args.overlap,
        batch_size=args.batch_size,
        device=args.device,
        backend=args.backend,
        amp=not args.no_amp,
        threads=args.threads,
    )
    result = segment_scene(
        args.optical,
        args.sar,
        args.model,
        args.out,
        teacher_path=args.teacher,
        cfg=cfg,
        aoi=args.aoi,
        progress=ConsoleProgress(quiet=args.quiet),
        overwrite=args.overwrite,
        optical_bands=args.optical_bands,
        sar_bands=args.sar_bands,
        cloud_mask=args.cloud_mask,
        grid=args.grid,
        resolution=args.resolution,
        optical_units=args.optical_units,
        sar_units=args.sar_units,
        sar_calibration=args.sar_calibration,
    )
    return {"ok": True, **result}
