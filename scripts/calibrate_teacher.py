"""Calibrate the water teacher's decision on the training polygons of the real scenes.

    .venv/bin/python scripts/calibrate_teacher.py --teacher RUN/best.safetensors --out DIR [--json FILE]
        [--context-scales 1,0.5]

For every real scene with water (Sen1Floods11 India and Nigeria, Camargue, lower Rhône,
Rotterdam), the teacher's water probability is scored on the scene's training labels only: the
left half of a Sen1Floods11 hand label, the training polygons of the others
(``resources/labels/*_train.gpkg``, ``labels_digitised.gpkg``; evaluation polygons are never
read here) at thresholds 0.10-0.60. The threshold with the best mean IoU over the scenes whose
SAR is calibrated backscatter is folded into the head (:mod:`engine.water.calibration`); Rotterdam
(airborne X-band whose levels are not calibrated sigma0, docs/data.md) is scored and reported but
takes no part in the choice: two teachers whose maps found some of its water were pulled to cuts
of 0.20-0.25 by its mostly-water training polygons and then called 10-39 % of dry real chips water
(docs/experiments/zero_shot_real.md). The calibrated teacher is written to
``DIR/best.safetensors`` with the choice recorded in its metadata (``train.calibration``).
With ``--context-scales`` the teacher is first set to read its input at those scales
(``TeacherConfig.context_scales``), so the cut is chosen for the model as it will be read; an offset
already in the head stays, and its record is kept as ``calibration.earlier``.
Leave-one-scene-out figures (each scene scored with the threshold chosen on the others) are
printed and stored, so the choice's transfer to an unseen scene is measured, not assumed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # appended: a test importing this script keeps its own sys.path order
    sys.path.append(str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_finetune_real import scenes, teacher_water, water_labels  # noqa: E402

from engine.models.checkpoint import load_model, save_model  # noqa: E402
from engine.water.calibration import (  # noqa: E402
    THRESHOLDS,
    best_threshold,
    fold_water_offset,
    iou_table,
    leave_one_out,
)

LABELS_USED = "training labels (left half of a hand-labelled chip, else the training polygons)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True, help="teacher checkpoint to calibrate")
    parser.add_argument("--out", required=True, help="folder for the calibrated best.safetensors")
    parser.add_argument("--json", default="", help="write the IoU table and leave-one-out figures here")
    parser.add_argument("--context-scales", default="",
                        help="read the teacher at these scales first, e.g. 1,0.5 (TeacherConfig.context_scales)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    teacher = Path(args.teacher)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.context_scales:  # the scales are part of the model: calibrate the model as it will be read
        model, meta = load_model(teacher, "teacher")
        model.set_context_scales([float(v) for v in args.context_scales.split(",")])
        meta.model = dict(meta.model, context_scales=list(model.config.context_scales))
        teacher = save_model(out / "read_at_scales.safetensors", model, meta)
    data, known = {}, scenes()
    for name, scene in known.items():
        truth = water_labels(scene, "train", "left")  # the training labels only
        if not (truth == 1).any():
            continue
        data[name] = (teacher_water(teacher, scene["sar"], None), truth)
    table = iou_table(data)
    # a scene whose SAR levels are not sigma0 is reported but does not choose the cut
    choosing = {name: row for name, row in table.items() if known[name].get("sigma0", True)}
    chosen = best_threshold(choosing)
    loo = leave_one_out(choosing)
    print("threshold " + " ".join(f"{t:5.2f}" for t in THRESHOLDS))
    for name, row in table.items():
        how = (f"left out: t={loo[name]['threshold']:.2f} IoU={loo[name]['iou']:.3f}" if name in loo
               else "reported only (SAR levels not calibrated)")
        print(f"{name:9s} " + " ".join(f"{v:5.3f}" for v in row) + "   " + how)
    model, meta = load_model(teacher, "teacher")
    offset = fold_water_offset(model, chosen)
    record = {"threshold": chosen, "logit_offset": round(offset, 4), "scenes": sorted(choosing),
              "reported_only": sorted(set(table) - set(choosing)), "labels": LABELS_USED, "leave_one_out": loo}
    earlier = (meta.train or {}).get("calibration")
    if earlier:  # an offset already in the head stays there: keep its record beside the new one
        record["earlier"] = earlier
    meta.train = dict(meta.train or {}, calibration=record)
    save_model(out / "best.safetensors", model, meta)
    print(f"chosen threshold {chosen} (logit offset {offset:.3f}) -> {out / 'best.safetensors'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"thresholds": list(THRESHOLDS), "iou": table,
                                               "calibration": record}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
