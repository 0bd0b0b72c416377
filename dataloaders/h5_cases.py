"""The LA 2018 data in the UA-MT release's layout: the lists and the h5 cases.

Layout of `root`: `train.list`, `test.list` (one case ID a line) and `2018LA_Seg_Training Set/<ID>/mri_norm2.h5`
holding 'image' (float32, normalised per volume) and 'label' (uint8).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

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
