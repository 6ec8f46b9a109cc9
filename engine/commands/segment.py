"""``python -m engine segment``: land-cover map of a large scene from a trained model."""

from __future__ import annotations

import argparse
from typing import Any, Dict

from ..cli import (
    add_flip_average_arg,
    add_json_flag,
    add_noise_floor_arg,
    add_sar_levels_arg,
    add_units_args,
    int_list,
)
from .bundled import BUNDLED_STUDENT, bundled, segment_teacher


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment a large optical + SAR scene with a trained student (and teacher)",
        description="Stream a scene tile by tile onto the model grid, blend overlapping tiles and "
        "write classes.tif, confidence.tif and, with the water teacher (the bundled one unless --teacher or "
        "--no-teacher), water_probability.tif and gates.tif. "
        "With --shards (or under torchrun) the scene is cut into row blocks shared by several "
        "processes and the outputs are VRT mosaics over per-block files (docs/distributed.md).",
    )
    add_segment_args(parser)
    add_shard_args(parser)
    parser.set_defaults(func=run)


def add_shard_args(parser: argparse.ArgumentParser, env_default: bool = True) -> None:
    """``--shards``, ``--shard``, ``--block-rows``, ``--merge`` (sharded segmentation)."""
    group = parser.add_argument_group("sharded runs (several processes, GPUs or machines; docs/distributed.md)")
    where = "torchrun's WORLD_SIZE, else " if env_default else ""
    group.add_argument("--shards", type=int, help=f"processes sharing the scene (default: {where}no sharding)")
    group.add_argument("--shard", type=int,
                       help="which shard this process is, 0 .. shards-1 (default: torchrun's RANK)")
    group.add_argument("--block-rows", type=int,
                       help="rows per block, a multiple of 16 (default: ~8192, at least one block per shard)")
    group.add_argument("--merge", action="store_true",
                       help="also write one GeoTIFF per output next to the VRT mosaic (a full copy)")


def add_segment_args(parser: argparse.ArgumentParser, inputs_required: bool = True) -> None:
    """The options of ``segment`` (shared with ``segment-distributed``)."""
    parser.add_argument("--optical", help="optical raster (leave out for a SAR-only model, engine train-sar)")
    parser.add_argument("--sar", required=inputs_required, help="SAR raster")
    student = bundled(BUNDLED_STUDENT)
    parser.add_argument("--model", default=student, required=student is None,
                        help="student checkpoint (.safetensors; default the bundled one)")
    parser.add_argument(
        "--teacher", help="SAR-only water teacher checkpoint (water probability, gates, SAR-only answers; default "
        "the bundled one where it reads as many SAR bands as the student)"
    )
    parser.add_argument("--no-teacher", action="store_true",
                        help="run the student alone: no water probability, no gates")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--optical-bands", type=int_list, help="1-based optical bands, e.g. 1,2,3 (default: the model's)"
    )
    parser.add_argument("--sar-bands", type=int_list, help="1-based SAR bands, e.g. 1 (default: the model's)")
    parser.add_argument(
        "--aoi", help="polygon file, or box 'minx,miny,maxx,maxy[,CRS]' (grid CRS by default)"
    )
    parser.add_argument("--cloud-mask", help="raster marking the optical input missing: 0/1 (non-zero is cloud), "
                        "or a cloud probability (0-1) or percentage (0-100), cloud from 50 %%")
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
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "int8"),
        default="auto",
        help="network precision on CPU; auto: bf16/int8 only where measured faster and faithful to fp32",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_units_args(parser)
    add_sar_levels_arg(parser)
    add_noise_floor_arg(parser)
    add_flip_average_arg(parser)
    parser.add_argument(
        "--water-from-expert",
        action="store_true",
        help="a SAR-only model's water class from the water teacher (more flood water, more false water on dry land)",
    )
    parser.add_argument(
        "--water-max-nir", type=float, default=None, metavar="REFLECTANCE",
        help="the most NIR reflectance open water has: above it the student's water needs the water teacher's "
        "agreement, at or under it the teacher's water joins the map (default 0.15; 0: NIR not read)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_json_flag(parser)


def inference_config(args: argparse.Namespace):
    from ..config import InferenceConfig

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    return InferenceConfig(
        tile_size=args.tile_size,
        overlap=args.overlap,
        batch_size=args.batch_size,
        device=args.device,
        backend=args.backend,
        amp=not args.no_amp,
        threads=args.threads,
        precision=getattr(args, "precision", "auto"),
        flip_average=getattr(args, "flip_average", False),
        water_from_expert=getattr(args, "water_from_expert", False),
        water_max_nir=InferenceConfig.water_max_nir if getattr(args, "water_max_nir", None) is None
        else _in_unit_range(args.water_max_nir, "--water-max-nir"),
    )


def _in_unit_range(value: float, flag: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{flag} is a reflectance between 0 and 1 (0: no check), got {value:g}")
    return value


def shard_options(args: argparse.Namespace) -> Dict[str, Any]:
    """Keyword arguments of :func:`engine.inference.shards.segment_sharded` from the command line."""
    if args.shard is not None and args.shards is None:
        raise ValueError("--shard needs --shards (how many shards share the scene)")
    if args.block_rows is not None and (args.block_rows < 16 or args.block_rows % 16):
        raise ValueError(f"--block-rows must be a positive multiple of 16, got {args.block_rows}")
    options: Dict[str, Any] = {"block_rows": args.block_rows, "merge": args.merge}
    if args.shards is not None:
        options["shards"] = args.shards
        options["shard"] = args.shard if args.shard is not None else 0
    return options


def progress_for_rank(quiet: bool):
    """Console progress; under torchrun only rank 0 reports (warnings still reach every rank)."""
    from ..distributed import env_rank_info
    from ..progress import ConsoleProgress

    return ConsoleProgress(quiet=quiet or not env_rank_info().is_main)


def teacher_for(args: argparse.Namespace, progress) -> Any:
    """The teacher of a run (:func:`engine.commands.bundled.segment_teacher`), its note reported."""
    teacher, note = segment_teacher(args.model, args.teacher, args.no_teacher)
    if note:
        progress.warning(note)
    return teacher


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from ..distributed import launched
    from ..inference.pipeline import segment_scene

    progress = progress_for_rank(args.quiet)  # a single process is rank 0: it reports
    common = dict(
        teacher_path=teacher_for(args, progress),
        cfg=inference_config(args),
        aoi=args.aoi,
        progress=progress,
        overwrite=args.overwrite,
        optical_bands=args.optical_bands,
        sar_bands=args.sar_bands,
        cloud_mask=args.cloud_mask,
        grid=args.grid,
        resolution=args.resolution,
        optical_units=args.optical_units,
        sar_units=args.sar_units,
        sar_calibration=args.sar_calibration,
        sar_backscatter=args.sar_backscatter,
        sar_noise_floor=args.sar_noise_floor,
        sar_levels=args.sar_levels,
    )
    inputs = (args.optical, args.sar, args.model, args.out)
    if args.shards is not None or args.merge or args.block_rows is not None or launched():
        from ..inference.shards import segment_sharded

        return {"ok": True, **segment_sharded(*inputs, **common, **shard_options(args))}
    return {"ok": True, **segment_scene(*inputs, **common)}
