"""Sliding-window inference (2D images and 3D volumes) and the paper's per-case metrics (medpy, as UA-MT computed
them), per foreground class for K classes."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
from medpy import metric
from torch import nn

METRICS = ("dice", "jaccard", "hd95", "asd", "precision", "recall")
DISTANCE_METRICS = ("hd95", "asd")


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


def case_metrics(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice, Jaccard, 95% Hausdorff and average surface distance (voxels), precision and recall, by medpy.

    An empty prediction scores Dice = Jaccard = recall = 0; its precision and surface distances are undefined
    (NaN), as are the distances for an empty label, so that summaries count them instead of averaging in a 0.
    """
    prediction, truth = prediction.astype(bool), truth.astype(bool)
    defined = prediction.any() and truth.any()
    with np.errstate(divide="ignore", invalid="ignore"):  # medpy divides 0 by 0 for empty masks
        result = {
            "dice": metric.binary.dc(prediction, truth),
            "jaccard": metric.binary.jc(prediction, truth) if prediction.any() or truth.any() else 0.0,
            "precision": metric.binary.precision(prediction, truth) if prediction.any() else math.nan,
            "recall": metric.binary.recall(prediction, truth) if truth.any() else math.nan,
            "hd95": metric.binary.hd95(prediction, truth) if defined else math.nan,
            "asd": metric.binary.asd(prediction, truth) if defined else math.nan,
        }
    return {name: float(result[name]) for name in METRICS}


def metric_columns(num_classes: int) -> tuple[str, ...]:
    """The metrics.csv columns after 'case': for K = 2 the paper's six; for K > 2 the six means over the foreground
    classes under the plain names, then `<metric>_<c>` for each foreground class c."""
    if num_classes == 2:
        return METRICS
    return METRICS + tuple(f"{name}_{c}" for c in range(1, num_classes) for name in METRICS)


def class_metrics(prediction: np.ndarray, truth: np.ndarray, num_classes: int) -> dict[str, float]:
    """`case_metrics` of each foreground class c (prediction == c against truth == c) as `<metric>_<c>`, and under
    the plain names the mean over the foreground classes where the metric is defined (NaN where it is for none).
    For K = 2 the plain names hold exactly the binary metrics of class 1."""
    per_class = {c: case_metrics(prediction == c, truth == c) for c in range(1, num_classes)}
    result = {}
    for name in METRICS:
        values = np.array([per_class[c][name] for c in per_class])
        finite = values[np.isfinite(values)]
        result[name] = float(finite.mean()) if finite.size else math.nan
    for c, values in per_class.items():
        result |= {f"{name}_{c}": value for name, value in values.items()}
    return result


def summarize(
    rows: list[dict[str, float]], columns: Sequence[str] = METRICS
) -> tuple[dict[str, float], dict[str, int]]:
    """Mean of each metric over the cases where it is defined, and how many cases left it undefined."""
    means, undefined = {}, {}
    for name in columns:
        values = np.array([row[name] for row in rows], dtype=float)
        finite = values[np.isfinite(values)]
        means[name] = float(finite.mean()) if finite.size else math.nan
        undefined[name] = int(values.size - finite.size)
    return means, undefined
