"""Echocardiography-like 2D frames for the tests and the 2D example: a speckled ultrasound sector (the cone a phased
array images) with dark cavities, bright walls and one small bright moving mass (the 'vegetation'). Two classes: the
mass is the label; K = 3..5 classes: 1 the left cavity, 2 its wall (a 'myocardium'), 3 the right cavity (an
'atrium'), 4 the mass, as many as K - 1 takes (CAMUS-like maps for K = 4).

    <root>/images/<ID>.png   8-bit grey frames        <root>/masks/<ID>.png   0/255 (K = 2) or class indices, only for
    <root>/train.list, <root>/test.list                                         the labelled frames
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage


def echo_frame(shape: Sequence[int], rng: np.random.Generator, num_classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(frame uint8, mask uint8 of class indices 0..K-1) of one synthetic echo frame of `shape` (rows, columns)."""
    if not 2 <= num_classes <= 5:
        raise ValueError(f"num_classes {num_classes}: the generated frames have 2 to 5 classes")
    rows, cols = shape
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    apex = np.array([0.02 * rows, cols / 2])
    radius = np.hypot(y - apex[0], x - apex[1])
    angle = np.arctan2(x - apex[1], y - apex[0])
    sector = (radius < 0.95 * rows) & (np.abs(angle) < 0.6)
    # Tissue with two dark chambers separated by a bright wall.
    tissue = np.full(shape, 0.55, np.float32)
    chambers = []
    for cy, cx, ry, rx in [(0.45, 0.42, 0.22, 0.12), (0.5, 0.6, 0.2, 0.1)]:
        chamber = ((y / rows - cy) / ry) ** 2 + ((x / cols - cx) / rx) ** 2 < 1
        tissue[chamber] = 0.12
        chambers.append(chamber & sector)
    # The target: a small bright irregular mass on a chamber wall.
    cy, cx = rng.uniform(0.35, 0.6) * rows, rng.uniform(0.45, 0.55) * cols
    size = rng.uniform(0.04, 0.08) * rows
    wobble = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=size / 2)
    wobble *= 0.3 / (np.abs(wobble).max() + 1e-6)
    mask = (np.hypot(y - cy, (x - cx) * 0.8) / size - wobble < 1) & sector
    tissue[mask] = 0.9
    # Multiplicative speckle, blurred along the beam, and depth attenuation.
    speckle = ndimage.gaussian_filter(rng.rayleigh(1.0, shape).astype(np.float32), sigma=(1.5, 0.7))
    frame = tissue * speckle * np.exp(-radius / (1.5 * rows)) * sector
    frame = np.clip(frame / np.percentile(frame[sector], 99.5), 0, 1)
    if num_classes == 2:
        return (frame * 255).astype(np.uint8), mask.astype(np.uint8)
    # K > 2: a wall 4 % of the rows thick around the left cavity; later structures are drawn over earlier ones.
    wall = ndimage.binary_dilation(chambers[0], iterations=max(1, round(0.04 * rows))) & ~chambers[0] & sector
    label = np.zeros(shape, np.uint8)
    for c, region in enumerate([chambers[0], wall, chambers[1] & ~wall, mask][: num_classes - 1], 1):
        label[region] = c
    return (frame * 255).astype(np.uint8), label


def make_synthetic_echo(
    root: str | Path, n_train: int = 12, n_test: int = 4, labelled: int = 4, shape: Sequence[int] = (120, 160),
    seed: int = 0, num_classes: int = 2, frames_per_patient: int = 0,
) -> Path:  # fmt: skip
    """Write `n_train` + `n_test` frames; masks for the first `labelled` training frames and every test frame (the
    other training frames are unlabelled: no mask file at all). IDs are frame_000, ...; with `frames_per_patient` F
    they carry a patient as CAMUS's do, patient0001_0 .. patient0001_<F-1>, patient0002_0, ... (for --group_by), and
    both lists take whole patients."""
    if frames_per_patient and (n_train % frames_per_patient or n_test % frames_per_patient):
        raise ValueError(f"n_train {n_train} and n_test {n_test} must be multiples of {frames_per_patient} frames")
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    if frames_per_patient:
        ids = [f"patient{i // frames_per_patient + 1:04d}_{i % frames_per_patient}" for i in range(n_train + n_test)]
    else:
        ids = [f"frame_{i:03d}" for i in range(n_train + n_test)]
    for i, case_id in enumerate(ids):
        frame, mask = echo_frame(shape, rng, num_classes)
        Image.fromarray(frame).save(root / "images" / f"{case_id}.png")
        if i < labelled or i >= n_train:
            Image.fromarray(mask * 255 if num_classes == 2 else mask).save(root / "masks" / f"{case_id}.png")
    (root / "train.list").write_text("\n".join(ids[:n_train]) + "\n")
    (root / "test.list").write_text("\n".join(ids[n_train:]) + "\n")
    return root


if __name__ == "__main__":
    from utils.cli import Parser  # here, not at the top: the generators themselves need nothing of utils/

    parser = Parser(description=__doc__)
    parser.add_argument("--out", default="data/synthetic_echo")
    parser.add_argument("--n_train", type=int, default=40)
    parser.add_argument("--n_test", type=int, default=10)
    parser.add_argument("--labelled", type=int, default=8)
    parser.add_argument("--shape", type=int, nargs=2, default=[240, 320], metavar=("ROWS", "COLUMNS"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_classes", type=int, default=2, help="2: the mass; 4: cavity, wall, atrium (CAMUS-like)")
    parser.add_argument("--frames_per_patient", type=int, default=0, help="F > 0: IDs patientNNNN_<0..F-1>")
    a = parser.parse_args()
    print(make_synthetic_echo(a.out, a.n_train, a.n_test, a.labelled, a.shape, a.seed, a.num_classes,
                              a.frames_per_patient))  # fmt: skip
