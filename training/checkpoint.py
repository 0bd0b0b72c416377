"""The full training state for --resume (the checkpoint files themselves: utils/checkpoint.py)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dataloaders.sampler import TwoStreamBatchSampler
from utils.errors import DataError


def all_finite(module: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def training_state(
    iteration: int,
    batches_done: int,
    networks: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    sampler: TwoStreamBatchSampler,
    loader_generator: torch.Generator,
    args: dict,
    elapsed_s: float,
) -> dict:
    """Everything a resumed run needs to continue exactly where this one is (the lr and ramps follow the iteration):
    every network of the method by name, the optimiser, the sampler and the random states; the flags it ran with
    and its training time so far."""
    return {
        "args": args,
        "elapsed_s": elapsed_s,
        "iteration": iteration,
        "networks": {name: net.state_dict() for name, net in networks.items()},
        "optimizer": optimizer.state_dict(),
        "sampler": sampler.state_dict(batches_done),
        "rng_torch": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "rng_loader": loader_generator.get_state(),
    }


def saved_networks(state: dict) -> dict[str, dict]:
    """The networks of a training state by name; states saved before methods owned their networks held a
    "student" and a "teacher" ({} for methods without one)."""
    if "networks" in state:
        return state["networks"]
    return {"student": state["student"]} | ({"teacher": state["teacher"]} if state.get("teacher") else {})


def check_networks(state: dict, networks: dict[str, nn.Module], path: Path) -> None:
    """Refuse a state whose networks are not the method's (other names, or another architecture)."""
    saved = saved_networks(state)
    if list(saved) != list(networks):
        raise DataError(
            f"{path}: saved with the networks {', '.join(saved)}, this method has {', '.join(networks)}; resume "
            f"with the method that saved it or start a new --exp"
        )
    for name, net in networks.items():
        expected = {k: v.shape for k, v in net.state_dict().items()}
        if {k: v.shape for k, v in saved[name].items()} != expected:
            raise DataError(f"{path}: network {name} was saved with another architecture (--net); start a new --exp")


def restore_training_state(
    state: dict,
    networks: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    sampler: TwoStreamBatchSampler,
    loader_generator: torch.Generator,
) -> int:
    """Load a `training_state` into the run's objects; returns the iteration to continue from."""
    for name, weights in saved_networks(state).items():
        networks[name].load_state_dict(weights)
    optimizer.load_state_dict(state["optimizer"])
    sampler.load_state_dict(state["sampler"])
    torch.set_rng_state(state["rng_torch"])
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    loader_generator.set_state(state["rng_loader"])
    return int(state["iteration"])
