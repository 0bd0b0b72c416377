"""Frames whose reference is empty and lesion-wise detection (evaluation/lesions.py, case_metrics' empty masks),
against hand-made masks and hand-computed counts; and the results table of runs with clean frames."""

import csv
import json
import math

import numpy as np
import pytest
from conftest import oracle_test_args
from medpy.metric import binary
from PIL import Image
from scipy import ndimage

import evaluation.testing as testing
from dataloaders.sources import ImageFolderSource
from dataloaders.synthetic_echo import make_synthetic_echo
from evaluation.lesions import DETECTION_COLUMNS, detection_summary, lesion_counts
from evaluation.metrics import METRICS, case_metrics
from evaluation.results import CLEAN_FRAMES_NOTE, group_runs, load_run, results_table


def counts(reference_empty, prediction_empty, reference, found, predicted, false):
    return dict(zip(DETECTION_COLUMNS, (reference_empty, prediction_empty, reference, found, predicted, false)))


def frame(shape=(20, 24), *boxes):
    """A binary mask with the given boxes (tuples of slices) set."""
    mask = np.zeros(shape, bool)
    for box in boxes:
        mask[box] = True
    return mask


def assert_dice_jaccard_agree(m):
    assert m["jaccard"] == pytest.approx(m["dice"] / (2 - m["dice"]))


@pytest.mark.parametrize("shape", [(20, 24), (8, 10, 12)])
def test_both_empty_scores_one_and_leaves_precision_recall_and_distances_undefined(shape):
    empty = np.zeros(shape, bool)
    m = case_metrics(empty, empty)
    assert m["dice"] == 1.0 and m["jaccard"] == 1.0
    assert all(math.isnan(m[name]) for name in ("precision", "recall", "hd95", "asd"))
    assert lesion_counts(empty, empty) == counts(1, 1, 0, 0, 0, 0)


def test_false_alarm_on_a_clean_frame():
    truth = frame()
    prediction = frame((20, 24), (slice(2, 5), slice(3, 6)))  # 9 pixels
    m = case_metrics(prediction, truth)
    assert m["dice"] == 0.0 and m["jaccard"] == 0.0
    assert m["precision"] == 0.0 == binary.precision(prediction, truth)  # TP 0 of 9 predicted pixels
    assert all(math.isnan(m[name]) for name in ("recall", "hd95", "asd"))
    assert lesion_counts(prediction, truth) == counts(1, 0, 0, 0, 1, 1)
    # Fewer than --min_lesion pixels: the frame is called negative and predicts no lesion; Dice is not affected.
    assert lesion_counts(prediction, truth, min_lesion=9) == counts(1, 0, 0, 0, 1, 1)
    assert lesion_counts(prediction, truth, min_lesion=10) == counts(1, 1, 0, 0, 0, 0)


def test_miss_of_a_present_lesion():
    truth = frame((20, 24), (slice(5, 9), slice(5, 9)))
    prediction = np.zeros_like(truth)
    m = case_metrics(prediction, truth)
    assert m["dice"] == 0.0 and m["jaccard"] == 0.0 and m["recall"] == 0.0
    assert all(math.isnan(m[name]) for name in ("precision", "hd95", "asd"))
    assert lesion_counts(prediction, truth) == counts(0, 1, 1, 0, 0, 0)


def test_two_reference_lesions_one_found_and_one_false_component():
    lesion_a, lesion_b = (slice(2, 6), slice(2, 6)), (slice(12, 16), slice(14, 18))  # 16 pixels each
    truth = frame((20, 24), lesion_a, lesion_b)
    # 2 x 4 pixels inside lesion a and 2 x 4 outside it (one component), and a far 2 x 2 false component.
    prediction = frame((20, 24), (slice(4, 8), slice(2, 6)), (slice(0, 2), slice(20, 22)))
    m = case_metrics(prediction, truth)
    dice = 2 * 8 / (20 + 32)  # TP 8; 16 + 4 predicted; 32 reference
    assert m["dice"] == pytest.approx(dice) and m["dice"] == pytest.approx(binary.dc(prediction, truth))
    assert m["jaccard"] == pytest.approx(8 / (20 + 32 - 8)) and m["jaccard"] == pytest.approx(
        binary.jc(prediction, truth)
    )
    assert_dice_jaccard_agree(m)
    assert m["precision"] == pytest.approx(8 / 20) and m["recall"] == pytest.approx(8 / 32)
    assert lesion_counts(prediction, truth) == counts(0, 0, 2, 1, 2, 1)


def test_one_predicted_component_touching_two_reference_lesions_finds_both():
    truth = frame((20, 24), (slice(2, 6), slice(2, 6)), (slice(2, 6), slice(10, 14)))
    prediction = frame((20, 24), (slice(3, 5), slice(4, 12)))  # a bar across the gap between the two
    assert lesion_counts(prediction, truth) == counts(0, 0, 2, 2, 1, 0)


def test_components_are_8_connected_in_2d():
    truth = frame((10, 10), (slice(2, 3), slice(2, 3)), (slice(3, 4), slice(3, 4)))  # two pixels touching diagonally
    prediction = frame((10, 10), (slice(2, 3), slice(2, 3)))
    assert lesion_counts(prediction, truth) == counts(0, 0, 1, 1, 1, 0)


def test_3d_lesions_are_26_connected_and_counted():
    shape = (10, 12, 14)
    # Reference: a cube, two voxels touching only at a corner (one lesion), and a second cube far away.
    truth = frame(shape, (slice(1, 4), slice(1, 4), slice(1, 4)), (slice(6, 8), slice(6, 8), slice(8, 10)))
    truth[4, 4, 4] = True  # touches the first cube's corner voxel (3, 3, 3) only
    prediction = frame(shape, (slice(2, 5), slice(2, 5), slice(2, 5)), (slice(8, 10), slice(0, 2), slice(12, 14)))
    # The first predicted cube overlaps the first lesion; the second cube overlaps nothing.
    assert lesion_counts(prediction, truth) == counts(0, 0, 2, 1, 2, 1)
    m = case_metrics(prediction, truth)
    tp = np.sum(prediction & truth)  # 8 voxels of the cube + the corner voxel
    assert tp == 9
    assert m["dice"] == pytest.approx(2 * tp / (prediction.sum() + truth.sum()))
    assert m["dice"] == pytest.approx(binary.dc(prediction, truth))
    assert_dice_jaccard_agree(m)


@pytest.mark.parametrize("seed", range(6))
def test_dice_and_jaccard_always_agree(seed):
    rng = np.random.default_rng(seed)
    shape = (12, 14)
    prediction = rng.random(shape) < (0.3 if seed % 3 else 0.0)  # some empty predictions and references
    truth = rng.random(shape) < (0.3 if seed % 2 else 0.0)
    assert_dice_jaccard_agree(case_metrics(prediction, truth))


# --- a run's numbers: all frames, lesion frames, detection --------------------------------------------------------

# Five frames: metric values and detection columns by hand.
# dice, jaccard, hd95, asd, precision, recall | reference_empty, prediction_empty, lesions ref/found/pred/false
FRAMES = {
    "clean_right": ([1.0, 1.0, math.nan, math.nan, math.nan, math.nan], [1, 1, 0, 0, 0, 0]),
    "clean_false_alarm": ([0.0, 0.0, math.nan, math.nan, 0.0, math.nan], [1, 0, 0, 0, 2, 2]),
    "lesion_good": ([0.8, 0.8 / 1.2, 3.0, 1.0, 0.9, 0.7], [0, 0, 2, 1, 1, 0]),
    "lesion_missed": ([0.0, 0.0, math.nan, math.nan, math.nan, 0.0], [0, 1, 1, 0, 0, 0]),
    "lesion_ok": ([0.6, 0.6 / 1.4, 5.0, 2.0, 0.5, 0.8], [0, 0, 1, 1, 3, 1]),
}


def rows_of(frames):
    return [dict(zip(METRICS, m)) | dict(zip(DETECTION_COLUMNS, d)) for m, d in frames.values()]


def test_detection_summary_is_the_hand_computed_one():
    s = detection_summary(rows_of(FRAMES))
    assert s["frames"] == 5 and s["clean_frames"] == 2 and s["false_positive_frames"] == 1
    assert s["dice_all"] == pytest.approx((1.0 + 0.0 + 0.8 + 0.0 + 0.6) / 5)
    assert s["dice_lesion_frames"] == pytest.approx((0.8 + 0.0 + 0.6) / 3)
    assert s["jaccard_all"] == pytest.approx((1.0 + 0.0 + 0.8 / 1.2 + 0.0 + 0.6 / 1.4) / 5)
    assert s["precision_all"] == pytest.approx((0.0 + 0.9 + 0.5) / 3)  # undefined on the two empty predictions
    assert s["precision_lesion_frames"] == pytest.approx((0.9 + 0.5) / 2)
    assert s["recall_all"] == pytest.approx((0.7 + 0.0 + 0.8) / 3) == s["recall_lesion_frames"]
    assert s["frame_sensitivity"] == pytest.approx(2 / 3) and s["frame_specificity"] == pytest.approx(1 / 2)
    # Lesions pooled: 4 reference, 2 found; 6 predicted, 3 false.
    assert s["lesion_recall"] == pytest.approx(2 / 4) and s["lesion_precision"] == pytest.approx(3 / 6)
    assert s["lesion_f1"] == pytest.approx(2 * 0.5 * 0.5 / (0.5 + 0.5))


def write_detection_run(folder, seed, frames):
    """A finished 2D run whose metrics.csv has the detection columns (as test_LA.py writes them for K = 2)."""
    test = folder / "test_iter_300"
    test.mkdir(parents=True)
    info = {"method": "supervised", "labelled": 16, "unlabelled": 64, "seed": seed, "iterations": 300,
            "train_wall_s": 600.0, "args": {"patch_size": [64, 64]}}  # fmt: skip
    (folder / "run.json").write_text(json.dumps(info))
    (test / "test.json").write_text(json.dumps({"wall_s": 1.0}))
    lines = ["case," + ",".join(METRICS + DETECTION_COLUMNS)]
    lines += [f"{case}," + ",".join(map(str, m + d)) for case, (m, d) in frames.items()]
    lines.append("mean," + ",".join("0" for _ in METRICS + DETECTION_COLUMNS))
    (test / "metrics.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_table_of_a_run_with_clean_frames_shows_all_and_lesion_frames_and_detection(tmp_path):
    run = write_detection_run(tmp_path / "s1", 1, FRAMES)
    table = results_table(group_runs([load_run(run)])).splitlines()
    assert table[2].split(" | ")[4] == f"{100 * 2.4 / 5:.2f}"  # the main table's Dice: all frames
    start = table.index("All frames and lesion frames (reference non-empty), and detection:")
    header, row = table[start + 2].split(" | "), table[start + 4].split(" | ")
    cells = dict(zip(header, row))
    assert cells["frames (clean)"] == "5 (2)"
    assert cells["Dice all (%)"] == f"{100 * 2.4 / 5:.2f}" and cells["Dice lesion frames (%)"] == f"{100 * 1.4 / 3:.2f}"
    assert cells["IoU lesion frames (%)"] == f"{100 * (0.8 / 1.2 + 0.6 / 1.4) / 3:.2f}"
    assert cells["Precision all (%)"] == f"{100 * 1.4 / 3:.2f}" and cells["Precision lesion frames (%)"] == "70.00"
    assert cells["Recall all (%)"] == "50.00" == cells["Recall lesion frames (%)"]
    assert cells["frame sensitivity (%)"] == "66.67" and cells["frame specificity (%)"] == "50.00"
    assert cells["false-positive frames"] == "1 of 2"
    assert cells["lesion recall (%)"] == "50.00" and cells["lesion precision (%)"] == "50.00"
    assert row[-1] == "50.00 |"  # lesion F1
    assert table[-1] == CLEAN_FRAMES_NOTE


def test_clean_frames_table_over_seeds_and_only_where_a_reference_is_empty(tmp_path):
    other = dict(FRAMES) | {"clean_false_alarm": ([1.0, 1.0] + [math.nan] * 4, [1, 1, 0, 0, 0, 0])}
    runs = [write_detection_run(tmp_path / "s1", 1, FRAMES), write_detection_run(tmp_path / "s2", 2, other)]
    table = results_table(group_runs(load_run(r) for r in runs)).splitlines()
    cells = dict(zip(table[-5].split(" | "), table[-3].split(" | ")))
    assert cells["false-positive frames"] == "1 of 4"  # summed over the two seeds
    specificity = [50.0, 100.0]
    assert cells["frame specificity (%)"] == f"{np.mean(specificity):.2f} ± {np.std(specificity, ddof=1):.2f}"
    lesions_only = {k: v for k, v in FRAMES.items() if k.startswith("lesion")}
    plain = results_table(group_runs([load_run(write_detection_run(tmp_path / "l", 1, lesions_only))]))
    assert "lesion frames" not in plain and CLEAN_FRAMES_NOTE not in plain  # no clean frame: the table as before


def test_test_la_writes_the_detection_columns_and_the_clean_frames_summary(tmp_path, monkeypatch):
    """evaluate() on three frames, an oracle in place of the network: a clean frame predicted empty, a clean frame
    with a false alarm (the oracle draws the mask the frame had before it was blanked), a lesion frame found."""
    root = make_synthetic_echo(tmp_path / "echo", n_train=2, n_test=3, labelled=2, shape=(48, 56), seed=3)
    source = ImageFolderSource(root)
    clean_right, clean_false_alarm, lesion = (root / "test.list").read_text().split()
    oracle, drawn = {}, {}
    for case_id in (clean_right, clean_false_alarm, lesion):
        image, label = source.read(case_id)
        drawn[case_id] = label.astype(bool)
        foreground = np.zeros(label.shape, np.float32) if case_id == clean_right else label.astype(np.float32)
        oracle[image.tobytes()] = np.stack([1 - foreground, foreground])
    for case_id in (clean_right, clean_false_alarm):
        Image.fromarray(np.zeros((48, 56), np.uint8)).save(root / "masks" / f"{case_id}.png")
    args = oracle_test_args(monkeypatch, root, tmp_path / "model", oracle, "--save_nifti", "0")
    testing.evaluate(args)
    out = tmp_path / "model" / "o" / "test_iter_1"
    with open(out / "metrics.csv") as f:
        rows = {row["case"]: row for row in csv.DictReader(f)}
    assert list(rows[lesion])[1:] == [*METRICS, *DETECTION_COLUMNS]
    assert float(rows[clean_right]["dice"]) == 1.0 and float(rows[clean_right]["jaccard"]) == 1.0
    assert float(rows[clean_false_alarm]["dice"]) == 0.0 and float(rows[clean_false_alarm]["precision"]) == 0.0
    assert float(rows[lesion]["dice"]) == 1.0
    n_drawn = {k: int(ndimage.label(v, np.ones((3, 3)))[1]) for k, v in drawn.items()}
    assert [rows[clean_right][c] for c in DETECTION_COLUMNS] == ["1", "1", "0", "0", "0", "0"]
    false_alarm = [str(n) for n in (1, 0, 0, 0, n_drawn[clean_false_alarm], n_drawn[clean_false_alarm])]
    assert [rows[clean_false_alarm][c] for c in DETECTION_COLUMNS] == false_alarm
    found = [str(n) for n in (0, 0, *[n_drawn[lesion]] * 3, 0)]
    assert [rows[lesion][c] for c in DETECTION_COLUMNS] == found
    info = json.loads((out / "test.json").read_text())
    assert info["min_lesion"] == 1
    summary = info["clean_frames"]
    assert (summary["frames"], summary["clean_frames"], summary["false_positive_frames"]) == (3, 2, 1)
    assert summary["dice_all"] == pytest.approx(2 / 3) and summary["dice_lesion_frames"] == 1.0
    assert summary["frame_sensitivity"] == 1.0 and summary["frame_specificity"] == 0.5
    assert summary["lesion_recall"] == 1.0
    predicted = n_drawn[lesion] + n_drawn[clean_false_alarm]  # the false alarm's components are all false
    assert summary["lesion_precision"] == pytest.approx(n_drawn[lesion] / predicted)


def test_min_lesion_tests_go_beside_the_plain_test():
    """--min_lesion P > 1 changes what is scored (a frame called negative predicts nothing): its own folder, as lcc."""
    from evaluation.testing import test_folder

    assert test_folder("test", 600) == "test_iter_600"
    assert test_folder("test", 600, postprocessing="lcc", min_lesion=50) == "test_iter_600_lcc_min50"
    assert test_folder("val", 5, min_lesion=1) == "val_iter_5"
