"""sgcad:explain: the engine's text and numbers through Processing, for a run, a window and an AOI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from qgis.core import QgsProcessingException
from rasterio.transform import from_origin

NAMES = ("farmland", "city", "village", "water", "forest", "road")


def _run(params):
    import processing

    return processing.run("sgcad:explain", params)


@pytest.fixture()
def run_folder(tmp_path, sgcad_provider) -> Path:
    """A 12 x 12 segmentation: farmland west, water east, SAR-only pixels in the south-east corner."""
    folder = tmp_path / "seg"
    folder.mkdir()
    cls = np.zeros((12, 12), np.uint8)
    cls[:, 8:] = 3
    conf = np.full((12, 12), 0.8, np.float32)
    conf[:4, :4] = 0.45
    conf[10:, 10:] = -0.9
    gates = np.ones((3, 12, 12), np.uint8)
    gates[2, 10:, 10:] = 255
    profile = dict(driver="GTiff", width=12, height=12, crs="EPSG:32631",
                   transform=from_origin(600000, 5000120, 10, 10))
    names = json.dumps({str(i): n for i, n in enumerate(NAMES)})
    for name, array, dtype, nodata in (("classes", cls[None], "uint8", 255),
                                       ("confidence", conf[None], "float32", None),
                                       ("gates", gates, "uint8", 255),
                                       ("water_probability", (cls[None] == 3).astype(np.float32), "float32", None)):
        with rasterio.open(folder / f"{name}.tif", "w", count=array.shape[0], dtype=dtype, nodata=nodata,
                           **profile) as dst:
            dst.write(array)
            if name == "classes":
                dst.update_tags(class_names=names, water_class="3")
    return folder


def test_explain_returns_the_engine_text_and_writes_json_and_report(run_folder):
    from sgcad_qgis.engine.explain import explain_run

    expected = explain_run(run_folder, write=False)
    result = _run({"RUN_FOLDER": str(run_folder)})
    assert result["TEXT"] == expected["text"] and "farmland" in result["TEXT"]
    assert result["SAR_ONLY_SHARE"] == pytest.approx(4 / 144)
    assert result["AGREEMENT"] == pytest.approx(1.0)
    saved = json.loads(Path(result["OUTPUT_JSON"]).read_text())
    assert saved["text"] == result["TEXT"] and saved["numbers"]["classes"]["water"]["pixels"] == 48
    assert "Why the map looks like this" in Path(result["REPORT"]).read_text()
    with pytest.raises(QgsProcessingException, match="already exists"):
        _run({"RUN_FOLDER": str(run_folder)})
    assert _run({"RUN_FOLDER": str(run_folder), "OVERWRITE": True})["TEXT"] == expected["text"]


def test_a_window_or_an_extent_limits_the_explanation(run_folder):
    window = _run({"RUN_FOLDER": str(run_folder), "WINDOW": "0,0,4,4"})
    numbers = json.loads(Path(window["OUTPUT_JSON"]).read_text())["numbers"]
    assert numbers["region"]["kind"] == "window" and numbers["region"]["pixels"] == 16
    assert numbers["classes"]["farmland"]["mean_confidence"] == pytest.approx(0.45)
    assert window["TEXT"].startswith("The selected tile covers 4 × 4 px")
    area = _run({"RUN_FOLDER": str(run_folder), "AOI_EXTENT": "600080,600120,5000000,5000120 [EPSG:32631]"})
    numbers = json.loads(Path(area["OUTPUT_JSON"]).read_text())["numbers"]
    assert numbers["region"]["kind"] == "aoi" and numbers["classes"]["water"]["pixels"] == 48
    assert numbers["classes"]["farmland"]["pixels"] == 0


def test_bad_requests_are_refused_before_running(run_folder, tmp_path):
    with pytest.raises(QgsProcessingException, match="classes.tif"):
        _run({"RUN_FOLDER": str(tmp_path)})
    with pytest.raises(QgsProcessingException, match="WINDOW"):
        _run({"RUN_FOLDER": str(run_folder), "WINDOW": "1,2,3"})


def test_training_algorithms_offer_the_claire_fusion_and_the_rift_loss(sgcad_provider):
    """(The training side of the CLAIRE issue: choices map onto StudentConfig.fusion and LossConfig.)"""
    from qgis.core import QgsProcessingContext

    algs = {a.name(): a for a in sgcad_provider.algorithms()}
    context = QgsProcessingContext()
    student = algs["trainstudent"]
    assert "CLAIRE" in " ".join(student.parameterDefinition("FUSION").options())
    assert algs["distill"].parameterDefinition("FUSION") is None  # stage 2 keeps the stage-1 network
    config = student.model_config({"FUSION": 1}, context)
    assert config.fusion == "claire"
    assert student.model_config({"FUSION": 1, "MODEL_CONFIG": '{"fusion": "concat"}'}, context).fusion == "concat"
    loss = student.loss_config({"CLASS_WEIGHTS": True, "LOSS": 1, "FOCAL_GAMMA": 1.5, "TVERSKY_ALPHA": 0.2,
                                "TVERSKY_BETA": 0.8}, context)
    assert (loss.kind, loss.focal_gamma, loss.tversky_alpha, loss.tversky_beta) == ("rift", 1.5, 0.2, 0.8)
    for name in ("trainteacher", "distill"):
        assert algs[name].loss_config({"CLASS_WEIGHTS": True, "LOSS": 1}, context).kind == "rift"
    assert student.loss_config({"CLASS_WEIGHTS": True}, context).kind == "sgcad"
