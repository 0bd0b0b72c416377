"""Supervised training on the labelled items alone: the V-Net baseline (and, with every case labelled, the
upper bound)."""

from __future__ import annotations

import torch

from methods.base import Forward, Method, StepOutput, label_grid
from utils.losses import supervised_loss
from utils.mean_teacher import hard_dice
from utils.visualize import slice_grid


class Supervised(Method):
    name = "supervised"

    def step(
        self, nets: dict[str, Forward], images: torch.Tensor, labels: torch.Tensor, labeled: slice, iteration: int
    ) -> StepOutput:
        logits = nets["student"](images)
        loss, parts = supervised_loss(logits[labeled], labels[labeled], self.args.dice)  # L_s = (CE + Dice) / 2
        scalars = {
            "loss/loss_seg": parts["loss_seg"],
            "loss/loss_seg_dice": parts["loss_seg_dice"],
            "dice/student_labelled": hard_dice(logits[labeled].detach(), labels[labeled]),  # a diagnostic
        }
        return StepOutput(loss, scalars, lambda: first_item_images(images, labels, logits, self.args.num_classes))


def first_item_images(
    images: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor, num_classes: int
) -> dict[str, object]:
    """Slices of the first (labelled) item: image, ground truth, prediction; 2D items whole."""
    return {
        "train/Image": slice_grid(images[0, 0]),
        "train/Groundtruth_label": label_grid(labels[0], num_classes),
        "train/Predicted_label": label_grid(logits[0].argmax(0), num_classes),
    }
