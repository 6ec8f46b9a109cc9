"""Distributed figures: training samples/s and segmentation px/s with 1 and 2 processes,
peak RSS per rank at two scene sizes, a large VRT mosaic, and the per-rank pipeline ceiling.

    .venv/bin/python scripts/bench_distributed.py [--sizes 2048,4096] [--mosaic 32768]
        [--model tiny|default] [--work build/bench_distributed] [--skip-train] [--json OUT]

Every run is a fresh ``torchrun --standalone --nproc_per_node N`` launch of this script in a
worker mode (N = 1 or 2); each worker prints one line ``BENCH {json}`` with its own timing and
peak RSS (``VmHWM``), so interpreter start-up is not counted. With 2 processes each gets one
thread, with 1 process two threads: the same 2 cores. Figures:

* training: patches/s of :class:`engine.train.loop.Trainer` (tiny LightMCANet by default,
  64 px patches, global batch 16: 1 x 16 or 2 x 8), median of the epochs after the first
  (each epoch's time includes a small validation);
* segmentation: scene px/s of ``segment_scene`` (1 process) and of the sharded run over 2
  processes (scene pixels / the slower rank's time), on synthetic scenes (``--sizes``);
* pipeline ceiling: px/s of one process whose "network" is a trivial function (reading,
  Lee filter, normalisation, blending, products, compression): what one rank can feed a GPU;
* mosaic: a ``--mosaic``² VRT of copies of the largest scene, segmented by 2 processes.

The machine is shared (other jobs run): figures are single runs, ratios matter more.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # appended: a test importing this script keeps its own sys.path order
    sys.path.append(str(ROOT))


# --------------------------------------------------------------------------- workers (under torchrun)
def _emit(record: Dict[str, Any]) -> None:
    from engine import distributed as dist
    from engine.inference.bench import peak_rss_mb

    record.update(rank=dist.env_rank_info().rank, peak_rss_mb=round(peak_rss_mb(), 1))
    print("BENCH " + json.dumps(record), flush=True)


def worker_train(args: argparse.Namespace) -> None:
    import torch
    from torch.utils.data import TensorDataset

    from engine.config import ClassSchema, LossConfig, ModelMetadata, StudentConfig, TrainConfig, to_dict
    from engine.inference.bench import TINY_STUDENT
    from engine.models import build_model
    from engine.train.loop import Trainer
    from engine.train.tasks import StudentTask

    class Patches(TensorDataset):
        def __getitem__(self, i):
            o, s, y = super().__getitem__(i)
            return {"optical": o, "sar": s, "label": y}

    def patches(n: int, seed: int) -> Patches:
        g = torch.Generator().manual_seed(seed)
        size = args.patch
        label = torch.randint(0, 6, (n, size // 8, size // 8), generator=g)
        label = label.repeat_interleave(8, 1).repeat_interleave(8, 2)
        optical = torch.rand(6, 3, generator=g)[label].permute(0, 3, 1, 2)
        optical = optical + 0.1 * torch.randn(n, 3, size, size, generator=g)
        sar = (0.7 - 0.6 * (label == 3).float() + 0.1 * torch.randn(n, size, size, generator=g)).unsqueeze(1)
        return Patches(optical, sar, label)

    cfg_model = TINY_STUDENT if args.model == "tiny" else StudentConfig()
    torch.manual_seed(0)
    schema = ClassSchema()
    meta = ModelMetadata(kind="student", model=to_dict(cfg_model), schema=schema)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, lr=1e-3, threads=args.threads,
                      early_stopping_patience=0, device="cpu", augment=False)
    data = {"train": patches(args.patches, 1), "val": patches(2 * args.batch, 2)}
    with tempfile.TemporaryDirectory() as tmp:
        task = StudentTask(schema, LossConfig(), None)
        trainer = Trainer(task, build_model(cfg_model), meta, data, cfg, Path(tmp), cfg.lr)
        trainer.fit()
        seconds = [r["seconds"] for r in trainer.log.records]
    _emit({"what": "train", "epoch_seconds": seconds, "patches": args.patches, "threads": torch.get_num_threads()})


def worker_segment(args: argparse.Namespace) -> None:
    import torch

    from engine.config import InferenceConfig
    from engine.inference.bench import peak_rss_mb

    before = peak_rss_mb()
    cfg = InferenceConfig(tile_size=args.tile, overlap=args.overlap, batch_size=args.batch, threads=args.threads,
                          backend=args.backend, device="cpu")
    backend = None
    if args.trivial:
        import numpy as np

        from engine.inference.backends import CallableBackend

        def fn(optical, sar):  # a "network" that costs nothing: the pipeline around it is measured
            p = np.repeat(optical[:, :1], 6, axis=1) / 6.0 + 1.0 / 12
            return p.astype(np.float32), (1.0 - sar[:, 0]).astype(np.float32)

        backend = CallableBackend(fn, 6, has_teacher=True)
    t0 = time.perf_counter()
    if args.sharded:
        from engine.inference.shards import segment_sharded

        r = segment_sharded(args.optical, args.sar, args.model, args.out, args.teacher, cfg, overwrite=True,
                            block_rows=args.block_rows, backend=backend)
        tiles, pixels = r.get("tiles", 0), r.get("pixels", 0)
    else:
        from engine.inference.pipeline import segment_scene

        r = segment_scene(args.optical, args.sar, args.model, args.out, args.teacher, cfg, overwrite=True,
                          backend=backend)
        tiles, pixels = r["tiles"], r["grid"]["width"] * r["grid"]["height"]
    _emit({
        "what": "segment", "seconds": round(time.perf_counter() - t0, 2), "tiles": tiles, "pixels": pixels,
        "rss_before_run_mb": round(before, 1), "threads": torch.get_num_threads(),
        "blocks": r.get("blocks_computed"), "complete": r.get("complete", True),
        "backend": r.get("backend"),
    })


# --------------------------------------------------------------------------- driver
def torchrun(nproc: int, worker_args: List[str], timeout: float = 3600) -> List[Dict[str, Any]]:
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(Path(__file__).resolve()), *worker_args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)  # noqa: S603
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return [json.loads(line[6:]) for line in proc.stdout.splitlines() if line.startswith("BENCH ")]


def bench_train(args) -> Dict[str, Any]:
    rows = {}
    for nproc in (1, 2):
        batch, threads = 16 // nproc, 2 // nproc
        out = torchrun(nproc, ["worker-train", "--batch", str(batch), "--threads", str(threads), "--model", args.model,
                               "--epochs", str(args.train_epochs), "--patches", str(args.train_patches)])
        secs = [statistics.median(r["epoch_seconds"][1:] or r["epoch_seconds"]) for r in out]
        rows[nproc] = {
            "processes": nproc, "batch_per_process": batch, "threads_per_process": threads,
            "patches_per_s": round(args.train_patches / max(secs), 2),
            "peak_rss_mb_per_rank": [r["peak_rss_mb"] for r in sorted(out, key=lambda r: r["rank"])],
        }
        print(f"train {nproc} process(es): {rows[nproc]}", flush=True)
    rows["ratio_2_over_1"] = round(rows[2]["patches_per_s"] / rows[1]["patches_per_s"], 3)
    return rows


def _segment_args(scene, model, teacher, out, args, extra=()) -> List[str]:
    a = ["worker-segment", "--optical", scene["optical"], "--sar", scene["sar"], "--model", str(model),
         "--out", str(out), "--tile", str(args.tile), "--overlap", str(args.overlap), "--batch", str(args.batch),
         "--backend", args.backend]
    if teacher:
        a += ["--teacher", str(teacher)]
    return a + list(extra)


def bench_segment(args, work: Path) -> Dict[str, Any]:
    from engine.inference.bench import make_checkpoints, synthetic_scene

    rows: Dict[str, Any] = {}
    sizes = [int(s) for s in args.sizes.split(",")]
    models = None
    for size in sizes:
        t0 = time.perf_counter()
        scene = synthetic_scene(work, size)
        if models is None:
            models = make_checkpoints(work, scene, args.model)
            _warm_onnx(models, args)
        print(f"scene {size}: ready in {time.perf_counter() - t0:.0f} s", flush=True)
        row: Dict[str, Any] = {}
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            one = torchrun(1, _segment_args(scene, *models, Path(tmp) / "one", args, ["--threads", "2"]))[0]
            two = torchrun(2, _segment_args(scene, *models, Path(tmp) / "two", args,
                                            ["--threads", "1", "--sharded", "--block-rows", str(_rows(size, args))]))
            trivial = ["--threads", "1", "--trivial"]
            ceiling = torchrun(1, _segment_args(scene, *models, Path(tmp) / "ceil", args, trivial))[0]
        wall2 = max(r["seconds"] for r in two)
        row = {
            "pixels": size * size,
            "one_process": {"px_per_s": round(size * size / one["seconds"]), "seconds": one["seconds"],
                            "tiles": one["tiles"], "peak_rss_mb": one["peak_rss_mb"], "backend": one["backend"]},
            "two_processes": {"px_per_s": round(size * size / wall2), "seconds": wall2,
                              "tiles": sum(r["tiles"] for r in two), "blocks": [r["blocks"] for r in two],
                              "peak_rss_mb_per_rank": [r["peak_rss_mb"] for r in sorted(two, key=lambda r: r["rank"])]},
            "pipeline_ceiling_1_thread_px_per_s": round(size * size / ceiling["seconds"]),
        }
        row["ratio_2_over_1"] = round(row["two_processes"]["px_per_s"] / row["one_process"]["px_per_s"], 3)
        rows[str(size)] = row
        print(f"segment {size}²: {json.dumps(row)}", flush=True)
    if len(sizes) >= 2:
        a, b = rows[str(sizes[0])], rows[str(sizes[-1])]
        rows["rss_ratio_largest_over_smallest"] = {
            "one_process": round(b["one_process"]["peak_rss_mb"] / a["one_process"]["peak_rss_mb"], 3),
            "two_processes_max_rank": round(
                max(b["two_processes"]["peak_rss_mb_per_rank"]) / max(a["two_processes"]["peak_rss_mb_per_rank"]), 3
            ),
        }
    rows["models"] = args.model
    return rows


def _warm_onnx(models, args) -> None:
    """Export the networks to ONNX once (cached), so no measured run pays the export."""
    import torch

    from engine.inference.backends import make_backend
    from engine.models.checkpoint import load_model

    student, meta = load_model(models[0], "student")
    teacher = load_model(models[1], "teacher")[0]
    tile = (args.tile, args.tile)
    make_backend(args.backend, student, teacher, meta.schema.num_classes, len(meta.bands.optical_bands),
                 len(meta.bands.sar_bands), tile, torch.device("cpu"), work_pixels=10**12)


def _rows(size: int, args) -> int:
    from engine.inference.shards import auto_block_rows

    return args.block_rows or auto_block_rows(size, args.tile, 2)


def mosaic_vrt(scene: Dict[str, Any], copies: int, folder: Path) -> Dict[str, str]:
    """``copies`` x ``copies`` copies of a scene side by side, as VRTs (what a national mosaic is)."""
    import rasterio

    paths = {}
    for key in ("optical", "sar"):
        with rasterio.open(scene[key]) as ds:
            w, h, count, t = ds.width, ds.height, ds.count, ds.transform
            dtype = {"uint8": "Byte", "uint16": "UInt16", "float32": "Float32", "int16": "Int16"}[ds.dtypes[0]]
            nodata, crs = ds.nodata, ds.crs.to_wkt()
            descriptions = ds.descriptions
        lines = [f'<VRTDataset rasterXSize="{w * copies}" rasterYSize="{h * copies}">',
                 f"  <SRS>{_xml(crs)}</SRS>",
                 f"  <GeoTransform>{t.c}, {t.a}, {t.b}, {t.f}, {t.d}, {t.e}</GeoTransform>"]
        for band in range(1, count + 1):
            lines.append(f'  <VRTRasterBand dataType="{dtype}" band="{band}">')
            if descriptions[band - 1]:
                lines.append(f"    <Description>{_xml(descriptions[band - 1])}</Description>")
            if nodata is not None:
                lines.append(f"    <NoDataValue>{'nan' if math.isnan(nodata) else nodata}</NoDataValue>")
            source = _xml(str(Path(scene[key]).resolve()))
            for r in range(copies):
                for c in range(copies):
                    lines += [
                        "    <SimpleSource>",
                        f'      <SourceFilename relativeToVRT="0">{source}</SourceFilename>',
                        f"      <SourceBand>{band}</SourceBand>",
                        f'      <SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}" />',
                        f'      <DstRect xOff="{c * w}" yOff="{r * h}" xSize="{w}" ySize="{h}" />',
                        "    </SimpleSource>",
                    ]
            lines.append("  </VRTRasterBand>")
        lines.append("</VRTDataset>")
        path = folder / f"{key}_x{copies}.vrt"
        path.write_text("\n".join(lines))
        paths[key] = str(path)
    return paths


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def bench_mosaic(args, work: Path) -> Dict[str, Any]:
    from engine.inference.bench import make_checkpoints, synthetic_scene

    base = int(args.sizes.split(",")[-1])
    copies = max(1, args.mosaic // base)
    scene = synthetic_scene(work, base)
    models = make_checkpoints(work, scene, args.model)
    _warm_onnx(models, args)
    mosaic = mosaic_vrt(scene, copies, work)
    size = base * copies
    out = work / f"mosaic{size}"
    rows = args.block_rows or _rows(size, args)
    print(f"mosaic {size}² ({copies}x{copies} copies of {base}²), blocks of {rows} rows, 2 processes", flush=True)
    t0 = time.perf_counter()
    sharded = ["--threads", "1", "--sharded", "--block-rows", str(rows)]
    two = torchrun(2, _segment_args(mosaic, *models, out, args, sharded), timeout=args.mosaic_timeout)
    wall = time.perf_counter() - t0
    worker = max(r["seconds"] for r in two)
    return {
        "pixels": size * size, "size": size, "copies_of": base, "block_rows": rows,
        "seconds_slowest_rank": worker, "seconds_launch": round(wall, 1),
        "px_per_s": round(size * size / worker),
        "tiles": sum(r["tiles"] for r in two),
        "peak_rss_mb_per_rank": [r["peak_rss_mb"] for r in sorted(two, key=lambda r: r["rank"])],
        "complete": any(r["complete"] for r in two),
        "outputs": str(out),
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode")
    w = sub.add_parser("worker-train")
    w.add_argument("--batch", type=int, default=8)
    w.add_argument("--threads", type=int, default=1)
    w.add_argument("--model", default="tiny")
    w.add_argument("--epochs", type=int, default=3)
    w.add_argument("--patches", type=int, default=96)
    w.add_argument("--patch", type=int, default=64)
    s = sub.add_parser("worker-segment")
    for name in ("optical", "sar", "model", "out"):
        s.add_argument(f"--{name}", required=True)
    s.add_argument("--teacher")
    s.add_argument("--tile", type=int, default=512)
    s.add_argument("--overlap", type=int, default=64)
    s.add_argument("--batch", type=int, default=4)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--backend", default="auto")
    s.add_argument("--sharded", action="store_true")
    s.add_argument("--block-rows", type=int)
    s.add_argument("--trivial", action="store_true")
    parser.add_argument("--sizes", default="2048,4096", help="scene sizes for px/s and RSS (2048,4096)")
    parser.add_argument("--mosaic", type=int, default=0, help="mosaic edge in pixels, 0 = skip (e.g. 32768)")
    parser.add_argument("--mosaic-timeout", type=float, default=3600)
    parser.add_argument("--model", choices=("tiny", "default"), default="tiny")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--block-rows", type=int)
    parser.add_argument("--train-epochs", type=int, default=3)
    parser.add_argument("--train-patches", type=int, default=96)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-segment", action="store_true")
    parser.add_argument("--work", default=str(ROOT / "build" / "bench_distributed"))
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.mode == "worker-train":
        worker_train(args)
        return 0
    if args.mode == "worker-segment":
        worker_segment(args)
        return 0
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    figures: Dict[str, Any] = {"machine": {"cores": os.cpu_count(), "load_at_start": os.getloadavg()[0]}}
    if not args.skip_train:
        figures["train"] = bench_train(args)
    if not args.skip_segment:
        figures["segment"] = bench_segment(args, work)
    if args.mosaic:
        figures["mosaic"] = bench_mosaic(args, work)
    figures["machine"]["load_at_end"] = os.getloadavg()[0]
    text = json.dumps(figures, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
