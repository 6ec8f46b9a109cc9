"""The seeded synthetic scene generator: reproducible, window-independent, plausible, streaming."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import rasterio
from make_training_scenes import scene_options
from osgeo import ogr
from rasterio.windows import Window
from scipy import ndimage

from engine.config import ClassSchema
from engine.data.sar_model import REFLECTANCE, SURFACE
from engine.data.synthetic import SyntheticScene, _segment_distance, generate_scene, random_scene_options
from engine.progress import CallbackProgress, Canceled
from engine.raster.grid import grid_of
from engine.raster.io import read_bands

SCHEMA = ClassSchema()
WATER, CITY, FARMLAND, FOREST, ROAD = (SCHEMA.id_of(n) for n in ("water", "city", "farmland", "forest", "road"))
FULL = Window(0, 0, 256, 256)


def _db(x):
    return 10 * np.log10(x)


def _interior(label, cls, margin=2):
    """Pixels of ``cls`` whose neighbours ``margin`` away are of the same class."""
    out = np.zeros_like(label, bool)
    same = np.all([np.roll(label, s, a) == cls for s in (-margin, margin) for a in (0, 1)], axis=0)
    out[margin:-margin, margin:-margin] = same[margin:-margin, margin:-margin]
    return out & (label == cls)


def _speckle(sar, mask, size=15):
    """``sar`` over ``mask`` divided by its local mean: the speckle, without slow texture."""
    w = ndimage.uniform_filter(mask.astype(float), size)
    local = ndimage.uniform_filter(np.where(mask, sar, 0.0), size) / np.maximum(w, 1e-9)
    return np.where(mask, sar / np.maximum(local, 1e-12), 0.0)


def _speckle_cv(sar, mask):
    """Coefficient of variation of the speckle of ``sar`` over ``mask``."""
    ratio = _speckle(sar, mask)[mask]
    return float(ratio.std() / ratio.mean())


def _lag1(sar, mask):
    """Lag-1 correlation (along rows) of the speckle of ``sar`` over ``mask``."""
    r = _speckle(sar, mask) - 1
    both = mask & np.roll(mask, -1, 1)
    return float((r * np.roll(r, -1, 1))[both].mean() / (r[mask] ** 2).mean())


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


@pytest.mark.parametrize("size, options", [
    (300, {"misregistration": (1.5, -0.5)}),
    # SAR point-spread halo, ground supersampling, two polarisations, snow, runways, float optical
    (160, {"resolution": 10.0, "polarisations": ("VV", "VH"), "snow": True, "sar_confusers": 1.0,
           "misregistration": (0.5, 1.0), "optical_units": "reflectance", "seed": 5}),
    # wide river, canals, harbour basins and ponds
    (200, {"resolution": 10.0, "water_shapes": 1.0, "seed": 7}),
])
def test_any_window_layout_renders_the_same_pixels(size, options):
    options = dict(options)
    scene = SyntheticScene(size, seed=options.pop("seed", 9), **options)
    whole = scene.render(Window(0, 0, size, size))
    step_r, step_c = size // 4 - 5, size // 3 + 10  # windows that cut across the 256-pixel noise tiles
    for key in ("label", "optical", "sar"):
        tiled = np.zeros_like(whole[key])
        for r in range(0, size, step_r):
            for c in range(0, size, step_c):
                h, w = min(step_r, size - r), min(step_c, size - c)
                tiled[..., r : r + h, c : c + w] = scene.render(Window(c, r, w, h))[key]
        np.testing.assert_array_equal(tiled, whole[key])


def test_classes_have_their_sar_and_optical_signatures():
    scene = SyntheticScene(512, seed=11, looks=4.0, clouds=False, noise_floor=False)
    tile = scene.render(Window(0, 0, 512, 512))
    label, sar, refl = tile["label"], tile["sar"][0], tile["optical"].astype(float) / 255
    assert set(np.unique(label)) == set(SCHEMA.ids)  # all six classes, nothing else
    db = _db(sar)
    med = {k: np.median(db[label == k]) for k in SCHEMA.ids}
    # absolute C-band VV levels (docs/data.md): water near Sen1Floods11's -18 to -20 dB, farmland -9 to -14
    assert -23 < med[WATER] < -17 and -14 < med[FARMLAND] < -9 and med[CITY] > -5
    assert med[WATER] < med[FARMLAND] < med[FOREST] < med[CITY]
    # multiplicative gamma speckle of 4 looks: coefficient of variation 1/sqrt(4) over water, once
    # the slow texture (incidence, wind, parcel spread) is divided out
    still = _interior(label, WATER, margin=7)
    assert still.sum() > 500 and 0.4 < _speckle_cv(sar, still) < 0.6
    one_look = SyntheticScene(512, seed=11, looks=1.0, noise_floor=False).render(Window(0, 0, 512, 512))["sar"][0]
    assert 0.85 < _speckle_cv(one_look, still) < 1.15
    # confusers: dark roofs and terrain shadow make land (not forest, dark anyway) as dark as water
    water_dark = 1.1 * sum(REFLECTANCE["water"])
    land = (label != WATER) & (label != FOREST)
    plain = SyntheticScene(512, seed=11, clouds=False, confusers=False).render(Window(0, 0, 512, 512))
    p = plain["optical"].astype(float) / 255
    water_like = (p.sum(0) <= water_dark) & (p[2] >= p[1])  # dark and blue: green crops are dark but green
    assert (water_like & land).sum() == 0
    assert ((refl.sum(0) <= water_dark) & land).sum() > 2000
    cloudy = SyntheticScene(512, seed=11).render(Window(0, 0, 512, 512))["optical"].astype(float).sum(0) / 255
    assert (cloudy > 1.5).mean() > (refl.sum(0) > 1.5).mean() + 0.01  # clouds are bright


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


def test_options_are_deterministic_and_written_as_asked(tmp_path):
    options = random_scene_options(np.random.default_rng(3), polarisations=("VV", "VH"))
    assert options == random_scene_options(np.random.default_rng(3), polarisations=("VV", "VH"))
    a = generate_scene(tmp_path / "a", size=128, seed=7, write_vector=False, **options)
    b = generate_scene(tmp_path / "b", size=128, seed=7, write_vector=False, **options)
    for key, bands in (("optical", [1, 2, 3]), ("sar", [1, 2]), ("label", [1])):
        np.testing.assert_array_equal(read_bands(a[key], bands), read_bands(b[key], bands))
    with rasterio.open(a["sar"]) as src:
        assert src.count == 2 and src.descriptions == ("VV", "VH") and src.dtypes[0] == "float32"
    assert a["options"]["polarisations"] == ["VV", "VH"] and a["options"]["sensor"] == options["sensor"]
    assert grid_of(a["sar"]).res == (options["resolution"],) * 2
    other = generate_scene(tmp_path / "c", size=128, seed=7, write_vector=False,
                           **dict(options, calibration_db=options["calibration_db"] + 1.0))
    ratio = read_bands(other["sar"], [1]) / read_bands(a["sar"], [1])
    np.testing.assert_allclose(ratio, 10 ** 0.1, rtol=1e-5)  # the calibration offset is a pure gain
    with pytest.raises(ValueError, match="polarisation 'XX'"):
        SyntheticScene(64, polarisations=("VV", "XX"))
    with pytest.raises(ValueError, match="sensor"):
        SyntheticScene(64, sensor="c-band")


def test_random_options_are_varied_and_plausible():
    draws = [random_scene_options(np.random.default_rng(s)) for s in range(400)]
    assert {d["sensor"] for d in draws} == {"s1", "alos2", "x"}
    assert 0.05 < np.mean([d["snow"] for d in draws]) < 0.16  # about one scene in ten
    assert all(abs(d["calibration_db"]) <= 1.5 and 1.0 <= d["looks"] <= 5.0 for d in draws)
    assert all(2.0 <= d["resolution"] <= 20.0 and d["sar_resolution"] >= d["resolution"] for d in draws)
    assert {tuple(d["polarisations"]) for d in draws if d["sensor"] == "alos2"} == {("HH",), ("HH", "HV")}
    for d in draws:
        near, far = d["incidence"]
        lo, hi = {"s1": (30, 46), "alos2": (29, 43), "x": (25, 45)}[d["sensor"]]
        assert lo <= near < far <= hi
    assert len({(d["wind"], d["sar_confusers"], d["lake_threshold"]) for d in draws}) > 300


def test_cross_pol_is_darker_and_bands_differ():
    for sensor, pols in (("s1", ("VV", "VH")), ("alos2", ("HH", "HV")), ("x", ("HH", "VV"))):
        tile = SyntheticScene(256, seed=2, sensor=sensor, polarisations=pols, lake_threshold=1.0).render(FULL)
        label, db = tile["label"], _db(tile["sar"])
        med = {(p, k): np.median(db[i][label == k]) for i, p in enumerate(pols) for k in (WATER, FARMLAND)}
        if sensor != "x":  # cross-pol: 6-9 dB below co-pol; less over water, near the noise floor
            assert med[(pols[1], FARMLAND)] < med[(pols[0], FARMLAND)] - 5
            assert med[(pols[1], WATER)] < med[(pols[0], WATER)] - 3
        assert med[(pols[0], WATER)] < med[(pols[0], FARMLAND)] - 6
        assert np.corrcoef(db[0].ravel(), db[1].ravel())[0, 1] < 0.95  # not one band copied
    # calm water at the same geometry is darkest at L-band (longer Bragg wavelength)
    water = {}
    for sensor in ("alos2", "s1", "x"):
        tile = SyntheticScene(256, seed=2, sensor=sensor, polarisations=("HH",), lake_threshold=1.0, wind=0.0,
                              incidence=(37.0, 37.0)).render(FULL)
        water[sensor] = np.median(_db(tile["sar"][0])[_interior(tile["label"], WATER)])
    assert water["alos2"] < min(water["s1"], water["x"]) - 2


def test_incidence_gradient_darkens_water_towards_far_range():
    def sar(incidence):
        scene = SyntheticScene(384, seed=4, lake_threshold=0.6, wind=0.0, incidence=incidence, noise_floor=False)
        tile = scene.render(Window(0, 0, 384, 384))
        return tile["label"], _db(tile["sar"][0])

    label, slanted = sar((30.0, 46.0))
    _, flat = sar((38.0, 38.0))
    diff = slanted - flat  # same seed, same speckle: only the incidence differs
    theta = np.broadcast_to(30.0 + 16.0 * (np.arange(384) + 0.5) / 384, diff.shape)
    away = np.abs(theta - 38.0) > 3

    def slope(cls):  # dB per degree, from pixels well inside the class
        m = _interior(label, cls, margin=3) & away
        return np.median(diff[m] / (theta[m] - 38.0))

    # calm water loses about 0.3 dB per degree, farmland about half of that (sar_model tables)
    assert -0.33 < slope(WATER) < -0.27 and -0.18 < slope(FARMLAND) < -0.12
    left, right = label[:, :128] == WATER, label[:, 256:] == WATER
    assert np.median(slanted[:, :128][left]) > np.median(slanted[:, 256:][right]) + 1.5
    assert (label == WATER).mean() > 0.1


def test_wind_roughens_water_towards_minus_12_db():
    calm = SyntheticScene(256, seed=6, lake_threshold=0.8, wind=0.0, incidence=(38.0, 38.0)).render(FULL)
    windy = SyntheticScene(256, seed=6, lake_threshold=0.8, wind=0.9, incidence=(38.0, 38.0)).render(FULL)
    water = calm["label"] == WATER
    assert np.array_equal(calm["label"], windy["label"]) and water.mean() > 0.1
    a, b = np.median(_db(calm["sar"][0])[water]), np.median(_db(windy["sar"][0])[water])
    assert a < -18 and b > a + 3 and b < -11  # rougher, brighter, but not brighter than rough water


def test_sar_confusers_are_dark_land_labelled_as_land():
    scene = SyntheticScene(256, seed=5, resolution=10.0, sar_confusers=1.0, wind=0.0, noise_floor=False,
                           lake_threshold=1.0)
    ys = np.arange(256) + 0.5
    surface = scene.surface_window(ys, ys)
    code, label = surface["code"], surface["label"]
    tile = scene.render(FULL)
    assert np.array_equal(tile["label"], label)  # 10 m: 3 x 3 ground samples, the centre one labels
    db = _db(tile["sar"][0])
    for name, cls in (("sand", FARMLAND), ("smooth_field", FARMLAND), ("runway", ROAD)):
        m = code == SURFACE[name]
        assert m.sum() > 100 and np.all(label[m] == cls), name
    sand_db = np.median(db[code == SURFACE["sand"]])
    water_db = np.median(db[_interior(label, WATER)])
    assert abs(sand_db - water_db) < 3  # as dark as water, yet labelled farmland
    dark_land = (db < -18) & (label != WATER)
    assert dark_land.mean() > 0.1
    none = SyntheticScene(256, seed=5, resolution=10.0, sar_confusers=0.0, wind=0.0, noise_floor=False,
                          lake_threshold=1.0)
    assert ((_db(none.render(FULL)["sar"][0]) < -18) & (label != WATER)).mean() < 0.5 * dark_land.mean()


def test_snow_scene_dark_sar_white_optical_is_land():
    kw = dict(resolution=10.0, lake_threshold=1.2, clouds=False, sar_confusers=0.0)
    snowy = SyntheticScene(256, seed=3, snow=True, **kw).render(FULL)
    plain = SyntheticScene(256, seed=3, **kw).render(FULL)
    label = snowy["label"]
    assert np.array_equal(label, plain["label"])  # snow changes the look, not the class
    farm = label == FARMLAND
    db, refl = _db(snowy["sar"][0]), snowy["optical"].astype(float) / 255
    white = farm & (refl.mean(0) > 0.5)
    assert white.mean() > 0.3 * farm.mean()  # most open land is white
    assert np.median(db[white]) < np.median(_db(plain["sar"][0])[white]) - 5  # wet snow: several dB darker
    assert np.median(db[white]) < -17 and abs(np.median(db[white]) - np.median(db[label == WATER])) < 4
    water_refl = refl[:, label == WATER].mean()
    assert water_refl < 0.1  # water stays open and dark in the optical


def test_green_water_and_dense_crops():
    kw = dict(resolution=5.0, lake_threshold=1.2, clouds=False, confusers=False, noise_floor=False)
    plain = SyntheticScene(256, seed=5, **kw).render(FULL)
    green = SyntheticScene(256, seed=5, green_water=1.0, **kw).render(FULL)
    dense = SyntheticScene(256, seed=5, dense_crops=1.0, **kw).render(FULL)
    label = plain["label"]
    assert np.array_equal(label, green["label"]) and np.array_equal(label, dense["label"])
    p, g, d = (t["optical"].astype(float) / 255 for t in (plain, green, dense))
    water, farm, forest = label == WATER, label == FARMLAND, label == FOREST
    # green water: the green band rises above the blue one; the SAR and the rest stay as they were
    assert np.median(p[1][water]) < np.median(p[2][water]) and np.median(g[1][water]) > np.median(g[2][water]) + 0.02
    assert np.array_equal(plain["sar"], green["sar"])
    away = ~ndimage.binary_dilation(water, iterations=2)  # pixels mix ground samples at borders
    assert np.array_equal(p[:, away], g[:, away])
    # dense crops reach the forest's darkness in the optical image only (measured: 12 % of crop
    # pixels within 1.25 x the forest's median green, none without); the SAR must tell them apart
    forest_like = [(t[1][farm] <= 1.25 * np.median(d[1][forest])).mean() for t in (p, d)]
    assert forest_like[0] == 0.0 and forest_like[1] > 0.05
    assert np.array_equal(dense["sar"], plain["sar"])
    with pytest.raises(ValueError, match="green_water"):
        SyntheticScene(64, green_water=1.5)


def test_water_shapes_add_straight_and_wide_water_and_keep_the_rest():
    kw = dict(resolution=10.0, clouds=False, confusers=False, noise_floor=False, wind=0.0, sar_confusers=0.0)
    plain = SyntheticScene(256, seed=7, **kw)
    shaped = SyntheticScene(256, seed=7, water_shapes=1.0, **kw)
    a, b = plain.render(FULL), shaped.render(FULL)
    water_a, water_b = a["label"] == WATER, b["label"] == WATER
    # the scene without shapes is untouched (its own random streams), and shapes only add water
    assert np.array_equal(a["label"], SyntheticScene(256, seed=7, water_shapes=0.0, **kw).render(FULL)["label"])
    assert np.all(water_b[water_a]) and water_b.mean() > water_a.mean() + 0.1
    changed = water_b != water_a
    assert np.all(np.isin(a["label"][changed], [FARMLAND, CITY, FOREST, ROAD, SCHEMA.id_of("village")]))
    # seed 7 draws a wide river and canals: pixels well inside a canal are water
    assert len(shaped.wide_river) and len(shaped.canals) and 7.5 <= shaped.canal_half <= 50
    ys = xs = np.arange(256) + 0.5
    dist = np.full((256, 256), np.inf)
    _segment_distance(dist, ys * shaped.scale, xs * shaped.scale, shaped.canals, shaped.canal_half)
    core = dist < shaped.canal_half - 2 * shaped.scale
    assert core.sum() > 200 and np.isin(b["label"][core], [WATER, ROAD]).all()  # roads cross on bridges
    assert water_b[core].mean() > 0.9
    # harbour basins: whole city blocks become water, the streets between them stay road
    assert (a["label"][changed] == CITY).sum() > 50
    # the new water is as dark as the old (calm water, no noise floor) and far darker than the land it replaced
    db = _db(b["sar"][0])
    new, old = _interior(b["label"], WATER) & changed, _interior(a["label"], WATER)
    assert abs(np.median(db[new]) - np.median(db[old])) < 2.5
    assert np.median(db[new]) < np.median(_db(a["sar"][0])[new]) - 6
    with pytest.raises(ValueError, match="water_shapes"):
        SyntheticScene(64, water_shapes=-0.1)


def test_training_sets_give_water_shapes_to_a_share_of_scenes_and_keep_the_other_draws():
    flags = dict(max_confusers=0.25, snow=0.03, s1_share=0.5)
    drawn = [scene_options(seed, water_shapes=0.5, **flags) for seed in range(2000, 2200)]
    shaped = [o.pop("water_shapes") for o in drawn if "water_shapes" in o]
    assert 0.4 < len(shaped) / len(drawn) < 0.6 and min(shaped) >= 0.2 and max(shaped) <= 1.0
    assert drawn == [scene_options(seed, **flags) for seed in range(2000, 2200)]


def test_thermal_noise_left_in_raises_dark_water_to_a_floor():
    """Products without noise removal (Sen1Floods11 Bolivia, TerraMesh chips: darkest 1 % of VH at -23 to -27 dB)
    put water in VH at the NESZ; removed, the synthetic VH water sits near -28 dB and its darkest 1 % far below."""
    kw = dict(seed=2, sensor="s1", polarisations=("VV", "VH"), lake_threshold=1.0, wind=0.0, incidence=(37.0, 37.0))
    removed = SyntheticScene(256, **kw).render(FULL)
    kept = SyntheticScene(256, noise_kept_db=-22.0, **kw).render(FULL)
    water = _interior(removed["label"], WATER)
    vh_removed, vh_kept = _db(removed["sar"][1]), _db(kept["sar"][1])
    assert np.median(vh_removed[water]) < -26 and np.percentile(vh_removed, 1) < -32
    assert -23.5 < np.median(vh_kept[water]) < -20 and np.percentile(vh_kept, 1) > -28
    farmland = removed["label"] == FARMLAND  # co-polarised land, 8-10 dB above the floor, barely moves
    assert abs(np.median(_db(kept["sar"][0])[farmland]) - np.median(_db(removed["sar"][0])[farmland])) < 1.0
    flags = dict(max_confusers=0.25, snow=0.03, s1_share=1.0)
    drawn = [scene_options(seed, noise_kept=0.5, **flags) for seed in range(2000, 2100)]
    floors = [o.pop("noise_kept_db") for o in drawn if "noise_kept_db" in o]
    assert 0.35 < len(floors) / len(drawn) < 0.65 and -27 <= min(floors) and max(floors) <= -21
    assert drawn == [scene_options(seed, **flags) for seed in range(2000, 2100)]  # the other draws keep their values


def test_optical_units_hold_the_same_reflectance():
    tiles = {u: SyntheticScene(192, seed=3, optical_units=u).render(Window(0, 0, 192, 192))["optical"]
             for u in ("uint8", "reflectance10000", "reflectance")}
    r = tiles["reflectance"]
    assert tiles["uint8"].dtype == np.uint8 and tiles["reflectance10000"].dtype == np.uint16 and r.dtype == np.float32
    np.testing.assert_allclose(tiles["reflectance10000"] / 1e4, r, atol=0.5e-4 + 1e-6)
    u8 = tiles["uint8"]
    inside = (u8 > 1) & (u8 < 255)  # not clipped at either end
    assert inside.mean() > 0.95
    np.testing.assert_allclose((u8 / 255.0)[inside], r[inside], atol=0.5 / 255 + 1e-6)
    # reflectance-like values: water 0.02-0.08 in the visible, vegetation with a green peak
    label = SyntheticScene(192, seed=3).render(Window(0, 0, 192, 192))["label"]
    water = np.median(r[:, label == WATER], axis=1)
    forest = np.median(r[:, label == FOREST], axis=1)
    assert np.all((water > 0.02) & (water < 0.1)) and forest[1] > forest[0] and forest[1] > forest[2]


def test_structures_keep_their_size_in_metres_and_speckle_is_correlated():
    # 128 pixels of 10 m cover the ground of 640 pixels of 2 m: the same scene, sampled every 5 pixels
    coarse = SyntheticScene(128, seed=1, resolution=10.0, sar_confusers=1.0)
    fine = SyntheticScene(640, seed=1, resolution=2.0, sar_confusers=1.0)
    c = coarse.label_window(np.arange(128) + 0.5, np.arange(128) + 0.5)["label"]
    f = fine.label_window(np.arange(640) + 0.5, np.arange(640) + 0.5)["label"]
    np.testing.assert_array_equal(c, f[2::5, 2::5])
    assert len(np.unique(c)) >= 4
    # default resolution cell of two pixels: neighbours correlate as in Sentinel-1 GRD (0.5-0.8 measured)
    correlated = SyntheticScene(256, seed=4, lake_threshold=0.8, noise_floor=False, looks=4.4).render(FULL)
    still = _interior(correlated["label"], WATER, margin=3)
    assert 0.55 < _lag1(correlated["sar"][0], still) < 0.85
    white = SyntheticScene(256, seed=4, lake_threshold=0.8, noise_floor=False, sar_resolution=0).render(FULL)
    assert abs(_lag1(white["sar"][0], still)) < 0.1
    assert 0.4 < _speckle_cv(white["sar"][0], still) < 0.6  # 4 looks either way
