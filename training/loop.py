"""The one training loop behind every training script. It knows no method: what a step computes comes from a
`methods.Method` (supervised, UA-MT, BCP, ...); data, devices, DDP, signals, checkpoints, resume and logging are here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import random
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tensorboardX import SummaryWriter
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from dataloaders.augmentations import TrainTransform
from dataloaders.checks import check_dataset
from dataloaders.dataset import SegmentationDataset
from dataloaders.flags import check_dimensions
from dataloaders.sampler import TwoStreamBatchSampler
from dataloaders.sources import Source, open_source
from methods.base import Forward, Method, StepOutput
from networks import DEFAULT_DROPOUT, DEFAULT_NET, build_network
from training import distributed
from training.checkpoint import all_finite, check_networks, restore_training_state, training_state
from training.config import Config, resolve_flags
from training.options import (
    dropout_of,
    split_labelled,
    training_parser,
)
from utils.checkpoint import load_checkpoint, save_atomic
from utils.cli import RunStopped, check_device, machine_description, run_guarded
from utils.cpu_memory import reuse_freed_memory
from utils.errors import DataError
from utils.precision import cast_forward

IMAGE_EVERY = 50


STATE_FILE = "state_latest.pth"  # the full training state, for --resume


RESUME_MUST_MATCH = ("root_path", "labelnum", "batch_size", "labeled_bs", "patch_size", "seed", "num_classes",
                     "labeled_list", "center_crop", "resize", "normalization", "augment", "net", "dice", "letterbox",
                     "oversample_foreground", "dropout_rate", "dropout_where", "dropout_kind")  # fmt: skip


# Flags added after states were first saved: an older state ran with these values.
RESUME_DEFAULTS = {"num_classes": 2, "labeled_list": "", "center_crop": None, "resize": None, "normalization": "zscore",
                   "augment": "rot_flip", "net": "vnet", "dice": "vnet", "letterbox": None,
                   "oversample_foreground": 0.0, "dropout_rate": DEFAULT_DROPOUT.rate,
                   "dropout_where": DEFAULT_DROPOUT.where, "dropout_kind": DEFAULT_DROPOUT.kind}  # fmt: skip


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


class StopSignals:
    """While active, SIGINT and SIGTERM only raise a flag: the loop then saves its state and stops cleanly."""

    def __enter__(self) -> StopSignals:
        self.received: int | None = None
        self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signum

    def __exit__(self, *exc: object) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def setup_logging(snapshot: Path) -> logging.Logger:
    logger = logging.getLogger("uamt")
    logger.handlers.clear()
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(snapshot / "log.txt")  # appends: a resumed run continues the same log
    handler.setFormatter(logging.Formatter("[%(asctime)s.%(msecs)03d] %(message)s", datefmt="%H:%M:%S"))
    logger.addHandler(handler)
    return logger


def _worker_init(worker_id: int) -> None:
    """Loader workers leave Ctrl-C and a scheduler's SIGTERM (sent to the whole job) to the main process, which saves
    and stops; a worker dying of them would crash the main process instead."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextmanager
def workers_shut_down(loader: DataLoader) -> Iterator[DataLoader]:
    """Shut the persistent workers down on every exit. An exception's traceback keeps the loader and its workers
    alive, and at interpreter exit multiprocessing joins them after a SIGTERM they ignore: the process would hang."""
    try:
        yield loader
    finally:
        if loader._iterator is not None:  # torch has no public call for this
            loader._iterator._shutdown_workers()
            loader._iterator = None


def write_run_info(
    snapshot: Path, args: argparse.Namespace, method: str, unlabelled: int, elapsed_s: float, processes: int = 1
) -> None:
    """<run>/run.json: what summarize.py needs to group, label and time the run."""
    info = {
        "method": method,
        "labelled": args.labelnum,
        "unlabelled": unlabelled,
        "seed": args.seed,
        "iterations": args.max_iterations,
        "train_wall_s": round(elapsed_s, 1),
        "machine": machine_description(torch.device(args.device))
        + (f", {processes} processes" if processes > 1 else ""),
        "args": vars(args),
    }
    (snapshot / "run.json").write_text(json.dumps(info, indent=1) + "\n")


def resume_path(args: argparse.Namespace, snapshot: Path) -> Path | None:
    """--resume auto: <run>/state_latest.pth when it exists; --resume PATH: that file."""
    if not args.resume:
        return None
    if args.resume == "auto":
        path = snapshot / STATE_FILE
        return path if path.is_file() else None
    return Path(args.resume)


def check_resumable(
    state: dict, args: argparse.Namespace, path: Path, method_flags: dict[str, object] | None = None
) -> None:
    """A resumed run must draw the same batches and take the same step: refuse a state saved with other data or batch
    flags, or other values of `method_flags` (the method's resume_must_match)."""
    method_flags = method_flags or {}
    saved = RESUME_DEFAULTS | method_flags | state.get("args", {})
    changed = [k for k in (*RESUME_MUST_MATCH, *method_flags) if saved.get(k) != vars(args).get(k)]
    if changed:
        flags = ", ".join(f"--{k} {saved.get(k)}" for k in changed)
        raise DataError(f"{path}: saved with {flags}; resume with the same flags or start a new --exp")


def train(args: argparse.Namespace, method: type[Method]) -> Path:
    """Train with `method` and return the run folder. Under torchrun, one process per device trains its share of
    every batch (training/distributed.py)."""
    check_device(args.device)  # before anything is written: no half-made run folder
    ranks, device = distributed.start(args.device)
    if device.type == "cpu" and getattr(args, "cpu_allocator", "reuse") == "reuse":
        reuse_freed_memory()  # no page faults for every 3D activation (utils/cpu_memory.py)
    try:
        return _train(args, method, ranks, device)
    finally:
        distributed.stop(ranks)


@dataclass
class TrainingData:
    """What the run trains on: every case ID of train.list, the labelled and unlabelled ones it uses (labelled
    first: the sampler's labelled indices), and the dataset over them."""

    train_ids: list[str]
    labeled_ids: list[str]
    unlabeled_ids: list[str]
    dataset: SegmentationDataset


def resolve_configuration(
    args: argparse.Namespace, method_class: type[Method], device: torch.device
) -> tuple[Config, Source]:
    """The run's configuration, decided once, here, before anything is written (training/config.py), and its data
    source: the data's dimensionality decides the patch and the network's."""
    source = open_source(
        args.root_path, args.num_classes, args.center_crop, args.resize, args.normalization, args.letterbox
    )
    return resolve_flags(args, method_class, source.dimensions, device), source


def load_training_data(args: argparse.Namespace, source: Source, semi: bool) -> TrainingData:
    """Lists and train-case headers first, then every voxel of the cases used as they are loaded: a data mistake
    stops the run before it writes anything."""
    report = check_dataset(source, ("train",), args.patch_size)
    train_ids = report.ids["train"]
    dimensions = len(args.patch_size)  # 3: volumes, the paper's V-Net; 2: images
    patch_text = " ".join(map(str, args.patch_size))
    check_dimensions(report.shapes, dimensions, f"--patch_size {patch_text} is {dimensions}D: give one side per axis")
    labeled_ids, unlabeled_ids = split_labelled(args, source, train_ids, semi)
    used_ids = labeled_ids + unlabeled_ids if semi else labeled_ids
    dataset = SegmentationDataset(
        source, used_ids, TrainTransform(args.patch_size, args.augment, args.oversample_foreground), args.num_classes
    )
    return TrainingData(train_ids, labeled_ids, unlabeled_ids if semi else [], dataset)


def make_loader(
    args: argparse.Namespace, data: TrainingData, ranks: distributed.Ranks, device: torch.device
) -> tuple[TwoStreamBatchSampler, DataLoader, torch.Generator]:
    """Batches of --labeled_bs labelled items, then unlabelled ones, each rank its share."""
    labelled = len(data.labeled_ids)
    sampler = TwoStreamBatchSampler(
        range(labelled), range(labelled, len(data.dataset)), args.batch_size, args.labeled_bs, args.seed,
        ranks.rank, ranks.world_size,
    )  # fmt: skip
    # The loader's own generator: drawing worker seeds from the global one would make dropout and teacher noise
    # depend on --num_workers (a new single-process iterator draws each epoch, persistent workers don't).
    loader_generator = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(
        data.dataset,
        batch_sampler=sampler,
        num_workers=args.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=args.num_workers > 0,
        generator=loader_generator,
        worker_init_fn=_worker_init,
    )
    return sampler, loader, loader_generator


def build_method(args: argparse.Namespace, method_class: type[Method], device: torch.device) -> Method:
    """The method with its networks, built in its order from the seeded generator (--net, the data's
    dimensionality), all in training mode."""

    def new_network() -> nn.Module:
        return build_network(args.net, args.num_classes, len(args.patch_size), dropout=dropout_of(args)).to(device)

    method = method_class(args, new_network)
    for net in method.trained.values():
        net.train()
    return method


def network_forwards(
    method: Method, args: argparse.Namespace, ranks: distributed.Ranks, device: torch.device, iteration: int
) -> dict[str, Forward]:
    """A forward of each trained network, as `step` calls it: under DDP (one wrapper per network: each one's
    gradients are averaged over the ranks) and --precision; the method's own forwards of other networks (e.g. a
    teacher) get --precision through `method.forward_of`."""
    if ranks.world_size > 1:
        # The networks start equal on every rank (same seed); each rank then draws its own dropout and teacher noise.
        torch.manual_seed(args.seed + ranks.rank + ranks.world_size * iteration)
    ids = [device.index] if device.type == "cuda" else None
    forwards = {}
    for name, net in method.trained.items():
        model = DistributedDataParallel(net, device_ids=ids) if ranks.world_size > 1 else net
        forwards[name] = cast_forward(model, args.precision, device)  # bf16: autocast inside, float32 logits out
    method.forward_of = lambda net: cast_forward(net, args.precision, device)
    return forwards


def _train(
    args: argparse.Namespace, method_class: type[Method], ranks: distributed.Ranks, device: torch.device
) -> Path:
    started = time.perf_counter()
    main = ranks.is_main
    args, source = resolve_configuration(args, method_class, device)  # read-only from here on
    data = load_training_data(args, source, method_class.semi_supervised)
    snapshot = Path(args.model_dir) / args.exp
    resume_from = resume_path(args, snapshot)
    state = load_checkpoint(resume_from) if resume_from else None
    if state is not None:
        check_resumable(state, args, resume_from, method_class.resume_must_match)
    seed_everything(args.seed, bool(args.deterministic))

    if main:
        (snapshot / "log").mkdir(parents=True, exist_ok=True)
    logger = setup_logging(snapshot) if main else logging.getLogger(f"uamt.rank{ranks.rank}")
    logger.disabled = not main
    logger.info(str(vars(args)))
    sampler, loader, loader_generator = make_loader(args, data, ranks, device)
    method = build_method(args, method_class, device)
    optimizer = torch.optim.SGD(method.parameter_groups(), lr=args.base_lr, momentum=0.9, weight_decay=1e-4)

    iteration, elapsed_before = 0, 0.0  # training time of the runs this one resumes
    if state is not None:
        check_networks(state, method.networks, resume_from)
        iteration = restore_training_state(state, method.networks, optimizer, sampler, loader_generator)
        elapsed_before = float(state.get("elapsed_s", 0.0))
        logger.info(f"resumed from {resume_from} at iteration {iteration}")
        if main:
            print(f"resumed from {resume_from} at iteration {iteration}")
    nets = network_forwards(method, args, ranks, device, iteration)

    def elapsed_s() -> float:
        return elapsed_before + time.perf_counter() - started

    def save_state(batches_done: int) -> Path:
        path = snapshot / STATE_FILE
        save_atomic(
            training_state(
                iteration, batches_done, method.networks, optimizer, sampler, loader_generator, vars(args), elapsed_s()
            ),
            path,
        )
        return path

    logger.info(
        f"{len(sampler)} iterations per epoch; {len(data.train_ids)} cases in train.list, {args.labelnum} labelled"
    )
    local_labeled_bs = args.labeled_bs // ranks.world_size  # this rank's share of the batch
    labeled = slice(0, local_labeled_bs)
    clock = time.perf_counter()
    bar = tqdm(total=args.max_iterations, initial=iteration, ncols=90, desc=args.exp, disable=not main)
    writer = SummaryWriter(str(snapshot / "log")) if main else contextlib.nullcontext()
    # The writer, the bar and the loader workers close on every exit, a stop included: events reach the disk.
    with StopSignals() as stop, writer, bar, workers_shut_down(loader):
        while iteration < args.max_iterations:
            for batches_done, batch in enumerate(loader, start=sampler.skip + 1):
                method.start_iteration(iteration, optimizer)
                lr = method.learning_rate(iteration)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                images = batch["image"].to(device, non_blocking=True)
                labels = batch["label"].to(device, non_blocking=True)

                out = method.step(nets, images, labels, labeled, iteration)
                loss = out.loss
                scalars = {"lr": lr, **out.scalars}

                # Every rank stops at the same iteration, or the others would wait in the gradient all-reduce.
                non_finite, stopping = distributed.any_rank(
                    [not torch.isfinite(loss).item(), stop.received is not None], ranks, device
                )
                if non_finite:  # stop before the step: the weights and checkpoints stay finite
                    raise RunStopped(
                        f"loss is {loss.item()} at iteration {iteration + 1}; stopped. The last good checkpoint is "
                        f"{snapshot / STATE_FILE}; lower --base_lr or check the data",
                        3,
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                method.end_iteration(iteration)
                iteration += 1

                if main:  # rank 0 logs its own share's values
                    clock = log_iteration(writer, logger, bar, out, scalars, loss, lr, iteration, clock)

                saving = iteration % args.save_every == 0 or iteration == args.max_iterations
                if saving or stopping:
                    check_networks_sound(method, ranks, device, iteration)
                if saving and main:
                    path = snapshot / f"iter_{iteration}.pth"
                    save_atomic(method.networks[method.evaluated].state_dict(), path)  # what test_LA.py evaluates
                    save_state(batches_done)
                    logger.info(f"saved {path} and {STATE_FILE}")
                if stopping:
                    path = save_state(batches_done) if main else snapshot / STATE_FILE
                    distributed.barrier(ranks)  # no rank exits (and torchrun kills the rest) before the save
                    signum = stop.received or signal.SIGTERM  # a rank that got no signal stops with its peers
                    name = signal.Signals(signum).name
                    logger.info(f"stopped by {name} at iteration {iteration}; saved {path}")
                    raise RunStopped(
                        f"stopped by {name} at iteration {iteration}; saved {path}: continue with --resume auto",
                        128 + signum,
                    )
                if iteration >= args.max_iterations:
                    break
    if main:
        write_run_info(snapshot, args, run_name(method), len(data.unlabeled_ids), elapsed_s(), ranks.world_size)
        print(f"checkpoints in {snapshot}/, TensorBoard logs: tensorboard --logdir {snapshot / 'log'}")
    return snapshot


def run_name(method: Method) -> str:
    """run.json's method, the results tables' group: the method's name, its --variant, a --net other than the
    V-Net, _batchdice for --dice batch."""
    args = method.args
    variant = f"_{args.variant}" if args.variant else ""
    net = "" if args.net == DEFAULT_NET else f"_{args.net}"
    dice = "_batchdice" if getattr(args, "dice", "vnet") == "batch" else ""
    return method.run_name() + variant + net + dice


def log_iteration(
    writer: SummaryWriter,
    logger: logging.Logger,
    bar: tqdm,
    out: StepOutput,
    scalars: dict[str, object],
    loss: torch.Tensor,
    lr: float,
    iteration: int,
    clock: float,
) -> float:
    """TensorBoard scalars (and images every IMAGE_EVERY iterations), log.txt and the progress bar; returns the
    clock for the next iteration's wall time."""
    scalars["loss/loss"] = loss
    values = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in scalars.items()}
    # Wall time since the previous step (data loading and logging included); float() synchronised.
    now = time.perf_counter()
    values["time/iteration_s"] = now - clock
    for name, value in values.items():
        writer.add_scalar(name, value, iteration)
    logger.info(f"iteration {iteration}: " + ", ".join(f"{k} {v:.5f}" for k, v in values.items()))
    bar.set_postfix(loss=f"{values['loss/loss']:.4f}", lr=f"{lr:.0e}")
    bar.update()
    if iteration % IMAGE_EVERY == 0 and out.images is not None:
        for tag, grid in out.images().items():
            writer.add_image(tag, grid, iteration)
    return now


def check_networks_sound(method: Method, ranks: distributed.Ranks, device: torch.device, iteration: int) -> None:
    """Before a save: never keep a non-finite model (DDP keeps the trained networks equal, so every rank stops here
    together), and the kept networks (EMA teachers) must be equal on every rank."""
    if not all(all_finite(net) for net in method.trained.values()):
        raise RunStopped(f"non-finite weights at iteration {iteration}; nothing saved", 3)
    for name, net in method.kept.items():
        if not distributed.same_on_all_ranks(net, ranks, device):
            raise RuntimeError(f"the {name} networks of the ranks differ at iteration {iteration}")


def run_training(method: type[Method], description: str, exp: str, argv: Sequence[str] | None = None) -> None:
    """Entry point of the training scripts (train.py and its train_<method>.py aliases): parse the loop's and the
    method's flags (`argv`, else the command line's), train."""
    args = training_parser(description, exp, method).parse_args(argv)

    run_guarded(lambda: train(args, method), threads=args.threads)
