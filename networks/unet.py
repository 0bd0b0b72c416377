"""2D U-Net as used by the 2D semi-supervised segmentation literature (the SSL4MIS benchmark's UNet for ACDC).

Five encoder levels of 16-32-64-128-256 channels, 2x2 max-pooling between them; every level is two 3x3 convolutions,
each with BatchNorm and LeakyReLU, with element-wise dropout between the two (rates 0.05/0.1/0.2/0.3/0.5 from the top
level to the bottleneck). Each decoder level maps to the skip's width with a 1x1 convolution, doubles the sides,
concatenates the skip and applies two 3x3 convolutions (no dropout); a 3x3 convolution gives the logits: 1,813,474
parameters for 1 input channel and 2 classes. SSL4MIS's decoder upsamples bilinearly (align_corners=True); this one
uses nearest upsampling (same parameters), whose CUDA backward is deterministic. Dropout is only active in train()
mode, so train-mode forwards are Monte-Carlo samples; `has_dropout=False` builds the test-time network with no dropout
layers and the same state_dict keys.
"""

from __future__ import annotations

import torch
from torch import nn

from networks.vnet import SIDE_MULTIPLE, fp_decode

WIDTHS = (16, 32, 64, 128, 256)
ENCODER_DROPOUT = (0.05, 0.1, 0.2, 0.3, 0.5)


class DoubleConv(nn.Module):
    """(3x3 conv + BN + LeakyReLU), dropout, (3x3 conv + BN + LeakyReLU)."""

    def __init__(self, in_channels: int, out_channels: int, dropout_p: float = 0.0):
        super().__init__()
        # Identity keeps the Sequential's indices, so networks with and without dropout share state_dict keys.
        dropout = nn.Dropout(dropout_p) if dropout_p > 0 else nn.Identity()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(),
            dropout,
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class UpLevel(nn.Module):
    """1x1 conv to the skip's width, nearest 2x upsampling, concatenation with the skip, DoubleConv."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, skip_channels, kernel_size=1)
        # Nearest, not bilinear: its CUDA backward is deterministic. A pointwise conv commutes with nearest
        # upsampling, so reducing first gives the same result at a quarter of the cost.
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = DoubleConv(2 * skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(self.reduce(x))], dim=1))


class UNet(nn.Module):
    """2D U-Net, 16-32-64-128-256 channels; `has_dropout` switches the encoder's dropout on. Images only."""

    supported_dimensions = (2,)

    def __init__(self, n_channels: int = 1, n_classes: int = 2, has_dropout: bool = True, dimensions: int = 2):
        super().__init__()
        if dimensions != 2:
            raise ValueError(
                f"UNet is a 2D network (dimensions=2), got dimensions={dimensions}; use --net vnet for volumes"
            )
        self.has_dropout = has_dropout
        self.dimensions = dimensions
        rates = ENCODER_DROPOUT if has_dropout else (0.0,) * len(WIDTHS)
        ins = (n_channels, *WIDTHS[:-1])
        self.in_conv = DoubleConv(n_channels, WIDTHS[0], rates[0])
        # Level i > 0 halves the sides first, so the pool precedes its DoubleConv.
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), DoubleConv(cin, cout, p))
            for cin, cout, p in zip(ins[1:], WIDTHS[1:], rates[1:])
        )
        self.up = nn.ModuleList(UpLevel(WIDTHS[i + 1], WIDTHS[i], WIDTHS[i]) for i in reversed(range(len(WIDTHS) - 1)))
        self.out_conv = nn.Conv2d(WIDTHS[0], n_classes, kernel_size=3, padding=1)

    def _check_input(self, x: torch.Tensor) -> None:
        bad = [s for s in x.shape[2:] if s % SIDE_MULTIPLE]
        if x.dim() != 4 or bad:
            raise ValueError(
                f"UNet(2D) needs input of shape (batch, channels, height, width) with 2 spatial sides, each a multiple "
                f"of {SIDE_MULTIPLE}; got {tuple(x.shape)}. Choose --patch_size sides divisible by {SIDE_MULTIPLE}."
            )

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The features the decoder reads: four skips (top level first) and the bottleneck."""
        features = [self.in_conv(x)]
        for level in self.down:
            features.append(level(features[-1]))
        return features

    def _decode(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for level, skip in zip(self.up, reversed(features[:-1])):
            x = level(x, skip)
        return self.out_conv(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self._decode(self._encode(x))

    def forward_fp(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """UniMatch's feature perturbation: (logits of x, logits with channel dropout p=0.5 on the four skips and the
        bottleneck), decoded in one batch so that train-mode BatchNorm sees both halves, as the UniMatch release."""
        self._check_input(x)
        return fp_decode(self._encode(x), self._decode, self.dimensions)
