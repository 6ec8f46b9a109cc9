"""What reading the optical's NIR band costs a segmentation (engine.inference.spectral).

    .venv/bin/python scripts/bench_nir_check.py [--tiles 8] [--repeats 3]

The real coastal pair of tests/data/terramesh_coast (12-band Sentinel-2 L2A, Sentinel-1 VV + VH, 224 px) is
tiled into a square scene, and the bundled student and water expert segment it with the NIR band read
(``water_max_nir`` 0.15) and not read (0), interleaved. Prints the median wall time and reader time of each
and their ratios (the machine's load moves both alike).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.config import InferenceConfig  # noqa: E402
from engine.inference.pipeline import segment_scene  # noqa: E402

PAIR = ROOT / "tests" / "data" / "terramesh_coast" / "282D_485L_3_3"
MODELS = ROOT / "resources" / "models"


def tiled(suffix: str, tiles: int, folder: Path) -> Path:
    with rasterio.open(f"{PAIR}_{suffix}.tif") as src:
        profile, values = src.profile, np.tile(src.read(), (1, tiles, tiles))
    profile.update(width=values.shape[2], height=values.shape[1], tiled=True, blockxsize=256, blockysize=256)
    out = folder / f"scene_{suffix}.tif"
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(values)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=8, help="copies of the 224 px pair along each side (8)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        optical, sar = tiled("S2L2A", args.tiles, folder), tiled("S1RTC", args.tiles, folder)
        times = {0.0: [], 0.15: []}
        reads = {0.0: [], 0.15: []}
        for _ in range(args.repeats):
            for limit in times:
                start = time.perf_counter()
                result = segment_scene(optical, sar, MODELS / "sgcad_student.safetensors", folder / f"out{limit}",
                                       teacher_path=MODELS / "sgcad_teacher.safetensors",
                                       cfg=InferenceConfig(water_max_nir=limit), overwrite=True)
                times[limit].append(time.perf_counter() - start)
                reads[limit].append(result["timings"]["read_s"])
        side = 224 * args.tiles
        for limit in times:
            what = "read" if limit else "not read"
            print(f"{side} x {side} px, NIR {what}: median {statistics.median(times[limit]):.2f} s, "
                  f"reader {statistics.median(reads[limit]):.2f} s")
        print(f"ratio with / without: wall {statistics.median(times[0.15]) / statistics.median(times[0.0]):.2f}, "
              f"reader {statistics.median(reads[0.15]) / statistics.median(reads[0.0]):.2f}")


if __name__ == "__main__":
    main()
