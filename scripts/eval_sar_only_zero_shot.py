"""The SAR-only land-cover model before any polygon is drawn, on every real scene the project may use.

    .venv/bin/python scripts/eval_sar_only_zero_shot.py [--model PATH] [--json FILE]

No optical image is read. Figures, next to classical baselines on the same pixels:

* Camargue, lower Rhone (Sentinel-1 VV) and Rotterdam (airborne X-band, VV band): mIoU and water IoU
  on the evaluation polygons (``resources/labels/*_eval.gpkg``); the per-pixel linear discriminant
  fitted on the training polygons is the baseline (it has seen labels of the scene; the model has not).
* Sen1Floods11 India and Nigeria: water IoU of the class map on the right half of the hand label,
  next to Otsu's threshold on the chip's VV dB (band as it is, and after a 5 x 5 median).
* The three dry BigEarthNet chips (VV): the share of pixels in each class, and in classes the
  chip's CORINE labels admit.
* Synthetic winter scenes (seeds 9100-9102, Sentinel-1 VV): the share of snow-covered land called water.
* ``resources/sample/synthetic``: mIoU and water IoU against its label raster.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "scripts"):
    if str(folder) not in sys.path:
        sys.path.append(str(folder))

from eval_finetune_real import INFERENCE, iou, otsu_water, sar_db, water_labels  # noqa: E402
from eval_finetune_real import scenes as polygon_scenes  # noqa: E402
from experiment_sar_only import REAL, lda_baseline, summarise  # noqa: E402

from engine.commands.bundled import BUNDLED_TEACHER  # noqa: E402
from engine.config import ClassSchema  # noqa: E402
from engine.data.corine import patch_admissible_classes  # noqa: E402
from engine.inference.pipeline import segment_scene  # noqa: E402
from engine.train.evaluate import evaluate_rasters  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
MODEL = ROOT / "resources" / "models" / "sgcad_student_sar_only.safetensors"
SCHEMA = ClassSchema()
WATER = SCHEMA.water_class


TEACHER: Optional[Path] = None  # the water expert segment runs beside the model (--teacher)
WATER_FROM_EXPERT = False  # the class map's water from that expert (--water-from-expert)


def classes(model: Path, sar: Path, out: Path, band: int = 1) -> Path:
    """The model's class map of ``sar`` (no optical image), as the product writes it."""
    cfg = dataclasses.replace(INFERENCE, water_from_expert=WATER_FROM_EXPERT)
    result = segment_scene(None, sar, model, out, TEACHER, cfg=cfg, overwrite=True, sar_bands=[band])
    return Path(result["outputs"]["classes"])


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def polygon_rows(model: Path, tmp: Path) -> Dict[str, dict]:
    rows = {}
    for name, s in REAL.items():
        zero = summarise(evaluate_rasters(classes(model, s["sar"], tmp / name, s["band"]), s["eval"], SCHEMA, "class"))
        lda = lda_baseline([(s["sar"], s["train"])], s["sar"], s["eval"], tmp / f"{name}-lda", s["band"])
        rows[name] = {"miou": zero["miou"], "water_iou": zero["water_iou"], "iou": zero["iou"],
                      "lda_miou": lda["miou"], "lda_water_iou": lda["water_iou"]}
        print(name, json.dumps({k: round(v, 3) for k, v in rows[name].items() if isinstance(v, float)}), flush=True)
    return rows


def chip_rows(model: Path, tmp: Path) -> Dict[str, dict]:
    rows = {}
    for name in ("india", "nigeria"):
        scene = polygon_scenes()[name]
        truth = water_labels(scene, chip_half="right")
        pred = read(classes(model, scene["sar"], tmp / name))
        vv = sar_db(scene["sar"])[0]
        rows[name] = {"water_iou": iou(pred == WATER, truth), "otsu_vv": iou(otsu_water(vv, median=1), truth),
                      "otsu_vv_5x5": iou(otsu_water(vv), truth)}
        print(name, json.dumps({k: round(v, 3) for k, v in rows[name].items()}), flush=True)
    return rows


def bigearthnet_rows(model: Path, tmp: Path) -> Dict[str, dict]:
    rows = {}
    for s2 in sorted((SHARED / "bigearthnet").rglob("S2A_MSIL2A_*")):
        if not s2.is_dir():
            continue
        patch = s2.name.split("_", 3)[-1]
        vv = next((SHARED / "bigearthnet").rglob(f"*_{patch}_VV.tif"))
        pred = read(classes(model, vv, tmp / f"ben-{patch}"))
        valid = pred < len(SCHEMA.names)
        allowed = patch_admissible_classes(next(s2.glob("*_labels_metadata.json")))
        ids = [SCHEMA.names.index(c) for c in allowed]
        shares = {SCHEMA.names[c]: round(float((pred[valid] == c).mean()), 3) for c in range(len(SCHEMA.names))}
        rows[patch] = {"admissible_share": float(np.isin(pred[valid], ids).mean()), "admissible": sorted(allowed),
                       "shares": shares}
        print(patch, round(rows[patch]["admissible_share"], 3), shares, flush=True)
    return rows


def snow_rows(model: Path, tmp: Path, count: int = 3) -> Dict[str, dict]:
    from engine.data.synthetic import generate_scene, random_scene_options

    rows = {}
    for k in range(count):
        seed = 9100 + k
        options = dict(random_scene_options(np.random.default_rng(seed), sensors=["s1"]), snow=True)
        scene = generate_scene(tmp / f"snow{k}", size=384, seed=seed, write_vector=False, **options)
        pred, label = read(classes(model, Path(scene["sar"]), tmp / f"snow{k}-seg")), read(Path(scene["label"]))
        land = (label != WATER) & (label != 255) & (pred < len(SCHEMA.names))
        rows[f"snow_{seed}"] = {"water_on_land": float((pred[land] == WATER).mean())}
        print(f"snow {seed}", round(rows[f"snow_{seed}"]["water_on_land"], 3), flush=True)
    return rows


def sample_row(model: Path, tmp: Path) -> Dict[str, Optional[float]]:
    sample = ROOT / "resources" / "sample" / "synthetic"
    row = summarise(evaluate_rasters(classes(model, sample / "sar.tif", tmp / "sample"), sample / "label.tif",
                                     SCHEMA, None))
    print("synthetic sample", round(row["miou"], 3), round(row["water_iou"] or 0, 3), flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--teacher", type=Path, default=BUNDLED_TEACHER,
                        help="water expert beside the model, as segment runs it (default: the bundled one)")
    parser.add_argument("--no-teacher", action="store_true", help="the model alone")
    parser.add_argument("--water-from-expert", action="store_true", help="the class map's water from the teacher")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    global TEACHER, WATER_FROM_EXPERT
    TEACHER = None if args.no_teacher else args.teacher
    WATER_FROM_EXPERT = args.water_from_expert
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        out = {"model": str(args.model), "polygons": polygon_rows(args.model, tmp),
               "sen1floods11": chip_rows(args.model, tmp), "bigearthnet": bigearthnet_rows(args.model, tmp),
               "snow": snow_rows(args.model, tmp), "synthetic_sample": sample_row(args.model, tmp)}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
