"""Short GPU check on real LA cases: UA-MT-unlabel at the paper's full configuration for a few hundred iterations
(the loss curve, ms per iteration, the 6000-iteration projection), then test seconds per case.

Here (where ../shared/data/LA is), stage 32 training and 4 test cases (~50 MiB, packed) and the wheels that the GPU
machine lacks:
    python3 -m tools.gpu_check --stage
On the GPU machine (device tool: carry [".gpu_stage", ".whl"], about 6 minutes):
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
    python3 -m tools.gpu_check --iterations 600 --out $OUT
The check uses 16 labelled + 16 unlabelled cases (time per iteration does not depend on how many there are) and tests
the 4 staged test.list cases: a timing check, not a result; it selects nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

from tools.gpu_stage import (
    REPO,
    build_wheels,
    iteration_seconds,
    losses,
    restore,
    run,
    shared_lists,
    stage_cases,
    staged_ids,
)

STAGE = REPO / ".gpu_stage"


def stage(train_cases: int, test_cases: int) -> None:
    train, test = shared_lists()
    cases = stage_cases(STAGE, {"train": train[:train_cases], "test": test[:test_cases]})
    wheels = build_wheels()
    print(
        f"staged {train_cases} + {test_cases} cases and the wheels: {cases + wheels:.0f} MiB; carry .gpu_stage and .whl"
    )


def check(args: argparse.Namespace) -> None:
    iterations, out = args.iterations, Path(args.out)
    config = ["--patch_size", *map(str, args.patch_size), "--device", args.device, "--precision", args.precision]
    root = REPO / "data" / "LA_gpu_check"
    restore(STAGE, root, [i for ids in staged_ids(STAGE).values() for i in ids])
    run([sys.executable, "train_uamt_unlabel.py", "--root_path", str(root), "--model_dir", str(out), "--exp", "check",
         "--max_iterations", str(iterations), "--save_every", str(iterations), *config,
         "--num_workers", "4"], "training")  # fmt: skip
    log = (out / "check" / "log.txt").read_text()
    seconds, loss = iteration_seconds(log), losses(log)
    steady = seconds[10:]  # after start-up (cudnn, allocator)
    ms = 1000 * statistics.median(steady)
    curve = [f"{i + 1}: {statistics.mean(loss[max(0, i - 24) : i + 1]):.4f}" for i in range(49, len(loss), 50)]
    test = run([sys.executable, "test_LA.py", "--root_path", str(root), "--model_dir", str(out), "--model", "check",
                "--iteration", str(iterations), *config, "--stride_xy", str(args.strides[0]),
                "--stride_z", str(args.strides[1]), "--save_nifti", "0"], "testing")  # fmt: skip
    test_info = json.loads((out / "check" / f"test_iter_{iterations}" / "test.json").read_text())
    report = [
        f"machine: {test_info['machine']}",
        f"training: median {ms:.1f} ms/iteration over iterations 11..{iterations} (min {1000 * min(steady):.1f}, "
        f"max {1000 * max(steady):.1f}); 6000 iterations ≈ {6000 * ms / 60000:.1f} min",
        "loss (mean of the last 25 iterations): " + ", ".join(curve),
        f"test: {test_info['wall_s'] / test_info['cases']:.2f} s per case ({test_info['cases']} cases, "
        f"{test_info['wall_s']} s with start-up); " + re.search(r"^mean: .*$", test, re.M).group(0),
    ]
    print("\n".join(report))
    (out / "gpu_check.txt").write_text("\n".join(report) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", action="store_true", help="stage the cases and wheels here")
    parser.add_argument("--train_cases", type=int, default=32)
    parser.add_argument("--test_cases", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--out", default="model/gpu_check", help="where the run and gpu_check.txt go")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--patch_size", type=int, nargs=3, default=[112, 112, 80])
    parser.add_argument("--strides", type=int, nargs=2, default=[18, 4], metavar=("XY", "Z"), help="test windows")
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="auto", help="training and test")
    args = parser.parse_args()
    if args.stage:
        stage(args.train_cases, args.test_cases)
    else:
        check(args)
