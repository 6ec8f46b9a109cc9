"""Ablation of the SAR-only land-cover model: baseline vs each ALOS-2 refinement vs all three.

    .venv/bin/python scripts/experiment_sar_only.py [--seeds 1,2,3] [--epochs 6] [--real]
        [--out build/sar_only] [--json docs/experiments/sar_only.json]

Synthetic benchmark: single-polarisation (VV) six-class scenes of the project's generator, two
training scenes and one held-out test scene (other seeds). Each configuration trains a small
``sarnet`` (one thread, a few epochs) per seed and segments the test scene through the
streaming pipeline; scores come from ``engine evaluate``'s code: mIoU, water IoU, boundary
F-score (2 px) of roads and of the shoreline, and the mean IoU of the rare classes (road,
village, city). Classical baseline: a per-pixel linear discriminant on the same preprocessed
SAR values, fitted on the training scenes' labelled pixels.

Real polygon sets (``--real``): the seed-1 synthetic model of each configuration is fine-tuned
on the training polygons of Camargue, lower Rhone (Sentinel-1 VV) and Rotterdam (airborne
X-band, VV band) and scored on the separate evaluation polygons only, next to the linear
discriminant fitted on the same training polygons.

Configurations: ``baseline`` (focal + Dice with raw inverse-frequency weights, alpha = 1),
``hr`` (+ high-resolution injection), ``refine`` (+ refine-up head), ``alpha`` (alpha = 0.5),
``all`` (the three together).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from engine.config import (  # noqa: E402
    BandMapping,
    ClassSchema,
    FinetuneConfig,
    InferenceConfig,
    LossConfig,
    PatchConfig,
    StudentConfig,
    TrainConfig,
)
from engine.data.synthetic import generate_scene  # noqa: E402
from engine.inference.pipeline import segment_scene  # noqa: E402
from engine.inputs.contract import InputOverrides, InputRecipe, resolve_inputs  # noqa: E402
from engine.inputs.reader import PairReader  # noqa: E402
from engine.raster.grid import grid_of, read_on_grid  # noqa: E402
from engine.raster.io import write_raster  # noqa: E402
from engine.raster.labels import rasterize_labels  # noqa: E402
from engine.train.baseline import fit_lda  # noqa: E402
from engine.train.data import TrainingInputs  # noqa: E402
from engine.train.evaluate import evaluate_rasters  # noqa: E402
from engine.train.finetune import finetune_from_polygons  # noqa: E402
from engine.train.sar_stage import train_sar_only  # noqa: E402

SCHEMA = ClassSchema()
RARE = ("road", "village", "city")
CONFIGS = {
    "baseline": dict(hr=False, refine=False, alpha=1.0),
    "hr": dict(hr=True, refine=False, alpha=1.0),
    "refine": dict(hr=False, refine=True, alpha=1.0),
    "alpha": dict(hr=False, refine=False, alpha=0.5),
    "all": dict(hr=True, refine=True, alpha=0.5),
}
TRAIN_SEEDS, TEST_SEED = (41, 46), 49  # scenes holding every class (water 4-10 %)
SHARED = ROOT.parent / "shared" / "data"
LABELS = ROOT / "resources" / "labels"
REAL = {
    "camargue": dict(sar=SHARED / "sentinel1_camargue" / "S1A__IW___D_20170309T054356_VV_grd_mli_geo_norm_db.tif",
                     train=LABELS / "camargue_train.gpkg", eval=LABELS / "camargue_eval.gpkg", band=1),
    "lower_rhone": dict(sar=SHARED / "sentinel1_camargue" / "S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif",
                        train=LABELS / "lower_rhone_train.gpkg", eval=LABELS / "lower_rhone_eval.gpkg", band=1),
    "rotterdam": dict(sar=ROOT / "resources" / "sample" / "rotterdam" / "sar_masked.tif",
                      train=ROOT / "resources" / "sample" / "rotterdam" / "labels_digitised.gpkg",
                      eval=LABELS / "rotterdam_eval.gpkg", band=4),
}


def scenes(folder: Path) -> Dict[str, List[Dict[str, Any]]]:
    opts = dict(size=384, sensor="s1", polarisations=("VV",), write_vector=False)
    made = {}
    for split, seeds in (("train", TRAIN_SEEDS), ("test", (TEST_SEED,))):
        made[split] = []
        for seed in seeds:
            out = folder / f"scene_{seed}"
            if not (out / "label.tif").exists():
                generate_scene(out, seed=seed, overwrite=True, **opts)
            made[split].append({"sar": out / "sar.tif", "label": out / "label.tif"})
    return made


def summarise(metrics: Dict[str, Any]) -> Dict[str, Optional[float]]:
    rare = [metrics["iou"][SCHEMA.names.index(n)] for n in RARE]
    rare = [v for v in rare if v is not None]
    named = metrics["boundary_f_named"]
    return {"miou": metrics["miou"], "water_iou": metrics["water_iou"], "road_bf": named.get("road"),
            "shoreline_bf": named.get("shoreline"), "rare_iou": float(np.mean(rare)) if rare else None,
            "iou": metrics["iou"]}


def score(model: Path, sar: Path, reference: Path, out: Path, band: int = 1) -> Dict[str, Any]:
    seg = segment_scene(None, sar, model, out, cfg=InferenceConfig(tile_size=256, overlap=32, threads=1,
                                                                   backend="torch", device="cpu"),
                        overwrite=True, sar_bands=[band])
    field = None if reference.suffix == ".tif" else "class"
    return summarise(evaluate_rasters(seg["outputs"]["classes"], reference, SCHEMA, field))


def train(name: str, seed: int, data: Dict[str, list], out: Path, epochs: int) -> Path:
    c = CONFIGS[name]
    inputs = [TrainingInputs(sar=str(s["sar"]), labels=str(s["label"]), bands=BandMapping(sar_bands=(1,)),
                             patch=PatchConfig(tile_size=128, patch_size=64, seed=seed, rare_window=64, rare_stride=32))
              for s in data["train"]]
    model = StudentConfig(widths=(16, 32, 64, 128), blocks_per_stage=(1, 1, 1, 1), decoder_channels=32,
                          hr_injection=c["hr"], refine_up=c["refine"])
    cfg = TrainConfig(epochs=epochs, batch_size=8, threads=1, seed=seed, device="cpu", early_stopping_patience=0)
    result = train_sar_only(inputs, out, model, cfg, LossConfig(kind="focal_dice", alpha_scale=c["alpha"]),
                            SCHEMA, overwrite=True)
    return Path(result["model"])


def sar_features(sar: Path, band: int) -> np.ndarray:
    """(F, H, W) preprocessed SAR values as the networks see them (NaN where missing)."""
    recipe = InputRecipe(BandMapping(optical_bands=(), optical_names=(), sar_bands=(band,)))
    resolved = resolve_inputs(recipe, None, sar, InputOverrides(sar_bands=(band,)))
    grid = grid_of(sar)
    reader = PairReader(None, sar, grid, (), (band,), [resolved.preprocessor])
    return reader.read(0, 0, grid.width, grid.height).sar[0]


def lda_baseline(train: List[tuple], test_sar: Path, reference: Path, out: Path, band: int = 1) -> Dict[str, Any]:
    """Per-pixel linear discriminant on the SAR value, fitted on the training pixels."""
    xs, ys = [], []
    for sar, labels in train:
        x = sar_features(sar, band)
        if labels.suffix == ".tif":
            y = read_on_grid(labels, [1], grid_of(sar), resampling="nearest")[0]
            y = np.where(np.isfinite(y), y, 255).astype(np.int64)
        else:
            y = rasterize_labels(labels, "class", grid_of(sar), SCHEMA)[0].astype(np.int64)
        keep = (y != 255) & np.isfinite(x).all(0)
        xs.append(x[:, keep].T)
        ys.append(y[keep])
    lda = fit_lda(np.concatenate(xs), np.concatenate(ys))
    x = sar_features(test_sar, band)
    valid = np.isfinite(x).all(0)
    pred = np.full(valid.shape, 255, np.uint8)
    pred[valid] = lda.predict(x[:, valid].T)
    out.mkdir(parents=True, exist_ok=True)
    path = write_raster(out / "lda.tif", pred, grid_of(test_sar), nodata=255)
    field = None if reference.suffix == ".tif" else "class"
    return summarise(evaluate_rasters(path, reference, SCHEMA, field))


def mean_of(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key in ("miou", "water_iou", "road_bf", "shoreline_bf", "rare_iou"):
        vals = [r[key] for r in rows if r.get(key) is not None]
        out[key] = float(np.mean(vals)) if vals else None
        out[key + "_sd"] = float(np.std(vals)) if len(vals) > 1 else None
    return out


def real_scores(model: Path, out: Path, steps: int = 60) -> Dict[str, Any]:
    """Zero-shot and fine-tuned scores of one SAR-only model on each real polygon set, next to the
    linear discriminant fitted on the same training polygons."""
    scores: Dict[str, Any] = {}
    for scene, s in REAL.items():
        folder = out / scene
        ft = finetune_from_polygons(None, s["sar"], s["train"], "class", model, folder / "finetune",
                                    cfg=FinetuneConfig(steps=steps),
                                    overrides=InputOverrides(sar_bands=(s["band"],)), device="cpu", overwrite=True)
        scores[scene] = {
            "lda": lda_baseline([(s["sar"], s["train"])], s["sar"], s["eval"], folder / "lda", s["band"]),
            "zero_shot": score(model, s["sar"], s["eval"], folder / "zero", s["band"]),
            "finetuned": score(Path(ft["model"]), s["sar"], s["eval"], folder / "ft", s["band"]),
        }
        print(scene, {k: v["miou"] for k, v in scores[scene].items()}, flush=True)
    return scores


def _pct(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def render(report: Dict[str, Any]) -> str:
    """Markdown tables of a report (the figures of ``docs/experiments/sar_only.md``)."""
    keys = ("miou", "water_iou", "road_bf", "shoreline_bf", "rare_iou")
    head = ("| method | mIoU | water IoU | road boundary F | shoreline boundary F | rare-class IoU |\n"
            "|---|---|---|---|---|---|")
    lines = [f"Synthetic benchmark, mean ± s.d. over seeds {report['seeds']} ({report['epochs']} epochs), %:", "",
             head]
    syn = report["synthetic"]
    lda = syn.get("lda")
    if lda:
        lines.append("| linear discriminant (per pixel) | " + " | ".join(_pct(lda[k]) for k in keys) + " |")
    for name in CONFIGS:
        if name not in syn:
            continue
        m = syn[name]["mean"]
        cells = [f"{_pct(m[k])} ± {_pct(m[k + '_sd'])}" if m.get(k + "_sd") is not None else _pct(m[k])
                 for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for scene, entry in report.get("real", {}).items():
        lines += ["", f"Real: {scene}, scored on the evaluation polygons only, %:", "",
                  "| method | mIoU | water IoU | rare-class IoU | per-class IoU |", "|---|---|---|---|---|"]
        rows = [("linear discriminant (training polygons)", entry["lda"])]
        for name in CONFIGS:
            if name in entry:
                rows += [(f"{name}, zero-shot", entry[name]["zero_shot"]),
                         (f"{name}, fine-tuned", entry[name]["finetuned"])]
        for label, r in rows:
            per = ", ".join(f"{n} {_pct(v)}" for n, v in zip(SCHEMA.names, r["iou"]) if v is not None)
            lines.append(f"| {label} | {_pct(r['miou'])} | {_pct(r['water_iou'])} | {_pct(r['rare_iou'])} | {per} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--real", action="store_true", help="also fine-tune and score on the real polygon sets")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "sar_only")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "experiments" / "sar_only.json")
    parser.add_argument("--render", action="store_true", help="print the tables of --json and stop")
    parser.add_argument("--model", type=Path, help="only score this SAR-only model on the real sets (--json)")
    args = parser.parse_args()
    if args.render:
        print(render(json.loads(args.json.read_text())))
        return 0
    torch.set_num_threads(1)
    if args.model:
        sample = ROOT / "resources" / "sample" / "synthetic"
        result = {"model": str(args.model), "real": real_scores(args.model, args.out),
                  "synthetic_sample": score(args.model, sample / "sar.tif", sample / "label.tif", args.out / "sample")}
        args.json.write_text(json.dumps(result, indent=1))
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    names = args.configs.split(",")
    data = scenes(args.out / "scenes")
    test = data["test"][0]
    report: Dict[str, Any] = {"protocol": __doc__.split("\n\n")[1:4], "epochs": args.epochs, "seeds": seeds,
                              "synthetic": {}, "real": {}}
    train_pairs = [(s["sar"], s["label"]) for s in data["train"]]
    report["synthetic"]["lda"] = lda_baseline(train_pairs, test["sar"], test["label"], args.out / "lda")
    print("lda", report["synthetic"]["lda"], flush=True)
    models: Dict[str, Path] = {}
    for name in names:
        rows = []
        for seed in seeds:
            t0 = time.perf_counter()
            model = train(name, seed, data, args.out / f"{name}_s{seed}", args.epochs)
            models.setdefault(name, model)
            row = score(model, test["sar"], test["label"], args.out / f"{name}_s{seed}" / "test")
            row["train_s"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
            print(name, seed, {k: row[k] for k in ("miou", "water_iou", "road_bf", "shoreline_bf", "rare_iou",
                                                    "train_s")}, flush=True)
        report["synthetic"][name] = {"runs": rows, "mean": mean_of(rows)}
        args.json.write_text(json.dumps(report, indent=1))
    if args.real:
        for scene, s in REAL.items():
            entry: Dict[str, Any] = {"lda": lda_baseline([(s["sar"], s["train"])], s["sar"], s["eval"],
                                                         args.out / f"real_{scene}_lda", s["band"])}
            for name in names:
                folder = args.out / f"real_{scene}_{name}"
                ft = finetune_from_polygons(None, s["sar"], s["train"], "class", models[name], folder,
                                            cfg=FinetuneConfig(steps=60),
                                            overrides=InputOverrides(sar_bands=(s["band"],)),
                                            device="cpu", overwrite=True)
                entry[name] = {"zero_shot": score(models[name], s["sar"], s["eval"], folder / "zero", s["band"]),
                               "finetuned": score(Path(ft["model"]), s["sar"], s["eval"], folder / "ft", s["band"])}
                print(scene, name, {k: entry[name][k]["miou"] for k in ("zero_shot", "finetuned")}, flush=True)
            report["real"][scene] = entry
            args.json.write_text(json.dumps(report, indent=1))
    args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
