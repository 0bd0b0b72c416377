"""Validation runs (issue 13's HC18, issue 22's CAMUS): mean Dice (and per structure where the runs have K > 2
classes), recall, precision and 95HD of each run's final iteration over the validation frames, and a paired Wilcoxon
(over frames) of each run's Dice against the first.

    python3 -m tools.compare model/inv sup_bs4 uamt_default sup_bs2
    python3 -m tools.compare model/camus_val s4000_sup40_s1337,s4000_sup40_s1338 \\
        s4000_sup40_s1337,s4000_sup40_s1338@lcc

A name may be several runs joined by commas (e.g. one setting's seeds): each frame's metrics are then averaged over
them before the means and the test. A name ending in @lcc reads the runs' test with --postprocess lcc
(test_iter_<N>_lcc/) instead of the plain one.

--cases / --leave_out keep only / leave out some case IDs (e.g. one case: its own metrics); --differences adds a
line per name: its median Dice, and each metric's mean minus the first name's, to two decimals (what prose quotes
as "moved by"):

    python3 -m tools.compare results/la_half supervised_8_seed1337 --cases VG4C826RAAKVMV9BQLVD
    python3 -m tools.compare results/camus_validation s4000_sup40_s1337,s4000_sup40_s1338,s4000_sup40_s1339 \\
        s4000_sup40_s1337,s4000_sup40_s1338,s4000_sup40_s1339@lcc --differences
"""

from __future__ import annotations

import argparse
from collections.abc import Collection
from pathlib import Path

import numpy as np

from evaluation.postprocess import POSTPROCESSING
from evaluation.results import PERCENT_METRICS, load_run, paired_differences
from utils.errors import DataError


def split_name(name: str) -> tuple[list[str], str]:
    """'a,b@lcc' -> (['a', 'b'], 'lcc'); without @: the plain test ('none')."""
    runs, _, postprocess = name.partition("@")
    postprocess = postprocess or "none"
    if postprocess not in POSTPROCESSING:
        raise SystemExit(f"error: {name}: @{postprocess} is not one of {', '.join(POSTPROCESSING)}")
    return runs.split(","), postprocess


class Pooled:
    """The per-frame metrics of one run, or averaged over several (comma-separated names); NaN where undefined."""

    def __init__(self, root: Path, name: str):
        parts, postprocess = split_name(name)
        runs = [load_run(root / part, postprocess=postprocess) for part in parts]
        self.cases = {
            i: {m: float(np.mean([r.cases[i][m] for r in runs])) for m in runs[0].cases[i]} for i in runs[0].cases
        }

    def mean(self, metric: str) -> float:
        return float(np.nanmean([case[metric] for case in self.cases.values()]))

    def median(self, metric: str) -> float:
        """The median over the frames where `metric` is defined."""
        return float(np.nanmedian([case[metric] for case in self.cases.values()]))

    def select(self, cases: Collection[str] | None = None, leave_out: Collection[str] = ()) -> Pooled:
        """Keep only `cases` (all when None) and drop `leave_out`; an ID the runs lack is refused."""
        unknown = set(cases or ()) | set(leave_out)
        if unknown - set(self.cases):
            raise SystemExit(f"error: no such case: {', '.join(sorted(unknown - set(self.cases)))}")
        self.cases = {i: m for i, m in self.cases.items() if (cases is None or i in cases) and i not in leave_out}
        return self

    def dice(self) -> dict[str, float]:
        """Each frame's Dice: what the paired comparisons compare."""
        return {i: case["dice"] for i, case in self.cases.items()}


def done(root: Path, name: str) -> bool:
    """Whether every run of `name` has finished and its (plain or @lcc) test of the final iteration exists."""
    parts, postprocess = split_name(name)
    try:
        for part in parts:
            load_run(root / part, postprocess=postprocess)
    except DataError:
        return False
    return True


def summary_line(name: str, run: Pooled, reference: Pooled | None, reference_name: str) -> str:
    """One name's means (Dice per structure c as d<c>), and its Dice against the reference's, paired over frames."""
    first = next(iter(run.cases.values()))
    classes = sorted(int(m.split("_")[1]) for m in first if m.startswith("dice_"))
    line = f"{name:28s} dice {100 * run.mean('dice'):6.2f}"
    line += "".join(f" d{c} {100 * run.mean(f'dice_{c}'):6.2f}" for c in classes)
    line += (
        f" recall {100 * run.mean('recall'):6.2f} precision {100 * run.mean('precision'):6.2f} "
        f"hd95 {run.mean('hd95'):6.1f}"
    )
    if reference is not None:
        difference, _, p = paired_differences(run.dice(), reference.dice())
        line += f"  vs {reference_name}: {100 * difference.mean():+6.2f} p={p:.3g}"
    return line


def metric_names(run: Pooled) -> list[str]:
    """The frames' metrics in the csv's order (the paper's six, then per structure)."""
    return list(next(iter(run.cases.values())))


def mean_differences(run: Pooled, reference: Pooled) -> dict[str, float]:
    """Each metric's mean over `run`'s frames minus its mean over `reference`'s, in the tables' units (overlaps in
    percent, distances in pixels / voxels); each mean leaves out the frames where its metric is undefined."""
    return {m: unit_scale(m) * (run.mean(m) - reference.mean(m)) for m in metric_names(run)}


def difference_line(name: str, run: Pooled, reference: Pooled | None, reference_name: str) -> str:
    """One name's median Dice and, against the reference, each metric's difference of means (two decimals)."""
    line = f"{name:28s} median dice {100 * run.median('dice'):6.2f}"
    if reference is not None:
        differences = mean_differences(run, reference)
        line += f"  mean - {reference_name}: " + " ".join(f"{m} {d:+.2f}" for m, d in differences.items())
    return line


def unit_scale(metric: str) -> float:
    """100 for the overlap metrics (percent, also per structure: dice_1), 1 for distances."""
    return 100.0 if metric.split("_")[0] in PERCENT_METRICS else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="the folder that holds the runs")
    parser.add_argument(
        "names", nargs="+", help="runs (comma-joined: pooled; @lcc: the lcc tests); the first is the reference"
    )
    parser.add_argument("--cases", nargs="+", help="only these case IDs")
    parser.add_argument("--leave_out", nargs="+", default=[], help="leave these case IDs out")
    parser.add_argument(
        "--differences", action="store_true", help="also each name's median Dice and differences of means"
    )
    args = parser.parse_args()
    root, names = args.root, args.names

    def pooled(name: str) -> Pooled:
        return Pooled(root, name).select(args.cases, args.leave_out)

    reference = pooled(names[0]) if done(root, names[0]) else None
    for name in names:
        if not done(root, name):
            print(f"{name}: not done")
            continue
        first = name == names[0] or reference is None
        run = pooled(name)
        print(summary_line(name, run, None if first else reference, names[0]))
        if args.differences:
            print(difference_line(name, run, None if first else reference, names[0]))


if __name__ == "__main__":
    main()
