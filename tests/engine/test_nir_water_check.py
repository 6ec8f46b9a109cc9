"""The class map's water read with the optical's NIR band (engine.inference.spectral): open water reflects little
near-infrared, snow and vegetation much, so NIR says whether open water is possible and the SAR expert whether it is
there; in a scene mostly of snow or cloud every water pixel needs the expert. Measured: the real snowy pair 4.5 ->
0.0 % water; a real coastal chip's water IoU 48.7 -> 52.8; two real Sen1Floods11 flood chips 39.8 -> 63.2 and
0.7 -> 81.0 (docs/experiments/zero_shot_real.md, "Snow")."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from engine.config import ClassSchema, InferenceConfig, OpticalPreprocessConfig
from engine.inference.blending import Cell
from engine.inference.pipeline import segment_scene
from engine.inference.products import NIR_NOT_WATER, NIR_WATER_POSSIBLE, OPTICAL_VALID, SAR_VALID, cell_products
from engine.inference.spectral import nir_band, nir_evidence
from engine.raster.stack import stack_bands

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "resources" / "models"
SNOW = ROOT / "resources" / "sample" / "snow_hudson_bay" / "609U_541L_3_0"
COAST = ROOT / "tests" / "data" / "terramesh_coast" / "282D_485L_3_3"
WATER = ClassSchema().names.index("water")
FOREST = ClassSchema().names.index("forest")


def test_nir_says_whether_open_water_is_possible_and_the_sar_expert_whether_it_is_there():
    # pixels: NIR bright + expert land | NIR bright + expert water | no NIR read + expert land | NIR bright, land
    # answer | NIR dark + expert water, land answer | NIR dark + expert land, land answer
    probs = np.zeros((6, 1, 6), np.float32)
    probs[WATER] = [[0.6, 0.6, 0.6, 0.1, 0.1, 0.1]]
    probs[FOREST] = [[0.3, 0.3, 0.3, 0.8, 0.8, 0.8]]
    probs[0] = 1.0 - probs[WATER] - probs[FOREST]
    both = OPTICAL_VALID | SAR_VALID
    bright, dark = both | NIR_NOT_WATER, both | NIR_WATER_POSSIBLE
    flags = np.array([[bright, bright, both, bright, dark, dark]], np.uint8)
    water = np.array([[0.2, 0.7, 0.2, 0.2, 0.9, 0.2]], np.float32)
    out = cell_products(Cell(0, 0, probs, water, flags), WATER)
    assert out["classes"][0, 0].tolist() == [FOREST, WATER, WATER, FOREST, WATER, FOREST]
    assert out["confidence"][0, 0].tolist() == pytest.approx([0.3, 0.6, 0.6, 0.8, 0.9, 0.8])
    assert out["gates"][2, 0].tolist() == [0, 1, 0, 1, 0, 1]  # the agreement gate keeps the network's own answer


def test_the_nir_band_is_the_one_the_raster_names_and_only_reflectance_is_read(shared_data, tmp_path):
    s2 = next((shared_data / "bigearthnet").rglob("S2A_MSIL2A_20170613T101031_87_48"))
    every = sorted(s2.glob("*_B*.tif"))  # B01 ... B12 with B8A, named by their files
    stack_bands([(p, 1) for p in every], tmp_path / "all.tif")
    assert nir_band(tmp_path / "all.tif") == [p.stem.rsplit("_", 1)[1] for p in every].index("B08") + 1
    stack_bands([(next(s2.glob(f"*_{b}.tif")), 1) for b in ("B04", "B03", "B02")], tmp_path / "rgb.tif")
    assert nir_band(tmp_path / "rgb.tif") is None
    assert nir_band(f"{SNOW}_S2L2A.tif") == 8  # 12 unnamed bands: a Sentinel-2 stack in band order
    # Landsat 8/9: B5 is NIR, B8 the panchromatic band
    landsat = tmp_path / "LC08_L2SP_stack.tif"
    profile = dict(driver="GTiff", width=8, height=8, count=8, dtype="uint16", crs="EPSG:32631",
                   transform=rasterio.transform.from_origin(0, 80, 10, 10))
    with rasterio.open(landsat, "w", **profile) as dst:
        dst.write(np.full((8, 8, 8), 9000, np.uint16))
        for b in range(1, 9):
            dst.set_band_description(b, f"B{b}")
    assert nir_band(landsat) == 5
    evidence, line = nir_evidence(f"{SNOW}_S2L2A.tif", OpticalPreprocessConfig(units="uint8"), 0.15, True)
    assert evidence is None and "uint8 units" in line
    evidence, line = nir_evidence(f"{SNOW}_S2L2A.tif", OpticalPreprocessConfig(units="reflectance10000"), 0.15, False)
    assert evidence is None and "without a water teacher" in line


def _snow_renditions(folder: Path):
    """The real snowy pair's optical as 12 bands (as shipped), as float reflectance red, green, blue only, and as
    an 8-bit true-colour picture (reflectance x 637.5, snow clipped at 255)."""
    with rasterio.open(f"{SNOW}_S2L2A.tif") as src:
        profile, rgb = dict(src.profile, count=3), src.read([4, 3, 2]).astype(np.float64) / 10000
    out = {"12 bands": Path(f"{SNOW}_S2L2A.tif")}
    picture = np.clip(np.round(rgb * 637.5), 1, 255)
    for name, dtype, values in (("reflectance", "float32", rgb), ("tci", "uint8", picture)):
        out[name] = folder / f"snow_{name}.tif"
        with rasterio.open(out[name], "w", **dict(profile, dtype=dtype, nodata=None)) as dst:
            dst.write(values.astype(dtype))
    return out


def test_a_real_snowy_scene_keeps_its_snow_out_of_the_water_class(tmp_path):
    """The bundled student called 4.5 % of the real snowy pair water at the snow-laden forest's edges (NIR 0.14-0.38,
    the SAR expert says land), 15.6 % as an 8-bit true-colour picture. A scene mostly of snow or cloud now needs the
    expert's agreement for every water pixel, and the NIR band rules water out where it has one; the issue's bar
    is 2 %. The forest stays (12.7 % before). The run warns that the expert's own water (46 %) is not to be trusted."""
    for name, optical in _snow_renditions(tmp_path).items():
        result = segment_scene(optical, Path(f"{SNOW}_S1RTC.tif"), MODELS / "sgcad_student.safetensors",
                               tmp_path / f"seg_{name}", teacher_path=MODELS / "sgcad_teacher.safetensors",
                               cfg=InferenceConfig(backend="torch"))
        with rasterio.open(result["outputs"]["classes"]) as src:
            pred = src.read(1)
        water, forest = float((pred == WATER).mean()), float((pred == FOREST).mean())
        assert result["snow_or_cloud"]["water_needs_expert"], (name, result["snow_or_cloud"])
        # the bar is 2 %; measured 0.0 / 0.0 / 0.01 %. With VH's noise floor taken off under snow the expert
        # agreed more often: 0.59 / 0.59 / 1.98 % (so a snow scene keeps the floor, engine.inference.pipeline)
        assert water < 0.005 and forest > 0.07, (name, water, forest)
        if name != "tci":
            assert [w for w in result["inputs"]["warnings"] if "mostly of snow or cloud" in w], result["inputs"]
        if name == "12 bands":
            assert result["water_nir_check"]["band"] == 8 and forest > 0.13, (result["water_nir_check"], forest)


def test_a_summer_scene_is_not_taken_for_snow(shared_data, tmp_path):
    s2 = next((shared_data / "bigearthnet").rglob("S2A_MSIL2A_20170613T101031_87_48"))
    stack_bands([(next(s2.glob(f"*_{b}.tif")), 1) for b in ("B04", "B03", "B02", "B08")], tmp_path / "rgbn.tif")
    result = segment_scene(tmp_path / "rgbn.tif", next((shared_data / "bigearthnet").rglob("*87_48_VV.tif")),
                           MODELS / "sgcad_student.safetensors", tmp_path / "seg",
                           teacher_path=MODELS / "sgcad_teacher.safetensors", cfg=InferenceConfig(backend="torch"))
    assert result["snow_or_cloud"] == {"reason": "", "water_needs_expert": False}
    assert result["water_nir_check"]["band"] == 4


def test_on_a_real_coast_the_expert_water_that_nir_allows_joins_the_map(tmp_path):
    """TerraMesh 282D (coastal Brazil; tests/data/terramesh_coast): water IoU against the source's land-cover water
    48.7 without the NIR check, 52.8 with it (the student misses water the expert finds under dark NIR)."""
    with rasterio.open(f"{COAST}_LULC.tif") as src:
        cover = src.read(1)
    scores = {}
    for limit in (0.0, 0.15):
        result = segment_scene(Path(f"{COAST}_S2L2A.tif"), Path(f"{COAST}_S1RTC.tif"),
                               MODELS / "sgcad_student.safetensors", tmp_path / f"seg{limit}",
                               teacher_path=MODELS / "sgcad_teacher.safetensors",
                               cfg=InferenceConfig(backend="torch", water_max_nir=limit))
        with rasterio.open(result["outputs"]["classes"]) as src:
            called = src.read(1)[cover > 0] == WATER
        truth = cover[cover > 0] == 1
        scores[limit] = float((called & truth).sum() / (called | truth).sum())
    assert scores[0.15] >= scores[0.0] + 0.02 and scores[0.15] > 0.50, scores


def test_a_sentinel1_scene_dated_to_a_high_latitude_winter_is_warned_about(shared_data, tmp_path):
    """Frozen ground and wet snow look like water to the SAR expert (46 % of the snowy pair); a Sentinel-1 name
    dates the scene, the raster gives its latitude. The Camargue (43.5 degrees north, December) and BigEarthNet
    (June) names do not raise it."""
    from engine.inputs.contract import InputRecipe, resolve_inputs
    from engine.models.checkpoint import read_metadata

    recipe = InputRecipe.of(read_metadata(MODELS / "sgcad_teacher.safetensors"))
    said = {}
    for month in ("01", "07"):
        renamed = tmp_path / f"S1A_IW_GRDH_1SDV_2020{month}11T232323_2020{month}11T232348_030767_038703_1A2B.tif"
        shutil.copy(f"{SNOW}_S1RTC.tif", renamed)
        said[month] = [w for w in resolve_inputs(recipe, None, renamed).warnings if "in winter" in w]
    assert said["07"] == [] and "54.8 degrees north" in said["01"][0], said
    for other in (*(shared_data / "sentinel1_camargue").glob("*20171210*.tif"),
                  next((shared_data / "bigearthnet").rglob("*87_48_VV.tif"))):
        assert not [w for w in resolve_inputs(recipe, None, other).warnings if "in winter" in w], other
