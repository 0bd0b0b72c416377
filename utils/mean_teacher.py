"""The teacher side of UA-MT (Yu et al., MICCAI 2019, Sec. 2.2): EMA weights, noisy inputs, MC-dropout uncertainty
and the uncertainty-masked consistency loss."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from utils.losses import masked_consistency, predictive_entropy, softmax_squared_error

TEACHER_NOISE_STD = 0.1
TEACHER_NOISE_CLIP = 0.2


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, ema_decay: float, step: int) -> None:
    """theta' <- alpha theta' + (1 - alpha) theta with alpha = min(1 - 1/(step + 1), ema_decay).

    The ramp makes the teacher the true average of the student's weights until the EMA is the better estimate
    (Tarvainen & Valpola, 2017). Only parameters are averaged; the teacher's BatchNorm buffers are its own, as in
    the UA-MT release (the teacher always runs with batch statistics).
    """
    ema_average(teacher, student, min(1.0 - 1.0 / (step + 1), ema_decay))


@torch.no_grad()
def ema_average(teacher: nn.Module, student: nn.Module, alpha: float) -> None:
    """theta' <- alpha theta' + (1 - alpha) theta over the parameters (BatchNorm buffers stay the teacher's)."""
    for teacher_param, student_param in zip(teacher.parameters(), student.parameters()):
        teacher_param.mul_(alpha).add_(student_param, alpha=1.0 - alpha)


def add_teacher_noise(inputs: torch.Tensor) -> torch.Tensor:
    """x + clamp(0.1 N(0, 1), -0.2, 0.2): the teacher's input perturbation."""
    noise = torch.randn_like(inputs) * TEACHER_NOISE_STD
    return inputs + noise.clamp(-TEACHER_NOISE_CLIP, TEACHER_NOISE_CLIP)


@torch.no_grad()
def mc_dropout_uncertainty(
    teacher: nn.Module, inputs: torch.Tensor, passes: int, passes_per_forward: int
) -> torch.Tensor:
    """U: entropy of the mean softmax over `passes` stochastic teacher passes (dropout on, fresh noise each).

    The passes run `passes_per_forward` at a time, stacked along the batch; the UA-MT release runs two at a time,
    which also fixes the batch that BatchNorm normalises over (2 x items). `inputs`: (B, C, *spatial), 2D or 3D.
    """
    if passes % passes_per_forward:
        raise ValueError(f"mc passes ({passes}) must be a multiple of passes per forward ({passes_per_forward})")
    repeated = inputs.repeat(passes_per_forward, *[1] * (inputs.dim() - 1))
    probability_sum = None
    for _ in range(passes // passes_per_forward):
        probability = torch.softmax(teacher(add_teacher_noise(repeated)), dim=1)
        summed = probability.reshape(passes_per_forward, *inputs.shape[:1], *probability.shape[1:]).sum(0)
        probability_sum = summed if probability_sum is None else probability_sum + summed
    return predictive_entropy(probability_sum / passes)


@dataclass
class ConsistencyResult:
    loss: torch.Tensor  # L_c before weighting by lambda(t)
    uncertainty: torch.Tensor  # U, one channel per item
    mask: torch.Tensor  # 1 where U < H(t)
    teacher_logits: torch.Tensor


def uncertainty_aware_consistency(
    student_logits: torch.Tensor,
    teacher: nn.Module,
    inputs: torch.Tensor,
    threshold: float,
    mc_passes: int = 8,
    passes_per_forward: int = 2,
) -> ConsistencyResult:
    """Eq. 1: the student-teacher squared softmax difference, kept where the teacher is certain (U < H(t)).

    `threshold` = math.inf keeps every voxel (the plain mean-teacher consistency).
    """
    with torch.no_grad():
        teacher_logits = teacher(add_teacher_noise(inputs))
        uncertainty = mc_dropout_uncertainty(teacher, inputs, mc_passes, passes_per_forward)
    mask = (uncertainty < threshold).float() if math.isfinite(threshold) else torch.ones_like(uncertainty)
    loss = masked_consistency(softmax_squared_error(student_logits, teacher_logits), mask)
    return ConsistencyResult(loss, uncertainty, mask, teacher_logits)


def hard_dice(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Dice of the argmax against `labels`, pooled over the items, averaged over the foreground classes 1..C-1
    (a class absent from both counts 1)."""
    prediction = logits.argmax(1)
    scores = []
    for c in range(1, logits.shape[1]):
        p, g = prediction == c, labels == c
        total = p.sum() + g.sum()
        scores.append(2.0 * (p & g).sum() / total if total else torch.ones((), device=logits.device))
    return torch.stack(scores).float().mean()


@torch.no_grad()
def side_forward(network: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The network's logits on `inputs` as training runs it (dropout on, batch statistics), leaving no trace: the
    random draws come from a forked generator and the BatchNorm running statistics are restored, so training
    continues exactly as without the call (a diagnostic, e.g. the teacher's Dice on the labelled items)."""
    buffers = {name: b.clone() for name, b in network.named_buffers()}
    devices = [inputs.device] if inputs.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        logits = network(inputs)
    for name, b in network.named_buffers():
        b.copy_(buffers[name])
    return logits
