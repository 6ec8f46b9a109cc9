"""The digitised real-scene label sets (resources/labels): disjoint splits, on their images, documented."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from osgeo import ogr
from rasterio.crs import CRS

from engine.config import ClassSchema
from engine.raster.grid import Grid, grid_of
from engine.raster.io import read_bands
from engine.raster.labels import rasterize_labels

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
LABELS = ROOT / "resources" / "labels"
ROTTERDAM_TRAIN = ROOT / "resources" / "sample" / "rotterdam" / "labels_digitised.gpkg"
sys.path.insert(0, str(ROOT / "scripts"))
import digitise_real_scenes as dig  # noqa: E402

ogr.UseExceptions()
SETS = sorted(dig.LABEL_SETS)
IMAGES = {
    "sen1floods11_India_900498": SHARED / "sen1floods11_s1" / "India_900498_S1Hand.tif",
    "sen1floods11_Nigeria_812045": SHARED / "sen1floods11_s1" / "Nigeria_812045_S1Hand.tif",
    "camargue": SHARED / "sentinel1_camargue" / "S1A__IW___A_20150309T173017_VV_grd_mli_geo_norm_db.tif",
    "lower_rhone": SHARED / "sentinel1_camargue" / "S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif",
    "rotterdam": ROOT / "resources" / "sample" / "rotterdam" / "rgb_unmasked.tif",
}


def scene_grid(scene: str) -> Grid:
    s = dig.SCENES[scene]
    transform = Affine(s["pixel"], 0, s["origin"][0], 0, -s["pixel"], s["origin"][1])
    return Grid(CRS.from_epsg(s["epsg"]).to_wkt(), transform, *s["size"])


def features(path: Path) -> list:
    """(class, split, geometry) of every feature of a label file."""
    ds = ogr.Open(str(path))
    layer = ds.GetLayer(0)
    names = [layer.GetLayerDefn().GetFieldDefn(i).GetName() for i in range(layer.GetLayerDefn().GetFieldCount())]
    out = [
        (f.GetField("class"), f.GetField("split") if "split" in names else "train", f.GetGeometryRef().Clone())
        for f in layer
    ]
    return out


def pixel_bounds(scene: str, geom) -> tuple:
    """(min col, max col, min row, max row) of a geometry on its scene's grid."""
    s = dig.SCENES[scene]
    x0, x1, y0, y1 = geom.GetEnvelope()
    ox, oy, px = s["origin"][0], s["origin"][1], s["pixel"]
    return (x0 - ox) / px, (x1 - ox) / px, (oy - y1) / px, (oy - y0) / px


def test_files_match_the_script(tmp_path):
    for name in SETS:
        stored = features(LABELS / f"{name}.gpkg")
        fresh = features(dig.write_label_set(name, tmp_path))
        assert [(c, s, g.ExportToWkt()) for c, s, g in stored] == [(c, s, g.ExportToWkt()) for c, s, g in fresh], name


def test_train_and_eval_never_intersect_and_respect_the_split_columns():
    by_scene = {}
    for name in SETS:
        scene, split, _ = dig.LABEL_SETS[name]
        by_scene.setdefault(scene, []).extend((split, g) for _, _, g in features(LABELS / f"{name}.gpkg"))
    by_scene["rotterdam"] += [("train", g) for _, _, g in features(ROTTERDAM_TRAIN)]
    for scene, items in by_scene.items():
        train = [g for s, g in items if s == "train"]
        evals = [g for s, g in items if s == "eval"]
        assert train and (evals or scene.startswith("sen1floods11")), scene
        for t in train:
            assert not any(t.Intersects(e) for e in evals), scene
        limits = dig.SCENES[scene]
        if limits["train_max_col"] is not None:
            assert all(pixel_bounds(scene, g)[1] <= limits["train_max_col"] for g in train), scene
            assert all(pixel_bounds(scene, g)[0] >= limits["eval_min_col"] for g in evals), scene


@pytest.mark.parametrize("name", SETS)
def test_sets_lie_on_their_images_and_use_documented_schema_classes(name):
    scene, _, _ = dig.LABEL_SETS[name]
    width, height = dig.SCENES[scene]["size"]
    found = features(LABELS / f"{name}.gpkg")
    for _, _, geom in found:
        assert geom.IsValid()
        c0, c1, r0, r1 = pixel_bounds(scene, geom)
        assert 0 <= c0 < c1 <= width and 0 <= r0 < r1 <= height, (name, c0, c1, r0, r1)
    label, report = rasterize_labels(LABELS / f"{name}.gpkg", "class", scene_grid(scene), ClassSchema())
    assert report["conflict_pixels"] == 0 and report["labelled_pixels"] > 0
    readme = (LABELS / "README.md").read_text(encoding="utf-8")
    assert f"`{name}.gpkg`" in readme
    assert all(f"{cls}" in readme for cls in report["per_class_features"])
    image = IMAGES[scene]
    if image.exists():  # the grid in the script is the image's own
        assert scene_grid(scene).same_as(grid_of(image), tol=1e-3)


@pytest.mark.skipif(not (SHARED / "sen1floods11_s1").is_dir(), reason=f"shared sample data not found at {SHARED}")
@pytest.mark.parametrize("chip", ["India_900498", "Nigeria_812045"])
def test_chip_training_polygons_agree_with_the_hand_label(chip):
    label_path = SHARED / "sen1floods11_s1" / f"{chip}_LabelHand.tif"
    grid = grid_of(label_path)
    ours, report = rasterize_labels(LABELS / f"sen1floods11_{chip}_train.gpkg", "class", grid, ClassSchema())
    hand = read_bands(label_path, [1])[0]
    water = ClassSchema().id_of("water")
    labelled = ours != 255
    assert report["per_class_features"] == {"farmland": 15, "water": 15}
    assert np.array_equal(ours[labelled] == water, hand[labelled] == 1)
    assert (hand[labelled] >= 0).all() and not labelled[:, 248:].any()
