"""The segmentation networks by name: `build_network("vnet" | "unet", ...)`."""

from __future__ import annotations

from torch import nn

from networks.unet import UNet
from networks.vnet import DEFAULT_DROPOUT, DropoutSpec, VNet, count_parameters

NETWORKS: dict[str, type[nn.Module]] = {"vnet": VNet, "unet": UNet}
DEFAULT_NET = "vnet"  # the UA-MT V-Net, volumes and frames

__all__ = [
    "DEFAULT_DROPOUT",
    "DEFAULT_NET",
    "NETWORKS",
    "DropoutSpec",
    "UNet",
    "VNet",
    "build_network",
    "count_parameters",
]


def build_network(
    name: str,
    n_classes: int,
    dimensions: int,
    has_dropout: bool = True,
    n_channels: int = 1,
    dropout: DropoutSpec = DEFAULT_DROPOUT,
) -> nn.Module:
    """The network `name` (a key of NETWORKS); UNet refuses dimensions=3 itself. `dropout` is the V-Net's choice; the
    U-Net has its own fixed encoder dropout and refuses another."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; choose one of: {', '.join(NETWORKS)}")
    common = {"n_channels": n_channels, "n_classes": n_classes, "has_dropout": has_dropout, "dimensions": dimensions}
    if name == "vnet":
        return VNet(**common, dropout=dropout)
    if dropout != DEFAULT_DROPOUT:
        raise ValueError(
            f"--dropout_rate/--dropout_where/--dropout_kind choose the V-Net's dropout; --net {name} has its own"
        )
    return NETWORKS[name](**common)
