"""The training scripts' flags, their checks, and which cases are labelled: everything decided before the loop
starts (training/loop.py)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from dataloaders.augmentations import AUGMENTATIONS
from dataloaders.flags import add_data_flags
from dataloaders.sources import Source
from methods.base import Method
from networks import DEFAULT_DROPOUT, DEFAULT_NET, NETWORKS, DropoutSpec
from networks.vnet import DROPOUT_KINDS, DROPOUT_WHERE, SIDE_MULTIPLE
from utils.cli import DEVICE_HELP, Parser, default_device
from utils.errors import DataError
from utils.losses import DICE_LOSSES
from utils.precision import add_precision_flag
from utils.threads import add_threads_flag

# --augment when none is given: the release's rot90 + flip, for images too (on HC18 validation frames a left-right
# mirror alone did worse: RESULTS.md, "HC18").
DEFAULT_AUGMENT = {3: "rot_flip", 2: "rot_flip"}


def training_parser(description: str, exp: str, method: type[Method]) -> argparse.ArgumentParser:
    """The loop's flags (the UA-MT release's, plus --labelnum, --patch_size, --num_classes, --device, ...) and the
    method's own."""
    semi_supervised = method.semi_supervised
    p = Parser(description=description)
    p.add_argument(
        "--root_path",
        default="data/LA",
        help="the data: the LA h5 layout, a NIfTI task (imagesTr/, labelsTr/) or 2D images (images/, masks/)",
    )
    p.add_argument("--exp", default=exp, help="run name: writes to <model_dir>/<exp>/")
    p.add_argument("--model_dir", default="model", help="folder of runs")
    p.add_argument(
        "--variant",
        default="",
        help="a name for a variant of the method (e.g. another schedule): run.json's method becomes "
        "<method>_<variant>, so results tables keep its runs apart from the method's",
    )
    p.add_argument("--max_iterations", type=int, default=6000, help="training iterations (batches)")
    p.add_argument("--batch_size", type=int, default=4, help="items per batch")
    if semi_supervised:
        p.add_argument("--labeled_bs", type=int, default=2, help="labelled items per batch; the rest are unlabelled")
    p.add_argument("--labelnum", type=int, default=16, help="the first N cases of train.list with a label are labelled")
    p.add_argument(
        "--labeled_list",
        default="",
        help="a file of the labelled IDs (one a line, '#' comments), instead of --labelnum",
    )
    p.add_argument(
        "--group_by",
        default="",
        metavar="REGEX",
        help="IDs that carry their patient, e.g. '^(patient\\d+)_': the regex's first group (else its match) names "
        "the patient of each ID, and training refuses a patient with IDs in both train.list and test.list (also "
        "for a validation split's lists) and a labelled set that takes some of a patient's train.list frames but "
        "not all; every ID must match; default: no check",
    )
    p.add_argument("--base_lr", type=float, default=0.01, help="SGD learning rate (momentum 0.9, weight decay 1e-4)")
    p.add_argument("--lr_step", type=int, default=2500, help="lr x 0.1 every this many iterations")
    p.add_argument("--seed", type=int, default=1337, help="seeds the weights, the batches and the augmentations")
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
    p.add_argument(
        "--oversample_foreground",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="the share of the crops of labelled items made to hold a foreground pixel (nnU-Net uses 0.33): for "
        "small lesions in frames larger than the patch; 0 keeps the release's uniform crops",
    )
    p.add_argument("--num_classes", type=int, default=2, help="K: classes of the label maps, background included")
    p.add_argument(
        "--dice",
        choices=DICE_LOSSES,
        default="vnet",
        help="the Dice half of the supervised loss (supervised, UA-MT, CPS, UniMatch): vnet, the UA-MT release's "
        "squared-sum Dice; batch, a linear-sum batch Dice that scores a correct empty prediction 0 (frames without a "
        "lesion; utils/losses.py batch_dice_loss); run.json's method gains _batchdice",
    )
    p.add_argument(
        "--net",
        choices=list(NETWORKS),
        default=DEFAULT_NET,
        help="the network (networks/): vnet, the UA-MT V-Net (2D or 3D as the data); unet, a 2D U-Net",
    )
    add_dropout_flags(p)
    p.add_argument("--save_every", type=int, default=1000, help="checkpoint every N iterations (and at the end)")
    p.add_argument("--device", default=default_device(), help=DEVICE_HELP)
    p.add_argument("--num_workers", type=int, default=2, help="data loader processes (0: load in the main one)")
    add_threads_flag(p)
    p.add_argument(
        "--cpu_allocator",
        choices=["reuse", "system"],
        default="reuse",
        help="CPU: reuse freed memory (faster for large patches, more resident memory) or glibc's default",
    )
    add_precision_flag(p)
    p.add_argument("--resume", default="", help="'auto': continue <run>/state_latest.pth if present; or a path")
    method.add_flags(p)
    return p


def add_dropout_flags(p: argparse.ArgumentParser) -> None:
    """The V-Net's Monte-Carlo dropout (networks/vnet.py DropoutSpec); run.json records them, and test_LA.py,
    predict.py and tools/mc_check.py rebuild the same network from it (a run.json without them: the defaults)."""
    d = DEFAULT_DROPOUT
    p.add_argument(
        "--dropout_rate",
        type=float,
        default=d.rate,
        help="V-Net: the dropout probability, in (0, 1)",
    )
    p.add_argument(
        "--dropout_where",
        choices=DROPOUT_WHERE,
        default=d.where,
        help="V-Net: where dropout acts: after the bottleneck (block_five), after the last decoder block (block_nine, "
        "the output convolution's input), or both (the release's)",
    )
    p.add_argument(
        "--dropout_kind",
        choices=DROPOUT_KINDS,
        default=d.kind,
        help="V-Net: channel (Dropout2d/3d: whole feature maps, the release's) or element (nn.Dropout: each value)",
    )


def dropout_of(args: argparse.Namespace) -> DropoutSpec:
    """The run's DropoutSpec from its flags (DataError for an impossible one)."""
    try:
        return DropoutSpec.from_settings(vars(args))
    except ValueError as error:
        raise DataError(f"--dropout_*: {error}") from error


def check_args(args: argparse.Namespace, method: type[Method]) -> None:
    """Refuse flag combinations that cannot train, before anything is read or written."""
    if len(args.patch_size) not in (2, 3):
        raise DataError(
            f"--patch_size {' '.join(map(str, args.patch_size))}: give 3 sides for volumes (their axes as stored: W H "
            f"D for LA), 2 for images (ROWS COLS)"
        )
    if any(s % SIDE_MULTIPLE or s <= 0 for s in args.patch_size):
        raise DataError(f"--patch_size {args.patch_size}: every side must be a positive multiple of {SIDE_MULTIPLE}")
    supported = NETWORKS[args.net].supported_dimensions
    if len(args.patch_size) not in supported:
        kind = "images (2D)" if supported == (2,) else "volumes (3D)"
        raise DataError(f"--net {args.net} is for {kind}, and this data is {len(args.patch_size)}D: use --net vnet")
    if dropout_of(args) != DEFAULT_DROPOUT and args.net != "vnet":
        raise DataError(f"--dropout_rate/--dropout_where/--dropout_kind choose the V-Net's dropout; --net {args.net} "
                        "has its own (leave them at their defaults)")  # fmt: skip
    semi = method.semi_supervised
    if semi and not 0 < args.labeled_bs < args.batch_size:
        raise DataError(
            f"--labeled_bs {args.labeled_bs} must be in 1..{args.batch_size - 1} (below --batch_size "
            f"{args.batch_size}) so that every batch holds unlabelled items"
        )
    if not 0.0 <= args.oversample_foreground <= 1.0:
        raise DataError(f"--oversample_foreground {args.oversample_foreground}: a share of the crops, 0..1")
    if args.num_classes < 2:
        raise DataError(f"--num_classes {args.num_classes}: a segmentation needs at least 2 classes (background + 1)")
    method.check_args(args)


def split_labelled(
    args: argparse.Namespace, source: Source, train_ids: list[str], semi: bool
) -> tuple[list[str], list[str]]:
    """Labelled: the IDs of --labeled_list, else the first --labelnum IDs of train.list that have a label (all of them
    for LA: the release's rule); unlabelled: the rest of train.list, whether or not a label exists."""
    if args.labeled_list:
        path = Path(args.labeled_list)
        if not path.is_file():
            raise DataError(f"{path}: --labeled_list file not found; write the labelled IDs one a line")
        labeled = read_id_list(path)
        unknown = [i for i in labeled if i not in train_ids]
        unlabelled = [i for i in labeled if i in train_ids and not source.has_label(i)]
        if unknown or unlabelled or not labeled:
            problem = f"{unknown[0]} is not in train.list" if unknown else f"{unlabelled[0]} has no label"
            raise DataError(f"{path}: {problem if labeled else 'no IDs'}; list labelled IDs of train.list")
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
    if getattr(args, "group_by", ""):
        where = str(args.labeled_list) if args.labeled_list else f"--labelnum {args.labelnum}"
        check_whole_groups(args.group_by, source, train_ids, labeled, where)
    return labeled, unlabeled


def read_id_list(path: Path) -> list[str]:
    """The IDs of a list file, one a line; '#' starts a comment (a list's rule, written at its top), blank lines are
    skipped."""
    return parse_id_list(path.read_text())


def parse_id_list(text: str) -> list[str]:
    """read_id_list of a file's text."""
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def case_groups(pattern: str, ids: list[str], origin: str) -> dict[str, str]:
    """Each ID's group (its patient) under --group_by `pattern`: the regex's first group where it has one, else the
    whole match (re.search: anchor it with ^ yourself). A bad regex or an ID it does not match is refused in one line;
    `origin` names where the IDs come from."""
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise DataError(f"--group_by {pattern!r}: not a regular expression ({error})") from error
    groups = {}
    for case_id in ids:
        match = regex.search(case_id)
        group = (match.group(1) if regex.groups else match.group(0)) if match else None
        if not group:
            raise DataError(
                f"--group_by {pattern!r}: {case_id} (in {origin}) does not match; the pattern must name the patient "
                f"of every ID (e.g. '^(patient\\d+)_' for patient0001_2CH_ED)"
            )
        groups[case_id] = group
    return groups


def check_whole_groups(pattern: str, source: Source, train_ids: list[str], labeled: list[str], where: str) -> None:
    """--group_by: (a) no patient has IDs in both train.list and test.list (the lists of a validation split are its
    root's train.list and test.list alike); (b) the labelled set takes whole patients: every train.list ID of a
    patient with a labelled ID is labelled (unlabelled IDs of other patients are semi-supervision, and fine).
    `where` names the labelled set in messages (--labeled_list's file, or --labelnum N). One-line DataError."""
    train_origin, test_origin = source.list_origin("train"), source.list_origin("test")
    test_ids = source.list_ids("test")
    train_groups = case_groups(pattern, train_ids, train_origin)
    test_groups = case_groups(pattern, test_ids, test_origin)
    by_group: dict[str, list[str]] = {}
    for case_id, group in train_groups.items():
        by_group.setdefault(group, []).append(case_id)
    for case_id, group in test_groups.items():
        if group in by_group:
            raise DataError(
                f"--group_by {pattern!r}: patient {group} is on both sides: {by_group[group][0]} in {train_origin} "
                f"and {case_id} in {test_origin}; a split takes whole patients: move them to one list"
            )
    chosen = set(labeled)
    for group in dict.fromkeys(train_groups[i] for i in labeled):
        frames = by_group[group]
        missing = [i for i in frames if i not in chosen]
        if missing:
            raise DataError(
                f"{where}: patient {group} (--group_by {pattern!r}) has {len(frames) - len(missing)} of its "
                f"{len(frames)} train.list frames labelled ({missing[0]} is not); label whole patients"
            )
