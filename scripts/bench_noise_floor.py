"""What taking VH's noise floor off costs a SAR water map (engine.inputs.noise_floor).

    .venv/bin/python scripts/bench_noise_floor.py [--tiles 16] [--repeats 3]

The real coastal Sentinel-1 VV + VH chip of tests/data/terramesh_coast (224 px, a VH floor at -27 dB) is tiled
into a square scene, and the bundled VV + VH water expert maps it with the floor estimated and taken off and
with VH read as it is (``sar_noise_floor="off"``), interleaved. Prints the median time of each,
the time the input resolution takes (the floor is one more sampling pass there) and their ratios (the
machine's load moves both alike).
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
from engine.inference.sar_only import water_probability  # noqa: E402
from engine.inputs.contract import InputOverrides, InputRecipe, resolve_inputs  # noqa: E402
from engine.models.checkpoint import read_metadata  # noqa: E402

CHIP = ROOT / "tests" / "data" / "terramesh_coast" / "282D_485L_3_3_S1RTC.tif"
MODELS = ROOT / "resources" / "models"


def tiled(tiles: int, folder: Path) -> Path:
    with rasterio.open(CHIP) as src:
        profile, values, names = src.profile, np.tile(src.read(), (1, tiles, tiles)), src.descriptions
    profile.update(width=values.shape[2], height=values.shape[1], tiled=True, blockxsize=256, blockysize=256)
    out = folder / "scene_S1RTC.tif"
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(values)
        dst.descriptions = names
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=16, help="copies of the 224 px chip along each side (16)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sar = tiled(args.tiles, folder)
        readings = {"floor off": "auto", "floor kept": "off"}  # the floor taken off, or VH read as it is
        recipe = InputRecipe.of(read_metadata(MODELS / "sgcad_teacher_vvvh.safetensors"))
        times = {name: [] for name in readings}
        resolving = {name: [] for name in readings}
        for _ in range(args.repeats):
            for name, floor in readings.items():
                start = time.perf_counter()
                resolve_inputs(recipe, None, sar, InputOverrides(sar_noise_floor=floor))
                resolving[name].append(time.perf_counter() - start)
                start = time.perf_counter()
                water_probability(sar, MODELS / "sgcad_teacher.safetensors", folder / f"{name}.tif",
                                  cfg=InferenceConfig(), sar_noise_floor=floor, overwrite=True)
                times[name].append(time.perf_counter() - start)
        side = 224 * args.tiles
        for name in readings:
            print(f"{side} x {side} px, {name}: water map median {statistics.median(times[name]):.2f} s, input "
                  f"resolution {statistics.median(resolving[name]):.2f} s")
        ratio = statistics.median(times["floor off"]) / statistics.median(times["floor kept"])
        resolve = statistics.median(resolving["floor off"]) / statistics.median(resolving["floor kept"])
        print(f"ratio off / kept: water map {ratio:.2f}, input resolution {resolve:.2f}")


if __name__ == "__main__":
    main()
