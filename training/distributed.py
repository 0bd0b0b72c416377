"""Multi-GPU training through torchrun: one process per GPU, DistributedDataParallel for the student.

`torchrun --nproc_per_node N train_uamt_unlabel.py ...` sets RANK, LOCAL_RANK and WORLD_SIZE; without them training
is the usual single process. `--batch_size` and `--labeled_bs` stay global: each rank trains on its share of every
batch (the sampler's rank share), so the schedule (iterations, lr steps, lambda(t), H(t)) is the single-process one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from utils.world_size import requested_world_size


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs and writes checkpoints."""
        return self.rank == 0


def start(device: str) -> tuple[Ranks, torch.device]:
    """Join the torchrun process group (nccl on GPUs, gloo on CPU) and pick this rank's device."""
    world_size = requested_world_size()
    if world_size == 1:
        return Ranks(), torch.device(device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if torch.device(device).type == "cuda":
        torch.cuda.set_device(local_rank)
        chosen, backend = torch.device("cuda", local_rank), "nccl"
    else:
        chosen, backend = torch.device(device), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Ranks(rank, world_size), chosen


def stop(ranks: Ranks) -> None:
    if ranks.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def any_rank(flags: list[bool], ranks: Ranks, device: torch.device) -> list[bool]:
    """Whether any rank raised each flag: every rank must stop (signal, non-finite loss) at the same iteration,
    or the others would wait forever in the next gradient all-reduce."""
    if ranks.world_size == 1:
        return flags
    tensor = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(v) for v in tensor.tolist()]


def barrier(ranks: Ranks) -> None:
    if ranks.world_size > 1:
        dist.barrier()


def same_on_all_ranks(module: torch.nn.Module, ranks: Ranks, device: torch.device) -> bool:
    """Whether every rank holds exactly the same parameters (the EMA teacher must not drift apart)."""
    if ranks.world_size == 1:
        return True
    local = torch.cat([p.detach().reshape(-1).double() for p in module.parameters()]).to(device)
    lowest, highest = local.clone(), local.clone()
    dist.all_reduce(lowest, op=dist.ReduceOp.MIN)
    dist.all_reduce(highest, op=dist.ReduceOp.MAX)
    return bool(torch.equal(lowest, highest))
