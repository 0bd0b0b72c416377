"""Prediction on new cases: the test-time segmentation, a Monte-Carlo-dropout uncertainty map and a quick-look
overlay picture."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage
from torch import nn

from utils.components import components
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


# One colour per structure (class 1, 2, ...), far apart in hue so that neighbouring structures (cavity, myocardium,
# atrium) stay distinguishable; repeats after eight.
PALETTE = [(255, 40, 40), (40, 220, 40), (60, 120, 255), (255, 200, 0), (220, 0, 220), (0, 220, 220), (255, 128, 0),
           (160, 100, 255)]  # fmt: skip
FILL_ALPHA = 0.35  # the frame stays readable under the colour
LEGEND_TEXT = (255, 255, 255)


def default_class_names(num_classes: int) -> list[str]:
    """The structures' names when none are given: "class 1", ..., "class K-1"."""
    return [f"class {c}" for c in range(1, num_classes)]


def class_colour(c: int) -> tuple[int, int, int]:
    """The overlay's colour of class `c` (1..K-1)."""
    return PALETTE[(c - 1) % len(PALETTE)]


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's own scalable font (10.1+ with FreeType: its bitmap font drops the width of spaces), else the bitmap."""
    try:
        return ImageFont.load_default(size=11)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _legend(width: int, entries: list[tuple[str, np.ndarray]]) -> Image.Image:
    """A strip `width` wide: each (label, swatch) — a small colour patch then its name — left to right, wrapped onto
    further lines when the frame is narrow."""
    font = _font()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line, pad = 14, 4
    placed, x, y = [], pad, pad
    for label, swatch in entries:
        text_width = int(probe.textlength(label, font=font))
        needed = swatch.shape[1] + 3 + text_width + 2 * pad
        if x > pad and x + needed > width:
            x, y = pad, y + line
        placed.append((x, y, label, swatch))
        x += needed
    strip = Image.new("RGB", (width, y + line + pad), (0, 0, 0))
    draw = ImageDraw.Draw(strip)
    for x, y, label, swatch in placed:
        strip.paste(Image.fromarray(swatch), (x, y + (line - swatch.shape[0]) // 2))
        draw.text((x + swatch.shape[1] + 3, y), label, fill=LEGEND_TEXT, font=font)
    return strip


def overlay_panel(
    image: np.ndarray,
    prediction: np.ndarray,
    uncertainty: np.ndarray | None,
    top: float,
    class_names: Sequence[str] | None = None,
) -> Image.Image:
    """Side by side, each at the image's own size: the image; the image with each predicted structure filled
    translucently and outlined in its colour; and, when given, the uncertainty heat map (0 to `top`). Below them a
    legend names each structure's colour (`class_names` for classes 1..K-1, default "class c") and the heat map's
    scale. A 3D case shows the slice (last axis) with the most foreground. Drawn with PIL, a runtime dependency
    (matplotlib is only needed for RESULTS.md's figures)."""
    if image.ndim == 3:
        area = (prediction > 0).sum(axis=(0, 1))
        k = int(area.argmax()) if area.any() else image.shape[2] // 2
        image, prediction = image[..., k], prediction[..., k]
        uncertainty = None if uncertainty is None else uncertainty[..., k]
    names = list(class_names) if class_names else default_class_names(max(int(prediction.max()) + 1, 2))
    grey = np.repeat(_grey(image)[..., None], 3, -1)
    coloured = grey.astype(np.float32)
    for c in range(1, max(len(names), int(prediction.max())) + 1):
        region = prediction == c
        colour = np.array(class_colour(c), np.float32)
        coloured[region] = (1 - FILL_ALPHA) * coloured[region] + FILL_ALPHA * colour
        contour = region & ~ndimage.binary_erosion(region)
        coloured[contour] = colour
    panels = [grey, coloured.round().astype(np.uint8)]
    entries = [(name, np.full((9, 9, 3), class_colour(c), np.uint8)) for c, name in enumerate(names, 1)]
    if uncertainty is not None:
        panels.append(_heat(uncertainty, top))
        ramp = np.repeat(_heat(np.linspace(0, top, 40)[None], top), 9, axis=0)
        entries.append((f"uncertainty 0 to {top:.2f}", ramp))
    pictures = np.concatenate(panels, axis=1)
    legend = _legend(pictures.shape[1], entries)
    return Image.fromarray(np.concatenate([pictures, np.asarray(legend)], axis=0))


def structure_sizes(
    prediction: np.ndarray, num_classes: int, spacing: Sequence[float] | None
) -> tuple[list[int], list[float] | None]:
    """Pixels (voxels) of each class 1..K-1 in a label map on the image's own grid, and their area (volume) in mm² (mm³)
    when the grid's `spacing` (mm per axis) is known, else None."""
    counts = np.bincount(prediction.ravel(), minlength=num_classes)[1:num_classes]
    pixels = [int(n) for n in counts]
    if spacing is None:
        return pixels, None
    unit = float(np.prod([float(s) for s in spacing]))
    return pixels, [n * unit for n in pixels]


# frames.csv's columns (predict.py, binary 2D data): one row per frame.
FRAME_COLUMNS = ("case", "lesion_present", "lesions", "area_px", "area_mm2", "mean_uncertainty_in_lesion")


def frame_summary(
    case_id: str, prediction: np.ndarray, uncertainty: np.ndarray | None, spacing: Sequence[float] | None
) -> dict[str, object]:
    """One frames.csv row of a binary 2D prediction on the frame's own grid: whether it holds a lesion, its
    8-connected components, its area in pixels and, when the frame's `spacing` (mm per row, per column) is known, in
    mm² (else ""); the mean of the uncertainty map over the predicted lesion ("" without a lesion or a map)."""
    lesion = prediction > 0
    area = int(np.count_nonzero(lesion))
    _, lesions = components(lesion)  # 8-connected, as the detection columns count them
    mm2 = "" if spacing is None else round(area * float(spacing[0]) * float(spacing[1]), 6)
    mean_u = "" if uncertainty is None or not area else round(float(uncertainty[lesion].mean()), 6)
    return {"case": case_id, "lesion_present": "yes" if area else "no", "lesions": int(lesions),
            "area_px": area, "area_mm2": mm2, "mean_uncertainty_in_lesion": mean_u}  # fmt: skip
