"""Sharded segmentation: a scene cut into row blocks, shared by processes, GPUs or machines.

The tile plan of the whole scene is cut into horizontal *blocks* (bands of whole rows whose
borders lie on the output block lattice, moved to where only one tile row crosses them). Block
``i`` belongs to shard ``i % shards``; each shard streams its blocks through the ordinary
pipeline (:func:`.streaming.stream_segmentation`) and writes each into its own folder
``blocks/bNNNN/`` (the usual ``classes.tif``, ``confidence.tif``, ... of the band, committed
together), then records it as finished (``done.json``).

No seams: a block runs every tile of the *scene's* plan that touches its band, with the scene's
blend weights, in the scene's order, and keeps only its band. Tiles crossing a border are
computed by both neighbours; each pixel is therefore blended from the same tiles, with the same
weights, in the same order as in a single run, and the class map is identical (bit for bit
with a deterministic network; tested).

The mosaic is assembled without rewriting pixels: one VRT per output (``classes.vrt`` ...)
over the block files, with the colour table and class names, written under temporary names and
renamed together, then ``mosaic.json``. ``merge=True`` also writes one tiled GeoTIFF per output
(a full copy, optional). A restart (same inputs, model and settings: the *job id*) skips the
finished blocks; whichever shard finishes last assembles, so shards never wait for each other
and need no process group: under ``torchrun`` the shard and the shard count come from ``RANK``
and ``WORLD_SIZE``; elsewhere (batch schedulers, several machines) from ``--shards/--shard``.
Every shard needs the inputs and the output folder on shared storage.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .. import distributed as dist
from ..config import InferenceConfig
from ..cores import apply_threads
from ..files import atomic_write_bytes
from ..progress import NULL_PROGRESS, Progress
from ..validate import RunLock, SgcadError
from .aoi import AoiLike
from .backends import describe_device, resolve_device
from .outputs import SPECS, OutputSet, _write_category_names
from .pipeline import SceneJob, _verify_outputs, bounded_gdal_cache, prepare_job
from .products import NODATA_U8, SAR_ONLY_NON_WATER
from .streaming import stream_segmentation
from .tiling import TilePlan

PathLike = Union[str, Path]
BLOCKS = "blocks"
LAYOUT = "layout.json"
DONE = "done.json"
MOSAIC = "mosaic.json"
TARGET_BLOCK_ROWS = 8192
"""Default block height: about one duplicated tile row per 8192 rows (~6 % more tiles at 512/64)."""


def mosaic_paths(out_dir: PathLike, keys: Sequence[str]) -> Dict[str, Path]:
    """The mosaic VRT of each output key (``classes.vrt`` ...)."""
    return {k: Path(out_dir) / (Path(SPECS[k].filename).stem + ".vrt") for k in keys}


def merged_paths(out_dir: PathLike, keys: Sequence[str]) -> Dict[str, Path]:
    """The optional merged GeoTIFF of each output key (the single-run file names)."""
    return {k: Path(out_dir) / SPECS[k].filename for k in keys}


def shard_from_env() -> Tuple[int, int]:
    """(shards, shard) from torchrun's ``WORLD_SIZE`` and ``RANK`` ((1, 0) outside a launch)."""
    info = dist.env_rank_info()
    return info.world_size, info.rank


# --------------------------------------------------------------------------- block layout
def output_block(block_rows: int) -> int:
    """GeoTIFF tile edge of the block files: 256, or the largest power of two >= 16 dividing
    ``block_rows`` (blocks start on the output lattice, so every block is written whole)."""
    for edge in (256, 128, 64, 32, 16):
        if block_rows % edge == 0:
            return edge
    raise ValueError(f"block rows must be a multiple of 16, got {block_rows}")


def auto_block_rows(height: int, tile_size: int, shards: int, edge: int = 256) -> int:
    """Block height: at least one block per shard and one per ~8192 rows, but no block lower
    than 2 tiles (each border costs one extra tile row)."""
    n = max(shards, math.ceil(height / TARGET_BLOCK_ROWS))
    n = max(1, min(n, height // max(2 * tile_size, edge)))
    return max(edge, -(-math.ceil(height / n) // edge) * edge)


def block_bounds(plan: TilePlan, block_rows: int, edge: int) -> List[Tuple[int, int]]:
    """Row bands ``[y0, y1)`` covering the plan's grid.

    Borders are multiples of ``edge`` near every ``block_rows``, each moved (by up to two
    ``edge`` steps) to where the fewest tile rows cross it; a remainder under half a block joins
    the last block.
    """
    height = plan.height
    th = plan.tile_shape[0]
    starts = sorted({t.y0 for t in plan.tiles})

    def crossing(c: int) -> int:
        return sum(1 for y in starts if y < c < y + th)

    borders: List[int] = []
    target = block_rows
    while height - target >= block_rows / 2:
        low = (borders[-1] if borders else 0) + edge
        candidates = [c for c in (target + k * edge for k in (0, -1, 1, -2, 2)) if low <= c <= height - edge]
        if not candidates:
            break
        best = min(candidates, key=lambda c: (crossing(c), abs(c - target)))
        borders.append(best)
        target = best + block_rows
    edges = [0] + borders + [height]
    return list(zip(edges[:-1], edges[1:]))


def band_plan(plan: TilePlan, y0: int, y1: int) -> TilePlan:
    """The scene's tiles that touch rows ``[y0, y1)``, in the scene's order and coordinates."""
    tiles = [t for t in plan.tiles if t.y0 < y1 and t.y1 > y0]
    return TilePlan(plan.width, plan.height, plan.tile_size, plan.overlap, tiles, plan.total)


class _BandWriter:
    """What :func:`stream_segmentation` writes to: keeps the output blocks inside ``[y0, y1)``,
    shifted into the band's file, and counts what it kept."""

    def __init__(self, outputs: OutputSet, y0: int, y1: int) -> None:
        self.outputs, self.y0, self.y1 = outputs, y0, y1
        self.keys, self.block = outputs.keys, outputs.block
        self.counts = np.zeros(256, dtype=np.int64)
        self.sar_only = 0

    def write(self, x0: int, y0: int, arrays: Dict[str, np.ndarray]) -> None:
        if not self.y0 <= y0 < self.y1:  # a margin block: its band's neighbour owns it
            return
        self.counts += np.bincount(arrays["classes"].ravel(), minlength=256)
        self.sar_only += int((arrays["confidence"] < 0).sum())
        self.outputs.write(x0, y0 - self.y0, arrays)


# --------------------------------------------------------------------------- job identity
def _file_id(path: Optional[PathLike]) -> Optional[List[Any]]:
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        return [str(path)]
    st = p.stat()
    return [str(p.resolve()), st.st_size, st.st_mtime_ns]


def _job_record(job: SceneJob, bounds: List[Tuple[int, int]], edge: int, extra: Dict[str, Any]) -> Dict[str, Any]:
    """What makes two runs produce the same blocks (not the device, the batch or the thread count)."""
    cfg = job.cfg
    record = {
        "inputs": [_file_id(job.optical_path), _file_id(job.sar_path), _file_id(job.cloud_mask)],
        "model": _file_id(job.model_path),
        "teacher": _file_id(job.teacher_path),
        "bands": [list(job.o_bands), list(job.s_bands)],
        "tiling": [cfg.tile_size, cfg.overlap, cfg.blend, cfg.backend],
        "thresholds": [cfg.water_threshold, cfg.non_water_threshold]
        + (["water_from_expert"] if job.thresholds.water_from_expert else [])  # default runs keep their id
        + ([f"nir {job.nir.band} {job.nir.limit:g}"] if job.nir else [])  # what the class map's water reads
        + (["water_needs_expert"] if job.water_needs_expert else [])
        + _noise_floor_id(job),  # the expert's VH floor, taken off or kept, changes its water
        "grid": [job.region.width, job.region.height, list(job.region.transform)[:6], job.region.crs.to_string()],
        "keys": list(job.keys),
        "blocks": [list(b) for b in bounds],
        "block_edge": edge,
        **({"choices": list(job.choices)} if job.choices else {}),  # default runs keep their id
        **extra,
    }
    record["id"] = hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return record


def _noise_floor_id(job: SceneJob) -> List[str]:
    """The VH noise floor the water expert reads this SAR with ([] when none is taken off: default ids stay)."""
    floors = job.teacher_pre.sar_cfg.noise_floors_db if job.teacher_pre is not None else ()
    return [f"noise floors {list(floors)}"] if any(floors) else []


def _block_dir(out_dir: Path, index: int) -> Path:
    return out_dir / BLOCKS / f"b{index:04d}"


def _read_json(path: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def block_done(out_dir: Path, index: int, job_id: str, keys: Sequence[str]) -> Optional[Dict[str, Any]]:
    """The block's record when it was finished by this job (files present), else None."""
    folder = _block_dir(out_dir, index)
    record = _read_json(folder / DONE)
    if record is None or record.get("id") != job_id:
        return None
    if not record.get("empty") and not all((folder / SPECS[k].filename).is_file() for k in keys):
        return None
    return record


def mosaic_complete(out_dir: Path, job_id: str) -> Optional[Dict[str, Any]]:
    record = _read_json(out_dir / MOSAIC)
    if record is None or record.get("id") != job_id:
        return None
    if not all(Path(p).is_file() for p in record.get("outputs", {}).values()):
        return None
    return record


# --------------------------------------------------------------------------- the run
@dataclass
class _Totals:
    tiles: int = 0
    pixels: int = 0
    read_s: float = 0.0
    network_s: float = 0.0
    write_s: float = 0.0
    commit_s: float = 0.0
    peak_blend_pixels: int = 0
    peak_pending_blocks: int = 0


def segment_sharded(
    optical_path: PathLike,
    sar_path: PathLike,
    model_path: PathLike,
    out_dir: PathLike,
    teacher_path: Optional[PathLike] = None,
    cfg: Optional[InferenceConfig] = None,
    aoi: Optional[AoiLike] = None,
    progress: Optional[Progress] = None,
    overwrite: bool = False,
    *,
    shards: Optional[int] = None,
    shard: Optional[int] = None,
    block_rows: Optional[int] = None,
    merge: bool = False,
    assemble: bool = True,
    block_offset: int = 0,
    backend: Any = None,
    **options: Any,
) -> Dict[str, Any]:
    """Segment this shard's blocks of a scene and, when every block is finished, the mosaic.

    Args:
        optical_path ... overwrite: as :func:`.pipeline.segment_scene` (``overwrite`` replaces a
            mosaic of *another* job; finished blocks of this job are always reused).
        shards, shard: how many shards share the scene and which one this is (default: from
            torchrun's ``WORLD_SIZE``/``RANK``, else 1 and 0).
        block_rows: block height in rows (a multiple of 16; default :func:`auto_block_rows`).
        merge: also write one tiled GeoTIFF per output next to the VRTs (a full copy).
        assemble: assemble the mosaic when this shard sees every block finished.
        block_offset: added to block indices when dealing them to shards (several scenes in
            one job: blocks are dealt round-robin across scenes).
        backend: a ready backend (tests; a multi-scene job reuses one), else the checkpoints'.
        **options: ``optical_bands``, ``sar_bands``, ``cloud_mask``, ``grid``, ``resolution``,
            ``optical_units``, ``sar_units``, ``sar_calibration``, ``sar_levels``, ``sar_backscatter``,
            ``sar_noise_floor`` as in ``segment_scene``.

    Returns:
        this shard's figures, the block layout and, when the mosaic is complete, its outputs.
    """
    cfg = cfg or InferenceConfig()
    progress = progress or NULL_PROGRESS
    env_shards, env_shard = shard_from_env()
    shards = env_shards if shards is None else int(shards)
    shard = env_shard if shard is None else int(shard)
    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"--shard must be between 0 and --shards - 1 ({shards - 1}), got {shard}")
    out = Path(out_dir)
    t0 = time.perf_counter()
    job = prepare_job(
        optical_path, sar_path, model_path, out, teacher_path, cfg, aoi, progress, backend=backend,
        output_keys=lambda keys: list(mosaic_paths(out, keys).values()) + list(merged_paths(out, keys).values()),
        lock_check=False, **options,
    )
    plan = job.plan
    rows = int(block_rows) if block_rows else auto_block_rows(plan.height, cfg.tile_size, shards)
    edge = output_block(rows)
    bounds = block_bounds(plan, rows, edge)
    record = _job_record(job, bounds, edge, {"merge": bool(merge), "aoi": str(aoi) if aoi is not None else None})
    job_id = record["id"]
    mine = [i for i in range(len(bounds)) if (i + block_offset) % shards == shard]
    summary: Dict[str, Any] = {
        "shards": shards,
        "shard": shard,
        "job_id": job_id,
        "blocks": {"total": len(bounds), "rows": rows, "bounds": bounds, "this_shard": mine},
        "grid": {"width": job.region.width, "height": job.region.height, "res": list(job.region.res),
                 "crs": job.region.crs.to_string()},
    }
    finished = mosaic_complete(out, job_id)
    if finished is not None:  # a restart after the end (or a shard that started late): nothing to do
        progress.info(f"{out}: the mosaic of this job is complete")
        summary.update(_mosaic_summary(finished, job))
        return summary
    _claim_layout(out, record, overwrite)

    device = dist.device_for_rank(resolve_device(cfg.device)) if shards > 1 else resolve_device(cfg.device)
    apply_threads(cfg.threads if cfg.threads > 0 else dist.threads_per_rank(0))
    totals, computed, skipped = _Totals(), [], []
    reader = None
    todo = [i for i in mine if block_done(out, i, job_id, job.keys) is None]
    skipped = [i for i in mine if i not in todo]
    if skipped:
        progress.info(f"blocks {skipped} are finished already: skipped")
    for n, i in enumerate(todo):
        sub = progress.sub(n / max(len(todo), 1), (n + 1) / max(len(todo), 1))
        y0, y1 = bounds[i]
        band = band_plan(plan, y0, y1)
        if backend is None and band.tiles:
            backend = job.make_backend(device, progress, work_pixels=_work_pixels(plan, bounds, mine))
            progress.info(
                f"shard {shard}/{shards}: device {describe_device(device)}, "
                f"backend {getattr(backend, 'name', 'custom')}, "
                f"threads {torch.get_num_threads()}, blocks {mine} of {len(bounds)}"
            )
        if reader is None and band.tiles:
            reader = job.reader()
        sub.info(f"block {i}: rows {y0}-{y1}, {len(band.tiles)} tiles")
        _run_block(job, band, backend, reader, out, i, y0, y1, edge, job_id, totals, sub)
        computed.append(i)
    wall = time.perf_counter() - t0
    names = dict(zip(job.meta.schema.ids, job.meta.schema.names))
    summary.update({
        "blocks_computed": computed,
        "blocks_skipped": skipped,
        "tiles": totals.tiles,
        "tiles_scene": len(plan.tiles),
        "device": describe_device(device),
        "backend": getattr(backend, "name", "custom") if backend is not None else None,
        "threads": torch.get_num_threads(),
        "seconds": round(wall, 3),
        "pixels": totals.pixels,
        "pixels_per_second": round(totals.pixels / max(wall, 1e-9), 1),
        "timings": {
            "read_s": round(totals.read_s, 3),
            "network_s": round(totals.network_s, 3),
            "blend_write_s": round(totals.write_s, 3),
            "commit_s": round(totals.commit_s, 3),
        },
        "memory": {"peak_blend_pixels": totals.peak_blend_pixels, "peak_pending_blocks": totals.peak_pending_blocks},
        "inputs": job.resolved.summary(),
    })
    if job.warnings:
        warnings = list(summary["inputs"].get("warnings") or []) + job.warnings
        summary["inputs"] = dict(summary["inputs"], warnings=warnings)
    if assemble:
        mosaic = assemble_if_complete(out, job, bounds, job_id, merge, progress)
        if mosaic is not None:
            summary.update(_mosaic_summary(mosaic, job))
    summary["class_pixels_this_shard"] = _class_names(_sum_blocks(out, computed, job_id, job.keys), names)
    progress.report(1.0, "done")
    return summary


def _work_pixels(plan: TilePlan, bounds, mine) -> int:
    h, w = plan.tile_shape
    return sum(len(band_plan(plan, *bounds[i]).tiles) for i in mine) * h * w


def _claim_layout(out: Path, record: Dict[str, Any], overwrite: bool) -> None:
    """Write the job's layout, refusing a folder that holds another job's blocks or mosaic."""
    layout = out / BLOCKS / LAYOUT
    previous = _read_json(layout)
    other = previous is not None and previous.get("id") != record["id"]
    mosaic = _read_json(out / MOSAIC)
    other = other or (mosaic is not None and mosaic.get("id") != record["id"])
    if other and not overwrite:
        raise SgcadError(
            f"{out} holds the blocks or mosaic of another segmentation (other inputs, model or settings); "
            "pass overwrite=True (--overwrite) to replace them, or choose another output folder"
        )
    if previous is None or previous.get("id") != record["id"]:
        atomic_write_bytes(layout, json.dumps(record, indent=1).encode("utf-8"))


def _run_block(job, band, backend, reader, out, index, y0, y1, edge, job_id, totals, progress) -> None:
    folder = _block_dir(out, index)
    cfg, meta = job.cfg, job.meta
    t0 = time.perf_counter()
    done: Dict[str, Any] = {"id": job_id, "index": index, "rows": [y0, y1]}
    with RunLock(folder, "segment block"):
        if not band.tiles:  # outside the AOI: the mosaic leaves it nodata
            done.update(empty=True, class_pixels={}, sar_only_pixels=0, tiles=0)
            atomic_write_bytes(folder / DONE, json.dumps(done).encode("utf-8"))
            return
        grid = job.region.window_grid(_window(job.region.width, y0, y1))
        tags = dict(job.tags, block=f"{index}", rows=f"{y0}-{y1}", job_id=job_id)
        outputs = OutputSet(folder, job.keys, grid, meta.schema, overwrite=True, block=edge, tags=tags)
        writer = _BandWriter(outputs, y0, y1)
        with outputs, bounded_gdal_cache():
            stats = stream_segmentation(
                band, reader.read, backend, writer, meta.schema.water_class, cfg.batch_size,
                job.thresholds, job.mask, cfg.blend, progress.sub(0.0, 0.95), cfg.queue_size,
            )
            progress.check()
            t_commit = time.perf_counter()
            paths = outputs.commit()
            _verify_outputs(paths)
            totals.commit_s += time.perf_counter() - t_commit
        counts = {int(i): int(c) for i, c in enumerate(writer.counts) if c and i < SAR_ONLY_NON_WATER}
        done.update(
            class_pixels=counts, sar_only_pixels=writer.sar_only, tiles=len(band.tiles),
            seconds=round(time.perf_counter() - t0, 3),
        )
        atomic_write_bytes(folder / DONE, json.dumps(done).encode("utf-8"))
    totals.tiles += len(band.tiles)
    totals.pixels += job.region.width * (y1 - y0)
    totals.read_s += stats.read_s
    totals.network_s += stats.compute_s
    totals.write_s += stats.write_s
    totals.peak_blend_pixels = max(totals.peak_blend_pixels, stats.peak_live_cells)
    totals.peak_pending_blocks = max(totals.peak_pending_blocks, stats.peak_live_blocks)


def _window(width: int, y0: int, y1: int):
    from rasterio.windows import Window

    return Window(0, y0, width, y1 - y0)


def _sum_blocks(out: Path, indices, job_id: str, keys) -> Dict[int, int]:
    total: Dict[int, int] = {}
    for i in indices:
        record = block_done(out, i, job_id, keys) or {}
        for k, v in (record.get("class_pixels") or {}).items():
            total[int(k)] = total.get(int(k), 0) + int(v)
    return total


def _class_names(counts: Dict[int, int], names: Dict[int, str]) -> Dict[str, int]:
    return {names.get(k, str(k)): v for k, v in sorted(counts.items())}


def _mosaic_summary(record: Dict[str, Any], job: SceneJob) -> Dict[str, Any]:
    return {
        "complete": True,
        "outputs": record["outputs"],
        "class_pixels": record.get("class_pixels", {}),
        "sar_only_pixels": record.get("sar_only_pixels", 0),
    }


# --------------------------------------------------------------------------- the mosaic
def assemble_if_complete(
    out: Path, job: SceneJob, bounds, job_id: str, merge: bool = False, progress: Progress = NULL_PROGRESS
) -> Optional[Dict[str, Any]]:
    """Assemble the mosaic when every block is finished (by whichever shard gets here first).

    Returns:
        the mosaic record, or None while blocks are missing or another shard is assembling.
    """
    records = [block_done(out, i, job_id, job.keys) for i in range(len(bounds))]
    if any(r is None for r in records):
        return None
    try:
        lock = RunLock(out, "assemble mosaic").acquire()
    except SgcadError:
        progress.info("another shard is assembling the mosaic")
        return None
    try:
        finished = mosaic_complete(out, job_id)
        if finished is not None:
            return finished
        return _assemble(out, job, bounds, records, job_id, merge, progress)
    finally:
        lock.release()


def _assemble(out: Path, job: SceneJob, bounds, records, job_id: str, merge: bool, progress: Progress):
    from osgeo import gdal

    progress.info(f"assembling the mosaic of {len(bounds)} blocks")
    region, schema = job.region, job.meta.schema
    left, top = region.transform.c, region.transform.f
    right = left + region.transform.a * region.width
    bottom = top + region.transform.e * region.height
    finals = mosaic_paths(out, job.keys)
    if merge:
        finals.update({f"{k}_merged": p for k, p in merged_paths(out, job.keys).items()})
    temps: Dict[str, Path] = {}
    token = os.urandom(4).hex()
    try:
        for key in job.keys:
            sources = [
                os.path.relpath(_block_dir(out, i) / SPECS[key].filename, out)
                for i, r in enumerate(records) if not r.get("empty")
            ]
            tmp = out / f".{finals[key].stem}.{token}.tmp.vrt"
            temps[key] = tmp
            cwd = os.getcwd()
            os.chdir(out)  # sources named relative to the VRT: the mosaic folder can be moved
            try:
                options = gdal.BuildVRTOptions(outputBounds=(left, bottom, right, top), resolution="highest")
                ds = gdal.BuildVRT(tmp.name, sources, options=options)
                if ds is None:
                    raise SgcadError(f"{out}: GDAL could not build {finals[key].name}: {gdal.GetLastErrorMsg()}")
                _describe_vrt(ds, key, schema, dict(job.tags, job_id=job_id))
                ds = None  # noqa: F841 (closing writes the VRT)
            finally:
                os.chdir(cwd)
            if merge:
                merged = out / f".{finals[key].stem}.{token}.tmp.tif"
                temps[f"{key}_merged"] = merged
                _merge(tmp, merged, key)
                if key == "classes":
                    _write_category_names(merged, schema)
        for key, tmp in temps.items():  # all renames last: the mosaic appears whole or not at all
            aux = Path(str(tmp) + ".aux.xml")
            if aux.exists():
                os.replace(aux, Path(str(finals[key]) + ".aux.xml"))
            os.replace(tmp, finals[key])
    except BaseException:
        for tmp in temps.values():
            for p in (tmp, Path(str(tmp) + ".aux.xml")):
                p.unlink(missing_ok=True)
        raise
    counts: Dict[int, int] = {}
    for r in records:
        for k, v in (r.get("class_pixels") or {}).items():
            counts[int(k)] = counts.get(int(k), 0) + int(v)
    names = dict(zip(schema.ids, schema.names))
    record = {
        "id": job_id,
        "outputs": {k: str(p) for k, p in finals.items()},
        "blocks": len(bounds),
        "class_pixels": _class_names(counts, names),
        "sar_only_pixels": sum(int(r.get("sar_only_pixels", 0)) for r in records),
        "tiles_computed": sum(int(r.get("tiles", 0)) for r in records),
        "tiles_scene": len(job.plan.tiles),
    }
    atomic_write_bytes(out / MOSAIC, json.dumps(record, indent=1).encode("utf-8"))
    return record


def _describe_vrt(ds, key: str, schema, tags: Dict[str, str]) -> None:
    from osgeo import gdal

    spec = SPECS[key]
    for i, text in enumerate(spec.descriptions, start=1):
        ds.GetRasterBand(i).SetDescription(text)
    meta = dict(tags, meaning=spec.meaning)
    if key == "classes":
        band = ds.GetRasterBand(1)
        table = gdal.ColorTable()
        for i in schema.ids:
            table.SetColorEntry(int(i), (*schema.rgb(i), 255))
        table.SetColorEntry(SAR_ONLY_NON_WATER, (160, 160, 160, 255))
        table.SetColorEntry(NODATA_U8, (0, 0, 0, 0))
        band.SetColorTable(table)
        band.SetColorInterpretation(gdal.GCI_PaletteIndex)
        names = [""] * 256
        for i, n in zip(schema.ids, schema.names):
            names[i] = n
        names[SAR_ONLY_NON_WATER] = "non-water (SAR only)"
        band.SetCategoryNames(names)
        meta["class_names"] = json.dumps(
            {**{str(i): n for i, n in zip(schema.ids, schema.names)}, str(SAR_ONLY_NON_WATER): "non-water (SAR only)"}
        )
        meta["water_class"] = str(schema.water_class)
    ds.SetMetadata({k: str(v) for k, v in meta.items()})


def _merge(vrt: Path, target: Path, key: str) -> None:
    """One tiled, compressed GeoTIFF with overviews from the VRT (GDAL streams it block by block)."""
    from osgeo import gdal

    from .outputs import _compression_options

    codec = _compression_options("zstd")
    options = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "BIGTIFF=IF_SAFER"]
    options.append(f"COMPRESS={codec['compress'].upper()}")
    if SPECS[key].dtype == "float32":
        options.append("PREDICTOR=3")
    if SPECS[key].count > 1:
        options.append("PHOTOMETRIC=MINISBLACK")
    ds = gdal.Translate(str(target), str(vrt), options=gdal.TranslateOptions(format="GTiff", creationOptions=options))
    if ds is None:
        raise SgcadError(f"{target}: GDAL could not write the merged file: {gdal.GetLastErrorMsg()}")
    ds = None  # noqa: F841
    from .outputs import _build_overviews

    _build_overviews(target, "nearest" if SPECS[key].dtype == "uint8" else "average")


def segment_many(
    scenes: Sequence[Dict[str, Any]],
    model_path: PathLike,
    out_dir: PathLike,
    teacher_path: Optional[PathLike] = None,
    cfg: Optional[InferenceConfig] = None,
    progress: Optional[Progress] = None,
    overwrite: bool = False,
    **kwargs: Any,
) -> Dict[str, Any]:
    """Several scenes in one sharded job: scene ``name`` goes to ``out_dir/name``; blocks are dealt
    to shards round-robin across scenes, so a list of small scenes keeps every shard busy.

    Args:
        scenes: dicts with ``optical``, ``sar`` and optional ``name`` (default ``sceneNNN``),
            ``aoi``, ``cloud_mask``.
        kwargs: as :func:`segment_sharded` (``shards``, ``shard``, ``block_rows``, ``merge``, bands, units ...).
    """
    progress = progress or NULL_PROGRESS
    results, offset = [], 0
    names = [str(s.get("name") or f"scene{i:03d}") for i, s in enumerate(scenes)]
    if len(set(names)) != len(names):
        raise ValueError(f"scene names must be unique, got {names}")
    for i, (scene, name) in enumerate(zip(scenes, names)):
        sub = progress.sub(i / len(scenes), (i + 1) / len(scenes))
        sub.info(f"scene {name}: {scene['optical']} + {scene['sar']}")
        result = segment_sharded(
            scene["optical"], scene["sar"], model_path, Path(out_dir) / name, teacher_path, cfg,
            scene.get("aoi"), sub, overwrite, block_offset=offset,
            **({"cloud_mask": scene["cloud_mask"]} if scene.get("cloud_mask") else {}), **kwargs,
        )
        offset += result["blocks"]["total"]
        results.append({"name": name, **result})
    return {
        "scenes": results,
        "complete": all(r.get("complete") for r in results),
        "seconds": round(sum(r.get("seconds", 0.0) for r in results), 3),
    }


# --------------------------------------------------------------------------- handing a job to a cluster
def torchrun_command(
    segment_args: Sequence[str],
    nproc_per_node: int = 1,
    nnodes: int = 1,
    rdzv_endpoint: Optional[str] = None,
    python: str = "python3",
    module: str = "engine",
    job_name: str = "sgcad",
) -> List[str]:
    """The ``torchrun`` command line of a sharded segmentation (argv list, nothing is run).

    Args:
        segment_args: the ``segment-distributed`` options (``--optical A.tif --sar B.tif ...``).
        nproc_per_node: processes per machine (one per GPU; CPU-only: a few per machine).
        nnodes: machines; above 1 every machine runs the same command and they meet at
            ``rdzv_endpoint`` (``host:port`` of any one of them).
        python: the interpreter on the machines that run it.
        module: ``engine``, or ``sgcad_qgis.engine`` when only the plugin folder is installed there.
        job_name: the rendezvous id (distinct per concurrent job).
    """
    cmd = [python, "-m", "torch.distributed.run"]
    if nnodes > 1:
        if not rdzv_endpoint:
            raise ValueError("several machines need a rendezvous endpoint host:port (one of the machines)")
        cmd += [f"--nnodes={nnodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={rdzv_endpoint}",
                f"--rdzv_id={job_name}"]
    else:
        cmd += ["--standalone"]
    return cmd + [f"--nproc_per_node={nproc_per_node}", "-m", module, "segment-distributed", *map(str, segment_args)]


def write_launch_script(path: PathLike, segment_args: Sequence[str], **launch: Any) -> Path:
    """A POSIX shell script that runs :func:`torchrun_command` (what the plugin hands to a user
    whose job is too large for the desktop). It is written, never executed here."""
    import shlex

    cmd = torchrun_command(segment_args, **launch)
    text = "\n".join([
        "#!/bin/sh",
        "# SGCAD sharded segmentation (docs/distributed.md). Run it on every machine of the job;",
        "# inputs and the output folder must be on storage all of them see. A rerun skips finished blocks.",
        "set -e",
        "export OMP_WAIT_POLICY=PASSIVE",
        " ".join(shlex.quote(c) for c in cmd),
        "",
    ])
    path = Path(path)
    atomic_write_bytes(path, text.encode("utf-8"))
    path.chmod(0o755)
    return path
