"""The logged training scalars of runs (their log.txt), averaged over blocks of 100 iterations: supervised loss,
student and teacher hard Dice on the labelled items, lambda(t), the weighted consistency, the kept (certain) share,
and the share of the consistency items that student and teacher call foreground.

    python3 -m benchmarks.hc18_validation.curves model/inv uamt_default uamt_b6l4_lam
"""

import sys
from pathlib import Path

import numpy as np

from tools.log_means import logged

KEYS = ("loss/loss_seg_dice", "dice/student_labelled", "dice/teacher_labelled", "train/consistency_weight",
        "train/consistency_loss", "uncertainty/mask_per", "foreground/student", "foreground/teacher")  # fmt: skip


def main() -> None:
    root = Path(sys.argv[1])
    for name in sys.argv[2:]:
        rows = logged(root / name)
        keys = [k for k in KEYS if any(k in r for r in rows.values())]
        print(name)
        for low in range(0, max(rows), 100):
            block = [rows[i] for i in range(low + 1, low + 101) if i in rows]
            means = {k: np.mean([r[k] for r in block if k in r] or [np.nan]) for k in keys}
            print(f"  {low + 1:4d}-{low + 100:4d} " + " ".join(f"{k.split('/')[-1]} {v:.4f}" for k, v in means.items()))


if __name__ == "__main__":
    main()
