"""Where the time of a training iteration goes: torch's profiler over the real loop on generated volumes.

    python3 -m tools.profile_training --method uamt_unlabel --patch_size 48 48 32 --iterations 6

Prints the operators by self CPU time (the first iteration, the warm-up, included in the run but the shares are
dominated by the steady state) and the share of convolutions (forward and backward) against the rest, grouped as
BatchNorm, ReLU/dropout, softmax/losses, optimiser, data, other.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

from dataloaders.synthetic import make_synthetic_la
from methods import METHODS
from training.loop import train
from training.options import training_parser
from utils.cli import Parser

GROUPS = {  # operator name fragments -> group (first match wins)
    "convolution": ("conv", "mkldnn_convolution", "slow_conv"),
    "batchnorm": ("batch_norm",),
    "relu / dropout": ("relu", "threshold", "dropout", "bernoulli", "feature_dropout"),
    "softmax / losses": ("softmax", "log", "nll", "cross_entropy", "pow", "mse", "sum", "mean", "mul", "div", "sub"),
    "optimiser / EMA": ("sgd", "_foreach", "add_", "mul_", "lerp"),
    "copies / data": ("copy", "to", "cat", "index", "slice", "pad", "clone", "contiguous", "stack", "repeat"),
}


def group_of(name: str) -> str:
    lowered = name.lower()
    for group, fragments in GROUPS.items():
        if any(f in lowered for f in fragments):
            return group
    return "other"


def main() -> None:
    parser = Parser(description=__doc__)
    parser.add_argument("--method", choices=list(METHODS), default="uamt_unlabel", help="the training method")
    parser.add_argument("--patch_size", type=int, nargs=3, default=[48, 48, 32], help="W H D")
    parser.add_argument("--iterations", type=int, default=6, help="iterations profiled")
    parser.add_argument("--top", type=int, default=15, help="operators listed")
    args = parser.parse_args()
    method = METHODS[args.method]
    with tempfile.TemporaryDirectory() as tmp:
        side = [s + 8 for s in args.patch_size]
        root = make_synthetic_la(Path(tmp) / "data", n_train=4, n_test=0, shape_range=(side, side), seed=0)
        bcp = ["--batch_size", "4", "--labeled_bs", "2", "--pre_iterations", "1"] if args.method == "bcp" else []
        train_args = training_parser("", "profile", method).parse_args(
            ["--root_path", str(root), "--model_dir", str(Path(tmp) / "model"), "--labelnum", "2",
             "--patch_size", *map(str, args.patch_size), "--max_iterations", str(args.iterations),
             "--device", "cpu", "--num_workers", "0", "--save_every", "100000", *bcp]
        )  # fmt: skip
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            train(train_args, method)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    print(f"{args.method} at {args.patch_size}, {args.iterations} iterations: {total / 1e6:.1f} s of CPU time")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]:
        print(f"  {100 * e.self_cpu_time_total / total:5.1f} %  {e.key}")
    shares: dict[str, float] = {}
    for e in events:
        shares[group_of(e.key)] = shares.get(group_of(e.key), 0.0) + e.self_cpu_time_total
    ranked = sorted(shares.items(), key=lambda x: -x[1])
    print("by group: " + ", ".join(f"{g} {100 * t / total:.1f} %" for g, t in ranked))


if __name__ == "__main__":
    main()
