"""Write a copy of a student whose head carries a class-prior correction (logit adjustment).

The prior is the class frequency of the label rasters of the student's training scenes; the
offsets ``tau * log(prior)`` are folded into the head's bias and recorded in the metadata
(``train.prior_correction``). Nothing is trained. ``tau`` for the bundled student was chosen on
held-out synthetic scenes (docs/experiments/zero_shot_real.md).

    .venv/bin/python scripts/set_class_prior.py MODEL OUT --labels SCENES_DIR [--tau 0.5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from engine.models.checkpoint import load_model, save_model  # noqa: E402
from engine.models.prior import fold_logit_adjustment, label_prior, logit_adjustment  # noqa: E402


def label_histograms(paths, num_classes: int):
    """Pixel counts per class of each label raster, read block by block."""
    for path in paths:
        with rasterio.open(path) as src:
            hist = np.zeros(num_classes, dtype=np.int64)
            for _, window in src.block_windows(1):
                values = src.read(1, window=window).ravel()
                hist += np.bincount(values[values < num_classes].astype(np.int64), minlength=num_classes)
            yield hist


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--labels", required=True, help="folder of training scenes (*/label.tif)")
    parser.add_argument("--tau", type=float, default=0.5, help="0: balanced decisions, 1: the training prior")
    args = parser.parse_args(argv)
    model, meta = load_model(args.model, "student")
    if (meta.train or {}).get("prior_correction"):
        sys.exit(f"{args.model} already carries a prior correction: start from the uncorrected model")
    paths = sorted(Path(args.labels).glob("*/label.tif"))
    if not paths:
        sys.exit(f"no */label.tif under {args.labels}")
    n = meta.schema.num_classes
    prior = label_prior(label_histograms(paths, n), n)
    offsets = logit_adjustment(prior, args.tau)
    fold_logit_adjustment(model, offsets)
    meta.train = dict(meta.train or {}, prior_correction={
        "tau": args.tau, "prior": [round(float(p), 5) for p in prior],
        # unrounded: removing the correction before training subtracts exactly what was folded
        "offsets": [float(o) for o in offsets], "labels": f"{len(paths)} training scenes' label rasters"})
    save_model(args.out, model.float(), meta, overwrite=False)
    print(f"{args.out}: tau {args.tau}, prior "
          + ", ".join(f"{c} {100 * p:.1f} %" for c, p in zip(meta.schema.names, prior)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
