"""tools/mc_check.py's numbers of several settings side by side, and each setting's per-frame AUROC against the
first's, paired over frames (the project's Wilcoxon: evaluation/results.py paired_differences).

    python3 -m tools.mc_compare results/uamt_frames_validation drop_today_s1337 drop_elem01_s1337
    python3 -m tools.mc_compare results/uamt_frames_validation \\
        drop_today_s1337,drop_today_s1338,drop_today_s1339 drop_elem01_s1337,drop_elem01_s1338,drop_elem01_s1339

Each name is a run folder under ROOT holding mc_check.json (tools.mc_check --out), or several joined by commas (one
setting's seeds): each frame's numbers are then averaged over them before the means and the test.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from evaluation.results import paired_differences
from utils.errors import DataError

CHECK_FILE = "mc_check.json"
SHOWN = ("auroc", "plain_dice", "entropy_inside", "entropy_border", "entropy_background")


def pooled(root: Path, name: str) -> tuple[dict[str, dict[str, float]], float]:
    """frame -> metric -> its mean over the runs of `name` (NaN where undefined), and the share of disagreeing
    passes over all the runs' passes."""
    reports = []
    for part in name.split(","):
        path = root / part / CHECK_FILE
        if not path.is_file():
            raise DataError(f"{path}: not found (run tools.mc_check --out {path})")
        reports.append(json.loads(path.read_text()))
    frames = list(reports[0]["cases"])
    if any(list(r["cases"]) != frames for r in reports):
        raise DataError(f"{name}: the runs' mc_check.json cover different frames")

    def value(report: dict, frame: str, metric: str) -> float:
        v = report["cases"][frame].get(metric)
        return math.nan if v is None else float(v)

    cases = {
        f: {m: float(np.nanmean([value(r, f, m) for r in reports])) if any(
            r["cases"][f].get(m) is not None for r in reports) else math.nan for m in SHOWN}
        for f in frames
    }  # fmt: skip
    disagreeing = sum(r["summary"]["share_of_passes_disagreeing"] for r in reports) / len(reports)
    return cases, disagreeing


def line(name: str, cases: dict[str, dict[str, float]], disagreeing: float) -> str:
    means = {m: float(np.nanmean([c[m] for c in cases.values()])) for m in SHOWN}
    return (
        f"{name:40s} auroc {means['auroc']:.4f} dice {100 * means['plain_dice']:6.2f} passes>thr {disagreeing:.3f} "
        f"U in/border/bg {means['entropy_inside']:.3f}/{means['entropy_border']:.3f}/{means['entropy_background']:.3f}"
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        raise SystemExit(__doc__)
    root, names = Path(argv[0]), argv[1:]
    try:
        reference = None
        for name in names:
            cases, disagreeing = pooled(root, name)
            text = line(name, cases, disagreeing)
            if reference is None:
                reference = {f: c["auroc"] for f, c in cases.items()}
            else:
                difference, _, p = paired_differences({f: c["auroc"] for f, c in cases.items()}, reference)
                text += f"  auroc vs {names[0]}: {difference.mean():+.4f} p={p:.3g} ({len(difference)} frames)"
            print(text)
    except DataError as error:
        raise SystemExit(f"error: {error}") from error


if __name__ == "__main__":
    main()
