"""predict.py: a checkpoint and new cases (a folder of them, or a split of a dataset; labels are not used) →
predictions in the input's format and geometry, Monte-Carlo-dropout uncertainty maps and overlay pictures."""

from __future__ import annotations

import argparse
import csv
import json
import math
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dataloaders.flags import add_data_flags, check_dimensions, resolve_patch_size
from dataloaders.sources import Source, open_folder, open_source
from evaluation.postprocess import add_min_lesion_flag, add_postprocess_flag, apply_min_lesion, postprocess
from evaluation.prediction import (
    FRAME_COLUMNS,
    default_class_names,
    frame_summary,
    mc_dropout_entropy,
    overlay_panel,
    structure_sizes,
)
from evaluation.testing import add_blend_flag, fill_from_training, load_network, resolve_blend
from evaluation.windows import sliding_window_probability
from utils.cli import DEVICE_HELP, Parser, check_device, default_device, run_guarded
from utils.cpu_memory import reuse_freed_memory
from utils.errors import DataError
from utils.precision import add_precision_flag, autocast, resolve_precision
from utils.threads import add_threads_flag


def predicting_parser() -> argparse.ArgumentParser:
    p = Parser(
        description="Segment new cases with a trained checkpoint: a folder of .nii.gz volumes or 2D images (--input),\n"
        "or the cases of a dataset's <split>.list (--root_path: LA h5, NIfTI task or 2D images; labels unused)."
    )
    p.add_argument("--checkpoint", required=True, help="an iter_<N>.pth written by training")
    cases = p.add_mutually_exclusive_group(required=True)
    cases.add_argument("--input", help="a folder of .nii.gz volumes or of 2D images (png, jpg, tif, dcm)")
    cases.add_argument(
        "--root_path", help="a dataset in any training layout (e.g. data/LA): predict the cases of --split"
    )
    p.add_argument("--split", default="test", help="with --root_path: which <split>.list")
    p.add_argument(
        "--out", default="", help="output folder; default: <input>_pred, or <checkpoint folder>/<split>_iter_<N>_pred"
    )
    add_data_flags(p, from_run=True)
    p.add_argument("--stride_xy", type=int, default=18, help="window step along x and y (larger: faster)")
    p.add_argument("--stride_z", type=int, default=4, help="window step along z (3D only)")
    p.add_argument("--windows_per_batch", type=int, default=4, help="sliding windows per forward pass")
    add_blend_flag(p)
    add_postprocess_flag(p, "; the uncertainty map is not changed")
    add_min_lesion_flag(p, "; frames.csv (binary 2D data) counts such a frame as lesion_present no")
    p.add_argument("--mc_passes", type=int, default=8, help="T dropout passes for the uncertainty map; 0: none")
    p.add_argument("--overlays", type=int, default=1, choices=[0, 1], help="1: write <ID>_overlay.png")
    p.add_argument(
        "--class_names",
        nargs="+",
        default=None,
        metavar="NAME",
        help='the structures\' names, one per class 1..K-1 (e.g. "LV cavity" myocardium "left atrium"): the '
        "overlay's legend and the areas.csv columns; default: class 1, class 2, ...",
    )
    p.add_argument("--device", default=default_device(), help=DEVICE_HELP)
    add_threads_flag(p)
    add_precision_flag(p)
    return p


def open_cases(args: argparse.Namespace, num_classes: int) -> tuple[Source, list[str], Path]:
    """The source, the IDs to predict and the default output folder: the files of --input, or the --split of the
    dataset at --root_path (its labels, if any, unused)."""
    normalization = args.normalization or "zscore"
    if args.input:
        source = open_folder(args.input, num_classes, args.center_crop, args.resize, normalization, args.letterbox)
        return source, list(source.images), Path(str(Path(args.input).resolve()) + "_pred")
    source = open_source(args.root_path, num_classes, args.center_crop, args.resize, normalization, args.letterbox)
    ids = source.list_ids(args.split)
    if not ids:
        raise DataError(f"{args.root_path}: --split {args.split} lists no case")
    checkpoint = Path(args.checkpoint)
    return source, ids, checkpoint.parent / f"{args.split}_{checkpoint.stem}_pred"  # beside test_LA's <split>_iter_N


def predict(args: argparse.Namespace) -> Path:
    checkpoint = Path(args.checkpoint)
    check_device(args.device)  # before anything is read or written
    args.precision = resolve_precision(getattr(args, "precision", "fp32"), args.device)
    fill_from_training(args, checkpoint, ("patch_size", "center_crop", "resize", "normalization", "letterbox"))
    if torch.device(args.device).type == "cpu":
        reuse_freed_memory()
    net, num_classes = load_network(checkpoint, args.device, has_dropout=args.mc_passes > 0)
    class_names = resolve_class_names(args.class_names, num_classes, checkpoint)
    source, ids, default_out = open_cases(args, num_classes)
    args.patch_size = resolve_patch_size(args.patch_size, source.dimensions)
    where = args.input or f"{args.root_path} ({args.split})"
    if net.dimensions != source.dimensions or len(args.patch_size) != net.dimensions:
        raise DataError(
            f"{checkpoint} is a {net.dimensions}D V-Net; {where} holds {source.dimensions}D cases and "
            f"--patch_size has {len(args.patch_size)} sides: they must agree"
        )
    # Every case's header before anything is written (an LA list may name a missing or damaged file).
    check_dimensions(
        {i: tuple(source.inspect(i)) for i in ids}, net.dimensions, f"{checkpoint} is a {net.dimensions}D V-Net"
    )
    out = Path(args.out) if args.out else default_out
    out.mkdir(parents=True, exist_ok=True)
    probability = partial(
        sliding_window_probability, patch_size=args.patch_size, stride_xy=args.stride_xy, stride_z=args.stride_z,
        num_classes=num_classes, device=args.device, windows_per_batch=args.windows_per_batch,
        blend=resolve_blend(args.blend, net.dimensions),
    )  # fmt: skip

    sizes, frames = [], []
    per_frame = source.dimensions == 2 and num_classes == 2  # frames.csv: lesion or not, for binary 2D data
    for case_id in tqdm(ids, ncols=90, desc="predict"):
        image, _ = source.read(case_id)
        # Everything written is on the case's own grid (a 2D frame at its size), as test_LA.py computes it.
        with autocast(args.precision, args.device):  # bf16: the forwards only; the windows' softmax is float32
            frame_probability = source.probability_to_original(case_id, probability(net, image))
            prediction = postprocess(frame_probability.argmax(0).cpu().numpy().astype(np.uint8), args.postprocess)
            prediction = apply_min_lesion(prediction, args.min_lesion)
            outputs = {"pred": prediction}
            if args.mc_passes:
                uncertainty = mc_dropout_entropy(net, image, args.mc_passes, probability).astype(np.float32)
                outputs["uncertainty"] = source.map_to_original(case_id, uncertainty)
        source.write_outputs(case_id, out, outputs, original_grid=True)
        # Counted on the written map, i.e. on the stored frame's grid, whose spacing the file gives (not --resize's).
        spacing = source.pixel_spacing(case_id)
        sizes.append((case_id, spacing, *structure_sizes(prediction, num_classes, spacing)))
        if per_frame:
            frames.append(frame_summary(case_id, prediction, outputs.get("uncertainty"), spacing))
        if args.overlays:
            frame = source.original_image(case_id, image)
            panel = overlay_panel(frame, prediction, outputs.get("uncertainty"), math.log(num_classes), class_names)
            panel.save(out / f"{case_id}_overlay.png")
    sizes_file = write_sizes(out, sizes, class_names, source.dimensions)
    if per_frame:
        write_frames(out / "frames.csv", frames)
    settings = {
        "checkpoint": str(checkpoint.resolve()),
        "cases": args.input or f"{args.root_path} ({args.split})",
        "num_classes": num_classes,
        "class_names": class_names,
        "sizes": sizes_file.name,
        "blend": resolve_blend(args.blend, net.dimensions),
        **{k: getattr(args, k) for k in ("patch_size", "center_crop", "resize", "letterbox", "normalization")},
        **{k: getattr(args, k) for k in ("postprocess", "min_lesion", "mc_passes", "stride_xy", "stride_z")},
    }
    (out / "predict.json").write_text(json.dumps(settings, indent=1) + "\n")
    print(
        f"{len(ids)} predictions in {out}/"
        + ("" if args.postprocess == "none" else f" (--postprocess {args.postprocess})")
    )
    return out


def resolve_class_names(names: list[str] | None, num_classes: int, checkpoint: Path) -> list[str]:
    """--class_names, one per structure (class 1..K-1) of the checkpoint; default "class 1", ..."""
    if names is None:
        return default_class_names(num_classes)
    if len(names) != num_classes - 1:
        raise DataError(
            f"--class_names: {len(names)} names for {checkpoint}, a {num_classes}-class network; give one per "
            f"structure, classes 1..{num_classes - 1} (background is not named)"
        )
    return list(names)


def write_sizes(
    out: Path,
    sizes: list[tuple[str, tuple[float, ...] | None, list[int], list[float] | None]],
    class_names: list[str],
    dimensions: int,
) -> Path:
    """areas.csv (2D; volumes.csv for 3D): ID, then per structure its pixels (voxels) and mm² (mm³), the latter
    empty where the case's file carries no spacing (PNG, LA h5), then the spacing used (mm, rows then columns)."""
    count, unit, path = ("px", "mm2", out / "areas.csv") if dimensions == 2 else ("voxels", "mm3", out / "volumes.csv")
    header = ["ID"] + [f"{name} ({u})" for name in class_names for u in (count, unit)] + ["spacing (mm)"]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for case_id, spacing, pixels, physical in sizes:
            row = [case_id]
            for c, n in enumerate(pixels):
                row += [n, "" if physical is None else round(physical[c], 6)]
            row.append("" if spacing is None else " x ".join(f"{s:g}" for s in spacing))
            writer.writerow(row)
    return path


def write_frames(path: Path, frames: list[dict[str, object]]) -> None:
    """frames.csv: one row per frame (evaluation/prediction.py frame_summary)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FRAME_COLUMNS)
        writer.writeheader()
        writer.writerows(frames)


def run_predicting() -> None:
    args = predicting_parser().parse_args()

    run_guarded(lambda: predict(args), threads=args.threads)
