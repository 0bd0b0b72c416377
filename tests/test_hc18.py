"""Issue 13's 2D additions: --augment (left-right flips only for frames with an up and a down), the Dice
diagnostics logged by UA-MT (without touching its random draws), and the hc18 table of tools/run_table.py."""

import numpy as np
import pytest
import torch
from conftest import REPO, SHARED_HC18

import training.loop as training
from benchmarks.arenas import DISPLAY_NAMES
from dataloaders.augmentations import TrainTransform, random_rot_flip
from methods import UAMTUnlabel, UniMatch
from networks.vnet import VNet
from tools import run_table
from utils.mean_teacher import hard_dice, side_forward


def _frame():
    image = np.arange(40 * 36, dtype=np.float32).reshape(40, 36)
    return image, (image.astype(np.int64) * 7 % 3).astype(np.uint8)  # a label that is a function of the pixel


def _block_of(volume, out):
    """True if `out` is a contiguous block of `volume`."""
    corner = np.argwhere(volume == out[0, 0])[0]
    block = volume[corner[0] : corner[0] + out.shape[0], corner[1] : corner[1] + out.shape[1]]
    return block.shape == out.shape and np.array_equal(block, out)


def test_flip_lr_gives_the_frame_or_its_left_right_mirror_never_turned_over():
    image, label = _frame()
    transform = TrainTransform((32, 16), "flip_lr")
    seen = set()
    for seed in range(40):
        out, out_label = transform(image, label, np.random.default_rng(seed))
        assert out.shape == out_label.shape == (32, 16)
        assert np.array_equal(out_label, (out.astype(np.int64) * 7 % 3).astype(np.uint8))
        same, mirror = _block_of(image, out), _block_of(image[:, ::-1], out)
        assert same != mirror  # exactly one: the frame as it is or mirrored left-right
        # rows keep their order: the top of the crop is above its bottom in the frame
        assert out[0, 0] < out[-1, 0]
        seen.add(mirror)
    assert seen == {False, True}


def test_none_is_the_crop_alone_and_rot_flip_is_the_releases_draw():
    image, label = _frame()
    for seed in range(10):
        out, _ = TrainTransform((32, 16), "none")(image, label, np.random.default_rng(seed))
        assert _block_of(image, out)
        # rot_flip (the default) draws as before the flag: rot90 + flip, then the crop, from the same generator
        rng = np.random.default_rng(seed)
        expected = random_rot_flip(image, label, rng)[0]
        got, _ = TrainTransform((32, 16))(image, label, np.random.default_rng(seed))
        assert _block_of(np.ascontiguousarray(expected), got)


def test_unknown_augmentation_is_refused():
    with pytest.raises(ValueError, match="choose one of rot_flip, flip_lr, none"):
        TrainTransform((32, 32), "rot")


def test_augment_defaults_and_resume_guard():
    from training.options import DEFAULT_AUGMENT

    assert DEFAULT_AUGMENT[3] == "rot_flip"  # LA and volumes: the release's, unchanged
    assert "augment" in training.RESUME_MUST_MATCH and training.RESUME_DEFAULTS["augment"] == "rot_flip"


def test_hard_dice_against_its_definition():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 3, 8, 9))
    labels = rng.integers(0, 3, (3, 8, 9))
    prediction = logits.argmax(1)
    per_class = [
        2 * np.sum((prediction == c) & (labels == c)) / (np.sum(prediction == c) + np.sum(labels == c)) for c in (1, 2)
    ]
    expected = np.mean(per_class)
    assert float(hard_dice(torch.tensor(logits), torch.tensor(labels))) == pytest.approx(expected)
    # a class absent from prediction and label counts as perfect; all of a class missed counts 0
    background = torch.zeros(1, 2, 4, 4)
    background[:, 0] = 1
    assert float(hard_dice(background, torch.zeros(1, 4, 4, dtype=torch.long))) == 1.0
    assert float(hard_dice(background, torch.ones(1, 4, 4, dtype=torch.long))) == 0.0


def test_side_forward_leaves_no_trace():
    torch.manual_seed(0)
    net = VNet(n_classes=2, has_dropout=True, dimensions=2)
    net.train()
    x = torch.randn(2, 1, 32, 32)
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    state = torch.get_rng_state()
    logits = side_forward(net, x)
    assert torch.equal(torch.get_rng_state(), state)  # the next draws are those without the call
    assert all(torch.equal(v, buffers[k]) for k, v in net.named_buffers())  # BatchNorm statistics untouched
    with torch.no_grad():
        again = net(x)  # the same draws (dropout) from the same generator state
    assert torch.equal(logits, again)
    assert not logits.requires_grad


def test_hc18_table_commands():
    scale = run_table.CONFIGS["hc18"]
    exp, (train, test), final = run_table.job_commands("bcp:16", 1337, scale, "model/hc18", "cpu")
    assert exp == "bcp_16_seed1337" and train[1] == "train_bcp.py" and final == 600
    text = " ".join(train)
    for flags in ("--batch_size 4 --labeled_bs 2", "--pre_iterations 200", "--resize 128 192",
                  "--patch_size 128 192", "--max_iterations 600 --lr_step 250"):  # fmt: skip
        assert flags in text
    assert "--rampup_epoch_iters" not in text  # UA-MT's flags go to UA-MT only
    uamt = " ".join(run_table.job_commands("uamt_unlabel:16", 1337, scale, "m", "cpu")[1][0])
    assert "--rampup_epoch_iters 15 --consistency_rampup 40" in uamt
    assert "--batch_size 6 --labeled_bs 4" in uamt and "--pre_iterations" not in uamt  # per-method flags
    # the table's UA-MT rows keep the BatchNorm they were run with, whatever the 2D default
    parser = training.training_parser("", "x", UAMTUnlabel)
    for group, batchnorm in (("uamt_unlabel:16", "joint"), ("uamt_unlabel_bnsplit:16", "split")):
        train = run_table.job_commands(group, 1337, scale, "m", "cpu")[1][0]
        assert parser.parse_args(train[2:]).student_batchnorm == batchnorm, group
    supervised = " ".join(run_table.job_commands("supervised:160", 1339, scale, "m", "cpu")[1][0])
    assert "--labelnum 160" in supervised and "--consistency" not in supervised and "--batch_size" not in supervised
    # the LA tables' commands carry none of the 2D flags
    for config in ("la_half", "paper"):
        for group in ("supervised:16", "uamt_unlabel:16"):
            command = " ".join(run_table.job_commands(group, 1337, run_table.CONFIGS[config], "m", "cpu")[1][0])
            assert "--resize" not in command and "--augment" not in command


def test_hc18_labels_every_tenth_frame_of_train_list():
    """The 16-label rows label every 10th ID of train.list (HC18's IDs are ordered by head size: the first 16 would
    be small heads only); the all-labelled row takes no list."""
    scale = run_table.CONFIGS["hc18"]
    for group in ("supervised:16", "uamt_unlabel:16", "uamt_unlabel_bnsplit:16", "bcp:16"):
        train = run_table.job_commands(group, 1337, scale, "m", "cpu")[1][0]
        assert train[train.index("--labeled_list") + 1] == "benchmarks/hc18_labelled_16.list", group
    assert "--labeled_list" not in run_table.job_commands("supervised:160", 1337, scale, "m", "cpu")[1][0]
    labelled = (REPO / "benchmarks" / "hc18_labelled_16.list").read_text().split()
    train_list = SHARED_HC18 / "train.list"
    if not train_list.is_file():
        pytest.skip("HC18 not at ../shared/data/HC18")
    assert labelled == train_list.read_text().split()[::10]


def test_validation_labels_spread_over_the_validation_training_frames():
    """benchmarks/hc18_validation/batchnorm_default.sh labels every 8th of the validation training IDs (the first
    128 of train.list), never a validation frame (its last 32)."""
    labelled = (REPO / "benchmarks" / "hc18_validation" / "labelled_16.list").read_text().split()
    train_list = SHARED_HC18 / "train.list"
    if not train_list.is_file():
        pytest.skip("HC18 not at ../shared/data/HC18")
    ids = train_list.read_text().split()
    assert labelled == ids[:128][::8] and not set(labelled) & set(ids[128:])


def test_bcp_equal_work_row_does_uamt_work():
    """la_half's BCP row at UA-MT-unlabel's work in forward-equivalents (RESULTS.md's count: a BCP stage-1 iteration
    6, stage 2 8, UA-MT-unlabel 30), its runs named apart from bcp:8's; configs without the schedule refuse it."""
    exp, (train, _), final = run_table.job_commands("bcp_equal_work:8", 1337, run_table.CONFIGS["la_half"], "m", "cpu")
    text = " ".join(train)
    assert exp == "bcp_equal_work_8_seed1337" and train[1] == "train_bcp.py" and "--variant equal_work" in text
    pre = int(train[train.index("--pre_iterations") + 1])
    assert final == 4800 and "--max_iterations 4800" in text
    assert pre * 6 + (final - pre) * 8 == 1200 * 30
    with pytest.raises(SystemExit, match="no schedule"):
        run_table.job_commands("bcp_equal_work:8", 1337, run_table.CONFIGS["paper"], "m", "cpu")


@pytest.mark.parametrize(
    "group, base_group, method, names",
    [
        ("uamt_unlabel_4plus2:16", "uamt_unlabel:16", UAMTUnlabel,
         ("uamt_unlabel_4plus2_16_seed1337", "uamt_unlabel_16_seed1337")),
        ("unimatch_4plus2:8", "unimatch:8", UniMatch, ("unimatch_4plus2_8_seed1337", "unimatch_8_seed1337")),
    ],
)  # fmt: skip
def test_4plus2_rows_differ_from_their_method_only_in_the_batch(
    group: str, base_group: str, method: type, names: tuple[str, str]
) -> None:
    """la_half's 4 + 2 rows: the supervised batch's 4 labelled items plus 2 unlabelled, everything else as the
    method's 2 + 2 row (same schedule, ramps and labelled cases), their runs named and grouped apart."""
    scale = run_table.CONFIGS["la_half"]
    exp, (train, test), final = run_table.job_commands(group, 1337, scale, "m", "cpu")
    base_exp, (base, base_test), base_final = run_table.job_commands(base_group, 1337, scale, "m", "cpu")
    assert (exp, base_exp) == names and final == base_final == 1200
    assert train[1] == base[1] == f"train_{method.name}.py"
    parser = training.training_parser("", "x", method)
    args, base_args = vars(parser.parse_args(train[2:])), vars(parser.parse_args(base[2:]))
    differ = {k: (base_args[k], args[k]) for k in args if args[k] != base_args[k]}
    assert differ == {"exp": (base_exp, exp), "batch_size": (4, 6), "labeled_bs": (2, 4), "variant": ("", "4plus2")}
    assert test[test.index("--model") + 1] == exp and len(test) == len(base_test)
    assert f"{method.name}_4plus2" in DISPLAY_NAMES


def test_short_ramp_warning_names_the_fitting_epoch_length():
    import argparse

    from methods.uamt import short_ramp_warning
    from utils import ramps

    args = argparse.Namespace(consistency=0.1, max_iterations=600, consistency_rampup=40.0, rampup_epoch_iters=150)
    message = short_ramp_warning(args)
    assert "reaches only 0.0014" in message and "--rampup_epoch_iters 15" in message
    args.rampup_epoch_iters = 15  # the suggestion: lambda then ends at its maximum, as the release's 6000 do
    assert short_ramp_warning(args) == ""
    assert ramps.consistency_weight(599, 0.1, 40, 15) == pytest.approx(ramps.consistency_weight(5999, 0.1, 40, 150))
    # the release's run and the LA-half arena are not warned about
    for iterations, epoch, rampup in ((6000, 150, 40.0), (1200, 150, 8.0)):
        args = argparse.Namespace(
            consistency=0.1, max_iterations=iterations, consistency_rampup=rampup, rampup_epoch_iters=epoch
        )
        assert short_ramp_warning(args) == ""


def test_resume_refuses_another_augmentation_and_reads_old_states_as_rot_flip(tmp_path):
    from methods import UAMTUnlabel
    from utils.errors import DataError

    args = training.training_parser("", "x", UAMTUnlabel).parse_args(["--augment", "flip_lr"])
    saved = {k: vars(args)[k] for k in training.RESUME_MUST_MATCH}
    training.check_resumable({"args": saved}, args, tmp_path / "state.pth")
    old = {k: v for k, v in saved.items() if k != "augment"}  # saved before --augment existed: rot90 + flip
    with pytest.raises(DataError, match="--augment rot_flip"):
        training.check_resumable({"args": old}, args, tmp_path / "state.pth")
    args.augment = "rot_flip"
    training.check_resumable({"args": old}, args, tmp_path / "state.pth")
