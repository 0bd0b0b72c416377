"""CAMUS (issue 22): the validation root and the labelled lists of whole patients, for the arena and its validation.

    ln -s ../../shared/data/CAMUS data/CAMUS            # once, from the repository root (data/ is ignored)
    python3 -m benchmarks.camus_validation.make_root    # data/CAMUS_val/ and the validation's labelled lists
    python3 -m benchmarks.camus_validation.make_root --arena_lists   # also rewrite benchmarks/camus_labelled_*.list

The validation root holds links to the frames of train.list only: its train.list is the frames of the first 350
patients of CAMUS's train.list, its test.list those of the last 50. CAMUS's test.list is never opened.
Labelled sets take whole patients, spread evenly over a list's patients in list order (RULE below).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.validation_root import write_validation_root
from training.options import case_groups, parse_id_list, read_id_list

REPO = Path(__file__).resolve().parents[2]

GROUP_BY = r"^(patient\d+)_"  # CAMUS IDs: patient0001_2CH_ED
VALIDATION_PATIENTS = 50  # the last 50 patients of train.list (CAMUS's test.list has 50 too)
LABELLED_PATIENTS = (10, 40)  # 40 and 160 frames of the arena's 400 patients: 2.5 % and 10 %
RULE = (
    "# {frames} labelled frames: {n} whole patients of {origin}'s {total} (in list order), the i-th (i = 0..{last}) "
    "at position floor(i * {total} / {n}){every}.\n"
    "# Written by benchmarks/camus_validation/make_root.py; patients by --group_by '{pattern}'.\n"
)


def patients(ids: list[str], pattern: str = GROUP_BY, origin: str = "train.list") -> dict[str, list[str]]:
    """Each patient's IDs, patients in order of first appearance (a bad ID is refused by case_groups)."""
    frames: dict[str, list[str]] = {}
    for case_id, patient in case_groups(pattern, ids, origin).items():
        frames.setdefault(patient, []).append(case_id)
    return frames


def spread(items: list[str], n: int) -> list[str]:
    """n of `items` spread evenly: the i-th at position floor(i * len / n) (every k-th when n divides len)."""
    if not 0 < n <= len(items):
        raise ValueError(f"cannot take {n} of {len(items)}")
    return [items[i * len(items) // n] for i in range(n)]


def labelled_list(ids: list[str], n: int, origin: str, pattern: str = GROUP_BY) -> str:
    """The text of a --labeled_list file: the rule as '#' lines, then the frames of n patients spread over `ids`."""
    by_patient = patients(ids, pattern, origin)
    chosen = spread(list(by_patient), n)
    total = len(by_patient)
    every = f" (every {total // n}th patient)" if total % n == 0 else ""
    frames = [i for p in chosen for i in by_patient[p]]
    header = RULE.format(frames=len(frames), n=n, origin=origin, total=total, last=n - 1, every=every, pattern=pattern)
    return header + "".join(f"{i}\n" for i in frames)


def _frame_file(folder: Path, case_id: str) -> Path | None:
    found = sorted(folder.glob(f"{case_id}.*"))
    return found[0] if found else None


def build_validation_root(
    source: Path, out: Path, validation_patients: int = VALIDATION_PATIENTS, pattern: str = GROUP_BY
) -> tuple[list[str], list[str]]:
    """`out`/images, masks (links to `source`'s frames of train.list only), train.list (the first patients) and
    test.list (the last `validation_patients` patients of `source`/train.list). Returns (train IDs, validation IDs)."""
    ids = read_id_list(source / "train.list")
    by_patient = patients(ids, pattern, str(source / "train.list"))
    names = list(by_patient)
    if not 0 < validation_patients < len(names):
        raise SystemExit(f"error: --validation_patients {validation_patients}: train.list has {len(names)} patients")
    train = [i for p in names[:-validation_patients] for i in by_patient[p]]
    validation = [i for p in names[-validation_patients:] for i in by_patient[p]]
    write_validation_root(source, out, ids, train, validation, _frame_file)
    return train, validation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=REPO / "data" / "CAMUS", help="CAMUS (images/, masks/, lists)")
    parser.add_argument("--out", type=Path, default=REPO / "data" / "CAMUS_val", help="the validation root")
    parser.add_argument("--validation_patients", type=int, default=VALIDATION_PATIENTS)
    parser.add_argument("--lists_dir", type=Path, default=Path(__file__).resolve().parent, help="labelled_<N>.list")
    parser.add_argument(
        "--arena_lists", action="store_true", help="also write benchmarks/camus_labelled_<N>.list from train.list"
    )
    args = parser.parse_args()
    if not (args.source / "train.list").is_file():
        raise SystemExit(
            f"error: {args.source}/train.list not found; link the data: ln -s ../../shared/data/CAMUS data/CAMUS"
        )
    train, validation = build_validation_root(args.source, args.out, args.validation_patients)
    print(f"{args.out}: train.list {len(train)} frames, test.list {len(validation)} frames (validation)")
    write_lists(train, "the validation root's train.list", args.lists_dir / "labelled_{frames}.list")
    if args.arena_lists:
        ids = read_id_list(args.source / "train.list")
        write_lists(ids, "CAMUS train.list", REPO / "benchmarks" / "camus_labelled_{frames}.list")


def write_lists(ids: list[str], origin: str, path_format: Path) -> None:
    """A --labeled_list file per LABELLED_PATIENTS, named by its frame count."""
    for n in LABELLED_PATIENTS:
        text = labelled_list(ids, n, origin)
        path = Path(str(path_format).format(frames=len(parse_id_list(text))))
        path.write_text(text)
        print(f"{path}: {n} patients, {len(parse_id_list(text))} frames")


if __name__ == "__main__":
    main()
