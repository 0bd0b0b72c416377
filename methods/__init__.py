"""Training methods: what one step computes from a batch, and what a method keeps besides the student.

Each module holds one method, a subclass of `methods.base.Method` found here by its `name` (as nnU-Net finds a
trainer by its class): a new method is a module of its own and its test, with nothing to register and no script to
write (`python3 train.py --method NAME`). The loop (training/loop.py) knows none of them.
"""

from __future__ import annotations

import importlib
import pkgutil

from methods.base import Method, StepOutput


def find_methods() -> dict[str, type[Method]]:
    """Every named Method subclass of this package's modules, by name (sorted); two classes of one name are refused."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    found: dict[str, type[Method]] = {}
    pending = list(Method.__subclasses__())
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        if cls.name and cls.__module__.startswith(f"{__name__}."):
            if found.setdefault(cls.name, cls) is not cls:
                raise TypeError(f"two methods named {cls.name!r}: {found[cls.name].__qualname__}, {cls.__qualname__}")
    return dict(sorted(found.items()))


METHODS: dict[str, type[Method]] = find_methods()


def __getattr__(name: str) -> type[Method]:
    """`from methods import UAMTUnlabel`: a method's class by its class name, from what find_methods found."""
    for cls in METHODS.values():
        if cls.__name__ == name:
            return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["METHODS", "Method", "StepOutput", "find_methods"]
