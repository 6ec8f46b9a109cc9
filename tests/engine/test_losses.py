"""Loss values on small hand-worked cases, gate membership, ignore handling, gradients."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from engine.config import DistillConfig, LossConfig
from engine.losses import (
    SegmentationLoss,
    TeacherLoss,
    binary_water_target,
    dice_loss,
    edge_aware_bce,
    gated_distillation,
    inverse_frequency_weights,
    keep_undrawn_loss,
    lovasz_softmax,
    morphological_boundary,
    sobel_magnitude,
    weighted_cross_entropy,
)

IGN = 255


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: on the shared 2-core machine two spinning OpenMP threads that
    compete with other processes made these tests ~20x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _logits_from_probs(probs):
    """(K, N) probabilities -> (1, K, 1, N) logits whose softmax gives them back."""
    p = torch.tensor(probs, dtype=torch.float64)
    return p.log().unsqueeze(0).unsqueeze(2)


def test_inverse_frequency_weights_and_bad_histograms():
    w = inverse_frequency_weights([30, 10, 0, 60])
    assert torch.allclose(w, torch.tensor([100 / 120, 100 / 40, 0.0, 100 / 240]))
    assert torch.allclose(inverse_frequency_weights([25, 75]), torch.tensor([2.0, 2 / 3]))  # N / (2 N_k)
    assert torch.allclose(inverse_frequency_weights([1, 99], max_weight=10), torch.tensor([10.0, 50 / 99]))
    with pytest.raises(ValueError, match="all zeros"):
        inverse_frequency_weights([0, 0])
    with pytest.raises(ValueError, match="non-negative"):
        inverse_frequency_weights([3, -1])


def test_weighted_cross_entropy_by_hand_with_ignore():
    # Pixels: p(class1) = 0.8 (y=1), 0.3 (y=0), ignored (y=255).
    logits = _logits_from_probs([[0.2, 0.7, 0.5], [0.8, 0.3, 0.5]])
    target = torch.tensor([[[1, 0, IGN]]])
    plain = weighted_cross_entropy(logits, target)
    assert plain.item() == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2)
    w = torch.tensor([3.0, 1.0], dtype=torch.float64)
    weighted = weighted_cross_entropy(logits, target, w)
    assert weighted.item() == pytest.approx(-(1 * math.log(0.8) + 3 * math.log(0.7)) / 4)
    # Only zero-weight classes valid, or nothing valid: 0, not NaN.
    assert weighted_cross_entropy(logits, torch.tensor([[[1, 1, 1]]]), torch.tensor([1.0, 0.0]).double()) == 0
    assert weighted_cross_entropy(logits, torch.full((1, 1, 3), IGN)) == 0


def test_dice_by_hand_with_ignore():
    logits = _logits_from_probs([[0.1, 0.8, 0.4, 0.5], [0.9, 0.2, 0.6, 0.5]])
    target = torch.tensor([[[1, 0, 1, IGN]]])
    dice1 = 2 * (0.9 + 0.6) / ((0.9 + 0.2 + 0.6) + 2)
    dice0 = 2 * 0.8 / ((0.1 + 0.8 + 0.4) + 1)
    assert dice_loss(logits, target).item() == pytest.approx(1 - (dice0 + dice1) / 2)
    # A class absent from the target is left out of the mean.
    three = _logits_from_probs([[0.1, 0.8], [0.7, 0.1], [0.2, 0.1]])
    only = torch.tensor([[[1, 1]]])
    assert dice_loss(three, only).item() == pytest.approx(1 - 2 * 0.8 / (0.8 + 2))


def _jaccard_loss_of_errors(errors_set, fg):
    """|M| / |fg ∪ M| for a set M of mispredicted pixels (0 for the empty set)."""
    if not errors_set:
        return 0.0
    union = set(i for i, f in enumerate(fg) if f) | errors_set
    return len(errors_set) / len(union)


def _lovasz_brute_force(probs, labels):
    """Lovász extension as the integral over t of Jaccard loss of {i : m_i >= t}, t in (0, 1]."""
    k = len(probs)
    valid = [i for i, y in enumerate(labels) if y != IGN]
    values = []
    for c in sorted({labels[i] for i in valid}):
        fg = [labels[i] == c for i in valid]
        m = [abs(float(f) - probs[c][i]) for f, i in zip(fg, valid)]
        levels = sorted(set(m) | {0.0}, reverse=True)
        total = 0.0
        for hi, lo in zip(levels, levels[1:]):
            level_set = {j for j, v in enumerate(m) if v >= hi}
            total += (hi - lo) * _jaccard_loss_of_errors(level_set, fg)
        values.append(total)
    assert len(values) <= k
    return sum(values) / len(values)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lovasz_softmax_matches_brute_force_jaccard_extension(seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, 3, 2, 4, generator=gen, dtype=torch.float64) * 2
    labels = torch.randint(0, 3, (1, 2, 4), generator=gen)
    labels[0, 1, 2] = IGN
    probs = torch.softmax(logits, 1)[0].reshape(3, -1).tolist()
    expected = _lovasz_brute_force(probs, labels.reshape(-1).tolist())
    assert lovasz_softmax(logits, labels).item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_lovasz_of_hard_predictions_is_one_minus_iou():
    pred = torch.tensor([0, 0, 1, 1, 2, 1])
    target = torch.tensor([0, 1, 1, 1, 2, IGN])  # class 2 perfect; 0: IoU 1/2; 1: IoU 2/3
    logits = (torch.nn.functional.one_hot(pred, 3).T.double() * 60).reshape(1, 3, 1, 6)
    expected = ((1 - 1 / 2) + (1 - 2 / 3) + 0) / 3
    assert lovasz_softmax(logits, target.reshape(1, 1, 6)).item() == pytest.approx(expected, abs=1e-9)
    # Every pixel ordering of ties gives the same value: check against all permutations of input order.
    for perm in itertools.islice(itertools.permutations(range(6)), 0, 720, 97):
        idx = torch.tensor(perm)
        got = lovasz_softmax(logits[..., idx], target[idx].reshape(1, 1, 6)).item()
        assert got == pytest.approx(expected, abs=1e-9)


def test_segmentation_loss_combines_terms_and_all_ignore_is_zero():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 4, 5, 6, generator=gen, requires_grad=True)
    target = torch.randint(0, 4, (2, 5, 6), generator=gen)
    target[0, :2] = IGN
    w = inverse_frequency_weights(torch.bincount(target[target != IGN], minlength=4))
    loss_fn = SegmentationLoss(LossConfig(), w)
    total = loss_fn(logits, target)
    manual = (
        weighted_cross_entropy(logits, target, w)
        + 0.5 * dice_loss(logits, target)
        + 0.5 * lovasz_softmax(logits, target)
    )
    assert total.item() == pytest.approx(manual.item(), rel=1e-6)
    assert set(loss_fn.last_terms) == {"ce", "dice", "lovasz"}
    total.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    # inverse_frequency_weights=False switches the weights off.
    ce_only = LossConfig(inverse_frequency_weights=False, dice_weight=0, lovasz_weight=0)
    unweighted = SegmentationLoss(ce_only, w)
    assert unweighted(logits, target).item() == pytest.approx(weighted_cross_entropy(logits, target).item())

    logits.grad = None
    empty = loss_fn(logits, torch.full_like(target, IGN))
    empty.backward()
    assert empty.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_boundary_sobel_and_edge_bce_by_hand():
    target = torch.tensor([[[1, 1, 0, 0]] * 4])  # water in the two left columns
    boundary = morphological_boundary(target == 1)
    assert boundary[0].tolist() == [[False, True, True, False]] * 4
    sar = torch.tensor([[[[0.0, 0.0, 1.0, 1.0]] * 4]])  # step edge between columns 1 and 2
    assert sobel_magnitude(sar)[0].tolist() == [[0.0, 1.0, 1.0, 0.0]] * 4
    assert sobel_magnitude(torch.ones(1, 1, 4, 4)).abs().sum() == 0  # flat: zeros, not NaN

    logits = torch.zeros(1, 2, 4, 4, requires_grad=True)  # p = 0.5 everywhere: BCE = log 2
    edge = edge_aware_bce(logits, target, sar, beta=0.5)
    assert edge.item() == pytest.approx(1.5 * math.log(2))  # weight 1 + 0.5 * 1 on the boundary
    flat = edge_aware_bce(logits, target, torch.zeros_like(sar), beta=0.5)
    assert flat.item() == pytest.approx(math.log(2))

    # Ignored boundary pixels leave the mean: a wild logit there changes nothing.
    wild = logits.detach().clone()
    wild[0, 1, 0, 1] = 50.0
    ignored = target.clone()
    ignored[0, 0, 1] = IGN
    assert edge_aware_bce(wild, ignored, sar, 0.5).item() == pytest.approx(1.5 * math.log(2))
    # No boundary (all water): 0 with zero gradient.
    none = edge_aware_bce(logits, torch.ones_like(target), sar, 0.5)
    none.backward()
    assert none.item() == 0.0 and logits.grad.abs().sum() == 0


def test_teacher_loss_is_ce_plus_weighted_edge_term():
    label = torch.tensor([[[3, 3, 0, 0]] * 4])
    label[0, 3, 3] = IGN
    target = binary_water_target(label, water_class=3)
    assert target[0, 0].tolist() == [1, 1, 0, 0] and target[0, 3, 3] == IGN
    sar = torch.tensor([[[[0.0, 0.0, 1.0, 1.0]] * 4]])
    logits = torch.zeros(1, 2, 4, 4, requires_grad=True)
    loss = TeacherLoss(LossConfig())(logits, target, sar)
    assert loss.item() == pytest.approx(math.log(2) * (1 + 0.3 * 1.5))
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="2-class"):
        TeacherLoss()(torch.zeros(1, 3, 4, 4), target, sar)


def test_gate_membership_is_strict_at_the_thresholds():
    water = 3
    up = torch.nextafter(torch.tensor(0.95), torch.tensor(1.0)).item()
    down = torch.nextafter(torch.tensor(0.15), torch.tensor(0.0)).item()
    p_t = torch.tensor([[[0.95, up, 0.99, 0.15, down, 0.01, 0.01, 0.5]]])
    label = torch.tensor([[[water, water, 0, 0, 1, water, IGN, 0]]])
    logits = torch.zeros(1, 6, 1, 8, requires_grad=True)
    res = gated_distillation(logits, p_t, label, water, DistillConfig())
    assert res.mask_water[0, 0].tolist() == [False, True, False, False, False, False, False, False]
    assert res.mask_non_water[0, 0].tolist() == [False, False, False, False, True, False, False, False]
    assert (res.n_water, res.n_non_water, res.ratio) == (1, 1, 2 / 8)
    # p_s(water) = 1/6 from equal logits: BCE(1/6, p_t) averaged over the two gated pixels.
    bce = [-(p * math.log(1 / 6) + (1 - p) * math.log(5 / 6)) for p in (up, down)]
    assert res.loss.item() == pytest.approx(sum(bce) / 2, rel=1e-5)
    res.loss.backward()
    grad = logits.grad[0, :, 0]
    assert grad[:, [0, 2, 3, 5, 6, 7]].abs().sum() == 0  # only gated pixels receive gradient
    assert torch.isfinite(grad).all() and grad[water, 1] < 0  # pushes water up where p_t ~ 0.95


def test_empty_gate_gives_exact_zero_and_dense_mode_uses_all_valid_pixels():
    logits = torch.randn(2, 6, 3, 3, requires_grad=True)
    p_t = torch.full((2, 1, 3, 3), 0.5)  # unsure teacher: nobody passes the gate
    label = torch.randint(0, 6, (2, 3, 3))
    label[1, 0] = IGN
    res = gated_distillation(logits, p_t, label, 3)
    res.loss.backward()
    assert res.loss.item() == 0.0 and res.ratio == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))

    dense = gated_distillation(logits, p_t, label, 3, DistillConfig(gated=False))
    valid = label != IGN
    assert dense.n_water == int((valid & (label == 3)).sum()) and dense.ratio == pytest.approx(15 / 18)
    assert dense.n_water + dense.n_non_water == 15 and dense.loss.item() > 0


def test_distillation_is_finite_for_saturated_logits():
    logits = torch.tensor([[[[100.0]], [[-100.0]]]], requires_grad=True)  # p_s(water=1) ~ e^-200
    res = gated_distillation(logits, torch.tensor([[[0.99]]]), torch.tensor([[[1]]]), 1)
    res.loss.backward()
    assert math.isfinite(res.loss.item()) and res.loss.item() == pytest.approx(0.99 * 200, rel=1e-3)
    assert torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="one size"):
        gated_distillation(logits, torch.zeros(1, 2, 2), torch.zeros(1, 1, 1, dtype=torch.long), 1)


def test_keep_undrawn_keeps_confident_undrawn_answers_and_leaves_drawn_ones_to_the_polygons():
    # four pixels of a 4-class start map; classes 0, 1 drawn, 2, 3 not
    start = torch.tensor([[0.7, 0.1, 0.1, 0.1],  # a drawn class: the polygons decide
                          [0.1, 0.1, 0.7, 0.1],  # undrawn, sure: kept as class 2
                          [0.3, 0.2, 0.1, 0.4],  # undrawn but unsure (0.4 < 0.5): not kept
                          [0.0, 0.0, 0.0, 1.0]])  # undrawn, sure, but labelled (masked): not kept
    start = start.T.reshape(1, 4, 1, 4)
    mask = torch.tensor([[[True, True, True, False]]])
    logits = torch.randn(1, 4, 1, 4, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    loss = keep_undrawn_loss(logits, start, mask, [2, 3])
    expected = -torch.log_softmax(logits[0, :, 0, 1], 0)[2]  # pixel 1 alone, class 2
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    loss.backward()
    grad = logits.grad[0, :, 0]
    assert float(grad[2, 1]) < 0  # descending the loss raises the kept class
    assert float(grad[:, [0, 2, 3]].abs().sum()) == 0.0  # the other pixels are left alone
    # no pixel to keep (every class drawn, or nothing sure enough): an exact 0 with no gradient
    logits.grad = None
    off = keep_undrawn_loss(logits, start, mask, [])
    off.backward()
    assert float(off) == 0.0 and float(logits.grad.abs().sum()) == 0.0
    assert float(keep_undrawn_loss(logits, start, mask, [2, 3], min_confidence=0.8)) == 0.0
    with pytest.raises(ValueError, match="expects logits"):
        keep_undrawn_loss(logits, start[:, :3], mask, [2])
