"""Image grids of volume slices (or single 2D images) for TensorBoard, without torchvision."""

from __future__ import annotations

import numpy as np
import torch

GRID_SLICES = 5
GRID_GAP = 2


def slice_grid(volume: torch.Tensor, normalize: bool = True, value_range: float | None = None) -> np.ndarray:
    """A (3, W, n*(H+gap)) image of `GRID_SLICES` axial slices spread through the depth of a (W, H, D) volume;
    a 2D (rows, columns) item is shown whole, as one (3, rows, columns) image.

    `normalize` stretches the whole grid to [0, 1]; otherwise values are divided by `value_range` (e.g. C - 1
    for a label map).
    """
    volume = volume.detach().float().cpu().numpy()
    if volume.ndim == 2:
        grid = volume
    else:
        depth = volume.shape[-1]
        # The UA-MT release shows slices 20:61:10 of an 80-deep patch; spread the same five slices for any depth.
        picks = np.linspace(depth * 0.25, depth * 0.75, GRID_SLICES).round().astype(int).clip(0, depth - 1)
        gap = np.zeros((volume.shape[0], GRID_GAP), dtype=np.float32)
        grid = np.concatenate([np.concatenate([volume[..., z], gap], axis=1) for z in picks], axis=1)
    if normalize:
        low, high = grid.min(), grid.max()
        grid = (grid - low) / (high - low) if high > low else np.zeros_like(grid)
    elif value_range:
        grid = grid / value_range
    return np.repeat(grid[None], 3, axis=0).clip(0.0, 1.0)
