"""Ramp-up schedules of UA-MT (Laine & Aila, ICLR 2017, as used by Yu et al., MICCAI 2019)."""

from __future__ import annotations

import math


def sigmoid_rampup(current: float, rampup_length: float) -> float:
    """r(x) = exp(-5 (1 - clip(x, 0, 1))^2) with x = current / rampup_length; 1 when rampup_length is 0."""
    if rampup_length == 0:
        return 1.0
    x = min(max(current / rampup_length, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - x) ** 2)


def consistency_weight(iteration: int, consistency: float, rampup_epochs: float, iters_per_rampup_epoch: int) -> float:
    """lambda(t) = consistency * r(floor(t / iters_per_rampup_epoch) / rampup_epochs).

    The UA-MT release counts the ramp in "epochs" of 150 iterations (iter_num // 150) with a 40-epoch ramp,
    so lambda reaches its full value at iteration 6000.
    """
    return consistency * sigmoid_rampup(iteration // iters_per_rampup_epoch, rampup_epochs)


def uncertainty_threshold(iteration: int, max_iterations: int, num_classes: int) -> float:
    """H(t) = (0.75 + 0.25 r(t / t_max)) ln C: the paper's threshold, rising from 3/4 to all of the maximal entropy."""
    return (0.75 + 0.25 * sigmoid_rampup(iteration, max_iterations)) * math.log(num_classes)


def step_lr(iteration: int, base_lr: float, step_size: int, gamma: float = 0.1) -> float:
    """Learning rate for 0-based step t: base_lr * gamma^(t // step_size) (x0.1 every 2500 iterations by default)."""
    return base_lr * gamma ** (iteration // step_size)
