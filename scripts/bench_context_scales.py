"""What reading the water teacher at two scales costs: the product's SAR water map, one scale vs two.

    .venv/bin/python scripts/bench_context_scales.py [--size 1024] [--repeats 3] [--threads 1]

The bundled teacher's weights are saved twice, read at scale 1 only and at its published scales,
and `engine.inference.sar_only.water_probability` (read, Lee filter, dB, network, blend, write)
runs on one synthetic SAR scene with each, interleaved. Prints the median time of each and their
ratio (the machine's load moves both alike).
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
from engine.inference.bench import synthetic_scene  # noqa: E402
from engine.inference.sar_only import water_probability  # noqa: E402
from engine.models.checkpoint import load_model, save_model  # noqa: E402

TEACHER = ROOT / "resources" / "models" / "sgcad_teacher.safetensors"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sar = Path(synthetic_scene(tmp, args.size)["sar"])
        model, meta = load_model(TEACHER, "teacher")
        published = tuple(model.config.context_scales)
        teachers = {}
        for scales in ((1.0,), published):
            model.set_context_scales(scales)
            meta.model = dict(meta.model, context_scales=list(scales))
            teachers[scales] = save_model(tmp / f"teacher{len(scales)}.safetensors", model, meta)
        times = {scales: [] for scales in teachers}
        cfg = InferenceConfig(threads=args.threads, backend="torch")
        for k in range(args.repeats + 1):  # the first round warms caches and is not counted
            for scales, path in teachers.items():
                start = time.perf_counter()
                water_probability(sar, path, tmp / f"w{k}_{len(scales)}.tif", cfg=cfg)
                if k:
                    times[scales].append(time.perf_counter() - start)
    one, two = (statistics.median(times[s]) for s in teachers)
    print(f"{args.size}² scene, {args.threads} thread(s), median of {args.repeats}: scales (1,) {one:.2f} s, "
          f"scales {published} {two:.2f} s, ratio {two / one:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
