"""Fine-tuning benchmark: wall time, where it goes, and the held-out accuracy it buys.

    .venv/bin/python scripts/bench_finetune.py [--polygons 40] [--threads 2] [--repeat 1]

Scenes, at default settings (``FinetuneConfig``) with the bundled models:

* ``synthetic``: the bundled 512 x 512 optical + SAR sample, with ``--polygons`` squares of
  10-16 px placed where its reference label is uniform (stratified by class, seeded), so the
  held-out figure can be checked against the reference outside the polygons too;
* ``india``: the Sen1Floods11 India chip (512 x 512, SAR only: the teacher) with the project's 30
  training polygons (resources/labels).

Prints one line per run: seconds in total and per phase, held-out figures next to the linear
baseline's, and (synthetic) mIoU against the reference label over the whole scene outside the
training polygons.
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

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # appended: a test importing this script keeps its own sys.path order
    sys.path.append(str(ROOT))

MODELS = ROOT / "resources" / "models"
SAMPLE = ROOT / "resources" / "sample" / "synthetic"
SHARED = ROOT.parent / "shared" / "data"


def square_polygons(label_path: Path, count: int, out: Path, seed: int = 0) -> Path:
    """``count`` squares inside uniform areas of a label raster, as a GeoPackage (field ``class``)."""
    from osgeo import ogr, osr

    from engine.config import ClassSchema

    schema = ClassSchema()
    with rasterio.open(label_path) as src:
        label, transform, crs = src.read(1), src.transform, src.crs
    rng = np.random.default_rng(seed)
    present = [c for c in schema.ids if (label == c).sum() > 400]
    driver = ogr.GetDriverByName("GPKG")
    ds = driver.CreateDataSource(str(out))
    srs = osr.SpatialReference()
    srs.ImportFromWkt(crs.to_wkt())
    layer = ds.CreateLayer("labels", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class", ogr.OFTString))
    made, tries = 0, 0
    while made < count and tries < 100_000:
        tries += 1
        c = present[tries % len(present)]  # by attempt: a class without room (thin roads) does not stall
        size = int(rng.integers(10, 17))
        r, col = int(rng.integers(0, label.shape[0] - size)), int(rng.integers(0, label.shape[1] - size))
        if not (label[r:r + size, col:col + size] == c).all():
            continue
        x0, y0 = transform * (col, r)
        x1, y1 = transform * (col + size, r + size)
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("class", schema.names[c])
        feature.SetGeometry(ogr.CreateGeometryFromWkt(
            f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"))
        layer.CreateFeature(feature)
        made += 1
    ds = None
    return out


def scene_miou(model: str, polygons: Path, tmp: Path) -> float:
    """mIoU of the fine-tuned student's map against the reference label, outside the polygons."""
    from engine.config import ClassSchema, InferenceConfig
    from engine.inference.pipeline import segment_scene
    from engine.metrics import ConfusionMatrix
    from engine.raster.grid import grid_of
    from engine.raster.labels import rasterize_labels

    result = segment_scene(SAMPLE / "optical.tif", SAMPLE / "sar.tif", model, tmp,
                           cfg=InferenceConfig(backend="torch"), overwrite=True)
    with rasterio.open(result["outputs"]["classes"]) as src:
        pred = src.read(1)
    with rasterio.open(SAMPLE / "label.tif") as src:
        ref = src.read(1).astype(np.int64)
    drawn, _ = rasterize_labels(polygons, "class", grid_of(SAMPLE / "label.tif"), ClassSchema())
    ref[drawn != 255] = 255
    cm = ConfusionMatrix(6)
    cm.update(np.where(pred == 255, 0, pred), ref)
    return cm.compute()["miou"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polygons", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--scenes", default="synthetic,india")
    args = parser.parse_args()
    t_import = time.perf_counter()
    import torch

    from engine.commands.finetune import summary
    from engine.train.finetune import finetune_from_polygons

    torch.set_num_threads(args.threads)
    import_s = time.perf_counter() - t_import
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        polygons = square_polygons(SAMPLE / "label.tif", args.polygons, tmp / "squares.gpkg")
        runs = {
            "synthetic": (SAMPLE / "optical.tif", SAMPLE / "sar.tif", polygons, MODELS / "sgcad_student.safetensors"),
            "india": (None, SHARED / "sen1floods11_s1" / "India_900498_S1Hand.tif",
                      ROOT / "resources" / "labels" / "sen1floods11_India_900498_train.gpkg", None),
        }
        for name in args.scenes.split(","):
            optical, sar, poly, student = runs[name]
            for k in range(args.repeat):
                t0 = time.perf_counter()
                result = finetune_from_polygons(optical, sar, poly, "class", student, tmp / f"{name}{k}",
                                                teacher_path=MODELS / "sgcad_teacher.safetensors")
                wall = time.perf_counter() - t0
                line = {"scene": name, "seconds": round(wall, 1), "torch_import_s": round(import_s, 1),
                        **result["timings"], "held_out": summary(result),
                        "student_steps": result.get("student_fit", {}).get("steps_run"),
                        "teacher_steps": result.get("teacher_fit", {}).get("steps_run")}
                if name == "synthetic" and result.get("model"):
                    line["scene_miou_outside_polygons"] = round(scene_miou(result["model"], poly, tmp / "map"), 4)
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
