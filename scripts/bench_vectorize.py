"""Peak memory and time of ``engine vectorize`` on synthetic class maps of growing size.

    .venv/bin/python scripts/bench_vectorize.py [--sizes 2048,8192] [--min-area 0] [--work build/bench_vectorize]
        [--json]

For each size a class map is written block by block from the synthetic scene generator's labels
(10 m pixels: farmland, forest, villages, towns, lakes, rivers, roads), with 0.5 % of the pixels
set to a random class (the salt-and-pepper of a real segmentation), and a confidence raster
(negative on a tenth of the pixels, as SAR-only answers are). Each map is then vectorised in a
fresh process whose peak resident memory is sampled with psutil (every 20 ms) and read from
the kernel (``ru_maxrss``) at the end. The ratio of the peaks is the figure that matters:
flat memory means a ratio near one although the scene has 16 times more pixels.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # appended: a test importing this script keeps its own sys.path order
    sys.path.append(str(ROOT))


def write_class_map(folder: Path, size: int, seed: int = 3, block: int = 1024) -> dict:
    """``classes.tif`` and ``confidence.tif`` of a synthetic scene, written window by window."""
    import numpy as np

    from engine.config import ClassSchema
    from engine.data.synthetic import SyntheticScene, scene_grid
    from engine.raster.io import iter_windows, open_writer

    folder.mkdir(parents=True, exist_ok=True)
    classes, confidence = folder / "classes.tif", folder / "confidence.tif"
    if classes.exists() and confidence.exists():
        return {"classes": str(classes), "confidence": str(confidence), "generated_s": 0.0}
    t0 = time.perf_counter()
    schema = ClassSchema()
    scene = SyntheticScene(size, seed=seed, resolution=10.0)
    grid = scene_grid(size, 10.0)
    names = json.dumps({str(i): n for i, n in zip(schema.ids, schema.names)})
    with open_writer(classes, grid, 1, "uint8", 255, True, ["class"]) as cdst, \
            open_writer(confidence, grid, 1, "float32", float("nan"), True, ["confidence"]) as kdst:
        cdst.update_tags(class_names=names)
        for window, _ in iter_windows(size, size, block):
            col, row, w, h = (int(v) for v in (window.col_off, window.row_off, window.width, window.height))
            label = scene.label_window(row + np.arange(h) + 0.5, col + np.arange(w) + 0.5)["label"]
            rng = np.random.default_rng([seed, row, col])
            salt = rng.random((h, w)) < 0.005
            label[salt] = rng.integers(0, len(schema.ids), int(salt.sum()))
            conf = rng.uniform(0.4, 1.0, (h, w)).astype(np.float32)
            conf[rng.random((h, w)) < 0.1] *= -1
            cdst.write(label[None], window=window)
            kdst.write(conf[None], window=window)
    return {"classes": str(classes), "confidence": str(confidence), "generated_s": round(time.perf_counter() - t0, 1)}


def measure(classes: str, confidence: str, out: str, block: int, min_area: float = 0.0) -> dict:
    """Run in a child: vectorise and report time and peak memory."""
    import psutil

    from engine.vector.polygonize import vectorize_classes

    proc = psutil.Process()
    peak = {"rss": proc.memory_info().rss}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak["rss"] = max(peak["rss"], proc.memory_info().rss)
            time.sleep(0.02)

    baseline = proc.memory_info().rss
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    result = vectorize_classes(classes, out, confidence_path=confidence, block=block, min_area=min_area,
                               overwrite=True)
    seconds = time.perf_counter() - t0
    done.set()
    thread.join()
    return {
        "seconds": round(seconds, 1),
        "polygons": result["polygons"],
        "components": result["components"],
        "peak_rss_mb": round(peak["rss"] / 2**20, 1),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "baseline_rss_mb": round(baseline / 2**20, 1),
        "peak_open_piece_mb": round(result["peak_open_piece_bytes"] / 2**20, 2),
        "gpkg_mb": round(os.path.getsize(out) / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2048,8192")
    parser.add_argument("--work", default=str(ROOT / "build" / "bench_vectorize"))
    parser.add_argument("--block", type=int, default=1024)
    parser.add_argument("--min-area", type=float, default=0.0, help="vectorize's minimum area (m²; 0 keeps all)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("CLASSES", "CONFIDENCE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child, block=args.block, min_area=args.min_area)))
        return
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        folder = Path(args.work) / str(size)
        maps = write_class_map(folder, size)
        out = str(folder / f"polygons_min{args.min_area:g}.gpkg")
        done = subprocess.run(
            [sys.executable, __file__, "--block", str(args.block), "--min-area", str(args.min_area), "--child",
             maps["classes"], maps["confidence"], out],
            capture_output=True, text=True, check=True,
        )
        row = {"size": size, "min_area_m2": args.min_area, **json.loads(done.stdout.strip().splitlines()[-1]),
               "map_generated_s": maps["generated_s"]}
        rows.append(row)
        if not args.json:
            print(f"{size}x{size}: {row['polygons']} polygons in {row['seconds']} s, peak RSS {row['peak_rss_mb']} MB "
                  f"(kernel {row['ru_maxrss_mb']} MB; {row['baseline_rss_mb']} MB before the run)", flush=True)
    summary = {"rows": rows}
    if len(rows) >= 2:
        summary["peak_rss_ratio"] = round(rows[-1]["ru_maxrss_mb"] / rows[0]["ru_maxrss_mb"], 3)
        summary["pixels_ratio"] = (rows[-1]["size"] / rows[0]["size"]) ** 2
    print(json.dumps(summary) if args.json else f"peak RSS ratio {summary.get('peak_rss_ratio')} for "
          f"{summary.get('pixels_ratio')} x the pixels")


if __name__ == "__main__":
    main()
