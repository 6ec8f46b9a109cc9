"""Continue the water expert (teacher) on the real scenes' training labels beside the synthetic set.

    .venv/bin/python scripts/train_teacher_real.py [--init TEACHER] --synthetic SCENES_DIR --out RUN
        [--exclude india,rotterdam|all] [--windows 24] [--repeat 4] [--epochs 4] [--max-batches 60]

Real training labels only (``resources/labels/README.md``): the left part of each Sen1Floods11
hand label (columns 0-247; the right half is the evaluation set), the training polygons of the
Camargue, the lower Rhone and Rotterdam (their evaluation polygons are never read here). Each real
scene becomes a patch set of ``--windows`` 128-px windows over its labelled pixels, listed
``--repeat`` times, so the few real scenes weigh about as much as the synthetic ones per epoch.
``--exclude`` leaves scenes out, for leave-one-scene-out checks of transfer to an unseen scene.
Training continues from ``--init`` (its architecture, weights and frozen BatchNorm statistics),
or starts a new teacher of ``--model-config``, with every epoch kept. Measured, not adopted:
docs/experiments/zero_shot_real.md (retraining the water expert).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # appended: a test importing this script keeps its own sys.path order
    sys.path.append(str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_finetune_real import SCHEMA_WATER, sar_footprint, scenes, water_labels  # noqa: E402

from engine.config import (  # noqa: E402
    BandMapping,
    ClassSchema,
    PatchConfig,
    SarPreprocessConfig,
    TeacherConfig,
    TrainConfig,
    from_dict,
)
from engine.data.patches import MANIFEST_VERSION, save_manifest  # noqa: E402
from engine.progress import ConsoleProgress  # noqa: E402
from engine.raster.grid import grid_of  # noqa: E402
from engine.raster.labels import rasterize_labels  # noqa: E402
from engine.train.data import TrainingInputs  # noqa: E402
from engine.train.stages import train_teacher  # noqa: E402

PATCH = 128
GUARD_FROM = 248  # Sen1Floods11 chips: columns 248-255 separate the training and scoring halves
SAR_ONLY = BandMapping(optical_bands=(), sar_bands=(1,), optical_names=(), sar_names=("sar_b1",))


def training_label(scene: dict) -> np.ndarray:
    """Classes on the SAR grid from the scene's training labels only (255 elsewhere)."""
    if "truth" in scene:
        water = water_labels(scene, chip_half="left")
        water[:, GUARD_FROM:] = 255
        return np.where(water == 255, 255, np.where(water == 1, SCHEMA_WATER, 0)).astype(np.uint8)
    classes, _ = rasterize_labels(scene["train"], "class", grid_of(scene["sar"]), ClassSchema())
    return np.where(sar_footprint(scene["sar"]), classes, 255).astype(np.uint8)


def window_positions(label: np.ndarray, count: int) -> list:
    """``count`` windows spread over the labelled windows of a 32-px lattice."""
    h, w = label.shape
    rows = sorted({*range(0, h - PATCH + 1, 32), h - PATCH})
    cols = sorted({*range(0, w - PATCH + 1, 32), w - PATCH})
    found = [(c, r) for r in rows for c in cols if (label[r:r + PATCH, c:c + PATCH] != 255).any()]
    pick = np.linspace(0, len(found) - 1, min(count, len(found))).round().astype(int)
    return [found[i] for i in sorted(set(pick.tolist()))]


def real_patch_set(name: str, scene: dict, folder: Path, count: int, repeat: int) -> Path:
    """A patch set (label.tif + manifest.json, every patch in the training split) of one scene."""
    folder.mkdir(parents=True, exist_ok=True)
    label = training_label(scene)
    with rasterio.open(scene["sar"]) as src:
        profile = dict(driver="GTiff", width=src.width, height=src.height, count=1, dtype="uint8",
                       crs=src.crs, transform=src.transform, nodata=255)
    with rasterio.open(folder / "label.tif", "w", **profile) as dst:
        dst.write(label, 1)
    k = ClassSchema().num_classes
    patches = []
    for c, r in window_positions(label, count):
        counts = np.bincount(label[r:r + PATCH, c:c + PATCH].ravel(), minlength=256)[:k].tolist()
        patches.extend({"split": "train", "window": [c, r, PATCH, PATCH], "tile": 0, "class_counts": counts,
                        "resampled": False} for _ in range(repeat))
    whole = [0, 0, label.shape[1], label.shape[0]]
    sources = {"sar": str(Path(scene["sar"]).resolve()), "label": "label.tif"}
    manifest = {"version": MANIFEST_VERSION, "sources": sources,
                "width": label.shape[1], "height": label.shape[0], "patch_size": PATCH, "tile_size": PATCH,
                "classes": list(ClassSchema().names), "tiles": [{"window": whole, "split": "train"}],
                "patches": patches, "warnings": [], "scene": name}
    save_manifest(manifest, folder / "manifest.json")
    water = int((label == SCHEMA_WATER).sum())
    print(f"{name}: {len(patches) // repeat} windows x {repeat}, {water} water and "
          f"{int(((label != 255) & (label != SCHEMA_WATER)).sum())} other labelled pixels", flush=True)
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", help="teacher model file to continue from (default: a new teacher)")
    parser.add_argument("--model-config", default=str(ROOT / "configs" / "default_teacher.json"),
                        help="architecture of a new teacher (configs/default_teacher.json)")
    parser.add_argument("--synthetic", required=True, help="folder of synthetic scene folders (sar.tif, label.tif)")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--synthetic-count", type=int, default=0, help="use only the first N synthetic scenes (0: all)")
    parser.add_argument("--exclude", default="", help="real scenes left out, comma-separated ('all': synthetic only)")
    parser.add_argument("--lee-window", type=int, default=7, help="Lee filter window of the SAR chain (7)")
    parser.add_argument("--lee-looks", type=float, default=1.0, help="looks the Lee filter assumes (1)")
    parser.add_argument("--windows", type=int, default=24, help="128-px windows per real scene (24)")
    parser.add_argument("--repeat", type=int, default=4, help="times each real window is listed per epoch (4)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--max-batches", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    out = Path(args.out)
    excluded = set(scenes()) if args.exclude == "all" else {s for s in args.exclude.split(",") if s}
    unknown = excluded - set(scenes())
    if unknown:
        parser.error(f"unknown scene(s) {sorted(unknown)}; known: {sorted(scenes())}")
    chain = SarPreprocessConfig(lee_window=args.lee_window, lee_looks=args.lee_looks)
    inputs = [TrainingInputs(sar=str(f / "sar.tif"), labels=str(f / "label.tif"), bands=SAR_ONLY, sar_preprocess=chain,
                             patch=PatchConfig(tile_size=256, patch_size=PATCH, seed=args.seed))
              for f in sorted(Path(args.synthetic).iterdir()) if (f / "label.tif").is_file()]
    inputs = inputs[:args.synthetic_count or None]
    for name, scene in scenes().items():
        if name not in excluded:
            folder = real_patch_set(name, scene, out.parent / f"{out.name}-real" / name, args.windows, args.repeat)
            inputs.append(TrainingInputs(patch_set=str(folder), bands=SAR_ONLY, sar_preprocess=chain))
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      threads=args.threads, max_batches_per_epoch=args.max_batches, keep_epochs=True)
    teacher_cfg = from_dict(TeacherConfig, json.loads(Path(args.model_config).read_text()))
    result = train_teacher(inputs, out, teacher_cfg, train_cfg=cfg, progress=ConsoleProgress(), overwrite=True,
                           init_from=args.init)
    print(json.dumps({k: v for k, v in result.items() if isinstance(v, (int, float, str))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
