"""Fine-tuning from polygons on real scenes, scored on held-out truth, next to classical baselines.

    .venv/bin/python scripts/eval_finetune_real.py [--scenes india,nigeria,camargue,rhone,rotterdam]
        [--student PATH] [--teacher PATH] [--kd unlabelled|labelled|none] [--steps N]
        [--set crop_size=96 train_encoders=false ...] [--out FILE]

Protocols (resources/labels/README.md): training polygons on one part of each scene; scoring on
the other part only. Sen1Floods11 chips: the hand label of the right half (water IoU). Camargue,
lower Rhone, Rotterdam: the evaluation polygon sets. Baselines, on the same scoring pixels: Otsu
on the scene's VV (or HH) and VH dB (after a 5 x 5 median), a VH < -22 dB threshold where a VH
band exists, and a per-pixel linear discriminant fitted on the same training polygons (SAR only
for the teacher; optical + SAR for the student). Prints one table row per scene and method and
writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import rasterio
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # appended: a test importing this script keeps its own sys.path order
    sys.path.append(str(ROOT))

from engine.config import FinetuneConfig, InferenceConfig  # noqa: E402
from engine.inputs.contract import InputOverrides, InputRecipe, resolve_inputs  # noqa: E402
from engine.inputs.reader import PairReader  # noqa: E402
from engine.models.checkpoint import load_model  # noqa: E402
from engine.preprocess.nodata import fill_sar_nodata  # noqa: E402
from engine.raster.grid import grid_of  # noqa: E402
from engine.raster.labels import rasterize_labels  # noqa: E402
from engine.train.baseline import fit_lda  # noqa: E402
from engine.train.finetune import finetune_from_polygons  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
LABELS = ROOT / "resources" / "labels"
MODELS = ROOT / "resources" / "models"
SCHEMA_WATER = 3
INFERENCE = InferenceConfig(backend="torch")
"""How the networks run in these measurements (``flip_average`` set by ``eval_zero_shot.py --flip-average``)."""


def scenes() -> Dict[str, dict]:
    s1f = SHARED / "sen1floods11_s1"
    cam = SHARED / "sentinel1_camargue"
    rot = ROOT / "resources" / "sample" / "rotterdam"
    return {
        "india": dict(sar=s1f / "India_900498_S1Hand.tif", train=LABELS / "sen1floods11_India_900498_train.gpkg",
                      truth=s1f / "India_900498_LabelHand.tif", bands=("VV", "VH")),
        "nigeria": dict(sar=s1f / "Nigeria_812045_S1Hand.tif", train=LABELS / "sen1floods11_Nigeria_812045_train.gpkg",
                        truth=s1f / "Nigeria_812045_LabelHand.tif", bands=("VV", "VH")),
        "camargue": dict(sar=next(cam.glob("*20170309*.tif")), train=LABELS / "camargue_train.gpkg",
                         eval=LABELS / "camargue_eval.gpkg", bands=("VV",)),
        "rhone": dict(sar=next(cam.glob("*20171210*.tif")), train=LABELS / "lower_rhone_train.gpkg",
                      eval=LABELS / "lower_rhone_eval.gpkg", bands=("VV",)),
        # airborne X-band whose levels are not calibrated sigma0 (docs/data.md)
        "rotterdam": dict(sar=rot / "sar_masked.tif", optical=rot / "rgb_unmasked.tif",
                          train=rot / "labels_digitised.gpkg", eval=LABELS / "rotterdam_eval.gpkg", sigma0=False,
                          bands=("HH", "HV", "VH", "VV")),
    }


def water_labels(scene: dict, polygons: str = "eval", chip_half: Optional[str] = None) -> np.ndarray:
    """Water labels on the SAR grid: 1 water, 0 not water, 255 not scored.

    A dense hand label (the Sen1Floods11 chips) keeps its ``chip_half`` (``"left"``: the training
    half, ``"right"``: the scoring half, None: all); other scenes rasterize ``scene[polygons]``.
    Pixels without SAR are never scored: a SAR water map says nothing outside the radar footprint
    (Rotterdam's covers 61 % of its grid).
    """
    if "truth" in scene:
        with rasterio.open(scene["truth"]) as src:
            label = src.read(1).astype(np.int64)
        out = np.where(label < 0, 255, label)
        half = out.shape[1] // 2
        if chip_half == "left":
            out[:, half:] = 255
        elif chip_half == "right":
            out[:, :half] = 255
    else:
        from engine.config import ClassSchema

        classes, _ = rasterize_labels(scene[polygons], "class", grid_of(scene["sar"]), ClassSchema())
        out = np.where(classes == 255, 255, (classes == SCHEMA_WATER).astype(np.int64))
    return np.where(sar_footprint(scene["sar"]), out, 255)


def sar_footprint(sar: Path) -> np.ndarray:
    """Pixels where the SAR (band 1) has data."""
    return np.isfinite(sar_db(sar)[0])


def otsu_water(db: np.ndarray, median: int = 5) -> np.ndarray:
    """The classical baseline: Otsu's threshold on one dB band after a ``median`` x ``median``
    median (1: the band as it is), the threshold taken over the band's valid pixels (not the
    filled gaps)."""
    smooth = db if median <= 1 else ndimage.median_filter(np.nan_to_num(db, nan=float(np.nanmedian(db))), median)
    return np.where(np.isfinite(smooth), smooth, np.inf) < otsu(smooth[np.isfinite(db)])


def otsu_by_band(scene: dict, truth: np.ndarray) -> Dict[str, Dict[str, float]]:
    """Water IoU of Otsu's threshold on every SAR band of a scene, on the band as it is (``raw``:
    the baseline the issue measured, 0.71 and 0.74 on the Sen1Floods11 chips' VH) and after a
    5 x 5 median (``median5``: speckle filtered, the stronger baseline)."""
    db = sar_db(scene["sar"])
    names = scene.get("bands") or tuple(f"band {b + 1}" for b in range(db.shape[0]))
    return {name: {"raw": iou(otsu_water(db[b], 1), truth), "median5": iou(otsu_water(db[b]), truth)}
            for b, name in enumerate(names)}


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    m = truth != 255
    p, t = pred[m].astype(bool), truth[m].astype(bool)
    return float((p & t).sum() / max((p | t).sum(), 1))


def otsu(values: np.ndarray) -> float:
    v = values[np.isfinite(values)]
    hist, edges = np.histogram(v, 256)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centres) - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    return float(centres[np.argmax(w0 * w1 * (m0 - m1) ** 2)])


def sar_db(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        a = src.read(masked=True).astype(np.float64).filled(np.nan)
    return a if np.nanmedian(a) < 0 else 10 * np.log10(np.maximum(a, 1e-10))


def teacher_water(teacher_path: Path, sar: Path, optical: Optional[Path], expert: bool = False) -> np.ndarray:
    """The teacher's water probability of a whole chip; ``expert``: the water expert the product
    chooses for this raster (the VV + VH pair where the bands are named so, :mod:`engine.water.experts`)."""
    from engine.inference.flips import flip_averaged
    from engine.water.experts import choose_water_expert, load_water_expert

    choice = choose_water_expert(teacher_path, sar) if expert else None
    if choice is not None and choice.dual_pol:
        teacher, meta = load_water_expert(choice, teacher_path)
    else:
        teacher, meta = load_model(teacher_path, "teacher")
    teacher = flip_averaged(teacher, INFERENCE.flip_average)
    overrides = InputOverrides(sar_bands=choice.sar_bands) if choice is not None else InputOverrides()
    resolved = resolve_inputs(InputRecipe.of(meta), None, sar, overrides)
    grid = grid_of(sar)
    reader = PairReader(None, sar, grid, (), resolved.bands.sar_bands, [resolved.preprocessor])
    x = fill_sar_nodata(reader.read(0, 0, grid.width, grid.height).sar[0])  # as the product does
    import torch

    with torch.no_grad():
        return torch.softmax(teacher.eval()(torch.from_numpy(x[None])).float(), 1)[0, 1].numpy()


def student_classes(student_path: Path, teacher_path: Optional[Path], optical: Path, sar: Path,
                    out: Path) -> np.ndarray:
    from engine.inference.pipeline import segment_scene

    result = segment_scene(optical, sar, student_path, out, teacher_path=teacher_path,
                           cfg=INFERENCE, overwrite=True)
    with rasterio.open(result["outputs"]["classes"]) as src:
        return src.read(1)


def baselines(scene: dict, truth: np.ndarray, grid) -> Dict[str, float]:
    db = sar_db(scene["sar"])
    out = {"otsu_co": iou(otsu_water(db[0]), truth)}
    if "VH" in scene["bands"]:
        vh = db[scene["bands"].index("VH")]
        out["otsu_vh"] = iou(otsu_water(vh), truth)
        out["vh_below_-22"] = iou(vh < -22, truth)
    from engine.config import ClassSchema

    train, _ = rasterize_labels(scene["train"], "class", grid, ClassSchema())
    feats = [db[0]]
    if "optical" in scene:
        with rasterio.open(scene["optical"]) as src:
            feats += list(src.read().astype(np.float64))
    x = np.stack(feats).reshape(len(feats), -1).T
    keep = (train.ravel() != 255) & np.isfinite(x).all(1)
    lda = fit_lda(x[keep], (train.ravel()[keep] == SCHEMA_WATER).astype(int))
    pred = lda.predict(np.nan_to_num(x)).reshape(truth.shape)
    out["lda_" + ("sar_rgb" if "optical" in scene else "sar")] = iou(pred, truth)
    return out


def classes_truth(scene: dict, grid) -> Optional[np.ndarray]:
    """Multi-class scoring labels (the evaluation polygons), or None for water-only truth."""
    if "eval" not in scene:
        return None
    from engine.config import ClassSchema

    classes, _ = rasterize_labels(scene["eval"], "class", grid, ClassSchema())
    return classes.astype(np.int64)


def miou(pred: np.ndarray, truth: np.ndarray) -> float:
    from engine.metrics import ConfusionMatrix

    cm = ConfusionMatrix(6)
    cm.update(np.where(pred >= 6, 0, pred), np.where((pred >= 6) & (truth != 255), 255, truth))
    return cm.compute()["miou"] or 0.0


def lda_classes(scene: dict, grid) -> np.ndarray:
    """A per-pixel linear discriminant on SAR (band 1, dB) + optical fitted on the training polygons."""
    from engine.config import ClassSchema

    train, _ = rasterize_labels(scene["train"], "class", grid, ClassSchema())
    feats = [sar_db(scene["sar"])[0]]
    with rasterio.open(scene["optical"]) as src:
        feats += list(src.read().astype(np.float64))
    x = np.stack(feats).reshape(len(feats), -1).T
    keep = (train.ravel() != 255) & np.isfinite(x).all(1)
    return fit_lda(x[keep], train.ravel()[keep]).predict(np.nan_to_num(x)).reshape(train.shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", default="india,nigeria,camargue,rhone,rotterdam")
    parser.add_argument("--student", default=str(MODELS / "sgcad_student.safetensors"))
    parser.add_argument("--teacher", default=str(MODELS / "sgcad_teacher.safetensors"))
    parser.add_argument("--kd", default="unlabelled,labelled,none", help="distillation modes to compare")
    parser.add_argument("--steps", type=int, default=FinetuneConfig.steps)
    parser.add_argument("--teacher-steps", type=int, default=FinetuneConfig.teacher_steps)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="other FinetuneConfig settings, e.g. crop_size=96 train_encoders=false")
    parser.add_argument("--out", default="", help="write the figures here (JSON)")
    args = parser.parse_args()
    overrides = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.set)}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.scenes.split(","):
            scene = scenes()[name]
            grid = grid_of(scene["sar"])
            truth = water_labels(scene, "eval", "right")  # the left half holds the training polygons
            row = baselines(scene, truth, grid)
            row["teacher_zero_shot"] = iou(teacher_water(Path(args.teacher), scene["sar"], None) > 0.5, truth)
            optical = scene.get("optical")
            classes = classes_truth(scene, grid) if optical else None
            if optical:
                zero = student_classes(Path(args.student), None, optical, scene["sar"], Path(tmp) / f"{name}-z")
                row["student_zero_shot"] = iou(zero == SCHEMA_WATER, truth)
                row["student_zero_shot_miou"] = miou(zero, classes)
                row["lda_sar_rgb_miou"] = miou(lda_classes(scene, grid), classes)
            for kd in args.kd.split(",") if optical else ["unlabelled"]:
                cfg = FinetuneConfig(**{"kd": kd, "steps": args.steps, "teacher_steps": args.teacher_steps,
                                        **overrides})
                t0 = time.perf_counter()
                result = finetune_from_polygons(optical, scene["sar"], scene["train"], "class",
                                                args.student if optical else None, Path(tmp) / f"{name}-{kd}",
                                                teacher_path=args.teacher, cfg=cfg, overwrite=True)
                row[f"seconds_{kd}"] = round(time.perf_counter() - t0, 1)
                if result["teacher"] and "teacher_finetuned" not in row:
                    row["teacher_finetuned"] = iou(teacher_water(Path(result["teacher"]), scene["sar"], None) > 0.5,
                                                   truth)
                if optical:
                    pred = student_classes(Path(result["model"]), None, optical, scene["sar"],
                                           Path(tmp) / f"{name}-s-{kd}")
                    row[f"student_finetuned_{kd}"] = iou(pred == SCHEMA_WATER, truth)
                    row[f"student_finetuned_{kd}_miou"] = miou(pred, classes)
            rows[name] = row
            print(name, json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
