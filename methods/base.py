"""The interface between the training loop and a method.

Per iteration the loop calls `start_iteration` (a method may switch stage there), sets the optimiser's lr to
`learning_rate(t)`, calls `step` on the batch, checks the loss, steps the optimiser and calls `end_iteration` (e.g.
the teacher's EMA update). Data, devices, DDP, signals, checkpoints, resume and logging stay in the loop.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from utils import ramps
from utils.visualize import slice_grid


@dataclass
class StepOutput:
    loss: torch.Tensor  # what the optimiser minimises
    scalars: dict[str, float | torch.Tensor] = field(default_factory=dict)  # logged every iteration
    # TensorBoard images, built only on the iterations that log them: tag -> (3, H, W) grid.
    images: Callable[[], dict[str, np.ndarray]] | None = None


class Method:
    """One training method. Subclasses set `name` (run.json's method, the results tables' group) and implement
    `step`; a method with a teacher sets `self.teacher` (saved and resumed with the student)."""

    name: ClassVar[str] = ""
    semi_supervised: ClassVar[bool] = False  # batches hold --labeled_bs labelled items, then unlabelled ones
    # The method's flags a resumed run must keep (it refuses a state saved with another value), each with the value
    # of states saved before the flag existed.
    resume_must_match: ClassVar[dict[str, object]] = {}

    def __init__(self, args: argparse.Namespace, new_network: Callable[[], nn.Module]):
        self.args = args
        self.teacher: nn.Module | None = None
        # How to call a network of the method (e.g. the teacher): the loop sets it to run forwards under
        # --precision (bf16 autocast, float32 logits out); fp32 calls the network itself.
        self.forward_of: Callable[[nn.Module], Callable[[torch.Tensor], torch.Tensor]] = lambda net: net

    @staticmethod
    def add_flags(parser: argparse.ArgumentParser) -> None:
        """The method's own flags (the loop's are in training/options.py)."""

    @staticmethod
    def check_args(args: argparse.Namespace) -> None:
        """Refuse flags the method cannot train with (raise DataError with one line); resolve defaults that depend
        on the data (args.patch_size is set: 2 sides for images, 3 for volumes)."""

    def run_name(self) -> str:
        """The method as run.json and the results tables name it (an ablation may add a suffix)."""
        return self.name

    def learning_rate(self, iteration: int) -> float:
        """lr for the 0-based iteration t: x0.1 every --lr_step iterations (the release's schedule)."""
        return ramps.step_lr(iteration, self.args.base_lr, self.args.lr_step)

    def start_iteration(self, iteration: int, student: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Before the step of iteration t (e.g. a stage change)."""

    def step(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, labeled: slice, iteration: int
    ) -> StepOutput:
        """The loss of one batch. `model` is the student's forward (DDP and --precision applied: call it, never
        update it), `labeled` the labelled items of this process's share of the batch; the labels of the other items
        are placeholders."""
        raise NotImplementedError

    def end_iteration(self, student: nn.Module, iteration: int) -> None:
        """After the optimiser step of iteration t (e.g. the teacher's EMA update)."""


def frozen_teacher(new_network: Callable[[], nn.Module]) -> nn.Module:
    """A network that only the EMA updates (no gradients), run in training mode (dropout on, BatchNorm batch
    statistics), as the UA-MT and BCP releases run their teachers."""
    teacher = new_network()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.train()


def label_grid(labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """A label map's slices with the last class white."""
    return slice_grid(labels, False, num_classes - 1)
