"""Time and peak memory of SAR pretraining (DI3CL) on a 1024² and a 2048² scene, one CPU thread.

    .venv/bin/python scripts/bench_pretrain.py [--steps 300] [--small-steps 60] [--out FILE]

Each scene is pretrained in its own process (peak RSS of that process); the scenes are synthetic
SAR rasters made by ``engine.data.synthetic.generate_scene``. Memory must not grow with the
scene: only the windows of one step are read.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess  # nosec B404
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(sar: str, out: str, steps: int, device: str) -> None:
    sys.path.insert(0, str(ROOT))
    import torch

    torch.set_num_threads(1)
    from engine.config import PretrainConfig
    from engine.pretrain import pretrain_sar

    t0 = time.perf_counter()
    result = pretrain_sar([sar], out, PretrainConfig(steps=steps, device=device), overwrite=True, resume=False)
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": round(seconds, 1), "seconds_per_step": round(seconds / steps, 3),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "first": result["first"], "last": result["last"], "device": device}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--small-steps", type=int, default=60)
    parser.add_argument("--work", default=str(ROOT / "build" / "pretrain_bench"))
    parser.add_argument("--out", default=str(ROOT / "build" / "pretrain_bench" / "bench_pretrain.json"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), args.device)
        return
    sys.path.insert(0, str(ROOT))
    from engine.data.synthetic import generate_scene

    work = Path(args.work)
    rows = {}
    for size, steps in ((1024, args.small_steps), (2048, args.steps)):
        folder = work / f"scene_{size}"
        sar = folder / "sar.tif"
        if not sar.exists():
            sar = Path(generate_scene(folder, size=size, seed=5)["sar"])
        cmd = [sys.executable, __file__, "--device", args.device, "--child", str(sar), str(work / f"run_{size}"),
               str(steps)]
        line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        rows[f"{size}x{size}"] = dict(json.loads(line), steps=steps)
        print(size, rows[f"{size}x{size}"], flush=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
