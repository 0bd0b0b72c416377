"""Train, test and summarise the runs of a results table: methods x seeds, each tested at its final iteration.

    python3 prepare_la_half.py && python3 -m tools.run_table --config la_half --parallel 2   # CPU, RESULTS.md
    python3 -m tools.run_table --config paper --device cuda                                  # the paper's rows

The tables themselves (configs, rows, paired tests, display names) are data: benchmarks/arenas.py.

Each job trains (`--resume auto`: an interrupted table continues where it stopped), then tests the final iteration
and copies the small results (run.json, test_iter_<N>/test.json and metrics.csv; and log_summary.json, the logged
scalars' window means, where the run has its log.txt) to results/<config>/<run>/, which is committed: a run whose
results are there (log_summary.json or not) is skipped, so a later sitting on a fresh machine runs only what is
missing. Jobs run `--parallel` at a time, the CPU threads split between them. Every command is printed, and logged
in <run>/job.log. Nothing reads test.list before a run's final model exists.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.arenas import (
    COMPARE,
    CONFIG_GAP,
    CONFIG_GROUPS,
    CONFIGS,
    DEFAULT_GROUPS,
    GAP,
    GROUPS,
    REPO,
    RETIRED,
    SCHEDULE_FLAGS,
    Scale,
    Schedule,
    training_script,
)
from tools import log_summary

KEPT = ("run.json", "test_iter_{final}/test.json", "test_iter_{final}/metrics.csv")  # what results/ keeps of a run
# Kept too where the run has them, never required: runs kept before them still count as done (has_results).
OPTIONAL = (log_summary.NAME,)


def job_commands(
    group: str, seed: int, scale: Scale, model_dir: str, device: str, precision: str = "fp32"
) -> tuple[str, list[list[str]], int]:
    """The run's name, its train and test commands, and its final iteration."""
    method, labelnum, flags, variant = GROUPS[group]
    run_name = method + (f"_{variant}" if variant else "")
    schedules = dict(scale.schedules)
    if variant and run_name not in schedules and any(run_name in dict(c.schedules) for c in CONFIGS.values()):
        raise SystemExit(f"error: --groups {group}: this config has no schedule for it")
    schedule = schedules.get(run_name) or schedules.get(method) or Schedule(scale.iterations, scale.lr_step)
    iterations, lr_step = schedule.iterations, schedule.lr_step
    extra = [*flags, *(["--variant", variant] if variant else []), *schedule.flags]
    exp = f"{group.replace(':', '_')}_seed{seed}"
    common = ["--root_path", scale.root, "--model_dir", model_dir, "--patch_size", *map(str, scale.patch),
              "--device", device] + (["--precision", precision] if precision != "fp32" else [])  # fmt: skip
    train = [sys.executable, *training_script(method), *common, "--exp", exp, "--labelnum", str(labelnum),
             "--seed", str(seed),
             "--max_iterations", str(iterations), "--lr_step", str(lr_step),
             "--save_every", str(scale.save_every), "--num_workers", "0", "--resume", "auto",
             *scale.data_flags]  # fmt: skip
    train += [flag for name, flags in scale.method_flags if name == method for flag in flags]
    train += [flag for count, path in scale.labeled_lists if count == labelnum for flag in ("--labeled_list", path)]
    train += [x for flag in SCHEDULE_FLAGS.get(method, ()) for x in (f"--{flag}", str(getattr(scale, flag)))]
    train += extra  # last: a group's own flags override the config's per-method ones
    test = [sys.executable, "test_LA.py", *common, "--model", exp, "--iteration", str(iterations),
            "--stride_xy", str(scale.stride_xy), "--stride_z", str(scale.stride_z), "--save_nifti", "0"]  # fmt: skip
    tests = [test + ([] if post == "none" else ["--postprocess", post]) for post in scale.postprocess]
    return exp, [train, *tests], iterations


def kept_files(postprocess: tuple[str, ...] = ("none",)) -> tuple[str, ...]:
    """What results/ keeps of a run: KEPT, and each post-processed test's test.json and metrics.csv."""
    posts = [p for p in postprocess if p != "none"]
    return KEPT + tuple(f"test_iter_{{final}}_{p}/{name}" for p in posts for name in ("test.json", "metrics.csv"))


def has_results(folder: Path, final: int, names: tuple[str, ...] = KEPT) -> bool:
    return all((folder / name.format(final=final)).is_file() for name in names)


def keep_results(run: Path, kept: Path, final: int, names: tuple[str, ...] = KEPT) -> None:
    """Copy a tested run's small results (no checkpoints, no volumes) to `kept`; where the run has its log.txt, its
    log_summary.json (tools/log_summary.py) is written beside run.json and kept too (OPTIONAL)."""
    for name in names:
        target = kept / name.format(final=final)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run / name.format(final=final), target)
    if (run / "log.txt").is_file():
        try:
            log_summary.write_summary(run)
        except ValueError as error:  # an optional file: the results above are kept whatever the log holds
            print(f"{run / 'log.txt'}: no {log_summary.NAME} ({error})", flush=True)
    for name in OPTIONAL:
        if (run / name).is_file():
            shutil.copyfile(run / name, kept / name)


def run_job(
    exp: str, commands: list[list[str]], run: Path, kept: Path, threads: int, final: int, names: tuple[str, ...] = KEPT
) -> str:
    if has_results(kept, final, names):
        return f"{exp}: in {kept}, skipped"
    if has_results(run, final, names):
        keep_results(run, kept, final, names)
        return f"{exp}: done before, results copied to {kept}"
    run.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    with open(run / "job.log", "a") as log:
        for command in commands:
            log.write("$ " + shlex.join(command) + "\n")
            log.flush()
            if subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT).returncode:
                return f"{exp}: FAILED, see {run / 'job.log'}"
    keep_results(run, kept, final, names)
    return f"{exp}: trained and tested in {(time.perf_counter() - start) / 60:.1f} min"


def build_parser() -> argparse.ArgumentParser:
    """The runner's flags (tests/test_commands.py parses every run_table command of the docs with it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="la_half")
    parser.add_argument("--groups", nargs="+", choices=list(GROUPS), help="default: the config's (CONFIG_GROUPS)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1338, 1339])
    parser.add_argument("--model_dir", help="default: model/<config>")
    parser.add_argument("--results_dir", help="where the small results are kept (committed); default: results/<config>")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32",
                        help="train and test in this precision; not fp32: into model/<config>_<precision> and "
                        "results/<config>_<precision>")  # fmt: skip
    parser.add_argument("--parallel", type=int, default=1, help="jobs at a time (CPU: 2 single-thread jobs)")
    parser.add_argument("--threads", type=int, help="torch threads per job; default: the CPU cores / --parallel")
    parser.add_argument("--dry_run", action="store_true", help="print the commands only")
    parser.add_argument(
        "--summary_only", action="store_true", help="train nothing: rebuild results/<config>/table.md and dice.png"
    )
    return parser


def main() -> None:
    args = build_parser().parse_args()
    scale = CONFIGS[args.config]
    args.groups = args.groups or CONFIG_GROUPS.get(args.config, DEFAULT_GROUPS)
    name = args.config if args.precision == "fp32" else f"{args.config}_{args.precision}"
    model_dir = args.model_dir or f"model/{name}"
    results = Path(args.results_dir or REPO / "results" / name).resolve()
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.parallel)

    # Seed-major order: with fewer seeds done, every group still has the same number of runs.
    jobs = [job_commands(g, s, scale, model_dir, args.device, args.precision) for s in args.seeds for g in args.groups]
    # A retired group trains no more seeds; its kept runs stay in the tables.
    retired = {f"{g.replace(':', '_')}_seed{s}" for g in RETIRED.get(args.config, {}) for s in args.seeds}
    to_train = [job for job in jobs if job[0] not in retired]
    for _, commands, _ in [] if args.summary_only else to_train:
        for command in commands:
            print(shlex.join(["python3", *command[1:]]))  # quoted: e.g. --group_by's regex
    if args.dry_run:
        return
    if not args.summary_only:
        run_all(to_train, args.parallel, model_dir, results, threads, kept_files(scale.postprocess))
    for post in scale.postprocess:
        summarize(args, results, {exp: final for exp, _, final in jobs}, post)


def run_all(jobs: list, parallel: int, model_dir: str, results: Path, threads: int, names: tuple[str, ...]) -> None:
    with ThreadPoolExecutor(parallel) as pool:
        futures = [
            pool.submit(run_job, exp, commands, REPO / model_dir / exp, results / exp, threads, final, names)
            for exp, commands, final in jobs
        ]
        for future in futures:
            print(future.result(), flush=True)


def summarize(args: argparse.Namespace, results: Path, finals: dict[str, int], postprocess: str = "none") -> None:
    """results/<config>/table.md and dice.png from every kept run of the chosen groups; missing ones are pending.
    `postprocess` lcc: the runs' lcc tests, into table_lcc.md and dice_lcc.png."""
    names = kept_files((postprocess,))
    runs = [str(results / exp) for exp, final in sorted(finals.items()) if has_results(results / exp, final, names)]
    if not runs:
        print(f"no results under {results} yet")
        return
    compare = [x for a, b in COMPARE if {a, b} <= set(args.groups) for x in ("--compare", a, b)]
    gap_groups = CONFIG_GAP.get(args.config, GAP)
    gap = ["--gap", *gap_groups] if set(gap_groups) <= set(args.groups) else []
    suffix = "" if postprocess == "none" else f"_{postprocess}"
    title = f"{args.config}: Dice per test case, seeds pooled" + (f", --postprocess {postprocess}" if suffix else "")
    # RESULTS.md's copy is marked by the table's path from the repository (absolute when results/ is elsewhere).
    out = results / f"table{suffix}.md"
    table = str(out.relative_to(REPO) if results.is_relative_to(REPO) else out)
    retired = [x for group in RETIRED.get(args.config, {}) if group in args.groups for x in ("--retired", group)]
    command = [sys.executable, "summarize.py", *runs, *compare, *gap, *retired, "--expect", *args.groups,
               "--seeds", str(len(args.seeds)), "--out", table, "--splice", str(REPO / "RESULTS.md"),
               "--figure", str(results / f"dice{suffix}.png"), "--title", title,
               "--postprocess", postprocess]  # fmt: skip
    subprocess.run(command, cwd=REPO, check=True)


if __name__ == "__main__":
    main()
