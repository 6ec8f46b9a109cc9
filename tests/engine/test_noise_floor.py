"""The VH noise floor (engine.inputs.noise_floor): some Sentinel-1 products keep thermal noise in VH, so calm
water sits at the floor (-19 to -22 dB) instead of near -28 dB, where the VV + VH water expert learnt it. The floor
is estimated per file and taken off before that expert reads VH. Measured on real chips: TerraMesh 282D 54.0 -> 83.2
water IoU (read as gamma nought, as its file name says), Sen1Floods11 Bolivia_312675 20.5 -> 52.5; chips without a
floor unchanged (docs/experiments/zero_shot_real.md, "The VH noise floor in the product")."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import rasterio

from engine.config import InferenceConfig, SarPreprocessConfig
from engine.inference.sar_only import water_probability
from engine.inputs.contract import InputOverrides, InputRecipe, resolve_inputs
from engine.inputs.noise_floor import estimate_noise_floors
from engine.models.checkpoint import read_metadata
from engine.preprocess.sar import to_linear_power

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "resources" / "models"
COAST = ROOT / "tests" / "data" / "terramesh_coast" / "282D_485L_3_3"
CPU = InferenceConfig(device="cpu", backend="torch")


def test_the_floor_comes_off_the_cross_polarised_band_as_noise_removal_takes_it():
    cfg = SarPreprocessConfig(units="db", noise_floors_db=(0.0, -25.0))
    raw = np.array([[[-20.0, -26.0, np.nan]], [[-20.0, -26.0, np.nan]]], np.float32)
    out = 10 * np.log10(to_linear_power(raw, cfg))
    assert out[0, 0, :2] == pytest.approx([-20.0, -26.0], abs=1e-4)  # VV: nothing taken off
    assert out[1, 0, 0] == pytest.approx(10 * np.log10(10 ** -2.0 - 10 ** -2.5), abs=1e-4)  # -21.65 dB
    assert out[1, 0, 1] == pytest.approx(-49.0, abs=1e-4)  # under the floor: 24 dB under it, still ordered
    assert np.isnan(out[:, 0, 2]).all()
    with pytest.raises(ValueError, match="noise floors"):
        to_linear_power(raw[:1], cfg)


def test_the_floor_is_estimated_where_the_model_asks_and_named_where_there_is_one(shared_data):
    pair = InputRecipe.of(read_metadata(MODELS / "sgcad_teacher_vvvh.safetensors"))
    assert pair.sar.noise_floor_band == 2
    coast = resolve_inputs(pair, None, Path(f"{COAST}_S1RTC.tif"))
    vv, vh = coast.sar_cfg.noise_floors_db
    # the file's VH darkest 1 % is -26.3 dB as gamma nought, read here as sigma nought (-0.98 dB)
    assert vv == 0.0 and -28.0 < vh < -26.5, coast.sar_cfg.noise_floors_db
    assert [line for line in coast.lines if "noise floor" in line and "band 2" in line], coast.lines
    removed = resolve_inputs(pair, None, shared_data / "sen1floods11_s1" / "India_900498_S1Hand.tif")
    assert removed.sar_cfg.noise_floors_db[1] < -40.0  # noise removed already: far under any water
    assert not [line for line in removed.lines if "noise floor" in line], removed.lines
    vv_teacher = InputRecipe.of(read_metadata(MODELS / "sgcad_teacher.safetensors"))
    assert resolve_inputs(vv_teacher, None, Path(f"{COAST}_S1RTC.tif")).sar_cfg.noise_floors_db == ()
    relative = resolve_inputs(pair, None, Path(f"{COAST}_S1RTC.tif"), InputOverrides(sar_levels="relative"))
    assert relative.sar_cfg.noise_floors_db == ()  # levels not calibrated: no floor in dB to take off
    unasked = dataclasses.replace(coast.sar_cfg, noise_floor_band=0, noise_floors_db=())
    assert estimate_noise_floors(f"{COAST}_S1RTC.tif", (1, 2), unasked) == ((), "")


def test_a_darkest_end_brighter_than_any_sentinel1_noise_is_land_and_only_the_highest_floor_comes_off(tmp_path):
    """A dry Sen1Floods11 chip (Ghana_97059) has its darkest 1 % of VH at -19.3 dB: land, not noise."""
    rng = np.random.default_rng(0)
    db = np.stack([rng.normal(-8.0, 2.0, (64, 64)), rng.normal(-14.0, 2.0, (64, 64))]).astype(np.float32)
    path = tmp_path / "dry_S1Hand.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=2, dtype="float32") as dst:
        dst.write(db)
        dst.descriptions = ("VV", "VH")
    cfg = SarPreprocessConfig(units="db", noise_floor_band=2)
    floors, line = estimate_noise_floors(path, (1, 2), cfg)
    assert floors == (0.0, -22.0), floors
    assert "Sentinel-1's highest" in line and "is land" in line, line


def _water_iou(prob_path: Path) -> float:
    with rasterio.open(prob_path) as p, rasterio.open(f"{COAST}_LULC.tif") as c:
        water, cover = p.read(1) >= 0.5, c.read(1)
    called, truth = water[cover > 0], cover[cover > 0] == 1
    return float((called & truth).sum() / (called | truth).sum())


def test_the_pair_finds_the_water_of_a_real_coast_at_its_noise_floor(tmp_path):
    """TerraMesh 282D (coastal Brazil, Sentinel-1 RTC with a VH floor at -26.3 dB) against the source's land-cover
    water: the bundled pair with the floor taken off (the default), and with it kept as a user may ask."""
    with_floor = water_probability(Path(f"{COAST}_S1RTC.tif"), MODELS / "sgcad_teacher.safetensors",
                                   tmp_path / "floor_off.tif", cfg=CPU)
    assert with_floor["teacher"].endswith("sgcad_teacher_vvvh.safetensors")
    kept = water_probability(Path(f"{COAST}_S1RTC.tif"), MODELS / "sgcad_teacher.safetensors",
                             tmp_path / "as_is.tif", cfg=CPU, sar_noise_floor="off")
    assert [line for line in kept["inputs"]["lines"] if "noise floor kept, as asked" in line], kept["inputs"]
    assert not [line for line in kept["inputs"]["lines"] if "taken off" in line], kept["inputs"]
    scores = _water_iou(Path(with_floor["path"])), _water_iou(Path(kept["path"]))
    assert scores[0] > 0.75 and scores[0] > scores[1] + 0.2, scores  # measured: 83.2 against 54.0
    with pytest.raises(ValueError, match="noise floor must be one of"):
        water_probability(Path(f"{COAST}_S1RTC.tif"), MODELS / "sgcad_teacher.safetensors", tmp_path / "bad.tif",
                          cfg=CPU, sar_noise_floor="none")
    assert not (tmp_path / "bad.tif").exists()
