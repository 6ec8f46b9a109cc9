"""The bundled student, zero-shot, on the real BigEarthNet pairs: plain and under snow.

Figures and their history: docs/experiments/zero_shot_real.md. The bounds are the issue's 80 %
goal on every pair and a mean just under the published figures (96.0 / 86.3 / 81.2 % admissible,
mean 87.8; at most 0.1 % water on the dry-snow chips); the students bundled before fail them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from engine.config import ClassSchema, InferenceConfig
from engine.data.corine import patch_admissible_classes
from engine.inference.pipeline import segment_scene
from engine.raster.stack import stack_bands

ROOT = Path(__file__).resolve().parents[2]
STUDENT = ROOT / "resources" / "models" / "sgcad_student.safetensors"
WATER = ClassSchema().names.index("water")


@pytest.fixture(scope="module")
def chips(shared_data, tmp_path_factory):
    """Each BigEarthNet pair as (RGB stacked with ``engine stack``, S1 VV, CORINE metadata)."""
    out = {}
    folder = tmp_path_factory.mktemp("ben")
    for s2 in sorted((shared_data / "bigearthnet").rglob("S2A_MSIL2A_*")):
        if s2.is_dir():
            patch = s2.name.split("_", 3)[-1]
            rgb = folder / f"{patch}_rgb.tif"
            stack_bands([(next(s2.glob(f"*_{b}.tif")), 1) for b in ("B04", "B03", "B02")], rgb)
            vv = next((shared_data / "bigearthnet").rglob(f"*_{patch}_VV.tif"))
            out[patch] = (rgb, vv, next(s2.glob("*_labels_metadata.json")))
    assert len(out) == 3
    return out


def _classes(optical: Path, sar: Path, out: Path, **kwargs) -> np.ndarray:
    result = segment_scene(optical, sar, STUDENT, out, cfg=InferenceConfig(backend="torch"), **kwargs)
    with rasterio.open(result["outputs"]["classes"]) as src:
        pred = src.read(1)
    return pred[pred < len(ClassSchema().names)]


def test_most_pixels_of_real_pairs_fall_in_classes_their_labels_admit(chips, tmp_path):
    shares = {}
    for patch, (rgb, vv, labels) in chips.items():
        pred = _classes(rgb, vv, tmp_path / patch)
        ids = [ClassSchema().names.index(c) for c in patch_admissible_classes(labels)]
        shares[patch] = float(np.isin(pred, ids).mean())
    # before the class-prior correction 88.5 / 82.0 / 77.0, before the fixed reflectance range
    # 77.1 / 75.9 / 88.7: both fail here
    assert min(shares.values()) >= 0.80 and np.mean(list(shares.values())) >= 0.86, shares


def test_snow_covered_real_chips_are_not_water(chips, tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    from eval_snow_chips import snow_cover

    for patch, (rgb, vv, _) in chips.items():
        with rasterio.open(rgb) as src:
            profile, values = dict(src.profile, dtype="uint16", nodata=0), src.read().astype(np.float64)
        for trees, units in ((True, "auto"), (False, "reflectance10000")):
            snowy = tmp_path / f"{patch}_{trees}.tif"
            with rasterio.open(snowy, "w", **profile) as dst:
                dst.write(snow_cover(values, trees).astype("uint16"))
            pred = _classes(snowy, vv, tmp_path / f"seg_{patch}_{trees}", optical_units=units)
            water = float((pred == WATER).mean())
            assert water < 0.02, (patch, trees, water)


def test_a_snowfield_saturated_in_an_8bit_picture_is_read_as_white_not_water(chips, tmp_path):
    """Snow in a true-colour 8-bit picture (Sentinel-2 TCI-like: reflectance x 637.5, clipped at
    255) is one white surface. Its 2-98 % stretch was empty, so it was read as black: 97-99.9 %
    water over wet-snow SAR (6 dB darker), 85-100 % forest over dry. With trees (its darkest 15 %
    keep their reflectance), the stretch made the trees black: 4.8 / 2.3 / 0.4 % water over dry SAR;
    a picture clipped white is now read from black (contract.CLIPPED_WHITE_SHARE)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from eval_snow_chips import snow_cover

    for patch, (rgb, vv, labels) in chips.items():
        with rasterio.open(rgb) as src:
            profile, values = dict(src.profile, dtype="uint8", nodata=0), src.read().astype(np.float64)
        with rasterio.open(vv) as src:
            sar_profile, sar = src.profile, src.read()
        wet = tmp_path / f"{patch}_wet.tif"
        with rasterio.open(wet, "w", **sar_profile) as dst:
            dst.write(sar - 6.0)
        for trees, radar in ((False, wet), (True, vv)):
            picture = tmp_path / f"{patch}_snow_{trees}.tif"
            with rasterio.open(picture, "w", **profile) as dst:
                dst.write(np.clip(np.round(snow_cover(values, trees=trees) / 10000 * 637.5), 1, 255).astype("uint8"))
            result = segment_scene(picture, radar, STUDENT, tmp_path / f"seg_{patch}_{trees}",
                                   cfg=InferenceConfig(backend="torch"))
            assert any("top of the 8-bit range" in w for w in result["inputs"]["warnings"]), result["inputs"]
            with rasterio.open(result["outputs"]["classes"]) as src:
                pred = src.read(1)
            pred = pred[pred < len(ClassSchema().names)]
            ids = [ClassSchema().names.index(c) for c in patch_admissible_classes(labels)]
            assert float((pred == WATER).mean()) < 0.02, (patch, trees)
            assert float(np.isin(pred, ids).mean()) > 0.9, (patch, trees)  # the rest stays what the labels admit


def test_a_real_snowy_pair_gets_its_bands_no_false_warning_and_a_forest(tmp_path):
    """The project's one real snowy pair (resources/sample/snow_hudson_bay: January, peatland under snow, frozen
    river, conifer forest; 12 unnamed Sentinel-2 bands, unnamed VV + VH). Its bands 4, 3, 2 are read without
    being chosen, neither the haze nor the +1000-offset warning fires on snow, and the map keeps the forest.
    Measured without a water teacher: 4.5 % water at the forest's edges, 12.7 % forest, 74 % farmland (open
    land); read as bands 1, 2, 3 it had no forest at all. With the teacher, the NIR check takes the water to
    0.4 % (test_nir_water_check.py)."""
    snow = ROOT / "resources" / "sample" / "snow_hudson_bay" / "609U_541L_3_0"
    result = segment_scene(Path(f"{snow}_S2L2A.tif"), Path(f"{snow}_S1RTC.tif"), STUDENT, tmp_path / "seg",
                           cfg=InferenceConfig(backend="torch"))
    said = result["inputs"]["lines"] + result["inputs"]["warnings"]
    assert [x for x in said if "bands 4, 3, 2" in x and "Sentinel-2 stack" in x], said
    assert not [x for x in said if "top-of-atmosphere" in x or "+1000" in x], said
    with rasterio.open(result["outputs"]["classes"]) as src:
        pred = src.read(1)
    shares = {name: float((pred == k).mean()) for k, name in enumerate(ClassSchema().names)}
    assert shares["water"] < 0.05 and shares["forest"] > 0.10, shares
