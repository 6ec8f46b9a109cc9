"""Stage-2 gate masks and KD-region-ratio grid written as GeoTIFFs."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS

from engine.config import ClassSchema, DistillConfig, OpticalPreprocessConfig, SarPreprocessConfig
from engine.preprocess.pipeline import InputPreprocessor
from engine.raster.grid import Grid
from engine.raster.io import write_raster
from engine.train.gates import NODATA, NON_WATER_GATE, WATER_GATE, gate_classes, write_gate_rasters

SCHEMA = ClassSchema()
GRID = Grid(CRS.from_epsg(32631).to_wkt(), Affine(5.0, 0, 400000.0, 0, -5.0, 5800000.0), 100, 70)


class PixelTeacher(torch.nn.Module):
    """A per-pixel teacher: water logit = 12 * (0.5 - sar), so p_water is known exactly."""

    def forward(self, sar: torch.Tensor) -> torch.Tensor:
        water = 12.0 * (0.5 - sar[:, :1])
        return torch.cat([torch.zeros_like(water), water], dim=1)


@pytest.fixture()
def scene(tmp_path):
    rng = np.random.default_rng(0)
    sar = rng.random(GRID.shape).astype(np.float32)
    label = rng.integers(0, 6, GRID.shape).astype(np.uint8)
    label[sar < 0.25] = SCHEMA.water_class  # most dark pixels are water ...
    label[:10, :] = 255  # ... and the top strip is unlabelled
    label[:, 64:] = 255  # right blocks of 32 are partly/entirely unlabelled
    sar_path = write_raster(tmp_path / "sar.tif", sar[None], GRID)
    label_path = write_raster(tmp_path / "label.tif", label, GRID, nodata=255)
    p_water = 1.0 / (1.0 + np.exp(-12.0 * (0.5 - sar)))
    return sar_path, label_path, label, p_water


def _write(scene, tmp_path, cfg, **kw):
    sar_path, label_path, _, _ = scene
    pre = InputPreprocessor(
        SarPreprocessConfig(units="linear", lee_filter=False, to_db=False, robust_normalize=False),
        OpticalPreprocessConfig(units="reflectance", robust_normalize=False),
    )
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return write_gate_rasters(
        PixelTeacher(),
        pre,
        sar_path,
        [1],
        label_path,
        GRID,
        SCHEMA,
        cfg,
        out,
        block=32,
        context=4,
        overwrite=True,
        **kw,
    )


def test_gate_raster_matches_the_training_gate_rule_and_ratio_grid(scene, tmp_path):
    _, _, label, p_water = scene
    cfg = DistillConfig(water_threshold=0.95, non_water_threshold=0.15)
    result = _write(scene, tmp_path, cfg)
    with rasterio.open(result["gates"]) as src:
        gates = src.read(1)
        assert src.nodata == NODATA and src.transform == GRID.transform
    expected = gate_classes(p_water, label.astype(np.int64), SCHEMA, cfg)
    assert np.array_equal(gates, expected)
    assert (gates == WATER_GATE).any() and (gates == NON_WATER_GATE).any()
    assert set(np.unique(gates[label == 255])) == {NODATA}

    with rasterio.open(result["kd_ratio_grid"]) as src:
        ratio = src.read()
        assert src.res == (160.0, 160.0) and (src.width, src.height) == (4, 3)
    block = gates[32:64, 0:32]
    assert ratio[0, 1, 0] == pytest.approx(np.isin(block, [1, 2]).mean())
    assert ratio[1, 1, 0] == pytest.approx((block == 1).mean())
    assert np.all(np.isnan(ratio[:, :, 2:]))  # no labelled pixel right of column 64
    assert ratio[0, 1, 0] == pytest.approx(ratio[1, 1, 0] + ratio[2, 1, 0])
    assert 0 < result["kd_ratio"] < 1


def test_dense_variant_and_restriction_to_windows(scene, tmp_path):
    _, _, label, _ = scene
    dense = _write(scene, tmp_path, DistillConfig(gated=False))
    with rasterio.open(dense["gates"]) as src:
        gates = src.read(1)
    assert np.array_equal(gates != NODATA, label != 255)
    assert not (gates == 0).any()  # dense distils every labelled pixel

    windowed = _write(scene, tmp_path, DistillConfig(), windows=[(5, 12, 20, 20)])
    with rasterio.open(windowed["gates"]) as src:
        gates = src.read(1)
    inside = np.zeros(GRID.shape, bool)
    inside[12:32, 5:25] = True
    assert np.all(gates[~inside] == NODATA)
    assert np.array_equal(gates[inside] != NODATA, label[inside] != 255)
