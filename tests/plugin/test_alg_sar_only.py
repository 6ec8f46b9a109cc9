"""A SAR-only model in Processing and the dock: the optical layer may stay empty."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
from alg_fixtures import TINY_STUDENT
from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsRasterLayer


@pytest.fixture(scope="module")
def sar_only_model(synthetic_scene, tmp_path_factory) -> str:
    """A tiny untrained SAR-only model with the scene's real SAR normalisation."""
    import torch
    from sgcad_qgis.engine.config import BandMapping, ModelMetadata, StudentConfig, to_dict
    from sgcad_qgis.engine.inputs.contract import InputRecipe, resolve_inputs
    from sgcad_qgis.engine.models import build_model
    from sgcad_qgis.engine.models.checkpoint import save_model

    recipe = InputRecipe(bands=BandMapping(optical_bands=(), optical_names=()))
    stored = resolve_inputs(recipe, None, synthetic_scene["sar"]).stored()
    torch.manual_seed(0)
    cfg = StudentConfig(name="sarnet", optical_channels=0, **TINY_STUDENT)
    meta = ModelMetadata(kind="student", model=to_dict(cfg), **stored)
    return str(save_model(tmp_path_factory.mktemp("sar_only") / "sarnet.safetensors", build_model(cfg), meta))


def _segment(params):
    import processing

    return processing.run("sgcad:segment", params, feedback=QgsProcessingFeedback())


def test_segment_without_optical_equals_the_engine(scene, sar_only_model, tmp_path):
    from sgcad_qgis.engine.config import InferenceConfig
    from sgcad_qgis.engine.inference.pipeline import segment_scene

    params = {"SAR": scene["sar"], "MODEL": sar_only_model, "DEVICE": 1, "TILE_SIZE": 96, "OVERLAP": 16,
              "THREADS": 1, "OUTPUT_FOLDER": str(tmp_path / "out")}
    result = _segment(params)
    direct = segment_scene(None, scene["sar"], sar_only_model, tmp_path / "direct",
                           cfg=InferenceConfig(tile_size=96, overlap=16, device="cpu", threads=1))
    with rasterio.open(result["CLASSES"]) as a, rasterio.open(direct["outputs"]["classes"]) as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))


def test_optical_student_without_optical_is_refused(scene, untrained_models, tmp_path):
    params = {"SAR": scene["sar"], "MODEL": untrained_models["student"], "DEVICE": 1,
              "OUTPUT_FOLDER": str(tmp_path / "out")}
    with pytest.raises(QgsProcessingException, match="trained on optical \\+ SAR"):
        _segment(params)


def test_dock_choice_leaves_the_optical_out_for_a_sar_only_model(scene, sar_only_model, untrained_models,
                                                                  tmp_path):
    from sgcad_qgis.gui import wiring

    sar = QgsRasterLayer(scene["sar"], "sar")
    optical = QgsRasterLayer(scene["optical"], "optical")

    def dock(optical_layer, model):
        picker = lambda layer, bands: SimpleNamespace(layer=lambda: layer, selected_bands=lambda: bands)  # noqa: E731
        return SimpleNamespace(
            optical=picker(optical_layer, [1, 2, 3]), sar=picker(sar, [1]),
            model_picker=SimpleNamespace(current_path=lambda: model), teacher=SimpleNamespace(filePath=lambda: ""),
            device=SimpleNamespace(index=lambda: 1), output=SimpleNamespace(filePath=lambda: str(tmp_path)),
            area=SimpleNamespace(area=lambda: (None, None)),
        )

    for optical_layer in (None, optical):  # an optical layer left in the dock is not read
        choice = wiring.gather(dock(optical_layer, sar_only_model))
        assert choice.optical is None and choice.optical_bands == []
        params, _ = wiring.segment_parameters(choice)
        assert "OPTICAL" not in params and params["SAR"] == sar.source()
    with pytest.raises(ValueError, match="Choose both an optical and a SAR raster"):
        wiring.gather(dock(None, untrained_models["student"]))
    assert "SAR-only" in wiring.describe_model(wiring.read_model(sar_only_model))
