"""A validation root: a data folder of links to some of another's frames, with its own train.list and test.list (the
validation split), as the CAMUS and BUSI validation records build them; the source's test.list is never read."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path


def write_validation_root(
    source: Path,
    out: Path,
    ids: Iterable[str],
    train: list[str],
    validation: list[str],
    find: Callable[[Path, str], Path | None],
) -> None:
    """`out`/images and `out`/masks: links to the frames of `ids` in `source` (`find(folder, ID)` names the file; an
    image it cannot find is refused, a mask it cannot find is an unlabelled frame); `out`/train.list holds `train`,
    `out`/test.list `validation`."""
    ids = list(ids)
    for folder in ("images", "masks"):
        (out / folder).mkdir(parents=True, exist_ok=True)
        for case_id in ids:
            target = find(source / folder, case_id)
            if target is None:
                if folder == "images":
                    raise SystemExit(f"error: {source / 'images'}: no image for {case_id}")
                continue  # an unlabelled frame
            link = out / folder / target.name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(target.resolve())
    (out / "train.list").write_text("".join(f"{i}\n" for i in train))
    (out / "test.list").write_text("".join(f"{i}\n" for i in validation))
