"""Connected components of label maps (full connectivity: 8 in 2D, 26 in 3D), shared by BCP's pseudo-labels and
the post-processing of predictions."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def largest_component(labels: np.ndarray) -> np.ndarray:
    """Keep, for each foreground class of one label map, its largest connected component (full connectivity, as
    skimage's label in the release); a class without voxels stays empty."""
    kept = np.zeros_like(labels)
    structure = np.ones((3,) * labels.ndim, dtype=bool)
    for c in np.unique(labels[labels > 0]):
        components, count = ndimage.label(labels == c, structure=structure)
        if count:
            largest = 1 + int(np.argmax(np.bincount(components.ravel())[1:]))
            kept[components == largest] = c
    return kept
