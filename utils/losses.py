"""Losses of UA-MT (Yu et al., MICCAI 2019, Eq. 1 and Sec. 2.2), and the batch Dice of `--dice batch`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

DICE_SMOOTH = 1e-5
# --dice: vnet, the V-Net squared-sum Dice of the UA-MT release (the default: committed runs trained with it); batch,
# a linear-sum batch Dice that leaves a class out where the batch has none of it (batch_dice_loss).
DICE_LOSSES = ("vnet", "batch")
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


def batch_dice_loss(logits: torch.Tensor, labels: torch.Tensor, smooth: float = DICE_SMOOTH) -> torch.Tensor:
    """`--dice batch`: per foreground class c, 1 - (2 sum(p_c g_c) + s) / (sum(p_c) + sum(g_c) + s), every sum over
    the whole batch and all pixels (nnU-Net's batch Dice, its linear sums); the mean over the classes present in the
    batch's labels. A class absent from every label of the batch is left out (no term, no gradient), and a batch
    without any foreground gives 0: a correct empty prediction costs nothing (the cross-entropy alone teaches
    those pixels), where any Dice of an empty target says ~1 (1 - s / (sum(p) + s)) whatever the prediction.

    Why not the V-Net Dice for frames with small or no lesions: its squared sums give a false-positive pixel a
    gradient proportional to p, which fades as p falls; the linear sums push every false-positive pixel alike, as
    they push every missed one. Under torchrun each process pools its own share of the batch (no all-gather)."""
    num_classes = logits.shape[1]
    probability = F.softmax(logits, dim=1)[:, 1:]
    truth = F.one_hot(labels, num_classes).movedim(-1, 1)[:, 1:].to(probability.dtype)
    dims = [0, *range(2, logits.dim())]  # all but the class axis
    intersection = (probability * truth).sum(dims)
    truth_sum = truth.sum(dims)
    dice = (2.0 * intersection + smooth) / (probability.sum(dims) + truth_sum + smooth)
    present = truth_sum > 0
    # torch.where, not indexing: no host sync, and an absent class's term gets an exact zero gradient.
    return torch.where(present, 1.0 - dice, torch.zeros_like(dice)).sum() / present.sum().clamp(min=1)


def supervised_loss(
    logits: torch.Tensor, labels: torch.Tensor, dice: str = "vnet"
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_s = 0.5 (cross-entropy + Dice) on the labelled items; `dice` (--dice) picks the Dice: vnet (the UA-MT
    release's foreground_dice_loss) or batch (batch_dice_loss)."""
    ce = F.cross_entropy(logits, labels)
    if dice == "vnet":
        dice_loss = foreground_dice_loss(logits, labels)
    elif dice == "batch":
        dice_loss = batch_dice_loss(logits, labels)
    else:
        raise ValueError(f"--dice {dice}: choose one of {', '.join(DICE_LOSSES)}")
    return 0.5 * (ce + dice_loss), {"loss_seg": ce, "loss_seg_dice": dice_loss}


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
