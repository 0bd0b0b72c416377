"""The two-stream batch sampler: labelled items first in every batch, then unlabelled ones (UA-MT's)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class TwoStreamBatchSampler(Sampler):
    """Batches of `labeled_bs` labelled and `batch_size - labeled_bs` unlabelled items.

    An epoch is one shuffled pass over the labelled indices (len(labeled) // labeled_bs batches); the unlabelled
    stream starts a fresh shuffle each epoch, chaining more shuffles only if an epoch needs more items than exist.
    Each item comes with a seed for its augmentation. With batch_size == labeled_bs it is a plain shuffled sampler.
    With `world_size` > 1 (multi-GPU), every rank draws the same global batches and yields its share: every
    world_size-th labelled and unlabelled item, starting at its `rank`.
    """

    def __init__(
        self,
        labeled: Sequence[int],
        unlabeled: Sequence[int],
        batch_size: int,
        labeled_bs: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        if labeled_bs % world_size or (batch_size - labeled_bs) % world_size:
            raise ValueError(
                f"labeled_bs={labeled_bs} and batch_size - labeled_bs={batch_size - labeled_bs} must be multiples of "
                f"the number of processes ({world_size})"
            )
        if not 0 < labeled_bs <= len(labeled):
            raise ValueError(f"labeled_bs={labeled_bs} must be in 1..{len(labeled)} (the number of labelled cases)")
        if labeled_bs > batch_size or (batch_size > labeled_bs and not unlabeled):
            raise ValueError(f"batch_size={batch_size} needs labeled_bs <= batch_size and unlabelled cases to fill it")
        self.labeled = np.asarray(labeled)
        self.unlabeled = np.asarray(unlabeled)
        self.labeled_bs = labeled_bs
        self.unlabeled_bs = batch_size - labeled_bs
        self.rng = np.random.default_rng(seed)
        self._epoch_start = self.rng.bit_generator.state
        self.skip = 0  # batches of the next epoch to draw but not yield (a resumed run's position)
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return len(self.labeled) // self.labeled_bs

    def state_dict(self, batches_done: int) -> dict:
        """The position after `batches_done` batches of the current epoch."""
        return {"epoch_start": self._epoch_start, "batches_done": batches_done}

    def load_state_dict(self, state: dict) -> None:
        """The next epoch replays the saved one from its start, skipping the batches already trained on."""
        self.rng.bit_generator.state = state["epoch_start"]
        self.skip = int(state["batches_done"])

    def _unlabeled_stream(self, count: int) -> np.ndarray:
        shuffles = [self.rng.permutation(self.unlabeled) for _ in range(-(-count // max(len(self.unlabeled), 1)))]
        return np.concatenate(shuffles)[:count] if shuffles else self.unlabeled[:0]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        self._epoch_start = self.rng.bit_generator.state
        skip, self.skip = self.skip, 0
        labeled = self.rng.permutation(self.labeled)
        unlabeled = self._unlabeled_stream(len(self) * self.unlabeled_bs)
        for b in range(len(self)):
            items = list(labeled[b * self.labeled_bs : (b + 1) * self.labeled_bs])
            items += list(unlabeled[b * self.unlabeled_bs : (b + 1) * self.unlabeled_bs])
            seeds = self.rng.integers(0, 2**31 - 1, size=len(items))
            if b >= skip:
                batch = [(int(i), int(s)) for i, s in zip(items, seeds)]
                share = slice(self.rank, None, self.world_size)
                yield batch[: self.labeled_bs][share] + batch[self.labeled_bs :][share]
