"""Publish trained runs as the bundled default models, with a model card each.

Weights are stored as float16 (halves the size; loading casts back to float32), the
metadata header is kept unchanged. The cards report the run's held-out test split and the
held-out sample scene ``resources/sample/synthetic`` (another seed than training).

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
sys.path.insert(0, str(ROOT))

from engine.config import InferenceConfig  # noqa: E402
from engine.inference.pipeline import segment_scene  # noqa: E402
from engine.metrics import ConfusionMatrix  # noqa: E402
from engine.models.checkpoint import load_model, read_metadata  # noqa: E402
from engine.train.evaluate import evaluate_rasters  # noqa: E402

SAMPLE = ROOT / "resources" / "sample" / "synthetic"
STAGES = ", stage 1 then SGCAD stage 2 (gated distillation from the default teacher)"


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


def card(kind: str, path: Path, scene_metrics: dict) -> str:
    meta = read_metadata(path)
    names = meta.schema.names if kind == "student" else ("non-water", "water")
    test = meta.metrics.get("test", {})
    norm = []
    for rec in (meta.optical_normalization, meta.sar_normalization):
        if rec is not None:
            for b in rec.bands:
                norm.append(f"- {rec.modality} band {b.band}: p2 {b.p_low:.4g}, p98 {b.p_high:.4g}, "
                            f"steps {', '.join(b.steps)}")
    inputs = (f"optical bands {list(meta.bands.optical_bands)} (RGB) + SAR band {list(meta.bands.sar_bands)}"
              if kind == "student" else f"SAR band {list(meta.bands.sar_bands)} only")
    size_mb = path.stat().st_size / 1e6
    return f"""# Model card: default {kind} (`{path.name}`)

- **Network**: `{meta.model.get('name')}` with widths {meta.model.get('widths')}
  (configuration in `configs/default_{kind}.json`); weights stored as float16, {size_mb:.1f} MB.
- **Task**: {'six-class land cover: ' + ', '.join(meta.schema.names) if kind == 'student'
             else 'binary water (SAR-only water expert used as the distillation teacher)'}.
- **Inputs**: {inputs}. SAR as linear sigma0 (the segment command detects dB input and converts).
- **Training data**: one seeded synthetic scene (`python -m engine synth --size 1024 --seed 102`),
  1024 × 1024 px at 2 m, split first (tiles) then cropped to 128 px patches; trained by
  `scripts/train_default_models.sh` with the project's own commands{STAGES if kind == 'student' else ''}.
- **Normalisation** (stored in the file, applied automatically):
{chr(10).join(norm)}
- **Engine version**: {meta.engine_version}; created {meta.created}.

## Figures
Held-out test tiles of the training scene (never seen in training or model selection):

{_metrics_table(test, names)}

Held-out sample scene `resources/sample/synthetic` (seed 6, another layout):

{_metrics_table(scene_metrics, names) if scene_metrics else 'not evaluated'}

## Where it works and where it does not
- It was trained on **synthetic** scenes only: plausible structure and sensor physics (speckle,
  water dark in SAR, bright cities, water-like shadows in the optical), but not any real sensor.
  On real imagery treat it as a starting point: **fine-tune it on a few polygons you draw**
  (`sgcad:finetune`, or the dock's Fine-tune tab) before trusting its map.
- Expect roughly 2 m optical RGB and single-channel C- or X-band intensity on the same area.
  Other resolutions, band orders or polarisations work only after fine-tuning.
- The small training scene has few village and water pixels; those classes are the least reliable.
"""


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
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    targets = {"teacher": out / "sgcad_teacher.safetensors", "student": out / "sgcad_student.safetensors"}
    to_half(Path(args.teacher) / "best.safetensors", targets["teacher"])
    to_half(Path(args.student) / "best.safetensors", targets["student"])
    with tempfile.TemporaryDirectory() as tmp:
        for kind, path in targets.items():
            metrics = scene_eval(targets["student"], targets["teacher"], Path(tmp), kind)
            (out / f"MODEL_CARD_{kind}.md").write_text(card(kind, path, metrics))
    print(json.dumps({k: str(v) for k, v in targets.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
