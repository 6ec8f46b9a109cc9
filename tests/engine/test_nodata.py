"""Nodata SAR must not change the decisions on the valid pixels beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

import engine.inference.sar_only as sar_only
from engine.preprocess.nodata import fill_sar_nodata

ROOT = Path(__file__).resolve().parents[2]
INDIA = ROOT.parent / "shared" / "data" / "sen1floods11_s1" / "India_900498_S1Hand.tif"
TEACHER = ROOT / "resources" / "models" / "sgcad_teacher.safetensors"


def test_missing_sar_takes_its_nearest_pixel_valid_in_every_band():
    sar = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5)
    sar[0, :, 3:] = np.nan  # band 1 misses the right two columns, band 2 only one pixel of them
    sar[1, 0, 4] = np.inf
    out = fill_sar_nodata(sar)
    assert np.isfinite(out).all() and out.dtype == np.float32
    assert np.array_equal(out[:, :, :3], sar[:, :, :3])  # valid pixels untouched
    assert np.array_equal(out[:, :, 3], out[:, :, 2]) and np.array_equal(out[:, :, 4], out[:, :, 2])
    assert np.isnan(sar).any()  # the input is not changed
    assert not fill_sar_nodata(np.full((1, 3, 3), np.nan, np.float32)).any()  # nothing valid: 0


def _water(sar: Path, out: Path) -> np.ndarray:
    sar_only.water_probability(sar, TEACHER, out)
    with rasterio.open(out) as src:
        return src.read(1)


@pytest.mark.parametrize("fill", ["nearest", "zero"])
def test_a_nodata_band_across_a_real_scene_leaves_the_rest_of_the_water_map_alone(tmp_path, monkeypatch, fill):
    # A Sentinel-1 chip whose top 40 % is cut away (a swath edge, a masked area): the water decisions
    # on the remaining pixels should be those of the whole chip.
    # The bands keep their names (VV, VH), so both maps come from the same (VV + VH) water expert.
    with rasterio.open(INDIA) as src:
        profile, data, names = src.profile, src.read().astype(np.float32), src.descriptions
    cut = int(0.4 * data.shape[1])
    data[:, :cut] = np.nan
    profile.update(dtype="float32", nodata=float("nan"))
    masked = tmp_path / "masked.tif"
    with rasterio.open(masked, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = names
    whole = _water(INDIA, tmp_path / "whole.tif") >= 0.5
    if fill == "zero":  # what the first releases did: the network saw the cut as dark water
        monkeypatch.setattr(sar_only, "fill_sar_nodata", lambda a: np.nan_to_num(a, nan=0.0))
    p = _water(masked, tmp_path / "cut.tif")
    assert np.isnan(p[:cut]).all()
    flips = float((whole[cut:] != (p[cut:] >= 0.5)).mean())
    if fill == "nearest":
        assert flips < 0.02, flips
    else:
        assert flips > 0.10, flips


def test_a_zero_border_in_linear_sar_is_missing_data_not_water(tmp_path):
    # Sentinel-1 scenes often store their no-data border as 0; read as linear power it was the darkest
    # surface, open water. No surface returns exactly nothing, so 0 in linear (more than 8-bit) SAR is
    # read as missing, with or without nodata=0 declared; the run says so when it is not declared
    from engine.inputs.shift import zeros_are_missing

    with rasterio.open(INDIA) as src:
        profile, db = dict(src.profile, nodata=None), src.read()
    linear = (10 ** (db / 10)).astype("float32")
    linear[:, :, :40] = 0
    plain, declared = tmp_path / "zeros.tif", tmp_path / "nodata0.tif"
    for path, nodata in ((plain, None), (declared, 0.0)):
        with rasterio.open(path, "w", **dict(profile, nodata=nodata)) as dst:
            dst.write(linear)
            dst.descriptions = ("VV", "VH")
    result = sar_only.water_probability(plain, TEACHER, tmp_path / "a.tif")
    assert any("7.8 % of its values are exactly 0 and no nodata value marks them; in linear units" in w
               for w in result["inputs"]["warnings"]), result["inputs"]["warnings"]
    result = sar_only.water_probability(declared, TEACHER, tmp_path / "b.tif")
    assert not any("exactly 0" in w for w in result["inputs"]["warnings"])
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        p, q = a.read(1), b.read(1)
    assert np.isnan(p[:, :40]).all() and np.isnan(q[:, :40]).all()  # nodata, not water (was > 90 % water)
    np.testing.assert_allclose(p[:, 40:], q[:, 40:], atol=1e-5)  # the rest: as with nodata declared
    # the classical threshold of a flood map reads them as missing too, and says so for that date
    from engine.flood.mapping import FloodConfig, map_flood

    for method in ("threshold", "teacher"):  # the water expert's own reading says it too: once in the report
        report = map_flood(plain, declared, tmp_path / method, FloodConfig(method=method), teacher_path=TEACHER)
        said = [w for w in report["warnings"] if "exactly 0" in w]
        assert len(said) == 1 and said[0].startswith("after: SAR zeros.tif: 7.8 %") and "missing" in said[0], said
    # an 8-bit picture may quantise dark water to 0: there 0 stays a value
    eight = tmp_path / "amplitude8.tif"
    with rasterio.open(eight, "w", **dict(profile, dtype="uint8")) as dst:
        dst.write(np.clip(np.sqrt(linear) * 255, 0, 255).astype("uint8"))
    assert not zeros_are_missing(eight, [1, 2], "amplitude") and zeros_are_missing(plain, [1, 2], "linear")
    # in float dB, 0 dB is a bright value, but never exactly over an area: SNAP's no-data border is 0 dB
    assert zeros_are_missing(plain, [1, 2], "db") and not zeros_are_missing(eight, [1, 2], "db")
    db = np.where(linear > 0, 10 * np.log10(np.maximum(linear, 1e-10)), 0).astype("float32")
    db[0, 100, 100] = 0.0  # a lone bright pixel at exactly 0 dB stays a value
    snap = tmp_path / "subset_Sigma0_db.tif"
    with rasterio.open(snap, "w", **profile) as dst:
        dst.write(db)
        dst.descriptions = ("Sigma0_VV_db", "Sigma0_VH_db")
    result = sar_only.water_probability(snap, TEACHER, tmp_path / "snap.tif")
    said = [w for w in result["inputs"]["warnings"] if "exactly 0 dB" in w]
    assert len(said) == 1 and "SNAP" in said[0], result["inputs"]["warnings"]
    with rasterio.open(tmp_path / "snap.tif") as src:
        s = src.read(1)
    assert np.isnan(s[:, :40]).all() and np.isfinite(s[100, 100])
    np.testing.assert_allclose(s[:, 41:], q[:, 41:], atol=0.05)


def test_vh_under_the_noise_floor_beside_vv_is_dark_backscatter_not_missing(tmp_path):
    # Thermal noise removal sets VH over calm water to 0 (-inf in dB) while VV is there. Read as a fill,
    # the darkest 8 % of the real chip (its calmest water) became nodata: holes in the water map. A fill is
    # missing in every band; beside another band's backscatter it is a value under the noise floor.
    with rasterio.open(INDIA) as src:
        profile, db, names = dict(src.profile, nodata=None), src.read().astype(np.float64), src.descriptions
    dark = db[1] < np.nanpercentile(db[1], 8)
    linear, in_db = 10 ** (db / 10), db.copy()
    linear[1][dark], in_db[1][dark] = 0.0, -np.inf
    linear[:, :, :30] = 0  # a no-data border, 0 in both bands: still missing
    results = {}
    for name, data in (("linear", linear), ("db", in_db)):
        path = tmp_path / f"{name}.tif"
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data.astype("float32"))
            dst.descriptions = names
        results[name] = sar_only.water_probability(path, TEACHER, tmp_path / f"{name}_w.tif")
    whole = _water(INDIA, tmp_path / "whole.tif")
    for name in ("linear", "db"):
        with rasterio.open(tmp_path / f"{name}_w.tif") as src:
            p = src.read(1)
        inside = np.isfinite(whole) & dark
        if name == "linear":
            assert np.isnan(p[:, :30]).all()
            inside[:, :30] = False
        assert np.isfinite(p[inside]).all() and (p[inside] >= 0.5).mean() > 0.95  # mapped, as water
        assert ((p[:, 30:] >= 0.5) != (whole[:, 30:] >= 0.5)).mean() < 0.02
    warned = [w for w in results["linear"]["inputs"]["warnings"] if "exactly 0" in w]
    assert len(warned) == 1 and "5.9 % of its values" in warned[0], warned  # the border only: 30 of 512 columns


def test_a_one_band_file_tells_a_zero_border_from_zeros_under_the_noise_floor(tmp_path):
    # One VH file (an ASF- or SNAP-style export): its no-data border is 0 over an area, while thermal noise
    # removal leaves 0 speckled among small values over calm water. The border is missing; the others are
    # read as the darkest level, so the calm water is mapped, not left as holes.
    with rasterio.open(INDIA) as src:
        profile, vh = dict(src.profile, count=1, nodata=None), 10 ** (src.read(2).astype(np.float64) / 10)
    floor = (vh < 10 ** -2.4) & (np.random.default_rng(0).random(vh.shape) < 0.5)  # under -24 dB, half of them
    zeroed = np.where(floor, 0.0, vh)
    zeroed[:, :30] = 0
    paths = {}
    for name, data in (("zeroed", zeroed), ("plain", vh)):
        paths[name] = tmp_path / f"{name}_VH.tif"
        with rasterio.open(paths[name], "w", **profile) as dst:
            dst.write(data[None].astype("float32"))
            dst.descriptions = ("VH",)
    p, q = _water(paths["zeroed"], tmp_path / "z.tif"), _water(paths["plain"], tmp_path / "p.tif")
    assert np.isnan(p[:, :30]).all()  # the border: nodata
    lone = floor & np.isfinite(q)
    lone[:, :32] = False
    assert floor.mean() > 0.05 and np.isfinite(p[lone]).mean() > 0.97  # mapped, not holes
    assert ((p[:, 32:] >= 0.5) == (q[:, 32:] >= 0.5)).mean() > 0.97


@pytest.mark.parametrize("fill, dtype, scale, name", [(0, "uint16", 1.0, "rgb"), (-9999, "float32", 1e-4, "rgb"),
                                                     (65535, "uint16", 1.0, "rgb"), (-1000, "float32", 1.0, "rgb"),
                                                     (0, "uint8", 255 / 2500, "T33UUP_20170613T101031_TCI_10m")])
def test_an_optical_fill_border_without_nodata_is_missing_optical_not_forest(shared_data, tmp_path, fill, dtype, scale,
                                                                             name):
    # Sentinel-2 stores NO_DATA as 0 in every band, float products often -9999; exported without the
    # nodata value, a 30-column border of a real BigEarthNet chip was mapped 85 % forest and 15 % water.
    # Both are read as missing optical (0 only in every band of a file of more than 8 bits), as with
    # nodata declared; so is 0 in Sentinel-2's 8-bit true-colour image (TCI), by its product specification,
    # and 65535 in every band (a fill, or saturation), which had also made the units read as digital numbers
    from engine.config import InferenceConfig
    from engine.inference.pipeline import segment_scene
    from engine.raster.stack import stack_bands

    s2 = next((shared_data / "bigearthnet").rglob("S2A_MSIL2A_20170613T101031_87_48"))
    sar = next((shared_data / "bigearthnet").rglob("*87_48_VV.tif"))
    stack_bands([(next(s2.glob(f"*_{b}.tif")), 1) for b in ("B04", "B03", "B02")], tmp_path / "rgb.tif")
    with rasterio.open(tmp_path / "rgb.tif") as src:
        profile, data, names = src.profile, src.read() * scale, src.descriptions
    if dtype == "float32":
        values = data.astype(dtype)
    else:  # real pixels are never 0 here: only the border is
        values = np.round(np.clip(data, 1, np.iinfo(dtype).max)).astype(dtype)
    maps = {}
    for declared in (False, True):
        border = fill if not declared else (np.nan if dtype == "float32" else 0)
        values[:, :, :30] = border
        path = tmp_path / str(declared) / f"{name}.tif"
        path.parent.mkdir()
        nodata = border if declared else (np.nan if dtype == "float32" else None)  # undeclared: NaN means nothing
        with rasterio.open(path, "w", **dict(profile, dtype=dtype, nodata=nodata)) as dst:
            dst.write(values)
            dst.descriptions = names
        student = ROOT / "resources" / "models" / "sgcad_student.safetensors"
        result = segment_scene(path, sar, student, tmp_path / f"o{declared}", teacher_path=TEACHER,
                               cfg=InferenceConfig(backend="torch", device="cpu"))
        with rasterio.open(result["outputs"]["classes"]) as src:
            maps[declared] = src.read(1)
    np.testing.assert_array_equal(maps[False], maps[True])
    assert not np.isin(maps[False][:, :30], [0, 1, 2, 4, 5]).any()  # no land class from a fill: optical gap or water


@pytest.mark.parametrize("units", ["db", "linear"])
def test_a_minus_9999_border_without_nodata_is_missing_data_not_water(tmp_path, units):
    # -9999 written where a product has no data, the nodata value lost on the way: read as dB it was
    # the darkest water (the 40-column border of a real chip: 100 % water, no warning), and read as
    # linear it made 8 % of the values negative, which only dB can be
    with rasterio.open(INDIA) as src:
        profile, db = dict(src.profile, nodata=None), src.read()
    values = db if units == "db" else (10 ** (db / 10)).astype("float32")
    maps = {}
    for name, fill in (("declared", np.nan), ("minus9999", -9999.0)):
        data = values.copy()
        data[:, :, :40] = fill
        with rasterio.open(tmp_path / f"{name}.tif", "w", **profile) as dst:
            dst.write(data)
            dst.descriptions = ("VV", "VH")
        result = sar_only.water_probability(tmp_path / f"{name}.tif", TEACHER, tmp_path / f"{name}_water.tif")
        assert result["inputs"]["sar_units"] == units
        with rasterio.open(tmp_path / f"{name}_water.tif") as src:
            maps[name] = src.read(1)
        said = [w for w in result["inputs"]["warnings"] if "under -80 (down to -9999)" in w]
        assert len(said) == (name == "minus9999"), result["inputs"]["warnings"]
    assert np.isnan(maps["minus9999"][:, :40]).all()
    np.testing.assert_allclose(maps["minus9999"], maps["declared"], atol=1e-5)


def test_a_fill_strip_cut_by_a_window_edge_stays_a_fill_without_the_lee_filter(tmp_path):
    # The fill test is an opening over 3 x 3 areas. Without the Lee filter's context a window cut through a
    # 4-pixel zero strip left 2-pixel strips on each side, read as the darkest backscatter (water). The
    # preprocessing now keeps the opening's context, so windows agree with the whole raster.
    from engine.config import SarPreprocessConfig
    from engine.preprocess.pipeline import InputPreprocessor

    rng = np.random.default_rng(0)
    power = rng.gamma(4.0, 0.05 / 4.0, (1, 40, 64)).astype(np.float32)
    power[:, :, 30:34] = 0  # a fill strip, cut by the window edge at column 32
    pre = InputPreprocessor(SarPreprocessConfig(units="linear", lee_filter=False, robust_normalize=False,
                                                zero_is_nodata=True))
    h = pre.halo
    padded = np.pad(power, ((0, 0), (h, h), (h, h)), constant_values=np.nan)  # outside the raster: NaN
    whole = pre.sar(padded)
    left = pre.sar(padded[:, :, : 32 + 2 * h])
    right = pre.sar(padded[:, :, 32:])
    tiled = np.concatenate([left, right], axis=2)
    assert h >= 2 and np.isnan(whole[:, :, 30:34]).all() and np.isfinite(whole[:, :, :30]).all()
    assert np.array_equal(np.isnan(tiled), np.isnan(whole)) and np.allclose(tiled, whole, equal_nan=True)
