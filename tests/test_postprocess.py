"""--postprocess lcc: the largest connected component of each foreground structure, on made-up label maps whose
components are known; and test_LA.py / predict.py with it on generated 2D frames."""

import argparse
import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from test_end_to_end import run

from dataloaders.synthetic_echo import make_synthetic_echo
from evaluation.postprocess import (
    POSTPROCESSING,
    add_min_lesion_flag,
    apply_min_lesion,
    largest_component,
    postprocess,
)
from evaluation.prediction import FRAME_COLUMNS, frame_summary
from methods import bcp


def made_up_map() -> tuple[np.ndarray, np.ndarray]:
    """A 4-class 2D map and what lcc must leave of it. Class 1: a 4x4 square (16 px) and a 3x3 square touching it by
    one corner only (one component of 25 px under 8-connectivity, two under 4-connectivity), and a far 5x5 blob with a
    hole (24 px). Class 2: a 2x6 bar (12 px) and two stray pixels. Class 3: a single pixel."""
    labels = np.zeros((20, 20), dtype=np.uint8)
    labels[0:4, 0:4] = 1  # 16
    labels[4:7, 4:7] = 1  # 9, diagonal neighbour of (3, 3): the same component under full connectivity
    labels[12:17, 12:17] = 1  # 25 ...
    labels[14, 14] = 0  # ... minus a hole: 24 < 25
    labels[8:10, 10:16] = 2  # 12
    labels[0, 19] = labels[19, 0] = 2  # strays
    labels[19, 19] = 3
    expected = np.zeros_like(labels)
    expected[0:4, 0:4] = 1
    expected[4:7, 4:7] = 1
    expected[8:10, 10:16] = 2
    expected[19, 19] = 3
    return labels, expected


def test_lcc_keeps_the_largest_component_of_each_class_with_full_connectivity():
    labels, expected = made_up_map()
    kept = postprocess(labels, "lcc")
    np.testing.assert_array_equal(kept, expected)
    assert kept.dtype == labels.dtype
    # 4-connectivity would have split class 1's corner-joined squares and kept the 24-px blob instead: the test tells
    # the connectivities apart.
    components, _ = ndimage.label(labels == 1)
    assert np.bincount(components.ravel())[1:].max() == 24
    for c in (1, 2, 3):  # one component per class is left, none added
        assert ndimage.label(kept == c, structure=np.ones((3, 3)))[1] == 1
        assert not (kept[labels != c] == c).any()


def test_lcc_in_3d_none_is_the_identity_and_empty_stays_empty():
    volume = np.zeros((6, 6, 6), dtype=np.uint8)
    volume[0, 0, 0] = volume[1, 1, 1] = 1  # corner neighbours: 26-connected, 2 voxels
    volume[4, 4, 4] = 1
    kept = postprocess(volume, "lcc")
    assert kept.sum() == 2 and kept[0, 0, 0] == kept[1, 1, 1] == 1
    labels, _ = made_up_map()
    assert postprocess(labels, "none") is labels
    assert not postprocess(np.zeros((5, 5), np.uint8), "lcc").any()
    assert POSTPROCESSING == ("none", "lcc")
    with pytest.raises(ValueError, match="--postprocess big"):
        postprocess(labels, "big")


def test_bcp_uses_the_shared_largest_component():
    assert bcp.largest_component is largest_component


FAST = ["--max_iterations", "3", "--save_every", "3", "--num_workers", "0", "--device", "cpu", "--threads", "1"]


def test_test_la_and_predict_with_lcc_on_echo_frames(tmp_path):
    root = make_synthetic_echo(tmp_path / "echo", n_train=4, n_test=2, labelled=2, shape=(48, 48), seed=6)
    model = tmp_path / "model"
    result = run("train_supervised.py", "--root_path", root, "--model_dir", model, "--exp", "s", "--patch_size",
                 "32", "32", "--labelnum", "2", "--batch_size", "2", *FAST, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    test = ["--root_path", root, "--model_dir", model, "--model", "s", "--iteration", "3", "--stride_xy", "16",
            "--device", "cpu", "--threads", "1"]  # fmt: skip
    for choice in ("none", "lcc"):
        result = run("test_LA.py", *test, "--postprocess", choice, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    plain, lcc = model / "s" / "test_iter_3", model / "s" / "test_iter_3_lcc"  # the plain test is kept beside
    rows = (lcc / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("case,dice,") and [r.split(",")[0] for r in rows[1:]] == [
        "frame_004",
        "frame_005",
        "mean",
    ]
    settings = json.loads((lcc / "test.json").read_text())
    assert settings["postprocess"] == "lcc" and settings["post_processing"].startswith("the largest connected")
    assert json.loads((plain / "test.json").read_text())["postprocess"] == "none"
    for case_id in ("frame_004", "frame_005"):
        before = np.asarray(Image.open(plain / f"{case_id}_pred.png")) > 0
        after = np.asarray(Image.open(lcc / f"{case_id}_pred.png")) > 0
        np.testing.assert_array_equal(after, largest_component(before.astype(np.uint8)) > 0)

    result = run("predict.py", "--checkpoint", model / "s" / "iter_3.pth", "--root_path", root, "--mc_passes", "0",
                 "--overlays", "0", "--stride_xy", "16", "--device", "cpu", "--postprocess", "lcc",
                 "--out", tmp_path / "pred", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "(--postprocess lcc)" in result.stdout
    for case_id in ("frame_004", "frame_005"):  # predict's deterministic prediction is the test's, post-processed
        predicted = np.asarray(Image.open(tmp_path / "pred" / f"{case_id}_pred.png"))
        np.testing.assert_array_equal(predicted, np.asarray(Image.open(lcc / f"{case_id}_pred.png")))


def test_min_lesion_empties_a_frame_with_fewer_predicted_pixels():
    prediction = np.zeros((5, 5), np.uint8)
    prediction[1:3, 1:4] = 1  # 6 pixels
    np.testing.assert_array_equal(apply_min_lesion(prediction, 7), np.zeros((5, 5), np.uint8))
    np.testing.assert_array_equal(apply_min_lesion(prediction, 6), prediction)
    np.testing.assert_array_equal(apply_min_lesion(prediction, 1), prediction)  # the default keeps any lesion
    parser = argparse.ArgumentParser()
    add_min_lesion_flag(parser)
    assert parser.parse_args([]).min_lesion == 1 and parser.parse_args(["--min_lesion", "30"]).min_lesion == 30


def test_frame_summary_of_hand_made_predictions():
    prediction = np.zeros((8, 8), np.uint8)
    prediction[0:2, 0:2] = 1  # 4 px
    prediction[2:4, 2:4] = 1  # 4 px, touching the first square by a corner only: one 8-connected lesion
    prediction[6, 6:8] = 1  # 2 px, apart: a second lesion
    uncertainty = np.arange(64, dtype=np.float32).reshape(8, 8) / 100
    # The lesion's pixels hold 0, 1, 8, 9, 18, 19, 26, 27, 54, 55 (/100): sum 217, mean 0.217.
    row = frame_summary("g001_benign_001", prediction, uncertainty, (0.5, 0.2))
    assert row == {"case": "g001_benign_001", "lesion_present": "yes", "lesions": 2, "area_px": 10,
                   "area_mm2": pytest.approx(10 * 0.5 * 0.2),
                   "mean_uncertainty_in_lesion": pytest.approx(0.217)}  # fmt: skip
    assert tuple(row) == FRAME_COLUMNS
    no_spacing = frame_summary("x", prediction, None, None)
    assert (no_spacing["area_mm2"], no_spacing["mean_uncertainty_in_lesion"]) == ("", "")
    empty = frame_summary("n", np.zeros((8, 8), np.uint8), uncertainty, (0.5, 0.2))
    assert empty == {"case": "n", "lesion_present": "no", "lesions": 0, "area_px": 0, "area_mm2": 0.0,
                     "mean_uncertainty_in_lesion": ""}  # fmt: skip
    four_connected_apart = np.eye(3, dtype=np.uint8)  # a diagonal line: one lesion under 8-connectivity
    assert frame_summary("d", four_connected_apart, None, None)["lesions"] == 1
