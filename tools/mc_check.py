"""Is a checkpoint's Monte-Carlo-dropout uncertainty worth filtering consistency targets with? Per case: T passes with
dropout on and the plain (dropout-off) prediction, then

(a) each pass's agreement with the plain prediction: its Dice against the plain label map (mean over the foreground
    classes) and the share of the plain foreground it labels otherwise; a pass "disagrees" above --disagree (0.2);
(b) how well the uncertainty U (entropy of the mean softmax of the passes, as UA-MT's teacher and predict.py compute
    it) ranks the plain prediction's wrong pixels: the AUROC of U against the error map (Mann-Whitney U / (n_pos
    n_neg), ties counted half), where the case has a reference;
(c) the mean U inside the structures, in a border band (within --band pixels, chessboard distance, of a pixel of
    another class) and in the background, on the reference (else on the plain prediction).

    python3 -m tools.mc_check --checkpoint model/camus_val/RUN/iter_4000.pth --root_path data/CAMUS_val \\
        --split test --passes 8 --out mc_check.json

The passes run as predict.py's do (dropout layers in training mode, BatchNorm on its running statistics, no input
noise), one sliding-window prediction each, on the network's grid; every number is taken on each case's original
grid, as test_LA.py's metrics. Frames (2D) and volumes (3D) alike. The network, its --dropout_* choice and the data
flags (--patch_size, --center_crop, --resize, --normalization) are the run's (run.json beside the checkpoint).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage, stats
from tqdm import tqdm

from dataloaders.flags import add_data_flags, resolve_patch_size
from dataloaders.sources import open_source
from evaluation.prediction import set_dropout
from evaluation.testing import add_blend_flag, fill_from_training, load_network, resolve_blend
from evaluation.windows import sliding_window_probability
from training.options import read_id_list
from utils.cli import DEVICE_HELP, Parser, check_device, default_device, run_guarded
from utils.errors import DataError
from utils.losses import predictive_entropy
from utils.threads import add_threads_flag

REGIONS = ("inside", "border", "background")


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a positive > score of a negative) + P(equal) / 2, from the ranks: (R_pos - n_pos (n_pos + 1) / 2)
    / (n_pos n_neg) with average ranks for ties (Mann-Whitney). NaN when either class is empty."""
    scores, positive = np.ravel(scores), np.ravel(positive).astype(bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = stats.rankdata(scores)  # 1-based, ties averaged
    u = float(ranks[positive].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def border_band(label: np.ndarray, width: int) -> np.ndarray:
    """Pixels (voxels) within `width` (chessboard distance) of a pixel of another class: the window of side
    2 width + 1 around them holds two labels. The array's edge is no boundary."""
    size = 2 * width + 1
    return ndimage.maximum_filter(label, size=size, mode="nearest") != ndimage.minimum_filter(
        label, size=size, mode="nearest"
    )


def region_masks(label: np.ndarray, width: int) -> dict[str, np.ndarray]:
    """inside: a structure (class > 0) off the band; border: the band; background: class 0 off the band."""
    band = border_band(label, width)
    return {"inside": (label > 0) & ~band, "border": band, "background": (label == 0) & ~band}


def pass_agreement(passed: np.ndarray, plain: np.ndarray, num_classes: int) -> tuple[float, float]:
    """(Dice of a pass's label map against the plain one, averaged over the foreground classes present in either
    (1 when none is), the share of the plain foreground the pass labels otherwise (NaN when the plain map has none))."""
    scores = []
    for c in range(1, num_classes):
        p, q = passed == c, plain == c
        total = int(p.sum()) + int(q.sum())
        if total:
            scores.append(2.0 * int((p & q).sum()) / total)
    foreground = plain > 0
    changed = float((passed[foreground] != plain[foreground]).mean()) if foreground.any() else math.nan
    return (float(np.mean(scores)) if scores else 1.0), changed


def mean_dice(prediction: np.ndarray, label: np.ndarray, num_classes: int) -> float:
    """The plain prediction's Dice against the reference, mean over the foreground classes (as pass_agreement)."""
    return pass_agreement(prediction, label, num_classes)[0]


def case_numbers(
    plain: np.ndarray,
    passes: list[np.ndarray],
    entropy: np.ndarray,
    label: np.ndarray | None,
    num_classes: int,
    disagree: float,
    band: int,
) -> dict[str, object]:
    """The numbers of one case from its plain label map, the passes' label maps, U and the reference (or None)."""
    agreement = [pass_agreement(p, plain, num_classes) for p in passes]
    regions = region_masks(label if label is not None else plain, band)
    row: dict[str, object] = {
        "pass_dice": [round(d, 6) for d, _ in agreement],
        "pass_changed": [round(c, 6) if not math.isnan(c) else None for _, c in agreement],
        "passes_disagreeing": sum(c > disagree for _, c in agreement if not math.isnan(c)),
        "regions_from": "reference" if label is not None else "prediction",
    }
    for name in REGIONS:
        inside = regions[name]
        row[f"entropy_{name}"] = float(entropy[inside].mean()) if inside.any() else None
    for c in range(1, num_classes):  # each structure's inside apart (LV cavity, myocardium, atrium)
        inside = regions["inside"] & ((label if label is not None else plain) == c)
        row[f"entropy_inside_{c}"] = float(entropy[inside].mean()) if inside.any() else None
    if label is not None:
        error = plain != label
        value = auroc(entropy, error)
        row["auroc"] = None if math.isnan(value) else value
        row["error_share"] = float(error.mean())
        row["plain_dice"] = mean_dice(plain, label, num_classes)
    return row


def _mean(values: list) -> float | None:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(kept)) if kept else None


def summarize(rows: dict[str, dict], passes: int, num_classes: int, disagree: float) -> dict[str, object]:
    """Means over the cases (a case without a value left out): per-frame AUROC, pass Dice, region entropies; and
    the share of all passes that disagree."""
    cases = list(rows.values())
    summary: dict[str, object] = {
        "cases": len(cases),
        "passes_per_case": passes,
        "disagree_above": disagree,
        "pass_dice": _mean([d for r in cases for d in r["pass_dice"]]),
        "share_of_passes_disagreeing": sum(r["passes_disagreeing"] for r in cases) / (passes * len(cases)),
        "cases_with_a_disagreeing_pass": sum(r["passes_disagreeing"] > 0 for r in cases),
        "auroc": _mean([r.get("auroc") for r in cases]),
        "auroc_cases": sum(r.get("auroc") is not None for r in cases),
        "plain_dice": _mean([r.get("plain_dice") for r in cases]),
    }
    names = [*(f"entropy_{n}" for n in REGIONS), *(f"entropy_inside_{c}" for c in range(1, num_classes))]
    for name in names:
        value = _mean([r[name] for r in cases])
        summary[name] = value
        summary[f"{name}_of_ln_k"] = None if value is None else value / math.log(num_classes)
    return summary


def mc_check_parser() -> argparse.ArgumentParser:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a run's iter_<N>.pth (run.json beside it: its network)")
    p.add_argument("--root_path", required=True, help="the data (test_LA.py's --root_path)")
    p.add_argument("--split", default="test", help="which <split>.list to read the cases from")
    p.add_argument("--ids_from", default="", help="a file of IDs (one a line, '#' comments): only these of --split")
    p.add_argument("--passes", type=int, default=8, help="T: Monte-Carlo dropout passes per case")
    p.add_argument("--disagree", type=float, default=0.2, help="a pass disagrees when it relabels more than this "
                   "share of the plain prediction's foreground")  # fmt: skip
    p.add_argument("--band", type=int, default=2, help="the border band's half-width in pixels (voxels)")
    p.add_argument("--seed", type=int, default=0, help="seeds the dropout draws")
    p.add_argument("--out", default="", help="write the JSON here (default: <run>/mc_check_<split>_<iter>.json)")
    add_data_flags(p, from_run=True)
    p.add_argument("--stride_xy", type=int, default=18, help="window step along x and y")
    p.add_argument("--stride_z", type=int, default=4, help="window step along z (3D only)")
    p.add_argument("--windows_per_batch", type=int, default=4, help="sliding windows per forward pass")
    add_blend_flag(p)
    p.add_argument("--device", default=default_device(), help=DEVICE_HELP)
    add_threads_flag(p)
    return p


def case_ids(args: argparse.Namespace, listed: list[str]) -> list[str]:
    if not args.ids_from:
        return listed
    wanted = read_id_list(Path(args.ids_from))
    missing = [i for i in wanted if i not in set(listed)]
    if missing:
        raise DataError(f"{args.ids_from}: {len(missing)} IDs not in {args.split}.list, e.g. {missing[0]}")
    return wanted


def mc_check(args: argparse.Namespace) -> dict[str, object]:
    checkpoint = Path(args.checkpoint)
    check_device(args.device)
    if args.passes < 2:
        raise DataError(f"--passes {args.passes}: give 2 or more")
    if not checkpoint.is_file():
        raise DataError(f"{checkpoint}: checkpoint not found")
    net, num_classes = load_network(checkpoint, args.device, has_dropout=True)
    fill_from_training(args, checkpoint, ("patch_size", "center_crop", "resize", "normalization"))
    args.patch_size = resolve_patch_size(args.patch_size, net.dimensions)
    source = open_source(args.root_path, num_classes, args.center_crop, args.resize, args.normalization or "zscore")
    ids = case_ids(args, source.list_ids(args.split))
    if not ids:
        raise DataError(f"{args.root_path}: --split {args.split} lists no case")

    def probability(image: np.ndarray, case_id: str) -> torch.Tensor:
        p = sliding_window_probability(
            net, image, args.patch_size, args.stride_xy, args.stride_z, num_classes, args.device,
            args.windows_per_batch, resolve_blend(args.blend, net.dimensions),
        )  # fmt: skip
        return source.probability_to_original(case_id, p).float()

    torch.manual_seed(args.seed)
    rows = {}
    with torch.inference_mode():
        for case_id in tqdm(ids, ncols=90, desc="mc_check"):
            image, label = source.read(case_id)
            label = source.original_label(case_id, label) if source.has_label(case_id) else None
            set_dropout(net, False)
            plain = probability(image, case_id).argmax(0).cpu().numpy()
            set_dropout(net, True)
            try:
                total, passes = None, []
                for _ in range(args.passes):
                    p = probability(image, case_id)
                    passes.append(p.argmax(0).cpu().numpy())
                    total = p if total is None else total + p
            finally:
                set_dropout(net, False)
            entropy = predictive_entropy((total / args.passes)[None])[0, 0].cpu().numpy()
            rows[case_id] = case_numbers(plain, passes, entropy, label, num_classes, args.disagree, args.band)
    summary = summarize(rows, args.passes, num_classes, args.disagree)
    result = {
        "checkpoint": str(checkpoint.resolve()),
        "root_path": args.root_path,
        "split": args.split,
        "ids_from": args.ids_from,
        "passes": args.passes,
        "disagree": args.disagree,
        "band": args.band,
        "seed": args.seed,
        "num_classes": num_classes,
        "dropout": asdict(net.dropout_spec) if hasattr(net, "dropout_spec") else "the network's own",
        "grid": "each case's original grid (as test_LA.py's metrics)",
        "summary": summary,
        "cases": rows,
    }
    out = Path(args.out) if args.out else checkpoint.parent / f"mc_check_{args.split}_{checkpoint.stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print_summary(summary, out)
    return result


def _fmt(value: object) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def print_summary(summary: dict[str, object], out: Path) -> None:
    s = summary
    print(
        f"{s['cases']} cases x {s['passes_per_case']} passes: pass Dice vs plain {_fmt(s['pass_dice'])}; "
        f"{_fmt(s['share_of_passes_disagreeing'])} of the passes relabel > {s['disagree_above']:g} of the plain "
        f"foreground ({s['cases_with_a_disagreeing_pass']} cases with one)"
    )
    print(f"AUROC of U vs the plain prediction's errors: {_fmt(s['auroc'])} (mean over {s['auroc_cases']} cases)")
    print(f"plain Dice (mean over cases and foreground classes): {_fmt(s['plain_dice'])}")
    entropy = ", ".join(
        f"{k[len('entropy_') :]} {_fmt(s[k])} ({_fmt(s[k + '_of_ln_k'])} of ln K)"
        for k in s
        if k.startswith("entropy_") and not k.endswith("_of_ln_k")
    )
    print(f"mean U: {entropy}")
    print(f"per case: {out}")


def main() -> None:
    args = mc_check_parser().parse_args()
    run_guarded(lambda: mc_check(args), threads=args.threads)


if __name__ == "__main__":
    main()
