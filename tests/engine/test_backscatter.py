"""Sigma or gamma nought: terrain-flattened gamma nought is read as the sigma nought the models learnt."""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from engine.cli import build_parser, main
from engine.config import SarPreprocessConfig
from engine.inference.sar_only import water_probability
from engine.inputs.backscatter import detect_backscatter
from engine.preprocess.sar import GAMMA0_INCIDENCE_DEG, sar_to_features

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from eval_finetune_real import iou, scenes, water_labels  # noqa: E402

TEACHER = ROOT / "resources" / "models" / "sgcad_teacher.safetensors"
SHARED = ROOT.parent / "shared" / "data"


def _raster(path: Path, description: str = "", tags=None) -> Path:
    profile = dict(driver="GTiff", width=8, height=8, count=1, dtype="float32", crs="EPSG:32631",
                   transform=rasterio.Affine(20, 0, 600000, 0, -20, 4800000))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((1, 8, 8), -12.0, np.float32))
        if description:
            dst.set_band_description(1, description)
        if tags:
            dst.update_tags(**tags)
    return path


@pytest.mark.parametrize("name, description, tags, expected, how", [
    ("S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif", "", None, "gamma0", "metadata"),  # pyroSAR RTC
    ("OPERA_L2_RTC-S1_T037-078596-IW2_20231001T000000Z_S1A_30_v1.0_VV.tif", "", None, "gamma0", "metadata"),
    ("S1A_IW_20230101T000000_DVP_RTC30_G_gpuned_1A2B_VV.tif", "", None, "gamma0", "metadata"),  # ASF HyP3
    ("S1A_IW_20230101T000000_DVP_RTC30_S_gpuned_1A2B_VV.tif", "", None, "sigma0", "metadata"),  # HyP3 sigma
    ("subset.tif", "Gamma0_VV", None, "gamma0", "metadata"),  # SNAP terrain flattening
    ("subset_rtc.tif", "Sigma0_VV", None, "sigma0", "metadata"),  # the band's name wins over the file's
    # a SNAP export: the band is Gamma0_VV, its processing history names both
    ("subset.tif", "Gamma0_VV", {"history": "Calibration: Sigma0; Terrain-Flattening: Gamma0"}, "gamma0", "metadata"),
    ("scene.tif", "", {"backscatter": "gamma nought, terrain flattened"}, "gamma0", "metadata"),
    ("India_900498_S1Hand.tif", "", None, "sigma0", "default"),  # Sen1Floods11: nothing said
    ("S1A_IW_GRDH_1SDV_20170613T165043_33UUP_61_39_VV.tif", "VV", None, "sigma0", "default"),  # BigEarthNet
])
def test_the_raster_says_which_backscatter_it_holds(tmp_path, name, description, tags, expected, how):
    decision = detect_backscatter(_raster(tmp_path / name, description, tags), [1])
    assert (decision.convention, decision.how) == (expected, how)
    assert ("gamma nought" in decision.line()) is (expected == "gamma0")


def test_the_user_says_it_instead_and_a_wrong_word_is_refused(tmp_path):
    path = _raster(tmp_path / "x_geo_norm_db.tif")
    assert detect_backscatter(path, [1], "sigma0").convention == "sigma0"
    assert detect_backscatter(_raster(tmp_path / "plain.tif"), [1], "gamma0").how == "given"
    with pytest.raises(ValueError, match="must be one of"):
        detect_backscatter(path, [1], "beta0")


def test_gamma_nought_is_brought_down_by_the_cosine_of_the_reference_angle():
    db = np.array([[[-20.0, -10.0]]], np.float32)
    expected = 10 * math.log10(math.cos(math.radians(GAMMA0_INCIDENCE_DEG)))  # -0.977 dB
    for lee in (False, True):  # through linear power (Lee) and on the dB shortcut
        cfg = SarPreprocessConfig(units="db", lee_filter=lee, lee_window=1, robust_normalize=False)
        sigma = sar_to_features(db, cfg)
        gamma = sar_to_features(db, SarPreprocessConfig(**{**cfg.__dict__, "backscatter": "gamma0"}))
        assert np.allclose(gamma - sigma, expected, atol=1e-4)
    power = sar_to_features(np.array([[[0.01]]], np.float32), SarPreprocessConfig(
        units="linear", backscatter="gamma0", lee_filter=False, to_db=False, robust_normalize=False))
    assert power[0, 0, 0] == pytest.approx(0.01 * math.cos(math.radians(37.0)), rel=1e-5)


def test_the_rhone_read_as_gamma_nought_finds_its_canal_basin(tmp_path, capsys):
    """The lower Rhône (pyroSAR RTC gamma nought): its evaluation polygons 91.0 read as sigma nought,
    98.3 as gamma nought (Otsu on the band: 95.5); a Sen1Floods11 chip, sigma nought, is unchanged."""
    rhone = scenes()["rhone"]
    truth = water_labels(rhone, "eval")
    scores, lines = {}, {}
    for reading in ("auto", "sigma0"):
        result = water_probability(rhone["sar"], TEACHER, tmp_path / f"{reading}.tif", sar_backscatter=reading)
        with rasterio.open(result["path"]) as src:
            scores[reading] = iou(src.read(1) >= 0.5, truth)
        lines[reading] = " ".join(result["inputs"]["lines"])
    assert scores["auto"] > 0.975 and scores["sigma0"] < 0.92, scores
    assert "gamma nought" in lines["auto"] and "gamma nought" not in lines["sigma0"]
    # the command line passes the user's word, and a copy named as sigma nought is read as it is
    assert build_parser().parse_args(["water", "--sar", "s", "--out", "o", "--sar-backscatter", "gamma0"]
                                     ).sar_backscatter == "gamma0"
    plain = tmp_path / "rhone_vv_db.tif"
    shutil.copy(rhone["sar"], plain)
    for name, extra in (("named", ["--sar-backscatter", "gamma0"]), ("plain", [])):
        assert main(["water", "--sar", str(plain), "--out", str(tmp_path / name), "--threads", "1"] + extra) == 0
    shares = {}
    for name in ("named", "plain"):
        with rasterio.open(tmp_path / name / "water.tif") as src:
            water = src.read(1)
        shares[name] = float((water == 1).sum() / (water != 255).sum())
    assert shares["named"] > shares["plain"] + 0.05, shares  # 37 % against 29 % of the footprint


def test_an_aligned_pair_keeps_saying_gamma_nought(tmp_path):
    """Aligning writes new files under new names; the source's name travels as a tag, so the aligned SAR of
    the Rhône is still read as gamma nought (else every later step of the pipeline would read it as sigma)."""
    from engine.data.raster_ops import align_pair

    sar = scenes()["rhone"]["sar"]
    with rasterio.open(sar) as src:
        profile, values = src.profile, src.read(1)
    optical = tmp_path / "optical.tif"
    with rasterio.open(optical, "w", **dict(profile, count=3, nodata=None)) as dst:
        dst.write(np.stack([np.clip((values + 25) * 8, 0, 255)] * 3).astype(profile["dtype"]))
    align_pair(optical, sar, tmp_path / "o.tif", tmp_path / "s.tif")
    assert detect_backscatter(tmp_path / "s.tif", [1]).convention == "gamma0"
    assert detect_backscatter(tmp_path / "o.tif", [1]).convention == "sigma0"  # nothing said
    align_pair(tmp_path / "o.tif", tmp_path / "s.tif", tmp_path / "o2.tif", tmp_path / "s2.tif", resolution=20.0)
    assert detect_backscatter(tmp_path / "s2.tif", [1]).convention == "gamma0"  # aligned twice: the first name stays
