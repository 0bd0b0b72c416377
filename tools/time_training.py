"""Wall time per training iteration of the real training loop at the full patch, on generated volumes.

    python3 -m tools.time_training                 # UA-MT-unlabel, 112x112x80, batch 2+2, T = 8
    python3 -m tools.time_training --iterations 6 --method supervised --device cuda
    python3 -m tools.time_training --precision bf16 --patch_size 48 48 32 --json out.json
    python3 -m tools.time_training --method bcp --batch_size 4 --labeled_bs 2 --pre_iterations 1
    (flags the benchmark does not know go to the method; BCP above: its stage 2, stage 1 dropped with the warm-up)

Prints the median (and min, max) of the per-iteration times after the first, as logged in log.txt by the loop,
the peak resident memory of the process, and the achieved GFLOP/s beside what a plain matrix product (float32, or
bfloat16 for --precision bf16) reaches on the same device in the same run (the floor any implementation of this work
would need). --json writes the figures for tools/time_precision.py.
"""

import json
import re
import resource
import statistics
import tempfile
from pathlib import Path

from dataloaders.synthetic import make_synthetic_la
from methods import METHODS
from tools.forward_work import forward_equivalents, forward_flop, print_against_floor, write_figures
from training.loop import train
from training.options import training_parser
from utils.cli import Parser


def main() -> None:
    parser = Parser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=5, help="timed iterations, the first one dropped")
    parser.add_argument("--method", choices=list(METHODS), default="uamt_unlabel")
    parser.add_argument("--patch_size", type=int, nargs=3, default=[112, 112, 80])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num_workers", type=int, default=1)
    parser.add_argument("--cpu_allocator", choices=["reuse", "system"], default="reuse")
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32", help="as training's flag")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    args, method_flags = parser.parse_known_args()  # the rest: the method's flags (BCP: --pre_iterations 1, ...)

    with tempfile.TemporaryDirectory() as tmp:
        side = [s + 8 for s in args.patch_size]
        root = make_synthetic_la(Path(tmp) / "data", n_train=4, n_test=0, shape_range=(side, side), seed=0)
        method = METHODS[args.method]
        semi = method.semi_supervised
        train_args = training_parser("", "bench", method).parse_args(
            ["--root_path", str(root), "--model_dir", str(Path(tmp) / "model"), "--labelnum", "2" if semi else "4",
             "--patch_size", *map(str, args.patch_size), "--max_iterations", str(args.iterations),
             "--device", args.device, "--num_workers", str(args.num_workers), "--cpu_allocator", args.cpu_allocator,
             "--precision", args.precision, *method_flags]
        )  # fmt: skip
        run = train(train_args, method)
        log = (run / "log.txt").read_text()
        precision = json.loads((run / "run.json").read_text())["args"]["precision"]  # what ran
    times = [float(t) for t in re.findall(r"time/iteration_s ([0-9.]+)", log)][1:]
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    median = statistics.median(times)
    # The step's forward-equivalents counted at a small patch (convolutions scale with the voxels), at the last
    # timed iteration (a method in stages: the stage that was timed).
    equivalents = forward_equivalents(args.method, method_flags, [32] * len(args.patch_size), args.iterations - 1)
    work = forward_flop(args.patch_size) * equivalents
    print(
        f"method={args.method} patch={args.patch_size} device={args.device} allocator={args.cpu_allocator} "
        f"precision={precision}: median {median:.2f} s per iteration (min {min(times):.2f}, max {max(times):.2f}, "
        f"n={len(times)}); peak RSS {peak_gib:.2f} GiB"
    )
    floor = print_against_floor(work, median, "iteration", args.device, precision)
    if args.json:
        write_figures(args.json, times, median, peak_rss_gib=peak_gib, precision=precision, matmul_gflops=floor,
                      tflop=work / 1e12)  # fmt: skip


if __name__ == "__main__":
    main()
