"""The data flags that training, test_LA.py and predict.py share: how cases are cut and scaled, and the patch."""

from __future__ import annotations

import argparse

from dataloaders.sources import NORMALIZATIONS
from utils.errors import DataError

# --patch_size when none is given: the paper's for volumes, a common 2D training size for images.
DEFAULT_PATCH = {3: [112, 112, 80], 2: [256, 256]}


def resolve_patch_size(patch_size: list[int] | None, dimensions: int) -> list[int]:
    """--patch_size as given, else the default of the data's dimensionality (training, testing and predicting)."""
    return list(patch_size) if patch_size else list(DEFAULT_PATCH[dimensions])


def add_data_flags(p: argparse.ArgumentParser, from_run: bool) -> None:
    """--patch_size, --normalization, --center_crop, --resize, --letterbox: how cases are cut and scaled. With
    `from_run` (test, predict) unset values are the trained run's, from its run.json."""
    run = "; default: the run's (run.json)" if from_run else ""
    p.add_argument(
        "--patch_size",
        type=int,
        nargs="+",
        default=None,
        metavar="SIDE",
        help="the patch's sides in the order of the array's axes, multiples of 16: ROWS COLS for 2D images (a 2D "
        "V-Net; the order of --center_crop and --resize), 3 sides for volumes (a 3D V-Net) in their stored axis order "
        "(LA h5: W H D, the 'image' dataset's axes 0 1 2; NIfTI: the voxel axes i j k)"
        + (run or "; default: 112 112 80 (the paper's) for volumes, 256 256 for 2D images"),
    )
    p.add_argument(
        "--normalization",
        choices=NORMALIZATIONS,
        default=None if from_run else "zscore",
        help="NIfTI and 2D images: z-score each image, or none" + run,
    )
    p.add_argument("--center_crop", type=int, nargs=2, default=None, metavar=("ROWS", "COLS"), help="2D images" + run)
    p.add_argument(
        "--resize", type=int, nargs=2, default=None, metavar=("ROWS", "COLS"), help="2D, after --center_crop" + run
    )
    p.add_argument(
        "--letterbox",
        type=int,
        default=None,
        metavar="SIDE",
        help="2D, after --center_crop, instead of --resize: scale each frame so that its longest side is SIDE (aspect "
        "kept; the mask by nearest neighbour) and pad it with black to SIDE x SIDE; predictions are mapped back to "
        "each frame's own grid" + run,
    )


def check_dimensions(shapes: dict[str, tuple[int, ...]], dimensions: int, reason: str) -> None:
    """Every case must have `dimensions` axes (a 2D network cannot segment volumes, nor a 3D one images);
    `reason` says where the expected dimensionality comes from and ends the message."""
    for case_id, shape in shapes.items():
        if len(shape) != dimensions:
            raise DataError(f"case {case_id} is {len(shape)}D {shape}, but {reason}")
