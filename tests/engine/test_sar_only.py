"""ALOS-2 refinements: alpha-scaled focal + Dice, boundary F-score, high-resolution injection,
refine-up head, and the SAR-only land-cover model (train, water teacher, segment, fine-tune)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS

from engine.config import (
    BandMapping,
    ClassSchema,
    FinetuneConfig,
    InferenceConfig,
    LossConfig,
    PatchConfig,
    StudentConfig,
    TrainConfig,
)
from engine.losses import FocalDiceLoss, build_segmentation_loss, build_teacher_loss
from engine.metrics import BoundaryFScore
from engine.models import build_model
from engine.raster.grid import Grid
from engine.raster.io import write_raster
from engine.train.evaluate import evaluate_rasters

TINY = dict(widths=(8, 8, 16, 16), blocks_per_stage=(1, 1, 1, 1), decoder_channels=8, attention_dim=8, pool_size=4)


# --------------------------------------------------------------------------- loss
def test_focal_dice_matches_hand_computed_value():
    # pixel A: class 0, p = 0.5; pixel B: class 1, p(1) = 0.75; raw weights 4 and 1/4
    logits = torch.tensor([[[[0.0, 0.0]], [[0.0, math.log(3.0)]]]])
    target = torch.tensor([[[0, 1]]])
    loss = FocalDiceLoss(LossConfig(kind="focal_dice"), torch.tensor([4.0, 0.25]))
    w = [4.0**0.5, 0.25**0.5]  # alpha = 0.5
    focal_a, focal_b = 0.5**2 * math.log(2.0), 0.25**2 * -math.log(0.75)
    focal = (w[0] * focal_a + w[1] * focal_b) / (w[0] + w[1])
    dice0, dice1 = 2 * 0.5 / (0.75 + 1), 2 * 0.75 / (1.25 + 1)
    dice = 1 - (w[0] * dice0 + w[1] * dice1) / (w[0] + w[1])
    assert float(loss(logits, target)) == pytest.approx(0.5 * focal + 0.5 * dice, rel=1e-5)
    assert float(loss.last_terms["focal"]) == pytest.approx(focal, rel=1e-5)
    # alpha 0: unweighted; alpha 1: the raw inverse-frequency weights
    plain = FocalDiceLoss(LossConfig(kind="focal_dice", alpha_scale=0.0), torch.tensor([4.0, 0.25]))
    plain(logits, target)
    assert float(plain.last_terms["focal"]) == pytest.approx((focal_a + focal_b) / 2, rel=1e-5)
    raw = FocalDiceLoss(LossConfig(kind="focal_dice", alpha_scale=1.0), torch.tensor([4.0, 0.25]))
    raw(logits, target)
    assert float(raw.last_terms["focal"]) == pytest.approx((4 * focal_a + 0.25 * focal_b) / 4.25, rel=1e-5)
    # ignored pixels count nowhere
    ignored = torch.tensor([[[0, 255]]])
    assert float(loss(logits, ignored)) == pytest.approx(0.5 * focal_a + 0.5 * (1 - 2 * 0.5 / (0.5 + 1)), rel=1e-5)


def test_focal_dice_is_one_switch_of_loss_config():
    weights = torch.tensor([1.0, 9.0])
    assert isinstance(build_segmentation_loss(LossConfig(kind="focal_dice"), weights), FocalDiceLoss)
    teacher = build_teacher_loss(LossConfig(kind="focal_dice"), weights)
    sar = torch.rand(1, 1, 8, 8)
    value = teacher(torch.randn(1, 2, 8, 8), torch.randint(0, 2, (1, 8, 8)), sar)
    assert set(teacher.last_terms) == {"focal", "dice", "edge"} and torch.isfinite(value)
    with pytest.raises(ValueError, match="alpha_scale"):
        build_segmentation_loss(LossConfig(kind="focal_dice", alpha_scale=-1.0), weights)


# --------------------------------------------------------------------------- boundary F
def test_boundary_f_on_a_hand_made_shift():
    ref = np.zeros((20, 20), int)
    ref[:, 10:] = 1
    pred = np.zeros((20, 20), int)
    pred[:, 11:] = 1  # the edge one pixel off
    for tol, expected in ((0, 0.0), (1, 1.0)):
        score = BoundaryFScore(2, tol)
        score.update(pred, ref)
        assert score.compute()["boundary_f"] == [expected, expected]
    # half the edge exact, half two pixels off: P = R = 0.5 at tolerance 1
    pred = np.zeros((20, 20), int)
    pred[:10, 10:] = 1
    pred[10:, 12:] = 1
    score = BoundaryFScore(2, 1)
    score.update(pred, ref)
    # class 1's reference edge (column 10, 20 px): rows 0-9 matched; predicted edge: 10 exact +
    # 10 at column 12 (unmatched) + the step at rows 9-10 (columns 10-11, within 1 px of column 10)
    f1 = score.compute()["boundary_f"][1]
    counts = score.counts[1].tolist()
    p, r = counts[0] / counts[1], counts[2] / counts[3]
    assert counts[3] == 20 and counts[2] == 11  # row 10 of column 10 is 1 px from the step at (10, 11)
    assert f1 == pytest.approx(2 * p * r / (p + r))


def test_boundary_f_ignores_polygon_outlines_and_is_windowed_exactly(tmp_path):
    # a labelled square of water in unlabelled surroundings has no reference boundary
    ref = np.full((30, 30), 255)
    ref[10:20, 10:20] = 3
    score = BoundaryFScore(6, 2)
    score.update(np.full((30, 30), 3), ref)
    assert score.compute()["boundary_f"][3] is None
    # the windowed evaluation (with a halo) equals the whole-array score
    rng = np.random.default_rng(0)
    ref = np.kron(rng.integers(0, 6, (9, 14)), np.ones((5, 5), int)).astype(np.uint8)
    pred = ref.copy()
    pred[rng.random(ref.shape) < 0.05] = 5
    ref[:3] = 255
    grid = Grid(CRS.from_epsg(32631).to_wkt(), Affine(2.0, 0, 500000.0, 0, -2.0, 5700000.0), 70, 45)
    p = write_raster(tmp_path / "pred.tif", pred, grid, nodata=255)
    r = write_raster(tmp_path / "ref.tif", ref, grid, nodata=255)
    whole = BoundaryFScore(6, 2)
    whole.update(pred, ref)
    result = evaluate_rasters(p, r, block=16, boundary_tolerance=2)
    assert result["boundary_f"] == whole.compute()["boundary_f"]
    assert set(result["boundary_f_named"]) == {"road", "shoreline"}
    assert result["boundary_f_named"]["shoreline"] == result["boundary_f"][3]


# --------------------------------------------------------------------------- refinements
def test_refinements_are_options_and_off_by_default():
    plain = build_model(StudentConfig(**TINY))
    keys = set(plain.state_dict())
    assert "head.weight" in keys and not any(k.startswith(("inject.", "refine.")) for k in keys)
    both = build_model(StudentConfig(**TINY, hr_injection=True, refine_up=True))
    keys = set(both.state_dict())
    assert any(k.startswith("inject.") for k in keys) and any(k.startswith("refine.") for k in keys)
    out = both(torch.rand(2, 3, 37, 45), torch.rand(2, 1, 37, 45))
    assert out.shape == (2, 6, 37, 45)
    out.sum().backward()  # every refinement parameter takes part
    assert all(p.grad is not None for n, p in both.named_parameters() if n.startswith(("inject.", "refine.")))


# --------------------------------------------------------------------------- SAR-only model
@pytest.mark.parametrize("pols", [1, 2])
def test_sar_only_model_heads_and_water_teacher(pols):
    cfg = StudentConfig(name="sarnet", optical_channels=0, sar_channels=pols, **TINY, refine_up=True)
    model = build_model(cfg).eval()
    sar = torch.rand(1, pols, 40, 52)
    classes, water = model.forward_both(sar)
    assert classes.shape == (1, 6, 40, 52) and water.shape == (1, 2, 40, 52)
    assert torch.allclose(model(torch.zeros(1, 0, 40, 52), sar), classes)
    teacher = build_model(dict(vars(cfg), name="sarnet_water")).eval()
    teacher.load_state_dict(model.state_dict())  # one set of weights for both roles
    assert torch.allclose(teacher(sar), water)
    with pytest.raises(ValueError, match="SAR-only"):
        model(torch.rand(1, 3, 40, 52), sar)
    with pytest.raises(ValueError, match="optical_channels must be 0"):
        build_model(StudentConfig(name="sarnet", **TINY))


def test_sar_only_trains_segments_and_finetunes(tmp_path):
    from engine.data.synthetic import generate_scene
    from engine.inference.pipeline import segment_scene
    from engine.models.checkpoint import read_metadata
    from engine.train.data import TrainingInputs
    from engine.train.finetune import finetune_from_polygons
    from engine.train.sar_stage import train_sar_only

    torch.set_num_threads(1)
    scene = generate_scene(tmp_path / "scene", size=192, seed=5, sensor="alos2", polarisations=("HH",))
    inputs = TrainingInputs(sar=scene["sar"], labels=scene["label"], bands=BandMapping(),  # optical bands dropped
                            patch=PatchConfig(tile_size=96, patch_size=48, rare_window=48, rare_stride=24))
    result = train_sar_only(inputs, tmp_path / "run", StudentConfig(**TINY, hr_injection=True),
                            TrainConfig(epochs=2, batch_size=4, threads=1, device="cpu"), schema=ClassSchema())
    meta = read_metadata(result["model"])
    assert meta.model["name"] == "sarnet" and meta.bands.optical_channels == 0 and meta.bands.sar_channels == 1
    assert meta.train["loss"]["kind"] == "focal_dice" and meta.train["loss"]["alpha_scale"] == 0.5
    assert read_metadata(result["water_teacher"]).kind == "teacher"
    assert "water_head" in result["test"] and "boundary_f_named" in result["test"]
    # large-scene path: no optical image, the model's own water head as the teacher
    seg = segment_scene(None, scene["sar"], result["model"], tmp_path / "seg", result["water_teacher"],
                        InferenceConfig(tile_size=96, overlap=16, threads=1, backend="torch", device="cpu"))
    assert {"classes", "water"} <= set(seg["outputs"]) and seg["sar_only_pixels"] == 0
    onnx = segment_scene(None, scene["sar"], result["model"], tmp_path / "seg_onnx",
                         cfg=InferenceConfig(tile_size=96, overlap=16, threads=1, backend="onnx", device="cpu"))
    assert onnx["backend"] == "onnx"  # the export has no optical input: only the SAR is fed
    with rasterio.open(seg["outputs"]["classes"]) as a, rasterio.open(onnx["outputs"]["classes"]) as b:
        assert (a.read(1) == b.read(1)).mean() > 0.999
    with pytest.raises(ValueError, match="needs an optical image"):
        segment_scene(None, scene["sar"], _optical_student(tmp_path, meta), tmp_path / "seg2")
    # fine-tuning from polygons, SAR only
    ft = finetune_from_polygons(None, scene["sar"], scene["label_vector"], "class_id", result["model"],
                                tmp_path / "ft", cfg=FinetuneConfig(steps=4, eval_every=2, crop_size=48, batch_size=2),
                                device="cpu")
    assert read_metadata(ft["model"]).model["name"] == "sarnet"


def _optical_student(tmp_path, meta):
    from engine.config import ModelMetadata
    from engine.models.checkpoint import save_model

    path = tmp_path / "optical_student.safetensors"
    cfg = StudentConfig(**TINY)
    stored = ModelMetadata(kind="student", model=vars(cfg), schema=meta.schema, bands=BandMapping(),
                           sar_preprocess=meta.sar_preprocess, sar_normalization=meta.sar_normalization)
    return save_model(path, build_model(cfg), stored)


def test_sar_only_learns_water_and_land_from_sar():
    """In memory: 40 steps on blocky patches where the SAR level separates three classes."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    label = torch.randint(0, 3, (16, 4, 4), generator=g).repeat_interleave(8, 1).repeat_interleave(8, 2)
    sar = (torch.tensor([0.2, 0.5, 0.8])[label] + 0.08 * torch.randn(16, 32, 32, generator=g)).unsqueeze(1)
    schema = ClassSchema(names=("water", "field", "city"), ids=(0, 1, 2), colors=("#00f", "#ff0", "#f00"),
                         water_class=0)
    cfg = StudentConfig(name="sarnet", optical_channels=0, num_classes=3, **TINY, hr_injection=True, refine_up=True)
    model = build_model(cfg)
    from engine.train.sar_stage import SarOnlyTask

    task = SarOnlyTask(schema, LossConfig(kind="focal_dice"), torch.ones(3), torch.ones(2))
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(40):
        loss, logs = task.loss(model, {"sar": sar, "label": label, "optical": torch.zeros(16, 0, 32, 32)}, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        classes, water = model.forward_both(sar)
    assert (classes.argmax(1) == label).float().mean() > 0.9
    assert ((water.argmax(1) == 1) == (label == 0)).float().mean() > 0.9
    assert "water_head" in logs


def test_train_sar_command_without_band_choice(tmp_path):
    """The command line with no --sar-bands (the usual call), over a --scenes folder whose scenes also
    hold an optical image: the co-polarised band 1 is learnt, the optical image is not read."""
    from engine.cli import main
    from engine.data.synthetic import generate_scene
    from engine.models.checkpoint import read_metadata

    torch.set_num_threads(1)
    generate_scene(tmp_path / "scenes" / "a", size=128, seed=6, sensor="s1", polarisations=("VV", "VH"),
                   write_vector=False)
    code = main(["train-sar", "--scenes", str(tmp_path / "scenes"), "--out", str(tmp_path / "run"),
                 "--epochs", "1", "--batch-size", "4", "--tile-size", "64", "--patch-size", "32",
                 "--widths", "8,8,16,16", "--threads", "1", "--quiet"])
    assert code == 0
    meta = read_metadata(tmp_path / "run" / "best.safetensors")
    assert meta.bands.sar_bands == (1,) and meta.bands.optical_bands == () and meta.bands.optical_channels == 0


def _band(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def test_sar_only_water_from_the_expert_on_a_real_flood_chip(shared_data, tmp_path, capsys):
    """The bundled SAR-only model on the real Nigeria chip, as `segment` runs it (the bundled teacher joins):
    by default the class map keeps the model's own water; with --water-from-expert its water is exactly
    the teacher's (p >= 0.5), its land the model's best land class, and the hand label's water is found
    better than by Otsu's threshold on VV (74 %; measured: the model's own 80 %, the expert's 87 %)."""
    from engine.cli import main

    chip = shared_data / "sen1floods11_s1" / "Nigeria_812045_S1Hand.tif"
    label = _band(shared_data / "sen1floods11_s1" / "Nigeria_812045_LabelHand.tif")
    model = str(Path(__file__).resolve().parents[2] / "resources" / "models" / "sgcad_student_sar_only.safetensors")
    runs = {}
    for name, extra in (("own", []), ("expert", ["--water-from-expert"])):
        code = main(["segment", "--sar", str(chip), "--sar-bands", "1", "--model", model, "--out",
                     str(tmp_path / name), "--device", "cpu", "--backend", "torch", "--threads", "2", "--quiet",
                     *extra])
        assert code == 0
        runs[name] = [_band(tmp_path / name / f) for f in ("classes.tif", "water_probability.tif", "confidence.tif")]
    water = ClassSchema().water_class
    own, expert = runs["own"][0], runs["expert"][0]
    p = runs["expert"][1]
    valid = np.isfinite(p)
    assert np.array_equal(expert[valid] == water, p[valid] >= 0.5)
    assert np.array_equal(runs["own"][1][valid], p[valid])  # the same teacher ran in both
    kept = valid & (own != water) & (p < 0.5)  # land in both: the model's own land class stays
    assert np.array_equal(expert[kept], own[kept])
    confidence = runs["expert"][2][valid]
    assert confidence.min() >= 0 and confidence.max() <= 1
    scored = (label != -1) & valid
    scored[:, : label.shape[1] // 2] = False  # the right half, as the model card scores it

    def iou(pred):
        truth = label[scored] == 1
        guess = pred[scored] == water
        return (truth & guess).sum() / (truth | guess).sum()

    assert iou(expert) > 0.84 and iou(expert) > iou(own) + 0.04, (iou(expert), iou(own))
    assert (own[valid] == water).mean() != (expert[valid] == water).mean()
    # asked where it cannot apply, the run says so instead of silently keeping the model's water
    from engine.inference.pipeline import _water_from_expert_unused

    cfg = InferenceConfig(water_from_expert=True)
    assert "applies to SAR-only models" in _water_from_expert_unused(cfg, (1, 2, 3), True)
    assert "needs a water teacher" in _water_from_expert_unused(cfg, (), False)
    assert _water_from_expert_unused(cfg, (), True) is None
