"""Write the project's label polygons for real scenes: training and evaluation sets, never overlapping.

Vertices are (column, row) coordinates on each scene's pixel grid (0, 0 = top-left corner of the
first pixel), placed by a project member while looking at the images (Camargue, lower Rhone,
Rotterdam) or sampled from the hand label (Sen1Floods11 chips, ``--propose``), and converted here
to map coordinates. Running it regenerates ``resources/labels/*.gpkg`` (layer ``labels``, field
``class``); sources, licences and the protocol are in ``resources/labels/README.md``. Writing needs
nothing but this file; ``--propose`` reads the Sen1Floods11 hand labels from ``../shared/data``.

Usage::

    .venv/bin/python scripts/digitise_real_scenes.py              # write every GeoPackage
    .venv/bin/python scripts/digitise_real_scenes.py --propose India_900498
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # appended: a test importing this script keeps its own sys.path order
    sys.path.append(str(ROOT))

from osgeo import ogr, osr  # noqa: E402

from engine.raster.io import atomic_output  # noqa: E402

ogr.UseExceptions()
osr.UseExceptions()

OUT_DIR = ROOT / "resources" / "labels"
SHARED = ROOT.parent / "shared" / "data"
Ring = List[Tuple[float, float]]
Polygons = List[Tuple[str, Ring]]

# Image grids (from the rasters' own georeferencing) and the column ranges of each split:
# training polygons lie left of ``train_max_col``, evaluation polygons right of ``eval_min_col``.
_S1F_PIXEL = 8.983152841195215e-05
SCENES: Dict[str, dict] = {
    "sen1floods11_India_900498": {
        "image": "sen1floods11_s1/India_900498_S1Hand.tif (shared data, not in the repository)",
        "epsg": 4326,
        "origin": (93.73524731062194, 26.76835816230715),
        "pixel": _S1F_PIXEL,
        "size": (512, 512),
        "train_max_col": 248,
        "eval_min_col": 256,
    },
    "sen1floods11_Nigeria_812045": {
        "image": "sen1floods11_s1/Nigeria_812045_S1Hand.tif (shared data, not in the repository)",
        "epsg": 4326,
        "origin": (5.795211560911857, 9.10676102429006),
        "pixel": _S1F_PIXEL,
        "size": (512, 512),
        "train_max_col": 248,
        "eval_min_col": 256,
    },
    "camargue": {
        "image": "sentinel1_camargue/S1A__IW___A_20150309T173017_VV_grd_mli_geo_norm_db.tif "
        "and S1A__IW___D_20170309T054356_VV_grd_mli_geo_norm_db.tif (same grid)",
        "epsg": 32631,
        "origin": (620048.241204, 4830114.70107),
        "pixel": 20.0,
        "size": (268, 217),
        "train_max_col": 130,
        "eval_min_col": 140,
    },
    "lower_rhone": {
        "image": "sentinel1_camargue/S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif",
        "epsg": 32631,
        "origin": (644428.241204, 4807334.70107),
        "pixel": 20.0,
        "size": (268, 217),
        "train_max_col": 126,
        "eval_min_col": 140,
    },
    "rotterdam": {
        "image": "resources/sample/rotterdam/rgb_unmasked.tif (training set: labels_digitised.gpkg beside it)",
        "epsg": 32631,
        "origin": (592317.861581054, 5750102.160218578),
        "pixel": 4.499968286507262,
        "size": (200, 200),
        "train_max_col": None,
        "eval_min_col": None,
    },
}

# Sen1Floods11: hexagons sampled from the hand label by ``--propose`` (seed 0) in columns < 248,
# 15 water and 15 not-water ("farmland": char islands and floodplain fields); every pixel centre
# inside agrees with the hand label. Evaluation = the hand label itself in columns 256-511.
CHIP_TRAIN: Dict[str, Polygons] = {
    "sen1floods11_India_900498": [
        ("water", [(40.7, 195.7), (37.0, 201.3), (32.5, 200.4), (30.3, 195.3), (32.1, 192.4), (37.4, 191.7)]),
        ("water", [(38.3, 88.9), (35.5, 89.1), (33.3, 87.5), (34.6, 83.7), (37.7, 83.0), (39.9, 86.7)]),
        ("water", [(84.5, 272.8), (80.0, 276.1), (75.2, 274.8), (75.6, 268.9), (79.1, 266.9), (83.4, 268.9)]),
        ("water", [(53.3, 234.5), (49.5, 235.8), (46.8, 231.5), (48.9, 228.4), (51.7, 228.1), (54.8, 230.9)]),
        ("water", [(96.4, 258.4), (93.7, 260.7), (90.8, 259.1), (90.8, 255.6), (92.6, 254.1), (96.5, 256.0)]),
        ("water", [(110.9, 24.4), (104.1, 28.1), (100.0, 24.8), (100.3, 18.5), (106.2, 15.7), (111.3, 18.9)]),
        ("water", [(84.4, 60.9), (80.3, 62.0), (73.9, 56.0), (75.0, 51.6), (83.0, 49.6), (85.7, 53.9)]),
        ("water", [(142.0, 42.7), (136.0, 44.1), (132.9, 40.1), (136.0, 34.5), (140.9, 34.5), (143.9, 38.7)]),
        ("water", [(21.8, 87.1), (15.4, 89.8), (12.1, 84.3), (12.8, 78.9), (18.8, 78.4), (23.3, 82.0)]),
        ("water", [(168.2, 25.1), (163.5, 29.6), (158.6, 27.5), (156.8, 21.5), (160.6, 18.5), (166.5, 20.9)]),
        ("water", [(137.5, 207.1), (134.2, 209.3), (129.1, 207.2), (128.1, 201.4), (132.0, 198.6), (137.2, 200.7)]),
        ("water", [(40.1, 111.0), (36.7, 111.7), (34.4, 106.9), (35.8, 103.6), (40.0, 104.1), (43.0, 108.1)]),
        ("water", [(183.5, 196.4), (178.8, 195.2), (176.4, 192.5), (179.4, 187.5), (183.8, 186.5), (186.6, 191.4)]),
        ("water", [(57.0, 262.9), (53.3, 264.3), (50.0, 262.9), (50.9, 259.8), (53.1, 258.1), (56.2, 259.5)]),
        ("water", [(202.7, 202.0), (197.1, 202.1), (195.4, 198.9), (197.6, 194.8), (201.7, 193.8), (204.8, 198.2)]),
        ("farmland", [(138.1, 485.3), (134.8, 490.9), (130.6, 489.3), (128.6, 484.5), (131.9, 480.5), (137.0, 481.0)]),
        ("farmland", [(30.3, 485.0), (27.2, 486.9), (24.7, 485.3), (25.3, 481.5), (28.1, 480.5), (30.6, 482.3)]),
        ("farmland", [(84.6, 374.5), (81.5, 376.3), (79.0, 375.5), (78.6, 372.8), (81.5, 370.4), (83.8, 371.5)]),
        ("farmland", [(108.8, 463.7), (106.5, 465.7), (103.2, 465.3), (102.9, 461.0), (105.3, 458.8), (108.8, 460.8)]),
        ("farmland", [(136.8, 293.3), (132.0, 292.7), (130.2, 289.0), (131.9, 285.9), (136.3, 286.4), (138.1, 289.2)]),
        ("farmland", [(205.5, 501.3), (202.6, 504.2), (197.4, 501.8), (197.9, 497.0), (200.3, 495.1), (205.5, 497.0)]),
        ("farmland", [(81.8, 162.9), (77.3, 163.8), (74.9, 159.6), (76.5, 155.8), (81.2, 155.8), (84.0, 160.2)]),
        ("farmland", [(177.7, 88.6), (173.6, 92.2), (168.5, 89.8), (168.4, 86.0), (170.7, 82.2), (176.8, 84.7)]),
        ("farmland", [(83.1, 447.9), (81.0, 450.7), (78.4, 450.5), (76.2, 447.4), (78.4, 443.9), (80.8, 444.3)]),
        ("farmland", [(114.9, 378.8), (110.5, 383.2), (106.6, 383.2), (104.6, 377.6), (107.4, 374.6), (111.8, 373.9)]),
        ("farmland", [(193.7, 365.8), (192.3, 368.6), (188.3, 368.2), (187.4, 365.7), (189.2, 362.5), (191.8, 362.8)]),
        ("farmland", [(99.7, 333.8), (96.0, 334.5), (94.1, 331.7), (95.4, 328.6), (98.8, 328.9), (100.3, 331.3)]),
        ("farmland", [(210.9, 468.8), (207.5, 470.9), (202.9, 470.5), (202.2, 466.1), (205.5, 463.4), (210.5, 465.6)]),
        ("farmland", [(195.3, 454.8), (190.4, 457.7), (185.4, 454.4), (185.8, 447.7), (191.7, 446.6), (195.8, 449.7)]),
        ("farmland", [(31.1, 438.6), (27.2, 440.0), (23.2, 438.1), (24.2, 432.7), (28.9, 430.7), (32.3, 433.4)]),
    ],
    "sen1floods11_Nigeria_812045": [
        ("water", [(226.7, 403.7), (223.0, 409.3), (218.5, 408.4), (216.3, 403.3), (218.1, 400.4), (223.4, 399.7)]),
        ("water", [(240.3, 300.9), (237.5, 301.1), (235.3, 299.5), (236.6, 295.7), (239.7, 295.0), (241.9, 298.7)]),
        ("water", [(205.5, 475.8), (201.0, 479.1), (196.2, 477.8), (196.6, 471.9), (200.1, 469.9), (204.4, 471.9)]),
        ("water", [(133.3, 448.5), (129.5, 449.8), (126.8, 445.5), (128.9, 442.4), (131.7, 442.1), (134.8, 444.9)]),
        ("water", [(167.4, 462.4), (164.7, 464.7), (161.8, 463.1), (161.8, 459.6), (163.6, 458.1), (167.5, 460.0)]),
        ("water", [(241.9, 162.4), (235.1, 166.1), (231.0, 162.8), (231.3, 156.5), (237.2, 153.7), (242.3, 156.9)]),
        ("water", [(237.4, 260.9), (233.3, 262.0), (226.9, 256.0), (228.0, 251.6), (236.0, 249.6), (238.7, 253.9)]),
        ("water", [(242.0, 213.7), (236.0, 215.1), (232.9, 211.1), (236.0, 205.5), (240.9, 205.5), (243.9, 209.7)]),
        ("water", [(229.8, 316.1), (223.4, 318.8), (220.1, 313.3), (220.8, 307.9), (226.8, 307.4), (231.3, 311.0)]),
        ("water", [(235.7, 418.5), (232.1, 420.0), (229.4, 418.6), (229.8, 414.7), (232.0, 412.5), (235.2, 413.6)]),
        ("water", [(221.1, 478.3), (219.2, 481.9), (214.8, 482.2), (213.0, 479.2), (215.0, 475.5), (219.5, 474.9)]),
        ("water", [(144.7, 476.3), (137.6, 478.6), (134.9, 473.8), (137.5, 467.6), (141.5, 465.9), (146.8, 471.8)]),
        ("water", [(123.3, 503.8), (120.2, 507.3), (113.2, 506.3), (112.4, 501.6), (115.5, 497.2), (120.6, 496.9)]),
        ("water", [(235.3, 331.3), (231.7, 333.1), (229.7, 331.1), (230.4, 327.3), (232.9, 326.7), (235.3, 328.8)]),
        ("water", [(189.6, 459.3), (185.9, 465.4), (181.3, 463.7), (179.1, 458.4), (182.8, 454.0), (188.4, 454.5)]),
        ("farmland", [(27.3, 28.5), (24.8, 30.2), (21.9, 29.4), (21.3, 26.9), (23.7, 24.5), (26.5, 25.9)]),
        ("farmland", [(148.5, 258.5), (142.5, 262.0), (137.7, 260.4), (136.8, 255.2), (142.5, 250.5), (147.0, 252.5)]),
        ("farmland", [(158.2, 181.8), (155.9, 183.4), (152.2, 182.3), (152.0, 179.5), (155.7, 176.6), (158.5, 179.0)]),
        ("farmland", [(103.9, 164.0), (96.8, 163.2), (94.1, 157.7), (96.6, 153.3), (103.2, 153.9), (105.8, 158.1)]),
        ("farmland", [(157.9, 13.3), (154.0, 16.0), (150.2, 13.7), (151.2, 9.8), (154.5, 7.1), (158.4, 9.6)]),
        ("farmland", [(106.3, 192.6), (100.8, 193.7), (97.9, 188.7), (99.8, 184.0), (105.6, 184.0), (109.0, 189.3)]),
        ("farmland", [(89.5, 272.2), (87.9, 275.3), (83.3, 275.0), (81.7, 270.4), (83.9, 268.1), (87.7, 267.2)]),
        ("farmland", [(62.4, 417.0), (58.3, 420.2), (52.3, 416.5), (53.7, 411.7), (57.2, 409.0), (62.9, 411.5)]),
        ("farmland", [(48.5, 37.9), (44.4, 40.7), (39.1, 35.9), (38.9, 31.4), (45.3, 28.7), (48.9, 31.9)]),
        ("farmland", [(151.2, 66.9), (148.7, 68.1), (146.3, 66.7), (146.4, 63.7), (148.9, 63.2), (150.9, 64.2)]),
        ("farmland", [(212.9, 23.2), (208.7, 23.1), (206.9, 20.8), (208.7, 17.3), (212.4, 17.6), (214.1, 20.9)]),
        ("farmland", [(43.7, 243.7), (42.4, 246.6), (39.3, 246.0), (36.8, 243.4), (38.7, 240.4), (42.0, 240.5)]),
        ("farmland", [(193.0, 337.5), (186.8, 338.5), (183.0, 333.7), (185.5, 328.4), (190.8, 327.1), (194.8, 331.5)]),
        ("farmland", [(167.3, 225.5), (163.5, 226.9), (159.8, 223.9), (160.8, 219.2), (165.4, 218.0), (168.4, 220.7)]),
        ("farmland", [(117.2, 240.7), (111.1, 242.4), (107.5, 238.4), (109.0, 234.4), (112.8, 232.1), (117.7, 236.6)]),
    ],
}

# Camargue pair (20 m): water = small squares inside areas dark on both dates (open water of the
# central marsh); farmland = fields bright on both dates. West part trains, east part evaluates.
CAMARGUE_TRAIN: Polygons = [
    ("water", [(80, 104), (88, 104), (88, 112), (80, 112)]),
    ("water", [(97, 92), (105, 92), (105, 100), (97, 100)]),
    ("water", [(107, 130), (115, 130), (115, 138), (107, 138)]),
    ("water", [(94, 162), (102, 162), (102, 170), (94, 170)]),
    ("water", [(104, 145), (112, 145), (112, 153), (104, 153)]),
    ("water", [(112, 96), (128, 96), (128, 104), (112, 104)]),
    ("farmland", [(5, 5), (40, 5), (40, 25), (5, 25)]),
    ("farmland", [(5, 100), (35, 100), (35, 130), (5, 130)]),
    ("farmland", [(60, 185), (100, 187), (100, 205), (60, 205)]),
]
CAMARGUE_EVAL: Polygons = [
    ("water", [(143, 58), (151, 58), (151, 66), (143, 66)]),
    ("water", [(148, 76), (156, 76), (156, 84), (148, 84)]),
    ("water", [(172, 75), (180, 75), (180, 83), (172, 83)]),
    ("water", [(148, 123), (156, 123), (156, 131), (148, 131)]),
    ("water", [(153, 140), (161, 140), (161, 148), (153, 148)]),
    ("farmland", [(200, 5), (250, 5), (250, 30), (200, 30)]),
    ("farmland", [(215, 185), (260, 185), (260, 210), (215, 210)]),
]

# Lower Rhone at Port-Saint-Louis (20 m): the Rhone, a pond of the west bank, the Canal
# Saint-Louis basin; the town (bright, point scatterers) and the port's docks on the canal.
RHONE_TRAIN: Polygons = [
    ("water", [(8, 63), (60, 97), (110, 127), (124, 137), (124, 153), (110, 143), (60, 113), (8, 79)]),
    ("water", [(48, 182), (68, 176), (76, 196), (58, 204)]),
    ("city", [(40, 28), (58, 28), (60, 45), (42, 47)]),
    ("city", [(75, 55), (100, 55), (105, 75), (80, 78)]),
    ("city", [(95, 80), (115, 80), (118, 95), (98, 95)]),
]
RHONE_EVAL: Polygons = [
    ("water", [(145, 156), (170, 173), (200, 196), (215, 206), (215, 216), (200, 210), (170, 187), (145, 170)]),
    ("water", [(222, 86), (240, 84), (242, 95), (224, 97)]),
    ("city", [(168, 150), (200, 146), (225, 146), (225, 153), (200, 156), (170, 158)]),
    ("city", [(238, 67), (255, 66), (262, 78), (245, 80)]),
]

# Rotterdam (4.5 m, read off the RGB image): an evaluation set apart from the 10 training polygons
# of scripts/digitised_rotterdam.py. The corridor east of the training road is a railway
# (wagons, a triangular junction), not a road, so the only road polygon is the port road
# between the two tank farms.
ROTTERDAM_EVAL: Polygons = [
    ("water", [(23, 28), (31, 28), (39, 34), (40, 41), (32, 43), (23, 43)]),
    ("water", [(29, 78), (41, 78), (41, 86), (31, 86)]),
    ("city", [(84, 59), (105, 59), (106, 71), (85, 71)]),
    ("city", [(66, 2), (104, 2), (104, 16), (80, 18), (66, 12)]),
    ("city", [(148, 187), (176, 187), (176, 199), (148, 199)]),
    ("city", [(1, 82), (10, 82), (12, 97), (1, 97)]),
    ("road", [(86, 75), (110, 75), (110, 77), (86, 77)]),
    ("farmland", [(151, 39), (162, 38), (163, 51), (152, 52)]),
    ("farmland", [(178, 12), (192, 12), (192, 26), (178, 26)]),
]

LABEL_SETS: Dict[str, Tuple[str, str, Polygons]] = {
    **{f"{scene}_train": (scene, "train", polys) for scene, polys in CHIP_TRAIN.items()},
    "camargue_train": ("camargue", "train", CAMARGUE_TRAIN),
    "camargue_eval": ("camargue", "eval", CAMARGUE_EVAL),
    "lower_rhone_train": ("lower_rhone", "train", RHONE_TRAIN),
    "lower_rhone_eval": ("lower_rhone", "eval", RHONE_EVAL),
    "rotterdam_eval": ("rotterdam", "eval", ROTTERDAM_EVAL),
}


def to_map(scene: str, col: float, row: float) -> Tuple[float, float]:
    """Map coordinates of a (column, row) position on a scene's grid."""
    s = SCENES[scene]
    return s["origin"][0] + col * s["pixel"], s["origin"][1] - row * s["pixel"]


def write_label_set(name: str, out_dir: Path = OUT_DIR) -> Path:
    """Write one label set as ``<out_dir>/<name>.gpkg`` (layer ``labels``: ``class``, ``split``)."""
    scene, split, polygons = LABEL_SETS[name]
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(SCENES[scene]["epsg"])
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)  # x = easting / longitude
    out = out_dir / f"{name}.gpkg"
    with atomic_output(out, overwrite=True) as tmp:
        ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(tmp))
        layer = ds.CreateLayer("labels", srs, ogr.wkbPolygon, ["SPATIAL_INDEX=NO"])  # a few polygons: no R-tree
        for field in ("class", "split"):
            layer.CreateField(ogr.FieldDefn(field, ogr.OFTString))
        for cls, ring_px in polygons:
            ring = ogr.Geometry(ogr.wkbLinearRing)
            for col, row in ring_px + ring_px[:1]:
                ring.AddPoint_2D(*to_map(scene, col, row))
            poly = ogr.Geometry(ogr.wkbPolygon)
            poly.AddGeometry(ring)
            if not poly.IsValid():
                raise ValueError(f"{name}: invalid {cls} polygon {ring_px}")
            feature = ogr.Feature(layer.GetLayerDefn())
            feature.SetField("class", cls)
            feature.SetField("split", split)
            feature.SetGeometry(poly)
            layer.CreateFeature(feature)
        ds = None
    return out


def propose(chip: str, per_class: int = 15, seed: int = 0) -> Polygons:
    """Sample hexagons where a chip's hand label is uniform, left of the training column limit.

    Centres are drawn at random from the label eroded by the hexagon's radius (3 to 7 px) plus a
    pixel, at least 6 px apart from each other, so every pixel centre inside agrees with the label.
    """
    import numpy as np
    import rasterio
    from scipy import ndimage

    scene = f"sen1floods11_{chip}"
    with rasterio.open(SHARED / "sen1floods11_s1" / f"{chip}_LabelHand.tif") as src:
        label = src.read(1)
    with rasterio.open(SHARED / "sen1floods11_s1" / f"{chip}_S1Hand.tif") as src:
        valid = np.isfinite(src.read()).all(axis=0)
    rng = np.random.default_rng(seed)
    out: Polygons = []
    for value, name in ((1, "water"), (0, "farmland")):
        mask = (label == value) & valid
        mask[:, SCENES[scene]["train_max_col"] :] = False
        placed: List[Tuple[float, float, float]] = []
        for _ in range(5000):
            if len(placed) == per_class:
                break
            r = float(rng.uniform(3.0, 7.0))
            k = math.ceil(r) + 1
            yy, xx = np.mgrid[-k : k + 1, -k : k + 1]
            ys, xs = np.nonzero(ndimage.binary_erosion(mask, structure=xx * xx + yy * yy <= k * k))
            i = int(rng.integers(len(ys)))
            cx, cy = xs[i] + 0.5, ys[i] + 0.5
            if any(math.hypot(cx - x, cy - y) < r + q + 6 for x, y, q in placed):
                continue
            placed.append((cx, cy, r))
            start = float(rng.uniform(0, 60))
            ring = []
            for j in range(6):
                a = math.radians(start + 60 * j + float(rng.uniform(-12, 12)))
                rad = r * float(rng.uniform(0.75, 1.0))
                ring.append((round(cx + rad * math.cos(a), 1), round(cy + rad * math.sin(a), 1)))
            out.append((name, ring))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--propose", metavar="CHIP", help="print sampled polygons for a Sen1Floods11 chip")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder")
    args = parser.parse_args()
    if args.propose:
        for cls, ring in propose(args.propose):
            print(f'        ("{cls}", {ring}),')
        return 0
    for name in LABEL_SETS:
        print(write_label_set(name, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
