"""Print the figures of docs/inputs.md: unit detection on real rasters, and map agreement when
the same scene is given in every optical and SAR unit.

    .venv/bin/python scripts/measure_input_contract.py [--model resources/models/sgcad_student.safetensors]

Detection: every real SAR raster in shared/data (dB) is also written as linear power and as
amplitude, with and without its band names; each copy is detected and compared with the truth.
Agreement: the synthetic sample, Rotterdam (HH) and a BigEarthNet pair are written in the three
optical units x three SAR units and segmented. Printed: the least share of valid pixels whose
class equals the (uint8, linear) map among the three 8-bit maps; the same among the six surface
reflectance maps (uint16 x 10000 and float 0-1, against the (reflectance10000, linear) map); and
over all nine, which for a model reading reflectance in a fixed range and 8-bit by its own
percentiles measures how far the scene's own stretch is from that range (docs/inputs.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # appended: a test importing this script keeps its own sys.path order
    sys.path.append(str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "engine"))

from test_input_contract import _agreement, _agreements, _maps, unit_variants  # noqa: E402

from engine.inputs.units import detect_sar_units  # noqa: E402
from engine.raster.stack import stack_bands  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def detection(tmp: Path) -> None:
    files = [p for p in sorted(SHARED.rglob("*.tif")) if "S1Hand" in p.name or p.stem.endswith(("_VV", "_VH"))
             or "camargue" in str(p) or p.name == "sar_masked.tif"]
    right = total = unsure = 0
    misses = []
    for path in files:
        with rasterio.open(path) as src:
            profile, data, nodata, names = src.profile, src.read().astype("float32"), src.nodata, src.descriptions
        if nodata is not None and not np.isnan(nodata):
            data[data == nodata] = np.nan
        profile.update(dtype="float32", nodata=float("nan"))
        for truth, arr in (("db", data), ("linear", 10 ** (data / 10)), ("amplitude", 10 ** (data / 20))):
            for named in (True, False):
                out = tmp / (f"{path.stem}_{truth}.tif" if named else f"x_{truth}.tif")
                with rasterio.open(out, "w", **profile) as dst:
                    dst.write(arr)
                    for i, name in enumerate(names if named else []):
                        if name:
                            dst.set_band_description(i + 1, name)
                for bands in ([1],) if profile["count"] == 1 else ([1], [2], list(range(1, profile["count"] + 1))):
                    decision = detect_sar_units(out, bands)
                    total += 1
                    right += decision.units == truth
                    unsure += decision.unsure
                    if decision.units != truth:
                        misses.append(f"{path.name} bands {bands} {truth} (names {named}) -> {decision.units}"
                                      f"{' (reported unsure)' if decision.unsure else ''}")
    print(f"SAR units detected right: {right}/{total}; reported unsure: {unsure}")
    for line in misses:
        print("  miss:", line)


def agreement(tmp: Path, model: Path) -> None:
    s2 = next((SHARED / "bigearthnet").rglob("S2A_MSIL2A_20170613T101031_87_48"))
    stack_bands([(next(s2.glob(f"*_{b}.tif")), 1) for b in ("B04", "B03", "B02")], tmp / "s2_rgb.tif")
    with rasterio.open(ROOT / "resources/sample/rotterdam/sar_masked.tif") as src:
        profile, hh = src.profile, src.read(1)
    profile.update(count=1)
    with rasterio.open(tmp / "hh.tif", "w", **profile) as dst:
        dst.write(hh[None])
    pairs = {
        "synthetic sample": (ROOT / "resources/sample/synthetic/optical.tif",
                             ROOT / "resources/sample/synthetic/sar.tif", True, False),
        "Rotterdam (RGB + HH)": (ROOT / "resources/sample/rotterdam/rgb_unmasked.tif", tmp / "hh.tif", True, True),
        "BigEarthNet 87_48 (B4 B3 B2 + VV)": (tmp / "s2_rgb.tif",
                                              next((SHARED / "bigearthnet").rglob("*87_48_VV.tif")), False, True),
    }
    for name, (optical, sar, is_uint8, is_db) in pairs.items():
        paths = unit_variants(tmp / name.split()[0], optical, sar, is_uint8, is_db)
        maps = _maps(paths, model, None, tmp / f"maps-{name.split()[0]}", sar_bands=[1])
        eight, reflectance = _agreements(maps)
        print(f"{name}: least agreement among 8-bit maps {100 * eight:.2f} %, among reflectance maps "
              f"{100 * reflectance:.2f} %, over all nine {100 * _agreement(maps):.2f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "resources/models/sgcad_student.safetensors"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        detection(Path(tmp))
        agreement(Path(tmp), Path(args.model))


if __name__ == "__main__":
    main()
