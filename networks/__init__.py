"""The segmentation networks by name: `build_network("vnet" | "unet", ...)`."""

from __future__ import annotations

from torch import nn

from networks.unet import UNet
from networks.vnet import VNet, count_parameters

NETWORKS: dict[str, type[nn.Module]] = {"vnet": VNet, "unet": UNet}
DEFAULT_NET = "vnet"  # the UA-MT V-Net, volumes and frames

__all__ = ["DEFAULT_NET", "NETWORKS", "UNet", "VNet", "build_network", "count_parameters"]


def build_network(
    name: str, n_classes: int, dimensions: int, has_dropout: bool = True, n_channels: int = 1
) -> nn.Module:
    """The network `name` (a key of NETWORKS); UNet refuses dimensions=3 itself."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; choose one of: {', '.join(NETWORKS)}")
    return NETWORKS[name](n_channels=n_channels, n_classes=n_classes, has_dropout=has_dropout, dimensions=dimensions)
