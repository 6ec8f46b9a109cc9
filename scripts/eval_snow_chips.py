"""Snow-covered versions of the real BigEarthNet chips: what the student calls water on snow.

No real snowy pair is available to the project, so each real chip (Sentinel-2 B04 B03 B02 + S1
VV) is covered with snow: every pixel's optical becomes 0.55-0.85 reflectance following the
chip's own brightness pattern, except (``with trees``) its darkest 15 %, which keep their real
reflectance (vegetation above the snow). The SAR is kept (dry snow, transparent at C-band) or
made 6 dB darker everywhere (wet snow; harsher than real, where tree canopies stay bright).
Written as reflectance x 10000 (uint16), as Sentinel-2 L2A delivers it. Prints the units
decision and the share of each class; a snowfield without trees is read as digital numbers
(unsure), so it is also run with the units given (``reflectance10000``), as the message advises.

    .venv/bin/python scripts/eval_snow_chips.py [--student resources/models/sgcad_student.safetensors]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_finetune_real import MODELS, SHARED  # noqa: E402

from engine.config import InferenceConfig  # noqa: E402
from engine.inference.pipeline import segment_scene  # noqa: E402
from engine.raster.stack import stack_bands  # noqa: E402

NAMES = ("farmland", "city", "village", "water", "forest", "road")
CHIPS = ("87_48", "36_85", "4_55")


def snow_cover(rgb: np.ndarray, trees: bool) -> np.ndarray:
    """Reflectance x 10000 of the chip under snow (see the module's docstring)."""
    lum = rgb.mean(0)
    t = (lum - lum.min()) / (np.ptp(lum) + 1e-9)
    out = np.repeat((0.55 + 0.3 * t)[None], 3, 0) * np.array([0.97, 0.99, 1.0])[:, None, None] * 10000
    if trees:
        dark = t < np.percentile(t, 15)
        out[:, dark] = rgb[:, dark]
    return np.round(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default=str(MODELS / "sgcad_student.safetensors"))
    args = parser.parse_args()
    ben = SHARED / "bigearthnet"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for chip in CHIPS:
            s2, vv = next(ben.rglob(f"S2A_*_{chip}")), next(ben.rglob(f"*{chip}_VV.tif"))
            stack_bands([(next(s2.glob(f"*_{b}.tif")), 1) for b in ("B04", "B03", "B02")], tmp / f"{chip}.tif")
            with rasterio.open(tmp / f"{chip}.tif") as src:
                profile, rgb = dict(src.profile, dtype="uint16", nodata=0), src.read().astype(np.float64)
            with rasterio.open(vv) as src:
                sar_profile, sar = src.profile, src.read()
            for trees, given in ((True, "auto"), (False, "auto"), (False, "reflectance10000")):
                with rasterio.open(tmp / "snow.tif", "w", **profile) as dst:
                    dst.write(snow_cover(rgb, trees).astype("uint16"))
                for wet_db in (0, 6):
                    with rasterio.open(tmp / "sar.tif", "w", **sar_profile) as dst:
                        dst.write(sar - wet_db)
                    result = segment_scene(tmp / "snow.tif", tmp / "sar.tif", Path(args.student), tmp / "seg",
                                           cfg=InferenceConfig(backend="torch"), overwrite=True, optical_units=given)
                    with rasterio.open(result["outputs"]["classes"]) as src:
                        pred = src.read(1)
                    valid = pred[pred < len(NAMES)]
                    share = np.bincount(valid, minlength=len(NAMES)) / max(valid.size, 1)
                    print(f"{chip} {'with trees' if trees else 'snow only'} {'wet' if wet_db else 'dry'} "
                          f"({result['inputs']['optical_units']}, {given}): "
                          + ", ".join(f"{n} {100 * v:.1f}" for n, v in zip(NAMES, share)), flush=True)


if __name__ == "__main__":
    main()
