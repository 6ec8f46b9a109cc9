"""The seeded synthetic scene generator: reproducible, window-independent, plausible, streaming."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from osgeo import ogr
from rasterio.windows import Window

from engine.config import ClassSchema
from engine.data.synthetic import RGB_MEAN, SyntheticScene, generate_scene
from engine.progress import CallbackProgress, Canceled
from engine.raster.grid import grid_of
from engine.raster.io import read_bands

SCHEMA = ClassSchema()
WATER, CITY, FARMLAND, FOREST = (SCHEMA.id_of(n) for n in ("water", "city", "farmland", "forest"))


def test_same_seed_same_scene_and_files_are_georeferenced(synthetic_scene, tmp_path):
    again = generate_scene(tmp_path, size=256, seed=3, write_vector=False)
    for key in ("optical", "sar", "label"):
        a, b = synthetic_scene[key], again[key]
        bands = [1, 2, 3] if key == "optical" else [1]
        np.testing.assert_array_equal(read_bands(a, bands), read_bands(b, bands))
    grid = grid_of(synthetic_scene["optical"])
    assert grid.crs.is_projected and grid.res == (2.0, 2.0) and grid.shape == (256, 256)
    assert grid_of(synthetic_scene["sar"]).same_as(grid) and grid_of(synthetic_scene["label"]).same_as(grid)
    other = SyntheticScene(256, seed=4).render(Window(0, 0, 256, 256))["label"]
    assert (other != read_bands(synthetic_scene["label"], [1])[0]).mean() > 0.1
    fractions = synthetic_scene["class_fractions"]
    assert sum(fractions.values()) == pytest.approx(1.0) and fractions["farmland"] < 0.9
    # the polygons carry class ids and names of the schema
    ds = ogr.Open(synthetic_scene["label_vector"])
    layer = ds.GetLayer(0)
    names = {f.GetField("class_name") for f in layer}
    assert layer.GetFeatureCount() > 5 and names <= set(SCHEMA.names) and "water" in names


def test_any_window_layout_renders_the_same_pixels():
    scene = SyntheticScene(300, seed=9, misregistration=(1.5, -0.5))
    whole = scene.render(Window(0, 0, 300, 300))
    for key in ("label", "optical", "sar"):
        tiled = np.zeros_like(whole[key])
        for r in range(0, 300, 70):  # windows that cut across the 256-pixel noise tiles
            for c in range(0, 300, 110):
                h, w = min(70, 300 - r), min(110, 300 - c)
                tiled[..., r : r + h, c : c + w] = scene.render(Window(c, r, w, h))[key]
        np.testing.assert_array_equal(tiled, whole[key])


def test_classes_have_their_sar_and_optical_signatures():
    scene = SyntheticScene(512, seed=11, looks=4.0, clouds=False)
    tile = scene.render(Window(0, 0, 512, 512))
    label, sar, rgb = tile["label"], tile["sar"][0], tile["optical"].astype(float)
    assert set(np.unique(label)) == set(SCHEMA.ids)  # all six classes, nothing else
    db = 10 * np.log10(sar)
    med = {k: np.median(db[label == k]) for k in SCHEMA.ids}
    assert med[WATER] < -20 and med[CITY] > -5 and med[WATER] < med[FARMLAND] < med[CITY]
    # multiplicative gamma speckle of 4 looks: coefficient of variation 1/sqrt(4) over still water
    interior = np.zeros_like(label, bool)
    interior[2:-2, 2:-2] = np.all([np.roll(label, s, a) == WATER for s in (-2, 2) for a in (0, 1)], axis=0)[2:-2, 2:-2]
    water = sar[interior & (label == WATER)]
    assert water.size > 500 and 0.4 < water.std() / water.mean() < 0.6
    one_look = SyntheticScene(512, seed=11, looks=1.0).render(Window(0, 0, 512, 512))["sar"][0]
    w1 = one_look[interior & (label == WATER)]
    assert 0.85 < w1.std() / w1.mean() < 1.15
    # confusers: dark roofs and terrain shadow make land (not forest, dark anyway) as dark as water
    water_dark = 1.1 * sum(RGB_MEAN["water"])
    land = (label != WATER) & (label != FOREST)
    plain = SyntheticScene(512, seed=11, clouds=False, confusers=False).render(Window(0, 0, 512, 512))
    assert ((plain["optical"].astype(float).sum(0) <= water_dark) & land).sum() == 0
    assert ((rgb.sum(0) <= water_dark) & land).sum() > 2000
    cloudy = SyntheticScene(512, seed=11).render(Window(0, 0, 512, 512))["optical"].astype(float).sum(0)
    assert (cloudy > 600).mean() > (rgb.sum(0) > 600).mean() + 0.01  # clouds are bright


def test_misregistration_shifts_the_sar_by_the_requested_pixels():
    base = SyntheticScene(256, seed=2, looks=50.0)
    shifted = SyntheticScene(256, seed=2, looks=50.0, misregistration=(3.0, 0.0))
    a = np.log(base.render(Window(0, 0, 256, 256))["sar"][0])
    b = np.log(shifted.render(Window(0, 0, 256, 256))["sar"][0])

    def corr(s):
        x, y = a[:, s + 10 : 246 + s], b[:, 10:246]
        return np.corrcoef(x.ravel(), y.ravel())[0, 1]

    scores = {s: corr(s) for s in range(-5, 6)}
    assert max(scores, key=scores.get) == 3 and scores[3] > 0.9
    assert np.array_equal(base.render(Window(0, 0, 64, 64))["label"], shifted.render(Window(0, 0, 64, 64))["label"])


def test_streaming_memory_does_not_grow_with_size_and_cancel_leaves_nothing(tmp_path):
    peaks = []
    for size in (512, 1024):
        tracemalloc.start()
        generate_scene(tmp_path / str(size), size=size, seed=1, block=256, write_vector=False)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.3 * peaks[0]  # four times the pixels, about the same peak
    assert peaks[1] < 1024 * 1024 * 4 * 8  # below one float64 band of the whole 1024 scene times 4
    calls = []
    stop = CallbackProgress(report=lambda f, m: calls.append(f), is_canceled=lambda: len(calls) >= 2)
    with pytest.raises(Canceled):
        generate_scene(tmp_path / "c", size=512, seed=1, block=128, progress=stop)
    assert list((tmp_path / "c").iterdir()) == []
    with pytest.raises(ValueError, match="output exists"):
        generate_scene(tmp_path / "512", size=512, seed=1, write_vector=False)
