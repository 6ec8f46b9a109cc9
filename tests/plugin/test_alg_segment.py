"""sgcad:segment through processing.run and qgis_process: outputs, styling, AOI and early errors."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from qgis.core import (
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
)

ROOT = Path(__file__).resolve().parents[2]


def _run(params, context=None):
    import processing

    return processing.run("sgcad:segment", params, context=context, feedback=QgsProcessingFeedback())


def _params(scene, models, out, **extra):
    params = {
        "OPTICAL": scene["optical"],
        "SAR": scene["sar"],
        "MODEL": models["student"],
        "TEACHER": models["teacher"],
        "DEVICE": 1,
        "TILE_SIZE": 96,
        "OVERLAP": 16,
        "BATCH_SIZE": 2,
        "THREADS": 1,
        "OUTPUT_FOLDER": str(out),
    }
    params.update(extra)
    return params


def test_segment_writes_styled_outputs_equal_to_the_engine_over_the_aoi(scene, untrained_models, tmp_path):
    from sgcad_qgis.engine.config import InferenceConfig
    from sgcad_qgis.engine.inference.pipeline import segment_scene

    with rasterio.open(scene["sar"]) as src:
        left, top = src.transform.c, src.transform.f
    # AOI: 100 x 60 pixels (2 m) in the scene's corner, given with its CRS as Processing does
    aoi = f"{left + 20},{left + 220},{top - 140},{top - 20} [EPSG:32631]"
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    result = _run(_params(scene, untrained_models, tmp_path / "out", AOI_EXTENT=aoi), context)

    assert result["TILES"] >= 1 and result["DEVICE_USED"] == "cpu"
    for key in ("CLASSES", "CONFIDENCE", "WATER_PROBABILITY", "GATES"):
        assert Path(result[key]).is_file(), key
    with rasterio.open(result["CLASSES"]) as src:
        classes = src.read(1)
        assert src.shape == (60, 100) and src.transform.c == left + 20 and src.transform.f == top - 20

    direct = segment_scene(
        scene["optical"],
        scene["sar"],
        untrained_models["student"],
        tmp_path / "direct",
        teacher_path=untrained_models["teacher"],
        cfg=InferenceConfig(tile_size=96, overlap=16, batch_size=2, device="cpu", threads=2),
        aoi=(left + 20, top - 140, left + 220, top - 20),
    )
    with rasterio.open(direct["outputs"]["classes"]) as src:
        np.testing.assert_array_equal(classes, src.read(1))

    names = {Path(p).name: d.name for p, d in context.layersToLoadOnCompletion().items()}
    # the class map loads; its post-processor adds the other outputs to the run's group, hidden
    assert names == {"classes.tif": "Land cover (student)"}
    assert "wrote" not in result["WARNINGS"] and result["INPUT_UNITS"] == "optical uint8, SAR linear"
    reopened = QgsRasterLayer(result["CLASSES"], "reopened")  # its .qml sidecar styles it
    assert isinstance(reopened.renderer(), QgsPalettedRasterRenderer)
    labels = {c.value: c.label for c in reopened.renderer().classes()}
    assert labels[3] == "3 water" and labels[254] == "non-water (SAR only)"
    del reopened


def test_segment_refuses_before_running(scene, untrained_models, tmp_path):
    with pytest.raises(QgsProcessingException, match=r"gives the 2 chosen band\(s\) \[1, 2\], but 3 band"):
        _run(_params(scene, untrained_models, tmp_path / "a", OPTICAL_BANDS=[1, 2]))
    with pytest.raises(QgsProcessingException, match="is a teacher checkpoint, but a student checkpoint"):
        _run(_params(scene, untrained_models, tmp_path / "b", MODEL=untrained_models["teacher"]))

    far = tmp_path / "far_sar.tif"  # the same SAR, 100 km away
    with rasterio.open(scene["sar"]) as src:
        profile, data = src.profile, src.read()
    profile["transform"] = profile["transform"] * profile["transform"].translation(50000, 0)
    with rasterio.open(far, "w", **profile) as dst:
        dst.write(data)
    with pytest.raises(QgsProcessingException, match="do not overlap"):
        _run(_params(scene, untrained_models, tmp_path / "c", SAR=str(far)))

    paletted = tmp_path / "paletted.tif"  # one band of colour-table indices: named, with the remedy
    with rasterio.open(scene["optical"]) as src:
        profile, rgb = src.profile, src.read()
    profile.update(count=1, dtype="uint8", photometric="palette", nodata=None)
    with rasterio.open(paletted, "w", **profile) as dst:
        dst.write((rgb[0] > np.median(rgb[0])).astype("uint8"), 1)
        dst.write_colormap(1, {0: (0, 0, 0, 255), 1: (255, 255, 255, 255)})
    with pytest.raises(QgsProcessingException, match="paletted picture.*PCT to RGB"):
        _run(_params(scene, untrained_models, tmp_path / "p", OPTICAL=str(paletted)))
    assert not (tmp_path / "p").exists()

    out = tmp_path / "d"
    out.mkdir()
    (out / "classes.tif").write_bytes(b"keep me")
    with pytest.raises(QgsProcessingException, match="already exists.*OVERWRITE=true"):
        _run(_params(scene, untrained_models, out))
    assert (out / "classes.tif").read_bytes() == b"keep me"
    assert sorted(p.name for p in out.iterdir()) == ["classes.tif"]  # nothing else written


def test_segment_through_qgis_process_json(scene, untrained_models, tmp_path):
    env = dict(os.environ, SGCAD_QGIS_PROFILE=str(tmp_path / "profile"))
    out = tmp_path / "cli"
    command = [
        str(ROOT / "scripts" / "qgis_process"),
        "run",
        "sgcad:segment",
        "--json",
        "--",
        f"OPTICAL={scene['optical']}",
        f"SAR={scene['sar']}",
        # no MODEL: the bundled student is its default (QGIS 3.22's qgis_process demanded it)
        "TEACHER=",  # empty: no water expert (the bundled one is the default)
        "DEVICE=1",
        "TILE_SIZE=96",
        "OVERLAP=16",
        "THREADS=1",
        f"OUTPUT_FOLDER={out}",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout[done.stdout.index("{") :])["results"]
    assert Path(result["CLASSES"]).is_file() and result["WATER_PROBABILITY"] == ""
    with rasterio.open(result["CLASSES"]) as src:
        assert src.shape == (192, 192)
        assert set(np.unique(src.read(1))) <= set(range(6))
        assert src.tags()["model"] == "sgcad_student.safetensors"


def test_batch_rows_run_independently_like_the_batch_dialog(scene, untrained_models, tmp_path):
    """The batch dialog calls alg.run() per row on one instance, with a fresh context each time."""
    from processing.gui.Postprocessing import handleAlgorithmResults
    from processing.tools import dataobjects
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById("sgcad:segment")
    rows = [
        _params(
            scene,
            untrained_models,
            tmp_path / "row1",
            AOI_EXTENT="590000,590100,5759900,5760000 [EPSG:32631]",
        ),
        _params(scene, untrained_models, tmp_path / "row2", OPTICAL_BANDS=[1, 2]),  # wrong: 2 of 3 bands
        _params(scene, untrained_models, tmp_path / "row3", TEACHER=""),  # empty: no water expert
    ]
    outcomes = []
    for params in rows:
        feedback = QgsProcessingFeedback()
        context = dataobjects.createContext(feedback)
        results, ok = alg.run(params, context, feedback)
        if ok:
            handleAlgorithmResults(alg, context, feedback, False, params)
        outcomes.append((ok, results))
    assert [ok for ok, _ in outcomes] == [True, False, True]
    with rasterio.open(outcomes[0][1]["CLASSES"]) as first, rasterio.open(outcomes[2][1]["CLASSES"]) as third:
        assert first.shape == (50, 50) and third.shape == (192, 192)
    assert outcomes[0][1]["GATES"] and not outcomes[2][1]["GATES"]  # only row 1 had a teacher
    assert not (tmp_path / "row2").exists() or not any((tmp_path / "row2").iterdir())


def test_cancel_stops_the_engine_and_leaves_no_file(scene, untrained_models, tmp_path):
    import processing

    feedback = QgsProcessingFeedback()
    seen = []

    def cancel_after_first_tile(percent):
        seen.append(percent)
        if percent > 0:
            feedback.cancel()

    feedback.progressChanged.connect(cancel_after_first_tile)
    out = tmp_path / "canceled"
    with pytest.raises(QgsProcessingException, match="canceled; no output was written"):
        processing.run(
            "sgcad:segment",
            _params(scene, untrained_models, out, TILE_SIZE=64, OVERLAP=8, BATCH_SIZE=1),
            feedback=feedback,
        )
    assert seen and max(seen) < 100
    assert not out.exists() or list(out.iterdir()) == []


def test_input_warnings_reach_the_processing_log_and_outputs(scene, untrained_models, tmp_path):
    """A constant optical band is reported as a warning in the log and in the WARNINGS output."""
    import processing

    with rasterio.open(scene["optical"]) as src:
        profile, data = src.profile, src.read()
    data[1] = 117
    constant = tmp_path / "constant_green.tif"
    with rasterio.open(constant, "w", **profile) as dst:
        dst.write(data)

    class Recorder(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.warnings, self.infos = [], []

        def pushWarning(self, text):  # noqa: N802
            self.warnings.append(text)

        def pushInfo(self, text):  # noqa: N802
            self.infos.append(text)

    feedback = Recorder()
    result = processing.run("sgcad:segment", _params(scene, untrained_models, tmp_path / "out", OPTICAL=str(constant)),
                            feedback=feedback)
    assert any("optical band 2 of constant_green.tif is constant" in w for w in feedback.warnings), feedback.warnings
    assert "is constant" in result["WARNINGS"]
    assert any(line.startswith("optical: 8-bit values") for line in feedback.infos)  # the units decision


def test_default_threads_follow_qgis_max_threads_setting(scene, untrained_models, tmp_path):
    # THREADS 0: the cores this process may use, capped by QGIS's "max threads" option
    import processing
    from qgis.core import QgsApplication
    from sgcad_qgis.engine.cores import available_cores

    class Infos(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.infos = []

        def pushInfo(self, info):  # noqa: N802 (Qt's name)
            self.infos.append(info)
            super().pushInfo(info)

    before = QgsApplication.maxThreads()
    try:
        used = {}
        for cap in (1, -1):
            QgsApplication.setMaxThreads(cap)
            feedback = Infos()
            processing.run("sgcad:segment", _params(scene, untrained_models, tmp_path / str(cap), THREADS=0,
                                                    TEACHER=None), feedback=feedback)
            used[cap] = [i for i in feedback.infos if i.startswith("torch threads:")]
    finally:
        QgsApplication.setMaxThreads(before)
    assert used[1] == ["torch threads: 1"], used
    assert used[-1] == [f"torch threads: {available_cores()}"], used
