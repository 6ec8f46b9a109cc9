"""Print backscatter statistics (dB) of the real SAR sample rasters, as a Markdown table.

Sen1Floods11 chips carry hand-made water labels, so water and non-water are measured
separately there. The other rasters have no labels: they are split in two by an Otsu
threshold on dB, and the dark side is only "mostly water". The speckle column is the
equivalent number of looks (mean² / variance of linear power) in 7 x 7 windows lying wholly
inside a class, median over windows; texture raises the variance, so it is a lower bound. The
correlation columns are those of the speckle (power over its 15 x 15 local mean) between
pixels 1 and 2 apart along rows, inside the class.

Usage (from the repository root)::

    .venv/bin/python scripts/measure_real_sar.py [--data ../shared/data]

``docs/data.md`` ("Synthetic SAR: distributions and sources") holds its output, and with
``--synthetic`` the same statistics of a synthetic scene, for the side-by-side comparison.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import rasterio
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
PCTS = (5, 25, 50, 75, 95)


def otsu(db: np.ndarray) -> float:
    """Otsu threshold of finite dB values (256 bins between the 0.5 and 99.5 percentiles)."""
    lo, hi = np.percentile(db, [0.5, 99.5])
    hist, edges = np.histogram(np.clip(db, lo, hi), 256, (lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * centres)
    total, mean = w0[-1], m0[-1]
    w1 = total - w0
    between = (mean * w0 / total - m0) ** 2 / np.maximum(w0 * w1, 1)
    return float(centres[int(np.argmax(between))])


def enl(db: np.ndarray, mask: np.ndarray, size: int = 7) -> float:
    """Median equivalent number of looks over ``size``² windows wholly inside ``mask``."""
    lin = np.where(mask, 10 ** (db / 10), 0.0)
    inside = ndimage.uniform_filter(mask.astype(float), size) > 0.999
    mean = ndimage.uniform_filter(lin, size)
    var = ndimage.uniform_filter(lin * lin, size) - mean**2
    # windows overlap; every size-th one is close enough to independent
    grid = np.zeros_like(mask)
    grid[::size, ::size] = True
    ok = inside & (var > 0) & grid
    return float(np.median(mean[ok] ** 2 / var[ok])) if ok.sum() >= 10 else float("nan")


def lag_correlation(db: np.ndarray, mask: np.ndarray, lag: int = 1, size: int = 15) -> float:
    """Correlation of the speckle (power over its local mean) between pixels ``lag`` apart along rows.

    Only pixels 4 or more pixels inside ``mask`` count, so edges do not pass for correlation.
    """
    inner = ndimage.binary_erosion(mask, iterations=4)
    if inner.sum() < 500:
        return float("nan")
    lin = np.where(inner, 10 ** (db / 10), 0.0)
    local = ndimage.uniform_filter(lin, size) / np.maximum(ndimage.uniform_filter(inner.astype(float), size), 1e-9)
    r = np.where(inner, lin / np.maximum(local, 1e-30) - 1, 0.0)
    both = inner & np.roll(inner, -lag, 1)
    return float((r * np.roll(r, -lag, 1))[both].mean() / (r[inner] ** 2).mean())


def _num(v: float) -> str:
    return f"{v:.2f}" if np.isfinite(v) else "-"


def row(name: str, band: str, cls: str, db: np.ndarray, mask: np.ndarray) -> Optional[List[str]]:
    """One table row: percentiles of ``db[mask]``, ENL and speckle correlation, or None when too few pixels."""
    values = db[mask]
    if values.size < 100:
        return None
    p = np.percentile(values, PCTS)
    looks = enl(db, mask)
    return [name, band, cls, f"{values.size}", *(f"{v:.1f}" for v in p), f"{looks:.1f}" if np.isfinite(looks) else "-",
            _num(lag_correlation(db, mask, 1)), _num(lag_correlation(db, mask, 2))]


def sen1floods11(data: Path) -> Iterator[List[str]]:
    """Water vs non-water per band of the Sen1Floods11 chips (hand labels)."""
    for s1 in sorted((data / "sen1floods11_s1").glob("*_S1Hand.tif")):
        with rasterio.open(s1) as src, rasterio.open(str(s1).replace("_S1Hand", "_LabelHand")) as lab:
            img, label, names = src.read().astype(np.float64), lab.read(1), src.descriptions
        for b, band in enumerate(names):
            db = img[b]
            valid = np.isfinite(db)
            for cls, value in (("water", 1), ("non-water", 0)):
                r = row(s1.name.replace("_S1Hand.tif", ""), band or f"b{b + 1}", cls, db, valid & (label == value))
                if r:
                    yield r


def unlabelled(data: Path) -> Iterator[List[str]]:
    """Dark vs bright (Otsu) sides of the unlabelled real rasters."""
    files: List[Tuple[str, Path, int, str, Optional[float]]] = []
    for p in sorted((data / "sentinel1_camargue").glob("*.tif")):
        files.append((f"pyroSAR S1A {p.name[12:20]}", p, 1, "VV", -99.0))
    for p in sorted((data / "bigearthnet").rglob("*_V[VH].tif")):
        files.append(("BEN " + p.parent.name.split("_")[-2] + "_" + p.parent.name.split("_")[-1], p, 1,
                      p.stem[-2:], None))
    sn6 = data / "spacenet6_rotterdam" / "sar_masked.tif"
    files += [("SpaceNet6 X-band", sn6, i + 1, pol, None) for i, pol in enumerate(("HH", "HV", "VH", "VV"))]
    for name, path, band, pol, nodata in files:
        with rasterio.open(path) as src:
            db = src.read(band).astype(np.float64)
        valid = np.isfinite(db) & (db != nodata if nodata is not None else True)
        t = otsu(db[valid])
        for cls, mask in ((f"dark (< {t:.1f})", valid & (db < t)), ("bright", valid & (db >= t)),
                          ("all", valid)):
            r = row(name, pol, cls, db, mask)
            if r:
                yield r


SYNTHETIC = {
    # generate_scene's defaults (2 m pixels, 4 looks) with both S1 polarisations
    "synthetic default VV+VH": {"polarisations": ("VV", "VH")},
    # Sentinel-1 GRDH-like: 10 m pixels, ENL 4.4, more water (as in the flood chips)
    "synthetic S1-like 10 m": {"polarisations": ("VV", "VH"), "resolution": 10.0, "looks": 4.4,
                               "lake_threshold": 1.0},
}


def synthetic(name: str, options: Dict[str, object], size: int, seeds: List[int]) -> Iterator[List[str]]:
    """Water vs non-water per band of synthetic scenes generated with ``options``, pooled over ``seeds``."""
    sys.path.insert(0, str(ROOT))
    from engine.config import ClassSchema
    from engine.data.synthetic import generate_scene

    water = ClassSchema().id_of("water")
    dbs, labels = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            res = generate_scene(Path(tmp) / str(seed), size=size, seed=seed, write_vector=False, **options)
            with rasterio.open(res["sar"]) as src, rasterio.open(res["label"]) as lab:
                dbs.append(10 * np.log10(np.maximum(src.read().astype(np.float64), 1e-10)))
                labels.append(lab.read(1))
                names = src.descriptions
    db, label = np.concatenate(dbs, axis=2), np.concatenate(labels, axis=1)  # side by side
    for b, band in enumerate(names):
        for cls, mask in (("water", label == water), ("non-water", label != water)):
            r = row(f"{name} (seeds {','.join(map(str, seeds))})", band, cls, db[b], mask)
            if r:
                yield r


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="shared data folder")
    parser.add_argument("--synthetic", action="store_true", help="also measure synthetic s1 VV+VH scenes")
    parser.add_argument("--size", type=int, default=512, help="synthetic scene size in pixels")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated synthetic seeds")
    args = parser.parse_args(argv)
    head = ["raster", "band", "class", "pixels", *(f"p{p}" for p in PCTS), "ENL 7x7", "corr lag 1", "corr lag 2"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    rows = list(sen1floods11(args.data)) + list(unlabelled(args.data))
    if args.synthetic:
        seeds = [int(s) for s in args.seeds.split(",")]
        for name, options in SYNTHETIC.items():
            rows += list(synthetic(name, options, args.size, seeds))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
