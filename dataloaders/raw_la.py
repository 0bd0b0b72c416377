"""The raw LA 2018 challenge data (`<raw>/<ID>/lgemri.nrrd` + `laendo.nrrd`) converted to the UA-MT h5 layout.

What the UA-MT reference preprocessing (`code/dataloaders/la_heart_processing.py` of github.com/yulequan/UA-MT)
computes, per case:
  1. label = (laendo == 255) as uint8;
  2. the label's bounding box (min and max voxel index per axis), widened on each side by half the shortfall to the
     output size 112x112x80, p = max(size - (max - min), 0) // 2, plus a random margin drawn from [10, 20) in x and y
     and [5, 10) in z, then clipped to the volume (the upper end used as an exclusive slice end);
  3. image = (image - mean) / std over the WHOLE volume (before any crop), as float32;
  4. image and label cropped in x and y only: the reference computes the z range but slices `[minx:maxx, miny:maxy]`,
     so every case keeps all its slices. We do the same.
  5. 'image' and 'label' written with gzip compression.

Differences here: the margins come from a generator seeded by (seed, case ID), not NumPy's unseeded global state, so a
case's crop is reproducible and independent of which other cases are converted and in which order; masks stored as
0/1 are accepted as well as 0/255; the voxel spacing is kept as the file attribute `spacing` and the crop's offset in
the raw volume as `crop_start`; bad input ends in a DataError naming the file and the fix.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import h5py
import nrrd
import numpy as np
from tqdm import tqdm

from dataloaders.h5_cases import CASE_FILE, CASES_FOLDER
from utils.errors import DataError

RAW_IMAGE = "lgemri.nrrd"
RAW_LABEL = "laendo.nrrd"
OUTPUT_SIZE = (112, 112, 80)
# Random margin per side, [low, high) as np.random.randint(low, high) in the reference.
MARGINS = ((10, 20), (10, 20), (5, 10))
# The reference crops x and y only (see the module docstring).
CROPPED_AXES = (0, 1)


def case_rng(seed: int, case_id: str) -> np.random.Generator:
    """The generator of one case's margins: seeded from `seed` and a stable hash of the ID (crc32, not Python's
    salted hash()), so it does not depend on the other cases or on the order of conversion."""
    return np.random.default_rng([seed, zlib.crc32(case_id.encode())])


def crop_box(
    label: np.ndarray, output_size: Sequence[int], rng: np.random.Generator, margins: Sequence[Sequence[int]] = MARGINS
) -> tuple[slice, ...]:
    """The widened bounding box of the mask's foreground, one slice per axis (as the reference computes it).

    Per axis: p = max(size - (max - min), 0) // 2 with min, max the first and last foreground index; start =
    max(min - margin - p, 0), stop = min(max + margin' + p, side), margins drawn in the order low then high side, axis
    by axis. Unless clipped by the volume, the box is at least `output_size` (with margins >= 1) and holds the whole
    mask; near a border it can be smaller (the reference does not shift it back inside).
    """
    foreground = np.nonzero(label)
    if len(foreground[0]) == 0:
        raise ValueError("crop_box needs a mask with at least one foreground voxel")
    box = []
    for axis, (size, (low, high)) in enumerate(zip(output_size, margins)):
        first, last = int(foreground[axis].min()), int(foreground[axis].max())
        pad = max(size - (last - first), 0) // 2
        start = max(first - int(rng.integers(low, high)) - pad, 0)
        stop = min(last + int(rng.integers(low, high)) + pad, label.shape[axis])
        box.append(slice(start, stop))
    return tuple(box)


def read_spacing(header: dict, path: Path) -> tuple[float, float, float]:
    """Voxel size per axis from an nrrd header: the lengths of the 'space directions' vectors, else 'spacings'."""
    if header.get("space directions") is not None:
        spacing = np.linalg.norm(np.asarray(header["space directions"], dtype=np.float64), axis=1)
    elif header.get("spacings") is not None:
        spacing = np.asarray(header["spacings"], dtype=np.float64)
    else:
        raise DataError(f"{path}: no voxel spacing in the header; add 'space directions' or 'spacings' (3 values)")
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing) & (spacing > 0)):
        raise DataError(f"{path}: voxel spacing {spacing.tolist()} is not 3 positive numbers; fix the nrrd header")
    return tuple(float(s) for s in spacing)


def _read_nrrd(path: Path) -> tuple[np.ndarray, dict]:
    if not path.is_file():
        raise DataError(f"{path}: file not found; every case folder needs {RAW_IMAGE} and {RAW_LABEL}")
    try:
        return nrrd.read(str(path))
    except Exception as error:  # pynrrd raises NRRDError, ValueError, OSError, ... for damaged files
        raise DataError(f"{path}: not a readable NRRD file ({error}); restore or re-download it") from error


def foreground_mask(label: np.ndarray, path: Path) -> np.ndarray:
    """The left atrium as a bool mask: values 255 (the challenge's encoding) or 1 (an already binarised copy)."""
    is255, is1 = label == 255, label == 1
    other = ~(is255 | is1 | (label == 0))
    if other.any():
        values = np.unique(label[other])[:5].tolist()
        raise DataError(f"{path}: mask values {values} besides 0/255; store the atrium as 255 (or 1) and the rest as 0")
    if is255.any() and is1.any():
        raise DataError(f"{path}: mask holds both 1 and 255; store the atrium as 255 (or 1) only, the rest as 0")
    mask = is255 if is255.any() else is1
    if not mask.any():
        raise DataError(
            f"{path}: empty mask (no voxel is 255 or 1); use the case's atrium mask or leave the case out (--ids)"
        )
    return mask


def zscore(image: np.ndarray, path: Path) -> np.ndarray:
    """(image - mean) / std over the whole volume (population std), computed in float64 and stored as float32."""
    image = image.astype(np.float64)
    if not np.all(np.isfinite(image)):
        raise DataError(f"{path}: the image holds NaN/Inf voxels; restore or re-download it")
    std = image.std()
    if std == 0:
        raise DataError(f"{path}: the image is constant; restore or re-download it")
    return ((image - image.mean()) / std).astype(np.float32)


def convert_case(
    raw_case_dir: str | Path,
    out_case_dir: str | Path,
    rng: np.random.Generator,
    output_size: Sequence[int] = OUTPUT_SIZE,
) -> tuple[int, int, int]:
    """Write `<out_case_dir>/mri_norm2.h5` from `<raw_case_dir>/lgemri.nrrd` and `laendo.nrrd`; returns its shape.

    The file holds 'image' (float32, z-scored over the whole raw volume), 'label' (uint8 0/1), and the attributes
    `spacing` (voxel size per axis, from the image's header) and `crop_start` (the crop's offset in the raw volume).
    """
    raw_case_dir, out_case_dir = Path(raw_case_dir), Path(out_case_dir)
    image_path, label_path = raw_case_dir / RAW_IMAGE, raw_case_dir / RAW_LABEL
    image, image_header = _read_nrrd(image_path)
    raw_label, label_header = _read_nrrd(label_path)
    if image.ndim != 3:
        raise DataError(f"{image_path}: shape {image.shape} is not 3D; store one MRI volume per case")
    if image.shape != raw_label.shape:
        raise DataError(
            f"{label_path}: shape {raw_label.shape} differs from {image_path.name}'s {image.shape}; use the mask "
            f"drawn on this image (both 3D, same grid)"
        )
    spacing = read_spacing(image_header, image_path)
    if ("space directions" in label_header or "spacings" in label_header) and not np.allclose(
        read_spacing(label_header, label_path), spacing, rtol=1e-3
    ):
        raise DataError(f"{label_path}: voxel spacing differs from {image_path.name}'s; use the mask of this image")
    label = foreground_mask(raw_label, label_path).astype(np.uint8)
    box = crop_box(label, output_size, rng)
    # Normalise before cropping, over the whole volume, as the reference does.
    image = zscore(image, image_path)
    window = tuple(box[axis] if axis in CROPPED_AXES else slice(None) for axis in range(3))
    image, label = image[window], label[window]

    out_case_dir.mkdir(parents=True, exist_ok=True)
    target = out_case_dir / CASE_FILE
    partial = target.with_name(target.name + ".partial")
    # Written aside and renamed, so an interrupted run never leaves a half-written case behind.
    with h5py.File(partial, "w") as h5:
        h5.create_dataset("image", data=np.ascontiguousarray(image), compression="gzip")
        h5.create_dataset("label", data=np.ascontiguousarray(label), compression="gzip")
        h5.attrs["spacing"] = np.asarray(spacing, dtype=np.float64)
        h5.attrs["crop_start"] = np.asarray([w.start or 0 for w in window], dtype=np.int64)
    os.replace(partial, target)
    return tuple(int(s) for s in image.shape)


def list_cases(raw_path: str | Path) -> list[str]:
    """The case IDs of a raw folder: its sub-folders, sorted."""
    raw_path = Path(raw_path)
    if not raw_path.is_dir():
        raise DataError(f"{raw_path}: raw folder not found; pass --raw_path <folder holding <ID>/{RAW_IMAGE}>")
    ids = sorted(p.name for p in raw_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not ids:
        raise DataError(f"{raw_path}: no case folders; --raw_path must hold one folder per case with {RAW_IMAGE}")
    return ids


def split_ids(
    ids: Sequence[str], seed: int, test_count: int, test_ids: Sequence[str] | None = None
) -> tuple[list[str], list[str]]:
    """(train, test). With `test_ids` (e.g. the published test.list), test = those of them among `ids`, in their
    order; otherwise test = the first `test_count` of a permutation of the sorted IDs drawn with `seed`. Train = every
    other ID, sorted (the published train.list is sorted too)."""
    ids = sorted(ids)
    if test_ids is not None:
        present = set(ids)
        test = [i for i in test_ids if i in present]
    else:
        if not 0 <= test_count < len(ids):
            raise DataError(f"--test_count {test_count}: choose 0..{len(ids) - 1} for {len(ids)} cases")
        test = sorted(np.random.default_rng(seed).permutation(ids)[:test_count].tolist())
    held_out = set(test)
    return [i for i in ids if i not in held_out], test


def read_id_file(path: str | Path, known: Sequence[str]) -> list[str]:
    """The IDs of a list file (one a line), each of which must be a case of the raw folder."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: list file not found; pass an existing --test_list")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise DataError(f"{path}: {twice[0]} is listed twice; list each case once")
    known = set(known)
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise DataError(f"{path}: IDs not in the raw folder: {', '.join(unknown[:5])}; fix the list or --raw_path")
    return ids


def convert_dataset(
    raw_path: str | Path,
    out: str | Path,
    seed: int = 1337,
    ids: Sequence[str] | None = None,
    test_count: int | None = None,
    test_list: str | Path | None = None,
    output_size: Sequence[int] = OUTPUT_SIZE,
) -> tuple[list[str], list[str]]:
    """Convert the cases `ids` (default: all) of `raw_path` into `out` and write its train.list and test.list.

    The test cases are those of `test_list`, else (when `test_count` is None and the file exists) those of
    `<raw_path>/test.list`, else a seeded split of `test_count` (default 20) cases (`split_ids`). Everything is
    checked (IDs, lists, both files of each case present) before anything is written. Returns (train IDs, test IDs).
    """
    raw_path, out = Path(raw_path), Path(out)
    if seed < 0:
        raise DataError(f"--seed {seed}: choose a seed >= 0")
    known = list_cases(raw_path)
    ids = list(known if ids is None else ids)
    missing = [i for i in ids if i not in set(known)]
    if missing:
        raise DataError(f"{raw_path / missing[0]}: case folder not found; check --ids against --raw_path")
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise DataError(f"--ids names {twice[0]} twice; name each case once")
    for case_id in ids:
        for name in (RAW_IMAGE, RAW_LABEL):
            if not (raw_path / case_id / name).is_file():
                raise DataError(
                    f"{raw_path / case_id / name}: file not found; every case folder needs {RAW_IMAGE} and "
                    f"{RAW_LABEL} (or leave the case out with --ids)"
                )
    if test_list is None and test_count is None and (raw_path / "test.list").is_file():
        test_list = raw_path / "test.list"
    test_ids = read_id_file(test_list, known) if test_list is not None else None
    train, test = split_ids(ids, seed, 20 if test_count is None else test_count, test_ids)

    for case_id in tqdm(sorted(ids), ncols=90, desc="convert"):
        convert_case(raw_path / case_id, out / CASES_FOLDER / case_id, case_rng(seed, case_id), output_size)
    for split, names in (("train", train), ("test", test)):
        (out / f"{split}.list").write_text("".join(f"{i}\n" for i in names))
    return train, test
