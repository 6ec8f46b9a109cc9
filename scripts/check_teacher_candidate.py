"""Judge a new water teacher against the bundled one without reading any evaluation label.

    .venv/bin/python scripts/check_teacher_candidate.py --candidate RUN-cal/best.safetensors
        [--incumbent resources/models/sgcad_teacher.safetensors] [--cache build/teacher-check] [--json FILE]

The project's rule for replacing the bundled water expert (docs/experiments/zero_shot_real.md),
measured on the calibrated candidate and the incumbent alike (about 2 min each on 2 cores):

- **training labels** of the five real scenes (the left half of a Sen1Floods11 hand label, the
  training polygons elsewhere): mean water IoU at least the incumbent's, no scene more than
  1 point lower;
- **held-out synthetic scenes** (seeds 9300-9307, 512 px, drawn with the student set's priors,
  pooled water IoU; and ``resources/sample/synthetic``): each within 1 point;
- **wet snow** (seeds 9100-9102, Sentinel-1 winter scenes): share of land called water no more
  than 2 points higher;
- **dry real SAR** (the three BigEarthNet VV chips, no water in their labels): share called water
  no more than 2 points higher on any chip.

The evaluation labels (Sen1Floods11 right halves, ``*_eval.gpkg``) are scored only after a
candidate has passed or failed, with ``scripts/eval_zero_shot.py``. Prints each figure and the
verdict; exits 0 when the candidate passes, 1 when it does not.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # appended: a test importing this script keeps its own sys.path order
    sys.path.append(str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_finetune_real import iou, scenes, teacher_water, water_labels  # noqa: E402
from make_training_scenes import scene_options  # noqa: E402

from engine.data.synthetic import generate_scene, random_scene_options  # noqa: E402

BUNDLED = ROOT / "resources" / "models" / "sgcad_teacher.safetensors"
SAMPLE = ROOT / "resources" / "sample" / "synthetic"
BIGEARTHNET_S1 = ROOT.parent / "shared" / "data" / "bigearthnet" / "BigEarthNet-S1-Example"
DRY_CHIPS = ("87_48", "36_85", "4_55")
HELD_OUT_SEEDS, SNOW_SEEDS = range(9300, 9308), range(9100, 9103)
WATER = 3


@dataclass(frozen=True)
class TeacherRule:
    """How much worse than the incumbent a candidate may be on each check (percentage points)."""

    max_mean_drop: float = 0.0
    max_scene_drop: float = 1.0
    max_synthetic_drop: float = 1.0
    max_snow_rise: float = 2.0
    max_dry_rise: float = 2.0


def training_scores(teacher: Path) -> Dict[str, float]:
    """Water IoU (%) of the teacher's map on each real scene's training labels."""
    out = {}
    for name, scene in scenes().items():
        truth = water_labels(scene, chip_half="left") if "truth" in scene else water_labels(scene, "train")
        out[name] = 100 * iou(teacher_water(teacher, scene["sar"], None) > 0.5, truth)
    return out


def synthetic_sets(cache: Path) -> Tuple[List[Path], List[Path]]:
    """The held-out and winter scene folders, generated into ``cache`` the first time."""
    held, snow = [], []
    for seed in HELD_OUT_SEEDS:
        folder = cache / f"heldout_{seed}"
        if not (folder / "label.tif").is_file():
            generate_scene(folder, size=512, seed=seed, write_vector=False, overwrite=True,
                           **scene_options(seed, green_water=0.3, dense_crops=1.0))
        held.append(folder)
    for seed in SNOW_SEEDS:
        folder = cache / f"snow_{seed}"
        if not (folder / "label.tif").is_file():
            options = dict(random_scene_options(np.random.default_rng(seed), sensors=["s1"]), snow=True)
            generate_scene(folder, size=384, seed=seed, write_vector=False, overwrite=True, **options)
        snow.append(folder)
    return held, snow


def _label(folder: Path) -> np.ndarray:
    with rasterio.open(folder / "label.tif") as src:
        return src.read(1)


def _water_truth(folder: Path) -> np.ndarray:
    """A synthetic scene's water label: 1 water, 0 not, 255 not scored."""
    label = _label(folder)
    return np.where(label == 255, 255, (label == WATER).astype(np.int64))


def measure(teacher: Path, cache: Path) -> dict:
    """Every figure the rule reads, for one teacher."""
    held, snow = synthetic_sets(cache)
    inter = union = 0
    for folder in held:  # pooled over the scenes: intersection and union summed
        truth, water = _water_truth(folder), teacher_water(teacher, folder / "sar.tif", None) > 0.5
        scored = truth != 255
        inter += int((water & (truth == 1) & scored).sum())
        union += int(((water | (truth == 1)) & scored).sum())
    sample = 100 * iou(teacher_water(teacher, SAMPLE / "sar.tif", None) > 0.5, _water_truth(SAMPLE))
    snow_land = {}
    for folder in snow:
        label = _label(folder)
        land = (label != 255) & (label != WATER)
        snow_land[folder.name] = 100 * float((teacher_water(teacher, folder / "sar.tif", None) > 0.5)[land].mean())
    dry = {}
    for chip in DRY_CHIPS:
        vv = next(BIGEARTHNET_S1.glob(f"*_{chip}/*_VV.tif"))
        dry[chip] = 100 * float((teacher_water(teacher, vv, None) > 0.5).mean())
    return {"training": training_scores(teacher), "synthetic_pooled": 100 * inter / max(union, 1),
            "sample": sample, "snow_land_called_water": snow_land, "dry_called_water": dry}


def verdict(candidate: dict, incumbent: dict, rule: TeacherRule = TeacherRule()) -> Tuple[bool, List[str]]:
    """Whether ``candidate`` may replace ``incumbent``, and every reason it may not."""
    why = []
    mean_c, mean_i = np.mean(list(candidate["training"].values())), np.mean(list(incumbent["training"].values()))
    if mean_c < mean_i - rule.max_mean_drop:
        why.append(f"training-label mean {mean_c:.1f} < {mean_i:.1f}")
    for name, value in candidate["training"].items():
        if value < incumbent["training"][name] - rule.max_scene_drop:
            why.append(f"training labels of {name}: {value:.1f} vs {incumbent['training'][name]:.1f}")
    for key in ("synthetic_pooled", "sample"):
        if candidate[key] < incumbent[key] - rule.max_synthetic_drop:
            why.append(f"held-out synthetic {key}: {candidate[key]:.1f} vs {incumbent[key]:.1f}")
    for key, limit in (("snow_land_called_water", rule.max_snow_rise), ("dry_called_water", rule.max_dry_rise)):
        for name, value in candidate[key].items():
            if value > incumbent[key][name] + limit:
                why.append(f"{key} on {name}: {value:.1f} % vs {incumbent[key][name]:.1f} %")
    return not why, why


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", required=True, type=Path)
    parser.add_argument("--incumbent", type=Path, default=BUNDLED)
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "teacher-check")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures = {}
    for role, path in (("incumbent", args.incumbent), ("candidate", args.candidate)):
        figures[role] = measure(path, args.cache)
        f = figures[role]
        print(f"{role}: {path}")
        print("  training labels " + " / ".join(f"{k} {v:.1f}" for k, v in f["training"].items())
              + f" (mean {np.mean(list(f['training'].values())):.1f})")
        print(f"  held-out synthetic pooled {f['synthetic_pooled']:.1f}, sample {f['sample']:.1f}")
        print("  wet snow land called water " + " / ".join(f"{v:.1f}" for v in f["snow_land_called_water"].values()))
        print("  dry BigEarthNet called water " + " / ".join(f"{v:.1f}" for v in f["dry_called_water"].values()))
    passed, why = verdict(figures["candidate"], figures["incumbent"])
    print("verdict: " + ("passes" if passed else "fails: " + "; ".join(why)))
    if args.json:
        args.json.write_text(json.dumps({**figures, "rule": asdict(TeacherRule()), "passes": passed, "why": why},
                                        indent=1))
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
