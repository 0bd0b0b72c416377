"""Means of logged training scalars over windows of iterations, from a run's log.txt: what RESULTS.md quotes of a
run's diagnostics (e.g. UniMatch's confidence-mask coverage over time).

    python3 -m tools.log_means model/la_half/unimatch_8_seed1337 unimatch/mask_ratio loss/loss_fp --window 200
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

LINE = re.compile(r"iteration (\d+): (.*)$")


def logged(run: Path) -> dict[int, dict[str, float]]:
    """iteration -> scalar -> value, from the loop's log.txt lines ("iteration N: name value, name value, ...")."""
    values: dict[int, dict[str, float]] = {}
    for line in (run / "log.txt").read_text().splitlines():
        match = LINE.search(line)
        if match:
            pairs = (item.rsplit(" ", 1) for item in match.group(2).split(", "))
            values[int(match.group(1))] = {name: float(value) for name, value in pairs}
    return values


def window_means(values: dict[int, dict[str, float]], tag: str, window: int) -> list[tuple[int, int, float]]:
    """(first, last, mean) of `tag` over iterations first..last, windows of `window` iterations from 1."""
    last = max(values, default=0)
    means = []
    for start in range(1, last + 1, window):
        xs = [values[i][tag] for i in range(start, min(start + window, last + 1)) if tag in values.get(i, {})]
        if xs:
            means.append((start, min(start + window - 1, last), sum(xs) / len(xs)))
    return means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run folder (holds log.txt)")
    parser.add_argument("tags", nargs="+", help="logged scalar names")
    parser.add_argument("--window", type=int, default=200, help="iterations per window")
    args = parser.parse_args()
    values = logged(args.run)
    windows = {tag: window_means(values, tag, args.window) for tag in args.tags}
    print("| iterations | " + " | ".join(args.tags) + " |")
    print("|---|" + "---|" * len(args.tags))
    for i, (first, last, _) in enumerate(windows[args.tags[0]]):
        cells = [f"{windows[t][i][2]:.4f}" if i < len(windows[t]) else "–" for t in args.tags]
        print(f"| {first}–{last} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
