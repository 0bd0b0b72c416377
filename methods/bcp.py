"""Bidirectional copy-paste (BCP; Bai et al., CVPR 2023), as its release computes it for LA
(DeepMed-Lab-ECNU/BCP, code/LA_BCP_train.py and code/utils/BCP_utils.py), in two stages of one run:

Stage 1 (t < --pre_iterations), labelled items only: a cube of 2/3 of the patch side is cut from one labelled image
and pasted into another, both ways; the student learns the mixed images with their mixed labels, L = (CE + Dice)/2.

Stage 2, self-training: teacher and student both start from stage 1's final weights. With M = 1 outside the cube and
0 inside, labelled images l_a, l_b, unlabelled u_a, u_b and the teacher's pseudo-labels p_a, p_b:
    x_in  = M * l_a + (1 - M) * u_a        (labelled outside, unlabelled inside)
    x_out = M * u_b + (1 - M) * l_b        (unlabelled outside, labelled inside)
    L = L_mix(f(x_in); y_a on M, p_a on 1 - M) + L_mix(f(x_out); p_b on M, y_b on 1 - M)
where L_mix weighs ground-truth voxels 1 and pseudo-labelled voxels --u_weight (0.5). The teacher is the EMA of the
student (alpha = 0.99, no ramp) and its pseudo-labels are the argmax, reduced to the largest connected component.
README ("BCP") lists where this differs from the release and why.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from methods.base import Forward, Method, NewNetwork, StepOutput, frozen_teacher, label_grid
from utils import ramps
from utils.components import largest_component
from utils.errors import DataError
from utils.mean_teacher import ema_average
from utils.visualize import slice_grid

MASK_RATIO = 2 / 3  # the cube's side over the patch side (the release's --mask_ratio)
DICE_SMOOTH = 1e-5  # the release's mask_DiceLoss


def cube_mask(shape: tuple[int, ...], ratio: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """M: ones with a zero cube (a square for 2D) of int(side * ratio) per axis at a random position, drawn from
    torch's generator as the release draws it: start in [0, side - cube) per axis, so the cube never touches the far
    border."""
    mask = torch.ones(shape, dtype=torch.long, device=device)
    box = []
    for side in shape:
        cube = int(side * ratio)
        start = int(torch.randint(0, max(side - cube, 1), (1,)))
        box.append(slice(start, start + cube))
    mask[tuple(box)] = 0
    return mask


def paste(outside: torch.Tensor, inside: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`outside` where M = 1, `inside` in the cube (M = 0); images (B, C, *S) and label maps (B, *S) alike."""
    return torch.where(mask.bool(), outside, inside)


def masked_dice_loss(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The release's mask_DiceLoss: 1 - mean over items n and classes c (background included) of
    (2 sum(m p g) + s) / (sum(m (p + g)) + s), with p the softmax, g one-hot, m the mask (all voxels if None)."""
    probability = F.softmax(logits, dim=1)
    one_hot = F.one_hot(labels, logits.shape[1]).movedim(-1, 1).to(probability.dtype)
    weight = torch.ones_like(probability[:, :1]) if mask is None else mask.to(probability.dtype).expand_as(labels)
    weight = weight.reshape(labels.shape[0], 1, -1)
    intersection = (probability * one_hot).flatten(2).mul(weight).sum(2)
    union = (probability + one_hot).flatten(2).mul(weight).sum(2)
    return 1.0 - ((2.0 * intersection + DICE_SMOOTH) / (union + DICE_SMOOTH)).mean()


def mix_loss(
    logits: torch.Tensor,
    labels_outside: torch.Tensor,
    labels_inside: torch.Tensor,
    mask: torch.Tensor,
    weight_outside: float,
    weight_inside: float,
) -> torch.Tensor:
    """L_mix = (Dice + CE) / 2 of a mixed image, each part of the image scored against its own labels and weighed:
    Dice = w_o D(M) + w_i D(1 - M), CE = w_o mean_M(ce) + w_i mean_{1-M}(ce) (the release's mix_loss)."""
    inside = 1 - mask
    dice = weight_outside * masked_dice_loss(logits, labels_outside, mask) + weight_inside * masked_dice_loss(
        logits, labels_inside, inside
    )
    m, i = mask.expand_as(labels_outside).float(), inside.expand_as(labels_inside).float()
    ce = weight_outside * (F.cross_entropy(logits, labels_outside, reduction="none") * m).sum() / (m.sum() + 1e-16)
    ce = ce + weight_inside * (F.cross_entropy(logits, labels_inside, reduction="none") * i).sum() / (i.sum() + 1e-16)
    return (dice + ce) / 2


class BCP(Method):
    name = "bcp"
    semi_supervised = True

    def __init__(self, args: argparse.Namespace, new_network: NewNetwork):
        super().__init__(args, new_network)  # the student
        # Replaced by the student's weights when stage 2 starts; training mode as the release's ema_model.train().
        self.kept["teacher"] = self.teacher = frozen_teacher(new_network)

    @staticmethod
    def add_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--pre_iterations",
            type=int,
            default=2000,
            help="stage 1 (copy-paste of labelled pairs) takes the first N of --max_iterations",
        )
        p.add_argument("--ema_decay", type=float, default=0.99, help="alpha of the teacher's EMA in stage 2")
        p.add_argument("--mask_ratio", type=float, default=MASK_RATIO, help="cube side / patch side")
        p.add_argument("--u_weight", type=float, default=0.5, help="loss weight of pseudo-labelled voxels")
        p.add_argument(
            "--pseudo_label_lcc",
            type=int,
            default=1,
            choices=[0, 1],
            help="1: keep the largest connected component of each pseudo-label (the release, LA)",
        )
        # The release's LA run: 8 labelled scans, batches of 4 + 4, 2000 + 15000 iterations, lr x0.1 every 2500.
        p.set_defaults(labelnum=8, batch_size=8, labeled_bs=4, max_iterations=17000, lr_step=2500)

    @staticmethod
    def check_args(args: argparse.Namespace) -> None:
        if args.labeled_bs % 2 or args.batch_size != 2 * args.labeled_bs:
            raise DataError(
                f"--batch_size {args.batch_size} --labeled_bs {args.labeled_bs}: BCP pairs labelled with unlabelled "
                f"items, so --labeled_bs must be even and half of --batch_size (e.g. 4 and 2)"
            )
        if not 0 < args.pre_iterations < args.max_iterations:
            raise DataError(f"--pre_iterations {args.pre_iterations} must be in 1..--max_iterations - 1")
        if getattr(args, "dice", "vnet") != "vnet":  # BCP's losses are the release's mask Dice, not supervised_loss
            raise DataError(f"--dice {args.dice}: BCP trains with its release's mask Dice; leave --dice vnet")

    def learning_rate(self, iteration: int) -> float:
        """Stage 1 at --base_lr throughout (the release); stage 2 restarts the step schedule."""
        pre = self.args.pre_iterations
        return (
            self.args.base_lr
            if iteration < pre
            else ramps.step_lr(iteration - pre, self.args.base_lr, self.args.lr_step)
        )

    def start_iteration(self, iteration: int, optimizer: torch.optim.Optimizer) -> None:
        if iteration == self.args.pre_iterations:  # stage 2: teacher = student = stage 1's final weights
            self.teacher.load_state_dict(self.trained["student"].state_dict())
            optimizer.state.clear()  # the release builds a new SGD: no momentum carried over

    def end_iteration(self, iteration: int) -> None:
        if iteration >= self.args.pre_iterations:
            ema_average(self.teacher, self.trained["student"], self.args.ema_decay)

    @torch.no_grad()
    def pseudo_labels(self, images: torch.Tensor) -> torch.Tensor:
        labels = self.forward_of(self.teacher)(images).argmax(1)
        if self.args.pseudo_label_lcc:
            labels = torch.from_numpy(np.stack([largest_component(x) for x in labels.cpu().numpy()])).to(labels)
        return labels

    def step(
        self, nets: dict[str, Forward], images: torch.Tensor, labels: torch.Tensor, labeled: slice, iteration: int
    ) -> StepOutput:
        model = nets["student"]
        n = labeled.stop // 2  # items per half: l_a, l_b, u_a, u_b
        if n == 0:
            raise DataError("BCP needs 2+ labelled items per process: raise --labeled_bs")
        l_a, l_b, y_a, y_b = images[:n], images[n : 2 * n], labels[:n], labels[n : 2 * n]
        if iteration < self.args.pre_iterations:
            mask = cube_mask(images.shape[2:], self.args.mask_ratio, images.device)
            mixed = torch.cat([paste(l_a, l_b, mask), paste(l_b, l_a, mask)])  # both ways
            target = torch.cat([paste(y_a, y_b, mask), paste(y_b, y_a, mask)])
            logits = model(mixed)
            ce, dice = F.cross_entropy(logits, target), masked_dice_loss(logits, target)
            loss = (ce + dice) / 2
            scalars = {"bcp/stage": 1, "loss/loss_ce": ce, "loss/loss_dice": dice}
        else:
            u_a, u_b = images[2 * n : 3 * n], images[3 * n :]
            p_a, p_b = self.pseudo_labels(u_a), self.pseudo_labels(u_b)  # two teacher forwards, as the release
            mask = cube_mask(images.shape[2:], self.args.mask_ratio, images.device)
            mixed = torch.cat([paste(l_a, u_a, mask), paste(u_b, l_b, mask)])
            target = torch.cat([paste(y_a, p_a, mask), paste(p_b, y_b, mask)])  # logged only
            logits = model(mixed)
            w = self.args.u_weight
            loss_l = mix_loss(logits[:n], y_a, p_a, mask, 1.0, w)
            loss_u = mix_loss(logits[n:], p_b, y_b, mask, w, 1.0)
            loss = loss_l + loss_u
            foreground = torch.cat([p_a, p_b]).gt(0).float().mean()
            scalars = {
                "bcp/stage": 2,
                "loss/loss_l": loss_l,
                "loss/loss_u": loss_u,
                "bcp/pseudo_foreground": foreground,
            }

        def images_to_log() -> dict[str, object]:
            k = self.args.num_classes
            return {
                "bcp/mixed_image": slice_grid(mixed[0, 0]),
                "bcp/mixed_label": label_grid(target[0], k),
                "bcp/prediction": label_grid(logits[0].argmax(0), k),
            }

        return StepOutput(loss, scalars, images_to_log)
