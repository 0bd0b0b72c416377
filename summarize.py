"""Table of finished, tested runs (mean ± std over seeds) and paired Wilcoxon tests between methods, from run
folders or from the small results kept under results/ (run.json, test_iter_<N>/test.json and metrics.csv).

python3 summarize.py results/la_half/* --compare uamt_unlabel:16 supervised:16 --out table.md --figure dice.png
"""

import argparse
from pathlib import Path

from benchmarks.arenas import DISPLAY_NAMES
from evaluation.results import (
    gap_closed,
    group_runs,
    load_run,
    paired_tests_table,
    paired_wilcoxon,
    per_seed_table,
    results_table,
    splice,
    strip_plot,
)
from utils.cli import Parser, run_guarded
from utils.errors import DataError


def summarize(args: argparse.Namespace) -> str:
    groups = group_runs(load_run(path, args.split, args.postprocess) for path in args.runs)
    text = results_table(groups, args.expect or (), args.seeds, DISPLAY_NAMES, args.retired or ())
    ordered = {g: groups[g] for g in (args.expect or []) if g in groups} | groups  # the table's order
    if any(len(runs) > 1 for runs in groups.values()):
        text += f"\n\n{args.metric} of each run, by seed:\n\n" + per_seed_table(ordered, args.metric)
    if args.compare:
        unknown = [g for pair in args.compare for g in pair if g not in groups]
        if unknown and not args.expect:
            raise DataError(f"--compare {unknown[0]}: no such group; the runs hold {', '.join(groups)}")
        tests = [paired_wilcoxon(groups[a], groups[b], args.metric) for a, b in args.compare if {a, b} <= set(groups)]
        text += "\n\nPaired Wilcoxon signed-rank tests over the test cases (each case averaged over seeds):\n\n"
        text += paired_tests_table(tests) if tests else "none yet: no pair has both groups."
    if args.gap and set(args.gap) <= set(groups):
        low, semi, high = args.gap
        share = gap_closed(groups, low, semi, high, args.metric)
        text += f"\n\n`{semi}` closes {100 * share:.1f} % of the {args.metric} gap from `{low}` to `{high}`."
    if args.figure:
        strip_plot(ordered, args.figure, args.metric, args.title)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.splice:  # RESULTS.md's copy of this table, between markers named by --out
        if not splice(args.splice, args.out, text):
            print(f"{args.splice}: no <!-- BEGIN {args.out} --> ... <!-- END {args.out} --> markers; not spliced")
    return text


if __name__ == "__main__":
    parser = Parser(description=__doc__)
    parser.add_argument("runs", nargs="+", help="run folders (model/<exp>), each trained and tested at its end")
    parser.add_argument("--split", default="test", help="the list the runs were tested on")
    parser.add_argument("--postprocess", choices=["none", "lcc"], default="none",
                        help="lcc: read the tests of test_LA.py --postprocess lcc (<split>_iter_<N>_lcc/)")  # fmt: skip
    parser.add_argument("--compare", nargs=2, action="append", metavar=("A", "B"), help="groups, e.g. uamt_unlabel:16")
    parser.add_argument("--metric", default="dice", help="metric of the paired tests, the gap and the figure")
    parser.add_argument("--expect", nargs="+", help="groups of the table in order; those without runs show as pending")
    parser.add_argument("--seeds", type=int, help="seeds each group should have (fewer: marked pending)")
    parser.add_argument("--retired", action="append", metavar="GROUP", help="a group given no more seeds: marked "
                        "retired instead of pending (benchmarks/arenas.py RETIRED)")  # fmt: skip
    parser.add_argument("--gap", nargs=3, metavar=("LOW", "SEMI", "HIGH"),
                        help="report the share of the LOW -> HIGH gap that SEMI closes, e.g. supervised:16 "
                        "uamt_unlabel:16 supervised:80")  # fmt: skip
    parser.add_argument("--figure", help="write a per-case strip plot (PNG) here (needs matplotlib)")
    parser.add_argument("--title", default="", help="the figure's title")
    parser.add_argument("--out", help="also write the markdown here")
    parser.add_argument("--splice", help="and put it into this markdown file (e.g. RESULTS.md) between the lines "
                        "<!-- BEGIN OUT --> and <!-- END OUT -->, OUT as given to --out")  # fmt: skip
    args = parser.parse_args()
    if args.splice and not args.out:
        parser.error("--splice needs --out: the markers in the document are named by the table's --out path")
    run_guarded(lambda: summarize(args))
