"""A training run's configuration: its flags resolved once, then read-only.

`resolve_flags` turns the parsed command line into a `Config`: every default that depends on the data's
dimensionality or on the method decided (the patch, the augmentation, --precision, a supervised batch's labelled items,
--labelnum of a --labeled_list, the method's own `resolve`), then every range checked once (training/options.py
check_args and the method's check_args). The loop and the method read it; writing to it raises, so a value run.json
records is the value the run used.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dataloaders.flags import resolve_patch_size
from methods.base import Method
from training.options import DEFAULT_AUGMENT, check_args, read_id_list
from utils.precision import resolve_precision


class Config(argparse.Namespace):
    """The resolved flags, as attributes (the loop's and the method's, by their flag names); read-only."""

    def __init__(self, **values: object) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"the configuration is resolved once (training/config.py): --{name} cannot change now")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"the configuration is resolved once (training/config.py): --{name} cannot go")


def resolve_flags(
    args: argparse.Namespace, method_class: type[Method], dimensions: int, device: torch.device
) -> Config:
    """The run's Config from the parsed flags, for data of `dimensions` axes (2: frames, 3: volumes): the defaults
    that depend on the data or the method decided, then the checks (one-line DataError). `args` is left as parsed."""
    values = vars(args).copy()
    if not method_class.semi_supervised:
        values["labeled_bs"] = values["batch_size"]  # a supervised batch is all labelled
    values["patch_size"] = resolve_patch_size(values["patch_size"], dimensions)
    if values.get("augment") is None:
        values["augment"] = DEFAULT_AUGMENT[dimensions]
    if values.get("labeled_list") and Path(values["labeled_list"]).is_file():
        values["labelnum"] = len(read_id_list(Path(values["labeled_list"])))  # as run.json and the tables count it
    values["precision"] = resolve_precision(values.get("precision", "fp32"), device, values["patch_size"])
    values |= method_class.resolve(argparse.Namespace(**values))
    config = Config(**values)
    check_args(config, method_class)
    return config
