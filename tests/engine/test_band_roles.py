"""Bands read by role (engine.inputs.bands): a raster that says which band is red, green, blue or
co-polarised gets those bands read, whatever their numbers; bands a user chose are kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp

from engine.config import BandMapping, InferenceConfig
from engine.inference.pipeline import segment_scene
from engine.inputs.bands import (
    check_sar_not_picture,
    choose_bands,
    model_bands_in,
    optical_roles,
    training_bands,
)
from engine.inputs.contract import InputOverrides, InputRecipe, resolve_inputs
from engine.models.checkpoint import read_metadata
from engine.raster.stack import stack_bands

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "resources" / "models"
STUDENT = MODELS / "sgcad_student.safetensors"
TEACHER = MODELS / "sgcad_teacher.safetensors"
CPU = InferenceConfig(backend="torch", device="cpu", tile_size=256, overlap=32)
MODEL_BANDS = BandMapping(optical_names=("optical_b1", "optical_b2", "optical_b3"))  # the bundled student's


@pytest.fixture(scope="module")
def bigearthnet(tmp_path_factory, shared_data):
    """A real Sentinel-2 patch as a user stacks it: all 12 bands in file order (B01 ... B12, B8A),
    named as ``stack_bands`` names them, its RGB stack (B04, B03, B02), and the Sentinel-1 VV."""
    d = tmp_path_factory.mktemp("s2")
    s2 = next((shared_data / "bigearthnet").rglob("S2A_MSIL2A_20170613T101031_87_48"))
    every = sorted(s2.glob("*_B*.tif"))
    stack_bands([(p, 1) for p in every], d / "s2_all.tif")
    stack_bands([(next(s2.glob(f"*_{b}.tif")), 1) for b in ("B04", "B03", "B02")], d / "s2_rgb.tif")
    sar = next((shared_data / "bigearthnet").rglob("*87_48_VV.tif"))
    return d / "s2_all.tif", d / "s2_rgb.tif", sar, [p.stem.rsplit("_", 1)[1] for p in every]


def _copy(src: Path, dst: Path, order, descriptions=None, colorinterp=None, tags=None) -> Path:
    with rasterio.open(src) as s:
        profile, data = s.profile, s.read([b + 1 for b in order])
        names = [s.descriptions[b] for b in order]
    profile.update(count=len(order))
    with rasterio.open(dst, "w", **profile) as d:
        d.write(data)
        for i, name in enumerate(descriptions if descriptions is not None else names):
            d.set_band_description(i + 1, name or "")
        if colorinterp:
            d.colorinterp = colorinterp
        for i, band_tags in enumerate(tags or []):
            d.update_tags(i + 1, **band_tags)
    return dst


def test_a_twelve_band_sentinel2_stack_is_read_as_its_red_green_blue(bigearthnet, tmp_path):
    every, rgb, sar, names = bigearthnet
    assert names[:4] == ["B01", "B02", "B03", "B04"]  # bands 1-3 are coastal, blue, green
    resolved = resolve_inputs(InputRecipe.of(read_metadata(STUDENT)), every, sar)
    assert resolved.bands.optical_bands == (4, 3, 2)
    assert resolved.bands.optical_names == ("red", "green", "blue")  # a model saved from this run reads by role
    assert any("bands 4, 3, 2" in line and "B04" in line for line in resolved.lines)
    maps = {}
    for name, optical in (("all", every), ("rgb", rgb)):
        result = segment_scene(optical, sar, STUDENT, tmp_path / name, cfg=CPU)
        with rasterio.open(result["outputs"]["classes"]) as src:
            maps[name] = src.read(1)
    assert np.array_equal(maps["all"], maps["rgb"])  # the 12-band stack maps as its RGB stack does
    # bands the user chose are read as given, and said nothing about
    chosen = resolve_inputs(InputRecipe.of(read_metadata(STUDENT)), every, sar, InputOverrides(optical_bands=(1, 2, 3)))
    assert chosen.bands.optical_bands == (1, 2, 3) and not any("read as red" in line for line in chosen.lines)


def test_training_and_distillation_read_the_bands_segmentation_reads(bigearthnet):
    every, _, sar, _ = bigearthnet
    bands = training_bands(every, sar)
    assert (bands.optical_bands, bands.optical_names, bands.sar_bands) == ((4, 3, 2), ("red", "green", "blue"), (1,))
    assert model_bands_in(every, read_metadata(STUDENT).bands, "optical") == ((4, 3, 2), ("red", "green", "blue"))
    chosen = training_bands(every, sar, (8, 4, 3))  # a false-colour model keeps its bands, named by role
    assert (chosen.optical_bands, chosen.optical_names) == ((8, 4, 3), ("nir", "red", "green"))
    assert choose_bands(every, chosen, "optical") is None
    unnamed = training_bands(None, None)
    assert (unnamed.optical_bands, unnamed.optical_names) == ((1, 2, 3), ("optical_b1", "optical_b2", "optical_b3"))


def test_an_unnamed_sentinel2_stack_is_read_in_band_order_and_other_unnamed_stacks_are_warned(bigearthnet, tmp_path):
    """12 or 13 unnamed bands are a Sentinel-2 stack in band order (its bands 4, 3, 2 are red, green, blue), said in
    the run's log; any other unnamed count, or names that are not colours, keep the model's bands 1, 2, 3 and warn."""
    every, _, sar, names = bigearthnet
    recipe = InputRecipe.of(read_metadata(STUDENT))
    unnamed = _copy(every, tmp_path / "unnamed.tif", range(len(names)), descriptions=[""] * len(names))
    resolved = resolve_inputs(recipe, unnamed, sar)
    assert resolved.bands.optical_bands == (4, 3, 2)
    line = [x for x in resolved.lines if "Sentinel-2 stack in band order" in x]
    assert line and "--optical-bands" in line[0] and not [w for w in resolved.warnings if "does not say" in w]
    for name, order, descriptions in (("ten", range(10), [""] * 10),
                                      ("dates", range(12), [f"2020-01-{d:02d}" for d in range(1, 13)])):
        other = _copy(every, tmp_path / f"{name}.tif", order, descriptions=descriptions)
        resolved = resolve_inputs(recipe, other, sar)
        assert resolved.bands.optical_bands == (1, 2, 3), name
        warning = [w for w in resolved.warnings if "does not say which is red" in w]
        assert warning and "4, 3, 2" in warning[0] and "--optical-bands" in warning[0], name
    # the count is a guess for an optical input, never evidence that a SAR input is optical (a 12-date VV stack)
    with rasterio.open(sar) as src:
        profile, vv = src.profile, src.read(1)
    profile.update(count=12, dtype="float32")
    stack = tmp_path / "sentinel1_vv_12_dates.tif"
    with rasterio.open(stack, "w", **profile) as dst:
        dst.write(np.repeat(vv[None].astype("float32"), 12, axis=0))
    check_sar_not_picture(stack, with_optical=True)


def test_a_sar_raster_with_vh_first_gives_the_teacher_its_vv(shared_data, tmp_path):
    from engine.inference.sar_only import water_probability

    india = shared_data / "sen1floods11_s1" / "India_900498_S1Hand.tif"
    swapped = _copy(india, tmp_path / "vh_vv.tif", [1, 0])
    resolved = resolve_inputs(InputRecipe.of(read_metadata(TEACHER)), None, swapped)
    assert resolved.bands.sar_bands == (2,) and resolved.bands.sar_names == ("vv",)
    maps = [water_probability(p, TEACHER, tmp_path / f"w{i}.tif", cfg=CPU)["path"]
            for i, p in enumerate((india, swapped))]
    with rasterio.open(maps[0]) as a, rasterio.open(maps[1]) as b:
        assert np.array_equal(a.read(1), b.read(1))
    from engine.flood.sources import bands_of

    assert (bands_of((), swapped), bands_of((), india), bands_of((1,), swapped)) == (2, 1, 1)  # flood mapping's band


@pytest.mark.parametrize(
    "name, descriptions, colorinterp, tags, expected",
    [
        ("sentinel2.tif", ["B2", "B3", "B4", "B8"], None, None, (3, 2, 1)),
        ("sentinel2_padded.tif", ["B02", "B03", "B04", "B08"], None, None, (3, 2, 1)),
        ("LE07_L2SP_stack.tif", ["SR_B1", "SR_B2", "SR_B3", "SR_B4"], None, None, (3, 2, 1)),  # Landsat 7 numbering
        ("LC08_L2SP_stack.tif", ["SR_B2", "SR_B3", "SR_B4", "SR_B5"], None, None, (3, 2, 1)),
        ("words.tif", ["Blue", "Green", "Red", "Red edge 1"], None, None, (3, 2, 1)),
        ("bgr.tif", ["", "", "", ""], [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.alpha],
         None, (3, 2, 1)),
        ("wavelengths.tif", ["", "", "", ""], None,
         [{"WAVELENGTH": "842"}, {"WAVELENGTH": "665"}, {"WAVELENGTH": "560"}, {"WAVELENGTH": "0.49"}], (2, 3, 4)),
        ("rgb_nir.tif", ["red", "green", "blue", "nir"], None, None, None),  # bands 1, 2, 3 already: nothing to say
        ("counted.tif", ["B1", "B2", "B3", "B4"], None, None, None),  # may only number the bands: not trusted
        ("LC08_L1TP_counted.tif", ["B1", "B2", "B3", "B4"], None, None, (4, 3, 2)),  # a Landsat 8 product's bands
        ("two_reds.tif", ["red", "red", "green", "blue"], None, None, None),  # contradicts itself: not trusted
    ],
)
def test_band_roles_from_names_wavelengths_and_colour_interpretation(
    tmp_path, name, descriptions, colorinterp, tags, expected
):
    data = np.random.default_rng(0).integers(0, 255, (4, 8, 8), dtype=np.uint8)
    path = tmp_path / name
    profile = dict(driver="GTiff", width=8, height=8, count=4, dtype="uint8", crs="EPSG:32631",
                   transform=rasterio.transform.from_origin(0, 80, 10, 10))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, text in enumerate(descriptions):
            dst.set_band_description(i + 1, text)
        if colorinterp:
            dst.colorinterp = colorinterp
        for i, band_tags in enumerate(tags or []):
            dst.update_tags(i + 1, **band_tags)
    choice = choose_bands(path, MODEL_BANDS, "optical")
    assert (choice.bands if choice else None) == expected, optical_roles(path)


def test_a_virtual_raster_of_band_files_is_read_by_its_files_names(shared_data, tmp_path):
    """QGIS's Build Virtual Raster ("each input file into a separate band") leaves the band descriptions
    empty and lists Sentinel-2 files alphabetically, B02 first: read as unnamed, blue became red and the
    bundled student called 19-47 % of three dry BigEarthNet chips water. The files' names say the bands."""
    from osgeo import gdal

    s2 = next((shared_data / "bigearthnet").rglob("S2A_MSIL2A_20170613T101031_87_48"))
    files = [next(s2.glob(f"*_{b}.tif")) for b in ("B02", "B03", "B04", "B08")]
    s1 = sorted((shared_data / "bigearthnet").rglob("*87_48_V[HV].tif"))  # VH first
    local = tmp_path / "bands"  # next to the VRT: its sources are written relative to it
    local.mkdir()
    for path in s1:
        (local / path.name).write_bytes(path.read_bytes())
    optical, sar = tmp_path / "s2.vrt", tmp_path / "s1.vrt"
    gdal.BuildVRT(str(optical), [str(f) for f in files], separate=True)
    gdal.BuildVRT(str(sar), [str(local / p.name) for p in s1], separate=True)
    assert 'relativeToVRT="1"' in sar.read_text() and 'relativeToVRT="0"' in optical.read_text()
    resolved = resolve_inputs(InputRecipe.of(read_metadata(STUDENT)), optical, sar)
    assert resolved.bands.optical_bands == (3, 2, 1) and resolved.bands.sar_bands == (2,)  # B04 B03 B02; VV
    assert resolved.optical_units.how == "metadata"  # the Sentinel-2 product name in the files' names
    assert not any("does not say which is red" in w for w in resolved.warnings), resolved.warnings
    assert any("read as red, green, blue (names of the virtual raster's band files: " in line
               for line in resolved.lines), resolved.lines
    (local / s1[0].name).unlink()  # a source that moved: its band goes unnamed, the other still says VV
    assert choose_bands(sar, BandMapping(sar_bands=(1,), sar_names=("vv",)), "sar").bands == (2,)


def test_inputs_named_as_the_other_modality_are_refused_and_band_numbers_alone_are_not(bigearthnet, shared_data,
                                                                                     tmp_path):
    """Sentinel-2 bands given as the SAR (a swap, or the wrong layer) were mapped as uncalibrated radar; their
    names say what they are. Names like SAR_b2 (aligned SAR of earlier releases) name no sensor: accepted."""
    from engine.inputs.bands import check_sar_not_picture

    _, rgb, _, _ = bigearthnet
    with pytest.raises(ValueError, match=r"SAR raster s2_rgb.tif holds red, green and blue bands \(band descriptions: "
                                         r"S2A_MSIL2A_20170613T101031_87_48_B04_b1.*swapped"):
        check_sar_not_picture(rgb, with_optical=True)
    with rasterio.open(shared_data / "spacenet6_rotterdam" / "sar_masked.tif") as src:
        profile, data = src.profile, src.read()
    with rasterio.open(tmp_path / "sar_aligned.tif", "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = ("SAR_b1", "SAR_b2", "SAR_b3", "SAR_b4")
    check_sar_not_picture(tmp_path / "sar_aligned.tif", with_optical=True)
    # and the other way round: the SAR given as the optical image was read as a dim 8-bit picture
    from engine.inputs.bands import check_optical_not_sar

    with pytest.raises(ValueError, match=r"optical raster India_900498_S1Hand.tif holds radar bands \(VV, VH\)"):
        check_optical_not_sar(shared_data / "sen1floods11_s1" / "India_900498_S1Hand.tif")
    check_optical_not_sar(rgb)
    check_optical_not_sar(tmp_path / "sar_aligned.tif")  # SAR_b1 ... name no polarisation: nothing said


def test_vendor_files_that_name_no_band_are_read_in_their_documented_order(bigearthnet, tmp_path):
    """A real Sentinel-2 patch written as the vendors write their multispectral products, without band
    names: PlanetScope 4-band (blue, green, red, NIR), PlanetScope 8-band and Maxar 8-band. Each maps as the
    patch's RGB stack does; the same 4-band file under another name keeps bands 1-3 (blue, green, red read
    as red, green, blue: a quite different map) and is warned."""
    every, rgb, sar, names = bigearthnet
    at = {n: names.index(n) for n in names}
    bgrn = [at["B02"], at["B03"], at["B04"], at["B08"]]
    files = {
        "20170613_101031_1052_3B_AnalyticMS_SR_clip.tif": (bgrn, (3, 2, 1)),
        "20170613_101031_1052_3B_AnalyticMS_SR_8b_clip.tif":
            ([at[b] for b in ("B01", "B02", "B03", "B03", "B05", "B04", "B06", "B08")], (6, 4, 2)),
        "17JUN13101031-M2AS-058338349010_01_P001.TIF":
            ([at[b] for b in ("B01", "B02", "B03", "B05", "B04", "B06", "B08", "B8A")], (5, 3, 2)),
    }
    maps = {}
    for name, (order, expected) in files.items():
        path = _copy(every, tmp_path / name, order, descriptions=[""] * len(order))
        resolved = resolve_inputs(InputRecipe.of(read_metadata(STUDENT)), path, sar)
        assert resolved.bands.optical_bands == expected, name
        assert not any("does not say which is red" in w for w in resolved.warnings)
        assert any("band order" in line for line in resolved.lines)
        maps[name] = _classes(segment_scene(path, sar, STUDENT, tmp_path / f"seg{len(maps)}", cfg=CPU))
    maps["rgb"] = _classes(segment_scene(rgb, sar, STUDENT, tmp_path / "rgb", cfg=CPU))
    for name in files:
        assert np.array_equal(maps[name], maps["rgb"]), name
    other = _copy(every, tmp_path / "scene.tif", bgrn, descriptions=[""] * 4)
    resolved = resolve_inputs(InputRecipe.of(read_metadata(STUDENT)), other, sar)
    assert resolved.bands.optical_bands == (1, 2, 3)
    assert any("does not say which is red" in w for w in resolved.warnings)
    swapped = _classes(segment_scene(other, sar, STUDENT, tmp_path / "other", cfg=CPU))
    assert (swapped != maps["rgb"]).mean() > 0.2


def _classes(result) -> np.ndarray:
    with rasterio.open(result["outputs"]["classes"]) as src:
        return src.read(1)
