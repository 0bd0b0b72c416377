"""Results over runs and seeds (summarize.py): mean ± std over seeds of the per-run means, and a paired Wilcoxon
signed-rank test over the test cases between two methods.

Only the final iteration of a run is ever read (`<run>/test_iter_<max_iterations>/metrics.csv`): nothing is chosen
on the test set.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from evaluation.lesions import OVERLAP_METRICS, detection_summary, has_clean_frames
from evaluation.metrics import METRICS
from networks import NETWORKS
from utils.errors import DataError

# Overlap metrics are reported in percent, as the paper's table does; distances in voxels of volumes, pixels of 2D
# frames (each case's own grid: test.json's metrics_grid).
PERCENT_METRICS = ("dice", "jaccard", "precision", "recall")
HEADINGS = {"dice": "Dice (%)", "jaccard": "Jaccard (%)", "hd95": "95HD ({unit})", "asd": "ASD ({unit})",
            "precision": "Precision (%)", "recall": "Recall (%)"}  # fmt: skip


def display_name(method: str, names: Mapping[str, str]) -> str:
    """A run's method as the tables name it (`names`: run.json's method -> its name, e.g. benchmarks/arenas.py's
    DISPLAY_NAMES): its own entry, else its method's with a network other than the V-Net named ("_<net>" appended to
    run.json's method), else run.json's name."""
    if method in names:
        return names[method]
    for net in NETWORKS:
        if method.endswith(f"_{net}") and method[: -len(net) - 1] in names:
            return f"{names[method[: -len(net) - 1]]}, {net}"
    return method


@dataclass
class RunResult:
    path: Path
    method: str
    labelled: int
    unlabelled: int
    seed: int
    train_wall_s: float
    test_wall_s: float
    cases: dict[str, dict[str, float]]  # case ID -> metric -> value (NaN where undefined)
    precision: str = "fp32"  # the training's --precision (runs before the flag: fp32)
    distance_unit: str = "vox"  # "px" for 2D frames (a 2-side patch)

    @property
    def group(self) -> str:
        """Runs of one method on one split of the data differ only by seed: '<method>:<labelled>', with '@bf16' for
        a run trained in bfloat16."""
        return f"{self.method}:{self.labelled}" + ("" if self.precision == "fp32" else f"@{self.precision}")

    def mean(self, metric: str) -> float:
        """The run's mean over the cases where the metric is defined (as test_LA.py reports it)."""
        values = np.array([case.get(metric, math.nan) for case in self.cases.values()])
        finite = values[np.isfinite(values)]
        return float(finite.mean()) if finite.size else math.nan

    def skipped(self, metric: str) -> int:
        """How many of the run's cases its mean of `metric` leaves out (undefined: NaN)."""
        return sum(not math.isfinite(case[metric]) for case in self.cases.values())


# The means of these leave out the cases where they are undefined: an empty prediction (precision, 95HD, ASD) or an
# empty label (95HD, ASD). Dice, Jaccard and recall score an empty prediction 0 and keep it.
SKIPPING_METRICS = ("hd95", "asd", "precision")
SKIPPED_HEADING = "n skipped: 95HD, ASD / precision"
SKIPPED_NOTE = (
    "`n skipped`: cases (summed over a row's seeds, of cases × seeds) that the 95HD and ASD means / the precision mean "
    "leave out because the metric is undefined there: an empty prediction (or, for the distances, an empty label). "
    "Those means are over the other cases and flatter a run that misses cases; Dice, Jaccard and recall count an empty "
    "prediction as 0."
)


def skipped_cell(runs: Sequence[RunResult]) -> str:
    """'d / p of n': cases the distance means (95HD and ASD: the same cases) and the precision mean of a group's runs
    leave out, of its case-runs."""
    distances = max(sum(r.skipped(m) for r in runs) for m in ("hd95", "asd"))
    precision = sum(r.skipped("precision") for r in runs)
    return f"{distances} / {precision} of {sum(len(r.cases) for r in runs)}"


def read_metrics_csv(path: Path) -> dict[str, dict[str, float]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    # the paper's six, then any per-class columns (<metric>_<c>, K > 2: evaluation/metrics.py's metric_columns)
    extra = [c for c in (rows[0] if rows else {}) if c != "case" and c not in METRICS]
    return {row["case"]: {m: float(row[m]) for m in (*METRICS, *extra)} for row in rows if row["case"] != "mean"}


def load_run(path: str | Path, split: str = "test", postprocess: str = "none") -> RunResult:
    """A finished run and the test of its final iteration (with `postprocess` lcc: test_LA.py --postprocess lcc's,
    in <split>_iter_<N>_lcc/)."""
    path = Path(path)
    if not (path / "run.json").is_file():
        raise DataError(f"{path}: no run.json; it is written when training finishes: finish (--resume auto) the run")
    info = json.loads((path / "run.json").read_text())
    final = info["iterations"]
    test = path / (f"{split}_iter_{final}" + ("" if postprocess == "none" else f"_{postprocess}"))
    if not (test / "metrics.csv").is_file():
        flag = "" if postprocess == "none" else f" --postprocess {postprocess}"
        raise DataError(
            f"{test / 'metrics.csv'}: missing; test the final iteration: "
            f"python3 test_LA.py --model_dir {path.parent} --model {path.name} --iteration {final}{flag}"
        )
    test_info = json.loads((test / "test.json").read_text()) if (test / "test.json").is_file() else {}
    return RunResult(
        path=path,
        method=info["method"],
        labelled=info["labelled"],
        unlabelled=info["unlabelled"],
        seed=info["seed"],
        train_wall_s=info["train_wall_s"],
        test_wall_s=test_info.get("wall_s", math.nan),
        cases=read_metrics_csv(test / "metrics.csv"),
        precision=info.get("args", {}).get("precision", "fp32"),
        distance_unit="px" if len(info.get("args", {}).get("patch_size", (0, 0, 0))) == 2 else "vox",
    )


def heading(metric: str, groups: dict[str, list[RunResult]]) -> str:
    """A metric's column heading, distances in the runs' unit (voxels, pixels, or both when they mix)."""
    units = sorted({r.distance_unit for runs in groups.values() for r in runs}, reverse=True) or ["vox"]
    return HEADINGS[metric].format(unit="/".join(units))


def display_scale(metric: str) -> float:
    """What a metric is multiplied by in tables and figures: 100 for the overlap metrics (percent), else 1."""
    return 100.0 if metric in PERCENT_METRICS else 1.0


def group_runs(runs: Iterable[RunResult]) -> dict[str, list[RunResult]]:
    """Runs by group, in order of first appearance; one run per seed in a group."""
    groups: dict[str, list[RunResult]] = {}
    for run in runs:
        same_seed = [r for r in groups.get(run.group, []) if r.seed == run.seed]
        if same_seed:
            raise DataError(f"{run.path} and {same_seed[0].path} are both seed {run.seed} of {run.group}: keep one")
        groups.setdefault(run.group, []).append(run)
    return groups


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for a single value) of finite values."""
    finite = np.array([v for v in values if math.isfinite(v)])
    if not finite.size:
        return math.nan, math.nan
    return float(finite.mean()), float(finite.std(ddof=1)) if finite.size > 1 else math.nan


def format_mean_std(mean: float, std: float, scale: float = 1.0) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean * scale:.2f}" + ("" if math.isnan(std) else f" ± {std * scale:.2f}")


# Per-structure columns of K-class runs (metrics.csv's <metric>_<c>): these metrics, for each foreground class c.
PER_CLASS_METRICS = ("dice", "hd95")


def class_columns(groups: dict[str, list[RunResult]]) -> list[str]:
    """The per-structure columns the runs have, e.g. dice_1 .. dice_3 then hd95_1 .. hd95_3 (none for 2 classes)."""
    names = {key for runs in groups.values() for r in runs for case in r.cases.values() for key in case}
    classes = sorted({int(k.rsplit("_", 1)[1]) for k in names if re.fullmatch(r"[a-z0-9]+_\d+", k)})
    return [f"{m}_{c}" for m in PER_CLASS_METRICS for c in classes if f"{m}_{c}" in names]


def class_heading(column: str, groups: dict[str, list[RunResult]]) -> str:
    """'Dice 1 (%)', '95HD 2 (px)': a per-structure column's heading, the class index as metrics.csv names it."""
    metric, c = column.rsplit("_", 1)
    return heading(metric, groups).replace(" (", f" {c} (", 1)


def results_table(
    groups: dict[str, list[RunResult]],
    expected: Sequence[str] = (),
    seeds_per_group: int | None = None,
    names: Mapping[str, str] | None = None,
    retired: Sequence[str] = (),
) -> str:
    """Markdown: one row per group, each metric as mean ± std over seeds of the per-run means (for K classes the
    means over the structures, then each structure's Dice and 95HD), and how many cases the 95HD / ASD / precision
    means left out (undefined there; SKIPPED_NOTE under the table when any did). Groups of `expected` without runs
    get a pending row, and with `seeds_per_group` a group short of seeds says how many it has. `names`: how rows
    are named (display_name); a `retired` group gets no more seeds and says so instead of pending."""
    names = names or {}
    per_class = class_columns(groups)
    metrics = [*METRICS, *per_class]
    header = ["method", "group", "labelled", "unlabelled", *(heading(m, groups) for m in METRICS),
              *(class_heading(c, groups) for c in per_class), "seeds", "train min/run", "test s/case",
              SKIPPED_HEADING]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    order = list(expected) + [g for g in groups if g not in expected]
    for group in order:
        runs = groups.get(group, [])
        if not runs:
            method, labelled = group.split("@")[0].split(":")
            pending = f"pending (0 of {seeds_per_group} seeds)" if seeds_per_group else "pending"
            cells = [display_name(method, names), f"`{group}`", labelled, "", *[""] * len(metrics), pending]
            lines.append("| " + " | ".join(cells + ["", "", ""]) + " |")
            continue
        first = runs[0]
        cells = [display_name(first.method, names), f"`{group}`", str(first.labelled), str(first.unlabelled)]
        for metric in metrics:
            scale = display_scale(metric.rsplit("_", 1)[0] if metric in per_class else metric)
            cells.append(format_mean_std(*mean_std([r.mean(metric) for r in runs]), scale))
        seeds = ", ".join(str(r.seed) for r in sorted(runs, key=lambda r: r.seed))
        if group in retired:
            seeds += f" (retired at {len(runs)} of {seeds_per_group or len(runs)} seeds)"
        elif seeds_per_group and len(runs) < seeds_per_group:
            seeds += f" (pending: {len(runs)} of {seeds_per_group} seeds)"
        cells.append(seeds)
        cells.append(f"{np.mean([r.train_wall_s for r in runs]) / 60:.1f}")
        cells.append(f"{np.mean([r.test_wall_s / len(r.cases) for r in runs]):.2f}")
        cells.append(skipped_cell(runs))
        lines.append("| " + " | ".join(cells) + " |")
    if any(r.skipped(m) for runs in groups.values() for r in runs for m in SKIPPING_METRICS):
        lines += ["", SKIPPED_NOTE]
    if any(has_clean_frames(r.cases.values()) for runs in groups.values() for r in runs):
        lines += ["", CLEAN_FRAMES_HEADING, "", clean_frames_table(groups, names), "", CLEAN_FRAMES_NOTE]
    return "\n".join(lines)


# Runs whose test set holds frames with an empty reference (clean frames) get a second table (evaluation/lesions.py).
CLEAN_FRAMES_HEADING = "All frames and lesion frames (reference non-empty), and detection:"
CLEAN_FRAMES_NOTE = (
    "Clean frames (an empty reference) score Dice = IoU = 1 when the prediction is empty too, 0 when it is not; "
    "precision is undefined (left out) on an empty prediction, recall on every clean frame. A frame is called "
    "positive when its prediction has at least `--min_lesion` pixels (test.json's min_lesion). Frame sensitivity: "
    "lesion frames called positive / lesion frames; specificity: clean frames called negative / clean frames; "
    "false-positive frames: clean frames called positive, of the clean frames, summed over the row's seeds. Lesions: "
    "connected components (8-connected in 2D, 26 in 3D), pooled over a run's frames; recall: reference lesions that a "
    "predicted component overlaps / reference lesions; precision: predicted components overlapping a reference lesion "
    "/ predicted components; F1: their harmonic mean. Other columns: mean ± std over seeds of the per-run values."
)


def clean_frames_table(groups: dict[str, list[RunResult]], names: Mapping[str, str] | None = None) -> str:
    """Markdown: for each group with runs, Dice, IoU, precision and recall on all frames and on lesion frames, then
    the frame- and lesion-level detection numbers of `detection_summary` (mean ± std over seeds; false-positive
    frames as 'k of n' summed over seeds). `names`: how rows are named (display_name)."""
    titles = {"dice": "Dice", "jaccard": "IoU", "precision": "Precision", "recall": "Recall"}
    overlap = [(f"{m}_{frames}", f"{titles[m]} {label} (%)") for m in OVERLAP_METRICS
               for frames, label in (("all", "all"), ("lesion_frames", "lesion frames"))]  # fmt: skip
    rates = [("frame_sensitivity", "frame sensitivity (%)"), ("frame_specificity", "frame specificity (%)")]
    lesions = [("lesion_recall", "lesion recall (%)"), ("lesion_precision", "lesion precision (%)"),
               ("lesion_f1", "lesion F1 (%)")]  # fmt: skip
    header = ["method", "group", "frames (clean)", *(h for _, h in overlap + rates), "false-positive frames",
              *(h for _, h in lesions)]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group, runs in groups.items():
        if any("reference_empty" not in case for r in runs for case in r.cases.values()):
            continue  # tested before metrics.csv had the detection columns: nothing to show
        summaries = [detection_summary(r.cases.values()) for r in runs]
        first = summaries[0]  # a group's runs share the test set
        cells = [
            display_name(runs[0].method, names or {}),
            f"`{group}`",
            f"{first['frames']} ({first['clean_frames']})",
        ]
        cells += [format_mean_std(*mean_std([s[key] for s in summaries]), 100.0) for key, _ in overlap + rates]
        false_positive, clean = (sum(s[key] for s in summaries) for key in ("false_positive_frames", "clean_frames"))
        cells.append(f"{false_positive} of {clean}")
        cells += [format_mean_std(*mean_std([s[key] for s in summaries]), 100.0) for key, _ in lesions]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_seed_table(groups: dict[str, list[RunResult]], metric: str = "dice") -> str:
    """Markdown: each group's per-run mean of `metric`, one column per seed, so that the spread between seeds (which
    the paired tests over cases do not see) is in view."""
    seeds = sorted({r.seed for runs in groups.values() for r in runs})
    scale = display_scale(metric)
    lines = ["| group | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|" + "---|" * (len(seeds) + 1)]
    for group, runs in groups.items():
        by_seed = {r.seed: r.mean(metric) * scale for r in runs}
        lines.append(f"| `{group}` | " + " | ".join(f"{by_seed[s]:.2f}" if s in by_seed else "–" for s in seeds) + " |")
    return "\n".join(lines)


@dataclass
class PairedTest:
    a: str
    b: str
    metric: str
    cases: int
    mean_difference: float  # a - b, over the paired cases
    median_difference: float
    statistic: float
    p_value: float


def per_case_means(runs: Sequence[RunResult], metric: str) -> dict[str, float]:
    """Each case's metric averaged over the group's seeds (NaN seeds left out)."""
    cases = runs[0].cases.keys()
    return {case: mean_std([r.cases[case][metric] for r in runs if case in r.cases])[0] for case in cases}


def paired_differences(a: Mapping[str, float], b: Mapping[str, float]) -> tuple[np.ndarray, float, float]:
    """The one paired comparison of the project: a − b per case over the cases where both are defined (finite), in
    case-ID order, and the two-sided Wilcoxon signed-rank test's statistic W and p over them (W = 0, p = 1 when every
    difference is 0: no evidence either way)."""
    cases = sorted(c for c in a if c in b and math.isfinite(a[c]) and math.isfinite(b[c]))
    differences = np.array([a[c] - b[c] for c in cases])
    if not np.any(differences):
        return differences, 0.0, 1.0
    result = stats.wilcoxon(differences)
    return differences, float(result.statistic), float(result.pvalue)


def paired_wilcoxon(a: Sequence[RunResult], b: Sequence[RunResult], metric: str = "dice") -> PairedTest:
    """Two-sided Wilcoxon signed-rank test of a vs b, paired by test case (each case's mean over seeds), over the
    cases where both are defined."""
    differences, statistic, p_value = paired_differences(per_case_means(a, metric), per_case_means(b, metric))
    if len(differences) < 2:
        raise DataError(
            f"{a[0].group} and {b[0].group} share {len(differences)} cases with a defined {metric}: need 2+"
        )
    return PairedTest(
        a=a[0].group,
        b=b[0].group,
        metric=metric,
        cases=len(differences),
        mean_difference=float(differences.mean()),
        median_difference=float(np.median(differences)),
        statistic=statistic,
        p_value=p_value,
    )


def paired_tests_table(tests: Sequence[PairedTest]) -> str:
    lines = ["| A | B | metric | cases | mean A − B | median A − B | W | p (two-sided) |", "|" + "---|" * 8]
    for t in tests:
        scale = display_scale(t.metric)
        lines.append(
            f"| `{t.a}` | `{t.b}` | {t.metric} | {t.cases} | {t.mean_difference * scale:+.2f} | "
            f"{t.median_difference * scale:+.2f} | {t.statistic:g} | {t.p_value:.3g} |"
        )
    return "\n".join(lines)


def gap_closed(groups: dict[str, list[RunResult]], low: str, semi: str, high: str, metric: str = "dice") -> float:
    """The share of the gap between `low` (few labels) and `high` (all labelled) that `semi` closes:
    (semi - low) / (high - low) of the means over seeds of the per-run means."""
    mean = {g: mean_std([r.mean(metric) for r in groups[g]])[0] for g in (low, semi, high)}
    return (mean[semi] - mean[low]) / (mean[high] - mean[low])


def strip_plot(groups: dict[str, list[RunResult]], path: str | Path, metric: str = "dice", title: str = "") -> None:
    """Per-case values of each group, seeds pooled, as a box plot with every case drawn over it (one colour a seed)."""
    import matplotlib  # a development dependency: figures are made by those who write RESULTS.md

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = display_scale(metric)
    names = list(groups)
    seeds = sorted({r.seed for runs in groups.values() for r in runs})
    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 + 1.1 * len(names)), 4.2), dpi=120)
    pooled = [[v * scale for r in groups[g] for v in (c[metric] for c in r.cases.values()) if math.isfinite(v)]
              for g in names]  # fmt: skip
    ax.boxplot(pooled, widths=0.55, showfliers=False, medianprops={"color": "black"})
    rng = np.random.default_rng(0)  # jitter only
    for i, g in enumerate(names, start=1):
        for r in groups[g]:
            values = [c[metric] * scale for c in r.cases.values() if math.isfinite(c[metric])]
            colour = f"C{seeds.index(r.seed)}"
            ax.scatter(i + rng.uniform(-0.18, 0.18, len(values)), values, s=11, alpha=0.7, color=colour,
                       label=f"seed {r.seed}")  # fmt: skip
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc="best")
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20, fontsize=8)
    ax.set_ylabel(heading(metric, groups) + " per test case")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def splice(document: str | Path, name: str, text: str) -> bool:
    """Put `text` between the lines `<!-- BEGIN name -->` and `<!-- END name -->` of a markdown document (RESULTS.md
    keeps each table of results/ so, rebuilt with it); the rest of the document stays. False: no such markers."""
    document = Path(document)
    begin, end = f"<!-- BEGIN {name} -->\n", f"\n<!-- END {name} -->"
    content = document.read_text()
    start, stop = content.find(begin), content.find(end)
    if start < 0 or stop < start:
        return False
    document.write_text(content[: start + len(begin)] + text.strip("\n") + content[stop:])
    return True
