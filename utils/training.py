"""The one training loop behind every training script. It knows no method: what a step computes comes from a
`methods.Method` (supervised, UA-MT, BCP, ...); data, devices, DDP, signals, checkpoints, resume and logging are here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from tensorboardX import SummaryWriter
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from dataloaders.checks import check_dataset
from dataloaders.la_heart import AUGMENTATIONS, DataError, LAHeart, TrainTransform, TwoStreamBatchSampler
from dataloaders.sources import NORMALIZATIONS, Source, open_source
from methods.base import Method
from networks.vnet import SIDE_MULTIPLE, VNet
from utils import distributed
from utils.checkpoint import all_finite, load_checkpoint, restore_training_state, save_atomic, training_state
from utils.cpu_memory import reuse_freed_memory
from utils.threads import add_threads_flag, set_threads

T = TypeVar("T")

IMAGE_EVERY = 50
STATE_FILE = "state_latest.pth"  # the full training state, for --resume
RESUME_MUST_MATCH = ("root_path", "labelnum", "batch_size", "labeled_bs", "patch_size", "seed", "num_classes",
                     "labeled_list", "center_crop", "resize", "normalization", "augment")  # fmt: skip
# Flags added after states were first saved: an older state ran with these values.
RESUME_DEFAULTS = {"num_classes": 2, "labeled_list": "", "center_crop": None, "resize": None, "normalization": "zscore",
                   "augment": "rot_flip"}  # fmt: skip
# --patch_size when none is given: the paper's for volumes, a common 2D training size for images.
DEFAULT_PATCH = {3: [112, 112, 80], 2: [256, 256]}
# --augment when none is given: the release's rot90 + flip, for images too (on HC18 validation frames a left-right
# mirror alone did worse: RESULTS.md, "HC18").
DEFAULT_AUGMENT = {3: "rot_flip", 2: "rot_flip"}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def training_parser(description: str, exp: str, method: type[Method]) -> argparse.ArgumentParser:
    """The loop's flags (the UA-MT release's, plus --labelnum, --patch_size, --num_classes, --device, ...) and the
    method's own."""
    semi_supervised = method.semi_supervised
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument(
        "--root_path",
        default="data/LA",
        help="the data: the LA h5 layout, a NIfTI task (imagesTr/, labelsTr/) or 2D images (images/, masks/)",
    )
    p.add_argument("--exp", default=exp, help="run name: writes to <model_dir>/<exp>/")
    p.add_argument("--model_dir", default="model", help="folder of runs")
    p.add_argument("--max_iterations", type=int, default=6000)
    p.add_argument("--batch_size", type=int, default=4, help="items per batch")
    if semi_supervised:
        p.add_argument("--labeled_bs", type=int, default=2, help="labelled items per batch; the rest are unlabelled")
    p.add_argument("--labelnum", type=int, default=16, help="the first N cases of train.list with a label are labelled")
    p.add_argument("--labeled_list", default="", help="a file of the labelled IDs (one a line), instead of --labelnum")
    p.add_argument("--base_lr", type=float, default=0.01)
    p.add_argument("--lr_step", type=int, default=2500, help="lr x 0.1 every this many iterations")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--deterministic", type=int, default=1, help="1: seeded, cudnn deterministic; 0: cudnn.benchmark")
    add_data_flags(p, from_run=False)
    p.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        default=None,
        help="training augmentation before the random crop: rot_flip (rot90 + flip, the release's), flip_lr (a "
        "left-right mirror only, for frames with an up and a down), none; default: "
        + ", ".join(f"{v} for {d}D" for d, v in sorted(DEFAULT_AUGMENT.items(), reverse=True)),
    )
    p.add_argument("--num_classes", type=int, default=2, help="K: classes of the label maps, background included")
    p.add_argument("--save_every", type=int, default=1000, help="checkpoint every N iterations (and at the end)")
    p.add_argument("--device", default=default_device(), help="cuda, cuda:1, cpu, ...")
    p.add_argument("--num_workers", type=int, default=2, help="data loader processes (0: load in the main one)")
    add_threads_flag(p)
    p.add_argument(
        "--cpu_allocator",
        choices=["reuse", "system"],
        default="reuse",
        help="CPU: reuse freed memory (faster for large patches, more resident memory) or glibc's default",
    )
    p.add_argument("--resume", default="", help="'auto': continue <run>/state_latest.pth if present; or a path")
    method.add_flags(p)
    return p


def add_data_flags(p: argparse.ArgumentParser, from_run: bool) -> None:
    """--patch_size, --normalization, --center_crop, --resize: how cases are cut and scaled. With `from_run` (test,
    predict) unset values are the trained run's, from its run.json."""
    run = "; default: the run's (run.json)" if from_run else ""
    p.add_argument(
        "--patch_size",
        type=int,
        nargs="+",
        default=None,
        metavar="SIDE",
        help="the patch's sides in the order of the array's axes, multiples of 16: ROWS COLS for 2D images (a 2D "
        "V-Net; the order of --center_crop and --resize), 3 sides for volumes (a 3D V-Net) in their stored axis order "
        "(LA h5: W H D, the 'image' dataset's axes 0 1 2; NIfTI: the voxel axes i j k)"
        + (run or "; default: 112 112 80 (the paper's) for volumes, 256 256 for 2D images"),
    )
    p.add_argument(
        "--normalization",
        choices=NORMALIZATIONS,
        default=None if from_run else "zscore",
        help="NIfTI and 2D images: z-score each image, or none" + run,
    )
    p.add_argument("--center_crop", type=int, nargs=2, default=None, metavar=("ROWS", "COLS"), help="2D images" + run)
    p.add_argument(
        "--resize", type=int, nargs=2, default=None, metavar=("ROWS", "COLS"), help="2D, after --center_crop" + run
    )


def check_args(args: argparse.Namespace, method: type[Method]) -> None:
    """Refuse flag combinations that cannot train, before anything is read or written."""
    if len(args.patch_size) not in (2, 3):
        raise DataError(
            f"--patch_size {' '.join(map(str, args.patch_size))}: give 3 sides for volumes (their axes as stored: W H "
            f"D for LA), 2 for images (ROWS COLS)"
        )
    if any(s % SIDE_MULTIPLE or s <= 0 for s in args.patch_size):
        raise DataError(f"--patch_size {args.patch_size}: every side must be a positive multiple of {SIDE_MULTIPLE}")
    semi = method.semi_supervised
    if semi and not 0 < args.labeled_bs < args.batch_size:
        raise DataError(
            f"--labeled_bs {args.labeled_bs} must be in 1..{args.batch_size - 1} (below --batch_size "
            f"{args.batch_size}) so that every batch holds unlabelled items"
        )
    if args.num_classes < 2:
        raise DataError(f"--num_classes {args.num_classes}: a segmentation needs at least 2 classes (background + 1)")
    method.check_args(args)


def check_dimensions(shapes: dict[str, tuple[int, ...]], dimensions: int, reason: str) -> None:
    """Every case must have `dimensions` axes (a 2D network cannot segment volumes, nor a 3D one images);
    `reason` says where the expected dimensionality comes from and ends the message."""
    for case_id, shape in shapes.items():
        if len(shape) != dimensions:
            raise DataError(f"case {case_id} is {len(shape)}D {shape}, but {reason}")


def split_labelled(
    args: argparse.Namespace, source: Source, train_ids: list[str], semi: bool
) -> tuple[list[str], list[str]]:
    """Labelled: the IDs of --labeled_list, else the first --labelnum IDs of train.list that have a label (all of them
    for LA: the release's rule); unlabelled: the rest of train.list, whether or not a label exists."""
    if args.labeled_list:
        path = Path(args.labeled_list)
        if not path.is_file():
            raise DataError(f"{path}: --labeled_list file not found; write the labelled IDs one a line")
        labeled = path.read_text().split()
        unknown = [i for i in labeled if i not in train_ids]
        unlabelled = [i for i in labeled if i in train_ids and not source.has_label(i)]
        if unknown or unlabelled or not labeled:
            problem = f"{unknown[0]} is not in train.list" if unknown else f"{unlabelled[0]} has no label"
            raise DataError(f"{path}: {problem if labeled else 'no IDs'}; list labelled IDs of train.list")
        args.labelnum = len(labeled)  # as run.json and the tables count it
    else:
        with_label = [i for i in train_ids if source.has_label(i)]
        if not 0 < args.labelnum <= len(with_label):
            counts = f"train.list has {len(train_ids)} cases" + (
                f", {len(with_label)} with a label" if len(with_label) < len(train_ids) else ""
            )
            raise DataError(f"--labelnum {args.labelnum}: {counts}; choose 1..{len(with_label)}")
        labeled = with_label[: args.labelnum]
    unlabeled = [i for i in train_ids if i not in set(labeled)]
    if args.labeled_bs > len(labeled):
        flag = "--labeled_bs" if semi else "--batch_size"  # a supervised batch is all labelled
        raise DataError(f"{flag} {args.labeled_bs} exceeds the {len(labeled)} labelled cases: lower it")
    if semi and not unlabeled:
        raise DataError(f"--labelnum {args.labelnum} leaves no unlabelled case in train.list: lower it")
    return labeled, unlabeled


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


class RunStopped(Exception):
    """The run stopped on purpose (a signal, a non-finite loss); the message says what was kept."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


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


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()} CPU cores ({cpu}), {torch.get_num_threads()} torch threads, torch {torch.__version__}"


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


def check_resumable(state: dict, args: argparse.Namespace, path: Path) -> None:
    """A resumed run must draw the same batches: refuse a state saved with other data or batch flags."""
    saved = RESUME_DEFAULTS | state.get("args", {})
    changed = [k for k in RESUME_MUST_MATCH if saved.get(k) != vars(args).get(k)]
    if changed:
        flags = ", ".join(f"--{k} {saved.get(k)}" for k in changed)
        raise DataError(f"{path}: saved with {flags}; resume with the same flags or start a new --exp")


def train(args: argparse.Namespace, method: type[Method]) -> Path:
    """Train with `method` and return the run folder. Under torchrun, one process per device trains its share of
    every batch (utils.distributed)."""
    ranks, device = distributed.start(args.device)
    if device.type == "cpu" and getattr(args, "cpu_allocator", "reuse") == "reuse":
        reuse_freed_memory()  # no page faults for every 3D activation (utils/cpu_memory.py)
    try:
        return _train(args, method, ranks, device)
    finally:
        distributed.stop(ranks)


def _train(
    args: argparse.Namespace, method_class: type[Method], ranks: distributed.Ranks, device: torch.device
) -> Path:
    started = time.perf_counter()
    main = ranks.is_main
    semi = method_class.semi_supervised
    if not semi:
        args.labeled_bs = args.batch_size
    source = open_source(args.root_path, args.num_classes, args.center_crop, args.resize, args.normalization)
    if args.patch_size is None:  # the network's dimensionality follows the data's
        args.patch_size = list(DEFAULT_PATCH[source.dimensions])
    if getattr(args, "augment", None) is None:
        args.augment = DEFAULT_AUGMENT[len(args.patch_size)]
    check_args(args, method_class)
    # Lists and train-case headers first, then every voxel of the cases used as they are loaded: a data mistake
    # stops the run before it writes anything.
    report = check_dataset(source, ("train",), args.patch_size)
    train_ids = report.ids["train"]
    dimensions = len(args.patch_size)  # 3: volumes, the paper's V-Net; 2: images
    patch_text = " ".join(map(str, args.patch_size))
    check_dimensions(report.shapes, dimensions, f"--patch_size {patch_text} is {dimensions}D: give one side per axis")
    labeled_ids, unlabeled_ids = split_labelled(args, source, train_ids, semi)
    used_ids = labeled_ids + unlabeled_ids if semi else labeled_ids  # the sampler's labelled indices come first
    dataset = LAHeart(source, used_ids, TrainTransform(args.patch_size, args.augment), args.num_classes)
    snapshot = Path(args.model_dir) / args.exp
    resume_from = resume_path(args, snapshot)
    state = load_checkpoint(resume_from) if resume_from else None
    if state is not None:
        check_resumable(state, args, resume_from)
    seed_everything(args.seed, bool(args.deterministic))

    if main:
        (snapshot / "log").mkdir(parents=True, exist_ok=True)
    logger = setup_logging(snapshot) if main else logging.getLogger(f"uamt.rank{ranks.rank}")
    logger.disabled = not main
    logger.info(str(vars(args)))

    sampler = TwoStreamBatchSampler(
        range(args.labelnum), range(args.labelnum, len(used_ids)), args.batch_size, args.labeled_bs, args.seed,
        ranks.rank, ranks.world_size,
    )  # fmt: skip
    # The loader's own generator: drawing worker seeds from the global one would make dropout and teacher noise
    # depend on --num_workers (a new single-process iterator draws each epoch, persistent workers don't).
    loader_generator = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=args.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=args.num_workers > 0,
        generator=loader_generator,
        worker_init_fn=_worker_init,
    )

    def new_network() -> VNet:
        return VNet(n_classes=args.num_classes, has_dropout=True, dimensions=dimensions).to(device)

    student = new_network()
    optimizer = torch.optim.SGD(student.parameters(), lr=args.base_lr, momentum=0.9, weight_decay=1e-4)
    method = method_class(args, new_network)
    teacher = method.teacher  # saved and resumed with the student
    student.train()

    iteration, elapsed_before = 0, 0.0  # training time of the runs this one resumes
    if state is not None:
        iteration = restore_training_state(state, student, teacher, optimizer, sampler, loader_generator)
        elapsed_before = float(state.get("elapsed_s", 0.0))
        logger.info(f"resumed from {resume_from} at iteration {iteration}")
        if main:
            print(f"resumed from {resume_from} at iteration {iteration}")
    model = student
    if ranks.world_size > 1:
        # The networks start equal on every rank (same seed); each rank then draws its own dropout and teacher noise.
        torch.manual_seed(args.seed + ranks.rank + ranks.world_size * iteration)
        model = DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda" else None)

    def elapsed_s() -> float:
        return elapsed_before + time.perf_counter() - started

    def save_state(batches_done: int) -> Path:
        path = snapshot / STATE_FILE
        save_atomic(
            training_state(
                iteration, batches_done, student, teacher, optimizer, sampler, loader_generator, vars(args), elapsed_s()
            ),
            path,
        )
        return path

    logger.info(f"{len(sampler)} iterations per epoch; {len(train_ids)} cases in train.list, {args.labelnum} labelled")
    local_labeled_bs = args.labeled_bs // ranks.world_size  # this rank's share of the batch
    labeled = slice(0, local_labeled_bs)
    clock = time.perf_counter()
    bar = tqdm(total=args.max_iterations, initial=iteration, ncols=90, desc=args.exp, disable=not main)
    writer = SummaryWriter(str(snapshot / "log")) if main else contextlib.nullcontext()
    # The writer, the bar and the loader workers close on every exit, a stop included: events reach the disk.
    with StopSignals() as stop, writer, bar, workers_shut_down(loader):
        while iteration < args.max_iterations:
            for batches_done, batch in enumerate(loader, start=sampler.skip + 1):
                method.start_iteration(iteration, student, optimizer)
                lr = method.learning_rate(iteration)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                images = batch["image"].to(device, non_blocking=True)
                labels = batch["label"].to(device, non_blocking=True)

                out = method.step(model, images, labels, labeled, iteration)
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
                method.end_iteration(student, iteration)
                iteration += 1

                if main:  # rank 0 logs its own share's values
                    scalars["loss/loss"] = loss
                    values = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in scalars.items()}
                    # Wall time since the previous step (data loading and logging included); float() synchronised.
                    now = time.perf_counter()
                    values["time/iteration_s"], clock = now - clock, now
                    for name, value in values.items():
                        writer.add_scalar(name, value, iteration)
                    logger.info(f"iteration {iteration}: " + ", ".join(f"{k} {v:.5f}" for k, v in values.items()))
                    bar.set_postfix(loss=f"{values['loss/loss']:.4f}", lr=f"{lr:.0e}")
                    bar.update()
                    if iteration % IMAGE_EVERY == 0 and out.images is not None:
                        for tag, grid in out.images().items():
                            writer.add_image(tag, grid, iteration)

                saving = iteration % args.save_every == 0 or iteration == args.max_iterations
                # Never keep a non-finite model. DDP keeps the students equal, so every rank stops here together.
                if (saving or stopping) and not all_finite(student):
                    raise RunStopped(f"non-finite weights at iteration {iteration}; nothing saved", 3)
                if (
                    (saving or stopping)
                    and teacher is not None
                    and not distributed.same_on_all_ranks(teacher, ranks, device)
                ):
                    raise RuntimeError(f"the teachers of the ranks differ at iteration {iteration}")
                if saving and main:
                    path = snapshot / f"iter_{iteration}.pth"
                    save_atomic(student.state_dict(), path)
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
        write_run_info(snapshot, args, method.run_name(), len(used_ids) - args.labelnum, elapsed_s(), ranks.world_size)
        print(f"checkpoints in {snapshot}/, TensorBoard logs: tensorboard --logdir {snapshot / 'log'}")
    return snapshot


def run_guarded(job: Callable[[], T]) -> T:
    """Run a script's job; a data mistake (exit 2) or a deliberate stop (signal, non-finite loss) ends in one line
    on stderr, not a stack trace."""
    try:
        return job()
    except (DataError, RunStopped) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(getattr(error, "exit_code", 2))


def run_training(method: type[Method], description: str, exp: str) -> None:
    """Entry point of the training scripts: parse the loop's and the method's flags, train."""
    args = training_parser(description, exp, method).parse_args()

    def job() -> object:
        set_threads(args.threads)  # before any torch work
        return train(args, method)

    run_guarded(job)
