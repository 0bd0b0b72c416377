"""tools/mc_check.py: its AUROC, border band and pass agreement against hand computations and a slow pairwise
AUROC; the tool end to end on a 2D run with a non-default dropout (rebuilt from run.json) and on a 3D run."""

import csv
import itertools
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, run_script

from dataloaders.synthetic_echo import make_synthetic_echo
from tools.mc_check import auroc, border_band, case_numbers, pass_agreement, region_masks


def test_auroc_of_hand_computed_cases():
    # positives 0.35, 0.8 against negatives 0.1, 0.4: 0.35 > 0.1, 0.35 < 0.4, 0.8 > both -> 3 of 4 pairs
    assert auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    # ties count half: positives 0.5, 0.9 vs negatives 0.5, 0.5 -> 0.5 + 0.5 + 1 + 1 = 3 of 4
    assert auroc(np.array([0.5, 0.5, 0.5, 0.9]), np.array([1, 0, 0, 1])) == 0.75
    assert auroc(np.array([1.0, 2.0, 3.0]), np.array([0, 1, 1])) == 1.0
    assert auroc(np.array([1.0, 2.0, 3.0]), np.array([1, 0, 0])) == 0.0
    assert auroc(np.array([2.0, 2.0]), np.array([1, 0])) == 0.5
    assert math.isnan(auroc(np.array([1.0, 2.0]), np.array([0, 0])))
    assert math.isnan(auroc(np.array([1.0, 2.0]), np.array([1, 1])))


def pairwise_auroc(scores, positive):
    """The definition, pair by pair: 1 when the positive scores higher, 1/2 when equal."""
    pos, neg = scores[positive], scores[~positive]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_auroc_equals_the_pairwise_definition_with_ties_on_2d_maps(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, size=(6, 7)).astype(float)  # few values: many ties
    positive = rng.random((6, 7)) < 0.3
    assert auroc(scores, positive) == pytest.approx(pairwise_auroc(scores.ravel(), positive.ravel()), abs=1e-12)


def test_border_band_is_the_pixels_within_the_width_of_another_class():
    label = np.zeros((7, 7), dtype=np.uint8)
    label[3, 3] = 1
    expected = np.zeros((7, 7), bool)
    expected[2:5, 2:5] = True  # the pixel and its 8 neighbours: each within 1 of the other class
    assert np.array_equal(border_band(label, 1), expected)
    expected[1:6, 1:6] = True
    assert np.array_equal(border_band(label, 2), expected)
    assert not border_band(np.ones((5, 5), np.uint8), 2).any()  # the array's edge is no boundary
    volume = np.zeros((6, 6, 6), np.uint8)
    volume[2:4, 2:4, 2:4] = 2
    band = border_band(volume, 1)
    assert band.sum() == 4**3 and band[1:5, 1:5, 1:5].all()  # the 2^3 cube, 1 voxel each side


def test_regions_and_their_mean_entropy_against_hand_made_masks():
    label = np.zeros((8, 8), np.uint8)
    label[2:6, 2:6] = 1  # a 4x4 structure; band width 1: its outer ring and the ring outside it
    inside = np.zeros((8, 8), bool)
    inside[3:5, 3:5] = True
    near = np.zeros((8, 8), bool)
    near[1:7, 1:7] = True
    regions = region_masks(label, 1)
    assert np.array_equal(regions["inside"], inside)
    assert np.array_equal(regions["border"], near & ~inside)
    assert np.array_equal(regions["background"], ~near)
    entropy = np.random.default_rng(0).random((8, 8))
    plain = label.copy()
    plain[0, 0] = 1  # one wrong pixel, the most uncertain
    entropy[0, 0] = 2.0
    row = case_numbers(plain, [plain, label], entropy, label, 2, 0.2, 1)
    assert row["entropy_inside"] == pytest.approx(entropy[inside].mean())
    assert row["entropy_border"] == pytest.approx(entropy[near & ~inside].mean())
    assert row["entropy_background"] == pytest.approx(entropy[~near].mean())
    assert row["entropy_inside_1"] == pytest.approx(entropy[inside].mean())
    assert row["auroc"] == 1.0 and row["error_share"] == 1 / 64
    assert row["plain_dice"] == pytest.approx(2 * 16 / 33)
    assert row["pass_dice"] == [1.0, pytest.approx(2 * 16 / 33, abs=1e-6)]
    assert row["pass_changed"] == [0.0, pytest.approx(1 / 17, abs=1e-6)] and row["passes_disagreeing"] == 0


def test_pass_agreement_of_a_hand_computed_case():
    plain = np.array([[0, 1, 1, 2, 2, 0]])
    passed = np.array([[0, 1, 0, 2, 1, 1]])
    dice, changed = pass_agreement(passed, plain, 3)
    # class 1: pass {1, 4, 5}, plain {1, 2}: 2 x 1 / 5; class 2: pass {3}, plain {3, 4}: 2 x 1 / 3
    assert dice == pytest.approx((0.4 + 2 / 3) / 2)
    assert changed == 0.5  # plain foreground 1, 2, 3, 4: the pass relabels 2 and 4
    assert pass_agreement(np.zeros((2, 2)), np.zeros((2, 2)), 2)[0] == 1.0
    assert math.isnan(pass_agreement(np.ones((2, 2)), np.zeros((2, 2)), 2)[1])


def mc_check(*flags, cwd):
    return subprocess.run(
        [sys.executable, "-m", "tools.mc_check", *map(str, flags), "--device", "cpu", "--threads", "1"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
    )


def test_mc_check_on_a_2d_run_with_element_dropout_from_its_run_json(tmp_path):
    root = make_synthetic_echo(tmp_path / "echo", n_train=4, n_test=3, labelled=4, shape=(48, 48), seed=6)
    model = tmp_path / "model"
    result = run_script("train_supervised.py", "--root_path", root, "--model_dir", model, "--exp", "e",
                        "--patch_size", "32", "32", "--labelnum", "4", "--max_iterations", "2", "--save_every", "2",
                        "--num_workers", "0", "--device", "cpu", "--threads", "1", "--dropout_kind", "element",
                        "--dropout_where", "decoder", "--dropout_rate", "0.2", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    args = json.loads((model / "e" / "run.json").read_text())["args"]
    assert (args["dropout_rate"], args["dropout_where"], args["dropout_kind"]) == (0.2, "decoder", "element")
    ids = (root / "test.list").read_text().split()
    (tmp_path / "ids.list").write_text(f"# two of the three\n{ids[2]}\n{ids[0]}\n")
    out = tmp_path / "check.json"
    result = mc_check("--checkpoint", model / "e" / "iter_2.pth", "--root_path", root, "--split", "test",
                      "--ids_from", tmp_path / "ids.list", "--passes", "3", "--stride_xy", "16", "--out", out,
                      cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "AUROC of U" in result.stdout and "mean U: inside" in result.stdout
    report = json.loads(out.read_text())
    assert list(report["cases"]) == [ids[2], ids[0]]
    assert report["dropout"] == {"rate": 0.2, "where": "decoder", "kind": "element"}
    for row in report["cases"].values():
        assert len(row["pass_dice"]) == 3 and all(0 <= d <= 1 for d in row["pass_dice"])
        assert row["regions_from"] == "reference"
        for name in ("entropy_inside", "entropy_border", "entropy_background"):
            assert row[name] is None or 0 <= row[name] <= math.log(2) + 1e-6
        assert row["auroc"] is None or 0 <= row["auroc"] <= 1
    summary = report["summary"]
    assert summary["cases"] == 2 and summary["passes_per_case"] == 3
    assert 0 <= summary["share_of_passes_disagreeing"] <= 1

    # The plain prediction is test_LA.py's: its Dice per frame (K = 2: class 1's) is metrics.csv's.
    result = run_script("test_LA.py", "--root_path", root, "--model_dir", model, "--model", "e", "--iteration", "2",
                        "--stride_xy", "16", "--save_nifti", "0", "--device", "cpu", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    with open(model / "e" / "test_iter_2" / "metrics.csv") as f:
        dice = {r["case"]: float(r["dice"]) for r in csv.DictReader(f)}
    for case_id, row in report["cases"].items():
        assert row["plain_dice"] == pytest.approx(dice[case_id], abs=1e-5)


def test_mc_check_on_a_3d_run(synthetic_root, tmp_path):
    model = tmp_path / "model"
    result = run_script("train_supervised.py", "--root_path", synthetic_root, "--model_dir", model, "--exp", "v",
                        "--patch_size", "32", "32", "32", "--labelnum", "4", "--max_iterations", "1", "--save_every",
                        "1", "--num_workers", "0", "--device", "cpu", "--threads", "1", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    result = mc_check("--checkpoint", model / "v" / "iter_1.pth", "--root_path", synthetic_root, "--passes", "2",
                      "--stride_xy", "16", "--stride_z", "16", cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((model / "v" / "mc_check_test_iter_1.json").read_text())
    assert report["dropout"] == {"rate": 0.5, "where": "bottleneck+decoder", "kind": "channel"}
    assert len(report["cases"]) == 2 and all(len(r["pass_dice"]) == 2 for r in report["cases"].values())


def write_check(folder, aurocs, share):
    folder.mkdir(parents=True)
    cases = {
        f"f{i}": {
            "auroc": a,
            "plain_dice": 0.5,
            "entropy_inside": 0.1,
            "entropy_border": 0.3,
            "entropy_background": 0.0,
        }
        for i, a in enumerate(aurocs)
    }
    summary = {"share_of_passes_disagreeing": share}
    (folder / "mc_check.json").write_text(json.dumps({"cases": cases, "summary": summary}))


def test_mc_compare_pools_seeds_per_frame_and_pairs_frames(tmp_path, capsys):
    from tools import mc_compare

    write_check(tmp_path / "a1", [0.6, 0.7, None, 0.5], 0.5)
    write_check(tmp_path / "a2", [0.8, 0.7, 0.9, 0.5], 0.25)
    write_check(tmp_path / "b", [0.9, 0.9, 0.9, 0.9], 0.0)
    mc_compare.main([str(tmp_path), "a1,a2", "b"])
    first, second = capsys.readouterr().out.splitlines()
    # a per frame: 0.7, 0.7, 0.9 (a1's frame undefined: a2's alone), 0.5 -> mean 0.7; disagreeing (0.5 + 0.25) / 2
    assert "auroc 0.7000" in first and "passes>thr 0.375" in first
    # b - a per frame: 0.2, 0.2, 0.0, 0.4 -> mean 0.2
    assert "auroc 0.9000" in second and "auroc vs a1,a2: +0.2000" in second and "(4 frames)" in second
