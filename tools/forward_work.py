"""What the benchmarks count: FLOP of a V-Net forward, a method's work per training iteration in forward-equivalents
(its step's forward and backward FLOP over one forward of one item), and the float32 matrix-product rate of the
device (the floor any implementation of the same work would need).

    python3 -m tools.forward_work --method cps --patch_size 48 48 32 --batch_size 4 --labeled_bs 2
    python3 -m tools.forward_work --method bcp --batch_size 4 --labeled_bs 2 --pre_iterations 400 --at 0 400
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from methods import METHODS
from networks import build_network
from networks.vnet import VNet
from training.config import resolve_flags
from training.loop import build_method
from training.options import training_parser


def forward_flop(patch_size: list[int]) -> int:
    """FLOP of one V-Net forward of one patch (convolutions, counted by torch on the meta device: no compute)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        VNet(n_classes=2, has_dropout=True).to("meta")(torch.zeros(1, 1, *patch_size, device="meta"))
    return counter.get_total_flops()


def forward_equivalents(method_name: str, flags: list[str], patch_size: list[int], iteration: int = 1) -> float:
    """A method's work at iteration t in forward-equivalents: the FLOP of its step (every forward, the teacher's and
    the pseudo-labels' included, and the backward) over those of one V-Net forward of one item, counted by torch on
    a real step at `patch_size` (convolutions and matrix products). Data loading and the optimiser are not counted."""
    method_class, cpu = METHODS[method_name], torch.device("cpu")
    parsed = training_parser("", "work", method_class).parse_args([*flags, "--patch_size", *map(str, patch_size)])
    args = resolve_flags(parsed, method_class, len(patch_size), cpu)  # as a training run resolves them
    method = build_method(args, method_class, cpu)  # and builds its networks
    images = torch.randn(args.batch_size, 1, *patch_size)
    labels = torch.randint(0, args.num_classes, (args.batch_size, *patch_size))
    method.start_iteration(iteration, torch.optim.SGD(method.parameter_groups(), lr=args.base_lr))
    counter = FlopCounterMode(display=False)
    with counter:
        method.step(dict(method.trained), images, labels, slice(0, args.labeled_bs), iteration).loss.backward()
    one = FlopCounterMode(display=False)
    with one, torch.no_grad():
        build_network(args.net, args.num_classes, len(patch_size))(images[:1])
    return counter.get_total_flops() / one.get_total_flops()


def matmul_gflops(device: str, size: int = 2048, repeats: int = 10, dtype: torch.dtype = torch.float32) -> float:
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        c = a @ b
    float(c[0, 0])  # synchronise
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def print_against_floor(work: float, seconds: float, unit: str, device: str, precision: str) -> float:
    """Print the rate that `work` FLOP in `seconds` per `unit` achieves and the floor a matrix product of the same
    precision sets here; return that product's GFLOP/s."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    floor = matmul_gflops(device, dtype=dtype)
    print(
        f"work {work / 1e12:.2f} TFLOP per {unit}: {work / seconds / 1e9:.0f} GFLOP/s achieved; a "
        f"{str(dtype)[6:]} matrix product runs at {floor:.0f} GFLOP/s here, "
        f"a floor of {work / floor / 1e9:.1f} s per {unit}"
    )
    return floor


def write_figures(path: str, times: list[float], median: float, **fields: object) -> None:
    """A benchmark's figures as JSON (tools/time_precision.py reads them): the timed runs' median, min, max and
    count, then the given fields (peak RSS, precision, matmul rate, work, ...)."""
    import json

    figures = {"median_s": median, "min_s": min(times), "max_s": max(times), "n": len(times), **fields}
    Path(path).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=list(METHODS), required=True)
    parser.add_argument("--patch_size", type=int, nargs="+", default=[48, 48, 32], help="default: the LA-half arena's")
    parser.add_argument("--at", type=int, nargs="+", default=[1], help="iterations to count (a method's stages)")
    known, flags = parser.parse_known_args()
    torch.manual_seed(0)
    for t in known.at:
        work = forward_equivalents(known.method, flags, known.patch_size, t)
        print(f"{known.method} {' '.join(flags)} at iteration {t}: {work:.2f} forward-equivalents per iteration")
