"""Would a half-resolution teacher keep its accuracy? Water IoU on real scenes at full and half resolution.

    .venv/bin/python scripts/measure_teacher_resolution.py [--teacher PATH]

The bundled teacher runs on each real SAR scene with hand labels or evaluation polygons
(Sen1Floods11 India and Nigeria, Camargue, lower Rhône) once on the preprocessed SAR and once on
its 2 x 2 mean, the probability upsampled back (bilinear). Prints water IoU of both, the share of
pixels whose water / non-water answer changes, and the time ratio (one thread).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # appended: a test importing this script keeps its own sys.path order
    sys.path.append(str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_zero_shot import MODELS, iou, scenes, water_labels  # noqa: E402

from engine.inputs.contract import InputRecipe, resolve_inputs  # noqa: E402
from engine.inputs.reader import PairReader  # noqa: E402
from engine.models.checkpoint import load_model  # noqa: E402
from engine.preprocess.nodata import fill_sar_nodata  # noqa: E402
from engine.raster.grid import grid_of  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=str(MODELS / "sgcad_teacher.safetensors"))
    args = parser.parse_args(argv)
    import torch
    import torch.nn.functional as F  # noqa: N812

    torch.set_num_threads(1)
    teacher, meta = load_model(args.teacher, "teacher")
    teacher.eval()
    print("scene     full   half   answer changed   time half/full")
    for name in ("india", "nigeria", "camargue", "rhone"):
        scene = scenes()[name]
        truth = water_labels(scene)
        resolved = resolve_inputs(InputRecipe.of(meta), None, scene["sar"])
        grid = grid_of(scene["sar"])
        reader = PairReader(None, scene["sar"], grid, (), resolved.bands.sar_bands, [resolved.preprocessor])
        x = torch.from_numpy(fill_sar_nodata(reader.read(0, 0, grid.width, grid.height).sar[0])[None])
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (-w) % 64, 0, (-h) % 64), mode="replicate")  # both runs see whole 32 px cells
        with torch.no_grad():
            t0 = time.perf_counter()
            full = torch.softmax(teacher(x), 1)[0, 1, :h, :w].numpy()
            t1 = time.perf_counter()
            small = torch.softmax(teacher(F.avg_pool2d(x, 2)), 1)[:, 1:2]
            half = F.interpolate(small, scale_factor=2, mode="bilinear", align_corners=False)[0, 0, :h, :w].numpy()
            t2 = time.perf_counter()
        changed = float(((full > 0.5) != (half > 0.5)).mean())
        print(f"{name:9s} {iou(full > 0.5, truth):.3f}  {iou(half > 0.5, truth):.3f}  {changed:14.3f}"
              f"   {(t2 - t1) / (t1 - t0):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
