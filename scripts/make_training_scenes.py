"""Write a set of varied synthetic scenes for training the default models.

    .venv/bin/python scripts/make_training_scenes.py --out build/default-models/scenes \
        --count 32 --size 512 --seed 1000

Each scene draws its sensor (C-, L- or X-band), polarisations, looks, pixel size, incidence,
wind, SAR confusers, snow, amount of water and calibration offset from
``engine.data.synthetic.random_scene_options``, and its optical units (8-bit, reflectance x
10000 or reflectance 0-1) here, so the networks learn from every unit the input contract
accepts. ``--max-confusers``, ``--snow`` and ``--s1-share`` set the priors of a set (the
teacher's set keeps dark land rare, as it is in real scenes). Scene ``k`` uses seed
``seed + k``; a finished scene is not written again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # appended: a test importing this script keeps its own sys.path order
    sys.path.append(str(ROOT))

from engine.data.synthetic import generate_scene, random_scene_options  # noqa: E402

OPTICAL_UNITS = ("uint8", "reflectance10000", "reflectance")


def scene_options(
    seed: int,
    max_confusers: float = 1.0,
    snow: float = 0.1,
    s1_share: float = 0.0,
    green_water: float = 0.0,
    dense_crops: float = 0.0,
    water_shapes: float = 0.0,
    polarisations: Optional[Sequence[str]] = None,
    noise_kept: float = 0.0,
) -> Dict[str, Any]:
    """The generator options of scene ``seed`` under a set's priors (the flags of this script)."""
    rng = np.random.default_rng(seed)
    sensors = ["s1"] if s1_share and rng.random() < s1_share else None
    options = random_scene_options(rng, sensors=sensors, polarisations=polarisations)
    # priors of the world the models meet: dark land (wet snow, sand, runways, shadow) is
    # much rarer than open water in real scenes, so a SAR-only expert must not learn that
    # "very dark" is a coin toss
    options["sar_confusers"] = round(float(options["sar_confusers"]) * max_confusers, 3)
    options["snow"] = bool(rng.random() < snow)
    options["optical_units"] = OPTICAL_UNITS[int(rng.integers(len(OPTICAL_UNITS)))]
    extra = np.random.default_rng([seed, 9])  # its own stream: the draws above keep their values
    if green_water and extra.random() < green_water:
        options["green_water"] = round(float(extra.uniform(0.3, 1.0)), 3)
    if dense_crops:
        options["dense_crops"] = round(float(extra.uniform(0.0, dense_crops)), 3)
    shapes = np.random.default_rng([seed, 11])  # and its own again
    if water_shapes and shapes.random() < water_shapes:
        options["water_shapes"] = round(float(shapes.uniform(0.2, 1.0)), 3)
    floor = np.random.default_rng([seed, 13])  # and its own again
    if noise_kept and floor.random() < noise_kept:  # a product without noise removal: NESZ of IW, -27 to -21 dB
        options["noise_kept_db"] = round(float(floor.uniform(-27.0, -21.0)), 2)
    return options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--max-confusers", type=float, default=1.0,
                        help="upper bound of the SAR confuser density (dark land: sand, smooth fields, shadow)")
    parser.add_argument("--snow", type=float, default=0.1, help="share of snow scenes")
    parser.add_argument("--s1-share", type=float, default=0.0,
                        help="share of Sentinel-1 scenes (0: as random_scene_options draws them)")
    parser.add_argument("--green-water", type=float, default=0.0,
                        help="share of scenes whose water is green (algae, harbours; tint drawn in 0.3-1)")
    parser.add_argument("--dense-crops", type=float, default=0.0,
                        help="largest darkening of dense crop parcels towards forest (drawn per scene in 0-this)")
    parser.add_argument("--water-shapes", type=float, default=0.0,
                        help="share of scenes with wide rivers, canals, harbour basins and ponds (density in 0.2-1)")
    parser.add_argument("--noise-kept", type=float, default=0.0,
                        help="share of scenes whose thermal noise is left in (a floor at -27 to -21 dB)")
    parser.add_argument("--polarisations", default="",
                        help="the SAR bands of every scene, e.g. VV,VH (the VV + VH water expert's set, with "
                             "--s1-share 1); default: drawn per sensor")
    args = parser.parse_args()
    pols = tuple(p.strip().upper() for p in args.polarisations.split(",") if p.strip()) or None
    out = Path(args.out)
    summary = []
    for k in range(args.count):
        folder = out / f"scene{k:03d}"
        seed = args.seed + k
        options = scene_options(seed, args.max_confusers, args.snow, args.s1_share, args.green_water, args.dense_crops,
                                args.water_shapes, pols, args.noise_kept)
        if not (folder / "label.tif").is_file():
            generate_scene(folder, size=args.size, seed=seed, write_vector=False, overwrite=True, **options)
        summary.append({"scene": folder.name, "seed": seed, **options})
        print(folder.name, json.dumps(options), flush=True)
    (out / "scenes.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
