"""Post-processing of a predicted label map: `--postprocess` and `--min_lesion` of test_LA.py and predict.py."""

from __future__ import annotations

import argparse

import numpy as np

from utils.components import largest_component

# none: the prediction as the network gives it (the papers' protocol); lcc: the largest connected component of each
# foreground structure.
POSTPROCESSING = ("none", "lcc")


def postprocess(prediction: np.ndarray, method: str) -> np.ndarray:
    """`prediction` (class indices) as `--postprocess method` leaves it: unchanged for none; for lcc each foreground
    class keeps its largest connected component (full connectivity: 8 in 2D, 26 in 3D) and the rest becomes
    background (ties: the component met first in scan order)."""
    if method == "none":
        return prediction
    if method == "lcc":
        return largest_component(prediction)
    raise ValueError(f"--postprocess {method}: choose one of {', '.join(POSTPROCESSING)}")


def add_postprocess_flag(p: argparse.ArgumentParser, note: str = "") -> None:
    """--postprocess none|lcc (default none); `note` ends its help."""
    p.add_argument(
        "--postprocess",
        choices=POSTPROCESSING,
        default="none",
        help="what is done to the predicted label map before it is scored and written: none (the papers' protocol), "
        "lcc (keep the largest connected component of each foreground structure, full connectivity; removes stray "
        "blobs far from the structure)" + note,
    )


def apply_min_lesion(prediction: np.ndarray, min_lesion: int) -> np.ndarray:
    """`prediction` with every foreground pixel cleared when it has fewer than `min_lesion` of them: a frame-level
    call that the frame holds no lesion (for data where many frames hold none; 1, the default, keeps any)."""
    if np.count_nonzero(prediction) < min_lesion:
        return np.zeros_like(prediction)
    return prediction


def add_min_lesion_flag(p: argparse.ArgumentParser, note: str = "") -> None:
    """--min_lesion PIXELS (default 1: any predicted pixel is a lesion); `note` ends its help."""
    p.add_argument(
        "--min_lesion",
        type=int,
        default=1,
        metavar="PIXELS",
        help="a frame whose prediction has fewer foreground pixels than this (after --postprocess) counts as holding "
        "no lesion: its prediction is emptied; default 1 (any pixel counts)" + note,
    )
