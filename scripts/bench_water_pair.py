"""Time of a VV + VH water map (the pair) against the VV teacher alone, as a ratio.

    .venv/bin/python scripts/bench_water_pair.py [--sar CHIP] [--repeats 5] [--device cpu]

Both run ``engine.inference.sar_only.water_probability`` on the same raster (default: the
Sen1Floods11 Nigeria chip, 512 x 512, VV and VH named): once with SAR band 1 chosen (the VV
teacher) and once with no band chosen (the pair). The median of ``--repeats`` runs of each,
interleaved so that a busy machine slows both alike, and their ratio are printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from engine.config import InferenceConfig  # noqa: E402
from engine.inference.sar_only import water_probability  # noqa: E402

TEACHER = ROOT / "resources" / "models" / "sgcad_teacher.safetensors"
CHIP = ROOT.parent / "shared" / "data" / "sen1floods11_s1" / "Nigeria_812045_S1Hand.tif"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sar", default=str(CHIP))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    cfg = InferenceConfig(device=args.device)
    times = {"VV teacher": [], "VV + VH pair": []}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats + 1):  # the first round warms up and is not counted
            for name, bands in (("VV teacher", (1,)), ("VV + VH pair", None)):
                t0 = time.perf_counter()
                result = water_probability(args.sar, TEACHER, Path(tmp) / f"{k}.tif", cfg=cfg, sar_bands=bands,
                                           overwrite=True)
                if k:
                    times[name].append(time.perf_counter() - t0)
                else:
                    print(f"{name}: {Path(result['teacher']).name}", file=sys.stderr)
    medians = {name: statistics.median(v) for name, v in times.items()}
    for name, value in medians.items():
        print(f"{name}: median {value:.2f} s over {args.repeats} runs")
    print(f"ratio pair / VV teacher: {medians['VV + VH pair'] / medians['VV teacher']:.2f}")


if __name__ == "__main__":
    main()
