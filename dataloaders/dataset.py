"""The training dataset every source uses: the cases of one list in memory, an item augmented by its own seed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dataloaders.augmentations import TrainTransform
from dataloaders.h5_cases import case_path, read_case


class SegmentationDataset(Dataset):
    """Cases of one list, read once into memory (labels checked to lie in 0..num_classes-1). An item key is an
    index, or (index, seed) to augment.

    `root` is an LA folder, or any `dataloaders.sources.Source` (NIfTI, 2D images); a case without a label (an
    unlabelled image) gets an all-background one, which no loss reads.
    """

    def __init__(self, root, ids: Sequence[str], transform: TrainTransform | None = None, num_classes: int = 2):
        self.ids = list(ids)
        self.transform = transform
        if isinstance(root, (str, Path)):
            cases = [read_case(case_path(root, case_id), num_classes) for case_id in self.ids]
        else:
            cases = [root.read(case_id) for case_id in self.ids]
        # Volumes are small (about 13 MB each): read and decompress them once, not on every step.
        self.cases = [(image, np.zeros(image.shape, np.uint8) if label is None else label) for image, label in cases]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        image, label = self.cases[index]
        if self.transform is not None:
            image, label = self.transform(image, label, np.random.default_rng(seed))
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)[None]),
            "label": torch.from_numpy(np.ascontiguousarray(label).astype(np.int64)),
        }
