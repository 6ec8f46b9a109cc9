"""What taking VH's noise floor off costs a SAR water map (engine.inputs.noise_floor).

    .venv/bin/python scripts/bench_noise_floor.py [--tiles 16] [--repeats 3]

The real coastal Sentinel-1 VV + VH chip of tests/data/terramesh_coast (224 px, a VH floor at -27 dB) is tiled
into a square scene, and the bundled VV + VH water expert maps it with its companion as published (the floor
estimated and taken off) and with a copy that reads VH as it is, interleaved. Prints the median time of each,
the time the input resolution takes (the floor is one more sampling pass there) and their ratios (the
machine's load moves both alike).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
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
from engine.inputs.contract import InputRecipe, resolve_inputs  # noqa: E402
from engine.models.checkpoint import load_model, read_metadata, save_model  # noqa: E402

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


def floor_kept(folder: Path) -> Path:
    """The bundled teacher beside a copy of its companion that reads VH as it is."""
    folder.mkdir()
    shutil.copy(MODELS / "sgcad_teacher.safetensors", folder)
    net, meta = load_model(MODELS / "sgcad_teacher_vvvh.safetensors", "teacher")
    meta.sar_preprocess = dataclasses.replace(meta.sar_preprocess, noise_floor_band=0)
    save_model(folder / "sgcad_teacher_vvvh.safetensors", net, meta)
    return folder / "sgcad_teacher.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=16, help="copies of the 224 px chip along each side (16)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sar = tiled(args.tiles, folder)
        teachers = {"floor off": MODELS / "sgcad_teacher.safetensors", "floor kept": floor_kept(folder / "kept")}
        times = {name: [] for name in teachers}
        resolving = {name: [] for name in teachers}
        for _ in range(args.repeats):
            for name, teacher in teachers.items():
                recipe = InputRecipe.of(read_metadata(teacher.with_name("sgcad_teacher_vvvh.safetensors")))
                start = time.perf_counter()
                resolve_inputs(recipe, None, sar)
                resolving[name].append(time.perf_counter() - start)
                start = time.perf_counter()
                water_probability(sar, teacher, folder / f"{name}.tif", cfg=InferenceConfig(), overwrite=True)
                times[name].append(time.perf_counter() - start)
        side = 224 * args.tiles
        for name in teachers:
            print(f"{side} x {side} px, {name}: water map median {statistics.median(times[name]):.2f} s, input "
                  f"resolution {statistics.median(resolving[name]):.2f} s")
        ratio = statistics.median(times["floor off"]) / statistics.median(times["floor kept"])
        resolve = statistics.median(resolving["floor off"]) / statistics.median(resolving["floor kept"])
        print(f"ratio off / kept: water map {ratio:.2f}, input resolution {resolve:.2f}")


if __name__ == "__main__":
    main()
