"""``evaluate``: class raster vs reference raster or polygons, streamed by windows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from engine.cli import main
from engine.config import ClassSchema
from engine.metrics import ConfusionMatrix
from engine.raster.grid import Grid
from engine.raster.io import write_raster
from engine.train.evaluate import evaluate_rasters

GRID = Grid(CRS.from_epsg(32631).to_wkt(), Affine(2.0, 0, 500000.0, 0, -2.0, 5700000.0), 70, 45)


@pytest.fixture()
def pair(tmp_path):
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 6, GRID.shape).astype(np.uint8)
    ref[:5] = 255  # unlabelled rows
    pred = ref.copy()
    flip = rng.random(GRID.shape) < 0.3
    pred[flip] = rng.integers(0, 6, int(flip.sum()))
    pred[:5] = rng.integers(0, 6, (5, GRID.width))
    pred[40:, 60:] = 255  # no prediction there (nodata)
    ref_path = write_raster(tmp_path / "ref.tif", ref, GRID, nodata=255)
    pred_path = write_raster(tmp_path / "pred.tif", pred, GRID, nodata=255)
    return pred_path, ref_path, pred, ref


def test_windowed_result_equals_whole_array_matrix(pair):
    pred_path, ref_path, pred, ref = pair
    result = evaluate_rasters(pred_path, ref_path, block=16)  # 5 x 3 windows, ragged edges
    expected = ConfusionMatrix(6)
    keep = pred != 255
    expected.update(pred[keep], ref[keep])
    assert result["matrix"] == expected.compute()["matrix"]
    assert result["kappa"] == pytest.approx(expected.compute()["kappa"])
    assert result["unpredicted_pixels"] == int(((pred == 255) & (ref != 255)).sum()) == 50
    assert result["water_iou"] == result["iou"][3]


def test_cli_writes_json_and_plot_and_refuses_overwrite(pair, tmp_path, capsys):
    pred_path, ref_path, _, _ = pair
    out, plot = tmp_path / "m.json", tmp_path / "cm.png"
    args = [
        "evaluate",
        "--prediction",
        str(pred_path),
        "--reference",
        str(ref_path),
        "--out",
        str(out),
        "--plot",
        str(plot),
        "--block",
        "32",
        "--quiet",
        "--json",
    ]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["ok"] and printed["oa"] == json.loads(out.read_text())["oa"]
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert main(args) == 2
    assert "output exists; choose another name or pass overwrite=True (--overwrite)" in capsys.readouterr().err


def test_bad_inputs_give_clear_errors(pair, tmp_path):
    pred_path, ref_path, _, _ = pair
    three = write_raster(tmp_path / "rgb.tif", np.zeros((3,) + GRID.shape, np.uint8), GRID)
    with pytest.raises(ValueError, match="single-band integer class raster"):
        evaluate_rasters(three, ref_path)
    seven = write_raster(tmp_path / "seven.tif", np.full(GRID.shape, 7, np.uint8), GRID)
    with pytest.raises(ValueError, match=r"seven.tif against .*prediction holds value\(s\) \[7\]"):
        evaluate_rasters(seven, ref_path)
    far = Grid(GRID.crs_wkt, Affine(2.0, 0, 600000.0, 0, -2.0, 5700000.0), 70, 45)
    elsewhere = write_raster(tmp_path / "far.tif", np.zeros(GRID.shape, np.uint8), far)
    with pytest.raises(ValueError, match="share no labelled pixel"):
        evaluate_rasters(elsewhere, ref_path)
    from engine.raster.polygons import polygonize_labels

    gpkg = polygonize_labels(ref_path, tmp_path / "ref.gpkg", ClassSchema())
    # no field named: a layer without a "class" attribute is refused with the fields it has
    with pytest.raises(ValueError, match=r"without a 'class' field: give the attribute holding the classes "
                                         r"\(--class-field / CLASS_FIELD\); its fields: \['class_id', 'class_name'\]"):
        evaluate_rasters(pred_path, gpkg)


def test_polygon_reference_is_rasterised_per_window(pair, tmp_path, capsys):
    from engine.raster.polygons import polygonize_labels

    pred_path, ref_path, _, _ = pair
    gpkg = polygonize_labels(ref_path, tmp_path / "ref.gpkg", ClassSchema())
    from_polygons = evaluate_rasters(pred_path, gpkg, class_field="class_id", block=32)
    from_raster = evaluate_rasters(pred_path, ref_path)
    assert from_polygons["matrix"] == from_raster["matrix"]
    # a layer with a "class" attribute (as fine-tuning reads) needs no field named, on the command line either
    from osgeo import ogr

    ds = ogr.Open(str(gpkg), 1)
    layer = ds.GetLayer(0)
    layer.CreateField(ogr.FieldDefn("class", ogr.OFTInteger))
    for feature in layer:
        feature.SetField("class", feature.GetField("class_id"))
        layer.SetFeature(feature)
    ds = None
    assert evaluate_rasters(pred_path, gpkg, block=32)["matrix"] == from_raster["matrix"]
    from engine.cli import main as cli_main

    assert cli_main(["evaluate", "--prediction", str(pred_path), "--reference", str(gpkg), "--quiet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["matrix"] == from_raster["matrix"]
