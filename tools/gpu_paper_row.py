"""The paper's UA-MT row on one GPU, inside 10 minutes: UA-MT-unlabel with 16 labelled cases at the full configuration
(6000 iterations, patch 112x112x80, batch 2 + 2, T = 8, --precision auto: bf16 on the GPU), tested on the 20 test
cases at stride 18/4; writes row.json and row.md (Dice, Jaccard, 95HD, ASD, train and test wall time, ms/iteration)
with run.json, test.json and metrics.csv into --out.

Here (where ../shared/data/LA is): stage the 16 labelled and 20 test cases, as many unlabelled ones as the device
tool's 64 MiB leaves room for (7 of the paper's 64: 61 MiB with the wheels), and the wheels the GPU machine lacks:
    python3 -m tools.gpu_paper_row --stage
On the GPU machine (device tool: carry [".gpu_stage_row", ".whl"], timeout_s 600):
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
    PYTHONUNBUFFERED=1 python3 -m tools.gpu_paper_row --out $OUT
Where the whole LA data is (80 + 20 cases: the paper's 64 unlabelled):
    python3 -m tools.gpu_paper_row --root_path data/LA --out model/paper_row
On a CPU, the same code path at toy size (generated data, 4 iterations, patch 48x32x32; tests/test_gpu_paper_row.py):
    python3 -m tools.gpu_paper_row --toy --out /tmp/row

First a smoke run (20 iterations of the same configuration, then the test script on its checkpoint, on one training
case listed in <root>/smoke.list): any failure stops the script there with a non-zero exit and the failing step's
output, before the long run.
From the smoke's time per iteration the whole run is projected; beyond --budget_s it stops (exit 4) instead of
running out of time. The staged data holds fewer unlabelled cases than the paper's 64 (the 130 MiB of packed cases do
not fit the device tool's 64 MiB); row.md says how many were used. Nothing here reads the test cases before the
final model exists, and nothing is selected on them.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import sys
import time
from pathlib import Path

from tools.gpu_stage import (
    REPO,
    build_wheels,
    case_file,
    losses,
    restore,
    run,
    shared_lists,
    stage_cases,
    staged_ids,
    steady_ms,
)

STAGE = REPO / ".gpu_stage_row"
LABELLED = 16
CARRY_LIMIT_MIB = 64.0  # what the device tool sends: the repository, the stage and the wheels together
PAPER = {"dice": 88.88, "jaccard": 80.21, "hd95": 7.32, "asd": 2.26}  # Yu et al. 2019, Table 1, UA-MT, 16 labelled
PAPER_UNLABELLED = 64
SMOKE_ITERATIONS = 20
TEST_S_PER_CASE_EXTRA = 3.0  # per test case beyond its windows: reading, medpy's surface distances (CPU)


def tracked_mib() -> float:
    """What the device tool sends of the repository itself (tracked files), roughly."""
    listed = run(["git", "ls-files"], "listing the repository").split()
    return sum((REPO / f).stat().st_size for f in listed if (REPO / f).is_file()) / 2**20


def leading_that_fit(ids: list[str], mib: dict[str, float], room: float) -> list[str]:
    """The longest prefix of `ids` whose sizes add up to at most `room` (train.list order: no case is picked)."""
    chosen = []
    for case_id in ids:
        room -= mib[case_id]
        if room < 0:
            break
        chosen.append(case_id)
    return chosen


def stage(carry_mib: float) -> None:
    """.gpu_stage_row: the first 16 of train.list (the paper's labelled cases), every test.list case, then the next
    train.list cases as unlabelled while the stage, the wheels and the repository stay under `carry_mib`."""
    train, test = shared_lists()
    wheels, repository = build_wheels(), tracked_mib()
    room = carry_mib - wheels - repository - 0.5  # 0.5: restore.py, the manifest, the lists
    size = lambda ids: sum(case_file(i).stat().st_size for i in ids) / 2**20  # noqa: E731
    room -= size(train[:LABELLED] + test)
    unlabelled = leading_that_fit(train[LABELLED:], {i: size([i]) for i in train[LABELLED:]}, room)
    if not unlabelled:
        sys.exit(f"the labelled and test cases leave no room for an unlabelled one under --carry_mib {carry_mib}")
    staged = stage_cases(STAGE, {"labelled": train[:LABELLED], "unlabelled": unlabelled, "test": test})
    print(f"staged {LABELLED} labelled + {len(unlabelled)} unlabelled (the paper: {PAPER_UNLABELLED}) + {len(test)} "
          f"test cases: {staged:.1f} MiB, wheels {wheels:.1f} MiB, repository {repository:.1f} MiB; "
          f"carry .gpu_stage_row and .whl")  # fmt: skip


def data_root(args: argparse.Namespace, model_dir: Path) -> Path:
    """The dataset: --root_path, generated cases (--toy) or the staged cases restored."""
    if args.root_path:
        return Path(args.root_path)
    if args.toy:
        from dataloaders.synthetic import make_synthetic_la

        root = model_dir / "toy_data"
        if not (root / "test.list").is_file():
            make_synthetic_la(root, n_train=6, n_test=2, shape_range=((50, 36, 34), (56, 44, 40)), seed=3)
        return root
    root = REPO / "data" / "LA_paper_row"
    restore(STAGE, root, [i for ids in staged_ids(STAGE).values() for i in ids])
    return root


def train_command(args: argparse.Namespace, root: Path, model_dir: Path, exp: str, iterations: int) -> list[str]:
    return [sys.executable, "train_uamt_unlabel.py", "--root_path", str(root), "--model_dir", str(model_dir),
            "--exp", exp, "--labelnum", str(args.labelnum), "--max_iterations", str(iterations),
            "--save_every", str(iterations), "--patch_size", *map(str, args.patch_size), "--device", args.device,
            "--precision", args.precision, "--deterministic", str(args.deterministic), "--seed", str(args.seed),
            "--num_workers", str(args.num_workers), *args.train_flags]  # fmt: skip


def test_command(args: argparse.Namespace, root: Path, model_dir: Path, exp: str, iteration: int) -> list[str]:
    return [sys.executable, "test_LA.py", "--root_path", str(root), "--model_dir", str(model_dir), "--model", exp,
            "--iteration", str(iteration), "--patch_size", *map(str, args.patch_size), "--stride_xy",
            str(args.strides[0]), "--stride_z", str(args.strides[1]), "--device", args.device, "--precision",
            args.precision, "--save_nifti", "0"]  # fmt: skip


def smoke(args: argparse.Namespace, root: Path, model_dir: Path) -> tuple[float, float, str]:
    """The configuration for a few iterations, then test_LA.py on its checkpoint and one training case (the code
    path, not a result: no test case is read). Stops the script on any failure; returns ms per iteration, the
    training process's seconds outside its iterations (start-up: imports, data, checks) and the precision that ran."""
    iterations = args.smoke_iterations
    started = time.perf_counter()
    run(train_command(args, root, model_dir, "smoke", iterations), "the smoke run's training")
    train_s = time.perf_counter() - started
    (root / "smoke.list").write_text((root / "train.list").read_text().split()[0] + "\n")
    run(test_command(args, root, model_dir, "smoke", iterations) + ["--split", "smoke"], "the smoke run's test")
    run_dir = model_dir / "smoke"
    log = (run_dir / "log.txt").read_text()
    loss = losses(log)
    if len(loss) != iterations or not all(math.isfinite(v) for v in loss):
        sys.exit(f"the smoke run logged {len(loss)} of {iterations} iterations, losses {loss[:5]}...: stopped")
    precision = json.loads((run_dir / "run.json").read_text())["args"]["precision"]
    test_json = json.loads((run_dir / f"smoke_iter_{iterations}" / "test.json").read_text())
    if test_json["cases"] != 1:
        sys.exit(f"the smoke run's test covered {test_json['cases']} cases, not 1: stopped")
    # Training may fall back to fp32 where test still runs bf16 (utils/precision.py: bf16_gradient_problem).
    ms = steady_ms(log, skip=min(5, iterations // 2))
    return ms, train_s - iterations * ms / 1000, f"{precision} (test: {test_json['precision']})"


def mean_row(metrics_csv: Path) -> dict[str, float]:
    rows = list(csv.DictReader(open(metrics_csv)))
    return {k: float(v) for k, v in rows[-1].items() if k != "case"}


def markdown(row: dict) -> str:
    header = ("| | labelled | unlabelled | Dice % | Jaccard % | 95HD | ASD | train | test | ms/iteration | "
              "precision |\n|---|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    paper = (f"| UA-MT, paper (Yu et al. 2019) | 16 | {PAPER_UNLABELLED} | {PAPER['dice']:.2f} | "
             f"{PAPER['jaccard']:.2f} | {PAPER['hd95']:.2f} | {PAPER['asd']:.2f} | | | | |")  # fmt: skip
    ours = (f"| UA-MT-unlabel, this run | {row['labelled']} | {row['unlabelled']} | {row['dice']:.2f} | "
            f"{row['jaccard']:.2f} | {row['hd95']:.2f} | {row['asd']:.2f} | {row['train_wall_s'] / 60:.1f} min | "
            f"{row['test_wall_s']:.0f} s | {row['ms_per_iteration']:.1f} | {row['precision']} |")  # fmt: skip
    if row["test_precision"] != row["precision"]:
        ours = ours[:-2] + f" (test: {row['test_precision']}) |"
    notes = [
        f"{row['iterations']} iterations, patch {'x'.join(map(str, row['patch_size']))}, test windows at stride "
        f"{row['strides'][0]}/{row['strides'][1]} on {row['test_cases']} cases, seed {row['seed']}, deterministic "
        f"{row['deterministic']}; {row['machine']}. 95HD and ASD in voxels.",
    ]
    if row["unlabelled"] != PAPER_UNLABELLED:
        notes.append(f"Trained with {row['unlabelled']} unlabelled cases, not the paper's {PAPER_UNLABELLED}.")
    return "\n".join([header, paper, ours, "", *notes]) + "\n"


def paper_row(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = Path(args.model_dir)
    for exp in ("smoke", "row"):  # a fresh run each time
        shutil.rmtree(model_dir / exp, ignore_errors=True)
    root = data_root(args, model_dir)
    print(f"[{time.perf_counter() - started:.0f} s] data in {root}", flush=True)

    ms, startup_s, precision = smoke(args, root, model_dir)
    test_cases = len((root / "test.list").read_text().split())
    # A test case costs about as much GPU work as 2 training iterations (54 windows against 30 forward-equivalents);
    # the test process starts up about as the training one does.
    test_s = startup_s + test_cases * (2 * ms / 1000 + TEST_S_PER_CASE_EXTRA)
    projected = startup_s + args.iterations * ms / 1000 + test_s
    elapsed = time.perf_counter() - started
    print(f"[{elapsed:.0f} s] smoke run passed: {ms:.1f} ms/iteration in {precision}; the run and its test are "
          f"projected at {projected / 60:.1f} min", flush=True)  # fmt: skip
    if args.budget_s and elapsed + projected > args.budget_s:
        print(f"stopped: {elapsed:.0f} s spent + {projected:.0f} s projected exceed --budget_s {args.budget_s}; "
              "nothing trained. Run with fewer --iterations or a larger --budget_s", file=sys.stderr)  # fmt: skip
        sys.exit(4)

    run(train_command(args, root, model_dir, "row", args.iterations), "training")
    print(f"[{time.perf_counter() - started:.0f} s] trained", flush=True)
    run(test_command(args, root, model_dir, "row", args.iterations), "testing")
    run_dir, test_dir = model_dir / "row", model_dir / "row" / f"test_iter_{args.iterations}"
    info = json.loads((run_dir / "run.json").read_text())
    test_info = json.loads((test_dir / "test.json").read_text())
    means = mean_row(test_dir / "metrics.csv")
    row = {
        "method": info["method"],
        "labelled": info["labelled"],
        "unlabelled": info["unlabelled"],
        "iterations": info["iterations"],
        "dice": 100 * means["dice"],
        "jaccard": 100 * means["jaccard"],
        "hd95": means["hd95"],
        "asd": means["asd"],
        "precision_recall": [100 * means["precision"], 100 * means["recall"]],
        "train_wall_s": info["train_wall_s"],
        "test_wall_s": test_info["wall_s"],
        "ms_per_iteration": steady_ms((run_dir / "log.txt").read_text()),
        "precision": info["args"]["precision"],
        "test_precision": test_info["precision"],
        "patch_size": info["args"]["patch_size"],
        "strides": [test_info["stride_xy"], test_info["stride_z"]],
        "test_cases": test_info["cases"],
        "seed": info["seed"],
        "deterministic": info["args"]["deterministic"],
        "machine": info["machine"],
        "script_wall_s": round(time.perf_counter() - started, 1),
        "paper": PAPER | {"unlabelled": PAPER_UNLABELLED},
    }
    (out / "row.json").write_text(json.dumps(row, indent=1) + "\n")
    (out / "row.md").write_text(markdown(row))
    for path in (run_dir / "run.json", test_dir / "test.json", test_dir / "metrics.csv"):
        shutil.copyfile(path, out / path.name)
    print(markdown(row) + f"\n[{row['script_wall_s']:.0f} s] row.json, row.md and the run's files in {out}/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", action="store_true", help="stage the cases and wheels here, then stop")
    parser.add_argument("--carry_mib", type=float, default=CARRY_LIMIT_MIB - 2, help="--stage: size limit")
    parser.add_argument("--toy", action="store_true", help="CPU, generated data, 4 iterations, 48x32x32 patch")
    parser.add_argument("--root_path", default="", help="a dataset instead of the staged cases")
    parser.add_argument("--out", default="model/gpu_paper_row/out", help="where row.json, row.md etc. go")
    parser.add_argument("--model_dir", default=str(REPO / "model" / "gpu_paper_row"), help="the runs (checkpoints)")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --toy)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="auto")
    parser.add_argument("--iterations", type=int, default=None, help="default 6000 (4 with --toy)")
    parser.add_argument("--smoke_iterations", type=int, default=None, help=f"default {SMOKE_ITERATIONS} (2 with --toy)")
    parser.add_argument("--labelnum", type=int, default=None, help=f"default {LABELLED} (2 with --toy)")
    parser.add_argument("--patch_size", type=int, nargs=3, default=None, help="default 112 112 80 (48 32 32 --toy)")
    parser.add_argument("--strides", type=int, nargs=2, default=None, metavar=("XY", "Z"), help="default 18 4")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--deterministic", type=int, default=0, help="0: cudnn.benchmark (fast), as the time allows")
    parser.add_argument("--num_workers", type=int, default=None, help="default 8 (0 with --toy)")
    parser.add_argument("--budget_s", type=float, default=None, help="stop after the smoke run if the whole script "
                        "would exceed this (default 570; 0: no limit, the default with --toy)")  # fmt: skip
    parser.add_argument("--train_flags", nargs=argparse.REMAINDER, default=[], help="more training flags, last")
    args = parser.parse_args()
    if args.stage:
        stage(args.carry_mib)
        return
    toy = {"device": "cpu", "iterations": 4, "smoke_iterations": 2, "labelnum": 2, "patch_size": [48, 32, 32],
           "strides": [16, 16], "num_workers": 0, "budget_s": 0}  # fmt: skip
    full = {"device": "cuda", "iterations": 6000, "smoke_iterations": SMOKE_ITERATIONS, "labelnum": LABELLED,
            "patch_size": [112, 112, 80], "strides": [18, 4], "num_workers": 8, "budget_s": 570}  # fmt: skip
    for name, value in (toy if args.toy else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.toy:
        args.train_flags = ["--batch_size", "2", "--labeled_bs", "1", *args.train_flags]
    paper_row(args)


if __name__ == "__main__":
    main()
