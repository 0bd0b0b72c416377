"""Losses of UA-MT (Yu et al., MICCAI 2019, Eq. 1 and Sec. 2.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

DICE_SMOOTH = 1e-5
# The log of a zero probability is guarded as in the UA-MT release.
ENTROPY_EPS = 1e-6


def soft_dice_loss(probability: torch.Tensor, target: torch.Tensor, smooth: float = DICE_SMOOTH) -> torch.Tensor:
    """1 - (2 sum(p g) + s) / (sum(p^2) + sum(g^2) + s), summed over the whole batch (V-Net's squared-sum Dice)."""
    target = target.float()
    intersection = torch.sum(probability * target)
    denominator = torch.sum(probability * probability) + torch.sum(target * target)
    return 1.0 - (2.0 * intersection + smooth) / (denominator + smooth)


def foreground_dice_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean soft Dice loss of the foreground classes 1..C-1 (for C = 2: the foreground probability alone)."""
    probability = F.softmax(logits, dim=1)
    losses = [soft_dice_loss(probability[:, c], labels == c) for c in range(1, logits.shape[1])]
    return torch.stack(losses).mean()


def supervised_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_s = 0.5 (cross-entropy + Dice) on the labelled items."""
    ce = F.cross_entropy(logits, labels)
    dice = foreground_dice_loss(logits, labels)
    return 0.5 * (ce + dice), {"loss_seg": ce, "loss_seg_dice": dice}


def softmax_squared_error(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Voxel-wise (softmax(student) - softmax(teacher))^2, one value per class and voxel."""
    return (F.softmax(student_logits, dim=1) - F.softmax(teacher_logits, dim=1)) ** 2


def masked_consistency(squared_error: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 1's L_c: sum(mask * error) / (C * sum(mask)), the mean squared error over the kept voxels and classes.

    `mask` has one channel and broadcasts over the C classes; the 1e-16 keeps an all-masked batch at zero.
    """
    num_classes = squared_error.shape[1]
    return torch.sum(mask * squared_error) / (num_classes * torch.sum(mask) + 1e-16)


def predictive_entropy(mean_probability: torch.Tensor) -> torch.Tensor:
    """U = -sum_c p_c log p_c of the mean Monte-Carlo softmax, with one channel kept."""
    return -torch.sum(mean_probability * torch.log(mean_probability + ENTROPY_EPS), dim=1, keepdim=True)
