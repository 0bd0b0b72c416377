"""Users' own data end to end through the scripts: 2D echo-like PNG frames (some without masks) and a NIfTI task with
3 labels — train UA-MT, test, predict (predictions in the input's geometry, uncertainty maps, overlays)."""

import csv
import json
import math

import nibabel as nib
import numpy as np
import pytest
from conftest import oracle_test_args
from medpy.metric import binary
from PIL import Image
from scipy import ndimage
from test_end_to_end import run

import evaluation.testing as testing
from dataloaders.sources import ImageFolderSource
from dataloaders.synthetic import make_synthetic_nifti
from dataloaders.synthetic_echo import echo_frame, make_synthetic_echo
from evaluation.metrics import case_metrics

FAST = ["--max_iterations", "3", "--save_every", "3", "--num_workers", "0", "--device", "cpu"]


def metrics(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_echo_frames_train_test_predict(tmp_path):
    # 8 training frames, 3 with masks; 2 test frames; 80 x 100 frames cropped to 72 x 72, then resized to 64 x 64.
    root = make_synthetic_echo(tmp_path / "echo", n_train=8, n_test=2, labelled=3, shape=(80, 100), seed=4)
    model = tmp_path / "model"
    geometry = ["--center_crop", "72", "72", "--resize", "64", "64"]
    result = run("train_uamt_unlabel.py", "--root_path", root, "--model_dir", model, "--exp", "echo",
                 "--patch_size", "48", "48", "--labelnum", "3", *geometry, *FAST, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    info = json.loads((model / "echo" / "run.json").read_text())
    assert (info["labelled"], info["unlabelled"]) == (3, 5)  # the 5 others, 4 of them without any mask file
    # --labelnum counts cases with a mask: only 3 exist.
    result = run("train_uamt_unlabel.py", "--root_path", root, "--model_dir", model, "--exp", "x",
                 "--patch_size", "48", "48", "--labelnum", "4", *FAST, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    assert "error: --labelnum 4: train.list has 8 cases, 3 with a label; choose 1..3" in result.stderr

    # The test takes the crop and resize from the run; predictions go back to the 80 x 100 frames.
    result = run("test_LA.py", "--root_path", root, "--model_dir", model, "--model", "echo", "--iteration", "3",
                 "--stride_xy", "16", "--device", "cpu", "--threads", "1", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = model / "echo" / "test_iter_3"
    rows = metrics(out / "metrics.csv")
    assert [r["case"] for r in rows] == ["frame_008", "frame_009", "mean"]
    settings = json.loads((out / "test.json").read_text())
    assert (settings["resize"], settings["patch_size"]) == ([64, 64], [48, 48])  # the run's, from its run.json
    assert settings["blend"] == "gaussian" and "1 torch threads" in settings["machine"]  # 2D default; --threads 1
    assert settings["metrics_grid"].startswith("each case's original grid")
    prediction = np.asarray(Image.open(out / "frame_008_pred.png"))
    assert prediction.shape == (80, 100) and set(np.unique(prediction)) <= {0, 255}
    for row in rows[:-1]:  # the metrics are those of the written frame-size prediction against the mask as drawn
        written = np.asarray(Image.open(out / f"{row['case']}_pred.png")) > 0
        truth = np.asarray(Image.open(root / "masks" / f"{row['case']}.png")) > 0
        gt = np.asarray(Image.open(out / f"{row['case']}_gt.png")) > 0
        np.testing.assert_array_equal(gt, truth)  # the ground truth written is the mask, at its size
        assert float(row["dice"]) == pytest.approx(binary.dc(written, truth), abs=1e-6)
        if written.any():
            assert float(row["hd95"]) == pytest.approx(binary.hd95(written, truth), abs=1e-6)

    images = tmp_path / "new_frames"
    images.mkdir()
    for case_id in ("frame_008", "frame_009"):
        (images / f"{case_id}.png").write_bytes((root / "images" / f"{case_id}.png").read_bytes())
    result = run("predict.py", "--checkpoint", model / "echo" / "iter_3.pth", "--input", images, "--mc_passes", "2",
                 "--stride_xy", "16", "--device", "cpu", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    predicted = tmp_path / "new_frames_pred"
    for case_id in ("frame_008", "frame_009"):
        mask = np.asarray(Image.open(predicted / f"{case_id}_pred.png"))
        uncertainty = np.asarray(Image.open(predicted / f"{case_id}_uncertainty.tif"))
        assert mask.shape == uncertainty.shape == (80, 100)
        assert uncertainty.min() >= 0 and uncertainty.max() <= math.log(2) + 1e-5  # entropy of 2 classes
        assert not uncertainty[:4].any()  # outside the centre crop: nothing predicted
        overlay = np.asarray(Image.open(predicted / f"{case_id}_overlay.png"))
        # image | structures | heat, each at the frame's 80 x 100 size, then the legend's strip below them
        assert overlay.shape[0] > 80 and overlay.shape[1:] == (3 * 100, 3)
        frame = np.asarray(Image.open(images / f"{case_id}.png"))
        assert np.corrcoef(overlay[:80, :100, 0].ravel(), frame.ravel())[0, 1] > 0.9  # the frame itself, not squashed
    # The deterministic prediction is the test's.
    np.testing.assert_array_equal(np.asarray(Image.open(predicted / "frame_008_pred.png")), prediction)
    # frames.csv (binary 2D): each row recounted from the written prediction and uncertainty map.
    frames = metrics(predicted / "frames.csv")
    assert [r["case"] for r in frames] == ["frame_008", "frame_009"]
    for row in frames:
        lesion = np.asarray(Image.open(predicted / f"{row['case']}_pred.png")) == 255
        uncertainty = np.asarray(Image.open(predicted / f"{row['case']}_uncertainty.tif"))
        assert row["lesion_present"] == ("yes" if lesion.any() else "no")
        assert int(row["area_px"]) == lesion.sum() and row["area_mm2"] == ""  # PNG: no spacing
        assert int(row["lesions"]) == ndimage.label(lesion, structure=np.ones((3, 3)))[1]
        mean = row["mean_uncertainty_in_lesion"]
        assert (mean == "") if not lesion.any() else float(mean) == pytest.approx(uncertainty[lesion].mean(), abs=1e-6)
    # --min_lesion above any frame's size: every frame counts as clean, and its written prediction is empty.
    result = run("predict.py", "--checkpoint", model / "echo" / "iter_3.pth", "--input", images, "--mc_passes", "0",
                 "--overlays", "0", "--min_lesion", str(80 * 100 + 1), "--out", tmp_path / "clean", "--stride_xy",
                 "16", "--device", "cpu", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    frames = metrics(tmp_path / "clean" / "frames.csv")
    summary = [(r["lesion_present"], r["area_px"], r["mean_uncertainty_in_lesion"]) for r in frames]
    assert summary == [("no", "0", "")] * 2
    assert not np.asarray(Image.open(tmp_path / "clean" / "frame_008_pred.png")).any()


def test_2d_metrics_are_computed_on_each_frames_original_grid(tmp_path, monkeypatch):
    """test_LA.py on frames cropped (80 x 100 of 90 x 120) and resized (48 x 64) for the network: each case's metrics
    are medpy's on the frame's grid, the mask as stored against the class probabilities resized back bilinearly
    (background outside the crop) and then argmaxed, done here independently with PIL."""
    root = make_synthetic_echo(tmp_path / "echo", n_train=2, n_test=3, labelled=2, shape=(90, 120), seed=8)
    geometry = ["--center_crop", "80", "100", "--resize", "48", "64"]
    source = ImageFolderSource(root, center_crop=(80, 100), resize=(48, 64))
    # An oracle in place of the network: the network-grid mask, blurred into soft probabilities.
    oracle = {}
    for case_id in ("frame_002", "frame_003", "frame_004"):
        image, label = source.read(case_id)
        foreground = ndimage.gaussian_filter(label.astype(np.float32), 1.0)
        oracle[image.tobytes()] = np.stack([1 - foreground, foreground])
    args = oracle_test_args(monkeypatch, root, tmp_path / "model", oracle, *geometry)
    testing.evaluate(args)
    rows = metrics(tmp_path / "model" / "o" / "test_iter_1" / "metrics.csv")[:-1]
    assert [r["case"] for r in rows] == ["frame_002", "frame_003", "frame_004"]
    grid_differs = False
    for row, probability in zip(rows, oracle.values()):
        channels = [Image.fromarray(p).resize((100, 80), Image.Resampling.BILINEAR) for p in probability]
        frame = np.zeros((2, 90, 120), np.float32)
        frame[0] = 1.0  # outside the crop (rows 5..85, columns 10..110): background
        frame[:, 5:85, 10:110] = np.stack([np.asarray(c) for c in channels])
        prediction = frame.argmax(0).astype(bool)
        truth = np.asarray(Image.open(root / "masks" / f"{row['case']}.png")) == 255
        medpy = {"dice": binary.dc, "jaccard": binary.jc, "hd95": binary.hd95, "asd": binary.asd,
                 "precision": binary.precision, "recall": binary.recall}  # fmt: skip
        expected = {name: function(prediction, truth) for name, function in medpy.items()}
        for name, value in expected.items():
            assert float(row[name]) == pytest.approx(value, abs=2e-6), (row["case"], name)
        on_network_grid = case_metrics(probability.argmax(0), source.read(row["case"])[1])
        grid_differs |= abs(on_network_grid["hd95"] - expected["hd95"]) > 0.1
    assert grid_differs  # the network's grid would have given other distances: the test tells the grids apart


def test_training_with_only_a_test_list_takes_the_other_frames(tmp_path):
    """The README's 2D hint: a test.list and no train.list trains on the frames not in test.list (it used to refuse
    every test frame as 'also in train.list')."""
    root = make_synthetic_echo(tmp_path / "echo", n_train=4, n_test=2, labelled=2, shape=(48, 48), seed=7)
    (root / "train.list").unlink()
    model = tmp_path / "model"
    result = run("train_uamt_unlabel.py", "--root_path", root, "--model_dir", model, "--exp", "t", "--patch_size",
                 "32", "32", "--labelnum", "2", "--max_iterations", "1", "--save_every", "1", "--num_workers", "0",
                 "--device", "cpu", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    info = json.loads((model / "t" / "run.json").read_text())
    assert (info["labelled"], info["unlabelled"]) == (2, 2)  # frames 0-3; the 2 test frames (with masks) left out


def test_labelled_list_chooses_the_labelled_cases(tmp_path):
    root = make_synthetic_echo(tmp_path / "echo", n_train=6, n_test=1, labelled=3, shape=(64, 64), seed=5)
    (tmp_path / "labelled.txt").write_text("frame_002\nframe_000\n")
    model = tmp_path / "model"
    result = run("train_uamt.py", "--root_path", root, "--model_dir", model, "--exp", "l",
                 "--labeled_list", tmp_path / "labelled.txt", *FAST, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    info = json.loads((model / "l" / "run.json").read_text())
    assert (info["labelled"], info["unlabelled"]) == (2, 4)
    assert info["args"]["patch_size"] == [256, 256]  # no --patch_size: the 2D default, as the data are 2D
    (tmp_path / "labelled.txt").write_text("frame_002\nframe_004\n")  # frame_004 has no mask
    result = run("train_uamt.py", "--root_path", root, "--model_dir", model, "--exp", "m", "--patch_size", "32", "32",
                 "--labeled_list", tmp_path / "labelled.txt", *FAST, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "labelled.txt: frame_004 has no label" in result.stderr


def test_nifti_task_with_three_labels_train_test_predict(tmp_path):
    root = make_synthetic_nifti(tmp_path / "task", n_train=6, n_test=2, shape_range=((36, 36, 34), (40, 40, 36)),
                                seed=6, num_classes=3)  # fmt: skip
    model = tmp_path / "model"
    result = run("train_uamt_unlabel.py", "--root_path", root, "--model_dir", model, "--exp", "k3", "--num_classes",
                 "3", "--patch_size", "32", "32", "32", "--labelnum", "3", *FAST, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    result = run("test_LA.py", "--root_path", root, "--model_dir", model, "--model", "k3", "--iteration", "3",
                 "--patch_size", "32", "32", "32", "--stride_xy", "16", "--stride_z", "16", "--device", "cpu",
                 cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = model / "k3" / "test_iter_3"
    rows = metrics(out / "metrics.csv")
    assert [r["case"] for r in rows] == ["SYN006", "SYN007", "mean"]  # imagesTs: the test split without lists
    assert {"dice", "dice_1", "dice_2", "hd95_1", "hd95_2"} <= set(rows[0])
    source_image = nib.load(root / "imagesTs" / "SYN006_0000.nii.gz")
    written = nib.load(out / "SYN006_pred.nii.gz")
    np.testing.assert_allclose(written.affine, source_image.affine)
    assert written.shape == source_image.shape and int(np.asarray(written.dataobj).max()) <= 2

    result = run("predict.py", "--checkpoint", model / "k3" / "iter_3.pth", "--input", root / "imagesTs",
                 "--out", tmp_path / "pred", "--mc_passes", "2", "--stride_xy", "16", "--stride_z", "16",
                 "--device", "cpu", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    uncertainty = nib.load(tmp_path / "pred" / "SYN007_uncertainty.nii.gz")
    np.testing.assert_allclose(uncertainty.affine, source_image.affine)
    values = np.asarray(uncertainty.dataobj)
    assert values.dtype == np.float32 and 0 <= values.min() and values.max() <= math.log(3) + 1e-5
    predicted = np.asarray(nib.load(tmp_path / "pred" / "SYN006_pred.nii.gz").dataobj)
    np.testing.assert_array_equal(predicted, np.asarray(written.dataobj))  # the same deterministic segmentation
    assert (tmp_path / "pred" / "SYN006_overlay.png").is_file()


def test_a_2d_run_saved_with_joint_batchnorm_does_not_resume_as_split(tmp_path):
    """The 2D default (--student_batchnorm auto = split) must not switch a run started with joint part-way: the loop
    checks the method's resume_must_match."""
    root = make_synthetic_echo(tmp_path / "echo", n_train=4, n_test=1, labelled=2, shape=(48, 48), seed=8)
    model = tmp_path / "model"
    common = ["--root_path", root, "--model_dir", model, "--exp", "j", "--patch_size", "32", "32", "--labelnum", "2",
              "--num_workers", "0", "--device", "cpu", "--save_every", "1"]  # fmt: skip
    joint = ["--student_batchnorm", "joint"]
    result = run("train_uamt_unlabel.py", *common, *joint, "--max_iterations", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run("train_uamt_unlabel.py", *common, "--max_iterations", "2", "--resume", "auto", cwd=tmp_path)
    assert result.returncode == 2 and "saved with --student_batchnorm joint" in result.stderr


def test_letterboxed_frames_of_different_sizes_train_test_and_come_back_at_their_own_size(tmp_path):
    # Six frames of six sizes and shapes (wide, tall, square): 4 to train (3 with masks, one of them empty, as a
    # normal BUSI frame), 2 to test; --letterbox 64 puts each in a 64 x 64 square, aspect kept.
    shapes = {"a": (60, 90), "b": (90, 60), "c": (72, 72), "d": (50, 100), "t1": (66, 99), "t2": (80, 56)}
    root = tmp_path / "frames"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(3)
    for case_id, shape in shapes.items():
        frame, mask = echo_frame(shape, rng)
        Image.fromarray(frame).save(root / "images" / f"{case_id}.png")
        if case_id != "d":
            Image.fromarray((mask if case_id != "c" else 0 * mask) * 255).save(root / "masks" / f"{case_id}.png")
    (root / "train.list").write_text("a\nb\nc\nd\n")
    (root / "test.list").write_text("t1\nt2\n")
    model = tmp_path / "model"
    result = run("train_uamt_unlabel.py", "--root_path", root, "--model_dir", model, "--exp", "lb", "--letterbox",
                 "64", "--patch_size", "48", "48", "--labelnum", "3", "--threads", "1", *FAST,
                 cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    info = json.loads((model / "lb" / "run.json").read_text())
    assert info["args"]["letterbox"] == 64 and info["args"]["resize"] is None
    result = run("test_LA.py", "--root_path", root, "--model_dir", model, "--model", "lb", "--iteration", "3",
                 "--stride_xy", "16", "--device", "cpu", "--threads", "1", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = model / "lb" / "test_iter_3"
    assert [r["case"] for r in metrics(out / "metrics.csv")] == ["t1", "t2", "mean"]
    assert json.loads((out / "test.json").read_text())["letterbox"] == 64  # the run's, from its run.json
    for case_id in ("t1", "t2"):
        prediction = np.asarray(Image.open(out / f"{case_id}_pred.png"))
        truth = np.asarray(Image.open(out / f"{case_id}_gt.png"))
        assert prediction.shape == truth.shape == shapes[case_id]  # back on the frame's own grid
        np.testing.assert_array_equal(truth, np.asarray(Image.open(root / "masks" / f"{case_id}.png")))
