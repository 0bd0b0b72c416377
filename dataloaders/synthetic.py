"""A small synthetic LA-like dataset in the UA-MT layout, for the demo and the tests.

Each case is a noisy MR-like volume (smooth background texture + Rician-like noise) holding one bright blob of
varied size and shape (an ellipsoid with a randomly perturbed radius), normalised per volume as LA is.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
from scipy import ndimage

from dataloaders.la_heart import CASE_FILE, CASES_FOLDER


def synthetic_case(shape: Sequence[int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(image float32 z-scored, label uint8) with one blob."""
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    center = np.array([rng.uniform(0.35, 0.65) * s for s in shape], dtype=np.float32)
    radii = np.array([rng.uniform(0.15, 0.28) * s for s in shape], dtype=np.float32)
    offset = (grid - center[:, None, None, None]) / radii[:, None, None, None]
    distance = np.sqrt((offset**2).sum(0))
    # Perturb the surface with a smooth random field so that shapes vary beyond ellipsoids.
    wobble = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=max(shape) / 8)
    wobble *= 0.35 / (np.abs(wobble).max() + 1e-6)
    label = (distance < 1.0 + wobble).astype(np.uint8)

    background = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=4) * 8
    signal = 40.0 + background + label * rng.uniform(40.0, 70.0)
    noise_sd = rng.uniform(8.0, 14.0)
    noisy = np.hypot(signal + rng.normal(0, noise_sd, shape), rng.normal(0, noise_sd, shape))  # Rician magnitude
    image = ((noisy - noisy.mean()) / noisy.std()).astype(np.float32)
    return image, label


def make_synthetic_la(
    root: str | Path,
    n_train: int = 20,
    n_test: int = 4,
    shape_range: tuple[Sequence[int], Sequence[int]] = ((56, 56, 40), (72, 72, 48)),
    seed: int = 0,
) -> Path:
    """Write `root/train.list`, `root/test.list` and one h5 per case; sides are drawn from `shape_range`."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    ids = [f"SYN{i:03d}" for i in range(n_train + n_test)]
    low, high = shape_range
    for case_id in ids:
        shape = tuple(int(rng.integers(lo, hi + 1)) for lo, hi in zip(low, high))
        image, label = synthetic_case(shape, rng)
        folder = root / CASES_FOLDER / case_id
        folder.mkdir(parents=True, exist_ok=True)
        with h5py.File(folder / CASE_FILE, "w") as h5:
            h5.create_dataset("image", data=image, compression="gzip")
            h5.create_dataset("label", data=label, compression="gzip")
    (root / "train.list").write_text("".join(f"{i}\n" for i in ids[:n_train]))
    (root / "test.list").write_text("".join(f"{i}\n" for i in ids[n_train:]))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a synthetic LA-like dataset in the UA-MT layout.")
    parser.add_argument("root", help="output folder, e.g. data/synthetic_LA")
    parser.add_argument("--n_train", type=int, default=20)
    parser.add_argument("--n_test", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make_synthetic_la(args.root, args.n_train, args.n_test, seed=args.seed)
    print(f"wrote {args.n_train} training and {args.n_test} test cases to {args.root}")


if __name__ == "__main__":
    main()
