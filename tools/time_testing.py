"""Wall time per test case of the sliding-window evaluation, on a generated volume of the LA median size.

    python3 -m tools.time_testing                          # 190x142x88, windows 112x112x80 at stride 18/4
    python3 -m tools.time_testing --whole_volume 1         # one pass over the padded volume instead
    python3 -m tools.time_testing --device cuda --cases 5
    python3 -m tools.time_testing --precision bf16 --json out.json

Times `sliding_window_probability` (what test_LA.py runs per case, metrics and file writing aside) with an untrained
test-time V-Net (time does not depend on the weights), prints s/case, the number of windows, the work (windows x
FLOP of a forward) as GFLOP/s, the matrix-product rate (float32, or bfloat16 for --precision bf16) measured in the
same run and the peak resident memory. --json writes the figures for tools/time_precision.py.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np
import torch

from evaluation.windows import sliding_window_probability, whole_volume_probability, window_starts
from networks.vnet import VNet
from tools.forward_work import forward_flop, print_against_floor, write_figures
from utils.cli import (
    Parser,
    run_guarded,
)
from utils.cpu_memory import reuse_freed_memory
from utils.precision import autocast, resolve_precision

LA_MEDIAN_SHAPE = (190, 142, 88)  # median of the 100 LA volumes (their sides: 148..244 x 132..160 x 88)


def case_probability(net: torch.nn.Module, image: np.ndarray, args: argparse.Namespace) -> torch.Tensor:
    """What test_LA.py computes per case: the window average, or one pass over the padded volume."""
    if args.whole_volume:
        return whole_volume_probability(net, image, args.device)
    return sliding_window_probability(
        net, image, args.patch_size, args.stride_xy, args.stride_z, 2, args.device, args.windows_per_batch
    )


def main() -> None:
    parser = Parser(description=__doc__)
    parser.add_argument("--cases", type=int, default=2, help="timed cases, after one untimed warm-up window")
    parser.add_argument("--shape", type=int, nargs=3, default=LA_MEDIAN_SHAPE)
    parser.add_argument("--patch_size", type=int, nargs=3, default=[112, 112, 80])
    parser.add_argument("--stride_xy", type=int, default=18)
    parser.add_argument("--stride_z", type=int, default=4)
    parser.add_argument("--windows_per_batch", type=int, default=4)
    parser.add_argument("--whole_volume", type=int, default=0, choices=[0, 1])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cpu_allocator", choices=["reuse", "system"], default="reuse", help="reuse: as test_LA.py")
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32", help="as test_LA.py's flag")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    args = parser.parse_args()
    precision = run_guarded(lambda: resolve_precision(args.precision, args.device))  # bf16 refused where not native

    if torch.device(args.device).type == "cpu" and args.cpu_allocator == "reuse":
        reuse_freed_memory()
    net = VNet(n_classes=2, has_dropout=False).to(args.device).eval()
    image = np.random.default_rng(0).standard_normal(args.shape).astype(np.float32)
    strides = (args.stride_xy, args.stride_xy, args.stride_z)
    windows = int(np.prod([len(window_starts(s, p, t)) for s, p, t in zip(args.shape, args.patch_size, strides)]))
    with torch.inference_mode(), autocast(precision, args.device):
        net(torch.zeros(1, 1, *args.patch_size, device=args.device))  # warm-up (allocator, cudnn, oneDNN)
    times = []
    for _ in range(args.cases):
        start = time.perf_counter()
        with autocast(precision, args.device):  # as test_LA.py: around the case's windows
            probability = case_probability(net, image, args)
        probability.argmax(0).cpu()
        times.append(time.perf_counter() - start)
    per_case = statistics.median(times)
    if args.whole_volume:
        padded = [s + (-s % 16) for s in args.shape]
        work, what = forward_flop(padded), f"one pass over {padded}"
    else:
        work = windows * forward_flop(args.patch_size)
        what = f"{windows} windows at stride {args.stride_xy}/{args.stride_z}"
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(
        f"shape {tuple(args.shape)}, {what}, device={args.device} allocator={args.cpu_allocator} "
        f"precision={precision}: median {per_case:.2f} s per case (min {min(times):.2f}, max {max(times):.2f}, "
        f"n={len(times)}); peak RSS {peak_gib:.2f} GiB"
    )
    floor = print_against_floor(work, per_case, "case", args.device, precision)
    if args.json:
        write_figures(args.json, times, per_case, peak_rss_gib=peak_gib, precision=precision, matmul_gflops=floor,
                      tflop=work / 1e12, windows=1 if args.whole_volume else windows)  # fmt: skip


if __name__ == "__main__":
    main()
