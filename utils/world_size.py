"""How many processes this run has, readable before any process group exists (methods check flags with it)."""

from __future__ import annotations

import os


def requested_world_size() -> int:
    """The processes torchrun started (1 without torchrun); readable before the process group exists."""
    return int(os.environ.get("WORLD_SIZE", "1"))
