"""sgcad:evaluate: numbers equal to a hand count, HTML report, polygon reference, early errors."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from qgis.core import QgsFeature, QgsField, QgsGeometry, QgsProcessingException, QgsVectorLayer
from qgis.PyQt.QtCore import QVariant

ROOT = Path(__file__).resolve().parents[2]


def _run(params):
    import processing

    return processing.run("sgcad:evaluate", params)


@pytest.fixture()
def damaged(scene, tmp_path):
    """The scene's label with a 40 x 40 block set to 'forest' (4): a prediction with known errors."""
    with rasterio.open(scene["label"]) as src:
        profile, label = src.profile, src.read(1)
    pred = label.copy()
    pred[10:50, 20:60] = 4
    path = tmp_path / "prediction.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pred[None])
    return str(path), label, pred


def test_numbers_match_a_hand_count_and_the_report_is_written(scene, damaged, tmp_path):
    prediction, label, pred = damaged
    result = _run(
        {
            "PREDICTION": prediction,
            "REFERENCE_RASTER": scene["label"],
            "BLOCK": 64,
            "OUTPUT_HTML": str(tmp_path / "report.html"),
            "OUTPUT_JSON": str(tmp_path / "m.json"),
        }
    )
    valid = label != 255
    oa = float((pred[valid] == label[valid]).mean())
    water = 3
    inter = np.sum((pred == water) & (label == water) & valid)
    union = np.sum(((pred == water) | (label == water)) & valid)
    assert result["OA"] == pytest.approx(oa) and oa < 0.99
    assert result["WATER_IOU"] == pytest.approx(inter / union)
    assert 0 < result["KAPPA"] < result["OA"] and 0 < result["MIOU"] < 1
    html = Path(result["OUTPUT_HTML"]).read_text()
    assert "Kappa" in html and "data:image/png;base64," in html and "forest" in html
    saved = json.loads(Path(result["OUTPUT_JSON"]).read_text())
    assert saved["oa"] == pytest.approx(oa) and len(saved["matrix"]) == 6
    assert json.loads(result["PER_CLASS_IOU"])["water"] == pytest.approx(inter / union)


def _polygons(values, crs="EPSG:32631", box=None):
    layer = QgsVectorLayer(f"Polygon?crs={crs}", "reference", "memory")
    layer.dataProvider().addAttributes([QgsField("cls", QVariant.String)])
    layer.updateFields()
    features = []
    for i, value in enumerate(values):
        feature = QgsFeature(layer.fields())
        x0, y0 = box or (590000 + 40 * i, 5759700)
        feature.setGeometry(
            QgsGeometry.fromWkt(f"POLYGON(({x0} {y0},{x0 + 30} {y0},{x0 + 30} {y0 + 30},{x0} {y0 + 30},{x0} {y0}))")
        )
        feature.setAttributes([value])
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    return layer


def test_errors_are_caught_before_running(scene, damaged, tmp_path):
    prediction = damaged[0]
    html = str(tmp_path / "r.html")
    with pytest.raises(QgsProcessingException, match="exactly one reference"):
        _run({"PREDICTION": prediction, "OUTPUT_HTML": html})
    with pytest.raises(QgsProcessingException, match=r"'lake'.*not classes of the schema"):
        _run(
            {
                "PREDICTION": prediction,
                "REFERENCE_VECTOR": _polygons(["water", "lake"]),
                "CLASS_FIELD": "cls",
                "OUTPUT_HTML": html,
            }
        )
    with pytest.raises(QgsProcessingException, match="do not overlap"):
        _run(
            {
                "PREDICTION": prediction,
                "REFERENCE_VECTOR": _polygons(["water"], box=(0, 0)),
                "CLASS_FIELD": "cls",
                "OUTPUT_HTML": html,
            }
        )
    with pytest.raises(QgsProcessingException, match=r"gives its 3 band\(s\), but 1 band"):
        _run({"PREDICTION": scene["optical"], "REFERENCE_RASTER": scene["label"], "OUTPUT_HTML": html})
    Path(html).write_text("previous report")
    with pytest.raises(QgsProcessingException, match="already exists"):
        _run({"PREDICTION": prediction, "REFERENCE_RASTER": scene["label"], "OUTPUT_HTML": html})
    assert Path(html).read_text() == "previous report"


def test_evaluate_through_qgis_process_json(scene, damaged, tmp_path):
    env = dict(os.environ, SGCAD_QGIS_PROFILE=str(tmp_path / "profile"))
    command = [
        str(ROOT / "scripts" / "qgis_process"),
        "run",
        "sgcad:evaluate",
        "--json",
        "--",
        f"PREDICTION={damaged[0]}",
        f"REFERENCE_RASTER={scene['label']}",
        f"OUTPUT_HTML={tmp_path / 'cli.html'}",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout[done.stdout.index("{") :])["results"]
    label, pred = damaged[1], damaged[2]
    valid = label != 255
    assert result["OA"] == pytest.approx(float((pred[valid] == label[valid]).mean()))
    assert Path(result["OUTPUT_HTML"]).is_file()
