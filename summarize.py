"""Table of finished, tested runs (mean ± std over seeds) and paired Wilcoxon tests between methods.

python3 summarize.py model/la_half/* --compare uamt_unlabel:16 supervised:16 --out results_table.md
"""

import argparse
from pathlib import Path

from dataloaders.la_heart import DataError
from utils.cli import Parser
from utils.results import group_runs, load_run, paired_tests_table, paired_wilcoxon, results_table
from utils.training import run_guarded


def summarize(args: argparse.Namespace) -> str:
    groups = group_runs(load_run(path, args.split) for path in args.runs)
    text = results_table(groups)
    if args.compare:
        unknown = [g for pair in args.compare for g in pair if g not in groups]
        if unknown:
            raise DataError(f"--compare {unknown[0]}: no such group; the runs hold {', '.join(groups)}")
        tests = [paired_wilcoxon(groups[a], groups[b], args.metric) for a, b in args.compare]
        text += "\n\nPaired Wilcoxon signed-rank tests over the test cases (each case averaged over seeds):\n\n"
        text += paired_tests_table(tests)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return text


if __name__ == "__main__":
    parser = Parser(description=__doc__)
    parser.add_argument("runs", nargs="+", help="run folders (model/<exp>), each trained and tested at its end")
    parser.add_argument("--split", default="test", help="the list the runs were tested on")
    parser.add_argument("--compare", nargs=2, action="append", metavar=("A", "B"), help="groups, e.g. uamt_unlabel:16")
    parser.add_argument("--metric", default="dice", help="metric of the paired tests")
    parser.add_argument("--out", help="also write the markdown here")
    args = parser.parse_args()
    run_guarded(lambda: summarize(args))
