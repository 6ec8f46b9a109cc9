"""Publish trained runs as the bundled default models, with a model card each.

Weights are stored as float16 (halves the size; loading casts back to float32), the
metadata header is kept unchanged. The cards report the run's held-out test split, the held-out
sample scene ``resources/sample/synthetic`` and, with ``--real``, the zero-shot figures on real
scenes measured by ``scripts/eval_zero_shot.py --json``.

Usage: ``.venv/bin/python scripts/publish_models.py --teacher RUN --student RUN --out resources/models``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # appended: a test importing this script keeps its own sys.path order
    sys.path.append(str(ROOT))

from engine.config import InferenceConfig  # noqa: E402
from engine.inference.pipeline import segment_scene  # noqa: E402
from engine.metrics import ConfusionMatrix  # noqa: E402
from engine.models.checkpoint import load_model, read_metadata  # noqa: E402
from engine.train.evaluate import evaluate_rasters  # noqa: E402

SAMPLE = ROOT / "resources" / "sample" / "synthetic"
CAL_EXCEPT = " (the decision offset above excepted)"
STAGES = (", stage 1 then SGCAD stage 2 (gated distillation from the default teacher), then stage 2 continued "
          "on 48 further scenes with green (algal, harbour) water and dense crop parcels as dark as forest "
          "(the scene count and statistics below are that last set's), then continued again on that set with "
          "surface reflectance read in the fixed range (two seeds, weights averaged), then the class-prior correction "
          "below")


def to_half(src: Path, dst: Path) -> None:
    with safe_open(str(src), framework="pt") as handle:
        header = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    save_file(tensors, str(dst), metadata=header)
    sidecar = src.with_name(src.name + ".json")
    dst.with_name(dst.name + ".json").write_text(sidecar.read_text())
    load_model(dst)  # the published file must load and fit its configuration


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * float(v):.1f}"


def _metrics_table(metrics: dict, names) -> str:
    rows = [f"| OA | {_pct(metrics.get('oa'))} |", f"| Cohen's Kappa (×100) | {_pct(metrics.get('kappa'))} |",
            f"| mIoU | {_pct(metrics.get('miou'))} |"]
    for name, iou in zip(names, metrics.get("iou", [])):
        rows.append(f"| IoU {name} | {_pct(iou)} |")
    return "| metric | % |\n|---|---|\n" + "\n".join(rows)


def _real_table(kind: str, real: dict) -> str:
    """Zero-shot figures on real scenes (from scripts/eval_zero_shot.py --json)."""
    if not real:
        return "not evaluated"
    if kind == "teacher":
        rows = ["| scene | water IoU of the teacher | Otsu, band as it is | Otsu, 5 x 5 median (co-pol) | "
                "Otsu, 5 x 5 median (VH) | after label-free adaptation |", "|---|---|---|---|---|---|"]
        for name, r in real.get("teacher", {}).items():
            rows.append(f"| {name} | {_pct(r.get('teacher'))} | {_pct(r.get('otsu_raw'))} | {_pct(r.get('otsu_co'))} | "
                        f"{_pct(r.get('otsu_vh'))} | {_pct(r.get('teacher_adapted'))} |")
        return "\n".join(rows)
    student = real.get("student", {})
    rot = student.get("rotterdam", {})
    rows = [f"- SpaceNet 6 Rotterdam (X-band + RGB, all 19 digitised polygons): OA {_pct(rot.get('oa'))} %, "
            f"mIoU {_pct(rot.get('miou'))} %, water IoU {_pct(rot.get('water_iou'))} %."]
    for name, r in student.items():
        if name.startswith("bigearthnet"):
            rows.append(f"- BigEarthNet {name.split('_', 1)[1]} (Sentinel-2 RGB + Sentinel-1 VV): "
                        f"{_pct(r['admissible_share'])} % of pixels in classes its CORINE labels admit "
                        f"({', '.join(r['admissible'])}).")
    held = real.get("heldout")
    if held:
        rows.append(f"- 8 synthetic scenes no model saw (seeds 9300-9307): OA {_pct(held['oa'])} %, mIoU "
                    f"{_pct(held['miou'])} %; 128-px chips cut from them agree with the whole-scene map on "
                    f"{_pct(held['chip_agreement'])} % of pixels.")
    return "\n".join(rows)


def _verdicts(kind: str, real: dict) -> str:
    """Plain sentences computed from the real-scene figures: where the model beats the baseline."""
    if not real:
        return ""
    if kind == "teacher":
        rows = real.get("teacher", {})
        raw = {n: r.get("otsu_raw", 0) for n, r in rows.items()}
        filtered = {n: max(r.get(k) or 0 for k in ("otsu_raw", "otsu_co", "otsu_vh")) for n, r in rows.items()}
        beat = [n for n, r in rows.items() if r.get("teacher", 0) >= filtered[n]]
        lost = [n for n in rows if n not in beat]
        beat_raw = [n for n, r in rows.items() if r.get("teacher", 0) >= raw[n]]
        adapted = [n for n, r in rows.items() if (r.get("teacher_adapted") or 0) >= filtered[n]]
        adapted_raw = [n for n, r in rows.items() if (r.get("teacher_adapted") or 0) >= raw[n]]
        snow = [r["teacher_water_on_land"] for r in real.get("snow", {}).values()]
        def below(key: str, names) -> str:
            both = [f"{n} ({_pct(rows[n].get(key))})" for n in names if (rows[n].get(key) or 0) < raw[n]]
            return f"; below both on {', '.join(both)}" if both else ""

        text = (f"- Zero-shot, the teacher matches or beats Otsu's threshold on the scene's best band on "
                f"{', '.join(beat_raw) or 'no scene'}, and the speckle-filtered (5 x 5 median) Otsu as well on "
                f"{', '.join(beat) or 'no scene'}; it is below the latter on {', '.join(lost) or 'no scene'}"
                f"{below('teacher', lost)}. After the label-free adaptation: {', '.join(adapted_raw) or 'no scene'} "
                f"(band as it is), {', '.join(adapted) or 'no scene'} (5 x 5 median as well)"
                f"{below('teacher_adapted', [n for n in rows if n not in adapted])}.")
        for name in lost:  # a sparse polygon set can reward a map that calls most of the scene water
            r = rows[name]
            if r.get("share_teacher") is not None:
                text += (f"\n- On {name} the teacher calls {_pct(r['share_teacher'])} % of the SAR footprint water, "
                         f"Otsu {_pct(r['share_otsu_co'])} %; label-free adaptation: "
                         f"{r.get('adaptation') or 'not run'}.")
        if snow:
            text += (f"\n- On snow-covered synthetic scenes it calls {100 * min(snow):.0f}-{100 * max(snow):.0f} % of "
                     "the snowy land water: use it with the optical student, or mask snow.")
        return text + "\n"
    shares = [r["admissible_share"] for n, r in real.get("student", {}).items() if n.startswith("bigearthnet")]
    snow = [r["student_water_on_land"] for r in real.get("snow", {}).values()]
    text = ""
    if shares:
        text += (f"- BigEarthNet pairs: {100 * min(shares):.0f}-{100 * max(shares):.0f} % of the pixels fall in "
                 "classes the patch's CORINE labels admit (goal: 80 %); the rest is mostly forest, road or village "
                 "inside farmland (hedgerows, dense pasture read as forest). With surface reflectance read in a fixed "
                 "range, a second training seed moved a share by at most 1.7 points (11 when each chip was stretched "
                 "by its own percentiles). 8-bit clips are still stretched by their own percentiles: give them as "
                 "the whole scene with an area of interest.\n")
    if snow:
        text += f"- Snow-covered synthetic scenes: at most {100 * max(snow):.1f} % of the snowy land is called water.\n"
    text += ("- How this student was chosen among its variants, and what that cost on the synthetic sample scene: "
             "`docs/experiments/zero_shot_real.md`.\n")
    return text


def _optical_rule(meta) -> str:
    cfg = meta.optical_preprocess
    if cfg.normalization == "physical":
        low, high = cfg.reflectance_range
        return (f"; optical surface reflectance (Sentinel-2 L2A, Landsat Collection 2 Level-2, floats 0-1) in the "
                f"fixed range {low:g}-{high:g}, "
                "8-bit and other digital numbers by the raster's own 2-98 % percentiles")
    return "; optical to reflectance-like values, then each scene's own 2-98 % percentiles"


def card(kind: str, path: Path, scene_metrics: dict, real: dict) -> str:
    meta = read_metadata(path)
    names = meta.schema.names if kind == "student" else ("non-water", "water")
    test = meta.metrics.get("test", {})
    sar = meta.sar_normalization.bands[0] if meta.sar_normalization else None
    inputs = (f"optical bands {list(meta.bands.optical_bands)} (RGB) + SAR band {list(meta.bands.sar_bands)}"
              if kind == "student" else f"SAR band {list(meta.bands.sar_bands)} only")
    stats = meta.input_stats.get("sar", {})
    size_mb = path.stat().st_size / 1e6
    averaged = meta.train.get("averaged_from") if meta.train else None
    if averaged and kind == "student":
        weights = (f"\n- **Weights**: the mean of {len(averaged)} runs of the last stage that differ only in their "
                   f"seed ({', '.join(averaged)}), by a rule written down before the second run was scored "
                   "(`docs/experiments/zero_shot_real.md`).")
    elif averaged:
        weights = (f"\n- **Weights**: the mean of {len(averaged)} epochs of one run ({', '.join(averaged)}), "
                   "chosen as a rule before any real-scene evaluation.")
    else:
        weights = ""
    cal = meta.train.get("calibration") if meta.train else None
    if cal:
        left_out = ", ".join(f"{n} {v['threshold']:.2f}" for n, v in cal["leave_one_out"].items())
        weights += (f"\n- **Decision calibration**: water logit offset {cal['logit_offset']:+.3f} folded into the head "
                    f"(the uncalibrated cut {cal['threshold']:.2f} becomes 0.5), chosen on the {cal['labels']} of "
                    f"{', '.join(cal['scenes'])} (`scripts/calibrate_teacher.py`). Chosen with each scene left out: "
                    f"{left_out}. These are the only real pixels the model depends on.")
        if cal.get("reported_only"):
            weights += (f" Scored but not used for the choice (SAR levels not calibrated backscatter): "
                        f"{', '.join(cal['reported_only'])}.")
        earlier = cal.get("earlier")
        if earlier:
            weights += (f" It adds to the offset {earlier['logit_offset']:+.3f} chosen the same way when the teacher "
                        f"read one scale (cut {earlier['threshold']:.2f}).")
    scales = meta.model.get("context_scales") or [1.0]
    if kind == "teacher" and len(scales) > 1:
        listed = ", ".join(f"{s:g}" for s in scales)
        weights += (f"\n- **Context scales**: the network reads its SAR at scales {listed} "
                    "(the finer pass for narrow channels, the 2 x 2 mean for water wider than its view) and averages "
                    "the logits; about 1.25 times the cost of one pass (`TeacherConfig.context_scales`).")
    prior = meta.train.get("prior_correction") if meta.train else None
    if prior:
        offsets = ", ".join(f"{n} {o:+.2f}" for n, o in zip(meta.schema.names, prior["offsets"]))
        weights += (f"\n- **Class-prior correction**: {prior['tau']} x log(class frequency of the {prior['labels']}) "
                    f"folded into the head ({offsets}): the class-balanced losses tilt uncertain pixels towards rare "
                    "classes; tau was chosen on held-out synthetic scenes (`scripts/set_class_prior.py`).")
    optical = _optical_rule(meta) if kind == "student" else ""
    score, key = ("water IoU", "water_iou") if kind == "teacher" else ("mIoU", "miou")
    test_table = (_metrics_table(test, names) if test and not averaged else
                  f"not measured for this file (averaged weights; the validation {score} of the last averaged "
                  f"checkpoint was {_pct(meta.metrics.get('validation', {}).get(key))} %)")
    return f"""# Model card: default {kind} (`{path.name}`)

- **Network**: `{meta.model.get('name')}` with widths {meta.model.get('widths')}
  (configuration in `configs/default_{kind}.json`); weights stored as float16, {size_mb:.1f} MB.{weights}
- **Task**: {'six-class land cover: ' + ', '.join(meta.schema.names) if kind == 'student'
             else 'binary water (SAR-only water expert used as the distillation teacher)'}.
- **Inputs**: {inputs}; any units (detected per file, `docs/inputs.md`). The SAR band should be
  co-polarised (VV or HH): water is darkest there.
- **Normalisation** (input contract {meta.contract_version}): SAR to linear power, Lee 7 x 7, dB,
  then the fixed range [{sar.p_low if sar else 'n/a'}, {sar.p_high if sar else 'n/a'}] dB{optical}.
- **Training data**: {stats.get('scenes', 1)} seeded synthetic scenes written by
  `scripts/make_training_scenes.py` (C-, L- and X-band SAR, single and dual polarisation, 1-5
  looks, 2-20 m pixels, incidence gradients, wind-roughened water, dark land confusers, snow,
  calibration offsets; optical as 8-bit, reflectance x 10000 or 0-1), split first (tiles) then
  cropped to 128 px patches; trained by `scripts/train_default_models.sh`{STAGES if kind == 'student' else ''}.
  Training SAR statistics (dB after the speckle filter, band 1): median {_num(stats, 'p50')},
  2-98 % {_num(stats, 'p2')} to {_num(stats, 'p98')} dB.
- **Engine version**: {meta.engine_version}; created {meta.created}.

## Figures
Held-out test tiles of the training scenes (never seen in training or model selection):

{test_table}

Held-out sample scene `resources/sample/synthetic` (an older generator's scene, another layout):

{_metrics_table(scene_metrics, names) if scene_metrics else 'not evaluated'}

Zero-shot on real scenes (`scripts/eval_zero_shot.py`; no real pixel was used in training;
scored on evaluation polygons or whole Sen1Floods11 chips, where the SAR has data):

{_real_table(kind, real)}

## Where it works and where it does not
{_verdicts(kind, real)}- It was trained on **synthetic** scenes whose SAR levels and speckle were checked against real
  Sentinel-1 statistics (`docs/data.md`), never on a real pixel{CAL_EXCEPT if cal else ''}. Read the real-scene figures
  above before trusting a map, and **fine-tune on a few polygons you draw** (`docs/finetune.md`)
  where it is wrong; a SAR-only user without labels can adapt the water expert to the scene
  (`sgcad:adaptwater`).
- Wet snow, radar shadow, tarmac and dry sand are as dark as water in SAR: the teacher alone
  calls them water; the student uses the optical image to tell them apart.
"""


def _num(stats: dict, key: str) -> str:
    bands = stats.get("bands") or [{}]
    value = bands[0].get(key)
    return "n/a" if value is None else f"{value:.1f}"


def scene_eval(student: Path, teacher: Path, work: Path, kind: str) -> dict:
    out = work / f"seg_{kind}"
    segment_scene(SAMPLE / "optical.tif", SAMPLE / "sar.tif", student, out, teacher_path=teacher,
                  cfg=InferenceConfig(tile_size=256, overlap=32))
    metrics = evaluate_rasters(out / "classes.tif", SAMPLE / "label.tif")
    if kind == "teacher":
        import numpy as np
        import rasterio

        with rasterio.open(out / "water_probability.tif") as src:
            water = src.read(1)
        with rasterio.open(SAMPLE / "label.tif") as src:
            label = src.read(1)
        valid = (label != 255) & np.isfinite(water)
        matrix = ConfusionMatrix(2)
        matrix.update(torch.from_numpy((water[valid] > 0.5).astype(np.int64)),
                      torch.from_numpy((label[valid] == 3).astype(np.int64)))
        return matrix.compute()
    return metrics


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True, help="teacher run folder")
    parser.add_argument("--student", required=True, help="student run folder (stage 2)")
    parser.add_argument("--out", default=str(ROOT / "resources" / "models"))
    parser.add_argument("--real", default="", help="figures of scripts/eval_zero_shot.py --json on these models")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    targets = {"teacher": out / "sgcad_teacher.safetensors", "student": out / "sgcad_student.safetensors"}
    to_half(Path(args.teacher) / "best.safetensors", targets["teacher"])
    to_half(Path(args.student) / "best.safetensors", targets["student"])
    with tempfile.TemporaryDirectory() as tmp:
        for kind, path in targets.items():
            metrics = scene_eval(targets["student"], targets["teacher"], Path(tmp), kind)
            real = json.loads(Path(args.real).read_text()) if args.real else {}
            (out / f"MODEL_CARD_{kind}.md").write_text(card(kind, path, metrics, real))
    print(json.dumps({k: str(v) for k, v in targets.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
