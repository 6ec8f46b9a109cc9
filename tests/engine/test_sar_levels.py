"""Automatic SAR levels from the polarisations: relative where co- and cross-pol are too close."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from engine.inputs.contract import InputOverrides, InputRecipe, resolve_inputs
from engine.inputs.levels import MIN_CO_CROSS_DB, polarisation_balance
from engine.models.checkpoint import read_metadata
from engine.raster.stack import stack_bands

ROOT = Path(__file__).resolve().parents[2]
ROTTERDAM_SAR = ROOT / "resources" / "sample" / "rotterdam" / "sar_masked.tif"
RECIPE = InputRecipe.of(read_metadata(ROOT / "resources" / "models" / "sgcad_teacher.safetensors"))


def _rewrite(source: Path, out: Path, order, names=None, transform=None) -> Path:
    with rasterio.open(source) as src:
        profile, data = src.profile, src.read()
    data = data[[b - 1 for b in order]]
    if transform is not None:
        data = transform(data)
    profile.update(count=len(order), dtype="float32")
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data.astype(np.float32))
        for i, name in enumerate(names or []):
            dst.set_band_description(i + 1, name)
    return out


def test_rotterdam_is_found_relative_from_its_quad_pol_bands(tmp_path):
    # SpaceNet 6 airborne X-band, 4 unnamed bands HH, HV, VH, VV: cross only ~2.3 dB under co
    balance = polarisation_balance(ROTTERDAM_SAR, "db")
    assert balance.co_bands == (1, 4) and balance.cross_bands == (2, 3) and "reciprocal" in balance.how
    assert 1.5 < balance.median_db < 3.0 and balance.relative
    resolved = resolve_inputs(RECIPE, None, ROTTERDAM_SAR)
    assert resolved.sar_relative_levels
    assert any("relative (cross-polarised band(s) 2, 3 only" in line for line in resolved.lines), resolved.lines
    # the user's word wins, with a warning that says what the bands show
    calibrated = resolve_inputs(RECIPE, None, ROTTERDAM_SAR, InputOverrides(sar_levels="calibrated"))
    assert not calibrated.sar_relative_levels
    assert any("given as calibrated" in w and "SAR_LEVELS=relative" in w for w in calibrated.warnings)
    # bands 2 and 3 not a reciprocal pair (HH, VV, HV, VH unnamed): no evidence, calibrated as before
    shuffled = _rewrite(ROTTERDAM_SAR, tmp_path / "shuffled.tif", (1, 4, 2, 3))
    assert polarisation_balance(shuffled, "db") is None
    assert not resolve_inputs(RECIPE, None, shuffled).sar_relative_levels
    # the same order named: the descriptions say which band is which
    named = _rewrite(ROTTERDAM_SAR, tmp_path / "named.tif", (1, 4, 2, 3), ["HH", "VV", "HV", "VH"])
    assert polarisation_balance(named, "db").median_db == pytest.approx(balance.median_db, abs=0.05)


def test_calibrated_sentinel1_stays_calibrated_in_any_units(tmp_path):
    india = ROOT.parent / "shared" / "data" / "sen1floods11_s1" / "India_900498_S1Hand.tif"  # VV, VH named
    in_db = polarisation_balance(india, "db")
    assert in_db.how == "band descriptions" and in_db.median_db > MIN_CO_CROSS_DB + 3
    linear = _rewrite(india, tmp_path / "linear.tif", (1, 2), ["VV", "VH"], lambda d: 10 ** (d / 10))
    assert polarisation_balance(linear, "linear").median_db == pytest.approx(in_db.median_db, abs=0.05)
    assert not resolve_inputs(RECIPE, None, linear).sar_relative_levels
    swapped = _rewrite(india, tmp_path / "swapped.tif", (1, 2), ["VH", "VV"])  # names the wrong way round
    assert polarisation_balance(swapped, "db").relative
    assert any("dB above (are the bands named right?)" in line for line in resolve_inputs(RECIPE, None, swapped).lines)
    # a BigEarthNet pair stacked by the product: the band names come from the file names
    chip = next((ROOT.parent / "shared" / "data" / "bigearthnet").rglob("*_4_55_VV.tif"))
    stacked = tmp_path / "vv_vh.tif"
    stack_bands([(chip, 1), (Path(str(chip).replace("_VV", "_VH")), 1)], stacked)
    balance = polarisation_balance(stacked, "db")
    assert balance is not None and not balance.relative and balance.median_db > MIN_CO_CROSS_DB + 1  # 4.99 measured
    assert not resolve_inputs(RECIPE, None, stacked).sar_relative_levels
    # one band, or uncalibrated numbers (relative anyway): nothing to look at
    assert polarisation_balance(chip, "db") is None and polarisation_balance(india, "dn") is None


def test_a_scene_at_the_noise_floor_gives_no_evidence(tmp_path):
    # calm open sea: both channels near the floor, 2 dB apart; not a reason to call levels relative
    rng = np.random.default_rng(0)
    co = -24.0 + rng.normal(0, 1.5, (64, 64))
    out = tmp_path / "sea.tif"
    profile = dict(driver="GTiff", width=64, height=64, count=2, dtype="float32", crs="EPSG:32631",
                   transform=rasterio.Affine(10, 0, 500000, 0, -10, 5000000))
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(np.stack([co, co - 2.0]).astype(np.float32))
        dst.set_band_description(1, "VV")
        dst.set_band_description(2, "VH")
    assert polarisation_balance(out, "db") is None
