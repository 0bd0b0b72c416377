"""Checkpoint files: written atomically, read with weights_only=True (training writes them, testing and predicting
read them; the training state for --resume is training/checkpoint.py's)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from utils.errors import DataError


def save_atomic(obj: object, path: Path) -> None:
    """Write to a temporary file and rename, so a kill while saving leaves any earlier file intact."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def saved_iterations(run: Path) -> list[int]:
    """The N of each iter_<N>.pth in the run folder, ascending."""
    numbers = (p.name[len("iter_") : -len(".pth")] for p in run.glob("iter_*.pth"))
    return sorted(int(n) for n in numbers if n.isdigit())


def load_checkpoint(path: Path) -> dict:
    """Unpickle with weights_only=True: a checkpoint can carry code, and such a file is refused, not run."""
    if not path.is_file():
        saved = saved_iterations(path.parent) if path.parent.is_dir() else []
        there = f"; {path.parent}/ holds " + ", ".join(f"iter_{n}.pth" for n in saved) if saved else ""
        raise DataError(f"{path}: checkpoint not found{there}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError for code, RuntimeError/EOFError for damaged files
        raise DataError(
            f"{path}: refused: not a plain tensor checkpoint ({str(error).splitlines()[0][:160]}); "
            f"load only checkpoints written by this project's training scripts"
        ) from error
    if not isinstance(state, dict):
        raise DataError(f"{path}: holds a {type(state).__name__}, not a dict; pass a checkpoint of this project")
    return state
