"""Student and teacher networks: registry, any input size, band checks, determinism, learning."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.config import LossConfig, StudentConfig, TeacherConfig, to_dict
from engine.losses import SegmentationLoss
from engine.models import FUSIONS, HRNetTeacher, LightMCANet, build_model, list_models, model_spec
from engine.models.lightmcam import LightMCAM, StageFusion
from engine.models.profile import count_parameters, flops_per_pixel

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: on the shared 2-core machine two spinning OpenMP threads that
    compete with other processes made these tests ~20x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
TINY_STUDENT = StudentConfig(
    widths=(8, 16, 16, 32), blocks_per_stage=(1, 1, 1, 1), attention_dim=8, decoder_channels=16
)
TINY_TEACHER = TeacherConfig(
    widths=(4, 8, 12, 16), blocks_per_branch=(1, 1, 1, 1), modules_per_stage=(1, 1, 1, 1)
)


def _finite_grads(model):
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), "some parameter got no gradient"
    return all(torch.isfinite(g).all() for g in grads)


def test_registry_builds_from_config_or_dict_and_names_the_choices():
    assert {"lightmcanet", "hrnet_w18_small"} <= set(list_models())
    assert model_spec("lightmcanet").kind == "student" and model_spec("hrnet_w18_small").kind == "teacher"
    assert isinstance(build_model(to_dict(TINY_STUDENT)), LightMCANet)
    assert isinstance(build_model(to_dict(TINY_TEACHER)), HRNetTeacher)
    with pytest.raises(ValueError, match="registered: .*lightmcanet"):
        build_model(StudentConfig(name="unet"))
    with pytest.raises(ValueError, match="unknown fusion module 'cat'.*lightmcam"):
        build_model(StudentConfig(fusion="cat"))
    with pytest.raises(ValueError, match="TeacherConfig"):
        build_model(StudentConfig(name="hrnet_w18_small"))


def test_a_registered_fusion_is_used_without_touching_callers():
    calls = []

    @FUSIONS.register("test_sum")
    def build_sum(config, stage, optical_ch, sar_ch, out_ch):
        calls.append(stage)
        return StageFusion(optical_ch, sar_ch, out_ch)

    model = build_model(StudentConfig(**{**to_dict(TINY_STUDENT), "fusion": "test_sum"}))
    assert calls == [0, 1, 2, 3]
    assert model(torch.rand(2, 3, 40, 24), torch.rand(2, 1, 40, 24)).shape == (2, 6, 40, 24)


def test_default_networks_forward_and_backward_at_an_odd_size_within_budgets():
    torch.manual_seed(0)
    student, teacher = build_model(StudentConfig()), build_model(TeacherConfig())
    assert count_parameters(student) <= 8_000_000 and count_parameters(teacher) <= 5_000_000
    optical, sar = torch.rand(2, 3, 250, 317), torch.rand(2, 1, 250, 317)
    logits = student(optical, sar)
    assert logits.shape == (2, 6, 250, 317)
    logits.logsumexp(1).mean().backward()
    assert _finite_grads(student)
    water = teacher(sar)
    assert water.shape == (2, 2, 250, 317)
    water[:, 1].mean().backward()
    assert _finite_grads(teacher)


@pytest.mark.parametrize("size", [(1, 1), (31, 33), (64, 64), (97, 5)])
def test_any_input_size_in_eval_mode(size):
    student, teacher = build_model(TINY_STUDENT).eval(), build_model(TINY_TEACHER).eval()
    with torch.no_grad():
        assert student(torch.rand(1, 3, *size), torch.rand(1, 1, *size)).shape == (1, 6, *size)
        assert teacher(torch.rand(1, 1, *size)).shape == (1, 2, *size)


def test_odd_sizes_are_replicate_padded_and_cropped_back():
    model = build_model(TINY_STUDENT).eval()
    optical, sar = torch.rand(1, 3, 63, 95), torch.rand(1, 1, 63, 95)

    def pad(x):
        return torch.nn.functional.pad(x, (0, 1, 0, 1), mode="replicate")

    with torch.no_grad():
        odd = model(optical, sar)
        padded = model(pad(optical), pad(sar))
    assert odd.shape[-2:] == (63, 95)
    assert torch.equal(odd, padded[..., :63, :95])


def test_wrong_band_counts_say_what_the_model_expects():
    student, teacher = build_model(TINY_STUDENT), build_model(TINY_TEACHER)
    with pytest.raises(ValueError) as err:
        student(torch.rand(1, 4, 32, 32), torch.rand(1, 1, 32, 32))
    msg = str(err.value)
    assert "expects optical with 3 bands" in msg and "got optical with 4 bands" in msg
    assert "optical_channels=4" in msg
    with pytest.raises(ValueError, match="expects SAR with 1 band .*got SAR with 2 bands"):
        teacher(torch.rand(1, 2, 32, 32))
    with pytest.raises(ValueError, match="same batch size and height x width"):
        student(torch.rand(1, 3, 32, 32), torch.rand(1, 1, 32, 30))
    multi = build_model(StudentConfig(**{**to_dict(TINY_STUDENT), "optical_channels": 4, "sar_channels": 2}))
    assert multi(torch.rand(2, 4, 32, 32), torch.rand(2, 2, 32, 32)).shape == (2, 6, 32, 32)


def test_seeded_cpu_runs_are_identical():
    def run(config, n_inputs):
        torch.manual_seed(7)
        model = build_model(config)
        inputs = [torch.rand(2, c, 45, 38) for c in n_inputs]
        out = model(*inputs)
        out.square().mean().backward()
        return out.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])

    for config, bands in ((TINY_STUDENT, (3, 1)), (TINY_TEACHER, (1,))):
        (a, ga), (b, gb) = run(config, bands), run(config, bands)
        assert torch.equal(a, b) and torch.equal(ga, gb)


def test_lightmcam_attends_to_pooled_sar_and_changes_with_it():
    torch.manual_seed(0)
    attn = LightMCAM(optical_channels=8, sar_channels=6, dim=4, pool_size=3).eval()
    optical, sar = torch.rand(2, 8, 5, 7), torch.rand(2, 6, 10, 9)
    weights = attn.attention(optical, sar)
    assert weights.shape == (2, 35, 9)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 35))
    out = attn(optical, sar)
    assert out.shape == optical.shape
    assert not torch.allclose(out, attn(optical, torch.rand(2, 6, 10, 9)))


def test_segm_gate_is_in_unit_range_and_both_forms_work():
    model = build_model(TINY_STUDENT).eval()
    with torch.no_grad():
        out = model.features(torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64))
    assert out["gate"].shape == (1, 1, 16, 16) and 0 <= out["gate"].min() and out["gate"].max() <= 1
    plain = build_model(StudentConfig(**{**to_dict(TINY_STUDENT), "segm_residual": False, "segm": True}))
    off = build_model(StudentConfig(**{**to_dict(TINY_STUDENT), "segm": False}))
    assert off.segm is None and count_parameters(off) < count_parameters(plain)


def test_flops_per_pixel_are_constant_in_scene_size():
    model = build_model(TINY_STUDENT)
    small, large = flops_per_pixel(model, TINY_STUDENT, 64), flops_per_pixel(model, TINY_STUDENT, 128)
    assert small > 0 and abs(small - large) / large < 0.02  # pooled K/V keep attention linear


def test_tiny_student_learns_a_two_modality_rule():
    # Water where SAR is dark, otherwise class 0/1 by optical brightness: needs both inputs.
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    sar = (torch.rand(4, 1, 8, 8, generator=gen) > 0.5).float()
    sar = torch.nn.functional.interpolate(sar, size=(32, 32), mode="nearest")
    optical = torch.nn.functional.interpolate(torch.rand(4, 1, 4, 4, generator=gen), size=(32, 32))
    optical = optical.repeat(1, 3, 1, 1)
    label = torch.where(sar[:, 0] < 0.5, 2, (optical[:, 0] > 0.5).long())
    label[:, :2] = 255
    config = StudentConfig(**{**to_dict(TINY_STUDENT), "num_classes": 3})
    model = build_model(config)
    loss_fn = SegmentationLoss(LossConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn(model(optical, sar), label)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(optical, sar).argmax(1)
    valid = label != 255
    assert (pred[valid] == label[valid]).float().mean() > 0.95


def test_models_command_lists_parameters_and_flops():
    out = subprocess.run(
        [sys.executable, "-m", "engine", "models", "--json", "--threads", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    rows = {m["name"]: m for m in result["models"]}
    assert rows["lightmcanet"]["parameters"] == count_parameters(build_model(StudentConfig()))
    assert rows["lightmcanet"]["parameters"] <= 8e6 and rows["hrnet_w18_small"]["parameters"] <= 5e6
    assert 1e4 < rows["lightmcanet"]["flops_per_pixel"] < rows["hrnet_w18_small"]["flops_per_pixel"]
