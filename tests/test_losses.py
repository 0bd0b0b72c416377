import math

import pytest
import torch
import torch.nn.functional as F

import training.loop as training
from methods.bcp import BCP
from methods.supervised import Supervised
from utils.errors import DataError
from utils.losses import (
    DICE_SMOOTH,
    batch_dice_loss,
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


def _binary_logits(p_lesion: list[list[float]]) -> torch.Tensor:
    """Logits (B, 2, 1, N) whose softmax gives p(lesion) = `p_lesion` per item and pixel."""
    p = torch.tensor(p_lesion, dtype=torch.float64)
    return torch.stack([torch.log(1 - p), torch.log(p)], dim=1).unsqueeze(2)


def test_batch_dice_is_the_linear_sum_dice_pooled_over_items_and_pixels():
    # Item 0: lesion (1, 0, 0) predicted (0.75, 0.25, 0.5); item 1: empty, predicted (0.25, 0.25, 0.25).
    logits = _binary_logits([[0.75, 0.25, 0.5], [0.25, 0.25, 0.25]])
    labels = torch.tensor([[1, 0, 0], [0, 0, 0]]).unsqueeze(1)
    # 2 sum(p g) = 1.5; sum(p) = 1.5 + 0.75 = 2.25; sum(g) = 1.
    expected = 1 - (1.5 + DICE_SMOOTH) / (2.25 + 1 + DICE_SMOOTH)
    assert batch_dice_loss(logits, labels).item() == pytest.approx(expected)
    ce = -(5 * math.log(0.75) + math.log(0.5)) / 6  # five pixels at p(own class) = 0.75, one at 0.5
    loss, parts = supervised_loss(logits, labels, "batch")
    assert parts["loss_seg_dice"].item() == pytest.approx(expected)
    assert loss.item() == pytest.approx(0.5 * (ce + expected))


def test_batch_dice_of_an_all_empty_batch_is_zero_with_no_gradient():
    logits = _binary_logits([[0.01] * 4, [0.2] * 4]).requires_grad_(True)
    labels = torch.zeros(2, 1, 4, dtype=torch.long)
    loss = batch_dice_loss(logits, labels)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.count_nonzero(logits.grad) == 0  # the cross-entropy alone teaches an all-empty batch
    # The V-Net Dice of the same batch: 1 - s / (sum(p^2) + s), ~1.
    vnet = 1 - DICE_SMOOTH / (4 * 0.01**2 + 4 * 0.2**2 + DICE_SMOOTH)
    assert supervised_loss(logits, labels)[1]["loss_seg_dice"].item() == pytest.approx(vnet)


def test_batch_dice_pushes_a_false_positive_pixel_whatever_its_probability_where_the_vnet_dice_fades():
    # d/dp_j of the loss at a pixel j with g_j = 0, by the definitions (A = 2 sum(p g) + s):
    # batch: A / (sum(p) + sum(g) + s)^2, the same for every such pixel; vnet: 2 p_j A / (sum(p^2) + sum(g) + s)^2.
    p = torch.tensor([0.9, 0.1, 0.001], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([1, 0, 0])
    a = 2 * 0.9 + DICE_SMOOTH
    logits = torch.stack([torch.log(1 - p), torch.log(p)]).reshape(1, 2, 1, 3)
    (grad_batch,) = torch.autograd.grad(batch_dice_loss(logits, g.reshape(1, 1, 3)), p)
    assert grad_batch[1:].tolist() == pytest.approx([a / (1.001 + 1 + DICE_SMOOTH) ** 2] * 2)
    (grad_vnet,) = torch.autograd.grad(soft_dice_loss(p, g), p)
    squares = 0.81 + 0.01 + 1e-6 + 1 + DICE_SMOOTH
    assert grad_vnet[1:].tolist() == pytest.approx([2 * 0.1 * a / squares**2, 2 * 0.001 * a / squares**2])


def test_batch_dice_averages_only_the_classes_present_in_the_batch():
    # Softmax rows (0.5, 0.25, 0.25), (0.25, 0.5, 0.25), (0.25, 0.25, 0.5); labels 0, 1, 1: class 2 is absent.
    probabilities = torch.tensor([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]])
    logits = torch.log(probabilities).T.reshape(1, 3, 1, 3)
    labels = torch.tensor([0, 1, 1]).reshape(1, 1, 3)
    class_1 = 1 - (2 * 0.75 + DICE_SMOOTH) / (1.0 + 2 + DICE_SMOOTH)
    assert batch_dice_loss(logits, labels).item() == pytest.approx(class_1)
    labels_012 = torch.tensor([0, 1, 2]).reshape(1, 1, 3)
    class_2 = 1 - (2 * 0.5 + DICE_SMOOTH) / (1.0 + 1 + DICE_SMOOTH)
    class_1 = 1 - (2 * 0.5 + DICE_SMOOTH) / (1.0 + 1 + DICE_SMOOTH)
    assert batch_dice_loss(logits, labels_012).item() == pytest.approx((class_1 + class_2) / 2)


def test_supervised_loss_refuses_an_unknown_dice():
    with pytest.raises(ValueError, match="--dice"):
        supervised_loss(torch.zeros(1, 2, 1, 1), torch.zeros(1, 1, 1, dtype=torch.long), "item")


def test_dice_flag_defaults_to_vnet_and_batch_reaches_the_supervised_step_and_the_run_name():
    assert training.training_parser("", "x", Supervised).parse_args([]).dice == "vnet"
    args = training.training_parser("", "x", Supervised).parse_args(["--dice", "batch"])
    torch.manual_seed(0)
    method = Supervised(args, lambda: torch.nn.Conv2d(1, 2, 1))
    images = torch.randn(2, 1, 4, 4)
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    labels[0, 1:3, 1:3] = 1  # item 1 stays empty
    out = method.step({"student": method.trained["student"]}, images, labels, slice(0, 2), iteration=0)
    logits = method.trained["student"](images).detach()
    p, g = F.softmax(logits, dim=1)[:, 1], labels.double()
    dice = 1 - (2 * (p * g).sum() + DICE_SMOOTH) / (p.sum() + g.sum() + DICE_SMOOTH)
    assert out.loss.item() == pytest.approx(0.5 * (F.cross_entropy(logits, labels).item() + dice.item()), rel=1e-5)
    assert training.run_name(method) == "supervised_batchdice"
    bcp_args = training.training_parser("", "x", BCP).parse_args(["--dice", "batch"])
    with pytest.raises(DataError, match="--dice batch"):
        BCP.check_args(bcp_args)
