"""Sliding-window inference over 2D images and 3D volumes (uniform or Gaussian blend), and one whole-volume pass."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


def window_starts(side: int, patch: int, stride: int) -> list[int]:
    """ceil((side - patch) / stride) + 1 starts, stride apart, the last clamped so the window ends at the edge."""
    count = math.ceil((side - patch) / stride) + 1
    return [min(stride * i, side - patch) for i in range(count)]


BLENDS = ("uniform", "gaussian")


def gaussian_weights(patch_size: Sequence[int], sigma_scale: float = 1 / 8) -> torch.Tensor:
    """A window's weight per voxel for the Gaussian blend: exp(-d²/2σ²) per axis, σ = side/8, centred on the
    window, 1 at its centre (nnU-Net's importance map). A voxel near a window's border, where the window saw little
    context, then counts far less than in the windows that hold it nearer their centres."""
    weights = torch.ones(())
    for side in patch_size:
        offset = torch.arange(side, dtype=torch.float64) - (side - 1) / 2
        weights = weights[..., None] * torch.exp(-0.5 * (offset / (side * sigma_scale)) ** 2)
    return (weights / weights.max()).float()


@torch.inference_mode()
def sliding_window_probability(
    net: nn.Module,
    image: np.ndarray,
    patch_size: Sequence[int],
    stride_xy: int,
    stride_z: int,
    num_classes: int,
    device: torch.device | str = "cpu",
    windows_per_batch: int = 4,
    blend: str = "uniform",
) -> torch.Tensor:
    """Softmax averaged over every window covering a voxel, shape (C, *image.shape), on `device`: uniformly (the
    UA-MT release's average, the default), or with `blend="gaussian"` weighted by `gaussian_weights`, which hides
    the seams that window borders leave in the average (where the set of windows covering a voxel changes).

    `image` is a volume (its axes as stored: W, H, D for LA) with strides (stride_xy, stride_xy, stride_z), or a 2D
    (rows, columns) image with strides (stride_xy, stride_xy) (stride_z unused); `patch_size` follows the same axis
    order (2D: rows, columns). An image smaller than the patch is zero-padded (left: half the
    padding, right: the rest) and the padding cut off again. Windows are independent in eval mode, so batching
    them changes nothing but speed.
    """
    shape = image.shape
    if len(shape) not in (2, 3) or len(patch_size) != len(shape):
        raise ValueError(f"a {len(shape)}D image {shape} needs a patch of 2 or 3 sides, one per axis; got {patch_size}")
    if blend not in BLENDS:
        raise ValueError(f"blend {blend!r}: choose one of {', '.join(BLENDS)}")
    pads = [max(p - s, 0) for s, p in zip(shape, patch_size)]
    padded = np.pad(image, [(p // 2, p - p // 2) for p in pads], mode="constant")
    volume = torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32)).to(device)
    strides = (stride_xy, stride_xy, stride_z)[: len(shape)]
    starts = [window_starts(s, p, st) for s, p, st in zip(volume.shape, patch_size, strides)]
    corners = list(itertools.product(*starts))  # x outermost, the last axis innermost

    score = torch.zeros((num_classes, *volume.shape), device=device)
    count = torch.zeros(volume.shape, device=device)
    weight = gaussian_weights(patch_size).to(device) if blend == "gaussian" else None
    for first in range(0, len(corners), windows_per_batch):
        chunk = corners[first : first + windows_per_batch]
        windows = [tuple(slice(c, c + p) for c, p in zip(corner, patch_size)) for corner in chunk]
        batch = torch.stack([volume[w] for w in windows])[:, None]
        probability = torch.softmax(net(batch).float(), dim=1)
        for w, prob in zip(windows, probability):
            if weight is None:  # the release's uniform average, operation for operation
                score[(slice(None), *w)] += prob
                count[w] += 1
            else:
                score[(slice(None), *w)] += prob * weight
                count[w] += weight
    score /= count
    crop = tuple(slice(p // 2, p // 2 + s) for p, s in zip(pads, shape))
    return score[(slice(None), *crop)]


@torch.inference_mode()
def whole_volume_probability(
    net: nn.Module, image: np.ndarray, device: torch.device | str = "cpu", multiple: int = 16
) -> torch.Tensor:
    """Softmax of one pass over the whole volume (or 2D image), zero-padded to sides that are multiples of
    `multiple` (as the network needs) and cut back, shape (C, *image.shape). The network is fully convolutional,
    so this is the sliding window without its overlaps: far less work, with more context per voxel than a window
    gives."""
    pads = [-s % multiple for s in image.shape]
    padded = np.pad(image, [(p // 2, p - p // 2) for p in pads], mode="constant")
    volume = torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32)).to(device)
    probability = torch.softmax(net(volume[None, None]).float(), dim=1)[0]
    crop = tuple(slice(p // 2, p // 2 + s) for p, s in zip(pads, image.shape))
    return probability[(slice(None), *crop)]
