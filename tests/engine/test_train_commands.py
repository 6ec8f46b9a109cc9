"""The training commands end to end on a synthetic scene: real GeoTIFFs, tiny networks, CPU.

train-teacher -> train-student (polygon labels) -> distill -> segment -> evaluate, each
for a few batches, checking what every step leaves behind and that bad input is refused.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from engine.cli import main
from engine.config import StudentConfig, TeacherConfig, to_dict
from engine.data.synthetic import generate_scene
from engine.models.checkpoint import read_metadata

TINY_STUDENT = StudentConfig(
    widths=(8, 8, 16, 16), blocks_per_stage=(1, 1, 1, 1), decoder_channels=8, attention_dim=8, pool_size=4
)
TINY_TEACHER = TeacherConfig(widths=(4, 8, 8, 8), blocks_per_branch=(1, 1, 1, 1), modules_per_stage=(1, 1, 1, 1))
COMMON = [
    "--tile-size",
    "128",
    "--patch-size",
    "64",
    "--batch-size",
    "4",
    "--max-batches",
    "2",
    "--device",
    "cpu",
    "--threads",
    "1",
    "--quiet",
    "--json",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    scene = generate_scene(root / "scene", size=384, seed=6)
    for name, cfg in (("student.json", TINY_STUDENT), ("teacher.json", TINY_TEACHER)):
        (root / name).write_text(json.dumps(to_dict(cfg)))
    return root, scene


def _run(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    return code, (json.loads(lines[-1]) if lines else {}), captured.err


def test_teacher_student_distill_segment_evaluate(runs, capsys):
    root, scene = runs
    data = ["--optical", scene["optical"], "--sar", scene["sar"], "--labels", scene["label"]]

    code, teacher, err = _run(
        [
            "train-teacher",
            *data,
            "--out",
            str(root / "teacher"),
            "--epochs",
            "2",
            "--model-config",
            str(root / "teacher.json"),
            *COMMON,
        ],
        capsys,
    )
    assert code == 0, err
    assert teacher["stage"] == "teacher" and len(teacher["test"]["iou"]) == 2
    meta = read_metadata(teacher["model"])
    assert meta.kind == "teacher" and meta.sar_normalization.bands[0].p_high > meta.sar_normalization.bands[0].p_low

    vector = [
        "--optical",
        scene["optical"],
        "--sar",
        scene["sar"],
        "--labels",
        scene["label_vector"],
        "--class-field",
        "class_id",
    ]
    code, stage1, err = _run(
        [
            "train-student",
            *vector,
            "--out",
            str(root / "stage1"),
            "--epochs",
            "2",
            "--model-config",
            str(root / "student.json"),
            *COMMON,
        ],
        capsys,
    )
    assert code == 0, err
    assert (root / "stage1" / "labels.tif").is_file()  # polygons rasterised onto the grid
    s_meta = read_metadata(stage1["model"])
    assert s_meta.kind == "student" and s_meta.bands.optical_channels == 3 and s_meta.optical_normalization
    assert s_meta.metrics["test"]["miou"] == stage1["test"]["miou"]

    code, stage2, err = _run(
        [
            "distill",
            *data,
            "--out",
            str(root / "stage2"),
            "--epochs",
            "2",
            "--warmup-epochs",
            "1",
            "--student",
            stage1["model"],
            "--teacher",
            teacher["model"],
            *COMMON,
        ],
        capsys,
    )
    assert code == 0, err
    history = json.loads((root / "stage2" / "history.json").read_text())["epochs"]
    assert "train_kd_ratio" not in history[0] and history[1]["train_kd_ratio"] >= 0
    assert set(stage2["fusion"]) >= {"water_agreement", "teacher_water_iou", "student_water_iou"}
    gates = stage2["gate_rasters"]
    with rasterio.open(gates["gates"]) as src, rasterio.open(scene["label"]) as lab:
        assert src.transform == lab.transform and src.shape == lab.shape
        g, y = src.read(1), lab.read(1)
        assert np.array_equal(g == 255, y == 255)
        assert set(np.unique(g)) <= {0, 1, 2, 255}
    with rasterio.open(gates["kd_ratio_grid"]) as src:
        assert src.count == 3 and src.res == (128.0, 128.0)  # one cell per 64-pixel patch of 2 m
    assert "data:image/png;base64," in (root / "stage2" / "report.html").read_text()

    # the stage-2 student segments a scene; evaluate compares it with the polygons
    code, seg, err = _run(
        [
            "segment",
            "--optical",
            scene["optical"],
            "--sar",
            scene["sar"],
            "--model",
            stage2["model"],
            "--out",
            str(root / "map"),
            "--backend",
            "torch",
            "--quiet",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    classes = str(root / "map" / "classes.tif")
    code, ev, err = _run(
        [
            "evaluate",
            "--prediction",
            classes,
            "--reference",
            scene["label_vector"],
            "--class-field",
            "class_id",
            "--block",
            "100",
            "--quiet",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    assert ev["pixels"] == 384 * 384 and -1 <= ev["kappa"] <= 1 and len(ev["iou"]) == 6


def test_commands_refuse_bad_input_with_clear_messages(runs, capsys):
    root, scene = runs
    data = ["--optical", scene["optical"], "--sar", scene["sar"], "--labels", scene["label"]]
    code, out, err = _run(
        [
            "train-student",
            *data,
            "--out",
            str(root / "bad"),
            "--optical-bands",
            "1,2,3,4",
            "--epochs",
            "1",
            *COMMON,
        ],
        capsys,
    )
    assert code == 2 and "band 4" in err
    code, out, err = _run(
        [
            "train-student",
            "--optical",
            scene["optical"],
            "--sar",
            scene["sar"],
            "--labels",
            scene["label_vector"],
            "--out",
            str(root / "bad2"),
            *COMMON,
        ],
        capsys,
    )
    assert code == 2 and "--class-field" in err
    code, out, err = _run(
        [
            "distill",
            *data,
            "--out",
            str(root / "bad3"),
            "--student",
            scene["label"],
            "--teacher",
            scene["label"],
            *COMMON,
        ],
        capsys,
    )
    assert code == 2 and "not a SGCAD checkpoint" in err
    code, out, err = _run(["train-teacher", *data, "--out", str(root / "bad4"), "--resume", *COMMON], capsys)
    assert code == 2 and "cannot resume" in err


def test_a_run_folder_is_a_reusable_patch_set(runs, capsys):
    root, scene = runs
    data = ["--optical", scene["optical"], "--sar", scene["sar"], "--labels", scene["label"]]
    args = ["--epochs", "1", "--model-config", str(root / "student.json"), *COMMON]
    code, first, err = _run(["train-student", *data, "--out", str(root / "p1"), *args], capsys)
    assert code == 0, err
    code, second, err = _run(["train-student", "--patches", str(root / "p1"), "--out", str(root / "p2"), *args], capsys)
    assert code == 0, err
    m1, m2 = (json.loads((root / p / "manifest.json").read_text()) for p in ("p1", "p2"))
    assert m1["patches"] == m2["patches"]
    assert first["test"] == second["test"]  # same patches, same seed: same numbers
    # a self-contained patch set exported by the ``patches`` command trains as well
    export = [
        "patches",
        "--label",
        scene["label"],
        "--optical",
        scene["optical"],
        "--sar",
        scene["sar"],
        "--tile-size",
        "128",
        "--patch-size",
        "64",
        "--copy-rasters",
        "--out",
        str(root / "set"),
        "--json",
    ]
    assert _run(export, capsys)[0] == 0
    code, third, err = _run(["train-student", "--patches", str(root / "set"), "--out", str(root / "p3"), *args], capsys)
    assert code == 0, err
    assert json.loads((root / "p3" / "data.json").read_text())["optical"] == str(root / "set" / "optical.tif")
    before = (root / "p1" / "manifest.json").read_text()
    code, _, err = _run(["train-student", "--patches", str(root / "p2"), "--out", str(root / "p1"), *args], capsys)
    assert code == 2 and "already holds a run" in err and "--overwrite" in err
    assert (root / "p1" / "manifest.json").read_text() == before  # nothing of the old run was replaced
