"""Train each method of the card's scripts for a few iterations on generated data and digest the final weights.

Run as a script at a commit to store the digests (tests/data/method_digests.json); test_methods.py trains the same
runs with today's code and compares. One torch thread: the same kernels in the same order on the same CPU.

    python3 tests/method_digest.py --out tests/data/method_digests.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dataloaders.synthetic import make_synthetic_la  # noqa: E402

ITERATIONS = 4
# name -> (script, extra flags)
RUNS = {
    "supervised": ("train_supervised.py", ["--batch_size", "2"]),
    "uamt": ("train_uamt.py", ["--batch_size", "2", "--labeled_bs", "1"]),
    "uamt_unlabel": ("train_uamt_unlabel.py", ["--batch_size", "2", "--labeled_bs", "1"]),
    "uamt_unlabel_nomask": ("train_uamt_unlabel.py", ["--batch_size", "2", "--labeled_bs", "1",
                                                      "--uncertainty_mask", "0"]),
}  # fmt: skip


def environment() -> dict[str, str]:
    """What must match for bit-identical weights: torch's version and the CPU kernels it picks."""
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def digest(state: dict[str, torch.Tensor]) -> dict[str, object]:
    """sha256 over every tensor's bytes in name order, and each float tensor's sum (for a tolerant comparison)."""
    h = hashlib.sha256()
    sums = {}
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(tensor.numpy().tobytes())
        if tensor.is_floating_point():
            sums[name] = float(tensor.double().sum())
    return {"sha256": h.hexdigest(), "sums": sums}


def train_and_digest(name: str, root: Path, model_dir: Path) -> dict[str, object]:
    script, extra = RUNS[name]
    command = [sys.executable, str(REPO / script), "--root_path", str(root), "--model_dir", str(model_dir),
               "--exp", name, "--patch_size", "32", "32", "32", "--labelnum", "4", "--max_iterations",
               str(ITERATIONS), "--num_workers", "0", "--device", "cpu", "--seed", "7", *extra]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True, timeout=600)
    return digest(torch.load(model_dir / name / f"iter_{ITERATIONS}.pth", map_location="cpu", weights_only=True))


def synthetic_root(folder: Path) -> Path:
    return make_synthetic_la(folder, n_train=8, n_test=2, shape_range=((36, 36, 34), (44, 44, 40)), seed=3)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = synthetic_root(Path(tmp) / "data")
        result = {"environment": environment(), "iterations": ITERATIONS,
                  "runs": {name: train_and_digest(name, root, Path(tmp) / "model") for name in RUNS}}  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print({name: run["sha256"][:12] for name, run in result["runs"].items()})
