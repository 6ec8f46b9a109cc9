"""Do classes nobody drew survive fine-tuning? The keep term measured on real scenes.

    .venv/bin/python scripts/eval_finetune_keep.py [--setups R-all,R-wc,R-wf] [--keep 0,0.5,1]
        [--spain FOLDER] [--seed 42] [--out FILE]

Setups (bundled models, fine-tuning defaults but ``keep_undrawn`` and ``seed``):
R-all: Rotterdam with its 10 training polygons (city, farmland, road, water drawn); R-wc and R-wf:
the same with only the water and city, or water and farmland, polygons. Scored on the Rotterdam
evaluation polygons' pixels with SAR (IoU per class; its farmland and road polygons have no SAR,
so water and city are scored). S (with ``--spain``, a folder holding the Sen1Floods11 chip
Spain_7370579's S1Hand, S2Hand and LabelHand files): 12 squares of 10 px drawn in the chip's left
half, 6 of water where the zero-shot student is wrong and 6 of farmland where it is right, scored
on the right half's hand label (water IoU) and by the map's class shares. docs/experiments/finetune_keep.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from osgeo import gdal, ogr, osr
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "scripts"))
sys.path.append(str(ROOT))

from eval_finetune_real import classes_truth, iou, scenes, student_classes, water_labels  # noqa: E402

from engine.config import ClassSchema, FinetuneConfig  # noqa: E402
from engine.metrics import ConfusionMatrix  # noqa: E402
from engine.raster.grid import grid_of  # noqa: E402
from engine.train.finetune import finetune_from_polygons  # noqa: E402

MODELS = ROOT / "resources" / "models"
NAMES = ClassSchema().names
DRAWN = {"R-all": None, "R-wc": ("water", "city"), "R-wf": ("water", "farmland")}


def shares(pred: np.ndarray) -> dict:
    return {NAMES[c]: round(100 * float((pred == c).mean()), 1) for c in range(len(NAMES))}


def class_iou(pred: np.ndarray, truth: np.ndarray) -> dict:
    """IoU per class that has scored pixels (truth pixels without a prediction are not scored)."""
    cm = ConfusionMatrix(len(NAMES))
    cm.update(np.where(pred >= len(NAMES), 0, pred), np.where(pred >= len(NAMES), 255, truth))
    result = cm.compute()
    return {NAMES[c]: round(100 * v, 1) for c, v in enumerate(result["iou"]) if v is not None}


def spain_squares(folder: Path, zero_shot: np.ndarray, truth: np.ndarray, out: Path, side: int = 10) -> Path:
    """Water squares where the zero-shot map misses water, farmland squares where it is right, left half."""
    half = truth.shape[1] // 2

    def places(mask: np.ndarray, n: int, seed: int) -> list:
        ok = ndimage.minimum_filter(mask.astype(np.uint8), size=side + 4) > 0
        ok[:, half - side - 2:] = False
        rows, cols = np.nonzero(ok)
        chosen = []
        for i in np.random.default_rng(seed).permutation(len(rows)):
            if all(abs(rows[i] - r) > 40 or abs(cols[i] - c) > 40 for r, c in chosen):
                chosen.append((rows[i], cols[i]))
            if len(chosen) == n:
                break
        return chosen

    with rasterio.open(folder / "Spain_7370579_S1Hand.tif") as src:
        transform = src.transform
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(out))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    layer = ds.CreateLayer("labels", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class", ogr.OFTString))
    for name, cells in (("water", places((truth == 1) & (zero_shot != 3), 6, 0)),
                        ("farmland", places((truth == 0) & (zero_shot == 0), 6, 1))):
        for r, c in cells:
            (x0, y0), (x1, y1) = transform * (c - side // 2, r - side // 2), transform * (c + side // 2, r + side // 2)
            ring = ogr.Geometry(ogr.wkbLinearRing)
            for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)):
                ring.AddPoint_2D(float(x), float(y))
            polygon = ogr.Geometry(ogr.wkbPolygon)
            polygon.AddGeometry(ring)
            feature = ogr.Feature(layer.GetLayerDefn())
            feature.SetField("class", name)
            feature.SetGeometry(polygon)
            layer.CreateFeature(feature)
    ds = None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setups", default="R-all,R-wc,R-wf")
    parser.add_argument("--keep", default="0,0.5,1", help="keep_undrawn weights to compare")
    parser.add_argument("--spain", help="folder with the Sen1Floods11 Spain_7370579 chip (adds setup S)")
    parser.add_argument("--seed", type=int, default=FinetuneConfig.seed)
    parser.add_argument("--out", default="", help="write the rows here (JSON)")
    args = parser.parse_args()
    weights = [float(k) for k in args.keep.split(",")]
    student, teacher = MODELS / "sgcad_student.safetensors", MODELS / "sgcad_teacher.safetensors"
    rows = []

    def run(setup: str, optical, sar, polygons, score, tmp: Path) -> None:
        rows.append({"setup": setup, "keep": "zero-shot", **score(student_classes(student, None, optical, sar,
                                                                                  tmp / f"{setup}-zs"))})
        print(json.dumps(rows[-1]), flush=True)
        for keep in weights:
            t0 = time.perf_counter()
            result = finetune_from_polygons(optical, sar, polygons, "class", student, tmp / f"{setup}-{keep}",
                                            teacher_path=teacher, overwrite=True,
                                            cfg=FinetuneConfig(keep_undrawn=keep, seed=args.seed))
            pred = student_classes(Path(result["model"]), None, optical, sar, tmp / f"{setup}-{keep}-seg")
            rows.append({"setup": setup, "keep": keep, **score(pred), "seconds": round(time.perf_counter() - t0, 1),
                         "undrawn": result["undrawn_classes"]})
            print(json.dumps(rows[-1]), flush=True)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rot = scenes()["rotterdam"]
        truth = classes_truth(rot, grid_of(rot["sar"]))
        for setup in [s for s in args.setups.split(",") if s]:
            polygons = rot["train"]
            if DRAWN[setup]:
                polygons = tmp / f"{setup}.gpkg"
                kept = ", ".join(f"'{c}'" for c in DRAWN[setup])
                gdal.VectorTranslate(str(polygons), str(rot["train"]), where=f"class IN ({kept})")
            run(setup, rot["optical"], rot["sar"], polygons,
                lambda pred: {"iou": class_iou(pred, truth), "shares": shares(pred)}, tmp)
        if args.spain:
            folder = Path(args.spain)
            optical, sar = folder / "Spain_7370579_S2Hand.tif", folder / "Spain_7370579_S1Hand.tif"
            water = water_labels({"sar": sar, "truth": folder / "Spain_7370579_LabelHand.tif"})
            right = water.copy()
            right[:, : water.shape[1] // 2] = 255
            zero_shot = student_classes(student, None, optical, sar, tmp / "S-squares")
            squares = spain_squares(folder, zero_shot, water, tmp / "spain_squares.gpkg")
            run("S", optical, sar, squares,
                lambda pred: {"water_right": round(100 * iou(pred == 3, right), 1), "shares": shares(pred)}, tmp)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
