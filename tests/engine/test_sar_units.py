"""SAR units are read from each file, so a dB product is not fed to a model as linear power."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from engine.config import InferenceConfig
from engine.data.synthetic import generate_scene
from engine.inference.pipeline import segment_scene
from engine.preprocess.units import detect_sar_units, input_is_db


def test_units_of_the_real_and_synthetic_rasters(shared_data, tmp_path):
    assert detect_sar_units(shared_data / "spacenet6_rotterdam" / "sar_masked.tif", [1, 4]) == "db"
    vv = sorted((shared_data / "bigearthnet").rglob("*_VV.tif"))
    assert vv and all(detect_sar_units(p, [1]) == "db" for p in vv)
    scene = generate_scene(tmp_path / "s", size=128, seed=2, write_vector=False)
    assert detect_sar_units(scene["sar"], [1]) == "linear"
    assert input_is_db("model", scene["sar"], [1], True) is True
    assert input_is_db("linear", scene["sar"], [1], True) is False
    with pytest.raises(ValueError, match="SAR units must be one of"):
        input_is_db("decibel", scene["sar"], [1], False)


def test_a_db_copy_of_a_linear_scene_segments_the_same(tmp_path):
    import torch

    from engine.config import (
        BandNormalization,
        ModelMetadata,
        NormalizationRecord,
        OpticalPreprocessConfig,
        SarPreprocessConfig,
        StudentConfig,
        to_dict,
    )
    from engine.models import build_model
    from engine.models.checkpoint import save_model
    from engine.preprocess.normalize import compute_normalization
    from engine.raster.grid import grid_of

    scene = generate_scene(tmp_path / "s", size=192, seed=4, write_vector=False)
    with rasterio.open(scene["sar"]) as src:
        profile, linear = src.profile, src.read(1)
    db_path = tmp_path / "sar_db.tif"
    with rasterio.open(db_path, "w", **profile) as dst:
        dst.write((10 * np.log10(linear)).astype(np.float32), 1)

    torch.manual_seed(0)
    cfg = StudentConfig(widths=(8, 8, 16, 16), decoder_channels=8, attention_dim=8, pool_size=4)
    sar_cfg = SarPreprocessConfig()
    meta = ModelMetadata(
        kind="student", model=to_dict(cfg), sar_preprocess=sar_cfg,
        sar_normalization=compute_normalization(scene["sar"], [1], sar_cfg, grid_of(scene["sar"])),
        optical_normalization=NormalizationRecord(
            "optical", tuple(BandNormalization(b, 0.0, 255.0) for b in (1, 2, 3))),
        optical_preprocess=OpticalPreprocessConfig(),
    )
    model = save_model(tmp_path / "m.safetensors", build_model(cfg).eval(), meta)
    run = dict(cfg=InferenceConfig(tile_size=128, overlap=32, backend="torch"))
    segment_scene(scene["optical"], scene["sar"], model, tmp_path / "lin", **run)
    segment_scene(scene["optical"], db_path, model, tmp_path / "db", **run)
    segment_scene(scene["optical"], db_path, model, tmp_path / "raw", sar_units="linear", **run)
    maps = {}
    for name in ("lin", "db", "raw"):
        with rasterio.open(tmp_path / name / "confidence.tif") as src:
            maps[name] = src.read(1)
    same = np.abs(maps["lin"] - maps["db"]).max()
    wrong = np.abs(maps["lin"] - maps["raw"]).max()  # dB read as linear: another answer
    assert same < 1e-5 and wrong > 100 * max(same, 1e-7)
