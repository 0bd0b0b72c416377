"""Prediction on new cases: the test-time segmentation, a Monte-Carlo-dropout uncertainty map and a quick-look
overlay picture."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torch import nn

from utils.losses import predictive_entropy

ProbabilityFn = Callable[[nn.Module, np.ndarray], torch.Tensor]  # (net, image) -> softmax (C, *spatial)


def set_dropout(net: nn.Module, active: bool) -> None:
    """Switch the dropout layers alone to training mode (BatchNorm keeps its running statistics)."""
    for module in net.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.train(active)


@torch.inference_mode()
def mc_dropout_entropy(net: nn.Module, image: np.ndarray, passes: int, probability: ProbabilityFn) -> np.ndarray:
    """U = entropy of the mean softmax over `passes` predictions with dropout on (Gal & Ghahramani, 2016), as the
    UA-MT teacher estimates it, but without input noise and with BatchNorm's running statistics: a map per voxel,
    0 (certain) to ln C."""
    set_dropout(net, True)
    try:
        mean = sum(probability(net, image) for _ in range(passes)) / passes
    finally:
        set_dropout(net, False)
    return predictive_entropy(mean[None])[0, 0].float().cpu().numpy()


def _grey(image: np.ndarray) -> np.ndarray:
    low, high = np.percentile(image, [1, 99])
    return (np.clip((image - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)


def _heat(values: np.ndarray, top: float) -> np.ndarray:
    """Black → red → yellow → white, 0 to `top`."""
    x = np.clip(values / max(top, 1e-12), 0, 1)[..., None]
    colour = np.concatenate([np.clip(3 * x, 0, 1), np.clip(3 * x - 1, 0, 1), np.clip(3 * x - 2, 0, 1)], -1)
    return (colour * 255).astype(np.uint8)


def overlay_panel(image: np.ndarray, prediction: np.ndarray, uncertainty: np.ndarray | None, top: float) -> Image.Image:
    """Side by side: the image, the image with the prediction's contours (one colour per class) and, when given, the
    uncertainty heat map (0 to `top`). A 3D case shows the slice (last axis) with the most foreground."""
    if image.ndim == 3:
        area = (prediction > 0).sum(axis=(0, 1))
        k = int(area.argmax()) if area.any() else image.shape[2] // 2
        image, prediction = image[..., k], prediction[..., k]
        uncertainty = None if uncertainty is None else uncertainty[..., k]
    grey = np.repeat(_grey(image)[..., None], 3, -1)
    contoured = grey.copy()
    palette = [(255, 40, 40), (40, 220, 40), (60, 120, 255), (255, 200, 0), (220, 0, 220)]
    for c in range(1, int(prediction.max()) + 1):
        region = prediction == c
        contour = region & ~ndimage.binary_erosion(region)
        contoured[contour] = palette[(c - 1) % len(palette)]
    panels = [grey, contoured] + ([_heat(uncertainty, top)] if uncertainty is not None else [])
    return Image.fromarray(np.concatenate(panels, axis=1))
