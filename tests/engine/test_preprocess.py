"""SAR and optical chains, the NaN-aware Lee filter and the robust normalisation record."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from engine.config import NormalizationRecord, OpticalPreprocessConfig, SarPreprocessConfig
from engine.data.raster_ops import preprocess_raster
from engine.preprocess.normalize import (
    apply_normalization,
    compute_normalization,
    load_record,
    record_from_features,
    sample_features,
    save_record,
)
from engine.preprocess.pipeline import InputPreprocessor
from engine.preprocess.sar import lee_filter, sar_to_features
from engine.raster.grid import grid_of, read_on_grid
from engine.raster.io import iter_windows, read_bands


def test_lee_filter_smooths_speckle_keeps_edges_and_ignores_nan():
    rng = np.random.default_rng(0)
    looks = 4.0
    truth = np.where(np.arange(200)[None, :] < 100, 0.01, 1.0) * np.ones((200, 1))
    img = (truth * rng.gamma(looks, 1 / looks, truth.shape)).astype(np.float32)
    img[150:170, 20:40] = np.nan
    out = lee_filter(img, window=7, looks=looks)
    flat = out[10:140, 10:90]
    assert np.std(img[10:140, 10:90]) / 0.01 > 0.45  # speckle of 4 looks: coefficient of variation 0.5
    assert np.std(flat) / np.mean(flat) < 0.25 and abs(np.mean(flat) / 0.01 - 1) < 0.03
    assert out[:, 90:97].mean() < 0.05 and out[:, 103:110].mean() > 0.5  # the step survives
    assert np.array_equal(np.isnan(out), np.isnan(img))  # NaN stays NaN and does not spread
    with pytest.raises(ValueError, match="odd"):
        lee_filter(img, window=6)


def test_sar_chain_steps_are_the_formulas():
    dn = np.full((1, 20, 20), 40.0, np.float32)
    dn[0, 0, 0] = 0.0
    cfg = SarPreprocessConfig(units="dn", calibration_constant=100.0, incidence_normalize=True,
                              incidence_angle_deg=60.0, lee_filter=False, to_db=True)
    out = sar_to_features(dn, cfg)
    assert out[0, 5, 5] == pytest.approx(10 * np.log10(40.0**2 / 100.0 / 0.5), abs=1e-4)
    assert out[0, 0, 0] == pytest.approx(10 * np.log10(cfg.db_floor))  # zeros hit the floor, not -inf
    angle = np.full((20, 20), 60.0, np.float32)
    per_pixel = sar_to_features(dn, SarPreprocessConfig(units="dn", calibration_constant=100.0,
                                                        incidence_normalize=True, incidence_band=2,
                                                        lee_filter=False), incidence=angle)
    np.testing.assert_allclose(per_pixel, out, atol=1e-5)
    db = np.full((1, 9, 9), -12.5, np.float32)
    db[0, 4, 4] = np.nan
    # dB input goes to linear power for the Lee filter and back: a flat area is unchanged
    back = sar_to_features(db, SarPreprocessConfig(units="db"))
    np.testing.assert_allclose(back[np.isfinite(back)], -12.5, atol=1e-4)
    assert np.isnan(back[0, 4, 4]) and np.isfinite(back).sum() == 80
    # amplitude and linear power of the same backscatter give the same features
    power = np.full((1, 9, 9), 10 ** -1.25, np.float32)
    for units, raw in (("linear", power), ("amplitude", np.sqrt(power))):
        np.testing.assert_allclose(sar_to_features(raw, SarPreprocessConfig(units=units)), -12.5, atol=1e-4)
    with pytest.raises(ValueError, match="incidence"):
        sar_to_features(dn, SarPreprocessConfig(units="linear", incidence_normalize=True))
    with pytest.raises(ValueError, match="not resolved"):
        sar_to_features(dn, SarPreprocessConfig())
    with pytest.raises(ValueError, match="calibration constant"):
        sar_to_features(dn, SarPreprocessConfig(units="dn"))


def test_windowed_preprocessing_equals_the_whole_raster_across_borders(shared_data, tmp_path):
    sar = shared_data / "spacenet6_rotterdam" / "sar_masked.tif"
    cfg = SarPreprocessConfig(units="db", lee_window=7, normalization="scene")
    result = preprocess_raster(sar, tmp_path / "p.tif", [1, 4], cfg, record_path=tmp_path / "r.json", block=48)
    assert result["units"] == "db"
    whole = apply_normalization(sar_to_features(read_bands(sar, [1, 4]), cfg), load_record(tmp_path / "r.json"))
    windowed = read_bands(tmp_path / "p.tif", [1, 2])
    np.testing.assert_array_equal(windowed, whole)  # bit-identical, NaN footprint included
    assert abs(np.isnan(windowed).mean() - 0.3915) < 1e-3 and np.nanmin(windowed) == 0 and np.nanmax(windowed) == 1
    assert [b["band"] for b in result["bands"]] == [1, 4]
    # The same through InputPreprocessor on halo windows read with read_on_grid (training/inference path).
    opt = shared_data / "spacenet6_rotterdam" / "rgb_unmasked.tif"
    grid = grid_of(sar)
    ocfg = OpticalPreprocessConfig(units="uint8", scale=1 / 255)
    pre = InputPreprocessor(cfg, ocfg, load_record(tmp_path / "r.json"), compute_normalization(opt, [1, 2, 3], ocfg))
    assert pre.halo == 3
    for window, padded in iter_windows(200, 200, 64, pre.halo):
        o, s = pre(read_on_grid(opt, [1, 2, 3], grid, padded), read_on_grid(sar, [1, 4], grid, padded))
        r, c, h, w = int(window.row_off), int(window.col_off), int(window.height), int(window.width)
        np.testing.assert_array_equal(s, whole[:, r : r + h, c : c + w])
        assert o.shape == (3, h, w) and 0 <= o.min() and o.max() <= 1


def test_percentiles_from_a_bounded_sample_match_the_whole_raster(shared_data, tmp_path):
    landsat = shared_data / "landsat_rgb" / "RGB.byte.tif"
    full = read_bands(landsat, [1, 2, 3])
    small = OpticalPreprocessConfig(units="custom", sample_size=20_000)  # raw values: scale 1
    record = compute_normalization(landsat, [1, 2, 3], small, seed=1)
    for i, band in enumerate(record.bands):
        values = full[i][np.isfinite(full[i])]  # the collar (nodata 0) is excluded
        p2, p98 = np.percentile(values, [2, 98])
        assert band.nodata == 0 and band.p_low >= 1
        assert abs(band.p_low - p2) <= 2 and abs(band.p_high - p98) <= 3
    norm = apply_normalization(full, record)
    assert np.array_equal(np.isnan(norm), np.isnan(full)) and np.nanmin(norm) == 0 and np.nanmax(norm) == 1
    assert 0.01 < np.nanmean(norm[0] == 0) < 0.04  # about 2 % clipped low
    # The record is JSON with the documented fields and reads back identically.
    path = save_record(record, tmp_path / "optical.json")
    data = json.loads(path.read_text())
    assert data["modality"] == "optical" and set(data["bands"][0]) == {"band", "p_low", "p_high", "steps", "nodata"}
    assert data["bands"][0]["steps"] == ["robust(2,98)"]
    assert load_record(path) == record
    (tmp_path / "bad.json").write_text('{"modality": "optical", "bandz": []}')
    with pytest.raises(ValueError, match="bad.json: not a normalisation record"):
        load_record(tmp_path / "bad.json")


def test_sentinel1_db_records_and_all_nodata_errors(shared_data):
    vv = next((shared_data / "bigearthnet").rglob("*87_48_VV.tif"))
    record = compute_normalization(vv, [1], SarPreprocessConfig(units="db"))
    band = record.bands[0]
    assert record.modality == "sar" and -25 < band.p_low < band.p_high < 5
    assert band.steps == ("lee(window=7,looks=1)", "db", "robust(2,98)")  # units are per file, not steps
    empty = np.full((1, 8, 8), np.nan, np.float32)
    with pytest.raises(ValueError, match="scene.tif: band 2 has no valid pixels"):
        record_from_features(empty, OpticalPreprocessConfig(), [2], source="scene.tif")
    with pytest.raises(ValueError, match="record has 1 band"):
        apply_normalization(np.zeros((2, 4, 4), np.float32), NormalizationRecord(bands=record.bands))
    with pytest.raises(ValueError, match="no SAR normalisation record"):
        InputPreprocessor(SarPreprocessConfig(units="db")).sar(np.zeros((1, 8, 8), np.float32))
    with rasterio.open(vv) as src:
        assert src.count == 1
    with pytest.raises(ValueError, match="band 2 does not exist"):
        compute_normalization(vv, [2], SarPreprocessConfig(units="db"))
    assert read_bands(vv, [1], Window(0, 0, 4, 4)).shape == (1, 4, 4)


def test_sample_windows_without_a_halo_keep_exactly_the_streamed_values(tmp_path):
    """Sample windows are read without a halo (one 256-block each); the Lee filter's edge pixels
    inside the raster are dropped, so every sampled dB value equals the whole-raster one."""
    rng = np.random.default_rng(3)
    power = (rng.gamma(4.0, 0.25, (700, 650)) * np.where(np.arange(650) < 300, 0.02, 0.3)).astype(np.float32)
    path = tmp_path / "sar.tif"
    profile = dict(driver="GTiff", width=650, height=700, count=1, dtype="float32", tiled=True,
                   blockxsize=256, blockysize=256, transform=rasterio.transform.from_origin(0, 0, 10, 10))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(power, 1)
    cfg = SarPreprocessConfig(units="linear", sample_size=4 * 256 * 256)  # at least 16 windows: all 9
    whole = sar_to_features(read_bands(path, [1]), cfg)[0]
    table, _ = sample_features(path, [1], cfg, seed=2)
    sampled = table[0][np.isfinite(table[0])]
    # the nine 256-grid windows less the 3-pixel rims between them: every kept value is exact
    assert sampled.size == (650 - 2 * 2 * 3) * (700 - 2 * 2 * 3)
    assert np.isin(sampled, whole).all()


def test_a_band_without_contrast_is_read_at_its_place_on_the_unit_scale():
    from engine.config import BandNormalization, NormalizationRecord
    from engine.preprocess.normalize import apply_normalization, widen_narrow_bands

    record = NormalizationRecord(modality="optical", bands=(
        BandNormalization(1, 1.0, 1.0),  # saturated white: every pixel at 255
        BandNormalization(2, 0.04, 0.05),  # a sea: narrow and dark
        BandNormalization(3, 0.02, 0.40),  # a landscape: kept as it is
    ))
    widened = widen_narrow_bands(record, 16 / 255)
    assert [(b.p_low, b.p_high) for b in widened.bands][::2] == [(0.0, 1.0), (0.02, 0.40)]
    x = np.array([1.0, 0.045, 0.21], dtype=np.float32)[:, None, None]
    out = apply_normalization(x, widened)[:, 0, 0]
    assert out[0] == 1.0  # white, where the empty stretch gave 0 (black: water to the network)
    assert out[1] < 0.2  # the sea stays dark instead of being stretched to mid-grey
    assert out[2] == pytest.approx(0.5, abs=1e-6)
    # continuous: a span just under the limit moves its range by almost nothing
    nearly = widen_narrow_bands(NormalizationRecord(modality="optical", bands=(
        BandNormalization(1, 0.5, 0.5 + 0.999 * 16 / 255),)), 16 / 255).bands[0]
    assert abs(nearly.p_low - 0.5) < 1e-3


def test_the_share_of_a_picture_clipped_white_counts_pixels_white_in_every_band():
    from engine.config import BandNormalization, NormalizationRecord
    from engine.preprocess.normalize import clipped_white_share, read_from_black

    top = 254.5 / 255
    table = np.array([[1.0, 1.0, 1.0, 0.2, np.nan],   # white, white, white in red only, dark, no data
                      [1.0, 1.0, 0.5, 0.2, 0.3],
                      [1.0, 1.0, 0.5, 0.2, 0.3]])
    assert clipped_white_share(table, top) == pytest.approx(2 / 4)  # the NaN column is left out
    assert clipped_white_share(np.full((3, 4), np.nan), top) == 0.0
    record = read_from_black(NormalizationRecord(modality="optical", bands=(BandNormalization(1, 0.1, 1.0),)))
    assert (record.bands[0].p_low, record.bands[0].p_high) == (0.0, 1.0)
