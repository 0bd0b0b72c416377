"""UniMatch's strong views: intensity augmentations and the CutMix box, on a batch (B, C, *S) of z-scored images on the
training device, inside the step.

Frames (2D) follow the UniMatch medical release (LiheYoung/UniMatch, more-scenarios/medical/dataset/): with p = 0.8
ColorJitter(0.5, 0.5, 0.5, 0.25), then with p = 0.5 a Gaussian blur of sigma ~ U(0.1, 2.0); each view has its own
CutMix box with p = 0.5. On a grey image ColorJitter's saturation and hue change nothing (torchvision leaves a
one-channel image as it is), so only brightness and contrast are computed; the release's medical version has no
random greyscale (it is the identity on a one-channel image). Volumes (3D; no release) take the same jitter, then
gamma, Gaussian noise and blur, each with p = 0.5, and a 3D CutMix box.

The release works on [0, 1] images and clips to [0, 1]. Ours are z-scored, so each item's own [min, max] takes that
role: brightness scales the distance from the item's minimum (the release's black, 0) and contrast the distance from
its mean, both clipped to the item's range; gamma acts on the item rescaled to [0, 1]; noise is in z-score units.

Every random number comes from torch's global generators (per-item draws on the CPU one, noise on the device's), which
the loop saves in its checkpoint, so a resumed run draws the same views. torch rather than kornia / torchio: no extra
dependency, and it runs on the batch where it already is (the device), inside the step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

COLOUR_JITTER_P = 0.8  # the release: `if random.random() < 0.8: ColorJitter(...)`
JITTER = 0.5  # ColorJitter's brightness and contrast 0.5: factors ~ U(0.5, 1.5)
BLUR_P = 0.5
BLUR_SIGMA = (0.1, 2.0)  # PIL's GaussianBlur radius is the standard deviation, in pixels
GAMMA_P = 0.5
GAMMA = (0.7, 1.5)  # volumes only (nnU-Net's range)
NOISE_P = 0.5
NOISE_SIGMA = (0.0, 0.1)  # volumes only, in units of the z-scored intensity
CUTMIX_P = 0.5
CUTMIX_AREA = (0.02, 0.4)  # the box's share of the patch (area for frames, volume for volumes)
CUTMIX_RATIO = (0.3, 1 / 0.3)


def uniform(n: int, low: float, high: float) -> torch.Tensor:
    """n draws of U(low, high) from torch's CPU generator."""
    return torch.rand(n) * (high - low) + low


def chosen(n: int, p: float) -> torch.Tensor:
    """n coin flips, True with probability p."""
    return torch.rand(n) < p


def per_item(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-item values shaped (B, 1, ..., 1) to broadcast over x, on x's device and dtype."""
    return values.to(x.device, x.dtype).reshape(-1, *[1] * (x.dim() - 1))


def item_range(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each item's minimum and maximum, shaped to broadcast over x."""
    flat = x.flatten(1)
    return per_item(flat.amin(1), x), per_item(flat.amax(1), x)


def brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """lo + f (x - lo), clipped to [lo, hi] (each item's range): torchvision's brightness x f on a [0, 1] image."""
    lo, hi = item_range(x)
    return (lo + per_item(factor, x) * (x - lo)).clamp(lo, hi)


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """m + f (x - m), m each item's mean, clipped to its range: torchvision's contrast blend with the grey mean."""
    lo, hi = item_range(x)
    mean = per_item(x.flatten(1).mean(1), x)
    return (mean + per_item(factor, x) * (x - mean)).clamp(lo, hi)


def gamma(x: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """lo + (hi - lo) ((x - lo) / (hi - lo))^g: the gamma curve of each item rescaled to [0, 1]."""
    lo, hi = item_range(x)
    span = (hi - lo).clamp_min(1e-8)  # a constant item stays constant
    return lo + span * ((x - lo) / span).clamp(0, 1).pow(per_item(exponent, x))


def gaussian_noise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x + sigma n, n ~ N(0, 1) per voxel, one sigma per item."""
    return x + per_item(sigma, x) * torch.randn_like(x)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalised 1D Gaussian of standard deviation sigma, radius ceil(3 sigma)."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    return (kernel / kernel.sum()).float()


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each item blurred with its own sigma, one separable pass per spatial axis; edges extended (replicate), as PIL's
    GaussianBlur. sigma <= 0 leaves the item as it is."""
    out = []
    for item, s in zip(x, sigma.tolist()):
        if s <= 0:
            out.append(item)
            continue
        kernel = gaussian_kernel(s).to(x.device, x.dtype)
        radius = kernel.numel() // 2
        y = item
        for axis in range(1, item.dim()):  # the spatial axes of (C, *S)
            moved = y.movedim(axis, -1)
            lines = moved.reshape(-1, 1, moved.shape[-1])
            lines = F.conv1d(F.pad(lines, (radius, radius), mode="replicate"), kernel.view(1, 1, -1))
            y = lines.reshape(moved.shape).movedim(-1, axis)
        out.append(y)
    return torch.stack(out)


def colour_jitter(x: torch.Tensor, p: float = COLOUR_JITTER_P, strength: float = JITTER) -> torch.Tensor:
    """With probability p per item: brightness and contrast with factors ~ U(1 - s, 1 + s), in an order drawn per item
    (ColorJitter draws its order per call); the other items unchanged."""
    n = x.shape[0]
    apply, b, c = chosen(n, p), uniform(n, 1 - strength, 1 + strength), uniform(n, 1 - strength, 1 + strength)
    brightness_first = per_item(chosen(n, 0.5), x).bool()
    jittered = torch.where(brightness_first, contrast(brightness(x, b), c), brightness(contrast(x, c), b))
    return torch.where(per_item(apply, x).bool(), jittered, x)


def random_blur(x: torch.Tensor, p: float = BLUR_P) -> torch.Tensor:
    """With probability p per item a Gaussian blur of sigma ~ U(0.1, 2.0)."""
    n = x.shape[0]
    apply, sigma = chosen(n, p), uniform(n, *BLUR_SIGMA)
    return gaussian_blur(x, torch.where(apply, sigma, torch.zeros(n)))


def random_gamma(x: torch.Tensor, p: float = GAMMA_P) -> torch.Tensor:
    n = x.shape[0]
    apply, exponent = chosen(n, p), uniform(n, *GAMMA)
    return torch.where(per_item(apply, x).bool(), gamma(x, exponent), x)


def random_noise(x: torch.Tensor, p: float = NOISE_P) -> torch.Tensor:
    n = x.shape[0]
    apply, sigma = chosen(n, p), uniform(n, *NOISE_SIGMA)
    return gaussian_noise(x, torch.where(apply, sigma, torch.zeros(n)))


def strong_view(x: torch.Tensor) -> torch.Tensor:
    """One strong intensity view of every item, each with its own random draws: frames (B, C, H, W) get the release's
    jitter and blur; volumes (B, C, H, W, D) jitter, gamma, noise and blur."""
    x = colour_jitter(x)
    if x.dim() == 5:
        x = random_noise(random_gamma(x))
    return random_blur(x)


def cutmix_box(
    shape: tuple[int, ...],
    p: float = CUTMIX_P,
    area: tuple[float, float] = CUTMIX_AREA,
    ratio: tuple[float, float] = CUTMIX_RATIO,
) -> torch.Tensor:
    """A boolean mask of `shape` (the spatial sides) with one box set, or none with probability 1 - p, drawn as the
    release's obtain_cutmix_box: a share a ~ U(0.02, 0.4) of the patch, aspect ratios r ~ U(0.3, 1/0.3), a corner
    anywhere; ratio and corner are redrawn (the share kept) until the box fits. For frames (H, W) the sides are
    H sqrt(a r) and W sqrt(a / r), the release's; for volumes the first two axes each draw a ratio against the
    last, the sides side_i * a^(1/3) * r_i / (r_1 r_2)^(1/3) (the 2D rule with one more ratio)."""
    mask = torch.zeros(shape, dtype=torch.bool)
    if float(torch.rand(())) >= p:
        return mask
    share = float(uniform(1, *area))
    n = len(shape)
    while True:
        ratios = torch.cat([uniform(n - 1, *ratio), torch.ones(1)])
        ratios = ratios / ratios.prod() ** (1 / n)  # their product is 1: the box keeps its share
        sides = [max(1, int(s * share ** (1 / n) * float(r))) for s, r in zip(shape, ratios)]
        corner = [int(torch.randint(0, s, ())) for s in shape]
        if all(c + k <= s for c, k, s in zip(corner, sides, shape)):
            break
    mask[tuple(slice(c, c + k) for c, k in zip(corner, sides))] = True
    return mask
