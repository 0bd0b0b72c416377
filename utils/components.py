"""Connected components of label maps, full connectivity (8 in 2D, 26 in 3D: as skimage's label in the BCP
release), shared by BCP's pseudo-labels, the post-processing of predictions and the lesion counts."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components of a binary mask, full connectivity: labels 1..n, and n."""
    return ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))


def largest_component(labels: np.ndarray) -> np.ndarray:
    """Keep, for each foreground class of one label map, its largest connected component; a class without voxels
    stays empty."""
    kept = np.zeros_like(labels)
    for c in np.unique(labels[labels > 0]):
        labelled, count = components(labels == c)
        if count:
            largest = 1 + int(np.argmax(np.bincount(labelled.ravel())[1:]))
            kept[labelled == largest] = c
    return kept
