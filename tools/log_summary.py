"""Every logged training scalar of a run, averaged over fixed windows of iterations: <run>/log_summary.json, a small
file that results/ keeps beside run.json (tools/run_table.py writes it when it keeps a run's results), so that what
RESULTS.md says of a run's training can be rebuilt without its log.txt.

    python3 -m tools.log_summary model/camus/unimatch_40_seed1337                 # 10 equal windows
    python3 -m tools.log_summary model/la_half/cps_8_seed1337 --window 200 --out /tmp/cps.json

The windows (tools/log_means.py's window_means): --window N iterations each from iteration 1, by default the run's
iterations (its last logged one) in 10 equal windows (ceil(iterations / 10) each, the last one shorter where they do
not divide); and the first and the last 10 % (ceil(iterations / 10) iterations each). The file:

    {"run": <run folder name>, "iterations": N, "window": W,
     "first_10_percent": [first, last], "last_10_percent": [first, last],
     "scalars": {name: {"windows": [[first, last, mean], ...],
                        "first_10_percent": mean, "last_10_percent": mean}}}

A window in which a scalar was never logged (e.g. BCP's stage-2 losses during stage 1) is left out of its list; a
10 % span without it is null.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from tools.log_means import logged, window_means

NAME = "log_summary.json"
WINDOWS = 10  # equal windows by default
SHARE = 0.1  # the first and last spans: 10 % of the iterations


def span_mean(values: dict[int, dict[str, float]], tag: str, first: int, last: int) -> float | None:
    """The mean of `tag` over iterations first..last (window_means over that span alone), None if never logged."""
    span = {i - first + 1: values[i] for i in range(first, last + 1) if i in values}
    means = window_means(span, tag, last - first + 1)
    return means[0][2] if means else None


def summary(run: Path, window: int | None = None) -> dict:
    """The log_summary.json of a run folder that holds log.txt (see the module's doc)."""
    values = logged(run)
    iterations = max(values, default=0)
    span = max(1, math.ceil(iterations * SHARE))
    window = window or max(1, math.ceil(iterations / WINDOWS))
    first, last = (1, min(span, iterations)), (max(1, iterations - span + 1), iterations)
    tags = sorted({tag for scalars in values.values() for tag in scalars})
    return {
        "run": run.name,
        "iterations": iterations,
        "window": window,
        "first_10_percent": list(first),
        "last_10_percent": list(last),
        "scalars": {
            tag: {
                "windows": [list(w) for w in window_means(values, tag, window)],
                "first_10_percent": span_mean(values, tag, *first),
                "last_10_percent": span_mean(values, tag, *last),
            }
            for tag in tags
        },
    }


def write_summary(run: Path, out: Path | None = None, window: int | None = None) -> Path:
    """Write the run's summary (default: <run>/log_summary.json, beside run.json); returns its path."""
    out = out or run / NAME
    out.write_text(json.dumps(summary(run, window), indent=1) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run folder (holds log.txt)")
    parser.add_argument("--window", type=int, help="iterations per window; default: a tenth of the run's")
    parser.add_argument("--out", type=Path, help=f"default: <run>/{NAME}")
    args = parser.parse_args()
    if not (args.run / "log.txt").is_file():
        raise SystemExit(f"error: {args.run / 'log.txt'}: no such file")
    print(write_summary(args.run, args.out, args.window))


if __name__ == "__main__":
    main()
