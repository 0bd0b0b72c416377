"""What the benchmarks count: FLOP of a V-Net forward, and the float32 matrix-product rate of the device (the floor
any implementation of the same work would need)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from networks.vnet import VNet  # noqa: E402


def forward_flop(patch_size: list[int]) -> int:
    """FLOP of one V-Net forward of one patch (convolutions, counted by torch on the meta device: no compute)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        VNet(n_classes=2, has_dropout=True).to("meta")(torch.zeros(1, 1, *patch_size, device="meta"))
    return counter.get_total_flops()


def matmul_gflops(device: str, size: int = 2048, repeats: int = 10, dtype: torch.dtype = torch.float32) -> float:
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        c = a @ b
    float(c[0, 0])  # synchronise
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def write_figures(path: str, times: list[float], median: float, **fields: object) -> None:
    """A benchmark's figures as JSON (benchmarks/precision_time.py reads them): the timed runs' median, min, max and
    count, then the given fields (peak RSS, precision, matmul rate, work, ...)."""
    import json

    figures = {"median_s": median, "min_s": min(times), "max_s": max(times), "n": len(times), **fields}
    Path(path).write_text(json.dumps(figures, indent=1) + "\n")
