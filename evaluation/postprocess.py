"""Post-processing of a predicted label map (`--postprocess` of test_LA.py and predict.py), and the largest-component
filter BCP applies to its teacher's pseudo-labels."""

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
