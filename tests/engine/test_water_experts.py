"""Wind-hidden water on a real Sentinel-1 chip: the VV + VH water expert maps it; a map from the
co-polarised band alone is checked against the cross-polarised band, quiet where the map holds the
chip's water, a warning that names the band when wind hides the water from the co-polarised band."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from engine.cli import main as cli_main
from engine.config import InferenceConfig
from engine.inference.sar_only import water_probability
from engine.inputs.contract import InputRecipe, resolve_inputs
from engine.models.checkpoint import load_model, read_metadata, save_model
from engine.progress import CallbackProgress, Canceled
from engine.raster.stack import stack_bands
from engine.water.cross_pol import MISSED_SHARE_WARNING
from engine.water.date_map import map_water_date
from engine.water.experts import choose_water_expert, load_water_expert

ROOT = Path(__file__).resolve().parents[2]
TEACHER = ROOT / "resources" / "models" / "sgcad_teacher.safetensors"
CPU = InferenceConfig(device="cpu", backend="torch")


def _windy(chip, label, out):
    """The chip with its labelled water as bright as its land in VV (wind), VH unchanged."""
    with rasterio.open(chip) as src, rasterio.open(label) as lab:
        profile, bands, water = src.profile, src.read(), lab.read(1) == 1
        land_vv = float(np.nanmedian(bands[0][lab.read(1) == 0]))
        bands[0][water] += land_vv - float(np.nanmedian(bands[0][water]))
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(bands)
            dst.descriptions = src.descriptions
    return out


def _iou(prob_path, label_path):
    with rasterio.open(prob_path) as p, rasterio.open(label_path) as lab:
        water, truth = p.read(1) >= 0.5, lab.read(1)
    scored = truth >= 0
    return float((water & (truth == 1) & scored).sum() / ((water | (truth == 1)) & scored).sum())


def test_cross_polarised_band_flags_water_the_map_missed(shared_data, tmp_path):
    folder = shared_data / "sen1floods11_s1"
    chip, label = folder / "India_900498_S1Hand.tif", folder / "India_900498_LabelHand.tif"

    # the co-polarised band alone (band 1 chosen): the VV teacher, checked against VH
    plain = water_probability(chip, TEACHER, tmp_path / "plain.tif", cfg=CPU, sar_bands=(1,))
    check = plain["cross_polarised"]
    assert plain["teacher"] == str(TEACHER) and check["band"] == 2 and not check["warned"]
    assert check["dark_share"] > 0.4 and check["missed_share"] < 0.1  # its dark VH is mapped water
    assert not any("cross-polarised" in w for w in plain["inputs"]["warnings"])

    windy_chip = _windy(chip, label, tmp_path / "windy.tif")
    windy = water_probability(windy_chip, TEACHER, tmp_path / "windy_w.tif", cfg=CPU, sar_bands=(1,))
    check = windy["cross_polarised"]
    assert windy["water_fraction"] < plain["water_fraction"] - 0.2  # the VV-reading expert lost the water
    assert check["warned"] and check["missed_share"] > MISSED_SHARE_WARNING
    message = windy["inputs"]["warnings"][-1]
    assert "SAR band 2 (cross-polarised)" in message and "--after-bands 2" in message
    assert "VV + VH water expert" in message

    # no band chosen: the names VV and VH call the VV + VH expert, which finds the water again
    paired = water_probability(windy_chip, TEACHER, tmp_path / "paired.tif", cfg=CPU)
    assert paired["teacher"].endswith("sgcad_teacher_vvvh.safetensors") and paired["cross_polarised"] is None
    assert _iou(tmp_path / "windy_w.tif", label) < 0.15
    assert _iou(tmp_path / "paired.tif", label) > 0.6
    assert _iou(tmp_path / "plain.tif", label) > 0.75

    camargue = next((shared_data / "sentinel1_camargue").glob("*20170309*.tif"))  # VV only: nothing to compare
    single = water_probability(camargue, TEACHER, tmp_path / "vv.tif", cfg=CPU)
    assert single["cross_polarised"] is None and single["teacher"] == str(TEACHER)


def test_the_band_names_and_the_users_bands_choose_the_water_expert(shared_data, tmp_path):
    chip = shared_data / "sen1floods11_s1" / "Nigeria_812045_S1Hand.tif"
    pair = choose_water_expert(TEACHER, chip)
    assert pair.dual_pol and pair.sar_bands == (1, 2) and "found by their names" in pair.reason
    assert choose_water_expert(TEACHER, chip, (1,)).path == TEACHER  # one band chosen: the VV teacher
    with rasterio.open(chip) as src:  # VH first, VV second: the names still decide
        profile, bands = src.profile, src.read()
    swapped, unnamed = tmp_path / "vh_vv.tif", tmp_path / "unnamed.tif"
    with rasterio.open(swapped, "w", **profile) as dst:
        dst.write(bands[::-1])
        dst.descriptions = ("VH", "VV")
    with rasterio.open(unnamed, "w", **profile) as dst:
        dst.write(bands)
    assert choose_water_expert(TEACHER, swapped).sar_bands == (2, 1)
    assert choose_water_expert(TEACHER, unnamed, (1, 2)).dual_pol  # two bands chosen: co, then cross
    # Sentinel-1 VV and VH files stacked with the project's tool keep their names in the band
    # descriptions (<file stem>_b1), so the pair is found without naming anything
    ben = next((shared_data / "bigearthnet" / "BigEarthNet-S1-Example").iterdir())
    stacked = stack_bands([(next(ben.glob("*_VV.tif")), 1), (next(ben.glob("*_VH.tif")), 1)], tmp_path / "s1.tif")
    assert choose_water_expert(TEACHER, stacked["output"]).sar_bands == (1, 2)
    alone = tmp_path / "models" / TEACHER.name  # a teacher without a companion keeps its own way
    alone.parent.mkdir()
    alone.write_bytes(TEACHER.read_bytes())
    assert choose_water_expert(alone, chip).path == alone


def _write(path, profile, bands, names=None):
    with rasterio.open(path, "w", **dict(profile, count=len(bands))) as dst:
        dst.write(np.stack(bands).astype(profile["dtype"]))
        if names:
            dst.descriptions = names
    return path


def test_unnamed_bands_are_told_apart_by_their_levels(shared_data, tmp_path):
    # GeoTIFF exports often drop band names: VH lies ~7 dB under VV at 99 % of the real chip's pixels,
    # so VV and VH are found in either order, in dB or linear power, and map the same water
    chip = shared_data / "sen1floods11_s1" / "Nigeria_812045_S1Hand.tif"
    with rasterio.open(chip) as src:
        profile, vv, vh = src.profile, src.read(1), src.read(2)
    unnamed = _write(tmp_path / "vv_vh.tif", profile, [vv, vh])
    linear_vh_first = _write(tmp_path / "vh_vv_linear.tif", profile, [10 ** (vh / 10), 10 ** (vv / 10)])
    choice = choose_water_expert(TEACHER, unnamed)
    assert choice.dual_pol and choice.sar_bands == (1, 2) and "read from their levels" in choice.reason, choice
    assert "band 2 is 6.9 dB under band 1" in choice.reason
    assert choose_water_expert(TEACHER, linear_vh_first).sar_bands == (2, 1)
    # a model reading one co-polarised band (the student, the VV teacher alone) reads band 2 there too
    resolved = resolve_inputs(InputRecipe.of(read_metadata(TEACHER)), None, linear_vh_first)
    assert resolved.bands.sar_bands == (2,) and any("their levels" in line for line in resolved.lines)
    named = water_probability(chip, TEACHER, tmp_path / "named.tif", cfg=CPU)
    swapped = water_probability(linear_vh_first, TEACHER, tmp_path / "swapped.tif", cfg=CPU)
    assert swapped["teacher"] == named["teacher"] and swapped["teacher"].endswith("_vvvh.safetensors")
    assert abs(swapped["water_fraction"] - named["water_fraction"]) < 0.002

    # two dates of one polarisation (the Camargue's VV, 2015 and 2017) are not a VV + VH pair: each is
    # the darker at many pixels, so the VV teacher keeps band 1 and the log says how to choose
    dates = sorted((shared_data / "sentinel1_camargue").glob("*_A_2015*.tif")) + sorted(
        (shared_data / "sentinel1_camargue").glob("*_D_20170309*.tif"))
    with rasterio.open(dates[0]) as a, rasterio.open(dates[1]) as b:
        two_dates = _write(tmp_path / "two_dates.tif", a.profile, [a.read(1), b.read(1)])
    kept = choose_water_expert(TEACHER, two_dates)
    assert kept.path == TEACHER and not kept.dual_pol and "choose both (VV first)" in kept.reason, kept
    # a file whose name says HH + HV (L-band, which the companion never learnt) is not guessed either
    l_band = _write(tmp_path / "ALOS2_HH_HV.tif", profile, [vv, vh])
    assert not choose_water_expert(TEACHER, l_band).dual_pol
    # a raster given as uncalibrated numbers is not read for polarisations, nor is a band beside the SAR
    # that is not backscatter (an incidence angle in degrees): band 1 stays the one read
    assert not choose_water_expert(TEACHER, unnamed, sar_units="dn").dual_pol
    angle = _write(tmp_path / "vv_angle.tif", profile, [vv, np.linspace(30, 45, vv.size).reshape(vv.shape)])
    assert not choose_water_expert(TEACHER, angle).dual_pol
    resolved = resolve_inputs(InputRecipe.of(read_metadata(TEACHER)), None, angle)
    assert resolved.bands.sar_bands == (1,)


def test_an_earth_engine_export_of_vv_vh_and_angle_without_band_names_is_read_as_vv_and_vh(shared_data, tmp_path):
    # Earth Engine's Sentinel-1 images hold VV, VH and angle (29-46 degrees), and its GeoTIFF exports can come
    # without band names: the angle band is set aside and the other two are told apart by their levels, in any order
    chip = shared_data / "sen1floods11_s1" / "Nigeria_812045_S1Hand.tif"
    with rasterio.open(chip) as src:
        profile, vv, vh = src.profile, src.read(1), src.read(2)
    angle = np.tile(np.linspace(30.6, 45.9, vv.shape[1], dtype=np.float32), (vv.shape[0], 1))
    export = _write(tmp_path / "s1_export.tif", profile, [vv, vh, angle])
    angle_first = _write(tmp_path / "s1_export_2.tif", profile, [angle, vh, vv])
    choice = choose_water_expert(TEACHER, export)
    assert choice.dual_pol and choice.sar_bands == (1, 2) and "band 3 holds 10-65 degrees" in choice.reason, choice
    assert choose_water_expert(TEACHER, angle_first).sar_bands == (3, 2)
    resolved = resolve_inputs(InputRecipe.of(read_metadata(TEACHER)), None, angle_first)
    assert resolved.bands.sar_bands == (3,)  # the VV teacher alone (and the student) read VV, not the angle
    named = water_probability(chip, TEACHER, tmp_path / "named.tif", cfg=CPU)
    exported = water_probability(angle_first, TEACHER, tmp_path / "exported.tif", cfg=CPU)
    assert exported["teacher"] == named["teacher"] and abs(exported["water_fraction"] - named["water_fraction"]) < 0.002
    # a third band that is not an angle (a VV / VH ratio in dB, 0-20) leaves the raster unguessed
    ratio = _write(tmp_path / "vv_vh_ratio.tif", profile, [vv, vh, np.clip(vv - vh, 0, 20)])
    assert not choose_water_expert(TEACHER, ratio).dual_pol


def test_the_pair_refuses_a_companion_that_reads_sar_differently(shared_data, tmp_path):
    chip = shared_data / "sen1floods11_s1" / "Nigeria_812045_S1Hand.tif"
    net, meta = load_water_expert(choose_water_expert(TEACHER, chip), TEACHER)
    assert meta.bands.sar_bands == (1, 2)
    with pytest.raises(ValueError, match="2 SAR channels"):
        net(torch.zeros(1, 1, 64, 64))
    teacher = tmp_path / "t.safetensors"
    teacher.write_bytes(TEACHER.read_bytes())
    companion, companion_meta = load_model(TEACHER.with_name("sgcad_teacher_vvvh.safetensors"), "teacher")
    companion_meta.sar_preprocess = dataclasses.replace(companion_meta.sar_preprocess, lee_window=5)
    save_model(tmp_path / "t_vvvh.safetensors", companion, companion_meta)
    with pytest.raises(ValueError, match="reads SAR differently"):
        load_water_expert(choose_water_expert(teacher, chip), teacher)
    # the units of the file a model last read (an adapted teacher stores them) are not its preprocessing
    companion_meta.sar_preprocess = dataclasses.replace(companion_meta.sar_preprocess, lee_window=7, units="db")
    save_model(tmp_path / "t_vvvh.safetensors", companion, companion_meta)
    assert load_water_expert(choose_water_expert(teacher, chip), teacher)[1].sar_preprocess.units == "db"


def test_one_date_water_map_from_the_command_line(shared_data, tmp_path, capsys):
    folder = shared_data / "sen1floods11_s1"
    chip, label = folder / "India_900498_S1Hand.tif", folder / "India_900498_LabelHand.tif"
    windy = _windy(chip, label, tmp_path / "windy.tif")
    assert cli_main(["water", "--sar", str(windy), "--out", str(tmp_path / "pair"), "--quiet", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["teacher"] == "sgcad_teacher_vvvh.safetensors" and report["cross_polarised"] is None
    with rasterio.open(tmp_path / "pair" / "water.tif") as src, rasterio.open(label) as lab:
        water, truth = src.read(1), lab.read(1)
        assert src.nodata == 255 and set(np.unique(water)) <= {0, 1, 255}
    scored = truth >= 0
    iou = ((water == 1) & (truth == 1) & scored).sum() / (((water == 1) | (truth == 1)) & scored).sum()
    assert iou > 0.6, iou
    assert report["water_share"] == pytest.approx(float((water == 1).sum() / (water != 255).sum()), abs=1e-4)
    assert 10 < report["water_km2"] < 20  # 512 x 512 px of ~10 m, about half of it water
    # one band chosen: the VV teacher, which loses the windy water and says where to look
    assert cli_main(["water", "--sar", str(windy), "--sar-bands", "1", "--out", str(tmp_path / "vv"), "--quiet",
                     "--json"]) == 0
    vv = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert vv["teacher"] == TEACHER.name and vv["water_share"] < report["water_share"] - 0.3
    assert vv["cross_polarised"]["warned"]


def test_one_date_water_map_keeps_what_is_there_on_refusal_and_cancel(shared_data, tmp_path):
    chip = shared_data / "sen1floods11_s1" / "Nigeria_812045_S1Hand.tif"
    out = tmp_path / "out"
    out.mkdir()
    (out / "water.tif").write_bytes(b"the user's file")
    with pytest.raises(ValueError, match="exists"):
        map_water_date(chip, out, TEACHER)
    assert (out / "water.tif").read_bytes() == b"the user's file"
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 5

    with pytest.raises(Canceled):
        map_water_date(chip, out, TEACHER, overwrite=True, progress=CallbackProgress(is_canceled=cancel))
    assert sorted(p.name for p in out.iterdir()) == ["water.tif"]
    assert (out / "water.tif").read_bytes() == b"the user's file"


def test_the_pair_reads_any_sar_units_alike_and_choosing_needs_no_torch(shared_data, tmp_path):
    chip = shared_data / "sen1floods11_s1" / "Nigeria_812045_S1Hand.tif"
    with rasterio.open(chip) as src:
        profile, db, names = src.profile, src.read().astype(np.float64), src.descriptions
    shares = {}
    for units, data in (("db", db), ("linear", 10 ** (db / 10)), ("amplitude", 10 ** (db / 20))):
        path = tmp_path / f"{units}.tif"
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data.astype(np.float32))
            dst.descriptions = names
        result = water_probability(path, TEACHER, tmp_path / f"{units}_w.tif", cfg=CPU)
        assert result["teacher"].endswith("_vvvh.safetensors") and result["inputs"]["sar_units"] == units
        shares[units] = result["water_fraction"]
    assert max(shares.values()) - min(shares.values()) < 0.002, shares
    # the threshold method and the expert's choice load without torch (a QGIS without it still maps floods)
    code = ("import sys; sys.modules['torch'] = None; "
            "import engine.water.experts, engine.flood.mapping, engine.water.date_map, engine.commands.water")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_change_map_maps_both_dates_with_one_expert(shared_data, tmp_path):
    # after: the real India chip with VV and VH; before: its VV band alone. Same pixels, so no flood:
    # mapped by the pair after and the VV teacher before, their disagreements would read as flood
    from engine.flood.mapping import map_flood

    chip = shared_data / "sen1floods11_s1" / "India_900498_S1Hand.tif"
    with rasterio.open(chip) as src:
        profile, vv = dict(src.profile, count=1), src.read(1)
    before = tmp_path / "before_VV.tif"
    with rasterio.open(before, "w", **profile) as dst:
        dst.write(vv[None])
    report = map_flood(chip, before, tmp_path / "flood", teacher_path=TEACHER, inference=CPU)
    assert {d["teacher"] for d in report["dates"].values()} == {TEACHER.name}, report["dates"]
    assert report["totals"]["flood_share_of_observed"] < 0.005, report["totals"]
    # the two models apart on the same pixels: what the change would have counted as flood
    pair = water_probability(chip, TEACHER, tmp_path / "pair.tif", cfg=CPU)
    single = water_probability(chip, TEACHER, tmp_path / "vv.tif", cfg=CPU, sar_bands=(1,))
    with rasterio.open(pair["path"]) as a, rasterio.open(single["path"]) as b:
        apart = float(((a.read(1) >= 0.5) & (b.read(1) < 0.5)).mean())
    assert apart > 0.03, apart  # measured 4.2 % of the chip


def test_segmentation_maps_water_with_the_expert_the_water_map_uses(shared_data, tmp_path):
    # a real BigEarthNet pair (Sentinel-2 L2A, Sentinel-1 VV + VH; dry farmland) whose optical image misses a strip:
    # the student reads VV, while the water probability, the gates and the answer where optical is missing come
    # from the VV + VH pair, as in the water map (until 2026-12-05 from the VV teacher alone: 11.5 % of the chip
    # water, against the pair's 2.6 %; 5.8 % since VH's noise floor is taken off: this chip's darkest VH is dark land)
    from engine.inference.pipeline import segment_scene

    s1 = shared_data / "bigearthnet" / "BigEarthNet-S1-Example" / "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48"
    s2 = shared_data / "bigearthnet" / "BigEarthNet-S2-Example" / "S2A_MSIL2A_20170613T101031_87_48"
    sar, optical = tmp_path / "s1.tif", tmp_path / "s2.tif"
    stack_bands([(s1 / f"{s1.name}_{p}.tif", 1) for p in ("VV", "VH")], sar)
    stack_bands([(next(s2.glob(f"*_{b}.tif")), 1) for b in ("B04", "B03", "B02")], optical)
    with rasterio.open(optical) as dst:  # no optical on the left quarter
        data = dst.read().astype(np.float32)
        data[:, :, :30] = np.nan
    with rasterio.open(optical) as src:
        profile = dict(src.profile, dtype="float32", nodata=np.nan)
    gappy = tmp_path / "s2_gap.tif"
    with rasterio.open(gappy, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = ("B04", "B03", "B02")
    water = water_probability(sar, TEACHER, tmp_path / "water.tif", cfg=CPU)
    assert water["teacher"].endswith("_vvvh.safetensors")
    runs = {}
    for name, bands in (("pair", None), ("vv", (1,))):
        runs[name] = segment_scene(gappy, sar, ROOT / "resources" / "models" / "sgcad_student.safetensors",
                                   tmp_path / name, teacher_path=TEACHER, sar_bands=bands, cfg=CPU)
    with rasterio.open(runs["pair"]["outputs"]["water"]) as a, rasterio.open(tmp_path / "water.tif") as b:
        assert a.tags()["teacher"] == "sgcad_teacher.safetensors + sgcad_teacher_vvvh.safetensors"
        pair, alone = a.read(1), b.read(1)
    assert np.nanmax(np.abs(pair - alone)) < 1e-4  # the same expert, the same water
    with rasterio.open(runs["vv"]["outputs"]["water"]) as src:  # one band chosen: the VV teacher, as before
        assert src.tags()["teacher"] == "sgcad_teacher.safetensors"
        vv = src.read(1)
    assert (pair >= 0.5).mean() < 0.07 and (pair >= 0.5).mean() < (vv >= 0.5).mean() - 0.04
    # where optical is missing the class map is the expert's answer: the pair's water, not the VV teacher's
    with rasterio.open(runs["pair"]["outputs"]["classes"]) as a, rasterio.open(runs["vv"]["outputs"]["classes"]) as b:
        strip_pair, strip_vv = a.read(1)[:, :30] == 3, b.read(1)[:, :30] == 3
    assert runs["pair"]["sar_only_pixels"] == 3600
    assert (strip_pair == (pair[:, :30] >= 0.5)).all() and (strip_vv == (vv[:, :30] >= 0.5)).all()
    assert (strip_pair != strip_vv).mean() > 0.01, (strip_pair.mean(), strip_vv.mean())  # measured: 2.4 %


def test_a_vh_only_raster_is_read_at_co_polarised_levels(shared_data, tmp_path):
    # A VH band alone, read as the co-polarised band the teacher learnt, is ~7 dB too dark: 64 % of the real
    # chip was called water (label: 51 %). Raised by CROSS_AS_CO_DB it is mapped as well as from VV, in any units.
    chip = shared_data / "sen1floods11_s1" / "Nigeria_812045_S1Hand.tif"
    label = shared_data / "sen1floods11_s1" / "Nigeria_812045_LabelHand.tif"
    with rasterio.open(chip) as src:
        profile, vh = src.profile, src.read(2).astype(np.float64)
    named = _write(tmp_path / "named.tif", profile, [vh], ["VH"])
    by_file = _write(tmp_path / "S1A_IW_GRDH_VH_linear.tif", profile, [10 ** (vh / 10)])  # ASF-style: one file per band
    read_as_vv = _write(tmp_path / "as_vv.tif", profile, [vh], ["VV"])  # what the product did before
    results = {p.stem: water_probability(p, TEACHER, tmp_path / f"{p.stem}_w.tif", cfg=CPU)
               for p in (named, by_file, read_as_vv)}
    for name in ("named", "S1A_IW_GRDH_VH_linear"):
        r = results[name]
        warned = r["inputs"]["warnings"]
        assert r["teacher"] == str(TEACHER) and any("band 1 (VH)" in w and "7 dB brighter" in w for w in warned)
        assert 0.45 < r["water_fraction"] < 0.58, r["water_fraction"]  # its label: 50.7 % water
        assert _iou(r["path"], label) > 0.85
    assert abs(results["named"]["water_fraction"] - results["S1A_IW_GRDH_VH_linear"]["water_fraction"]) < 0.002
    assert results["as_vv"]["water_fraction"] > 0.6 and _iou(results["as_vv"]["path"], label) < 0.8
    # a model that learnt VH itself reads it as it is
    from engine.inputs.levels import cross_read_as_co

    assert cross_read_as_co(named, (1,), ("cross",)) == ((), None)
