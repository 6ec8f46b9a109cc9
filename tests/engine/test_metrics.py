"""Confusion-matrix metrics against cases computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.metrics import ConfusionMatrix, binary_water_metrics, mean_iou


def _pairs(matrix):
    """Reference/prediction vectors that produce exactly ``matrix`` (rows = reference)."""
    ref, pred = [], []
    for r, row in enumerate(matrix):
        for p, n in enumerate(row):
            ref += [r] * n
            pred += [p] * n
    return np.array(pred), np.array(ref)


# rows: reference 0, 1, 2; columns: predicted 0, 1, 2
HAND = [[5, 1, 0], [2, 3, 1], [0, 0, 4]]


def test_three_class_case_matches_hand_computation():
    pred, ref = _pairs(HAND)
    # 7 ignored pixels with arbitrary predictions must change nothing
    pred = np.concatenate([pred, [0, 1, 2, 2, 1, 0, 2]])
    ref = np.concatenate([ref, [255] * 7])
    rng = np.random.default_rng(0)
    order = rng.permutation(pred.size)
    cm = ConfusionMatrix(3)
    # fed in two batches of different shapes and types, which must accumulate
    cm.update(torch.from_numpy(pred[order][:10]), torch.from_numpy(ref[order][:10]))
    cm.update(pred[order][10:].reshape(1, -1), ref[order][10:].reshape(1, -1))
    m = cm.compute()

    assert m["matrix"] == HAND
    assert m["pixels"] == 16
    assert m["oa"] == pytest.approx(12 / 16)
    # p_e = (6*7 + 6*4 + 4*5) / 16^2 = 86/256; kappa = (0.75 - p_e) / (1 - p_e) = 106/170
    assert m["kappa"] == pytest.approx(106 / 170)
    assert m["iou"] == pytest.approx([5 / 8, 3 / 7, 4 / 5])
    assert m["miou"] == pytest.approx((5 / 8 + 3 / 7 + 4 / 5) / 3)
    assert m["precision"] == pytest.approx([5 / 7, 3 / 4, 4 / 5])  # user's accuracy
    assert m["recall"] == pytest.approx([5 / 6, 3 / 6, 4 / 4])  # producer's accuracy
    assert m["f1"] == pytest.approx([10 / 13, 6 / 10, 8 / 9])
    assert m["support"] == [6, 6, 4]
    assert mean_iou(m, exclude=[1]) == pytest.approx((5 / 8 + 4 / 5) / 2)
    json.dumps(m)  # JSON-able as is


def test_absent_class_is_undefined_not_zero_and_perfect_single_class():
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 0]))
    m = cm.compute()
    assert m["iou"][2] is None and m["precision"][2] is None and m["recall"][2] is None
    assert m["miou"] == pytest.approx((2 / 3 + 1 / 2) / 2)  # class 2 skipped, not counted as 0
    # kappa: p_o = 3/4, p_e = (3*2 + 1*2)/16 = 1/2 -> 0.5
    assert m["kappa"] == pytest.approx(0.5)

    single = ConfusionMatrix(2)
    single.update(np.ones(5, dtype=np.uint8), np.ones(5, dtype=np.uint8))
    s = single.compute()
    assert s["oa"] == 1.0 and s["kappa"] == 1.0 and s["iou"] == [None, 1.0]

    empty = ConfusionMatrix(2).compute()
    assert empty["oa"] is None and empty["kappa"] is None and empty["miou"] is None


def test_bad_values_raise_clear_errors():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="reference holds value"):
        cm.update(np.array([0, 1]), np.array([0, 7]))
    with pytest.raises(ValueError, match="prediction holds value"):
        cm.update(np.array([0, 9]), np.array([0, 1]))
    # a wrong prediction under an ignored reference pixel does not matter
    cm.update(np.array([0, 9]), np.array([0, 255]))
    with pytest.raises(ValueError, match="pixels"):
        cm.update(np.zeros(3), np.zeros(4))
    other = ConfusionMatrix(3)
    other.update(np.array([2]), np.array([2]))
    cm.merge(other)
    assert cm.compute()["matrix"] == [[1, 0, 0], [0, 0, 0], [0, 0, 1]]


def test_binary_water_metrics_from_multiclass_label():
    label = np.array([3, 3, 0, 1, 255, 3])
    water = np.array([1, 0, 1, 0, 1, 1])
    m = binary_water_metrics(water, label, water_class=3).compute()
    # water: tp 2, fn 1, fp 1 -> IoU 2/4; the ignored pixel is left out
    assert m["pixels"] == 5
    assert m["iou"][1] == pytest.approx(0.5)
