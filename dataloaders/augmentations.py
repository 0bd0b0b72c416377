"""Training transforms: rot90 + flip or a left-right mirror, then a random crop to the patch (2D or 3D). Each takes
its own random generator, so an item's augmentation depends only on the seed the sampler gave it, whatever the number
of loader workers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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


def foreground_crop(
    image: np.ndarray, label: np.ndarray, patch_size: Sequence[int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A crop to `patch_size` that holds a foreground pixel drawn at random (nnU-Net's foreground oversampling): the
    patch is centred on it where the image allows, else shifted inside; `label` must hold foreground."""
    image, label = pad_to_patch(image, label, patch_size)
    points = np.argwhere(label > 0)
    centre = points[int(rng.integers(len(points)))]
    starts = [int(np.clip(c - p // 2, 0, s - p)) for c, s, p in zip(centre, image.shape, patch_size)]
    window = tuple(slice(a, a + p) for a, p in zip(starts, patch_size))
    return image[window], label[window]


class TrainTransform:
    """Random rot90 + flip, then a random crop to `patch_size` (UA-MT's RandomRotFlip, RandomCrop); 2D or 3D.

    `augment` (AUGMENTATIONS): "rot_flip" the release's rot90 + flip; "flip_lr" a left-right mirror only (axis 1);
    "none" the crop alone. `foreground` (--oversample_foreground): the share of crops of items with a foreground
    label that are made to hold one of its pixels (small lesions in large frames); 0, the default, draws exactly the
    release's crops.
    """

    def __init__(self, patch_size: Sequence[int], augment: str = "rot_flip", foreground: float = 0.0):
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment {augment!r}: choose one of {', '.join(AUGMENTATIONS)}")
        if not 0.0 <= foreground <= 1.0:
            raise ValueError(f"foreground {foreground}: a share, 0..1")
        self.patch_size = tuple(patch_size)
        self.augment = augment
        self.foreground = foreground

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if image.ndim != len(self.patch_size):  # zip would silently leave the extra axes uncropped
            raise ValueError(f"a {image.ndim}D image cannot be cropped to the {len(self.patch_size)}D patch")
        if self.augment == "rot_flip":
            image, label = random_rot_flip(image, label, rng)
        elif self.augment == "flip_lr":
            image, label = random_flip_columns(image, label, rng)
        # The draw only when asked for: at 0 the crops are the release's, draw for draw.
        if self.foreground and label.any() and rng.random() < self.foreground:
            return foreground_crop(image, label, self.patch_size, rng)
        return random_crop(image, label, self.patch_size, rng)
