"""The shipped Graphical Modeler model: in step with its builder, and it runs end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from alg_fixtures import TINY_STUDENT, TINY_TEACHER
from qgis.core import QgsProcessingFeedback, QgsProcessingModelAlgorithm

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "resources" / "modeler" / "sgcad_pipeline.model3"
STEPS = ["align", "teacher", "student", "distill", "segment", "evaluate"]


def _load(path: Path = MODEL) -> QgsProcessingModelAlgorithm:
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(path)), path
    return model


def test_shipped_model_matches_its_builder_and_chains_the_whole_pipeline(sgcad_provider, tmp_path):
    from sgcad_qgis.algorithms._modeler import save_pipeline_model

    shipped = _load()
    rebuilt = _load(save_pipeline_model(tmp_path / "rebuilt.model3"))  # the same save-and-load round trip
    assert shipped.toVariant() == rebuilt.toVariant(), "regenerate it with _modeler.save_pipeline_model()"
    children = shipped.childAlgorithms()
    assert sorted(children) == sorted(STEPS)
    for child_id, child in children.items():
        assert child.algorithm() is not None, f"{child_id}: {child.algorithmId()} is not registered"
    depends = shipped.dependsOnChildAlgorithms
    assert depends("teacher") == depends("student") == {"align"}
    assert depends("distill") == {"align", "teacher", "student"}
    assert depends("evaluate") == set(STEPS) - {"evaluate"}
    ok, errors = shipped.validate()
    assert ok, errors


def test_model_runs_on_a_small_synthetic_scene(sgcad_provider, synthetic_scene, tmp_path):
    import processing

    feedback = QgsProcessingFeedback()
    scene = synthetic_scene
    results = processing.run(
        _load(),
        {
            "optical": scene["optical"],
            "sar": scene["sar"],
            "labels": scene["label"],
            "epochs": 1,
            "warmup_epochs": 0,
            "patch_size": 64,
            "tile_size": 64,
            "batch_size": 4,
            "max_batches": 2,
            "threads": 1,
            "teacher_network": json.dumps(TINY_TEACHER),
            "student_network": json.dumps(TINY_STUDENT),
            "teacher:Teacher run": str(tmp_path / "teacher"),
            "student:Student run": str(tmp_path / "student"),
            "distill:Distilled run": str(tmp_path / "distill"),
            "segment:Land cover": str(tmp_path / "map"),
            "evaluate:Accuracy report": str(tmp_path / "report.html"),
        },
        feedback=feedback,
    )
    for folder in ("teacher", "student", "distill"):
        assert (tmp_path / folder / "best.safetensors").is_file(), folder
    for name in ("gates.tif", "kd_ratio.tif"):
        assert (tmp_path / "distill" / name).is_file(), name
    with rasterio.open(tmp_path / "map" / "classes.tif") as src:
        assert src.shape == (192, 192)
    html = Path(results["evaluate:Accuracy report"]).read_text()
    assert "Kappa" in html and "Confusion matrix" in html
    evaluation = results["CHILD_RESULTS"]["evaluate"]  # the numbers are there for later Modeler steps
    assert 0.0 <= evaluation["OA"] <= 1.0 and -1.0 <= evaluation["KAPPA"] <= 1.0
    # Every step feeds its network the same values: the same files, units and chains. The
    # networks' inputs are compared directly on one window read as each model reads it.
    from sgcad_qgis.engine.inputs.contract import InputRecipe, resolve_inputs
    from sgcad_qgis.engine.inputs.reader import PairReader
    from sgcad_qgis.engine.models.checkpoint import read_metadata
    from sgcad_qgis.engine.raster.grid import grid_of

    inputs = results["CHILD_INPUTS"]
    optical, sar = inputs["segment"]["OPTICAL"], inputs["segment"]["SAR"]
    for step in ("teacher", "student", "distill"):
        assert (inputs[step]["SAR"], inputs[step]["OPTICAL"]) == (sar, optical), step
    metas = {step: read_metadata(tmp_path / step / "best.safetensors") for step in ("teacher", "student", "distill")}
    assert {m.sar_preprocess.units for m in metas.values()} == {"linear"}  # the synthetic SAR is sigma0
    assert {m.optical_preprocess.units for m in metas.values()} == {"uint8"}
    assert results["CHILD_RESULTS"]["segment"]["INPUT_UNITS"] == "optical uint8, SAR linear"
    window = {}
    for step, meta in metas.items():
        resolved = resolve_inputs(InputRecipe.of(meta), optical, sar)
        reader = PairReader(optical, sar, grid_of(sar), resolved.bands.optical_bands, resolved.bands.sar_bands,
                            [resolved.preprocessor])
        window[step] = reader.read(40, 40, 64, 64)
    for step in ("student", "distill"):
        np.testing.assert_array_equal(window[step].sar[0], window["teacher"].sar[0])
        np.testing.assert_array_equal(window[step].optical, window["student"].optical)
    assert 0.2 < float(np.nanmean(window["teacher"].sar[0])) < 0.8  # backscatter in the model's dB range
