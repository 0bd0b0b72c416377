import math

import pytest
import torch

from utils.losses import (
    DICE_SMOOTH,
    foreground_dice_loss,
    masked_consistency,
    predictive_entropy,
    soft_dice_loss,
    softmax_squared_error,
    supervised_loss,
)


def test_soft_dice_uses_squared_sums():
    p = torch.tensor([0.5, 1.0, 0.0, 0.25])
    g = torch.tensor([1, 1, 0, 0])
    expected = 1 - (2 * 1.5 + DICE_SMOOTH) / (0.25 + 1 + 0.0625 + 2 + DICE_SMOOTH)
    assert soft_dice_loss(p, g).item() == pytest.approx(expected)


def test_soft_dice_of_a_perfect_prediction_is_zero_and_of_empty_both_is_zero():
    g = torch.tensor([0, 1, 1, 0])
    assert soft_dice_loss(g.float(), g).item() == pytest.approx(0.0)
    assert soft_dice_loss(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(0.0)


def test_supervised_loss_is_half_cross_entropy_plus_half_dice():
    # Voxel 0: p(foreground) = 0.75, label 1; voxel 1: p(foreground) = 0.25, label 0.
    logits = torch.tensor([[0.0, math.log(3)], [math.log(3), 0.0]]).T.reshape(1, 2, 1, 1, 2)
    labels = torch.tensor([1, 0]).reshape(1, 1, 1, 2)
    ce = -math.log(0.75)
    dice = 1 - (2 * 0.75 + DICE_SMOOTH) / (0.75**2 + 0.25**2 + 1 + DICE_SMOOTH)
    loss, parts = supervised_loss(logits, labels)
    assert parts["loss_seg"].item() == pytest.approx(ce)
    assert parts["loss_seg_dice"].item() == pytest.approx(dice)
    assert loss.item() == pytest.approx(0.5 * (ce + dice))


def test_three_classes_average_the_soft_dice_of_classes_1_and_2():
    # Three voxels with softmax rows p = (0.5, 0.25, 0.25), (0.25, 0.5, 0.25), (0.25, 0.25, 0.5); labels 0, 1, 2.
    probabilities = torch.tensor([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]])
    logits = torch.log(probabilities).T.reshape(1, 3, 1, 1, 3)
    labels = torch.tensor([0, 1, 2]).reshape(1, 1, 1, 3)
    # Class 1: p = (0.25, 0.5, 0.25), g = (0, 1, 0); class 2: p = (0.25, 0.25, 0.5), g = (0, 0, 1): the same sums.
    dice_c = 1 - (2 * 0.5 + DICE_SMOOTH) / (0.0625 + 0.25 + 0.0625 + 1 + DICE_SMOOTH)
    assert foreground_dice_loss(logits, labels).item() == pytest.approx(dice_c)
    # Class 2 absent from the label: its term is 1 - s / (sum p^2 + s), averaged with class 1's.
    labels_01 = torch.tensor([0, 1, 1]).reshape(1, 1, 1, 3)
    dice_1 = 1 - (2 * 0.75 + DICE_SMOOTH) / (0.0625 + 0.25 + 0.0625 + 2 + DICE_SMOOTH)
    dice_2 = 1 - DICE_SMOOTH / (0.0625 + 0.0625 + 0.25 + DICE_SMOOTH)
    assert foreground_dice_loss(logits, labels_01).item() == pytest.approx((dice_1 + dice_2) / 2)
    ce = -(math.log(0.5) + math.log(0.5) + math.log(0.25)) / 3
    loss, parts = supervised_loss(logits, labels_01)
    assert parts["loss_seg"].item() == pytest.approx(ce)
    assert loss.item() == pytest.approx(0.5 * (ce + (dice_1 + dice_2) / 2))


def test_softmax_squared_error():
    student = torch.tensor([0.0, 0.0]).reshape(1, 2, 1, 1, 1)  # p = (0.5, 0.5)
    teacher = torch.tensor([0.0, math.log(3)]).reshape(1, 2, 1, 1, 1)  # p = (0.25, 0.75)
    assert softmax_squared_error(student, teacher).flatten().tolist() == pytest.approx([0.0625, 0.0625])


def test_masked_consistency_averages_over_kept_voxels_and_classes():
    error = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).reshape(1, 2, 1, 1, 3)
    mask = torch.tensor([1.0, 0.0, 1.0]).reshape(1, 1, 1, 1, 3)
    assert masked_consistency(error, mask).item() == pytest.approx((1 + 3 + 4 + 6) / (2 * 2))
    assert masked_consistency(error, torch.zeros_like(mask)).item() == 0.0


def test_masked_consistency_divides_by_three_classes_times_kept_voxels():
    error = torch.arange(1.0, 13.0).reshape(1, 3, 2, 2)  # K = 3 classes, a 2x2 image; class c holds 4c+1..4c+4
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 1, 2, 2)
    kept = (1 + 4) + (5 + 8) + (9 + 12)  # the kept pixels (0, 0) and (1, 1) of every class
    assert masked_consistency(error, mask).item() == pytest.approx(kept / (3 * 2))


def test_predictive_entropy():
    p = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.9, 0.1]]).T.reshape(1, 2, 1, 1, 3)
    u = predictive_entropy(p).flatten()
    assert u.shape == (3,)
    assert u[0].item() == pytest.approx(math.log(2), abs=1e-5)
    assert u[1].item() == pytest.approx(0.0, abs=1e-5)
    assert u[2].item() == pytest.approx(-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)), abs=1e-5)


def test_vnet_dice_of_a_correct_empty_prediction_on_an_empty_batch_is_about_one_with_a_vanishing_gradient():
    # Two 64 x 64 frames with empty masks and a correct all-background prediction, p(lesion) = 0.01 everywhere.
    # By the definition 1 - (2 sum(p g) + s) / (sum(p^2) + sum(g^2) + s) with g = 0: 1 - s / (sum(p^2) + s).
    p = torch.full((2, 64, 64), 0.01, requires_grad=True)
    loss = soft_dice_loss(p, torch.zeros(2, 64, 64, dtype=torch.long))
    squares = 2 * 64 * 64 * 0.01**2
    assert loss.item() == pytest.approx(1 - DICE_SMOOTH / (squares + DICE_SMOOTH))
    assert loss.item() > 0.9999  # near the worst a Dice loss can say, for a correct answer
    loss.backward()
    # d/dp_i = 2 p_i s / (sum(p^2) + s)^2 > 0: descent lowers p, by ~3e-7 a pixel: the loss says 1, the gradient ~0.
    expected = 2 * 0.01 * DICE_SMOOTH / (squares + DICE_SMOOTH) ** 2
    assert torch.allclose(p.grad, torch.full_like(p, expected))
    assert expected < 1e-6
    # Only an exactly zero prediction scores 0.
    assert soft_dice_loss(torch.zeros(2, 64, 64), torch.zeros(2, 64, 64)).item() == pytest.approx(0.0)


def test_vnet_dice_pools_the_batch_so_an_empty_item_beside_a_lesion_item_adds_only_its_false_positive_mass():
    # Item 0: a 1 x 4 frame with lesion (1, 1, 0, 0) predicted (0.9, 0.9, 0.1, 0.1); item 1: empty, predicted 0.1.
    p = torch.tensor([[0.9, 0.9, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1]])
    g = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]])
    alone = 1 - (2 * 1.8 + DICE_SMOOTH) / (2 * 0.81 + 2 * 0.01 + 2 + DICE_SMOOTH)
    pooled = 1 - (2 * 1.8 + DICE_SMOOTH) / (2 * 0.81 + 6 * 0.01 + 2 + DICE_SMOOTH)
    assert soft_dice_loss(p[:1], g[:1]).item() == pytest.approx(alone, rel=1e-5)
    assert soft_dice_loss(p, g).item() == pytest.approx(pooled, rel=1e-5)
    # A per-item mean would add the empty item's own term, 1 - s / (4 * 0.01 + s) ~ 1, whatever it predicts.
    assert soft_dice_loss(p[1], g[1]).item() > 0.999
