"""A resampled copy of an LA-layout dataset (the CPU-scale "LA-half" benchmark of RESULTS.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
from scipy import ndimage
from tqdm import tqdm

from dataloaders.h5_cases import case_path, read_case, read_list


def resample_case(image: np.ndarray, label: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """The image by trilinear and the label by nearest-neighbour interpolation, each side scaled by `factor`."""
    return (
        ndimage.zoom(image, factor, order=1).astype(np.float32),
        ndimage.zoom(label, factor, order=0).astype(np.uint8),
    )


def resample_dataset(source: str | Path, destination: str | Path, factor: float = 0.5) -> int:
    """Write every case of train.list and test.list, resampled, in the same layout; returns the number of cases."""
    destination = Path(destination)
    ids = {split: read_list(source, split) for split in ("train", "test")}
    destination.mkdir(parents=True, exist_ok=True)
    for split in ids:
        shutil.copyfile(Path(source) / f"{split}.list", destination / f"{split}.list")
    cases = ids["train"] + ids["test"]
    for case_id in tqdm(cases, ncols=90, desc=f"resample x{factor}"):
        image, label = resample_case(*read_case(case_path(source, case_id)), factor)
        target = case_path(destination, case_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(target, "w") as f:
            f.create_dataset("image", data=image, compression="gzip")
            f.create_dataset("label", data=label, compression="gzip")
    return len(cases)
