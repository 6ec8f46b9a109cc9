"""``python -m engine segment`` with real (tiny) checkpoints on the real SpaceNet 6 pair, and
the torch and ONNX Runtime backends agreeing on the same scene."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from engine.config import (
    BandMapping,
    BandNormalization,
    InferenceConfig,
    ModelMetadata,
    NormalizationRecord,
    SarPreprocessConfig,
    StudentConfig,
    TeacherConfig,
    to_dict,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny student + teacher for RGB and two SpaceNet SAR bands (HH, VV; dB)."""
    import torch

    from engine.models import build_model
    from engine.models.checkpoint import save_model

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("ckpt")
    common = dict(
        bands=BandMapping((1, 2, 3), (1, 4), ("red", "green", "blue"), ("hh", "vv")),
        sar_normalization=NormalizationRecord(
            "sar", (BandNormalization(1, -20.0, 15.0), BandNormalization(4, -20.0, 15.0))
        ),
        sar_preprocess=SarPreprocessConfig(units="db"),
    )
    student = StudentConfig(
        sar_channels=2, widths=(8, 8, 16, 16), decoder_channels=8, attention_dim=8, pool_size=4
    )
    teacher = TeacherConfig(sar_channels=2, widths=(4, 8, 8, 8))
    s = save_model(
        d / "student.safetensors",
        build_model(student).eval(),
        ModelMetadata(kind="student", model=to_dict(student), **common),
    )
    t = save_model(
        d / "teacher.safetensors",
        build_model(teacher).eval(),
        ModelMetadata(kind="teacher", model=to_dict(teacher), **common),
    )
    return s, t


def _cli(*args, cache):
    env = dict(os.environ, SGCAD_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "engine", "segment", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_cli_segments_the_spacenet6_pair_and_keeps_the_sar_footprint(shared_data, checkpoints, tmp_path):
    d = shared_data / "spacenet6_rotterdam"
    student, teacher = checkpoints
    args = [
        "--optical",
        d / "rgb_unmasked.tif",
        "--sar",
        d / "sar_masked.tif",
        "--model",
        student,
        "--teacher",
        teacher,
        "--out",
        tmp_path / "out",
        "--tile-size",
        128,
        "--overlap",
        32,
        "--backend",
        "onnx",
        "--json",
        "--quiet",
    ]
    run = _cli(*args, cache=tmp_path / "cache")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["backend"] == "onnx" and result["tiles"] == 4
    with rasterio.open(d / "sar_masked.tif") as src:
        sar = src.read([1, 4])
        sar_grid = (src.crs, src.transform)
    with rasterio.open(result["outputs"]["classes"]) as ds:
        classes = ds.read(1)
        assert (ds.crs, ds.transform) == sar_grid  # outputs on the SAR's grid by default
    footprint = np.isfinite(sar).all(axis=0)
    assert 0.5 < footprint.mean() < 0.7  # the real NaN footprint (about 39 % outside)
    np.testing.assert_array_equal(classes == 255, ~footprint)  # nodata in, nodata out
    with rasterio.open(result["outputs"]["water"]) as ds:
        water = ds.read(1)
    assert np.isfinite(water[footprint]).all() and np.isnan(water[~footprint]).all()
    assert ((water[footprint] >= 0) & (water[footprint] <= 1)).all()

    again = _cli(*args, cache=tmp_path / "cache")
    assert again.returncode == 2 and "output exists; choose another name or pass overwrite=True" in again.stderr
    assert json.loads(again.stdout.strip().splitlines()[-1])["ok"] is False


def test_torch_and_onnx_backends_agree(shared_data, checkpoints, tmp_path, monkeypatch):
    from engine.inference.pipeline import segment_scene

    monkeypatch.setenv("SGCAD_CACHE_DIR", str(tmp_path / "cache"))
    d = shared_data / "spacenet6_rotterdam"
    student, teacher = checkpoints
    out = {}
    for backend in ("torch", "onnx"):
        cfg = InferenceConfig(tile_size=128, overlap=32, batch_size=3, backend=backend)
        r = segment_scene(
            d / "rgb_unmasked.tif", d / "sar_masked.tif", student, tmp_path / backend, teacher, cfg
        )
        assert r["backend"] == backend
        out[backend] = {k: rasterio.open(p).read() for k, p in r["outputs"].items()}
    assert list((tmp_path / "cache" / "onnx").glob("*.onnx"))  # exported once, cached by weights
    for key in ("confidence", "water"):
        a, b = out["torch"][key], out["onnx"][key]
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        assert np.nanmax(np.abs(a - b)) < 1e-4
    assert (out["torch"]["classes"] != out["onnx"]["classes"]).mean() < 1e-3


def test_cli_defaults_to_the_bundled_models_as_the_plugin_does(checkpoints, tmp_path):
    # sgcad:segment defaults to the bundled student and water teacher; so does the command line, and
    # --no-teacher runs the student alone
    from engine.commands.bundled import BUNDLED_TEACHER, segment_teacher

    d = ROOT / "resources" / "sample" / "rotterdam"
    base = ["--optical", d / "rgb_unmasked.tif", "--sar", d / "sar_masked.tif", "--json", "--quiet"]
    both = json.loads(_cli(*base, "--out", tmp_path / "both", cache=tmp_path / "c").stdout.splitlines()[-1])
    alone = json.loads(_cli(*base, "--out", tmp_path / "alone", "--no-teacher", cache=tmp_path / "c").stdout
                       .splitlines()[-1])
    assert both["ok"] and {"classes", "water", "gates"} <= set(both["outputs"])
    assert alone["ok"] and "classes" in alone["outputs"] and not {"water", "gates"} & set(alone["outputs"])
    with rasterio.open(both["outputs"]["water"]) as src:
        assert src.tags()["teacher"] == BUNDLED_TEACHER.name

    student, teacher = checkpoints  # two SAR bands: the bundled one-band teacher cannot join it
    chosen, note = segment_teacher(str(student), None, False)
    assert chosen is None and "reads 1 SAR band(s)" in note and "--teacher" in note
    assert segment_teacher(str(student), str(teacher), False) == (str(teacher), None)
    with pytest.raises(ValueError, match="--no-teacher"):
        segment_teacher(str(student), str(teacher), True)
