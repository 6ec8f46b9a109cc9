"""CLAIRE fusion: shapes, attention, gate, linear cost, ONNX, optical dropout, train -> segment -> fine-tune."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from engine.config import FinetuneConfig, InferenceConfig, LossConfig, PatchConfig, StudentConfig, TrainConfig
from engine.data.augment import AugmentConfig, augment, optical_dropout, set_augmentation
from engine.models import build_model, list_models
from engine.models.claire import ClaireFusion, ClaireStudentConfig, PooledCrossAttention
from engine.models.lightmcam import StageFusion
from engine.models.profile import count_parameters, describe, flops_per_pixel

torch.set_num_threads(1)
TINY = dict(widths=(8, 8, 16, 16), blocks_per_stage=(1, 1, 1, 1), decoder_channels=8, attention_dim=8, pool_size=4,
            claire_heads=2)


def test_claire_is_selected_by_configuration_at_its_stages_only():
    model = build_model(StudentConfig(fusion="claire", **TINY))
    kinds = [type(f) for f in model.fusions]
    assert kinds == [StageFusion, ClaireFusion, ClaireFusion, ClaireFusion]  # claire_stages (1, 2, 3)
    model = build_model(StudentConfig(fusion="claire", **{**TINY, "claire_stages": (0, 3)}))
    assert [type(f) for f in model.fusions] == [ClaireFusion, StageFusion, StageFusion, ClaireFusion]
    out = model.eval()(torch.rand(2, 3, 70, 45), torch.rand(2, 1, 70, 45))
    assert out.shape == (2, 6, 70, 45) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="divisible"):
        PooledCrossAttention(8, 8, dim=10, heads=4)


def test_attention_goes_both_ways_over_pooled_tokens_and_the_gate_mixes_the_streams():
    torch.manual_seed(0)
    fusion = ClaireFusion(8, 6, 5, dim=8, heads=2, pool_size=4).eval()
    o, s = torch.rand(2, 8, 12, 10), torch.rand(2, 6, 12, 10)
    w = fusion.optical_from_sar.attention(o, s)
    assert w.shape == (2, 2, 120, 16) and torch.allclose(w.sum(-1), torch.ones(2, 2, 120))
    assert fusion.sar_from_optical.attention(s, o).shape == (2, 2, 120, 16)
    # the SAR stream changes when the optical input changes (SAR attends to optical) and vice versa
    with torch.no_grad():
        s_out = fusion.sar_from_optical(s, o)
        assert not torch.allclose(s_out, fusion.sar_from_optical(s, o * 3))
        assert not torch.allclose(fusion.optical_from_sar(o, s), fusion.optical_from_sar(o, s * 3))
        g = fusion.gate(o, s)
        assert g.shape == (2, 5, 12, 10) and (g > 0).all() and (g < 1).all()
        po = fusion.project_optical(fusion.optical_from_sar(o, s))
        ps = fusion.project_sar(fusion.sar_from_optical(s, o))
        assert torch.allclose(fusion(o, s), torch.relu(g * po + (1 - g) * ps), atol=1e-6)


def test_cost_is_linear_in_pixels_and_small_next_to_lightmcam():
    cfg = StudentConfig(fusion="claire", **TINY)
    model = build_model(cfg)
    # pooled keys: FLOPs per pixel do not grow with the tile (quadratic attention would double them here)
    small, large = flops_per_pixel(model, cfg, 64), flops_per_pixel(model, cfg, 128)
    assert large == pytest.approx(small, rel=0.02)
    # default widths: CLAIRE costs a few percent more than LightMCAM, within the student's 8 M budget
    claire, light = describe(ClaireStudentConfig()), describe(StudentConfig())
    assert light["parameters"] < claire["parameters"] <= 1.1 * light["parameters"] <= 8e6
    assert light["flops_per_pixel"] < claire["flops_per_pixel"] < 1.1 * light["flops_per_pixel"]
    assert claire["parameters"] == count_parameters(build_model(StudentConfig(fusion="claire")))


def test_the_models_command_reports_the_claire_network():
    from engine.commands.models import run

    assert "lightmcanet_claire" in list_models()
    rows = {m["name"]: m for m in run(argparse.Namespace(flop_size=64, time=0, repeats=1, threads=0))["models"]}
    assert rows["lightmcanet_claire"]["parameters"] > rows["lightmcanet"]["parameters"]
    assert rows["lightmcanet_claire"]["flops_per_pixel"] > 0


def test_onnx_export_of_the_claire_student_matches_torch(tmp_path):
    from engine.inference.backends import OnnxBackend, TorchBackend, onnx_models

    torch.manual_seed(0)
    model = build_model(StudentConfig(fusion="claire", **TINY)).eval()
    sp, _ = onnx_models(model, None, 3, 1, (80, 72), tmp_path)
    rng = np.random.default_rng(0)
    o, s = rng.random((2, 3, 80, 72), np.float32), rng.random((2, 1, 80, 72), np.float32)
    onnx, ref = OnnxBackend(sp, None, 6).predict(o, s)[0], TorchBackend(model, None, 6).predict(o, s)[0]
    assert np.abs(onnx - ref).max() < 1e-4


def test_optical_dropout_blanks_or_clouds_the_optical_and_keeps_the_label():
    optical, sar, label = torch.rand(3, 32, 32), torch.rand(1, 32, 32), torch.randint(0, 6, (32, 32))
    # off by default, and then no random number is drawn (resumed runs draw the same augmentations)
    state = torch.get_rng_state()
    out, mask = optical_dropout(optical, AugmentConfig())
    assert out is optical and not mask.any() and torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(3)
    seen = set()
    for _ in range(40):
        out, mask = optical_dropout(optical, AugmentConfig(optical_dropout=1.0))
        assert mask.any()
        inside = out[:, mask]
        if torch.all(inside == 0):
            seen.add("blank")
        elif torch.all(inside >= 0.74):
            seen.add("cloud")
        if torch.all(inside == 0):  # blanked: nothing outside the mask changes
            assert torch.equal(out[:, ~mask], optical[:, ~mask])
        seen.add("whole" if mask.all() else "part")
    assert seen == {"blank", "cloud", "whole", "part"}
    torch.manual_seed(4)
    o2, s2, l2 = augment(optical, sar, label, AugmentConfig(flip=0, rot90=False, rotate_prob=0, crop_prob=0,
                                                             sar_shift=0, sar_blur_prob=0, sar_noise_prob=0,
                                                             optical_jitter_prob=0, optical_dropout=1.0,
                                                             optical_dropout_whole=1.0))
    assert torch.equal(l2, label) and torch.equal(s2, sar) and not torch.equal(o2, optical)


def test_set_augmentation_reaches_every_augmenting_dataset():
    class Fake:
        def __init__(self, augment):
            self.augment, self.augment_cfg = augment, AugmentConfig()

    class Concat:
        def __init__(self, parts):
            self.datasets = parts

    parts = [Fake(True), Fake(True), Fake(False)]
    assert set_augmentation(Concat(parts), optical_dropout=0.3, optical_haze=0.5) == 2
    assert [p.augment_cfg.optical_dropout for p in parts] == [0.3, 0.3, 0.0]
    assert [p.augment_cfg.optical_haze for p in parts] == [0.5, 0.5, 0.0]
    with pytest.raises(ValueError, match="optical haze must be a probability"):
        set_augmentation(parts[0], optical_haze=1.5)
    assert TrainConfig().optical_dropout == 0.0 and TrainConfig().optical_haze == 0.0


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from engine.data.synthetic import generate_scene

    return generate_scene(tmp_path_factory.mktemp("claire_scene"), size=128, seed=5)


def test_a_claire_student_trains_with_rift_segments_through_the_pipeline_and_fine_tunes(scene, tmp_path):
    from engine.inference.pipeline import segment_scene
    from engine.models.checkpoint import read_metadata
    from engine.train.data import TrainingInputs
    from engine.train.finetune import finetune_from_polygons
    from engine.train.stages import train_student

    inputs = TrainingInputs(optical=str(scene["optical"]), sar=str(scene["sar"]), labels=str(scene["label"]),
                            patch=PatchConfig(tile_size=64, patch_size=64, rare_window=64, rare_stride=32))
    cfg = TrainConfig(epochs=1, batch_size=2, max_batches_per_epoch=2, device="cpu", threads=1)
    result = train_student(inputs, tmp_path / "run", StudentConfig(fusion="claire", **TINY), cfg,
                           LossConfig(kind="rift"))
    meta = read_metadata(result["model"])
    assert meta.model["fusion"] == "claire" and meta.train["loss"]["kind"] == "rift"
    assert "train_focal" in Path(result["history"]).read_text()
    seg = segment_scene(scene["optical"], scene["sar"], result["model"], tmp_path / "seg",
                        cfg=InferenceConfig(tile_size=64, overlap=16, backend="onnx", threads=1))
    assert seg["backend"] == "onnx"
    with rasterio.open(seg["outputs"]["classes"]) as src:
        assert src.read(1).max() < 6
    tuned = finetune_from_polygons(scene["optical"], scene["sar"], scene["label_vector"], "class_id",
                                   result["model"], tmp_path / "ft",
                                   cfg=FinetuneConfig(steps=2, batch_size=2, crop_size=32, eval_every=1),
                                   device="cpu")
    assert read_metadata(tuned["model"]).model["fusion"] == "claire"


def test_haze_lifts_blue_most_and_red_least_and_is_off_by_default():
    from engine.data.augment import add_haze, photometric

    torch.manual_seed(0)
    dark = torch.full((3, 8, 8), 0.05)  # dark vegetation, normalised
    lifted = torch.stack([add_haze(dark, AugmentConfig(optical_haze=1.0)) - dark for _ in range(200)])
    mean = lifted.mean(dim=(0, 2, 3))
    assert mean[2] > mean[1] > mean[0] > 0.0 and float(lifted.max()) <= 0.3 * 1.2 + 1e-6
    # off by default: no random number is drawn for it, so runs without haze are unchanged
    cfg = AugmentConfig(optical_restretch_prob=0.0, optical_jitter_prob=0.0, sar_blur_prob=0.0, sar_noise_prob=0.0)
    torch.manual_seed(1)
    photometric(dark, torch.zeros(1, 8, 8), cfg)
    after = torch.rand(())
    torch.manual_seed(1)
    torch.empty(()).uniform_(-cfg.sar_shift, cfg.sar_shift)  # the SAR level shift
    for _ in range(4):  # the coins of SAR blur, SAR noise, optical re-stretch, optical jitter: none for haze
        torch.rand(())
    assert torch.equal(torch.rand(()), after)
