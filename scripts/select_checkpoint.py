"""Choose a teacher checkpoint on real validation polygons, never on the evaluation sets.

    .venv/bin/python scripts/select_checkpoint.py MODEL [MODEL ...]

Synthetic validation tiles do not say which epoch transfers best to real SAR, and the real
evaluation sets must stay untouched. The training splits of the project's real label sets
(resources/labels: the Sen1Floods11 left halves, Camargue and lower Rhone training polygons; the
Rotterdam training polygons) serve as validation: for each model, water-vs-rest balanced accuracy
on their pixels, per scene and in the mean. Prints one JSON line per model and the best one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # appended: a test importing this script keeps its own sys.path order
    sys.path.append(str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_finetune_real import scenes, teacher_water  # noqa: E402

from engine.config import ClassSchema  # noqa: E402
from engine.raster.grid import grid_of  # noqa: E402
from engine.raster.labels import rasterize_labels  # noqa: E402


def balanced_accuracy(pred: np.ndarray, label: np.ndarray) -> float:
    m = label != 255
    water = label[m] == 3
    p = pred[m]
    parts = [float(p[water].mean()) if water.any() else None, float((~p[~water]).mean()) if (~water).any() else None]
    parts = [x for x in parts if x is not None]
    return float(np.mean(parts)) if parts else float("nan")


def main() -> None:
    rows = {}
    for model in sys.argv[1:]:
        scores = {}
        for name, scene in scenes().items():
            label, _ = rasterize_labels(scene["train"], "class", grid_of(scene["sar"]), ClassSchema())
            scores[name] = balanced_accuracy(teacher_water(Path(model), scene["sar"], None) > 0.5, label)
        scores["mean"] = float(np.mean(list(scores.values())))
        rows[model] = scores
        print(json.dumps({"model": Path(model).name, **{k: round(v, 4) for k, v in scores.items()}}), flush=True)
    best = max(rows, key=lambda m: rows[m]["mean"])
    print(json.dumps({"best": best, "mean": round(rows[best]["mean"], 4)}))


if __name__ == "__main__":
    main()
