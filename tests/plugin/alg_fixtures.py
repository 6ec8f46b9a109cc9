"""Session fixtures shared by the algorithm and Modeler tests (imported by ``conftest.py``).

Data are a seeded synthetic scene made by the engine's generator, copied per test where a test
writes beside its inputs. Models are tiny networks so that a test file runs in seconds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

TINY_STUDENT = {
    "widths": [8, 8, 16, 16],
    "blocks_per_stage": [1, 1, 1, 1],
    "decoder_channels": 8,
    "attention_dim": 8,
    "pool_size": 4,
}
TINY_TEACHER = {"widths": [4, 8, 8, 8], "blocks_per_branch": [1, 1, 1, 1], "modules_per_stage": [1, 1, 1, 1]}
SCENE_SIZE = 192
_REGISTERED = []  # Processing does not keep the Python side of a provider alive: we do


def ensure_sgcad_provider():
    """The SGCAD provider in QGIS's Processing registry, registered again if a test removed it
    (unloading the plugin deletes it)."""
    from qgis.core import QgsApplication

    from sgcad_qgis.provider import SgcadProvider

    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("sgcad")
    if provider is None:
        provider = SgcadProvider()
        assert registry.addProvider(provider)
        _REGISTERED.append(provider)
    return provider


@pytest.fixture(scope="session")
def synthetic_scene(tmp_path_factory, qgis_processing) -> dict:
    """A 192 x 192 synthetic scene (optical, SAR, label raster and polygons), written once."""
    from sgcad_qgis.engine.data.synthetic import generate_scene

    folder = tmp_path_factory.mktemp("scene")
    result = generate_scene(folder, size=SCENE_SIZE, seed=5)
    return {k: result[k] for k in ("optical", "sar", "label", "label_vector")}


@pytest.fixture()
def scene(synthetic_scene, tmp_path, sgcad_provider) -> dict:
    """A private copy of the synthetic scene (tests may write beside it)."""
    out = {}
    for key, path in synthetic_scene.items():
        target = tmp_path / "inputs" / Path(path).name
        target.parent.mkdir(exist_ok=True)
        shutil.copy(path, target)
        out[key] = str(target)
    return out


@pytest.fixture(scope="session")
def untrained_models(synthetic_scene, tmp_path_factory) -> dict:
    """A tiny student and teacher with the scene's real normalisation but random weights.

    Enough for tests of wrappers whose behaviour does not depend on accuracy (inference paths,
    band and class checks).
    """
    import torch
    from sgcad_qgis.engine.config import (
        ModelMetadata,
        OpticalPreprocessConfig,
        SarPreprocessConfig,
        StudentConfig,
        TeacherConfig,
        from_dict,
        to_dict,
    )
    from sgcad_qgis.engine.inputs.contract import InputRecipe, resolve_inputs
    from sgcad_qgis.engine.models import build_model
    from sgcad_qgis.engine.models.checkpoint import save_model

    folder = tmp_path_factory.mktemp("untrained")
    recipe = InputRecipe(sar=SarPreprocessConfig(lee_window=3), optical=OpticalPreprocessConfig())
    stored = resolve_inputs(recipe, synthetic_scene["optical"], synthetic_scene["sar"]).stored()
    out = {}
    for kind, cls, tiny in (
        ("student", StudentConfig, TINY_STUDENT),
        ("teacher", TeacherConfig, TINY_TEACHER),
    ):
        torch.manual_seed(0)
        config = from_dict(cls, tiny)
        meta = ModelMetadata(kind=kind, model=to_dict(config), **stored)
        out[kind] = str(save_model(folder / f"{kind}.safetensors", build_model(config), meta))
    return out


def training_params(scene: dict, folder, epochs: int = 2, **extra) -> dict:
    """Tiny, fast training settings on the synthetic scene (64-pixel patches, 2 threads)."""
    params = {
        "OPTICAL": scene["optical"],
        "SAR": scene["sar"],
        "LABELS": scene["label"],
        "EPOCHS": epochs,
        "PATCH_SIZE": 64,
        "TILE_SIZE": 64,
        "BATCH_SIZE": 4,
        "LEE_WINDOW": 3,
        "PATIENCE": 0,
        "THREADS": 1,
        "DEVICE": 1,
        "OUTPUT_FOLDER": str(folder),
    }
    params.update(extra)
    return params


@pytest.fixture(scope="session")
def trained_models(synthetic_scene, tmp_path_factory) -> dict:
    """A tiny teacher and stage-1 student trained through the algorithms once per session."""
    import json

    import processing

    ensure_sgcad_provider()
    folder = tmp_path_factory.mktemp("trained")
    out = {}
    for alg, kind, tiny in (
        ("trainteacher", "teacher", TINY_TEACHER),
        ("trainstudent", "student", TINY_STUDENT),
    ):
        params = training_params(synthetic_scene, folder / kind, epochs=6, MODEL_CONFIG=json.dumps(tiny), LR=0.02)
        out[kind] = processing.run(f"sgcad:{alg}", params)
    return out
