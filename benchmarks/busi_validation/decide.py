"""BUSI validation (issue 29): the rule of README.md applied to the kept runs, one stage after the other.

    python3 -m benchmarks.busi_validation.decide               # reads results/busi_val_{a,b,c}/
    python3 -m benchmarks.busi_validation.decide --results DIR --models DIR    # other folders

Prints each stage's figures and its outcome, or what is missing (the run_table command that makes it). The criterion
is the `supervised:70` row's mean Dice over the validation split's lesion frames, averaged over its seeds; the frame
specificity is pooled over the same runs; the floor is the chosen recipe's `supervised:367` lesion-frame Dice.
Nothing here reads BUSI's test.list.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.results import RunResult, load_run
from utils.errors import DataError

REPO = Path(__file__).resolve().parents[2]
GEOMETRIES = ("b", "c", "a")  # the order of preference, cheapest first (README amendment 2; was A, B, C)
SEEDS = (1337, 1338, 1339)
MARGIN = 0.01  # a later candidate must beat the earlier by more than this; within it, frame specificity decides
SCREEN_WINDOW = 0.02  # stage 1: the seed-1337 best and every candidate within this go on to three seeds
FLOOR = 0.70  # supervised:367 on lesion frames (issue 29's floor)
POSTPROCESSING = ("none", "lcc")
MIN_LESIONS = (1, 20, 50, 100, 200)


@dataclass(frozen=True)
class Figures:
    """A row's figures over its seeds: the lesion-frame Dice (mean over seeds, and their spread), the frame
    specificity pooled over the seeds' clean frames, and the lesion-frame Dice of benign and malignant frames."""

    criterion: float
    spread: float
    specificity: float
    benign: float
    malignant: float
    seeds: int

    def line(self, name: str) -> str:
        return (f"{name:34s} lesion-frame Dice {100 * self.criterion:6.2f} (± {100 * self.spread:.2f}, "
                f"{self.seeds} seeds)  specificity {100 * self.specificity:6.2f}  benign {100 * self.benign:6.2f}  "
                f"malignant {100 * self.malignant:6.2f}")  # fmt: skip


def lesion_dice(run: RunResult, kind: str = "") -> float:
    """The run's mean Dice over the frames with a lesion (reference not empty), of one class of frame if `kind`
    (benign, malignant: the ID's middle part)."""
    values = [c["dice"] for i, c in run.cases.items() if not c["reference_empty"] and (not kind or f"_{kind}_" in i)]
    return float(np.mean(values)) if values else math.nan


def figures(runs: list[RunResult]) -> Figures:
    clean = [c for r in runs for c in r.cases.values() if c["reference_empty"]]
    per_seed = [lesion_dice(r) for r in runs]
    return Figures(
        criterion=float(np.mean(per_seed)),
        spread=float(np.std(per_seed)),
        specificity=sum(c["prediction_empty"] for c in clean) / len(clean) if clean else math.nan,
        benign=float(np.mean([lesion_dice(r, "benign") for r in runs])),
        malignant=float(np.mean([lesion_dice(r, "malignant") for r in runs])),
        seeds=len(runs),
    )


class Results:
    """The kept runs (tools/run_table.py's layout under `root`, else the run folders under `models`: stage 3's
    re-tests are there), with what is missing collected as the commands that make it."""

    def __init__(self, root: Path, models: Path):
        self.roots = (root, models)
        self.missing: list[str] = []

    def row(self, geometry: str, group: str, seeds: tuple[int, ...], test: str = "none") -> Figures | None:
        """The figures of `group` (e.g. 'supervised:70') of config busi_val_<geometry> over `seeds`, or None (and the
        command that makes the runs noted) while one is missing. `test`: the test folder's suffix (lcc, min50, ...)."""
        runs, absent = [], []
        for seed in seeds:
            exp = f"{group.replace(':', '_')}_seed{seed}"
            found = [r for r in self.roots if (r / f"busi_val_{geometry}" / exp / "run.json").is_file()]
            try:
                runs.append(load_run(found[0] / f"busi_val_{geometry}" / exp, postprocess=test))
            except (DataError, IndexError):
                absent.append(exp)
        if not absent:
            return figures(runs)
        if test == "none":
            seeds_left = " ".join(e.rsplit("_seed", 1)[1] for e in absent)
            self.missing.append(f"python3 -m tools.run_table --config busi_val_{geometry} --groups {group} "
                                f"--seeds {seeds_left}")  # fmt: skip
        else:
            post = "lcc" if test.startswith("lcc") else "none"
            min_lesion = test.rsplit("min", 1)[1] if "min" in test else "1"
            iterations = 8000 if "s8000" in group else 4000
            self.missing += [f"python3 test_LA.py --root_path data/BUSI_val --model_dir model/busi_val_{geometry} "
                             f"--model {e} --iteration {iterations} --save_nifti 0 --postprocess {post} "
                             f"--min_lesion {min_lesion}" for e in absent]  # fmt: skip
        return None


def preferred(candidates: list[tuple[str, Figures]]) -> str:
    """The rule's choice among candidates in their order of preference: a later one replaces the current choice if
    its criterion is higher by more than MARGIN; within MARGIN, the higher frame specificity (ties: the earlier)."""
    chosen, best = candidates[0]
    for name, candidate in candidates[1:]:
        gain = candidate.criterion - best.criterion
        if gain > MARGIN or (abs(gain) <= MARGIN and candidate.specificity > best.specificity):
            chosen, best = name, candidate
    return chosen


def stage_geometry(results: Results) -> str | None:
    """Stage 1: the seed-1337 screen of A, B, C, then three seeds of the best and of those within SCREEN_WINDOW."""
    screen = {g: results.row(g, "supervised:70", SEEDS[:1]) for g in GEOMETRIES}
    for g in GEOMETRIES:  # what the screen has so far, the floor's stand-in beside it
        for group, found in (
            ("supervised:70", screen[g]),
            ("supervised:367", results.row(g, "supervised:367", SEEDS[:1])),
        ):
            if found is not None:
                print(found.line(f"stage 1 screen {g.upper()} {group}"))
    if any(f is None for f in screen.values()):
        return None
    best = max(f.criterion for f in screen.values())
    contenders = [g for g in GEOMETRIES if screen[g].criterion >= best - SCREEN_WINDOW]
    full = {g: results.row(g, "supervised:70", SEEDS) for g in contenders}
    if any(f is None for f in full.values()):
        return None
    for g, f in full.items():
        print(f.line(f"stage 1 {g.upper()} supervised:70"))
    return preferred([(g, full[g]) for g in contenders])


def stage_schedule(results: Results, geometry: str) -> str | None:
    """Stage 1b: 8000 iterations replace 4000 only if better by more than MARGIN on seed 1337, then on three seeds."""
    short = results.row(geometry, "supervised:70", SEEDS[:1])
    long = results.row(geometry, "supervised_s8000:70", SEEDS[:1])
    results.row(geometry, "supervised_s8000:367", SEEDS[:1])
    if short is None or long is None:
        return None
    print(long.line("stage 1b 8000 iterations, seed 1337"))
    if long.criterion - short.criterion <= MARGIN:
        return "supervised"
    long3, short3 = results.row(geometry, "supervised_s8000:70", SEEDS), results.row(geometry, "supervised:70", SEEDS)
    if long3 is None or short3 is None:
        return None
    return "supervised_s8000" if preferred([("4000", short3), ("8000", long3)]) == "8000" else "supervised"


def stage_loss(results: Results, geometry: str, row: str) -> str | None:
    """Stage 2: --dice batch against vnet at the chosen geometry and schedule, three seeds."""
    vnet, batch = results.row(geometry, f"{row}:70", SEEDS), results.row(geometry, f"{row}_batchdice:70", SEEDS)
    results.row(geometry, f"{row}_batchdice:367", SEEDS)
    if vnet is None or batch is None:
        return None
    print(batch.line(f"stage 2 {row}_batchdice:70"))
    return row if preferred([("vnet", vnet), ("batch", batch)]) == "vnet" else f"{row}_batchdice"


def stage_postprocess(results: Results, geometry: str, row: str) -> str | None:
    """Stage 3: --postprocess none|lcc x --min_lesion, re-tests of the chosen row's checkpoints."""
    settings = [(post, m) for post in POSTPROCESSING for m in MIN_LESIONS]
    suffix = {(post, m): "_".join(x for x in ("" if post == "none" else post, "" if m == 1 else f"min{m}") if x)
              for post, m in settings}  # fmt: skip
    found = {s: results.row(geometry, f"{row}:70", SEEDS, suffix[s] or "none") for s in settings}
    if any(f is None for f in found.values()):
        return None
    best = max(f.criterion for f in found.values())
    near = [s for s in settings if found[s].criterion >= best - MARGIN]  # in order: none before lcc, small P first
    post, m = max(near, key=lambda s: (found[s].specificity, -near.index(s)))
    return f"--postprocess {post} --min_lesion {m}"


def decide(root: Path, models: Path) -> str:
    results = Results(root, models)
    outcome = []
    geometry = stage_geometry(results)
    row = stage_schedule(results, geometry) if geometry else None
    loss = stage_loss(results, geometry, row) if row else None
    post = stage_postprocess(results, geometry, loss) if loss else None
    if geometry:
        outcome.append(f"geometry {geometry.upper()} (busi_val_{geometry})")
    if row:
        outcome.append("8000 iterations" if row.endswith("s8000") else "4000 iterations")
    if loss:
        outcome.append("--dice batch" if loss.endswith("batchdice") else "--dice vnet")
        floor = results.row(geometry, f"{loss}:367", SEEDS)
        if floor is not None:
            verdict = "reaches" if floor.criterion >= FLOOR else "MISSES"
            outcome.append(
                f"floor: {loss}:367 {100 * floor.criterion:.2f} lesion-frame Dice {verdict} {100 * FLOOR:.0f}"
            )
    if post:
        outcome.append(post)
    if results.missing:
        outcome.append("pending; next: " + "; ".join(dict.fromkeys(results.missing)))
    return "; ".join(outcome) if outcome else "nothing yet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=REPO / "results", help="the folder holding busi_val_a/, ...")
    parser.add_argument("--models", type=Path, default=REPO / "model", help="the run folders (stage 3's re-tests)")
    args = parser.parse_args()
    print(decide(args.results, args.models))


if __name__ == "__main__":
    main()
