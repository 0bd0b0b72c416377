"""UA-MT (Yu et al., MICCAI 2019): a mean teacher whose Monte-Carlo-dropout uncertainty filters the consistency.

Per step, on the student's logits of the batch:
    L = L_s + lambda(t) * L_c,   L_c = sum(M * (p_student - p_teacher)^2) / (C * sum(M)),   M = [U < H(t)]
with U the entropy of the teacher's mean softmax over T noisy dropout passes, H(t) = (0.75 + 0.25 r(t/t_max)) ln C,
lambda(t) = lambda_max r(floor(t / 150) / 40). The teacher is the EMA of the student, updated after each step.
`--uncertainty_mask 0` sets H = inf (every voxel: the mean-teacher ablation, U still computed and logged).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import ClassVar, Literal

import torch

from methods.base import Forward, Method, NewNetwork, StepOutput, add_consistency_flags, frozen_teacher, label_grid
from methods.supervised import first_item_images
from utils import ramps
from utils.errors import DataError
from utils.losses import supervised_loss
from utils.mean_teacher import ema_update, hard_dice, side_forward, uncertainty_aware_consistency
from utils.visualize import slice_grid
from utils.world_size import requested_world_size

LOW_FINAL_WEIGHT = 0.5  # warn when lambda(t) ends below this share of --consistency


def short_ramp_warning(args: argparse.Namespace) -> str:
    """A message when lambda(t) is still far from --consistency at the last iteration: the ramp is counted in
    epochs of --rampup_epoch_iters iterations (the release's 150 x 40 = 6000), so a short run barely uses the
    unlabelled items (e.g. 600 iterations: lambda <= 0.0014 of 0.1). Empty when the ramp fits the run."""
    if args.consistency <= 0:
        return ""
    final = ramps.consistency_weight(
        args.max_iterations - 1, args.consistency, args.consistency_rampup, args.rampup_epoch_iters
    )
    if final >= LOW_FINAL_WEIGHT * args.consistency:
        return ""
    fit = max(1, round(args.max_iterations / args.consistency_rampup)) if args.consistency_rampup else 1
    return (
        f"lambda(t) reaches only {final:.2g} of --consistency {args.consistency:g} at iteration {args.max_iterations}: "
        f"the ramp takes --consistency_rampup {args.consistency_rampup:g} epochs of --rampup_epoch_iters "
        f"{args.rampup_epoch_iters} iterations, so the unlabelled items barely count; to end the ramp with the run, "
        f"pass --rampup_epoch_iters {fit}"
    )


TEACHER_DICE_EVERY = 10  # iterations between two logs of the teacher's Dice on the labelled items (one more forward)


class UAMT(Method):
    """UA-MT with the consistency on every item of the batch (the release's train_LA_meanteacher_certainty.py)."""

    name = "uamt"
    semi_supervised = True
    consistency_on: ClassVar[Literal["all", "unlabeled"]] = "all"
    resume_must_match: ClassVar[dict[str, object]] = {"student_batchnorm": "joint"}  # a run does not switch forwards

    def __init__(self, args: argparse.Namespace, new_network: NewNetwork):
        super().__init__(args, new_network)  # the student
        # A separately initialised network, as in the release; the first EMA update (alpha = 0) copies the student.
        self.kept["teacher"] = self.teacher = frozen_teacher(new_network)
        warning = short_ramp_warning(args)  # here, after the data checks: a data mistake stays a one-line error
        if warning:
            print(f"warning: {warning}", file=sys.stderr)

    @staticmethod
    def add_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--ema_decay", type=float, default=0.99, help="teacher = EMA of the student, alpha at most this")
        add_consistency_flags(p, 0.1, 40.0, "the consistency")  # the release: 0.1 at iteration 6000
        p.add_argument("--mc_passes", type=int, default=8, help="T: Monte-Carlo dropout passes of the teacher")
        p.add_argument(
            "--mc_passes_per_forward",
            type=int,
            default=2,
            help="MC passes stacked in one teacher forward (the release: 2); more is faster on a GPU, and BatchNorm "
            "then normalises over more copies of the items",
        )
        p.add_argument(
            "--uncertainty_mask",
            type=int,
            default=1,
            choices=[0, 1],
            help="1: consistency only where U < H(t) (UA-MT); 0: on every voxel, H = inf (the mean-teacher ablation)",
        )
        p.add_argument(
            "--student_batchnorm",
            choices=["auto", "joint", "split"],
            default="auto",
            help="joint: one student forward of the whole batch, BatchNorm statistics over labelled and unlabelled "
            "items (the release); split: labelled and unlabelled items as two forwards, each with its own statistics; "
            "auto: split for 2D data in one process, else joint",
        )

    @staticmethod
    def resolve(args: argparse.Namespace) -> dict[str, object]:
        if args.student_batchnorm != "auto":
            return {}
        two_d = len(args.patch_size) == 2  # auto: split for frames in one process, else the release's joint
        return {"student_batchnorm": "split" if two_d and requested_world_size() == 1 else "joint"}

    @staticmethod
    def check_args(args: argparse.Namespace) -> None:
        if args.mc_passes_per_forward <= 0 or args.mc_passes % args.mc_passes_per_forward:
            raise DataError(
                f"--mc_passes_per_forward {args.mc_passes_per_forward} must divide --mc_passes {args.mc_passes}"
            )
        if args.student_batchnorm == "split" and requested_world_size() > 1:
            raise DataError("--student_batchnorm split is single-process only (two forwards per DDP step are untested)")

    def run_name(self) -> str:
        mask = "" if self.args.uncertainty_mask else "_nomask"
        return f"{self.name}{mask}" + ("_bnsplit" if self.args.student_batchnorm == "split" else "")

    def step(
        self, nets: dict[str, Forward], images: torch.Tensor, labels: torch.Tensor, labeled: slice, iteration: int
    ) -> StepOutput:
        a, model = self.args, nets["student"]
        if a.student_batchnorm == "split":  # the labelled items normalised by their own batch statistics
            logits = torch.cat([model(images[labeled]), model(images[labeled.stop :])])
        else:
            logits = model(images)
        loss_s, parts = supervised_loss(logits[labeled], labels[labeled], a.dice)  # L_s on the labelled items
        weight = ramps.consistency_weight(iteration, a.consistency, a.consistency_rampup, a.rampup_epoch_iters)
        threshold = (
            ramps.uncertainty_threshold(iteration, a.max_iterations, a.num_classes) if a.uncertainty_mask else math.inf
        )
        items = slice(labeled.stop, None) if self.consistency_on == "unlabeled" else slice(None)
        c = uncertainty_aware_consistency(
            logits[items], self.forward_of(self.teacher), images[items], threshold, a.mc_passes, a.mc_passes_per_forward
        )
        loss = loss_s + weight * c.loss
        scalars = {
            "loss/loss_seg": parts["loss_seg"],
            "loss/loss_seg_dice": parts["loss_seg_dice"],
            "train/consistency_weight": weight,
            "train/consistency_dist": c.loss,
            "train/consistency_loss": weight * c.loss,
            "uncertainty/mean": c.uncertainty.mean(),
            "uncertainty/max": c.uncertainty.max(),
            "uncertainty/min": c.uncertainty.min(),
            "uncertainty/mask_per": c.mask.mean(),
            # Diagnostics, no effect on training: hard Dice on the labelled items; the share of the consistency
            # items (unlabelled for uamt_unlabel) that student and teacher call foreground.
            "dice/student_labelled": hard_dice(logits[labeled].detach(), labels[labeled]),
            "foreground/student": (logits[items].detach().argmax(1) > 0).float().mean(),
            "foreground/teacher": (c.teacher_logits.argmax(1) > 0).float().mean(),
        }
        if math.isfinite(threshold):  # tensorboardX warns on every inf it is given (the mask-off ablation)
            scalars["uncertainty/threshold"] = threshold
        if iteration % TEACHER_DICE_EVERY == 0:
            scalars["dice/teacher_labelled"] = hard_dice(side_forward(self.teacher, images[labeled]), labels[labeled])

        def images_to_log() -> dict[str, object]:
            prediction = logits.argmax(1)
            return first_item_images(images, labels, logits, a.num_classes) | {
                "train/uncertainty": slice_grid(c.uncertainty[0, 0]),
                "train/mask": slice_grid(1.0 - c.mask[0, 0], False, 1.0),  # white: filtered out
                "unlabel/Image": slice_grid(images[-1, 0]),
                "unlabel/Predicted_label": label_grid(prediction[-1], a.num_classes),
            }

        return StepOutput(loss, scalars, images_to_log)

    def end_iteration(self, iteration: int) -> None:
        ema_update(self.teacher, self.trained["student"], self.args.ema_decay, iteration)


class UAMTUnlabel(UAMT):
    """UA-MT with the consistency on the unlabelled items only (the authors' recommended setting)."""

    name = "uamt_unlabel"
    consistency_on = "unlabeled"
