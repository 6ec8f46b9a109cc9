"""Bad inputs and faults through the command line (``python -m engine``): inputs are never replaced,
every fault ends with one line naming the file and the remedy and a documented exit status,
nothing half-written is left, and meaningless requests are refused or warned with numbers.

docs/errors.md lists the messages these tests check.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio

from engine import validate
from engine.cli import main
from engine.data.synthetic import generate_scene
from engine.inputs.units import SAR_LABELS
from engine.raster.io import atomic_output

ROOT = Path(__file__).resolve().parents[2]
TINY_STUDENT = {"widths": [8, 8, 16, 16], "blocks_per_stage": [1, 1, 1, 1], "decoder_channels": 8,
                "attention_dim": 8, "pool_size": 4}
BUNDLED_TEACHER = ROOT / "resources" / "models" / "sgcad_teacher.safetensors"
TINY_TEACHER = {"widths": [4, 8, 8, 8], "blocks_per_branch": [1, 1, 1, 1], "modules_per_stage": [1, 1, 1, 1]}


# --------------------------------------------------------------------------- fixtures and helpers
@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("fault_scene")
    result = generate_scene(folder, size=96, seed=4)
    return {k: str(result[k]) for k in ("optical", "sar", "label", "label_vector")}


@pytest.fixture(scope="module")
def models(scene, tmp_path_factory) -> dict:
    import torch

    from engine.config import (
        ModelMetadata,
        OpticalPreprocessConfig,
        SarPreprocessConfig,
        StudentConfig,
        TeacherConfig,
        from_dict,
        to_dict,
    )
    from engine.inputs.contract import InputRecipe, resolve_inputs
    from engine.models import build_model
    from engine.models.checkpoint import save_model

    folder = tmp_path_factory.mktemp("fault_models")
    recipe = InputRecipe(sar=SarPreprocessConfig(lee_window=3), optical=OpticalPreprocessConfig())
    stored = resolve_inputs(recipe, scene["optical"], scene["sar"]).stored()
    out = {}
    for kind, cls, tiny in (("student", StudentConfig, TINY_STUDENT), ("teacher", TeacherConfig, TINY_TEACHER)):
        torch.manual_seed(0)
        config = from_dict(cls, tiny)
        meta = ModelMetadata(kind=kind, model=to_dict(config), **stored)
        out[kind] = str(save_model(folder / f"{kind}.safetensors", build_model(config), meta))
    return out


def cli(capsys, *args) -> tuple:
    """Run ``python -m engine`` in this process: (exit status, stdout, stderr)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def segment_args(scene, models, out, *extra):
    return ["segment", "--optical", scene["optical"], "--sar", scene["sar"], "--model", models["student"],
            "--out", out, "--tile-size", 64, "--overlap", 8, "--device", "cpu", "--backend", "torch",
            "--threads", 1, "--quiet", *extra]


def one_error_line(err: str) -> str:
    """The stderr of a failed run: one ``error:`` line, the last, and no traceback (progress lines may precede)."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert "Traceback" not in err and "ERROR 1:" not in err, err
    return errors[0]


def no_temporaries(folder: Path) -> None:
    if folder.exists():
        left = [p.name for p in folder.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]
        assert not left, left


def subprocess_env(tmp_path) -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), SGCAD_CACHE_DIR=str(tmp_path / "cache"))


def read_only_folder(tmp_path: Path) -> Path:
    """A folder nobody may write into: permissions for a normal user, a kernel file system for root."""
    if os.geteuid() != 0:
        folder = tmp_path / "read_only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    for candidate in (Path("/sys/fs"), Path("/proc/sys")):
        try:
            validate.check_writable(candidate)
        except validate.FaultError:
            return candidate
    pytest.skip("no read-only folder available to root on this machine")


# --------------------------------------------------------------------------- inputs are never replaced
def test_a_water_map_never_replaces_a_file_that_its_virtual_raster_reads(shared_data, tmp_path, capsys):
    # QGIS's Build Virtual Raster, or the plugin's no-data declaration, reads its bands from other files;
    # an output named like one of them would replace the input as surely as one named like the VRT
    from osgeo import gdal

    out = tmp_path / "out"
    out.mkdir()
    band_file = out / "water.tif"  # a source that happens to carry an output's name
    shutil.copy(shared_data / "sen1floods11_s1" / "India_900498_S1Hand.tif", band_file)
    before = band_file.read_bytes()
    vrt = tmp_path / "scene.vrt"
    gdal.BuildVRT(str(vrt), [str(band_file)])
    code, _, err = cli(capsys, "water", "--sar", vrt, "--out", out, "--overwrite", "--device", "cpu")
    line = one_error_line(err)
    assert code == 2 and "would replace the SAR input" in line and "(read through scene.vrt)" in line, line
    assert band_file.read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["water.tif"]


def test_segment_never_replaces_an_input_named_like_an_output(scene, models, tmp_path, capsys):
    out = tmp_path / "shared"
    out.mkdir()
    optical = out / "classes.tif"  # an input that happens to carry an output's name
    shutil.copy(scene["optical"], optical)
    before = optical.read_bytes()
    args = segment_args(dict(scene, optical=str(optical)), models, out, "--overwrite")
    code, _, err = cli(capsys, *args)
    line = one_error_line(err)
    assert code == 2 and "would replace the optical input" in line and "not even with --overwrite" in line
    assert optical.read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["classes.tif"]


@pytest.mark.parametrize("link", ["same", "hard", "symlink"])
def test_preprocess_output_on_its_input_is_refused_even_with_overwrite(scene, tmp_path, capsys, link):
    source = tmp_path / "sar.tif"
    shutil.copy(scene["sar"], source)
    before = source.read_bytes()
    output = source
    if link == "hard":
        output = tmp_path / "hard.tif"
        os.link(source, output)
    elif link == "symlink":
        output = tmp_path / "sub" / ".." / "link.tif"
        (tmp_path / "sub").mkdir()
        os.symlink(source, tmp_path / "link.tif")
    code, _, err = cli(capsys, "preprocess", "--input", source, "--output", output, "--modality", "sar", "--overwrite")
    assert code == 2 and "would replace the raster input" in one_error_line(err)
    assert source.read_bytes() == before


def test_align_rasterize_stack_evaluate_and_training_refuse_to_replace_inputs(scene, models, tmp_path, capsys):
    folder = tmp_path / "work"
    folder.mkdir()
    optical = folder / "optical_aligned.tif"
    shutil.copy(scene["optical"], optical)
    keep = {p: p.read_bytes() for p in (optical,)}
    cases = [
        ["align", "--optical", optical, "--sar", scene["sar"], "--out", folder, "--overwrite"],
        ["rasterize", "--vector", scene["label_vector"], "--class-field", "class_id", "--grid", optical,
         "--output", optical, "--overwrite"],
        ["stack", f"{scene['sar']}:1", f"{optical}:2", "--output", optical, "--overwrite"],
        ["evaluate", "--prediction", optical, "--reference", scene["label"], "--out", optical, "--overwrite"],
        ["train-student", "--optical", optical, "--sar", scene["sar"], "--labels", folder / "labels.tif",
         "--out", folder, "--overwrite", "--epochs", 1],
        ["distill", "--optical", scene["optical"], "--sar", scene["sar"], "--labels", scene["label"],
         "--student", folder / "best.safetensors", "--teacher", models["teacher"], "--out", folder, "--overwrite"],
    ]
    shutil.copy(scene["label"], folder / "labels.tif")
    shutil.copy(models["student"], folder / "best.safetensors")
    keep.update({p: p.read_bytes() for p in (folder / "labels.tif", folder / "best.safetensors")})
    for args in cases:
        code, _, err = cli(capsys, *args)
        assert code == 2 and "would replace the" in one_error_line(err), (args[0], err)
    for path, data in keep.items():
        assert path.read_bytes() == data, path


def test_two_outputs_of_one_run_must_differ(scene, tmp_path, capsys):
    code, _, err = cli(capsys, "preprocess", "--input", scene["sar"], "--output", tmp_path / "x.tif",
                       "--record", tmp_path / "x.tif", "--modality", "sar")
    assert code == 2 and "would be the same file" in one_error_line(err)
    assert not (tmp_path / "x.tif").exists()


# --------------------------------------------------------------------------- I/O faults: one line, nothing left
def test_read_only_destination_is_one_line_naming_the_file(scene, models, tmp_path, capsys):
    folder = read_only_folder(tmp_path)
    code, _, err = cli(capsys, "preprocess", "--input", scene["sar"], "--output", folder / "out.tif",
                       "--modality", "sar")
    line = one_error_line(err)
    assert code == 3 and str(folder / "out.tif") in line and "Choose an output folder you can write to" in line
    code, _, err = cli(capsys, *segment_args(scene, models, folder / "segmentation"))
    line = one_error_line(err)
    assert code == 3 and str(folder / "segmentation") in line and "nothing was written" in line


@pytest.mark.parametrize("command", ["segment", "preprocess"])
def test_file_size_limit_leaves_nothing_half_written(scene, models, tmp_path, command):
    """A full destination (here the process's file-size limit: ``OSError: File too large`` / a GDAL
    write error) ends with one line and removes what was written; exit status 3."""
    out = tmp_path / "out"
    out.mkdir()
    big = generate_scene(tmp_path / "big", size=384, seed=2)
    if command == "segment":
        args = segment_args({"optical": big["optical"], "sar": big["sar"]}, models, out, "--tile-size", 128,
                            "--overlap", 16)
        # --tile-size given twice: argparse keeps the last
    else:
        args = ["preprocess", "--input", big["sar"], "--output", out / "sar_pre.tif", "--modality", "sar",
                "--no-normalize"]

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    done = subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=ROOT, env=subprocess_env(tmp_path),
                          capture_output=True, text=True, timeout=300, preexec_fn=limit)  # noqa: PLW1509
    line = one_error_line(done.stderr)
    assert done.returncode == 3, done.stderr
    assert "file too large" in line and "nothing was kept" in line and str(out) in line
    assert sorted(p.name for p in out.iterdir()) == [], list(out.iterdir())


@pytest.mark.parametrize("damage", ["truncated", "garbage", "text"])
def test_corrupt_or_truncated_input_is_named_with_the_remedy(scene, models, tmp_path, capsys, damage):
    data = Path(scene["optical"]).read_bytes()
    bad = tmp_path / "optical.tif"
    if damage == "truncated":
        bad.write_bytes(data[: len(data) // 3])
    elif damage == "garbage":
        buf = bytearray(data)
        for i in range(400, len(buf), 5):
            buf[i] = (buf[i] * 7 + 3) % 256
        bad.write_bytes(bytes(buf))
    else:
        bad.write_text("not a raster\n")
    out = tmp_path / "out"
    code, _, err = cli(capsys, *segment_args(dict(scene, optical=str(bad)), models, out))
    line = one_error_line(err)
    assert code == 2 and str(bad) in line and "re-create, re-download or re-export it" in line, line
    assert not out.exists()


def start_long_segment(models, tmp_path):
    """``python -m engine segment`` of a 512 px scene, one tile per batch: (process, output folder)."""
    big = generate_scene(tmp_path / "big", size=512, seed=2)
    out = tmp_path / "out"
    args = segment_args({"optical": big["optical"], "sar": big["sar"]}, models, out, "--batch-size", 1)
    process = subprocess.Popen([sys.executable, "-m", "engine", *map(str, args)], cwd=ROOT,
                               env=subprocess_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, out


def test_ctrl_c_exits_130_with_one_line_and_no_files(scene, models, tmp_path):
    process, out = start_long_segment(models, tmp_path)
    deadline = time.monotonic() + 120
    while not (out / validate.LOCK_NAME).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # interrupt while the outputs are being written
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert [line for line in err.splitlines() if line.strip()] == [
        "interrupted (Ctrl-C): stopped; no output was written"
    ]
    assert not out.exists()  # the run made the folder, and removed it


@pytest.mark.parametrize("after_s", [0.3, 0.7, 1.1, 1.5])
def test_ctrl_c_while_the_libraries_load_exits_130_with_one_line(models, tmp_path, after_s):
    # Early Ctrl-C lands in imports, where torch and dataclasses run exec(): CPython then wants to die
    # by SIGINT, and an interrupt inside a C call can surface as another exception type.
    process, out = start_long_segment(models, tmp_path)
    time.sleep(after_s)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.fail(f"the run ended before the interrupt at {after_s} s; interrupt earlier")
    assert process.returncode == 130, err
    assert [line for line in err.splitlines() if line.strip()] == [
        "interrupted (Ctrl-C): stopped; no output was written"
    ]
    assert not out.exists()  # the run made the folder, and removed it


@pytest.mark.parametrize(
    "module, handler", [("engine.cli", "_on_stop_signal"), ("engine.__main__", "_stop_while_loading")]
)
def test_a_stop_inside_an_import_is_recorded_not_raised(tmp_path, monkeypatch, module, handler):
    # Raised inside an import, the interrupt crossed torch's C++ initialisation (pybind11) and the
    # process aborted with "terminate called ..." (CI, under load). Inside an import the handlers
    # only record the stop (the run stops at its next check); anywhere else they raise.
    import importlib

    from engine.progress import record_stop_signal, stop_signal

    (tmp_path / "stops_while_imported.py").write_text(
        f"import signal, sys\nfrom {module} import {handler}\n{handler}(signal.SIGINT, sys._getframe())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module("stops_while_imported")
        assert stop_signal() == signal.SIGINT
        record_stop_signal(None)
        with pytest.raises(KeyboardInterrupt):
            getattr(importlib.import_module(module), handler)(signal.SIGINT, sys._getframe())
        assert stop_signal() == signal.SIGINT
    finally:
        record_stop_signal(None)
        sys.modules.pop("stops_while_imported", None)


def test_after_a_stop_stderr_passes_only_the_stop_line():
    # a library may print the interrupt's traceback from inside a C call before the run stops
    import io

    from engine.__main__ import QuietAfterStop
    from engine.progress import record_stop_signal

    stream = io.StringIO()
    quiet = QuietAfterStop(stream)
    print("reading tiles", file=quiet)  # before a stop: everything passes
    try:
        record_stop_signal(signal.SIGINT)
        quiet.write('Traceback (most recent call last):\n  File "<frozen importlib._bootstrap>"\nKeyboardInterrupt\n')
        print("\n", file=quiet)
        print(validate.STOPS[signal.SIGINT][0], file=quiet)
    finally:
        record_stop_signal(None)
    assert stream.getvalue() == "reading tiles\n" + validate.STOPS[signal.SIGINT][0] + "\n"
    assert quiet.encoding == stream.encoding  # the rest of the stream's interface is the stream's


def test_debug_flag_adds_the_traceback(scene, tmp_path, capsys):
    args = ["preprocess", "--input", tmp_path / "missing.tif", "--output", tmp_path / "o.tif", "--modality", "sar"]
    code, _, err = cli(capsys, *args)
    assert code == 2 and "Traceback" not in err and "missing.tif" in one_error_line(err)
    code, _, err = cli(capsys, "--debug", *args)
    assert code == 2 and "Traceback" in err and err.rstrip().splitlines()[-1].startswith("error: ")


def test_a_bug_is_one_line_saying_how_to_get_the_traceback(monkeypatch, scene, tmp_path, capsys):
    import engine.commands.data as data

    def broken(args):
        raise IndexError("list index out of range")

    monkeypatch.setattr(data, "run_preprocess", broken)
    code, _, err = cli(capsys, "preprocess", "--input", scene["sar"], "--output", tmp_path / "o.tif",
                       "--modality", "sar", "--json")
    line = one_error_line(err)
    assert code == 1 and "internal error: IndexError" in line and "--debug" in line


def test_json_failure_is_a_json_object_with_the_exit_status(scene, tmp_path, capsys):
    code, out, _ = cli(capsys, "preprocess", "--input", tmp_path / "none.tif", "--output", tmp_path / "o.tif",
                       "--modality", "sar", "--json")
    result = json.loads(out.strip().splitlines()[-1])
    assert code == 2 and result["ok"] is False and result["exit_status"] == 2 and "none.tif" in result["error"]


@pytest.mark.parametrize(
    ("exc", "words", "status"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/data/out/.classes.1a2b3c4d.tmp.tif"),
         ["/data/out/classes.tif", "no space left", "Free some space"], 3),
        (OSError(errno.EFBIG, "File too large", "/data/.x.tmp-0a1b2c3d.tif"), ["/data/x.tif", "file too large"], 3),
        (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/out"), ["/mnt/ro/out", "read-only"], 3),
        (PermissionError(errno.EACCES, "Permission denied", "/data/out"), ["/data/out", "permission denied"], 3),
        (MemoryError(), ["out of memory", "tile size"], 3),
    ],
)
def test_describe_error_names_the_final_file_and_the_remedy(exc, words, status):
    message, code, expected = validate.describe_error(exc)
    assert expected and code == status and "\n" not in message
    for word in words:
        assert word in message, message


def test_gdal_write_errors_are_described(tmp_path):
    from rasterio._err import CPLE_AppDefinedError

    exc = CPLE_AppDefinedError(1, 1, f"{tmp_path}/.conf.1a2b3c4d.tmp.tif: Free disk space available is 0 bytes")
    message, code, _ = validate.describe_error(exc)
    assert code == 3 and f"{tmp_path}/conf.tif: no space left" in message


def test_a_truncated_geotiff_is_never_committed(tmp_path):
    """GDAL reports a full disk only in its log: the written file is checked before it takes its name."""
    good = tmp_path / "good.tif"
    with rasterio.open(good, "w", driver="GTiff", width=300, height=300, count=1, dtype="float32", tiled=True,
                       blockxsize=256, blockysize=256, crs="EPSG:32631",
                       transform=rasterio.Affine(1, 0, 590000, 0, -1, 5760000)) as dst:
        dst.write(np.random.default_rng(0).random((1, 300, 300), dtype=np.float32))
    data = good.read_bytes()
    target = tmp_path / "out.tif"
    with pytest.raises(validate.FaultError, match="out.tif: could not be written completely"):
        with atomic_output(target) as tmp:
            tmp.write_bytes(data[: len(data) // 2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.tif"]


# --------------------------------------------------------------------------- requests that make no sense
def test_no_overlap_is_refused_and_a_small_one_warned_with_numbers(scene, models, tmp_path, capsys):
    with rasterio.open(scene["sar"]) as src:
        profile, data = src.profile, src.read()
        width = src.width
    far, near = tmp_path / "far.tif", tmp_path / "near.tif"
    for path, shift in ((far, 50000), (near, width - 10)):  # 100 km away; 10 pixels of overlap
        p = dict(profile, transform=profile["transform"] * rasterio.Affine.translation(shift, 0))
        with rasterio.open(path, "w", **p) as dst:
            dst.write(data)
    code, _, err = cli(capsys, *segment_args(dict(scene, sar=str(far)), models, tmp_path / "a"))
    line = one_error_line(err)
    assert code == 2 and "do not overlap (optical extent (" in line and "SAR extent (" in line and "EPSG:32631" in line
    code, out, err = cli(capsys, *segment_args(dict(scene, sar=str(near)), models, tmp_path / "b", "--json"))
    assert code == 0, err
    warning = [w for w in json.loads(out.strip().splitlines()[-1])["inputs"]["warnings"] if "overlap on only" in w]
    assert warning and "10x" in warning[0] and "less than one 64-pixel tile" in warning[0]
    assert "warning: " in err and "overlap on only 10x" in err


def test_tile_size_is_checked_with_the_same_sentence_as_processing(scene, models, tmp_path, capsys):
    code, _, err = cli(capsys, *segment_args(scene, models, tmp_path / "a", "--tile-size", 10000))
    assert code == 2
    assert one_error_line(err) == "error: " + _message(validate.check_tiling, 10000, 8)
    assert not (tmp_path / "a").exists()


def _message(check, *args) -> str:
    try:
        check(*args)
    except ValueError as exc:
        return str(exc)
    raise AssertionError("no error")


def test_model_file_is_recognised_by_content_not_by_name(scene, models, tmp_path, capsys):
    renamed = tmp_path / "model.pt"
    shutil.copy(models["student"], renamed)
    code, _, err = cli(capsys, *segment_args(dict(scene), dict(models, student=str(renamed)), tmp_path / "a"))
    assert code == 0, err
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    code, _, err = cli(capsys, *segment_args(dict(scene), dict(models, student=str(text)), tmp_path / "b"))
    assert code == 2 and "is not a SGCAD checkpoint" in one_error_line(err)


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


def test_multi_layer_vector_needs_the_layer_named(scene, two_layer_gpkg, tmp_path, capsys):
    args = ["rasterize", "--vector", two_layer_gpkg, "--class-field", "class_id", "--grid", scene["sar"]]
    code, _, err = cli(capsys, *args, "--output", tmp_path / "a.tif")
    line = one_error_line(err)
    assert code == 2 and "holds 2 layers with geometries (aoi, labels)" in line and "--layer NAME" in line
    assert not (tmp_path / "a.tif").exists()
    code, _, err = cli(capsys, *args, "--output", tmp_path / "b.tif", "--layer", "labels")
    assert code == 0, err
    code, _, err = cli(capsys, "evaluate", "--prediction", scene["label"], "--reference", two_layer_gpkg,
                       "--class-field", "class_id")
    assert code == 2 and "holds 2 layers" in one_error_line(err)
    code, _, err = cli(capsys, *args, "--output", tmp_path / "c.tif", "--layer", "roads")
    assert code == 2 and "no layer named 'roads'; its layers are ['aoi', 'labels']" in one_error_line(err)


def test_attribute_tables_do_not_count_as_layers(scene, tmp_path):
    from osgeo import ogr

    path = tmp_path / "styled.gpkg"
    target = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    target.CreateLayer("layer_styles", geom_type=ogr.wkbNone)  # what QGIS adds when a style is saved
    source = ogr.Open(scene["label_vector"])  # kept alive while its layer is used
    target.CopyLayer(source.GetLayer(0), "labels")
    target = source = None
    assert validate.choose_vector_layer(path) == "labels"


def test_one_class_fine_tune_warns_on_the_command_line(scene, models, tmp_path):
    from osgeo import ogr

    water = tmp_path / "water.gpkg"
    dataset = ogr.Open(scene["label_vector"])  # kept alive while its layer is used
    source = dataset.GetLayer(0)
    classes = [f.GetField("class_id") for f in source]
    common = max(set(classes), key=classes.count)  # the class with the most polygons in this scene
    source.SetAttributeFilter(f"class_id = {common}")
    target = ogr.GetDriverByName("GPKG").CreateDataSource(str(water))
    target.CopyLayer(source, "water")
    target = source = dataset = None
    args = ["finetune", "--optical", scene["optical"], "--sar", scene["sar"], "--polygons", water,
            "--class-field", "class_id", "--student", models["student"], "--no-teacher-update", "--out",
            tmp_path / "ft", "--steps", 1, "--teacher-steps", 1, "--crop-size", 64, "--batch-size", 1,
            "--threads", 1, "--device", "cpu", "--quiet", "--json"]
    done = subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=ROOT, env=subprocess_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warning: all" in done.stderr and "polygons hold one class (" in done.stderr
    kept = json.loads(done.stdout)["undrawn_classes"]  # the other classes keep the starting map's answers
    assert len(kept) == 5  # six classes, one drawn


# --------------------------------------------------------------------------- concurrent runs
def _plant_lock(folder: Path, pid: int, run_id: str = "feedc0ffee42") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    record = {"id": run_id, "pid": pid, "pid_start": validate._process_start(pid), "host": socket.gethostname(),
              "started": "2030-01-01 10:00:00", "command": "segment"}
    (folder / validate.LOCK_NAME).write_text(json.dumps(record))


def test_a_second_run_into_a_busy_folder_is_refused_naming_the_first(scene, models, tmp_path, capsys):
    out = tmp_path / "busy"
    _plant_lock(out, os.getpid())  # a live process holds it
    code, _, err = cli(capsys, *segment_args(scene, models, out))
    line = one_error_line(err)
    assert code == 2 and "is being written by another SGCAD run (segment feedc0ffee42, pid" in line
    assert f"delete {out / validate.LOCK_NAME}" in line
    assert sorted(p.name for p in out.iterdir()) == [validate.LOCK_NAME]


def test_a_stale_lock_of_a_dead_process_is_taken_over(scene, models, tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "stale"
    _plant_lock(out, dead.pid)
    code, _, err = cli(capsys, *segment_args(scene, models, out))
    assert code == 0, err
    assert (out / "classes.tif").is_file() and not (out / validate.LOCK_NAME).exists()


def test_run_lock_is_reentrant_in_one_thread_and_exclusive_across_threads(tmp_path):
    folder = tmp_path / "runs"
    errors = []
    with validate.RunLock(folder, "outer") as outer:
        with validate.RunLock(folder, "nested"):  # an engine call inside a locked command
            pass
        assert (folder / validate.LOCK_NAME).exists()

        def other():
            try:
                validate.RunLock(folder, "other").acquire()
            except validate.SgcadError as exc:
                errors.append(str(exc))

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert outer.id in errors[0]
    assert not (folder / validate.LOCK_NAME).exists()


def test_an_output_written_meanwhile_by_another_run_is_never_replaced(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(ValueError, match="written by another run while this one was running"):
        with atomic_output(target) as tmp:
            tmp.write_text("mine")
            target.write_text("theirs")  # the other run committed first
    assert target.read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_a_water_map_refuses_sar_that_holds_nothing_to_map(shared_data, scene, models, tmp_path, capsys):
    # real pixels made into what users hand over by mistake: an empty (all-zero) band, dB x 100 in integers,
    # an RGB picture; each is one line naming the file and the remedy, and no output folder is left
    chip = shared_data / "sen1floods11_s1" / "Nigeria_812045_S1Hand.tif"
    with rasterio.open(chip) as src:
        profile, vv = dict(src.profile, count=1), src.read(1)
    zeros, scaled = tmp_path / "zeros.tif", tmp_path / "db_x100.tif"
    with rasterio.open(zeros, "w", **profile) as dst:
        dst.write(np.zeros_like(vv)[None])
    with rasterio.open(scaled, "w", **dict(profile, dtype="int16", nodata=None)) as dst:
        dst.write(np.nan_to_num(vv * 100).astype("int16")[None])
    picture = shared_data / "landsat_rgb" / "RGB.byte.tif"
    expected = {zeros: "has no valid pixel in the sampled area (all its values are exactly 0, read as missing data)",
                scaled: "is read as dB, but its median is -1",
                picture: "says its bands are red, green, blue (GDAL colour interpretation): that is an optical image"}
    for k, (path, words) in enumerate(expected.items()):
        code, _, err = cli(capsys, "water", "--sar", path, "--out", tmp_path / f"w{k}", "--device", "cpu")
        line = one_error_line(err)
        assert code == 2 and path.name in line and words in line, line
        assert not (tmp_path / f"w{k}").exists()
    # so does the label-free adaptation, which learns from the SAR alone (before, a constant raster read as
    # relative levels saved a "scene-adapted" teacher with a cut taken from no information)
    constant = tmp_path / "constant.tif"
    with rasterio.open(constant, "w", **dict(profile, count=2)) as dst:
        dst.write(np.full((2, *vv.shape), -12.0, np.float32))
    for path, words in ((zeros, "(all its values are exactly 0, read as missing data)"),
                        (constant, "is constant (-12 dB everywhere)")):
        code, _, err = cli(capsys, "finetune", "--sar", path, "--teacher", BUNDLED_TEACHER, "--out", tmp_path / "adapt",
                           "--device", "cpu")
        assert code == 2 and words in one_error_line(err), err
        assert not (tmp_path / "adapt").exists()
    code, _, err = cli(capsys, "flood", "--before", picture, "--after", chip, "--method", "threshold",
                       "--out", tmp_path / "f" / "run")
    assert code == 2 and "RGB.byte.tif says its bands are red, green, blue" in one_error_line(err)
    assert not (tmp_path / "f").exists()  # nor the parent folder the run would have made
    # swapped optical and SAR inputs are named as such, before the optical side fails on a missing band
    swapped = dict(scene, optical=scene["sar"], sar=scene["optical"])
    code, _, err = cli(capsys, *segment_args(swapped, models, tmp_path / "s"))
    line = one_error_line(err)
    assert code == 2 and "optical.tif says its bands are red, green, blue" in line and "swapped?" in line, line
    assert not (tmp_path / "s").exists()


def test_a_raster_with_too_few_bands_is_told_what_the_model_reads(scene, models, tmp_path, capsys):
    # a one-band (grey) image given as optical: not "band 2 does not exist", but what the model needs
    with rasterio.open(scene["optical"]) as src:
        profile, grey = dict(src.profile, count=1), src.read(1)
    with rasterio.open(tmp_path / "grey.tif", "w", **profile) as dst:
        dst.write(grey[None])
    code, _, err = cli(capsys, *segment_args(dict(scene, optical=str(tmp_path / "grey.tif")), models, tmp_path / "a"))
    line = one_error_line(err)
    assert code == 2 and "optical raster grey.tif has 1 band(s): band 2 does not exist; the model reads 3 (red, " \
        "green, blue) from bands 1, 2, 3" in line, line
    assert "--optical-bands / OPTICAL_BANDS" in line and not (tmp_path / "a").exists()
    assert "Stack them into one raster first: sgcad:stackbands" in line  # one band per file, as Sentinel-2 has
    # the SAR itself (its band is named VV) given as the optical image is named as such
    code, _, err = cli(capsys, *segment_args(dict(scene, optical=scene["sar"]), models, tmp_path / "b"))
    assert code == 2 and "optical raster sar.tif holds radar bands (VV): that is SAR" in one_error_line(err)


def _polygon_layer(path: Path, source: str, epsg: int, keep: bool = True) -> Path:
    """``source``'s polygons (all, or none) written with ``epsg`` declared, whatever their coordinates are."""
    from osgeo import ogr, osr

    src = ogr.Open(source)
    layer = src.GetLayer(0)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    out = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    dst = out.CreateLayer("labels", srs, ogr.wkbMultiPolygon)
    dst.CreateField(ogr.FieldDefn("class", ogr.OFTInteger))
    for feature in (layer if keep else []):
        copy = ogr.Feature(dst.GetLayerDefn())
        copy.SetField("class", feature.GetField("class_id"))
        copy.SetGeometry(feature.GetGeometryRef().Clone())
        dst.CreateFeature(copy)
    out = src = None
    return path


def test_inputs_found_wrong_by_a_fuzzing_sweep_are_refused_or_warned_in_words(shared_data, scene, models, tmp_path,
                                                                              capsys):
    # before: an all-zero SAR beside an optical image gave exit 0 and an empty map; an optical image without
    # georeferencing said "CRS is invalid: None"; metres declared as degrees were "internal error: RuntimeError";
    # an empty layer was "none of the polygons lies on the imagery"
    with rasterio.open(scene["sar"]) as src:
        profile, sar = src.profile, src.read()
    with rasterio.open(tmp_path / "zeros.tif", "w", **profile) as dst:
        dst.write(np.zeros_like(sar))
    code, _, err = cli(capsys, *segment_args(dict(scene, sar=str(tmp_path / "zeros.tif")), models, tmp_path / "s"))
    line = one_error_line(err)
    assert code == 2 and "zeros.tif" in line and "all its values are exactly 0" in line, line
    assert not (tmp_path / "s").exists()
    with rasterio.open(scene["optical"]) as src:
        optical = src.read()
        bare = {k: v for k, v in src.profile.items() if k not in ("crs", "transform")}
    with rasterio.open(tmp_path / "bare.tif", "w", **bare) as dst:
        dst.write(optical)
    bare_scene = dict(scene, optical=str(tmp_path / "bare.tif"))
    with warnings.catch_warnings(record=True) as raw:  # rasterio's own two lines would repeat it without a remedy
        warnings.simplefilter("always")
        code, _, err = cli(capsys, *segment_args(bare_scene, models, tmp_path / "s"))
    line = one_error_line(err)
    assert code == 2 and "bare.tif: no georeferencing" in line, line
    assert not [w for w in raw if "no geotransform" in str(w.message)]
    classes = tmp_path / "classes.tif"
    with rasterio.open(scene["label"]) as src:
        with rasterio.open(classes, "w", **src.profile) as dst:
            dst.write(src.read())
    for name, epsg, keep, words in (("degrees.gpkg", 4326, True, "do not fit the CRS the layer declares"),
                                    ("empty.gpkg", 32631, False, "the layer holds no features")):
        layer = _polygon_layer(tmp_path / name, scene["label_vector"], epsg, keep)
        code, _, err = cli(capsys, "evaluate", "--prediction", classes, "--reference", layer)
        line = one_error_line(err)
        assert code == 2 and name in line and words in line, line
    # a scored area of one pixel is warned; a folder as the metrics file is refused before any work
    with rasterio.open(classes) as src:
        one = dict(src.profile, width=1, height=1)
        with rasterio.open(tmp_path / "one.tif", "w", **one) as dst:
            dst.write(src.read(window=((0, 1), (0, 1))))
    code, _, err = cli(capsys, "evaluate", "--prediction", tmp_path / "one.tif", "--reference", scene["label"])
    assert code == 0 and "only 1 labelled pixel(s)" in err, err
    code, _, err = cli(capsys, "evaluate", "--prediction", classes, "--reference", scene["label"], "--out", tmp_path)
    assert code == 2 and "is a folder; give an output file name" in one_error_line(err)
    # a flood's before date of zeros is named as such, not as a date of another place
    code, _, err = cli(capsys, "flood", "--before", tmp_path / "zeros.tif", "--after", scene["sar"],
                       "--method", "threshold", "--out", tmp_path / "f")
    assert code == 2 and "every value is exactly 0" in one_error_line(err) and not (tmp_path / "f").exists()
    # complex SAR is refused by preprocess as by every other reader; a constant band is warned
    with rasterio.open(tmp_path / "slc.tif", "w", **dict(profile, dtype="complex64")) as dst:
        dst.write(sar.astype(np.complex64))
    code, _, err = cli(capsys, "preprocess", "--input", tmp_path / "slc.tif", "--output", tmp_path / "p.tif",
                       "--modality", "sar")
    assert code == 2 and "holds complex values" in one_error_line(err) and not (tmp_path / "p.tif").exists()
    with rasterio.open(tmp_path / "flat.tif", "w", **profile) as dst:
        dst.write(np.full_like(sar, 0.05))
    code, _, err = cli(capsys, "preprocess", "--input", tmp_path / "flat.tif", "--output", tmp_path / "p.tif",
                       "--modality", "sar")
    assert code == 0 and "hold one value between their 2nd and 98th percentiles" in err, err
    # options checked after parsing are user errors, not bugs
    code, _, err = cli(capsys, "preprocess", "--input", scene["sar"], "--output", tmp_path / "q.tif",
                       "--modality", "sar", "--bands", "0,x")
    assert code == 2 and "expected comma-separated integers" in one_error_line(err)
    code, _, err = cli(capsys, *segment_args(scene, models, tmp_path / "t", "--threads", -3))
    assert code == 2 and "threads must be 0" in one_error_line(err)
    code, _, err = cli(capsys, "finetune", "--optical", scene["optical"], "--sar", scene["sar"], "--polygons",
                       scene["label_vector"], "--out", tmp_path / "ft")
    assert code == 2 and "give --student (with --optical) and --teacher" in one_error_line(err)


def test_unnamed_sar_bands_whose_first_looks_cross_polarised_are_warned(shared_data, tmp_path):
    # four unnamed bands VH, VV, VH, VV of a real chip: the model's band 1 lies 7 dB under band 2, so the run
    # says which band to choose; a band 1 that is the brightest (the Rotterdam sample's HH) is not warned
    from engine.inputs.contract import InputRecipe, resolve_inputs
    from engine.models.checkpoint import read_metadata

    with rasterio.open(shared_data / "sen1floods11_s1" / "Nigeria_812045_S1Hand.tif") as src:
        profile, (vv, vh) = src.profile, src.read()
    with rasterio.open(tmp_path / "four.tif", "w", **dict(profile, count=4)) as dst:
        dst.write(np.stack([vh, vv, vh, vv]))
    recipe = InputRecipe.of(read_metadata(ROOT / "resources" / "models" / "sgcad_teacher.safetensors"))
    said = [w for w in resolve_inputs(recipe, None, tmp_path / "four.tif").warnings if "co-polarised" in w]
    assert len(said) == 1 and "band 1 is read as co-polarised, but it lies 7." in said[0] and "band 2" in said[0]
    rotterdam = ROOT / "resources" / "sample" / "rotterdam" / "sar_masked.tif"
    assert not [w for w in resolve_inputs(recipe, None, rotterdam).warnings if "co-polarised" in w]


def test_infinite_sar_values_are_mapped_as_nodata_and_warned(shared_data, tmp_path, capsys):
    # +inf backscatter (an overflow upstream) used to become nodata without a word; declared as nodata, it is quiet
    with rasterio.open(shared_data / "sen1floods11_s1" / "Nigeria_812045_S1Hand.tif") as src:
        profile, sar = src.profile, src.read()
    missing = np.isnan(sar).any(axis=0)  # the chip's own nodata
    sar[:, :128, :] = np.inf
    said = {}
    for name, nodata in (("inf.tif", profile["nodata"]), ("declared.tif", np.inf)):
        with rasterio.open(tmp_path / name, "w", **dict(profile, nodata=nodata)) as dst:
            dst.write(sar)
        out = tmp_path / name.replace(".", "_")
        code, _, err = cli(capsys, "water", "--sar", tmp_path / name, "--out", out)
        assert code == 0, err
        said[name] = [line for line in err.splitlines() if line.startswith("warning:") and "+inf" in line]
        with rasterio.open(out / "water.tif") as src:
            water = src.read(1, masked=True)
        assert water.mask[:128].all() and (water.mask[136:] == missing[136:]).all()
    assert len(said["inf.tif"]) == 1 and "25.0 % of its sampled values are +inf" in said["inf.tif"][0]
    assert said["declared.tif"] == []


def test_inputs_found_wrong_through_processing_are_refused_before_any_work(shared_data, tmp_path, capsys):
    # a Processing sweep found these running to exit 0 (or failing with the wrong reason): SAR given as the
    # optical image (96 % "farmland"), an all-zero optical image (a full land-cover map "from optical"),
    # dB declared linear ("constant (-60 dB everywhere)"), a picture preprocessed as SAR, scale 0
    rotterdam = ROOT / "resources" / "sample" / "rotterdam"
    chip = shared_data / "sen1floods11_s1" / "India_900498_S1Hand.tif"
    sar = rotterdam / "sar_masked.tif"
    code, _, err = cli(capsys, "segment", "--optical", sar, "--sar", sar, "--out", tmp_path / "a")
    line = one_error_line(err)
    assert code == 2 and "optical raster sar_masked.tif: 98 % of the values" in line and "swapped" in line, line
    with rasterio.open(rotterdam / "rgb_unmasked.tif") as src:
        profile, rgb = src.profile, src.read()
    with rasterio.open(tmp_path / "zeros_rgb.tif", "w", **profile) as dst:
        dst.write(np.zeros_like(rgb))
    black = tmp_path / "zeros_rgb.tif"
    code, _, err = cli(capsys, "segment", "--optical", black, "--sar", sar, "--out", tmp_path / "b")
    line = one_error_line(err)
    assert code == 2 and "band(s) [1, 2, 3] hold only zeros" in line and "SAR-only model" in line, line
    code, _, err = cli(capsys, "water", "--sar", chip, "--sar-units", "linear", "--out", tmp_path / "c")
    line = one_error_line(err)
    assert code == 2 and "100 % of its values are negative" in line and "to db or auto" in line, line
    picture = rotterdam / "rgb_unmasked.tif"
    code, _, err = cli(capsys, "preprocess", "--input", picture, "--output", tmp_path / "d.tif", "--modality", "sar")
    assert code == 2 and "red, green, blue (GDAL colour interpretation)" in one_error_line(err)
    code, _, err = cli(capsys, "preprocess", "--input", picture, "--output", tmp_path / "e.tif",
                       "--modality", "optical", "--scale", 0)
    assert code == 2 and "optical scale 0.0 must be a finite non-zero number" in one_error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zeros_rgb.tif"]  # nothing written by any of them
    with rasterio.open(chip) as src:
        one = dict(src.profile, width=1, height=1)
        with rasterio.open(tmp_path / "one.tif", "w", **one) as dst:
            dst.write(src.read(window=((256, 257), (256, 257))))
    code, _, err = cli(capsys, "water", "--sar", tmp_path / "one.tif", "--out", tmp_path / "f")
    assert code == 2 and "holds a single valid pixel" in one_error_line(err)


def test_band_slips_are_read_as_meant_or_warned(shared_data):
    # VV and VH named but chosen as 2,1: read as VV then VH (the map was 37 % water instead of 50 %); one band
    # chosen three times as red, green and blue is warned
    from engine.inputs.contract import InputOverrides, InputRecipe, resolve_inputs
    from engine.models.checkpoint import read_metadata
    from engine.water.experts import choose_water_expert

    teacher = ROOT / "resources" / "models" / "sgcad_teacher.safetensors"
    chip = shared_data / "sen1floods11_s1" / "India_900498_S1Hand.tif"
    choice = choose_water_expert(teacher, chip, (2, 1))
    assert choice.dual_pol and choice.sar_bands == (1, 2) and "band 2 is VH" in choice.reason
    assert choose_water_expert(teacher, chip, (1, 2)).sar_bands == (1, 2)
    rotterdam = ROOT / "resources" / "sample" / "rotterdam"
    recipe = InputRecipe.of(read_metadata(ROOT / "resources" / "models" / "sgcad_student.safetensors"))
    said = resolve_inputs(recipe, rotterdam / "rgb_unmasked.tif", rotterdam / "sar_masked.tif",
                          InputOverrides(optical_bands=(1, 1, 1))).warnings
    assert [w for w in said if "optical band(s) [1] chosen more than once ([1, 1, 1])" in w], said


def test_amplitude_and_power_are_told_apart_and_a_wrong_given_unit_is_warned(shared_data, tmp_path):
    # a real VV + VH chip as unnamed amplitude: detected as power before (0 % water); given as power, the map
    # was 0 % water without a word
    from engine.config import SarPreprocessConfig
    from engine.inputs.contract import resolve_chain
    from engine.inputs.units import detect_sar_units

    with rasterio.open(shared_data / "sen1floods11_s1" / "India_900498_S1Hand.tif") as src:
        profile, db = src.profile, src.read()
    files = {}
    for units, power in (("amplitude", 20.0), ("linear", 10.0)):
        files[units] = tmp_path / f"{units}.tif"
        with rasterio.open(files[units], "w", **profile) as dst:  # no band names: the levels must decide
            dst.write(np.power(10.0, db / power).astype(np.float32))
    for units, path in files.items():
        assert detect_sar_units(path, [1, 2]).units == units
        other = "linear" if units == "amplitude" else "amplitude"
        assert resolve_chain(SarPreprocessConfig(), path, [1, 2], units)[2] is None
        note = resolve_chain(SarPreprocessConfig(), path, [1, 2], other)[2]
        assert note and f"but its values look like {SAR_LABELS[units]}" in note and "set the SAR units" in note
