"""Measure the label-free SAR water mapper (``engine.water``) on real Sentinel-1 scenes.

On the two hand-labelled Sen1Floods11 chips (India_900498, Nigeria_812045; VV and VH, dB) it
compares water IoU of plain Otsu on the raw scene histogram, Otsu after the 5 x 5 median,
the split-based threshold, and split-based + region growing, and scores the pseudo-labels
(precision / recall / coverage on their confident pixels). On the three Camargue VV scenes
(no labels) it reports thresholds and water fractions. Usage::

    .venv/bin/python scripts/eval_water_threshold.py --docs docs/experiments

writes ``water_threshold.md`` there (``--json PATH`` also writes every figure as JSON); about 30 s.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # appended: a test importing this script keeps its own sys.path order
    sys.path.append(str(ROOT))

from engine.files import atomic_write_bytes  # noqa: E402
from engine.raster.io import read_bands  # noqa: E402
from engine.water.pseudo_labels import pseudo_labels_array  # noqa: E402
from engine.water.source import smooth_db  # noqa: E402
from engine.water.threshold import WaterThresholdConfig, map_water, map_water_file  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
CHIPS = ("India_900498", "Nigeria_812045")
BANDS = {"VV": 1, "VH": 2}


def iou(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> float:
    """Water IoU over ``valid`` pixels (``pred``/``truth``: True or 1 = water)."""
    p, t = (pred == 1) & valid, (truth == 1) & valid
    return float((p & t).sum() / max((p | t).sum(), 1))


def evaluate_chip(chip: str, band: str) -> Dict[str, object]:
    """All figures of one chip and polarisation."""
    folder = DATA / "sen1floods11_s1"
    db = read_bands(folder / f"{chip}_S1Hand.tif", [BANDS[band]])[0]
    truth = read_bands(folder / f"{chip}_LabelHand.tif", [1])[0]  # -1 has no nodata tag: keep it
    valid = np.isfinite(db) & np.isfinite(truth) & (truth >= 0)
    right = np.zeros_like(valid)
    right[:, db.shape[1] // 2 :] = True  # the evaluation half of resources/labels' protocol
    cfg = WaterThresholdConfig()
    raw, raw_result = map_water(db, WaterThresholdConfig(smoothing="none"), grow=False)
    smoothed = smooth_db(db, cfg.smoothing, cfg.smoothing_size)
    split, result = map_water(db, cfg, grow=False)
    grown, _ = map_water(db, cfg, grow=True)
    label, _, report = pseudo_labels_array(db, cfg)
    with np.errstate(invalid="ignore"):
        otsu_raw, otsu_smooth = db < raw_result.otsu, smoothed < result.otsu
    pw, pn = (label == 1) & valid, (label == 0) & valid
    return {
        "chip": chip,
        "band": band,
        "water_fraction_label": float((truth[valid] == 1).mean()),
        "threshold": result.to_dict(),
        "otsu_raw_db": raw_result.otsu,
        "iou": {
            "otsu_raw": iou(otsu_raw, truth, valid),
            "otsu_median5": iou(otsu_smooth, truth, valid),
            "split": iou(split, truth, valid),
            "split_grow": iou(grown, truth, valid),
            "otsu_raw_right_half": iou(otsu_raw, truth, valid & right),
            "split_grow_right_half": iou(grown, truth, valid & right),
        },
        "pseudo_labels": {
            "water_precision": float((truth[pw] == 1).mean()),
            "water_recall": float(pw[truth == 1].mean()),
            "non_water_precision": float((truth[pn] == 0).mean()),
            "non_water_recall": float(pn[truth == 0].mean()),
            "coverage": float(((label != 255) & valid).sum() / valid.sum()),
            "pixels": report["pixels"],
        },
    }


def evaluate_quadrants(chip: str, band: str) -> list:
    """IoU per 256-px quadrant: smaller scenes with water fractions from 12 % to 88 %."""
    folder = DATA / "sen1floods11_s1"
    db_all = read_bands(folder / f"{chip}_S1Hand.tif", [BANDS[band]])[0]
    truth_all = read_bands(folder / f"{chip}_LabelHand.tif", [1])[0]
    out = []
    for r0 in (0, 256):
        for c0 in (0, 256):
            db, truth = db_all[r0 : r0 + 256, c0 : c0 + 256], truth_all[r0 : r0 + 256, c0 : c0 + 256]
            valid = np.isfinite(db) & (truth >= 0)
            cfg = WaterThresholdConfig()
            _, raw_result = map_water(db, WaterThresholdConfig(smoothing="none"), grow=False)
            split, result = map_water(db, cfg, grow=False)
            grown, _ = map_water(db, cfg, grow=True)
            with np.errstate(invalid="ignore"):
                otsu_raw = db < raw_result.otsu
                otsu_smooth = smooth_db(db, cfg.smoothing, cfg.smoothing_size) < result.otsu
            out.append(
                {
                    "chip": chip,
                    "band": band,
                    "quadrant": f"rows {r0}-{r0 + 255}, cols {c0}-{c0 + 255}",
                    "water_fraction_label": float((truth[valid] == 1).mean()),
                    "method": result.method,
                    "iou": {
                        "otsu_raw": iou(otsu_raw, truth, valid),
                        "otsu_median5": iou(otsu_smooth, truth, valid),
                        "split": iou(split, truth, valid),
                        "split_grow": iou(grown, truth, valid),
                    },
                }
            )
    return out


def camargue() -> list:
    """Threshold and water fraction (split-based + growing) of each Camargue VV scene."""
    out = []
    for path in sorted((DATA / "sentinel1_camargue").glob("*_db.tif")):
        grown = map_water_file(path, 1, grow=True)
        plain = map_water_file(path, 1, grow=False)
        out.append(
            {
                "scene": path.name,
                "threshold": grown["result"],
                "water_fraction_split": plain["water_fraction"],
                "water_fraction_split_grow": grown["water_fraction"],
            }
        )
    return out


def _pct(v: float) -> str:
    return f"{100 * v:.1f}"


def findings(chips: list, quadrants: list, scenes: list) -> list:
    """What the figures say, computed from them so the text cannot drift from the tables."""
    keys = ("otsu_raw", "otsu_median5", "split", "split_grow")
    q = {k: 100 * float(np.mean([x["iou"][k] for x in quadrants])) for k in keys}
    gain = {
        chip: [100 * (c["iou"]["split_grow"] - c["iou"]["split"]) for c in chips if c["chip"] == chip] for chip in CHIPS
    }
    precision = [100 * c["pseudo_labels"]["water_precision"] for c in chips]
    coverage = [100 * c["pseudo_labels"]["coverage"] for c in chips]
    fallbacks = sorted({f"{x['chip']} {x['band']} {x['quadrant']}" for x in quadrants if x["method"] != "split"})
    fractions = [100 * s["water_fraction_split"] for s in scenes]
    span = lambda v: f"{min(v):+.1f} to {max(v):+.1f}"  # noqa: E731
    return [
        "## What the figures say",
        "",
        f"- Speckle smoothing does most of the work: on the 16 quadrant cases, global Otsu goes from "
        f"{q['otsu_raw']:.1f} to {q['otsu_median5']:.1f} mean IoU with the 5 x 5 median alone.",
        f"- The split-based threshold adds little where water and land are balanced (mean {q['split']:.1f} "
        "against the smoothed Otsu); it helps where one class dominates the scene (the Nigeria quadrants "
        "with 83-88 % water) and is slightly worse on the India chip.",
        f"- Region growing changes IoU by {span(gain['India_900498'])} points on India and "
        f"{span(gain['Nigeria_812045'])} on Nigeria: the Nigeria hand label counts as water many pixels "
        "brighter than the open-water mode (flooded vegetation or margins), which growing recovers; the India "
        f"label is tight, so the extra pixels are false alarms. Quadrant mean {q['split_grow']:.1f}.",
        f"- Pseudo-label water precision is {min(precision):.1f}-{max(precision):.1f} % with "
        f"{min(coverage):.1f}-{max(coverage):.1f} % of the pixels labelled; the weakest is India VH, "
        "whose land class has a dark tail reaching into the water mode.",
        f"- Fallback seen: {', '.join(fallbacks) or 'none'} (12 % water: too few tiles are bimodal), "
        "mapped with the global Otsu threshold of the smoothed scene.",
        f"- Camargue: {min(fractions):.1f}-{max(fractions):.1f} % water without growing, unverified "
        "(no labels); growing adds most on the lower Rhone scene, where dark marsh and fields touch the river.",
        "- Streaming: the histograms add up over windows and the region growing labels components per window "
        "and merges them across window borders, so results do not depend on the window size (tested); the "
        "raster is read three times.",
    ]


def markdown(chips: list, quadrants: list, scenes: list) -> str:
    """The experiment page."""
    cfg = WaterThresholdConfig()
    lines = [
        "# Label-free SAR water mapping on real Sentinel-1 scenes",
        "",
        "Generated by `scripts/eval_water_threshold.py` (do not edit by hand; `--json` dumps every figure).",
        "Method: `engine/water/threshold.py` (docstring). Defaults: "
        f"{cfg.smoothing} {cfg.smoothing_size}x{cfg.smoothing_size} smoothing in dB, {cfg.tile_size}-px tiles, "
        f"Ashman's D >= {cfg.min_ashman_d}, each mode >= {cfg.min_class_fraction:.0%} of a tile, "
        f"Kittler-Illingworth per tile, median over tiles, >= {cfg.min_tiles} tiles (failing tiles split into "
        f"quarters down to {cfg.min_tile_size} px when fewer qualify; the chosen tiles must be bimodal together); "
        "seeds below "
        f"t - {cfg.seed_k} water spread, growing below t + {cfg.grow_k} land spread (8-connected).",
        "Nothing was tuned on the labels except choosing these defaults among a handful of settings",
        "(smoothing 3/5/Lee, tile 32/64/128, KI/Otsu, growth margins), so read small differences as noise.",
        "",
        *findings(chips, quadrants, scenes),
        "",
        "## Sen1Floods11 hand-labelled chips: water IoU (%)",
        "",
        "Whole chip, pixels with a label (0/1) and a SAR value. 'right half' is the evaluation half of the",
        "protocol in `resources/labels/README.md`.",
        "",
        "| chip | band | water in label | Otsu (raw) | Otsu (median 5) | split-based | split + growing "
        "| Otsu, right half | split + growing, right half | threshold (dB) | tiles kept |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in chips:
        i, t = c["iou"], c["threshold"]
        lines.append(
            f"| {c['chip']} | {c['band']} | {_pct(c['water_fraction_label'])} | {_pct(i['otsu_raw'])} "
            f"| {_pct(i['otsu_median5'])} | {_pct(i['split'])} | {_pct(i['split_grow'])} "
            f"| {_pct(i['otsu_raw_right_half'])} | {_pct(i['split_grow_right_half'])} "
            f"| {t['threshold_db']:.2f} (Otsu raw {c['otsu_raw_db']:.2f}) | {t['tiles_selected']}/{t['tiles_valid']} |"
        )
    keys = ("otsu_raw", "otsu_median5", "split", "split_grow")
    means = {k: float(np.mean([q["iou"][k] for q in quadrants])) for k in keys}
    lines += [
        "",
        "### The same on each 256-px quadrant (smaller scenes, water 12-88 %)",
        "",
        "| chip | band | quadrant | water in label | Otsu (raw) | Otsu (median 5) | split-based "
        "| split + growing | method |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for q in quadrants:
        i = q["iou"]
        lines.append(
            f"| {q['chip']} | {q['band']} | {q['quadrant']} | {_pct(q['water_fraction_label'])} "
            + "".join(f"| {_pct(i[k])} " for k in keys)
            + f"| {q['method']} |"
        )
    lines.append("| mean | | | | " + "".join(f"{_pct(means[k])} | " for k in keys) + " |")
    lines += [
        "",
        "## Pseudo-labels (`engine/water/pseudo_labels.py`, defaults) against the hand label (%)",
        "",
        "Precision: share of the pixels given that pseudo-label that the hand label agrees with. Recall: share",
        "of the hand label's pixels of that class that got the pseudo-label. Coverage: labelled (not 255) share",
        "of the valid pixels.",
        "",
        "| chip | band | water precision | water recall | non-water precision | non-water recall | coverage |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in chips:
        p = c["pseudo_labels"]
        lines.append(
            f"| {c['chip']} | {c['band']} | {_pct(p['water_precision'])} | {_pct(p['water_recall'])} "
            f"| {_pct(p['non_water_precision'])} | {_pct(p['non_water_recall'])} | {_pct(p['coverage'])} |"
        )
    lines += [
        "",
        "## Camargue Sentinel-1 VV scenes (20 m, no labels)",
        "",
        "| scene | method | threshold (dB) | global Otsu (dB) | seed / grow (dB) | water / land mode (dB) "
        "| tiles kept | water % split | water % split + growing |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in scenes:
        t = s["threshold"]
        m = t["mixture"]
        lines.append(
            f"| {s['scene']} | {t['method']} | {t['threshold_db']:.2f} | {t['global_otsu_db']:.2f} "
            f"| {t['seed_threshold_db']:.2f} / {t['grow_threshold_db']:.2f} "
            f"| {m['means'][0]:.1f} ± {m['stds'][0]:.1f} / {m['means'][1]:.1f} ± {m['stds'][1]:.1f} "
            f"| {t['tiles_selected']}/{t['tiles_valid']} | {_pct(s['water_fraction_split'])} "
            f"| {_pct(s['water_fraction_split_grow'])} |"
        )
    lines += [
        "",
        "Reproduce:",
        "",
        "```sh",
        ".venv/bin/python scripts/eval_water_threshold.py --docs docs/experiments",
        "```",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "experiments", help="output folder")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA}: the shared sample data is missing")
    chips = [evaluate_chip(chip, band) for chip in CHIPS for band in BANDS]
    quadrants = [q for chip in CHIPS for band in BANDS for q in evaluate_quadrants(chip, band)]
    scenes = camargue()
    if args.json:
        atomic_write_bytes(
            args.json, json.dumps({"chips": chips, "quadrants": quadrants, "camargue": scenes}, indent=1).encode()
        )
    atomic_write_bytes(args.docs / "water_threshold.md", markdown(chips, quadrants, scenes).encode())
    print(markdown(chips, quadrants, scenes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
