"""Checkpoints: round trip, refusal of files that are not checkpoints or do not fit, no pickle."""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.config import BandMapping, ClassSchema, ModelMetadata, StudentConfig, TeacherConfig, to_dict
from engine.models import build_model
from engine.models.checkpoint import load_model, read_metadata, save_model
from engine.train.schedule import PolyLR
from engine.train.state import load_training_state, save_training_state

TINY_STUDENT = StudentConfig(
    widths=(8, 8, 16, 16), blocks_per_stage=(1, 1, 1, 1), decoder_channels=8, attention_dim=8, pool_size=4
)
TINY_TEACHER = TeacherConfig(
    widths=(4, 8, 8, 8), blocks_per_branch=(1, 1, 1, 1), modules_per_stage=(1, 1, 1, 1)
)


def _student(tmp_path, schema=None, bands=None):
    torch.manual_seed(0)
    model = build_model(TINY_STUDENT)
    meta = ModelMetadata(
        kind="student",
        model=to_dict(TINY_STUDENT),
        schema=schema or ClassSchema(),
        bands=bands or BandMapping(),
        metrics={"miou": 0.5},
    )
    path = save_model(tmp_path / "student.safetensors", model, meta)
    return model, path


def test_round_trip_restores_weights_and_metadata(tmp_path):
    model, path = _student(tmp_path)
    loaded, meta = load_model(path, expected_kind="student", schema=ClassSchema(), bands=BandMapping())
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert meta.kind == "student" and meta.metrics == {"miou": 0.5} and meta.engine_version
    sidecar = json.loads((tmp_path / "student.safetensors.json").read_text())
    assert sidecar["model"]["widths"] == [8, 8, 16, 16]
    assert read_metadata(path) == meta
    x_opt, x_sar = torch.rand(1, 3, 32, 32), torch.rand(1, 1, 32, 32)
    model.eval(), loaded.eval()
    assert torch.equal(model(x_opt, x_sar), loaded(x_opt, x_sar))
    with pytest.raises(ValueError, match="already exists"):
        save_model(path, model, meta, overwrite=False)
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # an ordinary file, not a private temp file


def test_refuses_files_that_are_not_fitting_checkpoints(tmp_path):
    _, path = _student(tmp_path)
    data = path.read_bytes()

    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"GIF89a" + bytes(200))
    with pytest.raises(ValueError, match="not a SGCAD checkpoint"):
        load_model(junk)

    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match="truncated"):
        load_model(truncated)
    truncated.write_bytes(data[:20])
    with pytest.raises(ValueError, match="truncated"):
        load_model(truncated)

    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="no SGCAD metadata"):
        load_model(foreign)

    with pytest.raises(ValueError, match="a teacher checkpoint is expected"):
        load_model(path, expected_kind="teacher")
    other = ClassSchema(names=("a", "b"), ids=(0, 1), colors=("#000000", "#ffffff"), water_class=1)
    with pytest.raises(ValueError, match=r"trained for classes \['farmland'"):
        load_model(path, schema=other)
    with pytest.raises(ValueError, match="expects 3 optical band"):
        load_model(path, bands=BandMapping(optical_bands=(1, 2, 3, 4), optical_names=("b", "g", "r", "n")))
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.safetensors")

    # a teacher given where a student is expected
    teacher = build_model(TINY_TEACHER)
    tpath = save_model(
        tmp_path / "teacher.safetensors", teacher, ModelMetadata(kind="teacher", model=to_dict(TINY_TEACHER))
    )
    with pytest.raises(ValueError, match="is a teacher checkpoint, but a student"):
        load_model(tpath, expected_kind="student")
    assert load_model(tpath, expected_kind="teacher")[1].kind == "teacher"

    # weights that do not fit the stored configuration
    meta = read_metadata(path)
    meta.model["widths"] = [8, 8, 16, 32]
    bad = save_model(tmp_path / "bad.safetensors", build_model(TINY_STUDENT), meta)
    with pytest.raises(ValueError, match="weights do not fit"):
        load_model(bad)


def test_training_state_round_trip_continues_identically(tmp_path):
    """Saving after some steps and restoring into fresh objects continues bit-identically."""

    def make():
        torch.manual_seed(1)
        net = torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(8, 2)
        )
        opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=1e-4)
        return net, opt, PolyLR(opt, total_iters=10)

    def steps(net, opt, sched, n):
        for _ in range(n):
            x = torch.randn(16, 4) + float(np.random.rand()) + random.random()
            loss = net(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()

    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    net, opt, sched = make()
    steps(net, opt, sched, 4)
    save_training_state(tmp_path / "state.safetensors", net, opt, sched, epoch=2, extra={"best": 0.25})
    steps(net, opt, sched, 6)
    reference = [p.detach().clone() for p in net.parameters()]

    torch.manual_seed(99), np.random.seed(99), random.seed(99)  # disturb every RNG
    net2, opt2, sched2 = make()
    epoch, extra = load_training_state(tmp_path / "state.safetensors", net2, opt2, sched2)
    assert epoch == 2 and extra == {"best": 0.25}
    assert sched2.last_epoch == 4
    steps(net2, opt2, sched2, 6)
    for a, b in zip(reference, net2.parameters()):
        assert torch.equal(a, b)
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.0)

    with pytest.raises(ValueError, match="expected a sgcad-train-state file"):
        _, student = _student(tmp_path)
        load_training_state(student, net2, opt2, sched2)


def test_poly_schedule_values():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = PolyLR(opt, total_iters=4, power=0.9)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1 * (1 - i / 4) ** 0.9 for i in range(5)])


def test_average_models_is_the_elementwise_mean_and_refuses_other_architectures(tmp_path):
    from engine.models.checkpoint import average_models

    paths = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = build_model(TINY_STUDENT)
        meta = ModelMetadata(kind="student", model=to_dict(TINY_STUDENT), schema=ClassSchema(), bands=BandMapping())
        paths.append(save_model(tmp_path / f"epoch_{seed}.safetensors", model, meta))
    mean_path = average_models(paths, tmp_path / "mean.safetensors")
    a, b, mean = (load_model(p)[0].state_dict() for p in (*paths, mean_path))
    for key, value in mean.items():
        if value.is_floating_point():
            assert torch.allclose(value, (a[key] + b[key]) / 2, atol=1e-6), key
        else:
            assert torch.equal(value, b[key]), key
    folder = tmp_path.name  # the run folder is named too: two runs' best.safetensors stay apart
    assert read_metadata(mean_path).train["averaged_from"] == [f"{folder}/epoch_1.safetensors",
                                                               f"{folder}/epoch_2.safetensors"]
    with pytest.raises(ValueError, match="already exists"):
        average_models(paths, mean_path)
    torch.manual_seed(0)
    other = TeacherConfig(widths=(4, 8, 8, 8), blocks_per_branch=(1, 1, 1, 1), modules_per_stage=(1, 1, 1, 1))
    teacher = save_model(tmp_path / "teacher.safetensors", build_model(other),
                         ModelMetadata(kind="teacher", model=to_dict(other), schema=ClassSchema()))
    with pytest.raises(ValueError, match="one kind and one architecture"):
        average_models([paths[0], teacher], tmp_path / "mixed.safetensors")


def test_a_student_moved_to_another_optical_stretch_keeps_its_weights(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from set_optical_stretch import main

    torch.manual_seed(0)
    meta = ModelMetadata(kind="student", model=to_dict(TINY_STUDENT), schema=ClassSchema(), bands=BandMapping())
    meta.optical_preprocess.normalization = "scene"
    source = save_model(tmp_path / "scene.safetensors", build_model(TINY_STUDENT), meta)
    assert main([str(source), str(tmp_path / "physical.safetensors"), "--range", "0", "0.3"]) == 0
    (a, before), (b, after) = load_model(source), load_model(tmp_path / "physical.safetensors")
    assert before.optical_preprocess.normalization == "scene"
    moved = after.optical_preprocess
    assert moved.normalization == "physical" and tuple(moved.reflectance_range) == (0, 0.3)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    with pytest.raises(ValueError, match="already exists"):
        main([str(source), str(tmp_path / "physical.safetensors")])
