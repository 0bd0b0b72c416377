"""The LA 2018 dataset in the UA-MT layout, its training transforms and the two-stream batch sampler.

Layout of `root`: `train.list`, `test.list` (one case ID a line) and `2018LA_Seg_Training Set/<ID>/mri_norm2.h5`
holding 'image' (float32, normalised per volume) and 'label' (uint8).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from utils.errors import DataError

CASES_FOLDER = "2018LA_Seg_Training Set"
CASE_FILE = "mri_norm2.h5"


def read_list(root: str | Path, split: str) -> list[str]:
    """The IDs of `<root>/<split>.list`, one a line; duplicates are refused."""
    if not Path(root).is_dir():
        raise DataError(f"{root}: dataset folder not found; pass --root_path (e.g. data/LA, see the README)")
    path = Path(root) / f"{split}.list"
    if not path.is_file():
        raise DataError(f"{path}: list file not found; --root_path must hold train.list and test.list")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise DataError(f"{path}: IDs listed twice: {', '.join(duplicates[:5])}; list each case once")
    return ids


def case_path(root: str | Path, case_id: str) -> Path:
    return Path(root) / CASES_FOLDER / case_id / CASE_FILE


def _datasets(h5: h5py.File, path: Path) -> tuple[h5py.Dataset, h5py.Dataset]:
    """The 'image' and 'label' datasets, checked from the header alone: present, 3D, same shape, numeric."""
    found = {key: h5.get(key) for key in ("image", "label")}
    missing = [key for key, value in found.items() if not isinstance(value, h5py.Dataset)]
    if missing:
        raise DataError(f"{path}: no '{missing[0]}' dataset (has {sorted(h5.keys())}); store 'image' and 'label'")
    image, label = found["image"], found["label"]
    for key, data in found.items():
        if data.ndim != 3 or min(data.shape) == 0:
            raise DataError(f"{path}: '{key}' has shape {data.shape}; store one non-empty 3D volume (W, H, D)")
        if data.dtype.kind not in "biuf":
            raise DataError(f"{path}: '{key}' has dtype {data.dtype}; store numbers (float32 image, uint8 label)")
    if image.shape != label.shape:
        raise DataError(f"{path}: image shape {image.shape} differs from label shape {label.shape}; resample the label")
    return image, label


def _open(path: Path) -> h5py.File:
    if not path.is_file():
        raise DataError(f"{path}: case file not found; every listed ID needs <root>/{CASES_FOLDER}/<ID>/{CASE_FILE}")
    try:
        return h5py.File(path, "r")
    except Exception as error:  # h5py raises OSError, ValueError, ... for damaged files
        raise DataError(f"{path}: not a readable HDF5 file ({error}); restore or re-export it") from error


def inspect_case(path: str | Path) -> tuple[int, ...]:
    """The case's shape, from the file's header only (no voxel read)."""
    path = Path(path)
    with _open(path) as h5:
        return tuple(_datasets(h5, path)[0].shape)


def read_case(path: str | Path, num_classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(image float32, label uint8) of one h5 case, with every voxel checked: finite image, labels in 0..C-1."""
    path = Path(path)
    with _open(path) as h5:
        image_data, label_data = _datasets(h5, path)
        try:
            image, label = image_data[()], label_data[()]
        except Exception as error:  # truncated or corrupt chunks
            raise DataError(f"{path}: cannot read the voxels ({error}); restore or re-export the file") from error
    if not np.all(np.isfinite(image)):
        raise DataError(f"{path}: the image holds {np.count_nonzero(~np.isfinite(image))} NaN/Inf voxels; fix them")
    if label.dtype.kind == "f" and not np.all(np.isfinite(label) & (label == np.round(label))):
        raise DataError(f"{path}: the label holds non-integer values; store class indices 0..{num_classes - 1}")
    if label.min() < 0 or label.max() > num_classes - 1:
        raise DataError(
            f"{path}: label values {label.min():g}..{label.max():g} fall outside 0..{num_classes - 1}; store class "
            f"indices (e.g. 0/1, not 0/255)"
        )
    return image.astype(np.float32, copy=False), label.astype(np.uint8, copy=False)


# ---------------------------------------------------------------------------------------------------------------
# Training transforms. Each takes its own random generator, so an item's augmentation depends only on the seed the
# sampler gave it, whatever the number of loader workers.


def random_rot_flip(image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """rot90 by k in {0,1,2,3} in the axial plane (axes 0, 1), then a flip along axis 0 or 1 (always one).

    As in the UA-MT release; the composition is always one of the 4 reflections of the plane, never a rotation.
    A 2D (rows, columns) image is that plane itself.
    """
    k = int(rng.integers(0, 4))
    axis = int(rng.integers(0, 2))
    image = np.flip(np.rot90(image, k, axes=(0, 1)), axis=axis)
    label = np.flip(np.rot90(label, k, axes=(0, 1)), axis=axis)
    return image, label


def random_flip_columns(
    image: np.ndarray, label: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A left-right mirror (columns, axis 1) with probability 1/2, nothing else: for frames with an up and a down
    (an ultrasound fan's apex at the top), which rot90 and an up-down flip would turn over."""
    if int(rng.integers(0, 2)):
        image, label = np.flip(image, axis=1), np.flip(label, axis=1)
    return image, label


# --augment: what the training transform does before the random crop.
AUGMENTATIONS = ("rot_flip", "flip_lr", "none")


def pad_to_patch(image: np.ndarray, label: np.ndarray, patch_size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad as the UA-MT release does: if any side is not larger than the patch, every side gets
    max((patch - side) // 2 + 3, 0) voxels on both ends, so each side ends up larger than the patch."""
    if all(s > p for s, p in zip(label.shape, patch_size)):
        return image, label
    pads = [(max((p - s) // 2 + 3, 0),) * 2 for s, p in zip(label.shape, patch_size)]
    return np.pad(image, pads, mode="constant"), np.pad(label, pads, mode="constant")


def random_crop(
    image: np.ndarray, label: np.ndarray, patch_size: Sequence[int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    image, label = pad_to_patch(image, label, patch_size)
    # Start drawn from [0, side - patch) with the upper end excluded, as in the UA-MT release.
    starts = [int(rng.integers(0, s - p)) for s, p in zip(image.shape, patch_size)]
    window = tuple(slice(a, a + p) for a, p in zip(starts, patch_size))
    return image[window], label[window]


class TrainTransform:
    """Random rot90 + flip, then a random crop to `patch_size` (UA-MT's RandomRotFlip, RandomCrop); 2D or 3D.

    `augment` (AUGMENTATIONS): "rot_flip" the release's rot90 + flip; "flip_lr" a left-right mirror only (axis 1);
    "none" the crop alone.
    """

    def __init__(self, patch_size: Sequence[int], augment: str = "rot_flip"):
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment {augment!r}: choose one of {', '.join(AUGMENTATIONS)}")
        self.patch_size = tuple(patch_size)
        self.augment = augment

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if image.ndim != len(self.patch_size):  # zip would silently leave the extra axes uncropped
            raise ValueError(f"a {image.ndim}D image cannot be cropped to the {len(self.patch_size)}D patch")
        if self.augment == "rot_flip":
            image, label = random_rot_flip(image, label, rng)
        elif self.augment == "flip_lr":
            image, label = random_flip_columns(image, label, rng)
        return random_crop(image, label, self.patch_size, rng)


class LAHeart(Dataset):
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
