"""Apply schedule.sh's decision rule (written there before the runs) to its kept validation results.

    python3 -m benchmarks.camus_validation.decide [results/camus_validation]

Prints each candidate's numbers (every frame averaged over the seeds first), then the schedule and the
post-processing the rule picks, or what is still missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from evaluation.results import paired_differences
from tools.compare import Pooled, done, summary_line

REPO = Path(__file__).resolve().parents[2]

SEEDS = (1337, 1338, 1339)
CANDIDATES = (4000, 8000)  # shortest first
ROWS = ("sup1400", "sup40", "uamt40")
FLOOR = 0.90  # sup1400's LV-cavity Dice (class 1)
GAIN = 0.01  # S8000 over S4000 for sup40 or uamt40, with p < 0.05
TEN_PATIENT_ROWS = ("sup40", "uamt40")  # the rows rule 2 (GAIN) and rule 2a (SCREEN_GAIN) compare
SCREEN_GAIN = 0.005  # rule 2a: seed 1337 of S8000 over S4000 on one of TEN_PATIENT_ROWS, else S8000 is dropped


def name(iterations: int, row: str, postprocess: str = "none", seeds: tuple[int, ...] = SEEDS) -> str:
    """The runs of one row at one candidate, as compare.py names them (seeds pooled; '@lcc': the lcc tests)."""
    return ",".join(f"s{iterations}_{row}_s{seed}" for seed in seeds) + ("" if postprocess == "none" else "@lcc")


def paired(a: Pooled, b: Pooled) -> tuple[float, float]:
    """Mean Dice of a - b over the frames, and the paired Wilcoxon p."""
    difference, _, p = paired_differences(a.dice(), b.dice())
    return float(difference.mean()), p


def screen(root: Path) -> str | None:
    """Rule 2a (the amendment, before any S8000 run): 'drop' when seed 1337 of S8000 gains < 0.5 Dice over S4000 on
    both sup40 and uamt40, 'pass' when one gains more, None while its runs are missing."""
    short, long = CANDIDATES
    seed1 = {(i, row): name(i, row, seeds=SEEDS[:1]) for i in CANDIDATES for row in TEN_PATIENT_ROWS}
    if not all(done(root, n) for n in seed1.values()):
        return None
    gains = {}
    for row in TEN_PATIENT_ROWS:
        gains[row] = Pooled(root, seed1[long, row]).mean("dice") - Pooled(root, seed1[short, row]).mean("dice")
        print(f"screen (seed {SEEDS[0]}) S{long} - S{short}, {row}: {100 * gains[row]:+.2f} Dice")
    return "pass" if any(gain >= SCREEN_GAIN for gain in gains.values()) else "drop"


def decide(root: Path) -> str:
    """The rule's outcome as one line ('pending: ...' while runs are missing)."""
    short, long = CANDIDATES
    candidates = CANDIDATES if screen(root) != "drop" else (short,)
    wanted = [name(i, r, p) for i in candidates for r in ROWS for p in ("none", "lcc")]
    missing = [n for n in wanted if not done(root, n)]
    if missing:
        return f"pending: {len(missing)} of {len(wanted)} seed-pooled tests missing, e.g. {missing[0]}"
    runs = {(i, r, p): Pooled(root, name(i, r, p)) for i in candidates for r in ROWS for p in ("none", "lcc")}
    for key, run in runs.items():
        print(summary_line(name(*key), run, None, ""))
    admissible = [i for i in candidates if runs[i, "sup1400", "none"].mean("dice_1") >= FLOOR]
    if not admissible:
        return "no candidate reaches the floor (sup1400 LV cavity >= 90): add the next candidate to schedule.sh"
    chosen = short if short in admissible else long
    if long in candidates:
        gains = {row: paired(runs[long, row, "none"], runs[short, row, "none"]) for row in TEN_PATIENT_ROWS}
        for row, (gain, p) in gains.items():
            print(f"S{long} - S{short}, {row}: {100 * gain:+.2f} Dice, p = {p:.3g}")
        if long in admissible and any(gain >= GAIN and p < 0.05 for gain, p in gains.values()):
            chosen = long
    keeps = all(
        round(100 * runs[chosen, r, "lcc"].mean("dice"), 2) >= round(100 * runs[chosen, r, "none"].mean("dice"), 2)
        for r in ROWS
    )
    post = "lcc" if keeps else "none"
    dropped = "" if long in candidates else f" (S{long} dropped by the seed-{SEEDS[0]} screen, rule 2a)"
    return f"schedule S{chosen} ({chosen} iterations, lr x0.1 at {chosen // 2}){dropped}; --postprocess {post}"


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "results" / "camus_validation"
    print(decide(root))


if __name__ == "__main__":
    main()
