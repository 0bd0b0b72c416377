"""BUSI (issue 29): the validation split and the labelled lists, whole near-duplicate groups, stratified by class.

    python3 -m benchmarks.busi_validation.make_lists            # the committed lists (from data/BUSI/train.list)
    python3 -m benchmarks.busi_validation.make_lists --root     # also data/BUSI_val/: links + train.list, test.list

Only BUSI's train.list is read; its test.list is never opened. The rule (RULE below, at the top of every list):
groups are '^(g\\d+)_' (the --group_by of BUSI's README); a group's stratum is its frames' class (benign, malignant,
normal) or "mixed" when they differ; each stratum gets round(fraction x its frames) by largest remainder so that the
strata sum to round(fraction x all frames); within a stratum the groups, sorted by name, are shuffled by
random.Random(seed) (29, 30, 31: SEED_* below) and taken in that order when they fit (taken + size <= target) until
the target is met.
"""

from __future__ import annotations

import argparse
import math
import random
import re
from pathlib import Path

from benchmarks.validation_root import write_validation_root
from training.options import case_groups, read_id_list

REPO = Path(__file__).resolve().parents[2]

GROUP_BY = r"^(g\d+)_"  # BUSI IDs: g000_benign_001
CLASS = re.compile(r"^g\d+_([a-z]+)_\d+$")
# Fixed before any list was drawn (29: the number); one seed per list, so the lists are drawn independently.
SEED_VALIDATION, SEED_ARENA_LABELLED, SEED_VALIDATION_LABELLED = 29, 30, 31
FRACTION = 0.2  # the validation split's share of train.list, and the labelled share of a training list
RULE = (
    "# {what}: {frames} of the {total} frames of {origin},\n"
    "# {groups} whole groups (--group_by '{pattern}'); frames by class: {strata}.\n"
    "# Rule: groups stratified by class (a group of several classes: 'mixed'); per stratum round({fraction} x its\n"
    "# frames) by largest remainder; groups sorted by name, shuffled by random.Random({seed}), taken when they fit\n"
    "# (taken + size <= target). Written by benchmarks/busi_validation/make_lists.py.\n"
)


def frame_class(case_id: str) -> str:
    """benign, malignant or normal, from the ID."""
    match = CLASS.match(case_id)
    if not match:
        raise SystemExit(f"error: {case_id}: not a BUSI ID g<GGG>_<class>_<NNN>")
    return match.group(1)


def strata(ids: list[str], origin: str, pattern: str = GROUP_BY) -> dict[str, dict[str, list[str]]]:
    """stratum -> group -> its IDs (in list order); a group whose frames differ in class is in stratum "mixed"."""
    groups: dict[str, list[str]] = {}
    for case_id, group in case_groups(pattern, ids, origin).items():
        groups.setdefault(group, []).append(case_id)
    by_stratum: dict[str, dict[str, list[str]]] = {}
    for group, frames in groups.items():
        classes = {frame_class(i) for i in frames}
        stratum = classes.pop() if len(classes) == 1 else "mixed"
        by_stratum.setdefault(stratum, {})[group] = frames
    return dict(sorted(by_stratum.items()))


def targets(sizes: dict[str, int], fraction: float) -> dict[str, int]:
    """Frames to take per stratum: floor(fraction x size), then one more for the largest remainders until the sum is
    round(fraction x total) (ties: the stratum named first)."""
    exact = {s: fraction * n for s, n in sizes.items()}
    chosen = {s: math.floor(x) for s, x in exact.items()}
    missing = round(fraction * sum(sizes.values())) - sum(chosen.values())
    for s in sorted(exact, key=lambda s: (-(exact[s] - chosen[s]), s))[:missing]:
        chosen[s] += 1
    return chosen


def choose(ids: list[str], fraction: float, seed: int, origin: str) -> list[str]:
    """The IDs of whole groups chosen by the rule, in `ids` order."""
    by_stratum = strata(ids, origin)
    goal = targets({s: sum(map(len, g.values())) for s, g in by_stratum.items()}, fraction)
    rng = random.Random(seed)
    taken: set[str] = set()
    for stratum, groups in by_stratum.items():
        names = sorted(groups)
        rng.shuffle(names)
        count = 0
        for name in names:
            if count + len(groups[name]) <= goal[stratum]:
                taken.update(groups[name])
                count += len(groups[name])
            if count == goal[stratum]:
                break
    return [i for i in ids if i in taken]


def list_text(what: str, chosen: list[str], ids: list[str], origin: str, fraction: float, seed: int) -> str:
    """A list file: the rule as '#' lines (read_id_list and --labeled_list skip them), then the IDs."""
    counts = {}
    for case_id in chosen:
        counts[frame_class(case_id)] = counts.get(frame_class(case_id), 0) + 1
    header = RULE.format(
        what=what, frames=len(chosen), total=len(ids), origin=origin,
        groups=len(set(case_groups(GROUP_BY, chosen, origin).values())), pattern=GROUP_BY,
        strata=", ".join(f"{n} {c}" for c, n in sorted(counts.items())), fraction=fraction, seed=seed,
    )  # fmt: skip
    return header + "".join(f"{i}\n" for i in chosen)


def build_root(source: Path, out: Path, train: list[str], validation: list[str]) -> None:
    """`out`/images, masks: links to `source`'s frames of train.list; train.list, test.list (the validation)."""
    write_validation_root(source, out, train + validation, train, validation, lambda folder, i: folder / f"{i}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=REPO / "data" / "BUSI", help="BUSI (images/, masks/, lists)")
    parser.add_argument("--root", action="store_true", help="also write the validation root --out")
    parser.add_argument("--out", type=Path, default=REPO / "data" / "BUSI_val", help="the validation root")
    args = parser.parse_args()
    train_list = args.source / "train.list"
    if not train_list.is_file():
        raise SystemExit(f"error: {train_list} not found; link the data: ln -s ../../shared/data/BUSI data/BUSI")
    ids = read_id_list(train_list)
    here = Path(__file__).resolve().parent
    origin, val_origin = "BUSI train.list", "the validation root's train.list"
    validation = choose(ids, FRACTION, SEED_VALIDATION, origin)
    rest = [i for i in ids if i not in set(validation)]
    labelled = choose(ids, FRACTION, SEED_ARENA_LABELLED, origin)
    val_labelled = choose(rest, FRACTION, SEED_VALIDATION_LABELLED, val_origin)
    outputs = {
        here / "validation.list": list_text("validation split", validation, ids, origin, FRACTION, SEED_VALIDATION),
        REPO / "benchmarks" / f"busi_labelled_{len(labelled)}.list": list_text(
            "labelled frames of the arena", labelled, ids, origin, FRACTION, SEED_ARENA_LABELLED
        ),
        here / f"labelled_{len(val_labelled)}.list": list_text(
            "labelled frames of the validation runs", val_labelled, rest, val_origin, FRACTION,
            SEED_VALIDATION_LABELLED,
        ),
    }  # fmt: skip
    for path, text in outputs.items():
        path.write_text(text)
        print(f"{path}: {sum(1 for line in text.splitlines() if not line.startswith('#'))} IDs")
    if args.root:
        build_root(args.source, args.out, rest, validation)
        print(f"{args.out}: train.list {len(rest)} frames, test.list {len(validation)} frames (validation)")


if __name__ == "__main__":
    main()
