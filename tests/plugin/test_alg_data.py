"""Data-preparation algorithms on synthetic and real rasters: synthscene, alignpair, preprocesssar,
normalizeoptical."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from qgis.core import QgsPalettedRasterRenderer, QgsProcessingException, QgsRasterLayer

ROOT = Path(__file__).resolve().parents[2]


def _run(alg, params):
    import processing

    return processing.run(f"sgcad:{alg}", params)


def _read(path, band=None):
    with rasterio.open(path) as src:
        return src.read(band) if band else src.read()


def test_synthscene_is_seeded_styled_and_refuses_to_overwrite(sgcad_provider, tmp_path):
    first = _run("synthscene", {"SIZE": 64, "SEED": 7, "OUTPUT_FOLDER": str(tmp_path / "a")})
    second = _run("synthscene", {"SIZE": 64, "SEED": 7, "OUTPUT_FOLDER": str(tmp_path / "b")})
    for key in ("OPTICAL", "SAR", "LABEL"):
        np.testing.assert_array_equal(_read(first[key]), _read(second[key]))
    assert Path(first["LABEL_VECTOR"]).is_file() and 0 < first["WATER_FRACTION"] < 1
    fractions = json.loads(first["CLASS_FRACTIONS"])
    assert set(fractions) == {"farmland", "city", "village", "water", "forest", "road"}
    assert fractions["water"] == pytest.approx(first["WATER_FRACTION"])
    label = QgsRasterLayer(first["LABEL"], "label")
    assert isinstance(label.renderer(), QgsPalettedRasterRenderer)
    assert "3 water" in [c.label for c in label.renderer().classes()]
    del label
    with pytest.raises(QgsProcessingException, match="exists"):
        _run("synthscene", {"SIZE": 64, "SEED": 8, "OUTPUT_FOLDER": str(tmp_path / "a")})
    np.testing.assert_array_equal(_read(first["SAR"]), _read(second["SAR"]))  # untouched


def test_alignpair_keeps_pixels_on_a_shared_grid_and_resamples_on_request(sgcad_provider, shared_data, tmp_path):
    pair = shared_data / "spacenet6_rotterdam"
    optical, sar = str(pair / "rgb_unmasked.tif"), str(pair / "sar_masked.tif")
    same = _run(
        "alignpair",
        {
            "OPTICAL": optical,
            "SAR": sar,
            "SAR_BANDS": [4, 1],
            "BLOCK": 64,
            "OUTPUT_OPTICAL": str(tmp_path / "o.tif"),
            "OUTPUT_SAR": str(tmp_path / "s.tif"),
        },
    )
    assert (same["WIDTH"], same["HEIGHT"]) == (200, 200)
    # the grid is the SAR's own: its pixels are copied, NaN footprint included, bands in the order asked
    aligned_sar, raw_sar = _read(same["OUTPUT_SAR"]), _read(sar)[[3, 0]]
    np.testing.assert_array_equal(aligned_sar, raw_sar)
    # the optical's pixels are 0.00007 m smaller: resampled bilinearly, so nearly equal
    aligned_optical, raw_optical = _read(same["OUTPUT_OPTICAL"]), _read(optical).astype(np.float32)
    assert np.isfinite(aligned_optical).all() and np.abs(aligned_optical - raw_optical).mean() < 0.5

    coarse = _run(
        "alignpair",
        {
            "OPTICAL": optical,
            "SAR": sar,
            "SAR_BANDS": [1],
            "RESOLUTION": 9.0,
            "CRS": "EPSG:32631",
            "OUTPUT_OPTICAL": str(tmp_path / "o9.tif"),
            "OUTPUT_SAR": str(tmp_path / "s9.tif"),
        },
    )
    assert (coarse["WIDTH"], coarse["HEIGHT"]) == (99, 99)  # 899.9 m of overlap in whole 9 m pixels
    with rasterio.open(coarse["OUTPUT_SAR"]) as src:
        assert src.res == (9.0, 9.0) and src.count == 1 and src.crs.to_epsg() == 32631

    with pytest.raises(QgsProcessingException, match="do not overlap"):
        _run(
            "alignpair",
            {
                "OPTICAL": str(shared_data / "landsat_rgb" / "RGB.byte.tif"),
                "SAR": sar,
                "OUTPUT_OPTICAL": str(tmp_path / "x.tif"),
                "OUTPUT_SAR": str(tmp_path / "y.tif"),
            },
        )
    with pytest.raises(QgsProcessingException, match=r"band\(s\) \[5\] do not exist"):
        _run(
            "alignpair",
            {
                "OPTICAL": optical,
                "SAR": sar,
                "SAR_BANDS": [5],
                "OUTPUT_OPTICAL": str(tmp_path / "x.tif"),
                "OUTPUT_SAR": str(tmp_path / "y.tif"),
            },
        )
    with pytest.raises(QgsProcessingException, match="geographic"):
        _run(
            "alignpair",
            {
                "OPTICAL": optical,
                "SAR": sar,
                "CRS": "EPSG:4326",
                "OUTPUT_OPTICAL": str(tmp_path / "x.tif"),
                "OUTPUT_SAR": str(tmp_path / "y.tif"),
            },
        )
    assert not (tmp_path / "x.tif").exists() and not (tmp_path / "y.tif").exists()


def test_preprocesssar_by_windows_equals_the_whole_raster_chain(scene, tmp_path):
    from sgcad_qgis.engine.config import NormalizationRecord, SarPreprocessConfig, from_dict
    from sgcad_qgis.engine.preprocess.normalize import apply_normalization, features

    result = _run(
        "preprocesssar",
        {
            "SAR": scene["sar"],
            "LEE_WINDOW": 5,
            "BLOCK": 64,
            "OUTPUT": str(tmp_path / "sar_pre.tif"),
            "OUTPUT_RECORD": str(tmp_path / "sar_record.json"),
        },
    )
    record = from_dict(NormalizationRecord, json.loads(Path(result["OUTPUT_RECORD"]).read_text()))
    band = record.bands[0]
    assert band.p_low < band.p_high and band.steps == ("lee(window=5,looks=1)", "db", "robust(2,98)")
    cfg = SarPreprocessConfig(units="linear", lee_window=5)  # the synthetic SAR is sigma0
    raw = np.pad(_read(scene["sar"]).astype(np.float32), ((0, 0), (2, 2), (2, 2)), constant_values=np.nan)
    whole = apply_normalization(features(raw, cfg)[:, 2:-2, 2:-2], record)  # one pass over the whole raster
    out = _read(result["OUTPUT"])
    np.testing.assert_allclose(out, whole, atol=1e-6)
    valid = np.isfinite(out)
    assert valid.mean() > 0.99 and out[valid].min() == 0.0 and out[valid].max() == 1.0
    assert 0.01 < (out[valid] == 0).mean() < 0.03  # 2 % of the pixels lie below the 2nd percentile


def test_preprocesssar_on_real_db_quad_pol_keeps_the_footprint(sgcad_provider, shared_data, tmp_path):
    sar = str(shared_data / "spacenet6_rotterdam" / "sar_masked.tif")
    result = _run(
        "preprocesssar",
        {"SAR": sar, "SAR_BANDS": [1, 4], "SAR_UNITS": "db", "OUTPUT": str(tmp_path / "pre.tif")},
    )
    out, raw = _read(result["OUTPUT"]), _read(sar)[[0, 3]]
    assert out.shape == (2, 200, 200)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(raw))
    assert np.nanmin(out) == 0.0 and np.nanmax(out) == 1.0
    assert "OUTPUT_RECORD" not in result


def test_preprocesssar_refuses_bad_settings(scene, tmp_path):
    base = {"SAR": scene["sar"], "OUTPUT": str(tmp_path / "p.tif")}
    with pytest.raises(QgsProcessingException, match="odd number"):
        _run("preprocesssar", {**base, "LEE_WINDOW": 6})
    with pytest.raises(QgsProcessingException, match="lower percentile"):
        _run("preprocesssar", {**base, "LOW_PERCENTILE": 90, "HIGH_PERCENTILE": 10})
    with pytest.raises(QgsProcessingException, match="no incidence-angle band 3"):
        _run("preprocesssar", {**base, "INCIDENCE_BAND": 3})
    assert not (tmp_path / "p.tif").exists()


def test_normalizeoptical_scales_real_landsat_and_keeps_its_nodata_collar(sgcad_provider, shared_data, tmp_path):
    landsat = str(shared_data / "landsat_rgb" / "RGB.byte.tif")
    result = _run(
        "normalizeoptical",
        {
            "OPTICAL": landsat,
            "OPTICAL_BANDS": [3, 2, 1],
            "BLOCK": 256,
            "OUTPUT": str(tmp_path / "rgb01.tif"),
            "OUTPUT_RECORD": str(tmp_path / "rgb.json"),
        },
    )
    out, raw = _read(result["OUTPUT"]), _read(landsat)[[2, 1, 0]]
    collar = raw == 0  # the file's nodata value
    assert collar.mean() > 0.2
    np.testing.assert_array_equal(np.isnan(out), collar)
    record = json.loads(Path(result["OUTPUT_RECORD"]).read_text())
    assert [b["band"] for b in record["bands"]] == [3, 2, 1]
    for i, b in enumerate(record["bands"]):
        p2, p98 = np.percentile(raw[i][~collar[i]], [2, 98])
        # 8-bit values detected: the record is in reflectance-like units (value / 255)
        assert b["p_low"] == pytest.approx(p2 / 255, abs=1 / 255)
        assert b["p_high"] == pytest.approx(p98 / 255, abs=1 / 255)
        valid = out[i][~collar[i]]
        assert 0.0 <= valid.min() and valid.max() <= 1.0


def test_rasterizelabels_reproduces_the_label_raster_and_blanks_conflicts(scene, tmp_path):
    result = _run(
        "rasterizelabels",
        {
            "INPUT": scene["label_vector"],
            "CLASS_FIELD": "class_name",
            "REFERENCE": scene["sar"],
            "BLOCK": 64,
            "OUTPUT": str(tmp_path / "l.tif"),
        },
    )
    np.testing.assert_array_equal(_read(result["OUTPUT"], 1), _read(scene["label"], 1))
    assert result["CONFLICT_PIXELS"] == 0 and result["LABELLED_PIXELS"] == 192 * 192
    assert isinstance(QgsRasterLayer(result["OUTPUT"], "l").renderer(), QgsPalettedRasterRenderer)

    from qgis.core import QgsFeature, QgsField, QgsGeometry, QgsVectorLayer
    from qgis.PyQt.QtCore import QVariant

    drawn = QgsVectorLayer("Polygon?crs=EPSG:32631", "drawn", "memory")
    drawn.dataProvider().addAttributes([QgsField("cls", QVariant.String)])
    drawn.updateFields()
    for wkt, value in (
        ("POLYGON((590000 5760000,590040 5760000,590040 5759960,590000 5759960,590000 5760000))", "water"),
        ("POLYGON((590020 5760000,590060 5760000,590060 5759960,590020 5759960,590020 5760000))", "4"),
    ):  # overlaps the first by 10 x 20 pixels, another class (given as an id)
        feature = QgsFeature(drawn.fields())
        feature.setGeometry(QgsGeometry.fromWkt(wkt))
        feature.setAttributes([value])
        drawn.dataProvider().addFeatures([feature])
    out = _run(
        "rasterizelabels",
        {"INPUT": drawn, "CLASS_FIELD": "cls", "REFERENCE": scene["sar"], "OUTPUT": str(tmp_path / "drawn.tif")},
    )
    labels = _read(out["OUTPUT"], 1)
    assert (labels[:20, :10] == 3).all() and (labels[:20, 20:30] == 4).all() and (labels[:20, 10:20] == 255).all()
    assert out["CONFLICT_PIXELS"] == 200 and out["LABELLED_PIXELS"] == 400
    drawn.dataProvider().addAttributes([QgsField("bad", QVariant.String)])
    with pytest.raises(QgsProcessingException, match="no field 'klass'"):
        _run(
            "rasterizelabels",
            {"INPUT": drawn, "CLASS_FIELD": "klass", "REFERENCE": scene["sar"], "OUTPUT": str(tmp_path / "x.tif")},
        )


def test_exportpatches_writes_a_leakage_free_patch_set_that_trains(scene, tmp_path):
    from qgis.core import QgsVectorLayer

    result = _run(
        "exportpatches",
        {
            "OPTICAL": scene["optical"],
            "SAR": scene["sar"],
            "LABELS": scene["label"],
            "PATCH_SIZE": 64,
            "OUTPUT_FOLDER": str(tmp_path / "set"),
        },
    )
    manifest = json.loads(Path(result["MANIFEST"]).read_text())
    assert result["TILE_SIZE_USED"] < 4096 and manifest["warnings"]  # shrunk for a small scene, and said so
    assert min(result["TRAIN_PATCHES"], result["VAL_PATCHES"], result["TEST_PATCHES"]) > 0
    assert set(manifest["sources"]) == {"optical", "sar", "label"}
    windows = {s: [p["window"] for p in manifest["patches"] if p["split"] == s] for s in ("train", "val", "test")}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        for wa in windows[a]:
            for wb in windows[b]:
                assert not (
                    wa[0] < wb[0] + wb[2] and wb[0] < wa[0] + wa[2] and wa[1] < wb[1] + wb[3] and wb[1] < wa[1] + wa[3]
                ), (a, b, wa, wb)
    outlines = QgsVectorLayer(result["PATCHES"], "patches")
    assert outlines.featureCount() == len(manifest["patches"])
    assert {f["split"] for f in outlines.getFeatures()} == {"train", "val", "test"}
    del outlines
    with pytest.raises(QgsProcessingException, match="already holds a patch set"):
        _run(
            "exportpatches",
            {
                "OPTICAL": scene["optical"],
                "SAR": scene["sar"],
                "LABELS": scene["label"],
                "PATCH_SIZE": 64,
                "OUTPUT_FOLDER": str(tmp_path / "set"),
            },
        )
    trained = _run(
        "trainstudent",
        {
            "PATCH_SET": result["OUTPUT_FOLDER"],
            "EPOCHS": 1,
            "BATCH_SIZE": 4,
            "LEE_WINDOW": 3,
            "THREADS": 2,
            "DEVICE": 1,
            "MODEL_CONFIG": json.dumps(
                {
                    "widths": [8, 8, 16, 16],
                    "blocks_per_stage": [1, 1, 1, 1],
                    "decoder_channels": 8,
                    "attention_dim": 8,
                    "pool_size": 4,
                }
            ),
            "OUTPUT_FOLDER": str(tmp_path / "run"),
        },
    )
    assert Path(trained["OUTPUT_MODEL"]).is_file()


def test_stackbands_makes_one_band_per_file_products_readable_by_role(sgcad_provider, shared_data, tmp_path):
    # real BigEarthNet files, one band each and listed out of order: Sentinel-2 B02 B03 B04 at 10 m with B8A at
    # 20 m, and Sentinel-1 VH before VV; the stacks carry the files' names, so the models find their bands by role
    from sgcad_qgis.engine.inputs.bands import choose_bands, generic_mapping
    from sgcad_qgis.engine.water.experts import choose_water_expert

    s2 = next((shared_data / "bigearthnet" / "BigEarthNet-S2-Example").glob("S2A_*_87_48"))
    s1 = next((shared_data / "bigearthnet" / "BigEarthNet-S1-Example").glob("S1A_*_87_48"))
    optical = _run("stackbands", {"INPUTS": [str(next(s2.glob(f"*_{b}.tif"))) for b in ("B02", "B03", "B04", "B8A")],
                                  "OUTPUT": str(tmp_path / "s2.tif")})["OUTPUT"]
    sar = _run("stackbands", {"INPUTS": [str(next(s1.glob(f"*_{p}.tif"))) for p in ("VH", "VV")],
                              "OUTPUT": str(tmp_path / "s1.tif")})["OUTPUT"]
    with rasterio.open(optical) as src:
        assert src.count == 4 and src.res == (10.0, 10.0) and src.descriptions[2].endswith("_B04_b1")
        b04 = src.read(3)
    with rasterio.open(next(s2.glob("*_B04.tif"))) as src:
        np.testing.assert_array_equal(b04, src.read(1).astype(np.float32))  # same grid: the values themselves
    assert choose_bands(optical, generic_mapping("optical"), "optical").bands == (3, 2, 1)  # red, green, blue
    choice = choose_water_expert(ROOT / "resources" / "models" / "sgcad_teacher.safetensors", sar)
    assert choice.dual_pol and choice.sar_bands == (2, 1) and "found by their names" in choice.reason
    with pytest.raises(QgsProcessingException, match="would replace the s2 input"):
        _run("stackbands", {"INPUTS": [optical], "OUTPUT": optical, "OVERWRITE": True})
    with pytest.raises(QgsProcessingException, match="exists"):
        _run("stackbands", {"INPUTS": [sar], "OUTPUT": optical})
