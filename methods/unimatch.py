"""UniMatch (Yang, Qi, Feng, Gao, Shi, CVPR 2023: weak-to-strong consistency with a feature-perturbation stream and
two strong views), as its medical release computes a step (LiheYoung/UniMatch, more-scenarios/medical/unimatch.py),
on this project's batches.

One network, student = teacher (no EMA). Per step, x the labelled items with labels y, u_w the unlabelled ones as the
loader gives them (its rot/flip: the weak view):
    (p, p_fp) = f.forward_fp([x; u_w])            one forward: clean logits and the feature-perturbed ones
    p_w = p[u_w] detached;  y_w = argmax p_w;  c_w = max softmax p_w;  confident = c_w >= tau
    u_s1, u_s2 = two strong views of u_w (own intensity draws), each with its own CutMix partner and box B: inside B
                 the partner's strong view, and the partner's y_w and c_w as target and confidence
    (q_s1, q_s2) = f([u_s1; u_s2])                 one forward
    L_s  = (CE + Dice) / 2 of p[x] against y       (utils.losses.supervised_loss)
    L_fp = Dice(p_fp[u_w], y_w; c_w >= tau);  L_s1 = Dice(q_s1, y_1; c_1 >= tau);  L_s2 likewise
    L_u  = 0.5 L_fp + 0.25 L_s1 + 0.25 L_s2;     L = (L_s + L_u) / 2
Dice(., .; m) is the release's unlabelled loss: 1 - (2 sum(m p g) + s) / (sum(m p^2) + sum(m g^2) + s) over the whole
batch, per class (background included), averaged over the classes. README ("UniMatch") lists where this differs from
the release and why.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from dataloaders.strong_augment import CUTMIX_P, cutmix_box, strong_view
from methods.base import Forward, Method, StepOutput, label_grid
from utils.errors import DataError
from utils.losses import DICE_SMOOTH, supervised_loss
from utils.visualize import slice_grid
from utils.world_size import requested_world_size

CONF_THRESH = 0.95  # tau, the paper's and the release's conf_thresh


def confident_dice_loss(logits: torch.Tensor, targets: torch.Tensor, confident: torch.Tensor) -> torch.Tensor:
    """The release's DiceLoss with `ignore = conf < tau`: per class c (background included), over the confident voxels
    of the whole batch, 1 - (2 sum(p_c g_c) + s) / (sum(p_c^2) + sum(g_c^2) + s); the mean over the classes. No
    confident voxel gives 0 (and no gradient)."""
    probability = F.softmax(logits, dim=1)
    one_hot = F.one_hot(targets, logits.shape[1]).movedim(-1, 1).to(probability.dtype)
    keep = confident.unsqueeze(1).to(probability.dtype)
    dims = [0, *range(2, logits.dim())]  # all but the class axis
    intersection = (keep * probability * one_hot).sum(dims)
    denominator = (keep * probability**2).sum(dims) + (keep * one_hot**2).sum(dims)
    return (1.0 - (2.0 * intersection + DICE_SMOOTH) / (denominator + DICE_SMOOTH)).mean()


def cutmix_partners(n: int) -> torch.Tensor:
    """For each of n items another one of the batch: a cyclic shift by k ~ U{1..n-1} (no item is its own partner)."""
    shift = int(torch.randint(1, n, ()))
    return torch.roll(torch.arange(n), shift)


class UniMatch(Method):
    name = "unimatch"
    semi_supervised = True
    resume_must_match = {"conf_thresh": CONF_THRESH, "cutmix_p": CUTMIX_P}

    @staticmethod
    def add_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--conf_thresh",
            type=float,
            default=CONF_THRESH,
            help="tau: a pseudo-label counts where the weak view's max softmax >= tau (the paper's 0.95)",
        )
        p.add_argument(
            "--cutmix_p", type=float, default=CUTMIX_P, help="probability that a strong view gets a CutMix box"
        )

    @staticmethod
    def check_args(args: argparse.Namespace) -> None:
        if requested_world_size() > 1:
            raise DataError("UniMatch is single-process only (two forwards per DDP step, as its release, are untested)")
        if args.batch_size - args.labeled_bs < 2:
            raise DataError(
                f"--batch_size {args.batch_size} --labeled_bs {args.labeled_bs}: UniMatch mixes each unlabelled item "
                f"with another one of the batch, so a batch needs 2+ unlabelled items"
            )
        if not 0.0 <= args.conf_thresh <= 1.0 or not 0.0 <= args.cutmix_p <= 1.0:
            raise DataError(f"--conf_thresh {args.conf_thresh} and --cutmix_p {args.cutmix_p} must be in [0, 1]")

    def step(
        self, nets: dict[str, Forward], images: torch.Tensor, labels: torch.Tensor, labeled: slice, iteration: int
    ) -> StepOutput:
        tau, model = self.args.conf_thresh, nets["student"]
        n_l = labeled.stop
        u_w = images[n_l:]
        n_u = u_w.shape[0]
        if n_u < 2:
            raise DataError("UniMatch needs 2+ unlabelled items per process: raise --batch_size")

        # One forward of labelled + weak items with the fp stream, in train mode, as the release (its pseudo-labels
        # come from this forward, detached).
        logits, logits_fp = model.forward_fp(images)  # --precision applies (utils/precision.py Bf16Forward)
        logits_x, p_w, p_fp = logits[:n_l], logits[n_l:].detach(), logits_fp[n_l:]
        c_w, y_w = p_w.softmax(1).max(1)  # confidence and pseudo-label of each voxel
        confident_w = c_w >= tau

        # Two strong views: own intensity draws, own partner and box; the box region carries the partner's image,
        # pseudo-label and confidence together.
        views, targets, confidences, boxes = [], [], [], []
        for _ in range(2):
            strong = strong_view(u_w)
            partner = cutmix_partners(n_u).to(images.device)
            box = torch.stack([cutmix_box(tuple(u_w.shape[2:]), self.args.cutmix_p) for _ in range(n_u)])
            box = box.to(images.device)
            views.append(torch.where(box.unsqueeze(1), strong[partner], strong))
            targets.append(torch.where(box, y_w[partner], y_w))
            confidences.append(torch.where(box, c_w[partner], c_w))
            boxes.append(box)
        q_s1, q_s2 = model(torch.cat(views)).chunk(2)  # one forward of both strong views, as the release

        loss_x, parts = supervised_loss(logits_x, labels[labeled], self.args.dice)
        loss_fp = confident_dice_loss(p_fp, y_w, confident_w)
        loss_s1 = confident_dice_loss(q_s1, targets[0], confidences[0] >= tau)
        loss_s2 = confident_dice_loss(q_s2, targets[1], confidences[1] >= tau)
        loss_u = 0.5 * loss_fp + 0.25 * loss_s1 + 0.25 * loss_s2
        loss = (loss_x + loss_u) / 2

        # Diagnostics: the weak prediction on the labelled items, where the truth is known.
        weak_x = logits_x.detach()
        correct_x = weak_x.argmax(1) == labels[labeled]
        confident_x = weak_x.softmax(1).amax(1) >= tau
        scalars = {
            "loss/loss_seg": parts["loss_seg"],
            "loss/loss_seg_dice": parts["loss_seg_dice"],
            "loss/loss_x": loss_x,
            "loss/loss_s1": loss_s1,
            "loss/loss_s2": loss_s2,
            "loss/loss_fp": loss_fp,
            "loss/loss_u": loss_u,
            "unimatch/mask_ratio": confident_w.float().mean(),  # the release's mask_ratio: share of confident voxels
            "unimatch/pseudo_label_accuracy_labelled": correct_x.float().mean(),
            "unimatch/pseudo_label_accuracy_labelled_confident": (correct_x & confident_x).float().sum()
            / confident_x.float().sum().clamp_min(1),
            "unimatch/mask_ratio_labelled": confident_x.float().mean(),
            "unimatch/cutmix_share": torch.cat(boxes).float().mean(),
        }

        def images_to_log() -> dict[str, object]:
            k = self.args.num_classes
            return {
                "unimatch/weak_image": slice_grid(u_w[0, 0]),
                "unimatch/weak_pseudo_label": label_grid(y_w[0], k),
                "unimatch/strong_view_1": slice_grid(views[0][0, 0]),
                "unimatch/strong_view_1_target": label_grid(targets[0][0], k),
                "unimatch/strong_view_1_prediction": label_grid(q_s1[0].argmax(0), k),
            }

        return StepOutput(loss, scalars, images_to_log)
