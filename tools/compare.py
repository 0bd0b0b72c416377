"""Validation runs (issue 13's HC18, issue 22's CAMUS): mean Dice (and per structure where the runs have K > 2
classes), recall, precision and 95HD of each run's final iteration over the validation frames, and a paired Wilcoxon
(over frames) of each run's Dice against the first.

    python3 -m tools.compare model/inv sup_bs4 uamt_default sup_bs2
    python3 -m tools.compare model/camus_val s4000_sup40_s1337,s4000_sup40_s1338 \\
        s4000_sup40_s1337,s4000_sup40_s1338@lcc

A name may be several runs joined by commas (e.g. one setting's seeds): each frame's metrics are then averaged over
them before the means and the test. A name ending in @lcc reads the runs' test with --postprocess lcc
(test_iter_<N>_lcc/) instead of the plain one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from evaluation.postprocess import POSTPROCESSING
from evaluation.results import load_run, paired_differences
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


def main() -> None:
    root, names = Path(sys.argv[1]), sys.argv[2:]
    reference = Pooled(root, names[0]) if done(root, names[0]) else None
    for name in names:
        if not done(root, name):
            print(f"{name}: not done")
            continue
        first = name == names[0] or reference is None
        print(summary_line(name, Pooled(root, name), None if first else reference, names[0]))


if __name__ == "__main__":
    main()
