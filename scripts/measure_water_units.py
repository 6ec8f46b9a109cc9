"""Water IoU of ``engine water`` on real Sentinel-1 chips written in the units users have (docs/inputs.md).

    .venv/bin/python scripts/measure_water_units.py [--heldout FOLDER]

Each Sen1Floods11 chip (VV, VH in dB with a hand label; the two in ``../shared/data`` and, with
``--heldout``, every ``*_S1Hand.tif`` of FOLDER with its ``*_LabelHand.tif``) is written eight ways:
dB with and without band names, linear power with nodata 0 and with 0 undeclared, amplitude, VH before VV, uncalibrated
uint16 amplitude numbers and VV alone. Each copy is mapped by the product's command line with the
bundled models, and its water map scored against the hand label (water IoU, %, labelled pixels).
"""

from __future__ import annotations

import argparse
import json
import subprocess  # nosec B404
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "sen1floods11_s1"
UNCALIBRATED_GAIN = 473.0
"""Amplitude numbers of an uncalibrated product: sqrt(power) times a gain the file does not state."""


def variants(db: np.ndarray) -> Dict[str, Tuple[np.ndarray, List[Optional[str]], Optional[float], str]]:
    """Name -> (bands, band names, nodata, dtype) of the chip ``db`` (VV, VH in dB) in each writing."""
    valid = np.isfinite(db).all(0)
    power = np.where(valid, 10 ** (db / 10), 0.0)
    numbers = np.where(valid, np.clip(np.sqrt(power) * UNCALIBRATED_GAIN, 1, 65535), 0)
    return {
        "dB, named VV and VH": (db, ["VV", "VH"], None, "float32"),
        "dB, unnamed": (db, [None, None], None, "float32"),
        "linear power, nodata 0": (power, ["VV", "VH"], 0.0, "float32"),
        "linear power, 0 not declared": (power, ["VV", "VH"], None, "float32"),
        "amplitude": (np.where(valid, np.sqrt(power), 0.0), ["Amplitude_VV", "Amplitude_VH"], 0.0, "float32"),
        "VH first, then VV": (db[::-1], ["VH", "VV"], None, "float32"),
        "uint16 numbers, uncalibrated": (numbers, ["VV", "VH"], 0.0, "uint16"),
        "VV only": (db[:1], ["VV"], None, "float32"),
    }


def write(path: Path, bands: np.ndarray, names, nodata, dtype: str, profile: dict) -> None:
    profile = dict(profile, count=bands.shape[0], dtype=dtype, nodata=nodata)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(bands.astype(dtype))
        for i, name in enumerate(names, start=1):
            if name:
                dst.set_band_description(i, name)


def water_iou(sar: Path, label: np.ndarray, out: Path) -> Tuple[float, str]:
    """Water IoU (%) of the product's water map of ``sar`` and the SAR units it read."""
    # the product's own command line, as a user runs it (arguments as a list, no shell)
    command = [sys.executable, "-m", "engine", "water", "--sar", str(sar), "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)  # nosec B603
    if done.returncode:
        raise RuntimeError(f"{sar.name}: {done.stderr.strip()[-500:]}")
    inputs = next(line for line in done.stdout.splitlines() if line.startswith("inputs:"))
    with rasterio.open(out / "water.tif") as src:
        water = src.read(1) == 1
    truth, scored = label == 1, label >= 0
    union = ((water | truth) & scored).sum()
    return 100.0 * float((water & truth & scored).sum()) / max(int(union), 1), json.loads(inputs[7:])["sar_units"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heldout", type=Path, help="folder of further *_S1Hand.tif / *_LabelHand.tif chips")
    args = parser.parse_args(argv)
    chips = {p.name: p for p in sorted(args.heldout.glob("*_S1Hand.tif"))} if args.heldout else {}
    chips.update({p.name: p for p in SHARED.glob("*_S1Hand.tif")})  # the project's copies, once each
    with tempfile.TemporaryDirectory() as tmp:
        for chip in sorted(chips.values(), key=lambda p: p.name):
            name = chip.name.replace("_S1Hand.tif", "")
            with rasterio.open(chip) as src, rasterio.open(chip.with_name(f"{name}_LabelHand.tif")) as lab:
                db, profile, label = src.read().astype("float64"), src.profile, lab.read(1)
            if not (label == 1).any():
                continue
            for i, (writing, (bands, names, nodata, dtype)) in enumerate(variants(db).items()):
                path = Path(tmp) / f"{name}-{i}.tif"
                write(path, bands, names, nodata, dtype, profile)
                try:
                    score, units = water_iou(path, label, Path(tmp) / f"{name}-{i}-water")
                except RuntimeError as refusal:  # a chip without valid SAR is refused, as it should be
                    print(f"{name:18s} {writing:30s} refused: {str(refusal).splitlines()[-1]}", flush=True)
                    break
                print(f"{name:18s} {writing:30s} water IoU {score:5.1f}  (read as {units})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
