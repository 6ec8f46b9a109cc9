"""RIFT loss (class-weighted focal + Tversky): hand-worked values, limits, selection in every stage."""

from __future__ import annotations

import math

import pytest
import torch

from engine.config import ClassSchema, DistillConfig, LossConfig, to_dict
from engine.losses import (
    RiftLoss,
    RiftTeacherLoss,
    SegmentationLoss,
    TeacherLoss,
    build_segmentation_loss,
    build_teacher_loss,
    dice_loss,
    focal_loss,
    loss_config_of,
    tversky_loss,
    weighted_cross_entropy,
)
from engine.train.tasks import DistillTask, StudentTask, TeacherTask

torch.set_num_threads(1)
LN3 = math.log(3.0)


def _pair():
    """Three pixels in a row: A (softmax [0.25, 0.75], label 1), B (the same, label 0), an ignored one."""
    logits = torch.tensor([[0.0, 0.0, 5.0], [LN3, LN3, -5.0]]).view(1, 2, 1, 3)
    target = torch.tensor([1, 0, 255]).view(1, 1, 3)
    return logits, target


def test_focal_loss_matches_a_hand_computation():
    logits, target = _pair()
    # A: p_true 0.75 -> 0.25^2 * -ln 0.75 = 0.0179801; B: p_true 0.25 -> 0.75^2 * -ln 0.25 = 0.7797906
    a, b = 0.25**2 * -math.log(0.75), 0.75**2 * -math.log(0.25)
    assert a == pytest.approx(0.0179801, abs=1e-7) and b == pytest.approx(0.7797906, abs=1e-7)
    assert float(focal_loss(logits, target, None, 2.0)) == pytest.approx((a + b) / 2, rel=1e-6)
    # weights w0 = 2, w1 = 1: (1 * a + 2 * b) / (1 + 2) = 0.5258538; the ignored pixel counts nowhere
    weighted = float(focal_loss(logits, target, torch.tensor([2.0, 1.0]), 2.0))
    assert weighted == pytest.approx(0.5258538, abs=1e-6)


def test_focal_with_gamma_zero_is_the_weighted_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 6, generator=gen)
    target = torch.randint(0, 4, (2, 5, 6), generator=gen)
    target[0, 0] = 255
    weights = torch.tensor([0.5, 1.0, 2.0, 4.0])
    assert float(focal_loss(logits, target, weights, 0.0)) == pytest.approx(
        float(weighted_cross_entropy(logits, target, weights)), rel=1e-6
    )


def test_tversky_loss_matches_a_hand_computation():
    logits, target = _pair()
    # class 0: TP 0.25 (B), FP 0.25 (A), FN 0.75 (B) -> 0.25 / (0.25 + 0.3*0.25 + 0.7*0.75) = 0.2941176
    # class 1: TP 0.75 (A), FP 0.75 (B), FN 0.25 (A) -> 0.75 / (0.75 + 0.3*0.75 + 0.7*0.25) = 0.6521739
    ti0, ti1 = 0.25 / 0.85, 0.75 / 1.15
    assert ti0 == pytest.approx(0.2941176, abs=1e-7) and ti1 == pytest.approx(0.6521739, abs=1e-7)
    assert float(tversky_loss(logits, target, 0.3, 0.7)) == pytest.approx(1 - (ti0 + ti1) / 2, abs=1e-6)
    assert float(tversky_loss(logits, target, 0.3, 0.7)) == pytest.approx(0.5268542, abs=1e-6)


def test_tversky_with_half_and_half_is_the_dice_loss_and_weighs_misses_more():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, 4, generator=gen)
    target = torch.randint(0, 3, (2, 4, 4), generator=gen)
    target[1, :2] = 255
    assert float(tversky_loss(logits, target, 0.5, 0.5)) == pytest.approx(float(dice_loss(logits, target)), rel=1e-5)
    # one class, one pixel: a miss (FN) costs more than a false alarm (FP) with beta 0.7 > alpha 0.3
    miss = tversky_loss(torch.tensor([[[[0.0]], [[LN3]]]]), torch.tensor([[[0]]]))  # p(0) = 0.25, label 0
    assert float(miss) == pytest.approx(1 - 0.25 / (0.25 + 0.7 * 0.75), abs=1e-6)


def test_rift_total_is_the_weighted_sum_and_logs_each_term():
    logits, target = _pair()
    loss = RiftLoss(LossConfig(kind="rift"), torch.tensor([2.0, 1.0]))
    total = float(loss(logits, target))
    assert total == pytest.approx(0.5258538 + 0.5268542, abs=2e-6)
    assert set(loss.last_terms) == {"focal", "tversky"}
    half = RiftLoss(LossConfig(kind="rift", focal_weight=0.5, tversky_weight=2.0), torch.tensor([2.0, 1.0]))
    assert float(half(logits, target)) == pytest.approx(0.5 * 0.5258538 + 2 * 0.5268542, abs=2e-6)
    # weights switched off by the config: plain focal
    cfg = LossConfig(kind="rift", inverse_frequency_weights=False, tversky_weight=0.0)
    plain = RiftLoss(cfg, torch.tensor([2.0, 1]))
    assert float(plain(logits, target)) == pytest.approx(float(focal_loss(logits, target, None, 2.0)), rel=1e-6)


def test_no_valid_pixel_gives_zero_with_a_gradient_and_saturated_logits_stay_finite():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = RiftLoss(LossConfig(kind="rift"), torch.ones(3))(logits, torch.full((1, 4, 4), 255))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    big = (torch.tensor([[[[200.0]], [[-200.0]]]]) * torch.ones(1, 2, 3, 3)).requires_grad_(True)
    value = RiftLoss(LossConfig(kind="rift"))(big, torch.ones(1, 3, 3, dtype=torch.long))
    value.backward()
    assert math.isfinite(float(value.detach())) and torch.isfinite(big.grad).all()


def test_rift_needs_matching_weights_and_sane_settings():
    with pytest.raises(ValueError, match="3 class weights"):
        target = torch.zeros(1, 2, 2, dtype=torch.long)
        RiftLoss(LossConfig(kind="rift"), torch.ones(3))(torch.zeros(1, 2, 2, 2), target)
    for bad, match in (({"kind": "focal"}, "kind"), ({"focal_gamma": -1.0}, "gamma"),
                       ({"tversky_alpha": 0.0, "tversky_beta": 0.0}, "alpha"), ({"tversky_weight": -1.0}, "weights")):
        with pytest.raises(ValueError, match=match):
            build_segmentation_loss(LossConfig(**{"kind": "rift", **bad}))


def test_the_loss_is_chosen_by_kind_in_every_stage():
    assert LossConfig().kind == "sgcad"
    assert (LossConfig().focal_gamma, LossConfig().tversky_alpha, LossConfig().tversky_beta) == (2.0, 0.3, 0.7)
    assert isinstance(build_segmentation_loss(LossConfig()), SegmentationLoss)
    assert isinstance(build_segmentation_loss(LossConfig(kind="rift")), RiftLoss)
    assert isinstance(build_teacher_loss(LossConfig()), TeacherLoss)
    assert isinstance(build_teacher_loss(LossConfig(kind="rift")), RiftTeacherLoss)
    schema = ClassSchema()
    rift = LossConfig(kind="rift", focal_gamma=1.0)
    student = StudentTask(schema, rift, torch.ones(6))
    assert isinstance(student.criterion, RiftLoss) and student.record["loss"]["kind"] == "rift"
    assert isinstance(TeacherTask(schema, rift, torch.ones(2)).criterion, RiftTeacherLoss)
    teacher = torch.nn.Conv2d(1, 2, 1)
    distill = DistillTask(schema, rift, torch.ones(6), teacher, DistillConfig())
    assert isinstance(distill.criterion, RiftLoss) and set(distill.record) == {"loss", "distill"}
    # what a model recorded is what fine-tuning rebuilds; old models without a record get the default
    assert loss_config_of({"loss": to_dict(rift)}) == rift
    assert loss_config_of({}) == LossConfig() and loss_config_of(None) == LossConfig()


def test_teacher_rift_adds_the_same_edge_term_as_the_teacher_loss():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(1, 2, 8, 8, generator=gen)
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[:, 2:6, 2:6] = 1
    sar = torch.rand(1, 1, 8, 8, generator=gen)
    cfg = LossConfig(kind="rift")
    rift = RiftTeacherLoss(cfg, torch.tensor([1.0, 3.0]))
    total = float(rift(logits, target, sar))
    sgcad = TeacherLoss(LossConfig(), None)
    sgcad(logits, target, sar)
    assert set(rift.last_terms) == {"focal", "tversky", "edge"}
    assert float(rift.last_terms["edge"]) == pytest.approx(float(sgcad.last_terms["edge"]), rel=1e-6)
    expected = float(RiftLoss(cfg, torch.tensor([1.0, 3.0]))(logits, target)) + 0.3 * float(rift.last_terms["edge"])
    assert total == pytest.approx(expected, rel=1e-6)
