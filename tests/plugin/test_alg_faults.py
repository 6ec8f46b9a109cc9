"""Bad inputs and faults through Processing (``processing.run``, as the dock and the Toolbox run the
algorithms) and ``scripts/qgis_process``: the same refusals and the same sentences as the command
line (engine.validate decides), inputs never replaced, one line per fault.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import rasterio
from qgis.core import QgsProcessingException, QgsProcessingFeedback

ROOT = Path(__file__).resolve().parents[2]


class RecordingFeedback(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.warnings, self.debug, self.infos = [], [], []

    def pushInfo(self, info):  # noqa: N802 - QGIS API
        self.infos.append(info)
        super().pushInfo(info)

    def pushWarning(self, warning):  # noqa: N802 - QGIS API
        self.warnings.append(warning)
        super().pushWarning(warning)

    def pushDebugInfo(self, info):  # noqa: N802 - QGIS API
        self.debug.append(info)
        super().pushDebugInfo(info)


def _run(alg, params, feedback=None):
    import processing

    return processing.run(f"sgcad:{alg}", params, feedback=feedback or QgsProcessingFeedback())


def _refusal(alg, params, feedback=None) -> str:
    """The one-line message of a refused run (Processing prefixes 'Unable to execute algorithm')."""
    with pytest.raises(QgsProcessingException) as info:
        _run(alg, params, feedback)
    text = str(info.value).strip()
    if text.startswith("Unable to execute algorithm"):
        text = text.split("\n", 1)[1].strip()
    assert "\n" not in text and "Traceback" not in text, text
    return text


def _engine_message(check, *args) -> str:
    try:
        check(*args)
    except Exception as exc:  # noqa: BLE001
        from sgcad_qgis.engine.validate import describe_error

        return describe_error(exc)[0]
    raise AssertionError("the engine accepted it")


def _params(scene, models, out, **extra):
    params = {
        "OPTICAL": scene["optical"],
        "SAR": scene["sar"],
        "MODEL": models["student"],
        "TEACHER": "",
        "DEVICE": 1,
        "TILE_SIZE": 96,
        "OVERLAP": 16,
        "BATCH_SIZE": 2,
        "THREADS": 1,
        "OUTPUT_FOLDER": str(out),
    }
    params.update(extra)
    return params


def _shifted(path: str, target: Path, dx_pixels: float) -> Path:
    with rasterio.open(path) as src:
        profile, data = src.profile, src.read()
    profile["transform"] = profile["transform"] * rasterio.Affine.translation(dx_pixels, 0)
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(data)
    return target


# --------------------------------------------------------------------------- documented syntax, names, numbers
def test_bands_as_written_in_the_docs_work(scene, untrained_models, tmp_path):
    """``OPTICAL_BANDS=1,2,3`` (docs/processing.md) and QGIS's ``1;2;3`` give the same map as a list."""
    import numpy as np

    maps = []
    for i, bands in enumerate(("1,2,3", "1;2;3", [1, 2, 3])):
        result = _run("segment", _params(scene, untrained_models, tmp_path / f"o{i}", OPTICAL_BANDS=bands))
        with rasterio.open(result["CLASSES"]) as src:
            maps.append(src.read(1))
    np.testing.assert_array_equal(maps[0], maps[2])
    np.testing.assert_array_equal(maps[1], maps[2])
    message = _refusal("segment", _params(scene, untrained_models, tmp_path / "x", OPTICAL_BANDS="1,two,3"))
    assert "expected band numbers such as 1,2,3" in message


def test_flip_averaging_reaches_the_engine(scene, untrained_models, tmp_path):
    feedback = RecordingFeedback()
    result = _run("segment", _params(scene, untrained_models, tmp_path / "f", FLIP_AVERAGE=True), feedback)
    assert Path(result["CLASSES"]).is_file()
    assert any("averaged over 4 flips" in line for line in feedback.infos + feedback.debug), feedback.infos


def test_model_files_are_judged_by_content_and_numbers_by_range(scene, untrained_models, tmp_path):
    renamed = tmp_path / "student.pt"
    shutil.copy(untrained_models["student"], renamed)
    result = _run("segment", _params(scene, untrained_models, tmp_path / "pt", MODEL=str(renamed)))
    assert Path(result["CLASSES"]).is_file()
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    message = _refusal("segment", _params(scene, untrained_models, tmp_path / "txt", MODEL=str(text)))
    assert "is not a SGCAD checkpoint" in message and "Incorrect parameter value" not in message

    from sgcad_qgis.engine.validate import check_tiling

    message = _refusal("segment", _params(scene, untrained_models, tmp_path / "t", TILE_SIZE=10000))
    assert message == _engine_message(check_tiling, 10000, 16)  # the command line's sentence
    message = _refusal("segment", _params(scene, untrained_models, tmp_path / "t2", TILE_SIZE=128, OVERLAP=70))
    assert message == _engine_message(check_tiling, 128, 70)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_georeferencing_and_overlap_say_what_is_wrong_like_the_cli(scene, untrained_models, tmp_path):
    from sgcad_qgis.engine.raster.grid import grid_of
    from sgcad_qgis.engine.validate import check_pair_overlap, no_georeferencing

    with rasterio.open(scene["sar"]) as src:
        profile, data = src.profile, src.read()
        width = src.width
    bare = tmp_path / "bare.tif"
    profile_bare = dict(profile, transform=rasterio.Affine(1, 0, 0, 0, 1, 0))
    profile_bare.pop("crs")
    with rasterio.open(bare, "w", **profile_bare) as dst:
        dst.write(data)
    message = _refusal("segment", _params(scene, untrained_models, tmp_path / "a", SAR=str(bare)))
    assert message == no_georeferencing(bare) and "overlap" not in message
    for alg in ("watermap", "adaptwater"):  # before: refused only after reading the SAR, with a traceback logged
        feedback = RecordingFeedback()
        message = _refusal(alg, {"SAR": str(bare), "OUTPUT_FOLDER": str(tmp_path / alg)}, feedback)
        assert message == no_georeferencing(bare) and not feedback.infos and not feedback.debug, (alg, message)

    far = _shifted(scene["sar"], tmp_path / "far.tif", 50000)
    message = _refusal("segment", _params(scene, untrained_models, tmp_path / "b", SAR=str(far)))
    assert message == _engine_message(check_pair_overlap, scene["optical"], str(far), grid_of(far))
    assert "do not overlap (optical extent (" in message

    near = _shifted(scene["sar"], tmp_path / "near.tif", width - 12)
    feedback = RecordingFeedback()
    result = _run("segment", _params(scene, untrained_models, tmp_path / "c", SAR=str(near)), feedback)
    assert "overlap on only 12x" in result["WARNINGS"]
    assert any("less than one 96-pixel tile" in w for w in feedback.warnings)


# --------------------------------------------------------------------------- inputs are never replaced
def test_outputs_never_replace_inputs_with_overwrite(scene, untrained_models, tmp_path):
    sar = tmp_path / "sar.tif"
    shutil.copy(scene["sar"], sar)
    optical = tmp_path / "classes.tif"  # an input named like a segmentation output
    shutil.copy(scene["optical"], optical)
    keep = {p: p.read_bytes() for p in (sar, optical)}
    cases = [
        ("preprocesssar", {"SAR": str(sar), "OUTPUT": str(sar), "OVERWRITE": True}, "raster"),
        ("normalizeoptical", {"OPTICAL": str(optical), "OUTPUT": str(optical), "OVERWRITE": True}, "raster"),
        ("alignpair", {"OPTICAL": str(optical), "SAR": str(sar), "OUTPUT_OPTICAL": str(tmp_path / "o.tif"),
                       "OUTPUT_SAR": str(sar), "OVERWRITE": True}, "SAR"),
        ("rasterizelabels", {"INPUT": scene["label_vector"], "CLASS_FIELD": "class_id", "REFERENCE": str(sar),
                             "OUTPUT": str(sar), "OVERWRITE": True}, "reference raster"),
        ("evaluate", {"PREDICTION": str(optical), "REFERENCE_RASTER": scene["label"],
                      "OUTPUT_HTML": str(optical), "OVERWRITE": True}, "class map"),
        ("segment", _params(dict(scene, optical=str(optical)), untrained_models, tmp_path, OVERWRITE=True),
         "optical"),
    ]
    for alg, params, label in cases:
        message = _refusal(alg, params)
        assert f"would replace the {label} input" in message and "not even with --overwrite" in message, (alg, message)
    for path, data in keep.items():
        assert path.read_bytes() == data, path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classes.tif", "inputs", "sar.tif"]


def test_run_folders_protect_their_inputs_but_only_by_the_names_written(scene, untrained_models, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    labels = run / "labels.tif"  # a training run writes labels.tif into its folder
    shutil.copy(scene["label"], labels)
    model = run / "best.safetensors"
    shutil.copy(untrained_models["student"], model)
    before = labels.read_bytes()
    message = _refusal("trainstudent", {"OPTICAL": scene["optical"], "SAR": scene["sar"], "LABELS": str(labels),
                                        "EPOCHS": 1, "DEVICE": 1, "OVERWRITE": True, "OUTPUT_FOLDER": str(run)})
    assert "would replace the labels input" in message
    assert labels.read_bytes() == before
    # segmenting with a run's model into that run's folder writes none of its inputs: allowed
    result = _run("segment", _params(scene, untrained_models, run, MODEL=str(model)))
    assert Path(result["CLASSES"]).parent == run and model.is_file()


def test_the_engine_refuses_too_when_checks_are_skipped(scene, tmp_path):
    """Batch mode and alg.run() skip checkParameterValues: the engine call refuses by itself."""
    from qgis.core import QgsApplication, QgsProcessingContext

    sar = tmp_path / "sar.tif"
    shutil.copy(scene["sar"], sar)
    before = sar.read_bytes()
    alg = QgsApplication.processingRegistry().createAlgorithmById("sgcad:preprocesssar")
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    alg.initAlgorithm({})
    with pytest.raises(QgsProcessingException, match="would replace the raster input"):
        alg.processAlgorithm({"SAR": str(sar), "OUTPUT": str(sar), "OVERWRITE": True}, context, feedback)
    assert sar.read_bytes() == before


# --------------------------------------------------------------------------- faults: one line, the CLI's words
def test_read_only_and_corrupt_files_give_the_cli_sentence(scene, untrained_models, tmp_path):
    from sgcad_qgis.engine import validate

    folder = None
    for candidate in (Path("/sys/fs"), Path("/proc/sys")):
        try:
            validate.check_writable(candidate)
        except validate.FaultError:
            folder = candidate
            break
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
    if folder is None:
        pytest.skip("no read-only folder available")
    message = _refusal("preprocesssar", {"SAR": scene["sar"], "OUTPUT": str(folder / "out.tif")})
    assert str(folder / "out.tif") in message and "Choose an output folder you can write to" in message
    assert message.endswith(_engine_message(validate.check_writable, folder, "output folder", folder / "out.tif"))

    data = Path(scene["optical"]).read_bytes()
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(data[: len(data) // 3])
    feedback = RecordingFeedback()
    message = _refusal("segment", _params(scene, untrained_models, tmp_path / "t", OPTICAL=str(truncated)), feedback)
    assert str(truncated) in message and "re-create, re-download or re-export it" in message
    assert not any("Traceback" in d for d in feedback.debug)  # a user's input error: the line, no traceback
    text = tmp_path / "text.tif"
    text.write_text("not a raster")
    message = _refusal("segment", _params(scene, untrained_models, tmp_path / "u", OPTICAL=str(text)))
    assert str(text) in message and "not a raster GDAL can open" in message


def test_a_bug_is_one_line_with_the_traceback_in_the_log(scene, untrained_models, tmp_path, monkeypatch):
    import sgcad_qgis.engine.inference.pipeline as pipeline

    def broken(*args, **kwargs):
        raise IndexError("list index out of range")

    monkeypatch.setattr(pipeline, "segment_scene", broken)
    feedback = RecordingFeedback()
    message = _refusal("segment", _params(scene, untrained_models, tmp_path / "bug"), feedback)
    assert message.startswith("Segmentation: internal error: IndexError") and "the traceback is in the log" in message
    assert any("Traceback" in d and "IndexError" in d for d in feedback.debug)


# --------------------------------------------------------------------------- meaningless requests
@pytest.fixture()
def two_layer_gpkg(scene, tmp_path) -> Path:
    from osgeo import ogr

    path = tmp_path / "two_layers.gpkg"
    source = ogr.Open(scene["label_vector"])
    target = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    target.CopyLayer(source.GetLayer(0), "aoi")
    target.CopyLayer(source.GetLayer(0), "labels")
    target = source = None
    return path


def test_multi_layer_vector_needs_a_chosen_layer(scene, tmp_path, two_layer_gpkg):
    params = {"CLASS_FIELD": "class_id", "REFERENCE": scene["sar"]}
    message = _refusal("rasterizelabels", dict(params, INPUT=str(two_layer_gpkg), OUTPUT=str(tmp_path / "a.tif")))
    assert "holds 2 layers with geometries (aoi, labels)" in message and "|layername=NAME" in message
    assert not (tmp_path / "a.tif").exists()
    result = _run("rasterizelabels", dict(params, INPUT=f"{two_layer_gpkg}|layername=labels",
                                          OUTPUT=str(tmp_path / "b.tif")))
    assert result["LABELLED_PIXELS"] > 0
    message = _refusal("evaluate", {"PREDICTION": scene["label"], "REFERENCE_VECTOR": str(two_layer_gpkg),
                                    "CLASS_FIELD": "class_id", "OUTPUT_HTML": str(tmp_path / "r.html")})
    assert "holds 2 layers" in message


def test_a_busy_output_folder_is_refused_naming_the_other_run(scene, untrained_models, tmp_path):
    from sgcad_qgis.engine import validate

    out = tmp_path / "busy"
    out.mkdir()
    record = {"id": "abc123def456", "pid": os.getpid(), "pid_start": validate._process_start(os.getpid()),
              "host": socket.gethostname(), "started": "2030-01-01 10:00:00", "command": "segment"}
    (out / validate.LOCK_NAME).write_text(json.dumps(record))
    message = _refusal("segment", _params(scene, untrained_models, out))
    assert "is being written by another SGCAD run (segment abc123def456, pid" in message
    assert sorted(p.name for p in out.iterdir()) == [validate.LOCK_NAME]


def test_one_class_fine_tune_warns_in_processing(scene, untrained_models, tmp_path):
    from osgeo import ogr

    water = tmp_path / "one_class.gpkg"
    dataset = ogr.Open(scene["label_vector"])
    source = dataset.GetLayer(0)
    classes = [f.GetField("class_id") for f in source]
    source.SetAttributeFilter(f"class_id = {max(set(classes), key=classes.count)}")
    target = ogr.GetDriverByName("GPKG").CreateDataSource(str(water))
    target.CopyLayer(source, "polygons")
    target = source = dataset = None
    feedback = RecordingFeedback()
    _run("finetune", {"OPTICAL": scene["optical"], "SAR": scene["sar"], "STUDENT": untrained_models["student"],
                      "TEACHER": "", "LABEL_POLYGONS": str(water), "CLASS_FIELD": "class_id", "STEPS": 1,
                      "TEACHER_STEPS": 1, "UPDATE_TEACHER": False, "CROP_SIZE": 64, "BATCH_SIZE": 1, "DEVICE": 1,
                      "THREADS": 1, "OUTPUT_FOLDER": str(tmp_path / "ft")}, feedback)
    assert any("polygons hold one class (" in w for w in feedback.warnings), feedback.warnings


# --------------------------------------------------------------------------- scripts/qgis_process
def _qgis_process(args, env, timeout=300):
    return subprocess.run([str(ROOT / "scripts" / "qgis_process"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_qgis_process_survives_a_foreign_python_first_on_path(scene, untrained_models, tmp_path):
    """Another Python first on PATH (pyenv, conda) must not break QGIS's embedded one; the documented
    ``OPTICAL_BANDS=1,2,3`` works there too."""
    fake = tmp_path / "bin"
    fake.mkdir()
    # the worst case is another CPython of the same minor version (its standard library loads, QGIS's
    # modules do not): a pyenv build where the machine has one, else whatever python3 is on PATH
    candidates = sorted(Path("/root/.pyenv/versions").glob("3.11*/bin/python3")) if os.access("/root", os.R_OK) else []
    foreign = str(candidates[0]) if candidates else shutil.which("python3")
    if foreign is None:
        pytest.skip("no python3 on PATH")
    (fake / "python3").symlink_to(foreign)
    env = dict(os.environ, SGCAD_QGIS_PROFILE=str(tmp_path / "profile"), PATH=f"{fake}:{os.environ['PATH']}",
               PYTHONHOME="/nonexistent")
    done = _qgis_process(["run", "sgcad:segment", "--json", "--", f"OPTICAL={scene['optical']}",
                          f"SAR={scene['sar']}", f"MODEL={untrained_models['student']}", "TEACHER=",
                          "OPTICAL_BANDS=1,2,3", "DEVICE=1", "TILE_SIZE=96", "OVERLAP=16", "THREADS=1",
                          f"OUTPUT_FOLDER={tmp_path / 'out'}"], env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout[done.stdout.index("{"):])["results"]
    assert Path(result["CLASSES"]).is_file()


def test_qgis_process_never_records_a_failed_setup(tmp_path):
    fake = tmp_path / "qgis_process.bin"
    fake.write_text("#!/bin/sh\necho \"Couldn't load SIP module.\" >&2\nexit 139\n")
    fake.chmod(0o755)
    profile = tmp_path / "profile"
    env = dict(os.environ, SGCAD_QGIS_PROFILE=str(profile), SGCAD_QGIS_PROCESS_BIN=str(fake))
    done = _qgis_process(["list"], env, timeout=120)
    assert done.returncode == 3
    assert "could not enable the SGCAD plugin" in done.stderr and "Couldn't load SIP module" in done.stderr
    assert not (profile / ".sgcad-enabled").exists()
    assert not (profile / "profiles" / "default" / "QGIS" / "QGIS3.ini").exists()


def test_label_free_adaptation_says_why_it_found_no_water(sgcad_provider, tmp_path):
    # Rotterdam's airborne X-band read as calibrated: no scene threshold can be trusted, so the
    # teacher is not replaced, and the warning gives the mapper's reason and the way out
    feedback = RecordingFeedback()
    result = _run("adaptwater", {"SAR": str(ROOT / "resources" / "sample" / "rotterdam" / "sar_masked.tif"),
                                 "TEACHER": str(ROOT / "resources" / "models" / "sgcad_teacher.safetensors"),
                                 "SAR_LEVELS": "calibrated", "DEVICE": 1, "THREADS": 1,
                                 "OUTPUT_FOLDER": str(tmp_path / "adapt")}, feedback)
    assert result["OUTPUT_TEACHER"] == "" and result["WATER_PIXELS"] == 0 and result["SCENE_CUT"] is None
    assert result["PSEUDO_LABELS"] == ""  # nothing was learnt from, so no layer
    assert result["WATER_SHARE_ADAPTED"] is None and result["CHANGED_SHARE"] is None and result["WATER_CHANGE"] == ""
    said = [w for w in feedback.warnings if "no water threshold could be trusted" in w]
    assert len(said) == 1 and "tiles qualified" in said[0] and "polygons" in said[0], feedback.warnings
    # at the default its polarisations show the levels are relative (not sigma0): the teacher is
    # saved with the scene's cut
    result = _run("adaptwater", {"SAR": str(ROOT / "resources" / "sample" / "rotterdam" / "sar_masked.tif"),
                                 "TEACHER": str(ROOT / "resources" / "models" / "sgcad_teacher.safetensors"),
                                 "DEVICE": 1, "THREADS": 1, "OUTPUT_FOLDER": str(tmp_path / "relative")})
    assert Path(result["OUTPUT_TEACHER"]).is_file() and 0.2 < result["SCENE_CUT"] < 0.45


def test_label_free_adaptation_passes_the_layers_that_learn(sgcad_provider, tmp_path):
    # PSEUDO_LABEL_LAYERS reaches the engine: "all" changes the teacher's features too, where the
    # default (the engine's test) changes only its water classifier
    import torch
    from sgcad_qgis.engine.models.checkpoint import load_model

    teacher = ROOT / "resources" / "models" / "sgcad_teacher.safetensors"
    nigeria = ROOT.parent / "shared" / "data" / "sen1floods11_s1" / "Nigeria_812045_S1Hand.tif"
    result = _run("adaptwater", {"SAR": str(nigeria),
                                 "TEACHER": str(teacher), "TEACHER_STEPS": 2, "PSEUDO_LABEL_LAYERS": "all",
                                 "DEVICE": 1, "THREADS": 1, "OUTPUT_FOLDER": str(tmp_path / "adapt")})
    before = load_model(teacher, "teacher")[0].state_dict()
    after = load_model(result["OUTPUT_TEACHER"], "teacher")[0].state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k].float(), after[k].float())}
    assert {"head", "stem", "stages"} <= changed, changed
    # the chip has VV and VH: its water expert is the pair, and the adapted companion is saved beside it
    assert (tmp_path / "adapt" / "teacher_vvvh.safetensors").is_file()
    # how far the adapted map moved from the zero-shot one (the engine's test checks the figures)
    assert 0.3 < result["WATER_SHARE_ZERO_SHOT"] < 0.7 and 0 < result["WATER_SHARE_ADAPTED"] < 1
    assert result["CHANGED_SHARE"] >= abs(result["WATER_SHARE_ADAPTED"] - result["WATER_SHARE_ZERO_SHOT"]) - 1e-3
    # the pseudo-labels it learnt from are an output, styled: water blue, not water tan, the rest clear
    from qgis.core import QgsRasterLayer

    layer = QgsRasterLayer(result["PSEUDO_LABELS"], "pseudo", "gdal")
    assert layer.isValid() and layer.renderer().type() == "paletted"
    assert [c.value for c in layer.renderer().classes()] == [0, 1]
    del layer
    change = QgsRasterLayer(result["WATER_CHANGE"], "change", "gdal")  # where: styled, unchanged land clear
    assert change.isValid() and [c.value for c in change.renderer().classes()] == [1, 2, 3]
    del change
    # the dock shows it with the gate layers; a file the run did not report (an older run's) is not shown
    from sgcad_qgis.gui import wiring

    assert [i.role for i in wiring.finetune_layers(result)] == ["kd_gates", "kd_ratio", "pseudo_labels"]
    assert "pseudo_labels" not in [i.role for i in wiring.finetune_layers(dict(result, PSEUDO_LABELS=""))]
