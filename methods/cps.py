"""Cross pseudo supervision (CPS; Chen, Yuan, Zeng, Wang, CVPR 2021), as its release computes a step
(charlesCXK/TorchSemiSeg, exp.voc/*.CPS/train.py), on this project's batches and losses.

Two networks of one architecture, initialised differently (built one after the other from the seeded generator),
both trained. Per step, with f_a, f_b their logits of every item of the batch and y_a, y_b their argmax maps (no
gradient: a pseudo-label is a target, not a path):
    L = L_s(f_a) + L_s(f_b) + lambda(t) * [CE(f_a, y_b) + CE(f_b, y_a)]
L_s is the supervised loss on the labelled items (this project's (CE + Dice) / 2); lambda(t) = --consistency *
r(floor(t / --rampup_epoch_iters) / --consistency_rampup), constant --consistency (the release's 1.5) when the ramp is
0. test_LA.py and predict.py evaluate network a (the release's branch1). README ("Cross pseudo supervision") lists
where this differs from the release and why.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from methods.base import Forward, Method, StepOutput, add_consistency_flags, label_grid
from methods.supervised import first_item_images
from utils import ramps
from utils.losses import supervised_loss
from utils.mean_teacher import hard_dice


class CPS(Method):
    name = "cps"
    semi_supervised = True
    # Two networks, a then b: the seed gives each its own initial weights (the release's two branches).
    trained_names = ("net_a", "net_b")
    evaluated = "net_a"

    @staticmethod
    def add_flags(p: argparse.ArgumentParser) -> None:
        # The release's VOC weight 1.5, constant (no ramp).
        add_consistency_flags(p, 1.5, 0.0, "the cross pseudo supervision")

    def step(
        self, nets: dict[str, Forward], images: torch.Tensor, labels: torch.Tensor, labeled: slice, iteration: int
    ) -> StepOutput:
        a = self.args
        logits_a, logits_b = nets["net_a"](images), nets["net_b"](images)
        loss_s_a, parts_a = supervised_loss(logits_a[labeled], labels[labeled], a.dice)
        loss_s_b, _ = supervised_loss(logits_b[labeled], labels[labeled], a.dice)
        pseudo_a, pseudo_b = logits_a.detach().argmax(1), logits_b.detach().argmax(1)  # targets carry no gradient
        loss_cps = F.cross_entropy(logits_a, pseudo_b) + F.cross_entropy(logits_b, pseudo_a)
        weight = ramps.consistency_weight(iteration, a.consistency, a.consistency_rampup, a.rampup_epoch_iters)
        loss = loss_s_a + loss_s_b + weight * loss_cps
        unlabelled = slice(labeled.stop, None)
        scalars = {
            "loss/loss_seg": parts_a["loss_seg"],
            "loss/loss_seg_dice": parts_a["loss_seg_dice"],
            "loss/loss_sup_a": loss_s_a,
            "loss/loss_sup_b": loss_s_b,
            "loss/loss_cps": loss_cps,
            "train/consistency_weight": weight,
            # Diagnostics: how often the two networks agree on the unlabelled items, each one's Dice on the labelled.
            "cps/agreement_unlabelled": (pseudo_a[unlabelled] == pseudo_b[unlabelled]).float().mean(),
            "dice/net_a_labelled": hard_dice(logits_a[labeled].detach(), labels[labeled]),
            "dice/net_b_labelled": hard_dice(logits_b[labeled].detach(), labels[labeled]),
        }

        def images_to_log() -> dict[str, object]:
            return first_item_images(images, labels, logits_a, a.num_classes) | {
                "cps/pseudo_label_b_of_unlabelled": label_grid(pseudo_b[-1], a.num_classes),
            }

        return StepOutput(loss, scalars, images_to_log)
