"""Issue 13's validation runs: mean Dice, recall, precision and 95HD of each run's final iteration over the
validation frames, and a paired Wilcoxon (over frames) of each run against the first.

    python3 benchmarks/hc18_validation/compare.py model/inv sup_bs4 uamt_default sup_bs2

A name may be several runs joined by commas (e.g. one setting's seeds): each frame's metrics are then averaged over
them before the means and the test.
"""

import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from evaluation.results import load_run


class Pooled:
    """The per-frame metrics of one run, or averaged over several (comma-separated names)."""

    def __init__(self, root: Path, name: str):
        runs = [load_run(root / part) for part in name.split(",")]
        self.cases = {
            i: {m: float(np.mean([r.cases[i][m] for r in runs])) for m in runs[0].cases[i]} for i in runs[0].cases
        }


def main() -> None:
    root, names = Path(sys.argv[1]), sys.argv[2:]
    reference = Pooled(root, names[0])
    for name in names:
        if not all((root / part / "run.json").is_file() for part in name.split(",")):
            print(f"{name}: not done")
            continue
        run = Pooled(root, name)
        ids = sorted(run.cases)

        mean = {m: float(np.nanmean([run.cases[i][m] for i in ids])) for m in ("dice", "recall", "precision", "hd95")}
        line = (
            f"{name:28s} dice {100 * mean['dice']:6.2f} recall {100 * mean['recall']:6.2f} precision "
            f"{100 * mean['precision']:6.2f} hd95 {mean['hd95']:6.1f}"
        )
        if name != names[0]:
            dice = np.array([run.cases[i]["dice"] for i in ids])
            ref = np.array([reference.cases[i]["dice"] for i in ids])
            line += f"  vs {names[0]}: {100 * (dice - ref).mean():+6.2f} p={stats.wilcoxon(dice, ref).pvalue:.3g}"
        print(line)


if __name__ == "__main__":
    main()
