"""``torchrun ... -m engine segment-distributed``: one scene or a list of scenes, sharded over processes.

Every process started by ``torchrun`` (one per GPU, or per CPU slot, on each node) takes the
row blocks whose index modulo ``WORLD_SIZE`` is its ``RANK``, writes them under ``OUT/blocks``
(``OUT/NAME/blocks`` for a list) and the last one to finish assembles the VRT mosaics. Without
torchrun the same command runs every block in one process (``--shards``/``--shard`` choose a
part by hand, e.g. from a batch scheduler's array index). See docs/distributed.md.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any, Dict, List

from .segment import add_segment_args, add_shard_args, inference_config, progress_for_rank, shard_options, teacher_for


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment-distributed",
        help="segment a scene or a list of scenes in row blocks shared by torchrun's processes",
        description="Sharded segmentation (run it under torchrun, or with --shards/--shard): row blocks "
        "dealt to processes round-robin, blended across block borders without seams, one GeoTIFF per "
        "block and output, VRT mosaics at the end; a restart skips finished blocks.",
    )
    add_segment_args(parser, inputs_required=False)
    add_shard_args(parser)
    parser.add_argument(
        "--scenes",
        help="CSV (header optical,sar[,name,aoi,cloud_mask]) or JSON list of such objects: several scenes "
        "in one job, each into OUT/NAME (instead of --optical/--sar)",
    )
    parser.set_defaults(func=run)


def read_scene_list(path: str) -> List[Dict[str, Any]]:
    """Scenes of a CSV file (header ``optical,sar[,name,aoi,cloud_mask]``) or a JSON list; relative
    paths are relative to the list's folder."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{p}: cannot read the scene list: {exc}") from None
    if p.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}: not a JSON list of scenes: {exc}") from None
    else:
        rows = list(csv.DictReader(text.splitlines()))
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{p}: expected at least one scene (columns optical, sar[, name, aoi, cloud_mask])")
    scenes = []
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not row.get("optical") or not row.get("sar"):
            raise ValueError(f"{p}: scene {i} needs 'optical' and 'sar', got {row!r}")
        scene = {k: (str(v).strip() if v is not None else "") for k, v in row.items()}
        for key in ("optical", "sar", "aoi", "cloud_mask"):
            value = scene.get(key)
            if value and not Path(value).is_absolute() and (p.parent / value).exists():
                scene[key] = str(p.parent / value)
        scenes.append({k: v for k, v in scene.items() if v})
    return scenes


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from ..inference.shards import segment_many, segment_sharded

    cfg = inference_config(args)
    options = dict(
        optical_bands=args.optical_bands,
        sar_bands=args.sar_bands,
        grid=args.grid,
        resolution=args.resolution,
        optical_units=args.optical_units,
        sar_units=args.sar_units,
        sar_calibration=args.sar_calibration,
        sar_backscatter=args.sar_backscatter,
        sar_noise_floor=args.sar_noise_floor,
        sar_levels=args.sar_levels,
        **shard_options(args),
    )
    progress = progress_for_rank(args.quiet)
    teacher = teacher_for(args, progress)
    if args.scenes:
        if args.optical or args.sar or args.aoi or args.cloud_mask:
            raise ValueError("--scenes replaces --optical, --sar, --aoi and --cloud-mask (give them per scene)")
        result = segment_many(
            read_scene_list(args.scenes), args.model, args.out, teacher, cfg, progress, args.overwrite, **options
        )
        return {"ok": True, **result}
    if not (args.optical and args.sar):
        raise ValueError("give --optical and --sar, or --scenes with a list of scenes")
    result = segment_sharded(
        args.optical, args.sar, args.model, args.out, teacher, cfg, args.aoi, progress, args.overwrite,
        cloud_mask=args.cloud_mask, **options,
    )
    return {"ok": True, **result}
