"""Label-free SAR water mapping (engine.water): thresholds, streaming, NaN, fallbacks, real chips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window
from scipy import ndimage

from engine.raster.grid import Grid
from engine.raster.io import read_bands, write_raster
from engine.water.components import label_window, streamed_components
from engine.water.histogram import Bins, fit_two_gaussians, otsu_index
from engine.water.pseudo_labels import pseudo_labels_array, write_pseudo_labels
from engine.water.source import array_source, file_source, smooth_db
from engine.water.threshold import WaterThresholdConfig, estimate_threshold, map_water, map_water_file

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CHIPS = SHARED / "sen1floods11_s1"


def bimodal_scene(size: int = 256, seed: int = 0, std: float = 2.0):
    """Water (-20 dB) as a left strip, a lake and a river; land at -8 dB; Gaussian noise in dB."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    water = (xx < 0.25 * size) | ((xx - 0.65 * size) ** 2 + (yy - 0.6 * size) ** 2 < (0.18 * size) ** 2)
    water |= np.abs(yy - 0.2 * size - 12 * np.sin(xx / 15.0)) < 4
    db = np.where(water, -20.0, -8.0) + rng.normal(0.0, std, (size, size))
    return db.astype(np.float32), water


def iou(pred: np.ndarray, truth: np.ndarray, valid=True) -> float:
    p, t = (pred == 1) & valid, truth.astype(bool) & valid
    return float((p & t).sum() / (p | t).sum())


def test_otsu_and_mixture_on_a_known_histogram():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(-20, 2, 40000), rng.normal(-8, 2, 60000)])
    bins = Bins()
    hist = bins.count(values)
    k = otsu_index(hist, bins)
    assert abs(bins.edges[k] + 14.0) < 0.3
    mix = fit_two_gaussians(hist, bins, k)
    assert mix.means[0] == pytest.approx(-20, abs=0.1) and mix.means[1] == pytest.approx(-8, abs=0.1)
    assert mix.stds[0] == pytest.approx(2, abs=0.1) and mix.weights[0] == pytest.approx(0.4, abs=0.01)
    assert mix.ashman_d == pytest.approx(np.sqrt(2) * 12 / np.sqrt(8), abs=0.1)


@pytest.mark.parametrize("smoothing", ["none", "median"])
@pytest.mark.parametrize("tile_method", ["ki", "otsu"])
def test_synthetic_bimodal_threshold_is_recovered(smoothing, tile_method):
    # 32-px stripes: every 64-px tile is half water (-20 dB), half land (-8 dB), equal spreads,
    # so the minimum-error (Bayes) threshold is the midpoint, -14 dB
    rng = np.random.default_rng(0)
    water = (np.mgrid[:256, :256][1] // 32) % 2 == 0
    db = (np.where(water, -20.0, -8.0) + rng.normal(0.0, 3.0, water.shape)).astype(np.float32)
    mask, result = map_water(db, WaterThresholdConfig(smoothing=smoothing, tile_method=tile_method), grow=False)
    assert result.method == "split" and result.tiles_selected == 16
    assert result.threshold == pytest.approx(-14.0, abs=0.3)
    assert result.mixture.means[0] == pytest.approx(-20, abs=0.3)
    assert iou(mask, water) > (0.95 if smoothing == "none" else 0.98)


def test_blobby_scene_is_mapped_with_growing():
    db, water = bimodal_scene()
    mask, result = map_water(db)
    assert result.method == "split" and result.tiles_selected >= 5
    assert -16.0 < result.seed_threshold < result.threshold < result.grow_threshold < -11.0
    assert iou(mask, water) > 0.99


def test_streamed_result_equals_whole_array_and_reference_growing():
    db, _ = bimodal_scene(size=200, seed=2)
    db[:, 100:107] = np.nan  # a nodata stripe crossing window borders
    small = WaterThresholdConfig(tile_size=32, block=64)
    whole = WaterThresholdConfig(tile_size=32, block=4096)
    m_small, r_small = map_water(db, small)
    m_whole, r_whole = map_water(db, whole)
    assert r_small.to_dict() == r_whole.to_dict()
    assert np.array_equal(m_small, m_whole)
    # reference: label the whole smoothed image at once and keep components holding a seed
    v = smooth_db(db, "median", 5)
    with np.errstate(invalid="ignore"):
        labels, _ = ndimage.label(v < r_whole.grow_threshold, np.ones((3, 3)))
        seeded = np.unique(labels[(v < r_whole.seed_threshold) & (labels > 0)])
    expected = np.where(np.isfinite(v), np.isin(labels, seeded) & (labels > 0), 255).astype(np.uint8)
    assert np.array_equal(m_small, expected)
    assert np.array_equal(map_water(db, small, grow=False)[0], map_water(db, whole, grow=False)[0])


def test_streamed_components_match_scipy_across_borders():
    rng = np.random.default_rng(4)
    mask = ndimage.binary_opening(rng.random((90, 130)) < 0.55)
    seed = rng.random(mask.shape) < 0.002
    comps = streamed_components(130, 90, 16, lambda w: (mask[w.toslices()], seed[w.toslices()]))
    labels, n = ndimage.label(mask, np.ones((3, 3)))
    sizes = np.bincount(labels.ravel())
    ref_size = np.where(labels > 0, sizes[labels], 0)
    ref_seed = np.isin(labels, np.unique(labels[seed & mask])) & (labels > 0)
    for r in range(0, 90, 16):
        for c in range(0, 130, 16):
            win = Window(c, r, min(16, 130 - c), min(16, 90 - r))
            size, seeded = comps.pixel_stats(win, label_window(mask[win.toslices()])[0])
            assert np.array_equal(size, ref_size[win.toslices()])
            assert np.array_equal(seeded, ref_seed[win.toslices()])


def test_nan_pixels_are_nodata_and_do_not_bias_the_threshold():
    db, water = bimodal_scene(seed=5)
    db[40:90, 60:200] = np.nan
    db[::17, :] = np.nan
    mask, result = map_water(db)
    assert np.array_equal(mask == 255, np.isnan(db))
    assert result.valid_pixels == int(np.isfinite(db).sum())
    assert result.threshold == pytest.approx(-14.0, abs=1.0)
    ok = np.isfinite(db)
    assert ((mask == 1) == water)[ok].mean() > 0.98
    with pytest.raises(ValueError, match="no valid pixel"):
        map_water(np.full((64, 64), np.nan, np.float32))


def test_unimodal_scene_maps_no_water_and_says_so():
    rng = np.random.default_rng(7)
    db = (-9.0 + rng.normal(0, 2.5, (256, 256))).astype(np.float32)
    mask, result = map_water(db)
    assert result.method == "none" and not result.has_water
    assert "not bimodal" in result.note and np.isnan(result.threshold)
    assert (mask == 1).mean() == 0.0
    label, conf, report = pseudo_labels_array(db)
    assert (label == 255).all() and (conf == 0).all() and report["pixels"]["water"] == 0


def test_too_few_tiles_falls_back_to_global_otsu():
    db, water = bimodal_scene()
    mask, result = map_water(db, WaterThresholdConfig(min_tiles=1000))
    assert result.method == "global_otsu" and "tiles qualified" in result.note
    assert result.threshold == result.otsu
    assert iou(mask, water) > 0.97


def test_narrow_rivers_are_found_by_splitting_tiles():
    # two 5-px rivers: 8 % of every 64-px tile (under the 10 % surface ratio), 16 % of the 32-px
    # quarters that hold them; a small scene has too few large tiles for a split-based threshold
    rng = np.random.default_rng(3)
    xx = np.mgrid[:128, :128][1]
    water = ((xx >= 10) & (xx < 15)) | ((xx >= 74) & (xx < 79))
    db = (np.where(water, -20.0, -8.0) + rng.normal(0.0, 2.0, water.shape)).astype(np.float32)
    unsplit, result = map_water(db, WaterThresholdConfig(min_tile_size=64))
    assert result.method == "none" and (unsplit == 1).sum() == 0
    mask, result = map_water(db)
    assert result.method == "split" and "split down to 32 px" in result.note
    assert result.tiles_selected == 8 and abs(result.threshold + 14.0) < 0.5
    assert iou(mask, water) > 0.98


def test_tiles_that_split_different_things_map_no_water():
    # real airborne X-band over Rotterdam harbour: water (-15 dB) sits just under the land (-12 dB);
    # the bimodal tiles split water from quays in some places and buildings from fields in others
    # (tile thresholds -14.4 to -4.4 dB), and together they are not bimodal: no threshold is trusted
    sar = Path(__file__).resolve().parents[2] / "resources" / "sample" / "rotterdam" / "sar_masked.tif"
    mask, result = map_water(read_bands(sar, [1])[0])
    assert result.method == "none" and "split different things" in result.note
    assert result.tiles_selected >= 5 and (mask == 1).sum() == 0


def test_files_nodata_to_db_and_pseudo_label_outputs(tmp_path):
    db, water = bimodal_scene(size=128, seed=9)
    db[:10, :] = -99.0
    grid = Grid(rasterio.crs.CRS.from_epsg(32631).to_wkt(), Affine(10, 0, 500000, 0, -10, 5000000), 128, 128)
    sar = write_raster(tmp_path / "sar.tif", db, grid, nodata=-99.0)
    lin = tmp_path / "lin.tif"
    write_raster(lin, np.where(db == -99, -99, 10 ** (db / 10)).astype(np.float32), grid, nodata=-99.0)
    a = estimate_threshold(file_source(sar))
    b = estimate_threshold(file_source(lin, to_db=lambda x: 10 * np.log10(x)))
    assert a.valid_pixels == 118 * 128 and abs(a.threshold - b.threshold) <= 0.05 + 1e-9
    out = map_water_file(sar, 1, tmp_path / "water.tif")
    assert out["water_fraction"] == pytest.approx(water[10:].mean(), abs=0.02)
    report = write_pseudo_labels(sar, tmp_path / "pl.tif", tmp_path / "conf.tif")
    label = read_bands(tmp_path / "pl.tif", [1])[0]  # 255 is the nodata tag: read as NaN
    conf = read_bands(tmp_path / "conf.tif", [1])[0]
    with rasterio.open(tmp_path / "pl.tif") as src:
        assert src.dtypes[0] == "uint8" and src.nodata == 255 and src.transform == grid.transform
    assert np.isnan(label[:10]).all() and np.isnan(conf[:10]).all()
    lab = label[10:]
    assert set(np.unique(lab[np.isfinite(lab)])) <= {0.0, 1.0}
    assert (water[10:][lab == 1]).mean() > 0.995 and (~water[10:][lab == 0]).mean() > 0.995
    assert report["pixels"]["water"] + report["pixels"]["non_water"] > 0.7 * 118 * 128
    assert ((conf[10:] > 0) == np.isfinite(lab)).all() and np.nanmax(conf) <= 1.0
    with pytest.raises(ValueError, match="exists"):
        write_pseudo_labels(sar, tmp_path / "pl.tif", tmp_path / "conf2.tif")
    assert not (tmp_path / "conf2.tif").exists()


# Figures measured by scripts/eval_water_threshold.py (docs/experiments/water_threshold.md):
# IoU of plain Otsu on the raw dB histogram and of split-based + growing (defaults).
MEASURED = {
    ("India_900498", 1): (0.7707, 0.7758),
    ("India_900498", 2): (0.7220, 0.7370),
    ("Nigeria_812045", 1): (0.7693, 0.8410),
    ("Nigeria_812045", 2): (0.7429, 0.8939),
}


@pytest.mark.skipif(not CHIPS.is_dir(), reason=f"shared sample data not found at {CHIPS}")
@pytest.mark.parametrize("chip,band", sorted(MEASURED))
def test_real_chips_split_and_growing_not_worse_than_otsu(chip, band):
    db = read_bands(CHIPS / f"{chip}_S1Hand.tif", [band])[0]
    truth = read_bands(CHIPS / f"{chip}_LabelHand.tif", [1])[0]
    valid = np.isfinite(db) & (truth >= 0)
    raw = estimate_threshold(array_source(db), WaterThresholdConfig(smoothing="none"))
    with np.errstate(invalid="ignore"):
        otsu = (db < raw.otsu).astype(np.uint8)
    grown, result = map_water(db)
    iou_otsu, iou_grow = (iou(m, truth == 1, valid) for m in (otsu, grown))
    expected_otsu, expected_grow = MEASURED[(chip, band)]
    assert result.method == "split"
    assert iou_otsu == pytest.approx(expected_otsu, abs=0.003)
    assert iou_grow == pytest.approx(expected_grow, abs=0.003)
    assert iou_grow >= iou_otsu - 0.01


@pytest.mark.skipif(not CHIPS.is_dir(), reason=f"shared sample data not found at {CHIPS}")
def test_real_chip_pseudo_label_precision():
    db = read_bands(CHIPS / "Nigeria_812045_S1Hand.tif", [1])[0]
    truth = read_bands(CHIPS / "Nigeria_812045_LabelHand.tif", [1])[0]
    label, conf, report = pseudo_labels_array(db)
    valid = np.isfinite(db) & (truth >= 0)
    water, land = (label == 1) & valid, (label == 0) & valid
    # measured: water precision 0.983, non-water precision 0.904, coverage 0.877
    assert (truth[water] == 1).mean() == pytest.approx(0.983, abs=0.003)
    assert (truth[land] == 0).mean() == pytest.approx(0.904, abs=0.003)
    assert ((label != 255) & valid).sum() / valid.sum() == pytest.approx(0.877, abs=0.003)
    assert report["pixels"]["nodata"] == int(np.isnan(db).sum())
    assert np.array_equal(conf > 0, label != 255)


def test_calibrated_sigma0_caps_the_water_mode_so_dry_fields_map_no_water():
    # the dry BigEarthNet pasture chips hold tiles whose dark fields (-12 to -14 dB VV) split from
    # the bright ones; read as sigma0 no such split is open water, while every real water scene's
    # threshold stays where it was (the four Sentinel-1 scenes: -12.8 to -16.1 dB)
    from engine.water.threshold import WATER_MEAN_CAP_DB, threshold_config

    assert threshold_config(False).max_water_mean_db == WATER_MEAN_CAP_DB
    assert threshold_config(True).max_water_mean_db is None  # relative levels: no level to cap at
    dry = sorted((SHARED / "bigearthnet").rglob("*_VV.tif"))
    assert len(dry) == 3
    uncapped = [estimate_threshold(file_source(p)).method for p in dry]
    assert uncapped.count("split") == 2  # without the cap two dry chips get a water threshold
    assert all(estimate_threshold(file_source(p), threshold_config()).method == "none" for p in dry)
    for chip, expected in (("Nigeria_812045_S1Hand.tif", -16.1), ("India_900498_S1Hand.tif", -12.8)):
        result = estimate_threshold(file_source(CHIPS / chip), threshold_config())
        assert result.method == "split" and result.threshold == pytest.approx(expected, abs=0.1)
