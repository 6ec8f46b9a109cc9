"""Write a copy of a student whose optical input is read by another stretch rule.

The weights are kept; only the stored optical normalisation changes (``physical``: surface
reflectance in the fixed ``reflectance_range``, 8-bit and other numbers by their own
percentiles; ``scene``: every raster by its own percentiles). A model moved to another rule
must be trained further under it (``python -m engine distill --student OUT``) before use: the
network has learned the values its old rule produced.

    .venv/bin/python scripts/set_optical_stretch.py MODEL OUT [--rule physical] [--range 0 0.35]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from engine.config import OpticalPreprocessConfig  # noqa: E402
from engine.models.checkpoint import load_model, save_model  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--rule", choices=("physical", "scene"), default="physical")
    parser.add_argument("--range", nargs=2, type=float, metavar=("LOW", "HIGH"),
                        default=OpticalPreprocessConfig.reflectance_range, help="reflectance range of 'physical'")
    args = parser.parse_args(argv)
    model, meta = load_model(args.model, "student")
    meta.optical_preprocess = dataclasses.replace(
        meta.optical_preprocess, normalization=args.rule, reflectance_range=tuple(args.range)
    )
    save_model(args.out, model.float(), meta, overwrite=False)
    print(f"{args.out}: optical stretch {args.rule} {tuple(args.range) if args.rule == 'physical' else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
