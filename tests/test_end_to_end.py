"""Each training script for a few iterations on generated data, then test_LA.py on its checkpoint."""

import csv
import json
import math
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import SHARED_LA, SMALL_PATCH, run_script
from PIL import Image
from tensorboardX.proto import event_pb2

import evaluation.testing as testing
import methods.uamt
import training.loop as training
from dataloaders.flags import resolve_patch_size
from dataloaders.sources import ImageFolderSource
from dataloaders.synthetic import make_synthetic_la, synthetic_case
from evaluation.metrics import class_metrics
from evaluation.testing import load_network
from evaluation.windows import sliding_window_probability
from methods import UAMT, Supervised, UAMTUnlabel
from utils.errors import DataError
from utils.visualize import slice_grid


def run(script, *args, cwd):
    return run_script(script, *args, cwd=cwd, timeout=600)


def event_tags(log_dir):
    """Scalar and image tags in a TensorBoard event file (records: length, crc, payload, crc)."""
    tags = set()
    for path in log_dir.glob("events.out.tfevents.*"):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
            tags |= {value.tag for value in event.summary.value}
            offset += 12 + length + 4
    return tags


SCRIPTS = [
    ("train_supervised.py", "vnet_supervised", [], "supervised"),
    ("train_uamt.py", "UAMT", ["--labeled_bs", "1"], "uamt"),
    ("train_uamt_unlabel.py", "UAMT_unlabel", ["--labeled_bs", "1"], "uamt_unlabel"),
]


@pytest.mark.parametrize(("script", "exp", "extra", "method"), SCRIPTS)
def test_train_then_test_then_summarize(script, exp, extra, method, synthetic_root, tmp_path):
    common = [
        "--root_path",
        synthetic_root,
        "--patch_size",
        *SMALL_PATCH,
        "--batch_size",
        "2",
        "--labelnum",
        "3",
        "--device",
        "cpu",
        "--num_workers",
        "1",
    ]
    result = run(script, *common, *extra, "--max_iterations", "3", "--save_every", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "model" / exp
    assert (run_dir / "iter_2.pth").is_file() and (run_dir / "iter_3.pth").is_file()
    log = (run_dir / "log.txt").read_text()
    assert "'max_iterations': 3" in log and "iteration 3:" in log
    tags = event_tags(run_dir / "log")
    assert {"loss/loss", "loss/loss_seg", "loss/loss_seg_dice", "lr"} <= tags
    if script != "train_supervised.py":
        assert {"train/consistency_weight", "uncertainty/threshold", "uncertainty/mask_per", "uncertainty/mean"} <= tags

    result = run(
        "test_LA.py",
        "--root_path",
        synthetic_root,
        "--model",
        exp,
        "--iteration",
        3,
        "--patch_size",
        *SMALL_PATCH,
        "--stride_xy",
        12,
        "--stride_z",
        8,
        "--device",
        "cpu",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = run_dir / "test_iter_3"
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    test_ids = (synthetic_root / "test.list").read_text().split()
    assert [r["case"] for r in rows] == [*test_ids, "mean"]
    for case_id in test_ids:
        for suffix in ("pred", "img", "gt"):
            assert (out / f"{case_id}_{suffix}.nii.gz").is_file()
    assert "mean: dice" in result.stdout
    settings = json.loads((out / "test.json").read_text())
    assert settings["cases"] == len(test_ids) and settings["blend"] == "uniform"  # volumes: the release's average

    if method == "supervised":  # the whole-volume pass writes beside the windows' results, not over them
        whole = run("test_LA.py", "--root_path", synthetic_root, "--model", exp, "--iteration", 3, "--whole_volume", 1,
                    "--device", "cpu", "--save_nifti", 0, cwd=tmp_path)  # fmt: skip
        assert whole.returncode == 0, whole.stderr
        assert len(list(csv.DictReader(open(run_dir / "test_iter_3_whole" / "metrics.csv")))) == len(test_ids) + 1
        assert list(csv.DictReader(open(out / "metrics.csv"))) == rows

    info = json.loads((run_dir / "run.json").read_text())
    unlabelled = 0 if method == "supervised" else 5  # 8 training cases, 3 labelled
    assert (info["method"], info["labelled"], info["unlabelled"], info["iterations"]) == (method, 3, unlabelled, 3)
    result = run("summarize.py", run_dir, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    row = result.stdout.splitlines()[2].split(" | ")
    assert row[1:4] == [f"`{method}:3`", "3", str(unlabelled)]
    assert row[4] == f"{100 * float(rows[-1]['dice']):.2f}"  # one seed: the run's mean Dice in percent, no std


def test_consistency_items_per_method(synthetic_root, tmp_path, monkeypatch):
    """UA-MT gets consistency on all 4 items, UA-MT-unlabel on the 2 unlabelled, supervised on none; image grids."""
    seen, passes = [], []
    real = methods.uamt.uncertainty_aware_consistency

    def spy(student_logits, teacher, inputs, threshold, *args):
        seen.append((student_logits.shape[0], inputs.shape[0], teacher.training, threshold))
        passes.append(args)  # (T, passes per forward)
        return real(student_logits, teacher, inputs, threshold, *args)

    monkeypatch.setattr(methods.uamt, "uncertainty_aware_consistency", spy)
    monkeypatch.setattr(training, "IMAGE_EVERY", 1)  # image grids at every iteration
    parser = training.training_parser("", "x", UAMT)
    base = [
        "--root_path",
        str(synthetic_root),
        "--patch_size",
        *SMALL_PATCH,
        "--labelnum",
        "4",
        "--num_workers",
        "0",
        "--device",
        "cpu",
        "--max_iterations",
        "1",
        "--model_dir",
        str(tmp_path),
    ]
    training.train(parser.parse_args(base), UAMT)
    run = training.train(parser.parse_args(base), UAMTUnlabel)
    h0 = 0.75 * math.log(2) + 0.25 * math.exp(-5) * math.log(2)  # H(0) = (0.75 + 0.25 r(0)) ln 2
    assert seen == [(4, 4, True, pytest.approx(h0)), (2, 2, True, pytest.approx(h0))]
    grids = {"train/Image", "train/Groundtruth_label", "train/Predicted_label", "train/uncertainty", "train/mask"}
    assert grids | {"unlabel/Image", "unlabel/Predicted_label"} <= event_tags(run / "log")
    # The mean-teacher ablation: H = inf, every voxel kept.
    no_mask_flags = ["--exp", "m", "--uncertainty_mask", "0", "--mc_passes_per_forward", "8"]
    no_mask = training.train(parser.parse_args(base + no_mask_flags), UAMTUnlabel)
    assert seen[2][:3] == (2, 2, True) and seen[2][3] == math.inf
    assert passes == [(8, 2), (8, 2), (8, 8)]  # the release's 2 passes per forward unless told otherwise
    assert json.loads((no_mask / "run.json").read_text())["method"] == "uamt_unlabel_nomask"
    no_mask_tags = event_tags(no_mask / "log")  # no inf threshold logged: tensorboardX warned on each one
    assert "uncertainty/mask_per" in no_mask_tags and "uncertainty/threshold" not in no_mask_tags
    supervised = training.training_parser("", "s", Supervised)
    run = training.train(supervised.parse_args(base + ["--exp", "s"]), Supervised)
    assert len(seen) == 3
    assert {"train/Image", "train/Groundtruth_label", "train/Predicted_label"} <= event_tags(run / "log")


def test_defaults_are_the_papers():
    args = training.training_parser("", "x", UAMTUnlabel).parse_args([])
    assert (args.max_iterations, args.batch_size, args.labeled_bs, args.labelnum) == (6000, 4, 2, 16)
    assert (args.base_lr, args.lr_step, args.seed, args.deterministic) == (0.01, 2500, 1337, 1)
    assert (args.ema_decay, args.consistency, args.consistency_rampup, args.mc_passes) == (0.99, 0.1, 40.0, 8)
    assert args.rampup_epoch_iters == 150 and args.mc_passes_per_forward == 2
    assert args.patch_size is None and resolve_patch_size(None, 3) == [112, 112, 80] and args.save_every == 1000
    assert testing.testing_parser().parse_args([]).patch_size is None  # the run's patch, else the same default


def test_bad_patch_size_is_one_line_and_exit_2(synthetic_root, tmp_path):
    result = run(
        "train_uamt_unlabel.py",
        "--root_path",
        synthetic_root,
        "--patch_size",
        40,
        32,
        32,
        "--max_iterations",
        1,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "multiple of 16" in result.stderr
    assert not (tmp_path / "model").exists()


def test_a_2d_network_on_volumes_is_one_line_and_exit_2(synthetic_root, tmp_path):
    result = run("train_supervised.py", "--root_path", synthetic_root, "--net", "unet", "--patch_size", 32, 32, 32,
                 "--max_iterations", 1, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "--net unet is for images (2D)" in result.stderr
    assert not (tmp_path / "model").exists()


@pytest.mark.skipif(not SHARED_LA.is_dir(), reason="the real LA data (../shared/data/LA) is not here")
def test_real_la_cases_end_to_end(tmp_path):
    train_ids = (SHARED_LA / "train.list").read_text().split()[:2]
    test_ids = (SHARED_LA / "test.list").read_text().split()[:1]
    root = tmp_path / "LA"
    subprocess.run(
        [sys.executable, str(SHARED_LA / "restore.py"), str(root), "--ids", *train_ids, *test_ids],
        check=True,
        capture_output=True,
    )
    result = run(
        "train_uamt_unlabel.py",
        "--root_path",
        root,
        "--patch_size",
        *SMALL_PATCH,
        "--batch_size",
        2,
        "--labeled_bs",
        1,
        "--labelnum",
        1,
        "--max_iterations",
        2,
        "--device",
        "cpu",
        "--num_workers",
        0,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    result = run(
        "test_LA.py",
        "--root_path",
        root,
        "--iteration",
        2,
        "--patch_size",
        *SMALL_PATCH,
        "--stride_xy",
        64,
        "--stride_z",
        32,
        "--device",
        "cpu",
        "--save_nifti",
        0,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(open(tmp_path / "model" / "UAMT_unlabel" / "test_iter_2" / "metrics.csv")))
    assert [r["case"] for r in rows] == [*test_ids, "mean"]
    assert 0.0 <= float(rows[0]["dice"]) <= 1.0
    shutil.rmtree(root)


def test_same_seed_gives_the_same_weights_whatever_the_number_of_workers(synthetic_root, tmp_path):
    import torch

    parser = training.training_parser("", "x", UAMTUnlabel)
    weights = []
    for workers, exp in (("0", "a"), ("2", "b")):
        args = parser.parse_args(["--root_path", str(synthetic_root), "--patch_size", *SMALL_PATCH, "--labelnum", "3",
                                  "--num_workers", workers, "--device", "cpu", "--max_iterations", "2", "--exp", exp,
                                  "--model_dir", str(tmp_path)])  # fmt: skip
        training.train(args, UAMTUnlabel)
        weights.append(torch.load(tmp_path / exp / "iter_2.pth", weights_only=True))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


# --- K classes and 2D ----------------------------------------------------------------------------------------------

PER_CLASS_COLUMNS = ["case", "dice", "jaccard", "hd95", "asd", "precision", "recall"] + [
    f"{m}_{c}" for c in (1, 2) for m in ("dice", "jaccard", "hd95", "asd", "precision", "recall")
]


def test_three_classes_train_then_test_end_to_end(tmp_path):
    root = make_synthetic_la(
        tmp_path / "LA3", n_train=5, n_test=2, shape_range=((36, 36, 34), (44, 44, 40)), seed=4, num_classes=3
    )
    result = run(
        "train_uamt_unlabel.py",
        "--root_path",
        root,
        "--patch_size",
        *SMALL_PATCH,
        "--num_classes",
        3,
        "--batch_size",
        2,
        "--labeled_bs",
        1,
        "--labelnum",
        2,
        "--max_iterations",
        3,
        "--device",
        "cpu",
        "--num_workers",
        0,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "model" / "UAMT_unlabel"
    first = next(line for line in (run_dir / "log.txt").read_text().splitlines() if "iteration 1:" in line)
    h0 = (0.75 + 0.25 * math.exp(-5)) * math.log(3)  # H(0) = (0.75 + 0.25 r(0)) ln K with K = 3
    assert f"uncertainty/threshold {h0:.5f}" in first

    result = run(
        "test_LA.py",
        "--root_path",
        root,
        "--iteration",
        3,
        "--patch_size",
        *SMALL_PATCH,
        "--stride_xy",
        12,
        "--stride_z",
        8,
        "--device",
        "cpu",
        "--save_nifti",
        0,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "class 1: dice" in result.stdout and "class 2: dice" in result.stdout
    out = run_dir / "test_iter_3"
    with open(out / "metrics.csv") as f:
        assert next(csv.reader(f)) == PER_CLASS_COLUMNS
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    test_ids = (root / "test.list").read_text().split()
    assert [r["case"] for r in rows] == [*test_ids, "mean"]
    for row in rows:  # only an empty prediction of a class may leave its distances and precision undefined
        for name in PER_CLASS_COLUMNS[1:]:
            assert math.isfinite(float(row[name])) or name.split("_")[0] in ("hd95", "asd", "precision")
    for row in rows:  # every class is in every label: the overlap metrics are defined and finite
        for name in ("dice", "jaccard", "recall", "dice_1", "dice_2", "jaccard_1", "jaccard_2", "recall_1", "recall_2"):
            assert 0.0 <= float(row[name]) <= 1.0
    for case in rows[:-1]:  # the plain columns are the mean over the classes where a metric is defined
        for name in ("dice", "jaccard", "recall"):
            assert float(case[name]) == pytest.approx(
                (float(case[f"{name}_1"]) + float(case[f"{name}_2"])) / 2, abs=2e-6
            )
    assert json.loads((out / "test.json").read_text())["num_classes"] == 3


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (["32"], "--patch_size 32: give 3 sides for volumes (their axes as stored: W H D for LA), 2 for images (ROWS"),
        (["32", "32", "32", "32"], "give 3 sides"),
        (["32", "32"], "is 3D ("),  # the LA cases are volumes: a 2D patch cannot crop them
    ],
)
def test_patch_of_the_wrong_length_is_one_line_and_exit_2(synthetic_root, tmp_path, patch, message):
    result = run(
        "train_uamt_unlabel.py",
        "--root_path",
        synthetic_root,
        "--patch_size",
        *patch,
        "--max_iterations",
        1,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
    assert not (tmp_path / "model").exists()


def test_help_says_the_patch_order_of_2d_and_3d():
    """One order for every 2D size (rows, columns: --patch_size, --center_crop, --resize), the stored axes for
    volumes; the help says so."""
    for parser in (training.training_parser("", "x", UAMTUnlabel), testing.testing_parser()):
        text = " ".join(parser.format_help().split())
        assert "ROWS COLS for 2D images" in text and "the order of --center_crop and --resize" in text
        assert "LA h5: W H D, the 'image' dataset's axes 0 1 2" in text
        assert "--center_crop ROWS COLS" in text and "--resize ROWS COLS" in text


def test_resume_refuses_another_class_count_and_reads_old_states_as_two_classes(tmp_path):
    args = training.training_parser("", "x", UAMTUnlabel).parse_args(["--num_classes", "3"])
    saved = {k: vars(args)[k] for k in training.RESUME_MUST_MATCH}
    training.check_resumable({"args": saved}, args, tmp_path / "state.pth")
    old = {k: v for k, v in saved.items() if k != "num_classes"}  # saved before --num_classes existed
    with pytest.raises(DataError, match="--num_classes 2"):
        training.check_resumable({"args": old}, args, tmp_path / "state.pth")
    args.num_classes = 2
    training.check_resumable({"args": old}, args, tmp_path / "state.pth")


def test_a_2d_item_is_logged_as_one_image():
    image = torch.arange(12.0).reshape(3, 4)
    grid = slice_grid(image)
    assert grid.shape == (3, 3, 4)  # three colour channels of the whole image, no slices
    assert np.allclose(grid, np.broadcast_to((image / 11).numpy(), (3, 3, 4)))
    label = torch.tensor([[0, 1], [2, 1]])
    assert np.allclose(slice_grid(label, False, 2)[0], [[0, 0.5], [1, 0.5]])  # K = 3: divided by K - 1


def test_training_and_testing_on_2d_images_with_three_classes(tmp_path, monkeypatch):
    """The loop on 2D items: a 2D V-Net, 2D MC-dropout uncertainty, H(t) with ln 3, images logged whole; then the
    test on its checkpoint (2D recognised from the weights) with 2D windows and per-class metrics. The cases lie in
    a 2D image folder: float TIFF images, PNG masks of class indices."""
    rng = np.random.default_rng(0)
    ids = [f"IMG{i}" for i in range(6)]
    train_ids, test_ids = ids[:4], ids[4:]
    root = tmp_path / "images2d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for case_id in ids:
        image, label = synthetic_case((48, 40), rng, num_classes=3)
        Image.fromarray(image).save(root / "images" / f"{case_id}.tif")
        Image.fromarray(label).save(root / "masks" / f"{case_id}.png")
    (root / "train.list").write_text("\n".join(train_ids))
    (root / "test.list").write_text("\n".join(test_ids))

    seen = []
    real = methods.uamt.uncertainty_aware_consistency

    def spy(student_logits, teacher, inputs, threshold, *args):
        seen.append((tuple(student_logits.shape), tuple(inputs.shape), threshold))
        return real(student_logits, teacher, inputs, threshold, *args)

    monkeypatch.setattr(methods.uamt, "uncertainty_aware_consistency", spy)
    monkeypatch.setattr(training, "IMAGE_EVERY", 1)
    parser = training.training_parser("", "img", UAMTUnlabel)
    args = parser.parse_args(
        [
            "--root_path",
            str(root),
            "--patch_size",
            "32",
            "32",
            "--num_classes",
            "3",
            "--labelnum",
            "2",
            "--num_workers",
            "0",
            "--device",
            "cpu",
            "--max_iterations",
            "2",
            "--model_dir",
            str(tmp_path),
        ]
    )
    run_dir = training.train(args, UAMTUnlabel)
    h0 = (0.75 + 0.25 * math.exp(-5)) * math.log(3)
    assert seen[0] == ((2, 3, 32, 32), (2, 1, 32, 32), pytest.approx(h0))
    assert {"train/Image", "train/Predicted_label", "train/uncertainty", "unlabel/Image"} <= event_tags(run_dir / "log")
    net, num_classes = load_network(run_dir / "iter_2.pth", "cpu")
    assert (net.dimensions, num_classes) == (2, 3)

    base = [
        "--root_path",
        str(root),
        "--model_dir",
        str(tmp_path),
        "--model",
        "img",
        "--iteration",
        "2",
        "--device",
        "cpu",
        "--save_nifti",
        "0",
    ]
    with pytest.raises(DataError, match="a 2D V-Net, but --patch_size has 3 sides"):
        testing.evaluate(testing.testing_parser().parse_args([*base, "--patch_size", "32", "32", "32"]))
    means = testing.evaluate(testing.testing_parser().parse_args([*base, "--stride_xy", "8"]))  # the run's 32 x 32
    rows = list(csv.DictReader(open(run_dir / "test_iter_2" / "metrics.csv")))
    assert list(rows[0]) == PER_CLASS_COLUMNS and [r["case"] for r in rows] == [*test_ids, "mean"]
    assert 0.0 <= means["dice"] <= 1.0
    # Against the pieces by hand: the 2D window average, argmax, per-class medpy metrics of the first case.
    image, label = ImageFolderSource(root, num_classes=3).read(test_ids[0])
    probability = sliding_window_probability(net, image, (32, 32), 8, 4, 3, blend="gaussian")  # 2D: --blend auto
    expected = class_metrics(probability.argmax(0).numpy().astype(np.uint8), label, 3)
    assert float(rows[0]["dice_2"]) == pytest.approx(expected["dice_2"], abs=1e-6)
    assert float(rows[0]["dice"]) == pytest.approx(expected["dice"], abs=1e-6)
    # The whole-image pass needs no patch: the 3D default is fine.
    testing.evaluate(testing.testing_parser().parse_args([*base, "--whole_volume", "1"]))
    assert len(list(csv.DictReader(open(run_dir / "test_iter_2_whole" / "metrics.csv")))) == len(test_ids) + 1
