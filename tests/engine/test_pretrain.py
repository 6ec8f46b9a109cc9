"""DI3CL SAR pretraining: geometry, ROI pooling, loss terms, a tiny run (resume, cancel), transfer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
from safetensors import safe_open

from engine.config import ModelMetadata, PretrainConfig, StudentConfig, TeacherConfig
from engine.models import build_model
from engine.pretrain import init_from_pretrained, load_encoder, pretrain_sar
from engine.pretrain.backbones import TeacherSarBackbone
from engine.pretrain.geometry import region_points, roi_pool, sample_views, to_view, view_pair
from engine.pretrain.losses import info_nce
from engine.pretrain.sampler import ViewPairSampler, contour_map, open_sources, recipe_for
from engine.pretrain.transfer import save_encoder
from engine.progress import Canceled, Progress

TINY = dict(batch_size=4, blocks_per_step=2, view_size=32, block_size=64, queue_size=16, log_every=4,
            checkpoint_every=6, lr=3e-3)
TINY_STUDENT = StudentConfig(widths=(8, 16, 16, 16), blocks_per_stage=(1, 1, 1, 1), decoder_channels=16,
                             attention_dim=16)


def _sar(tmp_path, nodata_left: int = 0):
    """A 96 x 96 linear-power SAR raster with fields and a water body; NaN in the left columns."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:96]
    db = np.where(x + y < 90, -8.0, -14.0) + np.where((x - 60) ** 2 + (y - 60) ** 2 < 300, -10.0, 0.0)
    power = (10 ** (db / 10) * rng.gamma(4.0, 0.25, db.shape)).astype(np.float32)
    power[:, :nodata_left] = np.nan
    path = tmp_path / f"sar_{nodata_left}.tif"
    profile = dict(driver="GTiff", width=96, height=96, count=1, dtype="float32", crs="EPSG:32631",
                   transform=rasterio.transform.from_origin(600000, 5000000, 10, 10), nodata=float("nan"))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(power[None])
    return path


def test_roi_pooling_of_constant_and_ramp_maps():
    boxes = torch.tensor([[[-0.5, -0.25, 0.25, 0.75], [0.0, 0.0, 0.5, 0.5]]])  # (N=1, R=2, 4)
    points = region_points(boxes, 4)
    constant = torch.full((1, 3, 16, 16), 2.5)
    assert torch.allclose(roi_pool(constant, points, 4), torch.full((1, 2, 3), 2.5))
    # a ramp equal to the x coordinate at every pixel centre: the pooled value is the box's centre x
    centres = (torch.arange(16) * 2 + 1) / 16 - 1
    ramp = centres.expand(16, 16)[None, None]
    pooled = roi_pool(ramp, points, 4)[0, :, 0]
    assert torch.allclose(pooled, torch.tensor([-0.125, 0.25]), atol=1e-5)


def test_overlap_maps_to_the_same_ground_in_both_views():
    rng = np.random.default_rng(1)
    y, x = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    window = torch.stack([torch.sin(3 * x) + y, torch.cos(2 * y) * x])[None]  # smooth, no symmetry
    for _ in range(20):
        first, second, box = view_pair(rng, 0.4, 0.3)
        area = (box[2] - box[0]) * (box[3] - box[1])
        smaller = min(abs(np.linalg.det(t[:, :2])) * 4 for t in (first, second))
        assert area / smaller >= 0.3 - 1e-9
        theta = torch.tensor(np.stack([first, second]), dtype=torch.float32)
        views = sample_views(window.expand(2, -1, -1, -1), theta, 48)
        points = region_points(torch.tensor(box, dtype=torch.float32)[None, None].expand(2, 1, 4), 5)
        a = roi_pool(views[:1], to_view(points[:1], theta[:1]), 5)
        b = roi_pool(views[1:], to_view(points[1:], theta[1:]), 5)
        truth = roi_pool(window, points[:1], 5)
        assert torch.allclose(a, truth, atol=0.05) and torch.allclose(b, truth, atol=0.05)


def test_contours_follow_a_step_edge_and_skip_nodata():
    sar = np.zeros((1, 32, 32), np.float32)
    sar[:, :, 16:] = 1.0
    valid = np.ones((32, 32), bool)
    edges = contour_map(sar, valid, 0.1)
    assert edges[:, 15:17].all() and edges[:, :14].sum() == 0 and edges[:, 18:].sum() == 0
    valid[:, 12:20] = False
    assert contour_map(sar, valid, 0.1).sum() == 0


def test_info_nce_on_known_embeddings():
    eye = torch.eye(8)
    queue = torch.eye(8)[:, 4:] * 0 + torch.nn.functional.normalize(torch.ones(8, 4) * -1, dim=0)
    matched = info_nce(eye[:4], eye[:4], queue, 0.1)
    assert matched < 0.01  # own key at similarity 1, every other candidate at 0 or below
    assert info_nce(eye[:4], eye[4:], eye[:, :1], 0.1) > np.log(5) - 0.01  # no positive stands out


def test_sampler_respects_nodata(tmp_path):
    cfg = PretrainConfig(**TINY)
    sources = open_sources([_sar(tmp_path, nodata_left=40)], recipe_for(), None, cfg.view_size)
    batch = ViewPairSampler(sources, cfg).batch(0)
    assert batch["query"].shape == (4, 1, 32, 32) and torch.isfinite(batch["query"]).all()
    assert 0 < batch["valid"].mean() < 1
    assert (batch["contour"] * (1 - batch["valid"])).sum() == 0
    assert torch.equal(ViewPairSampler(sources, cfg).batch(3)["query"], ViewPairSampler(sources, cfg).batch(3)["query"])


class _CancelAfter(Progress):
    def __init__(self, reports: int) -> None:
        self.left = reports

    def report(self, fraction: float, message: str = "") -> None:
        if message.startswith("pretraining: step"):
            self.left -= 1

    def is_canceled(self) -> bool:
        return self.left <= 0


def _tensors(path):
    with safe_open(str(path), framework="pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys()}


def test_tiny_pretraining_learns_resumes_after_cancel_and_transfers(tmp_path, monkeypatch):
    import engine.pretrain.trainer as trainer

    monkeypatch.setattr(trainer, "StudentConfig", lambda: TINY_STUDENT)
    torch.set_num_threads(1)
    sar = _sar(tmp_path)
    cfg = PretrainConfig(steps=12, device="cpu", **TINY)
    whole = pretrain_sar([sar], tmp_path / "whole", cfg)
    history = json.loads((tmp_path / "whole" / "history.json").read_text())["epochs"]
    assert [r["step"] for r in history] == [4, 8, 12]
    assert history[-1]["contour"] < history[0]["contour"]  # the contour head learns SAR contours
    assert whole["first"]["loss"] > 0 and (tmp_path / "whole" / "report.html").exists()

    with pytest.raises(Canceled):  # canceled at step 9: the state of step 6 stays, no encoder
        pretrain_sar([sar], tmp_path / "cut", cfg, progress=_CancelAfter(9))
    assert (tmp_path / "cut" / "state.safetensors").exists()
    assert not (tmp_path / "cut" / "sar_encoder.safetensors").exists()
    resumed = pretrain_sar([sar], tmp_path / "cut", cfg)
    assert resumed["resumed_from"] == 6
    a, b = _tensors(whole["encoder"]), _tensors(resumed["encoder"])
    assert a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)

    state, meta = load_encoder(whole["encoder"])
    assert meta.kind == "sar_encoder" and meta.model["target"] == "student"
    assert meta.sar_normalization is not None and meta.bands.sar_bands == (1,)
    student = build_model(TINY_STUDENT)
    info = init_from_pretrained(student, whole["encoder"])
    assert info["tensors"] == len(state) and info["target"] == "student"
    for key, value in student.sar_encoder.state_dict().items():
        assert torch.equal(value, state[key])
    with pytest.raises(ValueError, match="pretrained for the student"):
        init_from_pretrained(build_model(TeacherConfig(widths=(4, 8, 8, 8))), whole["encoder"])
    with pytest.raises(ValueError, match="does not fit"):
        init_from_pretrained(build_model(StudentConfig()), whole["encoder"])
    from engine.train.finetune import _apply_pretrained  # what finetune --sar-encoder does

    with pytest.raises(ValueError, match="no student is fine-tuned"):
        _apply_pretrained(whole["encoder"], None, build_model(TeacherConfig(widths=(4, 8, 8, 8))), Progress())
    assert _apply_pretrained(whole["encoder"], build_model(TINY_STUDENT), None, Progress()) == "student"


def test_teacher_backbone_transfers_into_the_teacher(tmp_path):
    config = TeacherConfig(widths=(4, 8, 8, 8), modules_per_stage=(1, 1, 1, 1))
    backbone = TeacherSarBackbone(config)
    for p in backbone.parameters():
        torch.nn.init.normal_(p)
    path = save_encoder(tmp_path / "enc.safetensors", backbone,
                        ModelMetadata(model={"target": "teacher", "config": {"widths": [4, 8, 8, 8]}}))
    teacher = build_model(config)
    head = teacher.head.weight.clone()
    init_from_pretrained(teacher, path)
    assert torch.equal(teacher.stem[0][0].weight, backbone.stem[0][0].weight)
    assert torch.equal(teacher.head.weight, head)  # the head is not part of the encoder
    shallow, deep = backbone.eval()(torch.zeros(1, 1, 32, 32))
    assert shallow.shape[-1] == 8 and deep.shape[1] == sum(config.widths)


def test_cli_pretrain_sar(tmp_path, capsys):
    from engine.cli import main

    sar = _sar(tmp_path)
    code = main(["pretrain-sar", "--sar", str(sar), "--out", str(tmp_path / "cli"), "--steps", "1",
                 "--batch-size", "2", "--view-size", "32", "--device", "cpu", "--threads", "1", "--quiet", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["ok"] and (tmp_path / "cli" / "sar_encoder.safetensors.json").exists()
    code = main(["pretrain-sar", "--sar", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "x"), "--quiet"])
    assert code == 2 and "missing.tif" in capsys.readouterr().err


def test_finetune_starts_from_the_pretrained_sar_encoder(synthetic_scene, tmp_path):
    from engine.config import FinetuneConfig, ModelMetadata, to_dict
    from engine.inputs.contract import InputRecipe, resolve_inputs
    from engine.models.checkpoint import load_model, save_model
    from engine.train.finetune import finetune_from_polygons

    torch.set_num_threads(1)
    torch.manual_seed(0)
    stored = resolve_inputs(InputRecipe(), synthetic_scene["optical"], synthetic_scene["sar"]).stored()
    student_path = save_model(tmp_path / "student.safetensors", build_model(TINY_STUDENT),
                              ModelMetadata(kind="student", model=to_dict(TINY_STUDENT), **stored))
    encoder = pretrain_sar([synthetic_scene["sar"]], tmp_path / "pre", PretrainConfig(steps=2, device="cpu", **TINY),
                           like=student_path)["encoder"]
    result = finetune_from_polygons(
        synthetic_scene["optical"], synthetic_scene["sar"], synthetic_scene["label_vector"], "class_name",
        student_path, tmp_path / "ft", cfg=FinetuneConfig(steps=3, crop_size=64, batch_size=2), device="cpu",
        sar_encoder=encoder)
    tuned, _ = load_model(result["model"])
    original, _ = load_model(student_path)
    pretrained, _ = load_encoder(encoder)
    sar = tuned.sar_encoder.state_dict()
    assert any(not torch.equal(sar[k], original.sar_encoder.state_dict()[k]) for k in pretrained)
    assert all(torch.equal(sar[k], pretrained[k]) for k in pretrained)  # frozen encoders (the default)
    for k, v in original.optical_encoder.state_dict().items():
        assert torch.equal(tuned.optical_encoder.state_dict()[k], v)
    assert any(not torch.equal(v, original.state_dict()[k]) for k, v in tuned.decoder.state_dict().items()
               for k in [f"decoder.{k}"])  # the decoder learnt on the pretrained features
