"""Evaluate a checkpoint on a list of cases: sliding-window prediction, medpy metrics, metrics.csv and NIfTI files."""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from dataloaders.checks import check_dataset
from dataloaders.flags import add_data_flags, check_dimensions, resolve_patch_size
from dataloaders.sources import open_source
from evaluation.lesions import (
    DETECTION_COLUMNS,
    OVERLAP_METRICS,
    detection_summary,
    has_clean_frames,
    lesion_counts,
)
from evaluation.metrics import METRICS, class_metrics, metric_columns, summarize
from evaluation.postprocess import add_min_lesion_flag, add_postprocess_flag, apply_min_lesion, postprocess
from evaluation.windows import BLENDS, sliding_window_probability, whole_volume_probability
from networks import DEFAULT_NET, DropoutSpec, build_network
from utils.checkpoint import load_checkpoint, saved_iterations
from utils.cli import DEVICE_HELP, Parser, check_device, default_device, machine_description, run_guarded
from utils.cpu_memory import reuse_freed_memory
from utils.errors import DataError
from utils.precision import add_precision_flag, autocast, resolve_precision
from utils.threads import add_threads_flag

# Which grid metrics.csv is computed on, as test.json states it.
METRICS_GRID = (
    "each case's original grid: volumes as stored; 2D frames at their own size (class probabilities resized back "
    "bilinearly from --resize or --letterbox, its padding cut off, background outside --center_crop, then argmax; "
    "the mask as stored); distances in "
    "voxels (pixels) of that grid"
)


POSTPROCESS_TEXT = {
    "none": "none",
    "lcc": "the largest connected component of each foreground class kept (full connectivity), on each case's "
    "original grid, before the metrics",
}


def test_folder(
    split: str, iteration: int, whole_volume: bool = False, postprocessing: str = "none", min_lesion: int = 1
) -> str:
    """The folder of a test under the run: <split>_iter_<N>, with _whole for the whole-volume pass, _lcc for the
    largest-component post-processing and _min<P> for --min_lesion P > 1, so that a post-processed test never
    replaces the plain one."""
    return (
        f"{split}_iter_{iteration}"
        + ("_whole" if whole_volume else "")
        + ("" if postprocessing == "none" else f"_{postprocessing}")
        + ("" if min_lesion == 1 else f"_min{min_lesion}")
    )


def testing_parser() -> argparse.ArgumentParser:
    p = Parser(description="Sliding-window evaluation of a checkpoint on test.list.")
    p.add_argument("--root_path", default="data/LA", help="folder with test.list and the case folders")
    p.add_argument("--model", default="UAMT_unlabel", help="run name (--exp of training)")
    p.add_argument("--model_dir", default="model", help="folder of runs")
    p.add_argument("--iteration", type=int, default=6000, help="evaluate <model_dir>/<model>/iter_<N>.pth")
    add_data_flags(p, from_run=True)
    p.add_argument("--stride_xy", type=int, default=18, help="window step along x and y (larger: faster)")
    p.add_argument("--stride_z", type=int, default=4, help="window step along z (3D only)")
    p.add_argument("--split", default="test", help="which <split>.list to evaluate")
    p.add_argument("--windows_per_batch", type=int, default=4, help="sliding windows per forward pass")
    add_blend_flag(p)
    add_postprocess_flag(p, "; lcc writes <split>_iter_<N>_lcc/ beside the plain test")
    add_min_lesion_flag(p, "; 2 classes, after --postprocess: scored as predicted, into <split>_iter_<N>_min<P>/")
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
    p.add_argument("--device", default=default_device(), help=DEVICE_HELP)
    add_threads_flag(p)
    add_precision_flag(p)
    return p


def add_blend_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--blend",
        choices=["auto", *BLENDS],
        default="auto",
        help="how overlapping windows are averaged: uniform (the UA-MT release's), gaussian (weights fall off "
        "towards each window's border: no seams at window edges); auto: uniform for volumes, gaussian for 2D images",
    )


def resolve_blend(blend: str, dimensions: int) -> str:
    """--blend auto: the release's uniform average for volumes (the LA numbers stay the paper protocol's), the
    Gaussian blend for 2D images."""
    return ("gaussian" if dimensions == 2 else "uniform") if blend == "auto" else blend


def training_settings(checkpoint: Path) -> dict:
    """The run's flags from <run>/run.json beside the checkpoint ({} when the run has not finished)."""
    info = checkpoint.parent / "run.json"
    return json.loads(info.read_text()).get("args", {}) if info.is_file() else {}


def fill_from_training(args: argparse.Namespace, checkpoint: Path, names: Sequence[str]) -> None:
    """Flags left unset (None) take the values the network was trained with: a 2D network must see its images
    cropped and resized as in training."""
    trained = training_settings(checkpoint)
    for name in names:
        if getattr(args, name) is None:
            setattr(args, name, trained.get(name))


def load_network(
    path: Path, device: torch.device | str, has_dropout: bool = False, net_name: str | None = None
) -> tuple[nn.Module, int]:
    """The test-time network (in eval mode; `has_dropout` keeps the dropout layers, for Monte-Carlo passes) with the
    checkpoint's weights, and its number of classes; `net.dimensions` is 3 or 2 as the checkpoint's. The network is
    `net_name`, else the run's --net from run.json beside the checkpoint (a run.json without it: the V-Net), with the
    run's --dropout_rate/_where/_kind (without them: the release's dropout), so MC passes sample what trained."""
    state = load_checkpoint(path)
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path}: not a state_dict of tensors; pass an iter_<N>.pth written by the training scripts")
    settings = training_settings(path)
    net_name = net_name or settings.get("net", DEFAULT_NET)
    # The output convolution, the last weight with a kernel: (K, C, 1, 1, 1) in 3D, (K, C, 1, 1) in 2D; anything
    # else is reported below as a mis-shaped key of the 3D network.
    kernels = [v for v in state.values() if v.ndim >= 4]
    out_conv = state.get("out_conv.weight", kernels[-1] if kernels else None)
    num_classes = out_conv.shape[0] if out_conv is not None else 2
    dimensions = 2 if out_conv is not None and out_conv.ndim == 4 else 3
    try:
        dropout = DropoutSpec.from_settings(settings)
        net = build_network(net_name, num_classes, dimensions, has_dropout=has_dropout, dropout=dropout)
    except ValueError as error:
        raise DataError(f"{path}: {error}") from error
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise DataError(
            f"{path}: not a {net_name} checkpoint of this architecture: {len(missing)} missing keys {missing[:2]}, "
            f"{len(unexpected)} unexpected {unexpected[:2]}, {len(wrong)} of another shape {wrong[:2]}"
        )
    net.load_state_dict(state)
    return net.to(device).eval(), num_classes


def checkpoint_not_found(model_dir: Path, model: str, iteration: int) -> str:
    """Why <model_dir>/<model>/iter_<iteration>.pth is not there, naming what is: the run's checkpoints (as
    --iteration values), else the runs of model_dir (as --model values)."""
    run = model_dir / model
    missing = f"{run / f'iter_{iteration}.pth'}: checkpoint not found"
    if not run.is_dir():
        runs = sorted(p.name for p in model_dir.iterdir() if p.is_dir()) if model_dir.is_dir() else []
        if not runs:
            return f"{missing}; {model_dir}/ holds no runs: train one first, or pass --model_dir"
        return f"{missing}; no run {model}: {model_dir}/ holds {', '.join(runs)} (--model NAME)"
    saved = saved_iterations(run)
    if not saved:
        return f"{missing}; {run}/ holds no iter_*.pth yet (training saves one every --save_every iterations)"
    if len(saved) == 1:
        return f"{missing}; {run / f'iter_{saved[0]}.pth'} exists: --iteration {saved[0]}"
    return f"{missing}; {run}/ holds iter_{{{','.join(map(str, saved))}}}.pth: --iteration {saved[-1]} (the last)"


def write_csv(
    path: Path, ids: list[str], rows: list[dict[str, float]], means: dict[str, float], columns: Sequence[str] = METRICS
) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case", *columns])
        for case_id, row in zip(ids, rows):
            writer.writerow([case_id, *(f"{row[m]:.6f}" if m not in DETECTION_COLUMNS else row[m] for m in columns)])
        writer.writerow(["mean", *(f"{means[m]:.6f}" for m in columns)])


def evaluate(args: argparse.Namespace) -> dict[str, float]:
    """Evaluate and return the mean metrics; writes <run>/test_iter_<N>/metrics.csv (+ NIfTI files)."""
    started = time.perf_counter()
    args.precision = resolve_precision(getattr(args, "precision", "fp32"), args.device)  # test.json records what ran
    run = Path(args.model_dir) / args.model
    check_device(args.device)  # before anything is read or written
    if args.min_lesion < 1:
        raise DataError(f"--min_lesion {args.min_lesion}: give 1 or more pixels (1: any predicted pixel)")
    checkpoint = run / f"iter_{args.iteration}.pth"
    if not checkpoint.is_file():
        raise DataError(checkpoint_not_found(Path(args.model_dir), args.model, args.iteration))
    if torch.device(args.device).type == "cpu":
        reuse_freed_memory()
    net, num_classes = load_network(checkpoint, args.device)
    fill_from_training(args, checkpoint, ("patch_size", "center_crop", "resize", "normalization", "letterbox"))
    args.patch_size = resolve_patch_size(args.patch_size, net.dimensions)
    normalization = args.normalization or "zscore"
    source = open_source(args.root_path, num_classes, args.center_crop, args.resize, normalization, args.letterbox)
    patch_fits = len(args.patch_size) == net.dimensions
    if not patch_fits and not args.whole_volume:  # the whole-volume pass uses no patch
        raise DataError(
            f"{checkpoint}: a {net.dimensions}D V-Net, but --patch_size has {len(args.patch_size)} sides; "
            f"give {net.dimensions}"
        )
    # Every case is checked before anything is written, so a bad file cannot stop the run half-way.
    patch = args.patch_size if patch_fits else None
    report = check_dataset(source, (args.split,), patch, args.check_data == "full", num_classes)
    check_dimensions(report.shapes, net.dimensions, f"{checkpoint} is a {net.dimensions}D V-Net")
    ids = report.ids[args.split]
    unlabelled = [i for i in ids if not source.has_label(i)]
    if unlabelled:
        raise DataError(
            f"{source.path(unlabelled[0])}: no label; testing needs every {args.split}.list case labelled "
            f"(predict.py segments unlabelled cases)"
        )
    # Binary data also gets the frame's detection columns (evaluation/lesions.py).
    columns = metric_columns(num_classes) + (DETECTION_COLUMNS if num_classes == 2 else ())
    out = run / test_folder(args.split, args.iteration, bool(args.whole_volume), args.postprocess, args.min_lesion)
    out.mkdir(parents=True, exist_ok=True)
    args.blend = resolve_blend(args.blend, net.dimensions)

    rows = []
    for case_id in tqdm(ids, ncols=90, desc="test"):
        image, label = source.read(case_id)
        with autocast(args.precision, args.device):  # bf16: the forwards only; both pass float32 to the softmax
            if args.whole_volume:
                probability = whole_volume_probability(net, image, args.device)
            else:
                probability = sliding_window_probability(
                    net, image, args.patch_size, args.stride_xy, args.stride_z, num_classes, args.device,
                    args.windows_per_batch, args.blend,
                )  # fmt: skip
        # Metrics on the case's original grid: a 2D frame cropped or resized for the network gets its class
        # probabilities resized back (bilinear, then argmax) and is compared with its mask as drawn, at its size.
        probability = source.probability_to_original(case_id, probability)
        prediction = postprocess(probability.argmax(0).cpu().numpy().astype(np.uint8), args.postprocess)
        if num_classes == 2:  # a frame called negative predicts no lesion, as predict.py writes it
            prediction = apply_min_lesion(prediction, args.min_lesion)
        label = source.original_label(case_id, label)
        rows.append(class_metrics(prediction, label, num_classes))
        if num_classes == 2:
            rows[-1] |= lesion_counts(prediction, label)
        tqdm.write(f"{case_id}: " + ", ".join(f"{m} {rows[-1][m]:.4f}" for m in METRICS))
        if args.save_nifti:  # in the input's format: NIfTI for volumes, PNG (TIFF for the image) for 2D
            arrays = {"pred": prediction, "img": source.original_image(case_id, image), "gt": label}
            source.write_outputs(case_id, out, arrays, original_grid=True)

    means, undefined = summarize(rows, columns)
    write_csv(out / "metrics.csv", ids, rows, means, columns)
    wall_s = time.perf_counter() - started
    names = ("iteration", "split", "patch_size", "stride_xy", "stride_z", "whole_volume", "blend", "center_crop",
             "resize", "letterbox", "precision", "postprocess")  # fmt: skip
    settings = {k: vars(args)[k] for k in names}
    info = settings | {"num_classes": num_classes, "cases": len(ids), "wall_s": round(wall_s, 1)}
    info["metrics_grid"] = METRICS_GRID
    info["post_processing"] = POSTPROCESS_TEXT[args.postprocess]
    info["machine"] = machine_description(torch.device(args.device))
    if num_classes == 2:
        info["min_lesion"] = args.min_lesion
    clean_frames = has_clean_frames(rows)
    if clean_frames:  # all frames and lesion frames apart, and the detection numbers (evaluation/lesions.py)
        info["clean_frames"] = detection_summary(rows)
    (out / "test.json").write_text(json.dumps(info, indent=1) + "\n")
    print("mean: " + ", ".join(f"{m} {means[m]:.4f}" for m in METRICS))
    for c in range(1, num_classes) if num_classes > 2 else ():
        print(f"class {c}: " + ", ".join(f"{m} {means[f'{m}_{c}']:.4f}" for m in METRICS))
    for name, count in undefined.items():
        if count:
            print(
                f"{name}: undefined for {count} of {len(ids)} cases (empty prediction or label), left out of the mean"
            )
    if clean_frames:
        print_detection(info["clean_frames"], args.min_lesion)
    if source.reshapes:
        print("metrics on each frame's original grid (95HD and ASD in its pixels), not the network's resized one")
    print(f"per-case metrics: {out / 'metrics.csv'}" + (f"; predictions: {out}/" if args.save_nifti else ""))
    return means


def print_detection(summary: dict[str, float], min_lesion: int) -> None:
    """The run's numbers on frames with an empty reference (clean frames) and on lesion frames."""
    clean, frames = summary["clean_frames"], summary["frames"]
    print(f"{clean} of {frames} frames have an empty reference (clean): Dice = Jaccard = 1 where predicted empty too")
    for frames_name, suffix in (("all frames", "all"), ("lesion frames", "lesion_frames")):
        print(f"{frames_name}: " + ", ".join(f"{m} {summary[f'{m}_{suffix}']:.4f}" for m in OVERLAP_METRICS))
    print(
        f"frames called positive at {min_lesion}+ predicted pixels: sensitivity {summary['frame_sensitivity']:.4f}, "
        f"specificity {summary['frame_specificity']:.4f}, false-positive frames {summary['false_positive_frames']} "
        f"of {clean} clean"
    )
    print(
        f"lesions (connected components): recall {summary['lesion_recall']:.4f}, precision "
        f"{summary['lesion_precision']:.4f}, F1 {summary['lesion_f1']:.4f}"
    )


def run_testing() -> None:
    args = testing_parser().parse_args()

    run_guarded(lambda: evaluate(args), threads=args.threads)
