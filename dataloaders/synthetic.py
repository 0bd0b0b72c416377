"""A small synthetic LA-like dataset in the UA-MT layout, for the demo and the tests.

Each case is a noisy MR-like volume (smooth background texture + Rician noise) holding one bright labelled blob of
varied size and shape (an ellipsoid with a randomly perturbed surface) and smaller bright unlabelled ones,
normalised per volume as LA is. With K > 2 classes the labelled blob is split into nested shells labelled 1 (outer)
to K-1 (core), each inner shell a little brighter; K = 2 gives exactly the single-class output.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
from scipy import ndimage

from dataloaders.h5_cases import CASE_FILE, CASES_FOLDER


def _blob(grid: np.ndarray, shape: Sequence[int], rng: np.random.Generator, size: tuple[float, float]) -> np.ndarray:
    """Distance-like map that is < 1 inside an ellipsoid (an ellipse in 2D) with a randomly perturbed surface."""
    center = np.array([rng.uniform(0.3, 0.7) * s for s in shape], dtype=np.float32)
    radii = np.array([rng.uniform(*size) * s for s in shape], dtype=np.float32)
    per_axis = (-1, *[1] * len(shape))  # one value per axis, broadcast over the grid
    offset = (grid - center.reshape(per_axis)) / radii.reshape(per_axis)
    wobble = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=max(shape) / 8)
    wobble *= 0.35 / (np.abs(wobble).max() + 1e-6)
    return np.sqrt((offset**2).sum(0)) - wobble


# Shell c of a K-class blob is where the blob's distance map is below 1 - SHELL_DEPTH (c - 1) / (K - 1).
SHELL_DEPTH = 0.8
SHELL_CONTRAST = 15.0  # extra brightness of each inner shell, so its class has an intensity cue besides its shape


def synthetic_case(
    shape: Sequence[int], rng: np.random.Generator, num_classes: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """(image float32 z-scored, label uint8) of `shape` (3D, or 2D for image tests): one labelled blob among 1-3
    smaller unlabelled bright ones, so that brightness alone does not separate the target (as the other blood pools
    do in LA MRI). With K > 2 classes the blob holds nested shells 1..K-1; the random draws are those of K = 2, so
    only the shells' label and brightness differ."""
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    distance = _blob(grid, shape, rng, (0.15, 0.28))
    label = (distance < 1.0).astype(np.uint8)
    for c in range(2, num_classes):
        label[distance < 1.0 - SHELL_DEPTH * (c - 1) / (num_classes - 1)] = c
    distractors = np.zeros(shape, dtype=bool)
    for _ in range(int(rng.integers(1, 4))):
        distractors |= _blob(grid, shape, rng, (0.05, 0.1)) < 1.0
    bright = label.astype(bool) | distractors

    background = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=4) * 8
    signal = 40.0 + background + bright * rng.uniform(25.0, 45.0)
    if num_classes > 2:
        signal += SHELL_CONTRAST * np.maximum(label.astype(np.float32) - 1.0, 0.0)
    noise_sd = rng.uniform(10.0, 16.0)
    noisy = np.hypot(signal + rng.normal(0, noise_sd, shape), rng.normal(0, noise_sd, shape))  # Rician magnitude
    image = ((noisy - noisy.mean()) / noisy.std()).astype(np.float32)
    return image, label


def make_synthetic_la(
    root: str | Path,
    n_train: int = 20,
    n_test: int = 4,
    shape_range: tuple[Sequence[int], Sequence[int]] = ((56, 56, 40), (72, 72, 48)),
    seed: int = 0,
    num_classes: int = 2,
) -> Path:
    """Write `root/train.list`, `root/test.list` and one h5 per case; sides are drawn from `shape_range`; labels
    0..num_classes-1."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    ids = [f"SYN{i:03d}" for i in range(n_train + n_test)]
    low, high = shape_range
    for case_id in ids:
        shape = tuple(int(rng.integers(lo, hi + 1)) for lo, hi in zip(low, high))
        image, label = synthetic_case(shape, rng, num_classes)
        folder = root / CASES_FOLDER / case_id
        folder.mkdir(parents=True, exist_ok=True)
        with h5py.File(folder / CASE_FILE, "w") as h5:
            h5.create_dataset("image", data=image, compression="gzip")
            h5.create_dataset("label", data=label, compression="gzip")
    (root / "train.list").write_text("".join(f"{i}\n" for i in ids[:n_train]))
    (root / "test.list").write_text("".join(f"{i}\n" for i in ids[n_train:]))
    return root


def make_synthetic_nifti(
    root: str | Path,
    n_train: int = 20,
    n_test: int = 4,
    shape_range: tuple[Sequence[int], Sequence[int]] = ((56, 56, 40), (72, 72, 48)),
    seed: int = 0,
    num_classes: int = 2,
    spacing: Sequence[float] = (0.625, 0.625, 1.25),
) -> Path:
    """The same cases in the Decathlon / nnU-Net layout: imagesTr/<ID>_0000.nii.gz, labelsTr/<ID>.nii.gz, and
    imagesTs/, labelsTs/ for the test cases (no lists), with a non-trivial affine of `spacing`."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-30.0, 12.5, 7.0)
    for i in range(n_train + n_test):
        split = "Tr" if i < n_train else "Ts"
        shape = tuple(int(rng.integers(lo, hi + 1)) for lo, hi in zip(*shape_range))
        image, label = synthetic_case(shape, rng, num_classes)
        files = {f"images{split}/SYN{i:03d}_0000": image, f"labels{split}/SYN{i:03d}": label}
        for name, array in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(array, affine), root / f"{name}.nii.gz")
    return root


def main() -> None:
    from utils.cli import Parser  # here, not at the top: the generators themselves need nothing of utils/

    parser = Parser(description="Write a synthetic LA-like dataset in the UA-MT layout.")
    parser.add_argument("root", help="output folder, e.g. data/synthetic_LA")
    parser.add_argument("--n_train", type=int, default=20)
    parser.add_argument("--n_test", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_classes", type=int, default=2, help="K: background + K-1 nested shells of the blob")
    parser.add_argument("--format", choices=["h5", "nifti"], default="h5", help="the LA h5 layout or a NIfTI task")
    args = parser.parse_args()
    make = make_synthetic_la if args.format == "h5" else make_synthetic_nifti
    make(args.root, args.n_train, args.n_test, seed=args.seed, num_classes=args.num_classes)
    print(f"wrote {args.n_train} training and {args.n_test} test cases to {args.root}")


if __name__ == "__main__":
    main()
