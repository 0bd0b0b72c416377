"""BUSI's validation split and labelled lists (benchmarks/busi_validation/make_lists.py): the rule on made-up IDs whose
groups and classes are known; the committed lists against the rule (skipped without data/BUSI)."""

import re

import pytest
from conftest import REPO, SHARED_BUSI

from benchmarks.busi_validation import make_lists
from training.options import parse_id_list, read_id_list  # noqa: E402

# data/BUSI where linked, else the shared copy (CI has it at ../shared)
BUSI = REPO / "data" / "BUSI" if (REPO / "data" / "BUSI").is_dir() else SHARED_BUSI


def group(case_id: str) -> str:
    return re.match(r"^(g\d+)_", case_id).group(1)


def test_targets_take_the_floor_then_the_largest_remainders():
    # 0.2 x (7, 5, 3) = 1.4, 1.0, 0.6: floors 1, 1, 0 sum to 2 of round(0.2 x 15) = 3; the largest remainder is c's.
    assert make_lists.targets({"a": 7, "b": 5, "c": 3}, 0.2) == {"a": 1, "b": 1, "c": 1}
    # 0.2 x (8, 8, 4) = 1.6, 1.6, 0.8: floors 1, 1, 0 sum to 2 of 4; remainders c 0.8, then a and b 0.6 (a by name).
    assert make_lists.targets({"a": 8, "b": 8, "c": 4}, 0.2) == {"a": 2, "b": 1, "c": 1}


def test_choose_takes_whole_groups_per_class_and_the_seed_decides():
    # 10 benign groups of 1 frame, 5 malignant of 2, 5 normal of 1, one mixed group of 3: 28 frames.
    ids = [f"g{i:03d}_benign_{i:03d}" for i in range(10)]
    ids += [f"g{10 + i:03d}_malignant_{2 * i + k:03d}" for i in range(5) for k in range(2)]
    ids += [f"g{20 + i:03d}_normal_{i:03d}" for i in range(5)]
    ids += ["g030_benign_100", "g030_malignant_101", "g030_normal_102"]
    chosen = make_lists.choose(ids, 0.2, 29, "made up")
    # Targets: 0.2 x (benign 10, malignant 10, normal 5, mixed 3) = 2, 2, 1, 0.6 -> round(5.6) = 6: mixed gets 1,
    # which no group of 3 fits: 5 frames.
    classes = [c.split("_")[1] for c in chosen]
    assert (classes.count("benign"), classes.count("malignant"), classes.count("normal")) == (2, 2, 1)
    groups = {group(i) for i in chosen}
    assert all((i in chosen) == (group(i) in groups) for i in ids)  # whole groups only
    assert chosen == [i for i in ids if i in set(chosen)]  # in list order
    assert make_lists.choose(ids, 0.2, 29, "made up") == chosen
    assert any(make_lists.choose(ids, 0.2, seed, "made up") != chosen for seed in range(30, 40))
    text = make_lists.list_text("test", chosen, ids, "made up", 0.2, 29)
    assert parse_id_list(text) == chosen and text.startswith("# test: 5 of the 28 frames of made up,")


@pytest.mark.skipif(not (BUSI / "train.list").is_file(), reason="BUSI data absent (data/BUSI or ../shared/data/BUSI)")
def test_committed_lists_follow_the_rule_and_take_whole_groups():
    ids = read_id_list(BUSI / "train.list")
    here = REPO / "benchmarks" / "busi_validation"
    validation = read_id_list(here / "validation.list")
    rest = [i for i in ids if i not in set(validation)]
    expected = {
        here / "validation.list": make_lists.choose(ids, 0.2, make_lists.SEED_VALIDATION, "x"),
        REPO / "benchmarks" / "busi_labelled_92.list": make_lists.choose(ids, 0.2, make_lists.SEED_ARENA_LABELLED, "x"),
        here / "labelled_70.list": make_lists.choose(rest, 0.2, make_lists.SEED_VALIDATION_LABELLED, "x"),
    }
    for path, chosen in expected.items():
        assert read_id_list(path) == chosen, path
        pool = rest if path.name == "labelled_70.list" else ids
        groups = {group(i) for i in chosen}
        assert all((i in chosen) == (group(i) in groups) for i in pool), path
    assert len(validation) == 92 and set(validation) <= set(ids)
