"""predict.py: a checkpoint and a folder of new cases (no labels) → predictions in the input's format and geometry,
Monte-Carlo-dropout uncertainty maps and overlay pictures."""

from __future__ import annotations

import argparse
import math
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dataloaders.la_heart import DataError
from dataloaders.sources import open_folder
from utils.cpu_memory import reuse_freed_memory
from utils.evaluation import sliding_window_probability
from utils.precision import add_precision_flag, autocast, resolve_precision
from utils.prediction import mc_dropout_entropy, overlay_panel
from utils.testing import fill_from_training, load_network
from utils.training import DEFAULT_PATCH, add_data_flags, default_device, run_guarded


def predicting_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Segment new cases (a folder of .nii.gz volumes or 2D images) with a trained checkpoint.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="an iter_<N>.pth written by training")
    p.add_argument("--input", required=True, help="folder of .nii.gz volumes or of 2D images (png, jpg, tif, dcm)")
    p.add_argument("--out", default="", help="output folder (default: <input>_pred)")
    add_data_flags(p, from_run=True)
    p.add_argument("--stride_xy", type=int, default=18)
    p.add_argument("--stride_z", type=int, default=4)
    p.add_argument("--windows_per_batch", type=int, default=4)
    p.add_argument("--mc_passes", type=int, default=8, help="T dropout passes for the uncertainty map; 0: none")
    p.add_argument("--overlays", type=int, default=1, choices=[0, 1], help="1: write <ID>_overlay.png")
    p.add_argument("--device", default=default_device())
    add_precision_flag(p)
    return p


def predict(args: argparse.Namespace) -> Path:
    checkpoint = Path(args.checkpoint)
    args.precision = resolve_precision(getattr(args, "precision", "fp32"), args.device)
    fill_from_training(args, checkpoint, ("patch_size", "center_crop", "resize", "normalization"))
    if torch.device(args.device).type == "cpu":
        reuse_freed_memory()
    net, num_classes = load_network(checkpoint, args.device, has_dropout=args.mc_passes > 0)
    source = open_folder(args.input, num_classes, args.center_crop, args.resize, args.normalization or "zscore")
    args.patch_size = args.patch_size or list(DEFAULT_PATCH[source.dimensions])
    if net.dimensions != source.dimensions or len(args.patch_size) != net.dimensions:
        raise DataError(
            f"{checkpoint} is a {net.dimensions}D V-Net; {args.input} holds {source.dimensions}D cases and "
            f"--patch_size has {len(args.patch_size)} sides: they must agree"
        )
    out = Path(args.out) if args.out else Path(str(Path(args.input).resolve()) + "_pred")
    out.mkdir(parents=True, exist_ok=True)
    probability = partial(
        sliding_window_probability, patch_size=args.patch_size, stride_xy=args.stride_xy, stride_z=args.stride_z,
        num_classes=num_classes, device=args.device, windows_per_batch=args.windows_per_batch,
    )  # fmt: skip

    for case_id in tqdm(list(source.images), ncols=90, desc="predict"):
        image, _ = source.read(case_id)
        with autocast(args.precision, args.device):  # bf16: the forwards only; the windows' softmax is float32
            prediction = probability(net, image).argmax(0).cpu().numpy().astype(np.uint8)
            outputs = {"pred": prediction}
            if args.mc_passes:
                uncertainty = mc_dropout_entropy(net, image, args.mc_passes, probability)
                outputs["uncertainty"] = uncertainty.astype(np.float32)
        source.write_outputs(case_id, out, outputs)
        if args.overlays:
            panel = overlay_panel(image, prediction, outputs.get("uncertainty"), math.log(num_classes))
            panel.save(out / f"{case_id}_overlay.png")
    print(f"{len(source.images)} predictions in {out}/")
    return out


def run_predicting() -> None:
    args = predicting_parser().parse_args()
    run_guarded(lambda: predict(args))
