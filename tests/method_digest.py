"""Train each method of the card's scripts for a few iterations on generated data; digest the final weights and keep
the logged curves.

The reference is the code before the methods moved to methods/ (REFERENCE); test_methods.py trains the same runs with
today's code and compares. Two comparisons, because bit-identity holds only where the same kernels run:
- on a recorded environment (torch, its CPU kernels, the CPU's vendor / model / flags, one thread): the sha256 of
  the final weights;
- anywhere else: the logged curves (loss, its parts, consistency, uncertainty) of the first iterations within
  CURVE_BOUNDS of the reference's, bounds measured by tools/digest_drift.py between other kernels (below) and
  real changes (above). Later iterations are not compared: there the kernels' rounding has grown as large as a 1 %
  change of the learning rate.

Record a new environment from a worktree of the reference commit (its scripts train, this file digests):

    git worktree add /tmp/reference 1bb16c2
    python3 tests/method_digest.py --record --code /tmp/reference     # adds this machine to the stored digests
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dataloaders.synthetic import make_synthetic_la  # noqa: E402

STORED_PATH = Path(__file__).parent / "data" / "method_digests.json"
REFERENCE = "1bb16c2"  # the commit before the methods moved to methods/
ITERATIONS = 4
# The logged scalars compared across environments: the smooth ones. The consistency distance and the mask's share
# jump when one voxel crosses the uncertainty threshold, which other kernels' rounding already makes happen.
CURVE_TAGS = ("loss/loss", "loss/loss_seg", "loss/loss_seg_dice", "uncertainty/mean")
# Iteration -> the largest |now - reference| / (|reference| + CURVE_ATOL) accepted there on another CPU. Measured
# (tools/digest_drift.py): other oneDNN kernels move iteration 1 by < 1e-6 and iteration 2 by < 1e-5; lambda
# x1.1, T 8 -> 6 or the mask off move iteration 1 by 1e-3 or more, a 1 % larger lr iteration 2 by 1.6e-4 or more
# (results/digest_drift_cpu.md).
CURVE_BOUNDS = {1: 1e-5, 2: 1e-4}
CURVE_ATOL = 1e-3
# lambda(t) at its maximum from the first iteration (no ramp): the consistency shapes the 20 steps.
SEMI = ["--batch_size", "2", "--labeled_bs", "1", "--consistency_rampup", "0"]
RUNS = {
    "supervised": ("supervised", ["--batch_size", "2"]),
    "uamt": ("uamt", SEMI),
    "uamt_unlabel": ("uamt_unlabel", SEMI),
    "uamt_unlabel_nomask": ("uamt_unlabel", [*SEMI, "--uncertainty_mask", "0"]),
}


def cpu_description() -> dict[str, str]:
    """The CPU's vendor, model and instruction-set flags (Linux: /proc/cpuinfo), which decide the kernels that
    oneDNN and torch pick beyond torch's own capability level (e.g. AMX on an Intel Xeon, both 'AVX512')."""
    try:
        fields = dict(
            line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines() if ":" in line
        )  # the first processor's lines win: every core of these machines is alike
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        flags = " ".join(sorted(fields.get("flags", "").split()))
        return {"vendor": fields.get("vendor_id", ""), "model": fields.get("model name", ""),
                "flags_sha256": hashlib.sha256(flags.encode()).hexdigest()[:16]}  # fmt: skip
    except OSError:
        return {"vendor": platform.machine(), "model": platform.processor(), "flags_sha256": ""}


def environment() -> dict[str, str]:
    """What must match for bit-identical weights: torch's version, the kernels it picks, the CPU, one thread."""
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            **cpu_description(), "threads": "1"}  # fmt: skip


def digest(state: dict[str, torch.Tensor]) -> dict[str, object]:
    """sha256 over every tensor's bytes in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(tensor.numpy().tobytes())
    return {"sha256": h.hexdigest()}


def logged_curves(log_dir: Path) -> dict[str, list[float]]:
    """The training scalars the run logged to TensorBoard (CURVE_TAGS, the consistency and the mask's share), in
    iteration order (float32 as logged)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    kept = (*CURVE_TAGS, "train/consistency_dist", "uncertainty/mask_per")
    return {t: [e.value for e in sorted(events.Scalars(t), key=lambda e: e.step)] for t in kept if t in tags}


def train_and_digest(
    name: str,
    root: Path,
    model_dir: Path,
    code: Path = REPO,
    flags: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> dict[str, object]:
    """Train run `name` with the scripts in `code` (one thread) and return its final weights' digest and curves.
    `flags` and `env` are added to the run's (tools/digest_drift.py measures what they change)."""
    method, extra = RUNS[name]
    script = f"train_{method}.py"  # the method's alias of train.py
    command = [sys.executable, str(code / script), "--root_path", str(root), "--model_dir", str(model_dir),
               "--exp", name, "--patch_size", "32", "32", "32", "--labelnum", "4", "--max_iterations",
               str(ITERATIONS), "--num_workers", "0", "--device", "cpu", "--seed", "7", *extra, *flags]  # fmt: skip
    run_env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"} | (env or {})
    subprocess.run(command, cwd=code, env=run_env, check=True, capture_output=True, timeout=600)
    run = model_dir / name
    weights = torch.load(run / f"iter_{ITERATIONS}.pth", map_location="cpu", weights_only=True)
    return digest(weights) | {"curves": logged_curves(run / "log")}


def curve_deviations(now: dict[str, list[float]], reference: dict[str, list[float]]) -> dict[int, tuple[float, str]]:
    """Per compared iteration (CURVE_BOUNDS), the largest |now - reference| / (|reference| + CURVE_ATOL) over the
    reference's tags, and where. A tag the reference logged and today's run did not counts as infinite."""
    result = {}
    for i in CURVE_BOUNDS:
        worst, where = 0.0, ""
        for tag, ref in ((t, reference[t]) for t in CURVE_TAGS if t in reference):
            got = now.get(tag, [])
            if len(got) < i:
                worst, where = float("inf"), f"{tag}: {len(got)} values logged, the reference {len(ref)}"
                break
            deviation = abs(got[i - 1] - ref[i - 1]) / (abs(ref[i - 1]) + CURVE_ATOL)
            if deviation >= worst:
                worst, where = deviation, f"{tag}: {got[i - 1]:.7g}, the reference {ref[i - 1]:.7g}"
        result[i] = (worst, where)
    return result


def within_bounds(deviations: dict[int, tuple[float, str]]) -> bool:
    return all(deviations[i][0] <= bound for i, bound in CURVE_BOUNDS.items())


def synthetic_root(folder: Path) -> Path:
    return make_synthetic_la(folder, n_train=8, n_test=2, shape_range=((36, 36, 34), (44, 44, 40)), seed=3)


def record(code: Path, out: Path) -> dict[str, object]:
    """Train every run with the scripts in `code` and store this environment's digests in `out` (kept: the other
    environments; the curves stay the first recording's, the reference's)."""
    stored = json.loads(out.read_text()) if out.is_file() else {}
    if stored.get("iterations", ITERATIONS) != ITERATIONS:
        stored = {}  # recorded at another length: start again
    with tempfile.TemporaryDirectory() as tmp:
        root = synthetic_root(Path(tmp) / "data")
        runs = {name: train_and_digest(name, root, Path(tmp) / "model", code) for name in RUNS}
    here = environment()
    environments = [e for e in stored.get("environments", []) if e["environment"] != here]
    environments.append({"environment": here, "runs": {n: r["sha256"] for n, r in runs.items()}})
    result = {"reference": REFERENCE, "iterations": ITERATIONS, "environments": environments,
              "curves": stored.get("curves") or {n: r["curves"] for n, r in runs.items()}}  # fmt: skip
    out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record", action="store_true", help="store this environment's digests")
    parser.add_argument("--code", type=Path, default=REPO, help=f"whose scripts train: a worktree of {REFERENCE}")
    parser.add_argument("--out", type=Path, default=STORED_PATH)
    args = parser.parse_args()
    if not args.record:
        parser.error("nothing to do: pass --record")
    if args.code.resolve() == REPO and not os.environ.get("DIGEST_FROM_THIS_CODE"):
        parser.error(f"--code: the digests are the reference's; record from a worktree of {REFERENCE}")
    stored = record(args.code.resolve(), args.out)
    print(json.dumps(stored["environments"][-1], indent=1))
