"""Evaluate a checkpoint on a list of cases: sliding-window prediction, medpy metrics, metrics.csv and NIfTI files."""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from tqdm import tqdm

from dataloaders.checks import check_dataset
from dataloaders.la_heart import DataError, case_path, read_case
from networks.vnet import VNet
from utils.checkpoint import load_checkpoint
from utils.cpu_memory import reuse_freed_memory
from utils.evaluation import METRICS, case_metrics, sliding_window_probability, summarize, whole_volume_probability
from utils.training import default_device, machine_description, run_guarded


def testing_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Sliding-window evaluation of a checkpoint on test.list.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--root_path", default="data/LA", help="folder with test.list and the case folders")
    p.add_argument("--model", default="UAMT_unlabel", help="run name (--exp of training)")
    p.add_argument("--model_dir", default="model", help="folder of runs")
    p.add_argument("--iteration", type=int, default=6000, help="evaluate <model_dir>/<model>/iter_<N>.pth")
    p.add_argument("--patch_size", type=int, nargs=3, default=[112, 112, 80], metavar=("W", "H", "D"))
    p.add_argument("--stride_xy", type=int, default=18)
    p.add_argument("--stride_z", type=int, default=4)
    p.add_argument("--split", default="test", help="which <split>.list to evaluate")
    p.add_argument("--windows_per_batch", type=int, default=4, help="sliding windows per forward pass")
    p.add_argument(
        "--whole_volume",
        type=int,
        default=0,
        choices=[0, 1],
        help="1: one pass over the whole padded volume instead of sliding windows (writes <split>_iter_<N>_whole/)",
    )
    p.add_argument("--save_nifti", type=int, default=1, help="1: write <ID>_pred/_img/_gt.nii.gz per case")
    p.add_argument(
        "--check_data",
        choices=["headers", "full"],
        default="headers",
        help="check the cases before testing: file headers, or every voxel",
    )
    p.add_argument("--device", default=default_device())
    return p


def load_network(path: Path, device: torch.device | str) -> tuple[VNet, int]:
    """The test-time V-Net (no dropout) with the checkpoint's weights, and its number of classes."""
    state = load_checkpoint(path)
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path}: not a state_dict of tensors; pass an iter_<N>.pth written by the training scripts")
    num_classes = state["out_conv.weight"].shape[0] if "out_conv.weight" in state else 2
    net = VNet(n_classes=num_classes, has_dropout=False)
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise DataError(
            f"{path}: not a V-Net checkpoint of this architecture: {len(missing)} missing keys {missing[:2]}, "
            f"{len(unexpected)} unexpected {unexpected[:2]}, {len(wrong)} of another shape {wrong[:2]}"
        )
    net.load_state_dict(state)
    return net.to(device).eval(), num_classes


def write_csv(path: Path, ids: list[str], rows: list[dict[str, float]], means: dict[str, float]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case", *METRICS])
        for case_id, row in zip(ids, rows):
            writer.writerow([case_id, *(f"{row[m]:.6f}" for m in METRICS)])
        writer.writerow(["mean", *(f"{means[m]:.6f}" for m in METRICS)])


def evaluate(args: argparse.Namespace) -> dict[str, float]:
    """Evaluate and return the mean metrics; writes <run>/test_iter_<N>/metrics.csv (+ NIfTI files)."""
    started = time.perf_counter()
    run = Path(args.model_dir) / args.model
    if torch.device(args.device).type == "cpu":
        reuse_freed_memory()
    net, num_classes = load_network(run / f"iter_{args.iteration}.pth", args.device)
    # Every case is checked before anything is written, so a bad file cannot stop the run half-way.
    report = check_dataset(args.root_path, (args.split,), args.patch_size, args.check_data == "full", num_classes)
    ids = report.ids[args.split]
    out = run / (f"{args.split}_iter_{args.iteration}" + ("_whole" if args.whole_volume else ""))
    out.mkdir(parents=True, exist_ok=True)

    rows = []
    for case_id in tqdm(ids, ncols=90, desc="test"):
        image, label = read_case(case_path(args.root_path, case_id), num_classes)
        if args.whole_volume:
            probability = whole_volume_probability(net, image, args.device)
        else:
            probability = sliding_window_probability(
                net, image, args.patch_size, args.stride_xy, args.stride_z, num_classes, args.device,
                args.windows_per_batch,
            )  # fmt: skip
        prediction = probability.argmax(0).cpu().numpy().astype(np.uint8)
        rows.append(case_metrics(prediction == 1, label == 1))
        tqdm.write(f"{case_id}: " + ", ".join(f"{m} {rows[-1][m]:.4f}" for m in METRICS))
        if args.save_nifti:
            for suffix, volume in (("pred", prediction), ("img", image), ("gt", label)):
                nib.save(nib.Nifti1Image(volume, np.eye(4)), out / f"{case_id}_{suffix}.nii.gz")

    means, undefined = summarize(rows)
    write_csv(out / "metrics.csv", ids, rows, means)
    wall_s = time.perf_counter() - started
    settings = {k: vars(args)[k] for k in ("iteration", "split", "patch_size", "stride_xy", "stride_z", "whole_volume")}
    info = settings | {"cases": len(ids), "wall_s": round(wall_s, 1), "post_processing": "none"}
    info["machine"] = machine_description(torch.device(args.device))
    (out / "test.json").write_text(json.dumps(info, indent=1) + "\n")
    print("mean: " + ", ".join(f"{m} {means[m]:.4f}" for m in METRICS))
    for name, count in undefined.items():
        if count:
            print(
                f"{name}: undefined for {count} of {len(ids)} cases (empty prediction or label), left out of the mean"
            )
    print(f"per-case metrics: {out / 'metrics.csv'}" + (f"; predictions: {out}/" if args.save_nifti else ""))
    return means


def run_testing() -> None:
    args = testing_parser().parse_args()
    run_guarded(lambda: evaluate(args))
