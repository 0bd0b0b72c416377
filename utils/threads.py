"""--threads: how many CPU threads torch uses in a script's process.

torch starts one thread per core (or OMP_NUM_THREADS). Where another job shares the cores, threads of both jobs wait
on each other at every parallel operator: on 2 shared cores 2 threads per process ran 3-45x slower than alone, so a
process sharing the machine should take fewer threads (e.g. --threads 1 with one other job on 2 cores).
"""

from __future__ import annotations

import argparse

import torch

from utils.errors import DataError


def add_threads_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads of torch in this process (torch.set_num_threads); default: torch's own (OMP_NUM_THREADS "
        "when set, else one per core). Lower it when other jobs share the cores",
    )


def set_threads(threads: int | None) -> None:
    """torch.set_num_threads(threads), called before any work (None: leave torch's default)."""
    if threads is None:
        return
    if threads < 1:
        raise DataError(f"--threads {threads}: give 1 or more threads (or leave it out for torch's default)")
    torch.set_num_threads(threads)
