import math

import pytest
import torch
from torch import nn

from networks.vnet import VNet
from utils.mean_teacher import add_teacher_noise, ema_update, mc_dropout_uncertainty, uncertainty_aware_consistency


def _fill(net: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(value)


def test_ema_starts_as_a_copy_then_averages_with_decay():
    student, teacher = VNet(), VNet()
    _fill(student, 1.0)
    _fill(teacher, 0.0)
    ema_update(teacher, student, 0.99, step=0)  # alpha = 0
    assert all(torch.all(p == 1.0) for p in teacher.parameters())
    _fill(student, 3.0)
    ema_update(teacher, student, 0.99, step=1)  # alpha = 1/2: the true average
    assert all(torch.allclose(p, torch.tensor(2.0)) for p in teacher.parameters())
    ema_update(teacher, student, 0.99, step=1000)  # alpha capped at 0.99
    assert all(torch.allclose(p, torch.tensor(0.99 * 2 + 0.01 * 3)) for p in teacher.parameters())


def test_ema_leaves_batchnorm_buffers_alone():
    student, teacher = VNet(), VNet()
    with torch.no_grad():
        student.block_one.conv[1].running_mean.fill_(5.0)
    ema_update(teacher, student, 0.99, step=0)
    assert torch.all(teacher.block_one.conv[1].running_mean == 0.0)


def test_teacher_noise_is_clipped_gaussian():
    torch.manual_seed(0)
    x = torch.zeros(200_000)
    noise = add_teacher_noise(x)
    assert noise.abs().max() <= torch.tensor(0.2)
    assert noise.abs().max().item() == pytest.approx(0.2)  # some values hit the clip
    assert noise.mean().item() == pytest.approx(0.0, abs=2e-3)
    # Standard deviation of N(0, 0.1) clipped at 2 sigma: 0.1 * sqrt(0.8805 + 4 * 0.0455) = 0.0974...
    assert noise.std().item() == pytest.approx(0.0974, abs=2e-3)


class TableTeacher(nn.Module):
    """Ignores its input; call k, row r outputs the foreground probability table[k, r]."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table, self.calls = table, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p1 = self.table[self.calls][: x.shape[0]].reshape(-1, *[1] * (x.dim() - 1)).expand(-1, 1, *x.shape[2:])
        self.calls += 1
        return torch.log(torch.cat([1 - p1, p1], dim=1))


@pytest.mark.parametrize("spatial", [(2, 2, 2), (3, 2)])  # volumes and 2D images
@pytest.mark.parametrize("passes_per_forward", [1, 2, 4])
def test_mc_uncertainty_is_entropy_of_the_mean_over_all_passes(passes_per_forward, spatial):
    torch.manual_seed(1)
    items, passes = 3, 8
    table = torch.rand(passes // passes_per_forward, items * passes_per_forward) * 0.98 + 0.01
    u = mc_dropout_uncertainty(TableTeacher(table), torch.zeros(items, 1, *spatial), passes, passes_per_forward)
    assert u.shape == (items, 1, *spatial)
    for i in range(items):
        samples = [table[k, j * items + i].item() for k in range(table.shape[0]) for j in range(passes_per_forward)]
        p = sum(samples) / passes
        expected = -(p * math.log(p + 1e-6) + (1 - p) * math.log(1 - p + 1e-6))
        assert torch.allclose(u[i], torch.tensor(expected), atol=1e-5)


def test_mc_uncertainty_of_a_2d_network_on_images():
    """A real 2D V-Net with dropout: U is per pixel, in [0, ln K], and the passes differ (dropout is on)."""
    torch.manual_seed(0)
    teacher = VNet(n_classes=3, dimensions=2).train()
    u = mc_dropout_uncertainty(teacher, torch.randn(2, 1, 32, 32), passes=4, passes_per_forward=2)
    assert u.shape == (2, 1, 32, 32)
    assert torch.all(u >= 0) and torch.all(u <= math.log(3) + 1e-5) and u.std() > 0


def test_mc_passes_must_divide_evenly():
    with pytest.raises(ValueError):
        mc_dropout_uncertainty(TableTeacher(torch.rand(4, 4)), torch.zeros(2, 1, 1, 1, 1), 7, 2)


def test_consistency_keeps_only_certain_voxels():
    # Item 0: teacher certain (p = 0.99 every pass), item 1: uncertain (p = 0.5).
    rows = torch.tensor([0.99, 0.5, 0.99, 0.5])
    teacher = TableTeacher(rows.repeat(5, 1))  # 1 target pass + 4 MC forwards of 2 passes
    student_logits = torch.zeros(2, 2, 1, 1, 1)  # p = (0.5, 0.5)
    inputs = torch.zeros(2, 1, 1, 1, 1)
    result = uncertainty_aware_consistency(student_logits, teacher, inputs, threshold=0.5)
    assert result.mask.flatten().tolist() == [1.0, 0.0]
    assert result.loss.item() == pytest.approx((0.49**2 * 2) / 2)  # only item 0, both classes, / (C * 1)

    teacher.calls = 0
    everything = uncertainty_aware_consistency(student_logits, teacher, inputs, threshold=math.inf)
    assert everything.mask.flatten().tolist() == [1.0, 1.0]
    assert everything.loss.item() == pytest.approx((0.49**2 * 2) / 4)
