"""Short GPU check on real LA cases: UA-MT-unlabel at the paper's full configuration for a few hundred iterations
(the loss curve, ms per iteration, the 6000-iteration projection), then test seconds per case.

Here (where ../shared/data/LA is), stage 32 training and 4 test cases (~50 MiB, packed) and the wheels that the GPU
machine lacks:
    python3 benchmarks/gpu_check.py --stage
On the GPU machine (device tool: carry [".gpu_stage", ".whl"], about 6 minutes):
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
    python3 benchmarks/gpu_check.py --iterations 600 --out $OUT
The check uses 16 labelled + 16 unlabelled cases (time per iteration does not depend on how many there are) and tests
the 4 staged test.list cases: a timing check, not a result; it selects nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGE = REPO / ".gpu_stage"
WHEELS = REPO / ".whl"
SHARED_LA = REPO.parent / "shared" / "data" / "LA"
# What the GPU machine lacks (torch, h5py, scipy, numpy, protobuf, packaging and tqdm are there): pure-Python wheels.
MISSING_PACKAGES = ["medpy==0.5.2", "nibabel==5.4.2", "tensorboardX==2.6.5"]


def stage(train_cases: int, test_cases: int) -> None:
    STAGE.mkdir(exist_ok=True)
    for name in ("restore.py", "manifest.sha256", "train.list", "test.list"):
        shutil.copy(SHARED_LA / name, STAGE / name)
    train = (SHARED_LA / "train.list").read_text().split()[:train_cases]
    test = (SHARED_LA / "test.list").read_text().split()[:test_cases]
    for case_id in train + test:
        shutil.copy(SHARED_LA / f"{case_id}.npz.xz", STAGE / f"{case_id}.npz.xz")
    (STAGE / "ids.txt").write_text("\n".join(train + test) + "\n")
    # medpy comes as source only: build the wheels here.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(WHEELS), *MISSING_PACKAGES],
                   check=True)  # fmt: skip
    size = sum(p.stat().st_size for folder in (STAGE, WHEELS) for p in folder.iterdir()) / 2**20
    print(f"staged {len(train)} + {len(test)} cases and the wheels: {size:.0f} MiB; carry .gpu_stage and .whl")


def run(command: list[str]) -> str:
    print("$ " + " ".join(command), flush=True)
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode:
        sys.exit(result.stdout[-3000:] + result.stderr[-3000:])
    return result.stdout


def check(args: argparse.Namespace) -> None:
    iterations, out = args.iterations, Path(args.out)
    config = ["--patch_size", *map(str, args.patch_size), "--device", args.device]
    root = REPO / "data" / "LA_gpu_check"
    ids = (STAGE / "ids.txt").read_text().split()
    run([sys.executable, str(STAGE / "restore.py"), str(root), "--ids", *ids])
    run([sys.executable, "train_uamt_unlabel.py", "--root_path", str(root), "--model_dir", str(out), "--exp", "check",
         "--max_iterations", str(iterations), "--save_every", str(iterations), *config,
         "--num_workers", "4"])  # fmt: skip
    log = (out / "check" / "log.txt").read_text()
    seconds = [float(s) for s in re.findall(r"time/iteration_s ([0-9.]+)", log)]
    losses = [float(s) for s in re.findall(r"loss/loss ([0-9.]+)", log)]
    steady = seconds[10:]  # after start-up (cudnn, allocator)
    ms = 1000 * statistics.median(steady)
    curve = [f"{i + 1}: {statistics.mean(losses[max(0, i - 24) : i + 1]):.4f}" for i in range(49, len(losses), 50)]
    test = run([sys.executable, "test_LA.py", "--root_path", str(root), "--model_dir", str(out), "--model", "check",
                "--iteration", str(iterations), *config, "--stride_xy", str(args.strides[0]),
                "--stride_z", str(args.strides[1]), "--save_nifti", "0"])  # fmt: skip
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
    args = parser.parse_args()
    if args.stage:
        stage(args.train_cases, args.test_cases)
    else:
        check(args)
