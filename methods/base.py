"""The interface between the training loop and a method.

A method owns its networks: `self.trained` (name -> network: each goes to the optimiser, to DDP and to the
checkpoint) and `self.kept` (e.g. EMA teachers: checkpoint and resume only, never the optimiser); `evaluated` names
the network whose weights iter_<N>.pth holds, the one test_LA.py and predict.py evaluate.

Per iteration the loop calls `start_iteration` (a method may switch stage there), sets the optimiser's lr to
`learning_rate(t)`, calls `step` on the batch with a forward for each trained network, checks the loss, steps the
optimiser and calls `end_iteration` (e.g. the teacher's EMA update). Data, devices, DDP, signals, checkpoints, resume
and logging stay in the loop, which knows no method and no number of networks.

A method is found by its `name` (methods/__init__.py reads every module of the package): a new method is one module
and its test. How the results tables name and schedule its runs is theirs (benchmarks/arenas.py).
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


Forward = Callable[[torch.Tensor], torch.Tensor]
NewNetwork = Callable[[], nn.Module]


class Method:
    """One training method. Subclasses set `name` (run.json's method, the results tables' group; `train.py --method
    NAME`) and implement `step`. The base builds the networks of `trained_names` into `trained`; a method
    adds what it only keeps (e.g. an EMA teacher) to `kept` in its `__init__`."""

    name: ClassVar[str] = ""
    semi_supervised: ClassVar[bool] = False  # batches hold --labeled_bs labelled items, then unlabelled ones
    # The method's flags a resumed run must keep (it refuses a state saved with another value), each with the value
    # of states saved before the flag existed.
    resume_must_match: ClassVar[dict[str, object]] = {}
    # The networks it trains, built in this order from the seeded generator (their initial weights follow it), and
    # the one iter_<N>.pth holds for test_LA.py and predict.py.
    trained_names: ClassVar[tuple[str, ...]] = ("student",)
    evaluated: ClassVar[str] = "student"

    def __init__(self, args: argparse.Namespace, new_network: NewNetwork):
        self.args = args
        self.trained: dict[str, nn.Module] = {name: new_network() for name in self.trained_names}
        self.kept: dict[str, nn.Module] = {}
        # How to call a network the method runs itself (e.g. a teacher): the loop sets it to run forwards under
        # --precision (bf16 autocast, float32 logits out); fp32 calls the network itself.
        self.forward_of: Callable[[nn.Module], Forward] = lambda net: net

    @property
    def networks(self) -> dict[str, nn.Module]:
        """Every network of the method, trained ones first: what the checkpoint holds."""
        return self.trained | self.kept

    @staticmethod
    def add_flags(parser: argparse.ArgumentParser) -> None:
        """The method's own flags (the loop's are in training/options.py)."""

    @staticmethod
    def resolve(args: argparse.Namespace) -> dict[str, object]:
        """The method's flags whose default depends on the data or the processes (args.patch_size is resolved: 2
        sides for images, 3 for volumes), as {flag: value}; read, never written (training/config.py)."""
        return {}

    @staticmethod
    def check_args(args: argparse.Namespace) -> None:
        """Refuse flags the method cannot train with (raise DataError with one line), on the resolved flags."""

    def run_name(self) -> str:
        """The method as run.json and the results tables name it (an ablation may add a suffix)."""
        return self.name

    def parameter_groups(self) -> list[dict[str, object]]:
        """The optimiser's parameter groups: by default one, every trained network's parameters in order."""
        return [{"params": [p for net in self.trained.values() for p in net.parameters()]}]

    def learning_rate(self, iteration: int) -> float:
        """lr for the 0-based iteration t: x0.1 every --lr_step iterations (the release's schedule)."""
        return ramps.step_lr(iteration, self.args.base_lr, self.args.lr_step)

    def start_iteration(self, iteration: int, optimizer: torch.optim.Optimizer) -> None:
        """Before the step of iteration t (e.g. a stage change)."""

    def step(
        self, nets: dict[str, Forward], images: torch.Tensor, labels: torch.Tensor, labeled: slice, iteration: int
    ) -> StepOutput:
        """The loss of one batch. `nets` holds a forward of each trained network (DDP and --precision applied: call
        them, never update them), `labeled` the labelled items of this process's share of the batch; the labels of
        the other items are placeholders."""
        raise NotImplementedError

    def end_iteration(self, iteration: int) -> None:
        """After the optimiser step of iteration t (e.g. the teacher's EMA update)."""


def add_consistency_flags(p: argparse.ArgumentParser, weight: float, rampup: float, what: str) -> None:
    """lambda(t) = --consistency * r(floor(t / --rampup_epoch_iters) / --consistency_rampup): the UA-MT release's
    ramp, counted in "epochs" of 150 iterations; `what` says what lambda weighs."""
    p.add_argument("--consistency", type=float, default=weight, help=f"maximal weight lambda of {what}")
    p.add_argument(
        "--consistency_rampup",
        type=float,
        default=rampup,
        help="lambda(t)'s sigmoid ramp in ramp-up epochs; 0: lambda constant from the start",
    )
    p.add_argument("--rampup_epoch_iters", type=int, default=150, help="iterations per ramp-up epoch")


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
