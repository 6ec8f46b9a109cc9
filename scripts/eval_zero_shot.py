"""Zero-shot figures of the bundled models on real scenes, next to classical baselines.

    .venv/bin/python scripts/eval_zero_shot.py [--student PATH] [--teacher PATH] [--adapt] [--markdown FILE]

* Water expert (teacher), SAR only: the expert the product chooses (on VV + VH rasters the VV + VH
  pair of :mod:`engine.water.experts`; the VV teacher alone is reported beside it): water IoU on
  the Sen1Floods11 chips (hand labels, the whole chip: nothing was trained on them), on the
  Camargue and lower Rhone evaluation polygons and on the Rotterdam evaluation polygons, next to
  Otsu's threshold on each SAR band: on the band as it is (the issue's baseline; the best band is
  reported) and after a 5 x 5 median (the stronger baseline: the better co-polarised band, and
  VH). With ``--adapt``, also the VV teacher after the label-free scene adaptation (``python -m
  engine finetune`` without polygons; where it keeps the teacher, the zero-shot map is scored).
* Snow: synthetic winter scenes no model saw, the share of snow-covered land called water.
* Held-out synthetic scenes (seeds 9300-9307, the student's latest training priors): OA / mIoU of
  whole scenes and of 128-px chips cut from them, and how often a chip agrees with the whole run.
* Student, optical + SAR: on Rotterdam, OA / mIoU / water IoU on all digitised polygons
  (training and evaluation sets: no polygon was used to train it); on the BigEarthNet pairs (RGB
  stacked from B04 B03 B02 with ``stack_bands``, S1 VV), the share of pixels predicted in classes
  the patch's CORINE labels admit (``engine.data.corine``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # appended: a test importing this script keeps its own sys.path order
    sys.path.append(str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import eval_finetune_real  # noqa: E402
from eval_finetune_real import (  # noqa: E402
    LABELS,
    MODELS,
    SHARED,
    iou,
    otsu_by_band,
    otsu_water,
    sar_db,
    scenes,
    student_classes,
    teacher_water,
    water_labels,
)

from engine.config import ClassSchema, InferenceConfig  # noqa: E402
from engine.data.corine import patch_admissible_classes  # noqa: E402
from engine.metrics import ConfusionMatrix  # noqa: E402
from engine.raster.grid import grid_of  # noqa: E402
from engine.raster.labels import rasterize_labels  # noqa: E402
from engine.raster.stack import stack_bands  # noqa: E402
from engine.water.experts import choose_water_expert  # noqa: E402

WATER = 3


def footprint_share(water: np.ndarray, footprint: np.ndarray) -> float:
    """Share of the SAR footprint called water: sparse polygons reward a map that calls most of
    the scene water, this says when one does."""
    return float(water[footprint].mean())


def auto_levels_relative(teacher: Path, sar: Path) -> bool:
    """Whether the input contract reads this SAR's levels as relative at the default ``auto``."""
    from engine.inputs.contract import InputRecipe, resolve_inputs
    from engine.models.checkpoint import read_metadata

    return resolve_inputs(InputRecipe.of(read_metadata(teacher)), None, sar).sar_relative_levels


def adapted_water(teacher: Path, sar: Path, out: Path, zero_shot: np.ndarray,
                  levels: str = "auto") -> tuple:
    """The label-free adaptation's water map (the zero-shot map where it refuses) and its result."""
    from engine.config import FinetuneConfig
    from engine.inputs.contract import InputOverrides
    from engine.train.finetune import finetune_from_polygons

    result = finetune_from_polygons(None, sar, None, "class", None, out, teacher_path=teacher, cfg=FinetuneConfig(),
                                    overwrite=True, overrides=InputOverrides(sar_levels=levels))
    if not result["teacher"]:
        return zero_shot, result
    return teacher_water(Path(result["teacher"]), sar, None, expert=True) > 0.5, result  # with its companion, if saved


def teacher_rows(teacher: Path, adapt: bool, tmp: Path) -> dict:
    rows = {}
    for name in ("india", "nigeria", "camargue", "rhone", "rotterdam"):
        scene = scenes()[name]
        truth, db = water_labels(scene), sar_db(scene["sar"])
        footprint = np.isfinite(db[0])
        zero_shot = teacher_water(teacher, scene["sar"], None, expert=True) > 0.5
        by_band = otsu_by_band(scene, truth)
        co = max((b for b in by_band if b in ("VV", "HH")), key=lambda b: by_band[b]["median5"])
        raw = max(by_band, key=lambda b: by_band[b]["raw"])
        otsu_co = otsu_water(db[scene["bands"].index(co)])
        row = {"otsu_co": by_band[co]["median5"], "otsu_co_band": co, "teacher": iou(zero_shot, truth),
               "otsu_raw": by_band[raw]["raw"], "otsu_raw_band": raw, "bands_otsu": by_band,
               "share_otsu_co": footprint_share(otsu_co, footprint),
               "share_teacher": footprint_share(zero_shot, footprint)}
        if "VH" in by_band:
            row["otsu_vh"] = by_band["VH"]["median5"]
        if choose_water_expert(teacher, scene["sar"]).dual_pol:  # the VV teacher alone, for the record
            row["teacher_vv"] = iou(teacher_water(teacher, scene["sar"], None) > 0.5, truth)
        # the product's default: on levels that auto finds relative, the scene's cut
        row["levels"] = "relative" if auto_levels_relative(teacher, scene["sar"]) else "calibrated"
        relative_levels = row["levels"] == "relative" or scene.get("sigma0", True) is False
        if relative_levels:  # what --sar-levels relative gives is reported too
            from engine.inference.sar_only import water_probability

            result = water_probability(scene["sar"], teacher, tmp / f"relative-{name}.tif", sar_levels="relative",
                                       cfg=eval_finetune_real.INFERENCE, overwrite=True)
            with rasterio.open(result["path"]) as src:
                relative = src.read(1) >= 0.5
            row["teacher_relative"], row["share_relative"] = iou(relative, truth), footprint_share(relative, footprint)
            row["scene_cut"] = result["scene_cut"]
        if row["levels"] == "relative":
            row["teacher_calibrated"], row["share_calibrated"] = row["teacher"], row["share_teacher"]
            row["teacher"], row["share_teacher"] = row["teacher_relative"], row["share_relative"]
        if adapt:
            adapted, result = adapted_water(teacher, scene["sar"], tmp / f"adapt-{name}", zero_shot)
            row["teacher_adapted"], row["share_adapted"] = iou(adapted, truth), footprint_share(adapted, footprint)
            row["adaptation"] = result.get("pseudo_labels", {}).get("threshold", {}).get("note", "")
            if relative_levels:  # the other levels' adaptation, for the record
                other = "calibrated" if row["levels"] == "relative" else "relative"
                adapted, _ = adapted_water(teacher, scene["sar"], tmp / f"adapt-{other}-{name}", zero_shot, other)
                row[f"teacher_adapted_{other}"] = iou(adapted, truth)
                row[f"share_adapted_{other}"] = footprint_share(adapted, footprint)
        rows[name] = row
        print(name, json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    return rows


def heldout_real_rows(student: Path, teacher: Path, folder: Path, adapt: bool, tmp: Path) -> dict:
    """Sen1Floods11-style chips no model or rule has seen (``<chip>_S1Hand.tif`` with its
    ``<chip>_LabelHand.tif`` and, where present, ``<chip>_S2Hand.tif``) anywhere under ``folder``:
    the teacher, its adaptation and, with the Sentinel-2 chip (bands chosen by role), the student's
    water, next to Otsu on each band; whole chips, every labelled pixel."""
    rows = {}
    for sar in sorted(folder.rglob("*_S1Hand.tif")):
        chip = sar.name[: -len("_S1Hand.tif")]
        labels = list(folder.rglob(f"{chip}_LabelHand.tif"))
        if not labels:
            continue
        with rasterio.open(sar) as src:
            bands = tuple((d or f"band {i + 1}").upper() for i, d in enumerate(src.descriptions))
        scene = dict(sar=sar, truth=labels[0], bands=bands)
        try:
            truth, zero_shot = water_labels(scene), teacher_water(teacher, sar, None, expert=True) > 0.5
        except ValueError as exc:  # a chip without a valid SAR pixel (Paraguay_34417 of the public sample)
            print(chip, f"skipped: {exc}", flush=True)
            continue
        by_band = otsu_by_band(scene, truth)
        row = {"water_share": float((truth == 1).sum() / max((truth != 255).sum(), 1)), "bands_otsu": by_band,
               "otsu_raw": max(v["raw"] for v in by_band.values()),
               "otsu_median5": max(v["median5"] for v in by_band.values()),
               "teacher": iou(zero_shot, truth)}
        if choose_water_expert(teacher, sar).dual_pol:  # the VV teacher alone, for the record
            row["teacher_vv"] = iou(teacher_water(teacher, sar, None) > 0.5, truth)
        if adapt:
            row["teacher_adapted"] = iou(adapted_water(teacher, sar, tmp / f"adapt-{chip}", zero_shot)[0], truth)
        optical = list(folder.rglob(f"{chip}_S2Hand.tif"))
        if optical:
            classes = student_classes(student, teacher, optical[0], sar, tmp / f"student-{chip}")
            row["student"] = iou(classes == WATER, truth)
        rows[chip] = row
        print(chip, json.dumps({k: round(v, 3) for k, v in row.items() if isinstance(v, float)}), flush=True)
    return rows


def student_rows(student: Path, teacher: Path, tmp: Path) -> dict:
    rows = {}
    scene = scenes()["rotterdam"]
    pred = student_classes(student, teacher, scene["optical"], scene["sar"], tmp / "rotterdam")
    grid = grid_of(scene["sar"])
    cm = ConfusionMatrix(6)
    for labels in (scene["train"], scene["eval"]):
        ref, _ = rasterize_labels(labels, "class", grid, ClassSchema())
        cm.update(np.where(pred >= 6, 0, pred), np.where((pred >= 6) & (ref != 255), 255, ref))
    m = cm.compute()
    rows["rotterdam"] = {"oa": m["oa"], "miou": m["miou"], "water_iou": m["iou"][WATER]}
    print("rotterdam student", json.dumps({k: round(v or 0, 3) for k, v in rows["rotterdam"].items()}), flush=True)
    for s2 in sorted((SHARED / "bigearthnet").rglob("S2A_MSIL2A_*")):
        if not s2.is_dir():
            continue
        patch = s2.name.split("_", 3)[-1]
        s1 = next((SHARED / "bigearthnet").rglob(f"*_{patch}_VV.tif"))
        rgb = tmp / f"{patch}_rgb.tif"
        stack_bands([(next(s2.glob(f"*_{b}.tif")), 1) for b in ("B04", "B03", "B02")], rgb)
        pred = student_classes(student, teacher, rgb, s1, tmp / f"ben-{patch}")
        allowed = patch_admissible_classes(next(s2.glob("*_labels_metadata.json")))
        ids = [ClassSchema().names.index(c) for c in allowed]
        valid = pred < 6
        share = float(np.isin(pred[valid], ids).mean())
        counts = {ClassSchema().names[c]: round(float((pred[valid] == c).mean()), 3) for c in range(6)}
        rows[f"bigearthnet_{patch}"] = {"admissible_share": share, "admissible": sorted(allowed), "shares": counts}
        print(patch, round(share, 3), sorted(allowed), counts, flush=True)
    return rows


def snow_rows(student: Path, teacher: Path, tmp: Path, count: int = 3) -> dict:
    """Synthetic winter scenes no model saw (wet snow darkens the SAR of land like water): the
    share of snow-covered land pixels the student calls water, and the teacher alone."""
    from engine.data.synthetic import generate_scene, random_scene_options

    rows = {}
    for k in range(count):
        seed = 9100 + k
        options = dict(random_scene_options(np.random.default_rng(seed), sensors=["s1"]), snow=True)
        scene = generate_scene(tmp / f"snow{k}", size=384, seed=seed, write_vector=False, **options)
        pred = student_classes(student, teacher, Path(scene["optical"]), Path(scene["sar"]), tmp / f"snow{k}-seg")
        with rasterio.open(scene["label"]) as src:
            label = src.read(1)
        land = (label != WATER) & (label != 255) & (pred < 6)
        p_teacher = teacher_water(teacher, Path(scene["sar"]), None)
        rows[f"snow_{seed}"] = {"student_water_on_land": float((pred[land] == WATER).mean()),
                                "teacher_water_on_land": float((p_teacher[land] > 0.5).mean()),
                                "water_share_true": float((label == WATER).mean())}
        print(f"snow {seed}", json.dumps({k2: round(v, 3) for k2, v in rows[f'snow_{seed}'].items()}), flush=True)
    return rows


def heldout_rows(student: Path, tmp: Path, count: int = 8, chip: int = 128) -> dict:
    """Synthetic scenes of the student's latest training distribution that no model saw (seeds
    9300-9307): pooled OA / mIoU of whole scenes, and of ``chip``-px chips cut from them (a
    small clip is stretched by its own percentiles) next to the same pixels of the whole run."""
    from make_training_scenes import scene_options
    from rasterio.windows import Window

    from engine.data.synthetic import generate_scene

    whole_cm, chip_cm, agree, total = ConfusionMatrix(6), ConfusionMatrix(6), 0, 0
    for k in range(count):
        seed = 9300 + k
        folder = tmp / f"heldout{k}"
        options = scene_options(seed, green_water=0.3, dense_crops=1.0)
        generate_scene(folder, size=512, seed=seed, write_vector=False, overwrite=True, **options)
        pred = student_classes(student, None, folder / "optical.tif", folder / "sar.tif", folder / "seg")
        with rasterio.open(folder / "label.tif") as src:
            label = src.read(1)
        whole_cm.update(np.where(pred >= 6, 0, pred), np.where(pred >= 6, 255, label))
        for row, col in ((64, 64), (64, 320), (320, 64), (320, 320)):
            window = Window(col, row, chip, chip)
            paths = [_cut(folder / f"{name}.tif", folder / f"chip_{name}_{row}_{col}.tif", window)
                     for name in ("optical", "sar")]
            small = student_classes(student, None, paths[0], paths[1], folder / f"chip{row}_{col}")
            ref, part = label[row:row + chip, col:col + chip], pred[row:row + chip, col:col + chip]
            chip_cm.update(np.where(small >= 6, 0, small), np.where(small >= 6, 255, ref))
            scored = (ref != 255) & (small < 6) & (part < 6)
            agree, total = agree + int((small[scored] == part[scored]).sum()), total + int(scored.sum())
    whole, small = whole_cm.compute(), chip_cm.compute()
    rows = {"oa": whole["oa"], "miou": whole["miou"], "iou": whole["iou"], "chip_oa": small["oa"],
            "chip_miou": small["miou"], "chip_agreement": agree / max(total, 1)}
    figures = {k: round(v, 3) for k, v in rows.items() if isinstance(v, float)}
    print("heldout synthetic", json.dumps(figures), flush=True)
    return rows


def _cut(src_path: Path, dst_path: Path, window) -> Path:
    """Write ``window`` of a raster as its own GeoTIFF (a user's clip)."""
    with rasterio.open(src_path) as src:
        profile = dict(src.profile, width=window.width, height=window.height,
                       transform=src.window_transform(window), tiled=False)
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
        with rasterio.open(dst_path, "w", **profile) as dst:
            dst.write(src.read(window=window))
    return dst_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default=str(MODELS / "sgcad_student.safetensors"))
    parser.add_argument("--teacher", default=str(MODELS / "sgcad_teacher.safetensors"))
    parser.add_argument("--adapt", action="store_true", help="also adapt the teacher to each scene without labels")
    parser.add_argument("--flip-average", action="store_true", help="run every network averaged over 4 flips")
    parser.add_argument("--heldout", default="", help="a folder of Sen1Floods11-style chips (S1Hand, LabelHand, "
                        "S2Hand) to score as well: no model or rule has seen them")
    parser.add_argument("--json", default="", help="write the figures here")
    parser.add_argument("--markdown", default="", help="write the tables of docs/experiments/zero_shot_real.md here")
    args = parser.parse_args()
    if args.flip_average:
        eval_finetune_real.INFERENCE = InferenceConfig(backend="torch", flip_average=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        out = {"teacher": teacher_rows(Path(args.teacher), args.adapt, tmp),
               "student": student_rows(Path(args.student), Path(args.teacher), tmp),
               "snow": snow_rows(Path(args.student), Path(args.teacher), tmp),
               "heldout": heldout_rows(Path(args.student), tmp)}
        if args.heldout:
            out["heldout_real"] = heldout_real_rows(Path(args.student), Path(args.teacher), Path(args.heldout),
                                                    args.adapt, tmp)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(markdown(out, args))


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def markdown(out: dict, args) -> str:
    """The figures as Markdown tables (the page's prose is written by hand around them)."""
    lines = ["| scene | SAR levels (auto) | water expert | VV teacher alone | teacher, calibrated cut | "
             "Otsu, band as it is (best band) | Otsu 5 x 5 median, co-pol | Otsu 5 x 5 median, VH | "
             "teacher adapted (no labels) | adapted, calibrated cut |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in out["teacher"].items():
        lines.append(f"| {name} | {r.get('levels', 'calibrated')} | {_pct(r['teacher'])} | "
                     f"{_pct(r.get('teacher_vv'))} | "
                     f"{_pct(r.get('teacher_calibrated', r['teacher']))} | "
                     f"{_pct(r['otsu_raw'])} ({r['otsu_raw_band']}) | "
                     f"{_pct(r['otsu_co'])} ({r['otsu_co_band']}) | "
                     f"{_pct(r.get('otsu_vh'))} | {_pct(r.get('teacher_adapted'))} | "
                     f"{_pct(r.get('teacher_adapted_calibrated', r.get('teacher_adapted')))} |")
    lines += ["", "| scene | share of the SAR footprint called water: teacher | Otsu co-pol | adapted |",
              "|---|---|---|---|"]
    for name, r in out["teacher"].items():
        lines.append(f"| {name} | {_pct(r['share_teacher'])} | {_pct(r['share_otsu_co'])} | "
                     f"{_pct(r.get('share_adapted'))} |")
    lines += ["", "| scene | figure |", "|---|---|"]
    for name, r in out["student"].items():
        if name == "rotterdam":
            lines.append(f"| Rotterdam (all 19 polygons) | OA {_pct(r['oa'])}, mIoU {_pct(r['miou'])}, "
                         f"water IoU {_pct(r['water_iou'])} |")
        else:
            shares = ", ".join(f"{k} {_pct(v)}" for k, v in r["shares"].items() if v >= 0.005)
            lines.append(f"| BigEarthNet {name.split('_', 1)[1]} ({', '.join(r['admissible'])}) | "
                         f"{_pct(r['admissible_share'])} % admissible ({shares}) |")
    lines += ["", "| synthetic winter scene | land called water: student | teacher alone |", "|---|---|---|"]
    for name, r in out["snow"].items():
        lines.append(f"| {name} | {_pct(r['student_water_on_land'])} % | {_pct(r['teacher_water_on_land'])} % |")
    h = out["heldout"]
    lines += ["", "| held-out synthetic scenes (8) | OA | mIoU | farmland, city, village, water, forest, road IoU |",
              "|---|---|---|---|",
              f"| whole 512 px scenes | {_pct(h['oa'])} | {_pct(h['miou'])} | {', '.join(_pct(v) for v in h['iou'])} |",
              f"| 128 px chips cut from them (agreement with the whole run: {_pct(h['chip_agreement'])} %) | "
              f"{_pct(h['chip_oa'])} | {_pct(h['chip_miou'])} | |"]
    if out.get("heldout_real"):
        lines += ["", "| held-out Sen1Floods11 chip (water %) | water expert | VV teacher alone | adapted | "
                  "Otsu, band as it is (best) | Otsu 5 x 5 median (best) | student, optical + SAR |",
                  "|---|---|---|---|---|---|---|"]
        for name, r in out["heldout_real"].items():
            lines.append(f"| {name} ({_pct(r['water_share'])}) | {_pct(r['teacher'])} | {_pct(r.get('teacher_vv'))} | "
                         f"{_pct(r.get('teacher_adapted'))} | {_pct(r['otsu_raw'])} | {_pct(r['otsu_median5'])} | "
                         f"{_pct(r.get('student'))} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    _ = LABELS
    main()
