"""V-Net as used by UA-MT (Yu et al., MICCAI 2019; Milletari et al., 3DV 2016).

Encoder stages of 1-2-3-3-3 convolutions, decoder stages of 3-3-2-1, every convolution 3x3x3 + BatchNorm + ReLU
(no residual connections, as in the UA-MT release), 2x2x2 stride-2 (de)convolutions between stages, skips added.
Dropout3d(0.5) on the bottleneck and on the last decoder features gives the Monte-Carlo samples of the teacher.
`dimensions=2` builds the same design from 2D layers (3x3 convs, 2x2 (de)convolutions, Dropout2d) for images.
`dropout` (a DropoutSpec) chooses another rate, only one of the two sites, or element-wise dropout; the default is
the release's network, draw for draw.

Module names follow the UA-MT release, so its checkpoints load here and ours load there; the 2D network has the
same names, so one loading path serves both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# Four stride-2 stages: every input side must be divisible by 2**4.
SIDE_MULTIPLE = 16

# The layer types of each dimensionality: (conv, transposed conv, batch norm, channel dropout).
LAYERS = {
    2: (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.Dropout2d),
    3: (nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d, nn.Dropout3d),
}


# Where dropout acts: "bottleneck" after block_five (16f channels at 1/16 of the input side), "decoder" after
# block_nine (the f channels the 1x1 output convolution reads).
DROPOUT_WHERE = ("bottleneck+decoder", "bottleneck", "decoder")
# channel: Dropout2d/3d, whole feature maps zeroed (the release's); element: nn.Dropout, each value on its own.
DROPOUT_KINDS = ("channel", "element")


@dataclass(frozen=True)
class DropoutSpec:
    """The V-Net's MC dropout: its rate, its sites (DROPOUT_WHERE) and its kind (DROPOUT_KINDS)."""

    rate: float = 0.5
    where: str = "bottleneck+decoder"
    kind: str = "channel"

    def __post_init__(self) -> None:
        if not 0.0 < self.rate < 1.0:
            raise ValueError(f"dropout rate {self.rate} must lie in (0, 1)")
        if self.where not in DROPOUT_WHERE:
            raise ValueError(f"dropout where {self.where!r}: choose one of {', '.join(DROPOUT_WHERE)}")
        if self.kind not in DROPOUT_KINDS:
            raise ValueError(f"dropout kind {self.kind!r}: choose one of {', '.join(DROPOUT_KINDS)}")

    @property
    def sites(self) -> frozenset[str]:
        return frozenset(self.where.split("+"))

    @classmethod
    def from_settings(cls, settings: dict) -> DropoutSpec:
        """From flags named dropout_rate, dropout_where, dropout_kind (run.json's args, a Config's vars); a missing
        key (an older run) takes the default."""
        default = cls()
        return cls(
            float(settings.get("dropout_rate", default.rate)),
            str(settings.get("dropout_where", default.where)),
            str(settings.get("dropout_kind", default.kind)),
        )


DEFAULT_DROPOUT = DropoutSpec()


def _layers(dimensions: int) -> tuple[type[nn.Module], ...]:
    if dimensions not in LAYERS:
        raise ValueError(f"VNet supports dimensions 2 or 3, not {dimensions}")
    return LAYERS[dimensions]


def _conv_bn_relu(conv: nn.Module, channels: int, dimensions: int) -> list[nn.Module]:
    return [conv, _layers(dimensions)[2](channels), nn.ReLU(inplace=True)]


class ConvBlock(nn.Module):
    """`n_convs` x (3x3x3 conv + BN + ReLU); 3x3 in 2D."""

    def __init__(self, n_convs: int, in_channels: int, out_channels: int, dimensions: int = 3):
        super().__init__()
        conv_type = _layers(dimensions)[0]
        layers: list[nn.Module] = []
        for i in range(n_convs):
            conv = conv_type(in_channels if i == 0 else out_channels, out_channels, kernel_size=3, padding=1)
            layers += _conv_bn_relu(conv, out_channels, dimensions)
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class DownBlock(nn.Module):
    """Halve every side: 2x2x2 stride-2 conv + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, dimensions: int = 3):
        super().__init__()
        conv = _layers(dimensions)[0](in_channels, out_channels, 2, stride=2)
        self.conv = nn.Sequential(*_conv_bn_relu(conv, out_channels, dimensions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class UpBlock(nn.Module):
    """Double every side: 2x2x2 stride-2 transposed conv + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, dimensions: int = 3):
        super().__init__()
        deconv = _layers(dimensions)[1](in_channels, out_channels, 2, stride=2)
        self.conv = nn.Sequential(*_conv_bn_relu(deconv, out_channels, dimensions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class VNet(nn.Module):
    """V-Net with 16-32-64-128-256 channels; `has_dropout` switches the dropout on (`dropout`: where, which kind,
    what rate; default the release's two channel-dropout sites at 0.5); `dimensions` 3 (volumes, the paper's network)
    or 2 (images)."""

    supported_dimensions = (2, 3)

    def __init__(
        self,
        n_channels: int = 1,
        n_classes: int = 2,
        n_filters: int = 16,
        has_dropout: bool = True,
        dimensions: int = 3,
        dropout: DropoutSpec = DEFAULT_DROPOUT,
    ):
        super().__init__()
        conv_type, _, _, dropout_type = _layers(dimensions)
        self.has_dropout = has_dropout
        self.dimensions = dimensions
        f, d = n_filters, dimensions
        self.block_one = ConvBlock(1, n_channels, f, d)
        self.block_one_dw = DownBlock(f, 2 * f, d)
        self.block_two = ConvBlock(2, 2 * f, 2 * f, d)
        self.block_two_dw = DownBlock(2 * f, 4 * f, d)
        self.block_three = ConvBlock(3, 4 * f, 4 * f, d)
        self.block_three_dw = DownBlock(4 * f, 8 * f, d)
        self.block_four = ConvBlock(3, 8 * f, 8 * f, d)
        self.block_four_dw = DownBlock(8 * f, 16 * f, d)
        self.block_five = ConvBlock(3, 16 * f, 16 * f, d)
        self.block_five_up = UpBlock(16 * f, 8 * f, d)
        self.block_six = ConvBlock(3, 8 * f, 8 * f, d)
        self.block_six_up = UpBlock(8 * f, 4 * f, d)
        self.block_seven = ConvBlock(3, 4 * f, 4 * f, d)
        self.block_seven_up = UpBlock(4 * f, 2 * f, d)
        self.block_eight = ConvBlock(2, 2 * f, 2 * f, d)
        self.block_eight_up = UpBlock(2 * f, f, d)
        self.block_nine = ConvBlock(1, f, f, d)
        self.out_conv = conv_type(f, n_classes, kernel_size=1)
        # Dropout is only active in train() mode; has_dropout=False removes it altogether (the test-time network).
        # One parameter-free module serves both sites, as in the release: the state_dict has the same keys whatever
        # the choice, and the default draws the same random numbers in the same order.
        self.dropout_spec = dropout
        self.dropout = (dropout_type if dropout.kind == "channel" else nn.Dropout)(p=dropout.rate)

    def _maybe_dropout(self, x: torch.Tensor, site: str) -> torch.Tensor:
        return self.dropout(x) if self.has_dropout and site in self.dropout_spec.sites else x

    def _check_input(self, x: torch.Tensor) -> None:
        bad = [s for s in x.shape[2:] if s % SIDE_MULTIPLE]
        if x.dim() != self.dimensions + 2 or bad:
            raise ValueError(
                f"VNet({self.dimensions}D) needs input of shape (batch, channels, *spatial) with {self.dimensions} "
                f"spatial sides, each a multiple of {SIDE_MULTIPLE}; got {tuple(x.shape)}. Choose --patch_size sides "
                f"divisible by {SIDE_MULTIPLE}."
            )

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The features the decoder reads: the four skips and the (MC-dropout) bottleneck."""
        x1 = self.block_one(x)
        x2 = self.block_two(self.block_one_dw(x1))
        x3 = self.block_three(self.block_two_dw(x2))
        x4 = self.block_four(self.block_three_dw(x3))
        x5 = self._maybe_dropout(self.block_five(self.block_four_dw(x4)), "bottleneck")
        return [x1, x2, x3, x4, x5]

    def _decode(self, features: list[torch.Tensor]) -> torch.Tensor:
        x1, x2, x3, x4, x5 = features
        x6 = self.block_six(self.block_five_up(x5) + x4)
        x7 = self.block_seven(self.block_six_up(x6) + x3)
        x8 = self.block_eight(self.block_seven_up(x7) + x2)
        x9 = self._maybe_dropout(self.block_nine(self.block_eight_up(x8) + x1), "decoder")
        return self.out_conv(x9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self._decode(self._encode(x))

    def forward_fp(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """UniMatch's feature perturbation: (logits of x, logits with channel dropout p=0.5 on every encoder feature
        map the decoder reads). One decoder pass over the clean and dropped features together, so that in train mode
        BatchNorm normalises both halves with the same batch statistics, as the UniMatch release does."""
        self._check_input(x)
        return fp_decode(self._encode(x), self._decode, self.dimensions)


def fp_decode(
    features: list[torch.Tensor], decode: Callable[[list[torch.Tensor]], torch.Tensor], dimensions: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode `features` and their channel-dropped copies in one batch; returns (clean, perturbed) logits."""
    # Always on (training=True), in eval mode too: the release draws a fresh nn.Dropout2d, which starts in train mode.
    drop = F.dropout2d if dimensions == 2 else F.dropout3d
    both = [torch.cat([f, drop(f, p=0.5, training=True)]) for f in features]
    clean, perturbed = decode(both).chunk(2)
    return clean, perturbed


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
