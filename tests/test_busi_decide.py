"""benchmarks/busi_validation/decide.py applies its README's rule: on made-up kept runs whose lesion-frame Dice and
clean-frame calls are set by hand, each stage's outcome is the one the rule's text gives."""

import json

import pytest

from benchmarks.busi_validation import decide

FRAMES = ["g001_benign_001", "g002_benign_002", "g003_malignant_003", "g004_normal_004", "g005_normal_005"]


def write_run(results, geometry, group, seed, lesion_dice, clean_called_negative=2, test="", iterations=4000):
    """A kept run: three lesion frames of Dice `lesion_dice`, two clean frames of which the first
    `clean_called_negative` predict nothing."""
    folder = results / f"busi_val_{geometry}" / f"{group.replace(':', '_')}_seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    info = {"method": group.split(":")[0], "labelled": int(group.split(":")[1]), "unlabelled": 0, "seed": seed,
            "iterations": iterations, "train_wall_s": 1.0}  # fmt: skip
    (folder / "run.json").write_text(json.dumps(info))
    tested = folder / (f"test_iter_{iterations}" + (f"_{test}" if test else ""))
    tested.mkdir()
    lines = ["case,dice,jaccard,hd95,asd,precision,recall,reference_empty,prediction_empty"]
    for i, frame in enumerate(FRAMES):
        clean = "normal" in frame
        empty = clean and i - 3 < clean_called_negative
        dice = (1.0 if empty else 0.0) if clean else lesion_dice
        lines.append(f"{frame},{dice},{dice / (2 - dice)},1,1,1,1,{int(clean)},{int(empty)}")
    (tested / "metrics.csv").write_text("\n".join(lines) + "\n")


def screen(results, a, b, c, full=()):
    """Seed 1337 of both rows of A, B and C at the given lesion-frame Dice; `full`: (geometry, dice of 1338, 1339)."""
    for geometry, dice in zip("abc", (a, b, c)):
        write_run(results, geometry, "supervised:70", 1337, dice)
        write_run(results, geometry, "supervised:367", 1337, dice + 0.1)
    for geometry, dice, clean in full:
        for seed in (1338, 1339):
            write_run(results, geometry, "supervised:70", seed, dice, clean)


def test_lesion_dice_and_specificity_are_taken_over_the_right_frames(tmp_path):
    write_run(tmp_path, "a", "supervised:70", 1337, 0.6, clean_called_negative=1)
    found = decide.Results(tmp_path, tmp_path / "none").row("a", "supervised:70", (1337,))
    assert found.criterion == pytest.approx(0.6) and found.specificity == pytest.approx(0.5)
    assert found.benign == pytest.approx(0.6) and found.malignant == pytest.approx(0.6)


def test_stage_1_screens_then_decides_on_three_seeds_with_the_margin_and_specificity(tmp_path):
    results = decide.Results(tmp_path, tmp_path / "none")
    screen(tmp_path, 0.60, 0.65, 0.50)  # B best; A 0.05 under, C 0.15 under: only B goes on
    assert decide.stage_geometry(results) is None
    assert any("--config busi_val_b --groups supervised:70 --seeds 1338 1339" in m for m in results.missing)
    assert not any("busi_val_a --groups supervised:70 --seeds 1338" in m for m in results.missing)
    screen(tmp_path / "2", 0.64, 0.65, 0.50, full=[("a", 0.645, 2), ("b", 0.65, 1)])  # A and B within 0.02
    assert decide.stage_geometry(decide.Results(tmp_path / "2", tmp_path / "none")) == "a"  # within 0.01: specificity
    screen(tmp_path / "3", 0.64, 0.66, 0.50, full=[("a", 0.64, 2), ("b", 0.66, 1)])
    assert decide.stage_geometry(decide.Results(tmp_path / "3", tmp_path / "none")) == "b"  # 0.02 > margin
    # Amendment 2: B before C before A. A 0.008 over B with the same specificity: within the margin, B stays.
    screen(tmp_path / "4", 0.658, 0.65, 0.50, full=[("a", 0.658, 2), ("b", 0.65, 2)])
    assert decide.stage_geometry(decide.Results(tmp_path / "4", tmp_path / "none")) == "b"
    # A 0.015 over B: more than the margin, A replaces it.
    screen(tmp_path / "5", 0.665, 0.65, 0.50, full=[("a", 0.665, 2), ("b", 0.65, 2)])
    assert decide.stage_geometry(decide.Results(tmp_path / "5", tmp_path / "none")) == "a"


def test_preferred_keeps_the_earlier_candidate_on_a_tie():
    same = decide.Figures(0.6, 0.0, 0.5, 0.6, 0.6, 3)
    assert decide.preferred([("a", same), ("b", same)]) == "a"
    better = decide.Figures(0.615, 0.0, 0.0, 0.6, 0.6, 3)
    assert decide.preferred([("a", same), ("b", better)]) == "b"


def test_schedule_needs_more_than_the_margin_on_the_first_seed(tmp_path):
    write_run(tmp_path, "b", "supervised:70", 1337, 0.60)
    write_run(tmp_path, "b", "supervised_s8000:70", 1337, 0.605, iterations=8000)
    write_run(tmp_path, "b", "supervised_s8000:367", 1337, 0.7, iterations=8000)
    assert decide.stage_schedule(decide.Results(tmp_path, tmp_path / "none"), "b") == "supervised"


def test_stage_3_prefers_the_most_specific_setting_within_the_margin(tmp_path):
    for seed in decide.SEEDS:
        write_run(tmp_path, "b", "supervised:70", seed, 0.60, clean_called_negative=0)
        for post in decide.POSTPROCESSING:
            for m in decide.MIN_LESIONS:
                suffix = "_".join(x for x in ("" if post == "none" else post, "" if m == 1 else f"min{m}") if x)
                if suffix:
                    dice, clean = (0.595, 2) if m == 50 else (0.55, 2) if m > 50 else (0.60, 0)
                    write_run(tmp_path, "b", "supervised:70", seed, dice, clean, test=suffix)
    results = decide.Results(tmp_path, tmp_path / "none")
    assert decide.stage_postprocess(results, "b", "supervised") == "--postprocess none --min_lesion 50"
