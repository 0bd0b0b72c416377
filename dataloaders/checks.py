"""Dataset checks run when a script starts, and the standalone `check_data.py`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dataloaders.sources import Source, open_source
from utils.errors import DataError


@dataclass
class DatasetReport:
    ids: dict[str, list[str]]
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    smaller_than_patch: list[str] = field(default_factory=list)

    def describe(self) -> str:
        counts = ", ".join(f"{len(v)} {k}" for k, v in self.ids.items())
        if not self.shapes:
            return f"{counts} cases"
        sides = list(zip(*self.shapes.values()))
        span = " x ".join(f"{min(s)}..{max(s)}" for s in sides)
        return f"{counts} cases; {len(self.shapes)} checked, shapes {span}"


def check_dataset(
    root: str | Path | Source,
    inspect: Sequence[str] = ("train", "test"),
    patch_size: Sequence[int] | None = None,
    full: bool = False,
    num_classes: int = 2,
) -> DatasetReport:
    """Check the lists (present, no duplicates, no ID in both train and test) and the cases of the `inspect` splits:
    file headers (datasets, shapes, dtypes), or with `full` every voxel (finite image, labels in 0..C-1)."""
    source = root if isinstance(root, Source) else open_source(root, num_classes)
    ids = {split: source.list_ids(split) for split in dict.fromkeys(("train", "test", *inspect))}
    leaked = sorted(set(ids["train"]) & set(ids["test"]))
    if leaked:
        raise DataError(
            f"{source.list_origin('test')}: {len(leaked)} {'IDs are' if len(leaked) > 1 else 'ID is'} also in the "
            f"training set, read from {source.list_origin('train')} ({', '.join(leaked[:3])}); training on test "
            f"cases leaks them: remove them from one list"
        )
    report = DatasetReport(ids)
    for split in inspect:
        for case_id in ids[split]:
            shape = source.read(case_id)[0].shape if full else source.inspect(case_id)
            report.shapes[case_id] = shape
            if patch_size is not None and any(s <= p for s, p in zip(shape, patch_size)):
                report.smaller_than_patch.append(case_id)
    if report.smaller_than_patch:
        first = report.smaller_than_patch[0]
        print(
            f"note: {len(report.smaller_than_patch)} cases are not larger than the patch {tuple(patch_size)} on some "
            f"side (e.g. {first}: {report.shapes[first]}); they are zero-padded"
        )
    return report
