import math

import pytest

from utils import ramps


def test_sigmoid_rampup_values():
    assert ramps.sigmoid_rampup(0, 40) == pytest.approx(math.exp(-5))
    assert ramps.sigmoid_rampup(20, 40) == pytest.approx(math.exp(-1.25))
    assert ramps.sigmoid_rampup(40, 40) == 1.0
    assert ramps.sigmoid_rampup(400, 40) == 1.0  # clipped
    assert ramps.sigmoid_rampup(-3, 40) == pytest.approx(math.exp(-5))
    assert ramps.sigmoid_rampup(7, 0) == 1.0


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (0, 0.1 * math.exp(-5)),
        (149, 0.1 * math.exp(-5)),  # still "epoch" 0
        (150, 0.1 * math.exp(-5 * (1 - 1 / 40) ** 2)),
        (3000, 0.1 * math.exp(-5 * 0.5**2)),
        (6000, 0.1),
        (9000, 0.1),
    ],
)
def test_consistency_weight_counts_150_iteration_epochs(t, expected):
    assert ramps.consistency_weight(t, 0.1, 40, 150) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("t", "classes", "expected"),
    [
        (0, 2, (0.75 + 0.25 * math.exp(-5)) * math.log(2)),
        (3000, 2, (0.75 + 0.25 * math.exp(-1.25)) * math.log(2)),
        (6000, 2, math.log(2)),
        (6000, 4, math.log(4)),
    ],
)
def test_uncertainty_threshold(t, classes, expected):
    assert ramps.uncertainty_threshold(t, 6000, classes) == pytest.approx(expected)


def test_step_lr_drops_tenfold_every_2500_iterations():
    assert ramps.step_lr(0, 0.01, 2500) == 0.01
    assert ramps.step_lr(2499, 0.01, 2500) == 0.01
    assert ramps.step_lr(2500, 0.01, 2500) == pytest.approx(0.001)
    assert ramps.step_lr(5999, 0.01, 2500) == pytest.approx(0.0001)
