"""sgcad:pretrainsar, and fine-tuning that starts from a SAR encoder pretrained on the SAR layer."""

from __future__ import annotations

import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback


def _run(alg, params, feedback=None):
    import processing

    return processing.run(f"sgcad:{alg}", params, feedback=feedback or QgsProcessingFeedback())


def test_pretrainsar_follows_the_student_and_writes_an_encoder(scene, untrained_models, tmp_path):
    from sgcad_qgis.engine.models import build_model
    from sgcad_qgis.engine.models.checkpoint import load_model
    from sgcad_qgis.engine.pretrain import init_from_pretrained, load_encoder

    params = {"SAR_LAYERS": [scene["sar"]], "LIKE": untrained_models["student"], "STEPS": 2, "BATCH_SIZE": 2,
              "VIEW_SIZE": 32, "DEVICE": 1, "THREADS": 1, "OUTPUT_FOLDER": str(tmp_path / "pre")}
    result = _run("pretrainsar", params)
    state, meta = load_encoder(result["OUTPUT_ENCODER"])
    student, student_meta = load_model(untrained_models["student"])
    assert meta.model["target"] == "student" and meta.bands.sar_bands == student_meta.bands.sar_bands
    assert meta.sar_preprocess.lee_window == student_meta.sar_preprocess.lee_window  # the model's recipe
    fresh = build_model(student.config)
    init_from_pretrained(fresh, result["OUTPUT_ENCODER"])
    assert all((fresh.sar_encoder.state_dict()[k] == v).all() for k, v in state.items())
    assert result["LAST_LOSS"] > 0 and result["REPORT"].endswith("report.html")

    feedback = QgsProcessingFeedback()
    feedback.cancel()
    with pytest.raises(QgsProcessingException, match="canceled"):
        _run("pretrainsar", {**params, "OUTPUT_FOLDER": str(tmp_path / "cancelled")}, feedback)


def test_finetune_pretrains_on_the_sar_layer_first(scene, untrained_models, tmp_path):
    """What the dock's "pretrain on this SAR layer first" asks of sgcad:finetune (PRETRAIN_STEPS): a
    child sgcad:pretrainsar run shaped like the student, whose encoder the fine-tune starts from."""
    from qgis.core import QgsApplication, QgsProcessingContext
    from sgcad_qgis.engine.models.checkpoint import read_metadata

    alg = QgsApplication.processingRegistry().algorithmById("sgcad:finetune").create()
    params = {"STUDENT": untrained_models["student"], "PRETRAIN_STEPS": 2, "DEVICE": 1, "THREADS": 1}
    encoder = alg._pretrain(params, QgsProcessingContext(), QgsProcessingFeedback(), scene["sar"],
                            str(tmp_path / "ft"), "cpu")
    assert encoder == str(tmp_path / "ft" / "pretrain" / "sar_encoder.safetensors")
    meta = read_metadata(encoder)
    assert meta.kind == "sar_encoder" and meta.train["config"]["steps"] == 2
    with pytest.raises(QgsProcessingException, match="needs the student"):
        alg._pretrain({**params, "STUDENT": ""}, QgsProcessingContext(), QgsProcessingFeedback(), scene["sar"],
                      str(tmp_path / "ft2"), "cpu")


def test_dock_option_asks_finetune_to_pretrain_first(scene, untrained_models, tmp_path):
    from qgis.core import QgsRasterLayer, QgsVectorLayer

    from sgcad_qgis.gui import wiring

    choice = wiring.Choice(optical=QgsRasterLayer(scene["optical"], "optical"), optical_bands=[],
                           sar=QgsRasterLayer(scene["sar"], "sar"), sar_bands=[], model=untrained_models["student"],
                           teacher="", device=1, folder=tmp_path)
    labels = QgsVectorLayer(scene["label_vector"], "labels", "ogr")
    params, _ = wiring.finetune_parameters(choice, labels, 5, pretrain_steps=300)
    assert params["PRETRAIN_STEPS"] == 300 and params["STEPS"] == 5
    assert "PRETRAIN_STEPS" not in wiring.finetune_parameters(choice, labels, 5)[0]
