"""--group_by: frames of one patient may not fall on both sides of a split, and a labelled set takes whole patients;
made-up leaks on generated echo frames whose IDs carry a patient prefix."""

import json

import pytest
from test_end_to_end import run

from dataloaders.sources import open_source
from dataloaders.synthetic_echo import make_synthetic_echo
from training.options import case_groups, check_whole_groups, read_id_list
from utils.errors import DataError

GROUP = r"^(patient\d+)_"
FAST = ["--max_iterations", "1", "--save_every", "1", "--num_workers", "0", "--device", "cpu", "--threads", "1",
        "--patch_size", "32", "32"]  # fmt: skip


def patient_frames(root):
    """make_synthetic_echo's 8 + 2 frames renamed patient00_a, patient00_b, ..., patient04_b: two frames a patient;
    patients 00-03 in train.list (00 and 01 with masks, 02 and 03 without), 04 in test.list."""
    names = {f"frame_{i:03d}": f"patient{i // 2:02d}_{'ab'[i % 2]}" for i in range(10)}
    for folder in ("images", "masks"):
        for old, new in names.items():
            if (root / folder / f"{old}.png").is_file():
                (root / folder / f"{old}.png").rename(root / folder / f"{new}.png")
    for split in ("train", "test"):
        ids = (root / f"{split}.list").read_text().split()
        (root / f"{split}.list").write_text("\n".join(names[i] for i in ids) + "\n")
    return root


@pytest.fixture
def echo(tmp_path):
    return patient_frames(
        make_synthetic_echo(tmp_path / "echo", n_train=8, n_test=2, labelled=4, shape=(48, 48), seed=9)
    )


def train(echo, tmp_path, *flags):
    return run("train_uamt_unlabel.py", "--root_path", echo, "--model_dir", tmp_path / "model", "--exp", "g",
               *FAST, *flags, cwd=tmp_path)  # fmt: skip


def one_error_line(result):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_case_groups_take_the_first_group_else_the_match_and_refuse_an_id_that_does_not_match():
    assert case_groups(GROUP, ["patient01_2CH_ED", "patient01_4CH_ES"], "x") == dict.fromkeys(
        ["patient01_2CH_ED", "patient01_4CH_ES"], "patient01"
    )
    assert case_groups(r"^p\d+", ["p7_a"], "x") == {"p7_a": "p7"}
    with pytest.raises(DataError, match=r"frame_000 \(in train.list\) does not match"):
        case_groups(GROUP, ["patient01_a", "frame_000"], "train.list")
    with pytest.raises(DataError, match="not a regular expression"):
        case_groups("^(patient", ["patient01_a"], "x")


def test_whole_patients_train(echo, tmp_path):
    # --labelnum 4: patients 00 and 01, both frames each; patients 02 and 03 unlabelled (that is semi-supervision).
    result = train(echo, tmp_path, "--labelnum", "4", "--group_by", GROUP)
    assert result.returncode == 0, result.stderr
    info = json.loads((tmp_path / "model" / "g" / "run.json").read_text())
    assert (info["labelled"], info["unlabelled"]) == (4, 4) and info["args"]["group_by"] == GROUP


def test_a_patient_on_both_sides_of_train_and_test_is_refused(echo, tmp_path):
    train_ids = (echo / "train.list").read_text().split()
    (echo / "train.list").write_text("\n".join(i for i in train_ids if i != "patient03_b") + "\n")
    (echo / "test.list").write_text("patient03_b\npatient04_a\npatient04_b\n")  # the leak: patient03's other frame
    line = one_error_line(train(echo, tmp_path, "--labelnum", "4", "--group_by", GROUP))
    assert "patient patient03 is on both sides: patient03_a in " in line
    assert f"{echo / 'train.list'}" in line and f"patient03_b in {echo / 'test.list'}" in line
    assert train(echo, tmp_path, "--labelnum", "4").returncode == 0  # without --group_by nothing is checked


def test_a_labelled_list_that_splits_a_patient_is_refused(echo, tmp_path):
    (tmp_path / "labelled.list").write_text("patient00_a\npatient00_b\npatient01_a\n")
    line = one_error_line(train(echo, tmp_path, "--labeled_list", tmp_path / "labelled.list", "--group_by", GROUP))
    assert line == (
        f"error: {tmp_path / 'labelled.list'}: patient patient01 (--group_by {GROUP!r}) has 1 of its 2 train.list "
        f"frames labelled (patient01_b is not); label whole patients"
    )
    line = one_error_line(train(echo, tmp_path, "--labelnum", "3", "--group_by", GROUP))  # the first 3: the same
    assert line.startswith("error: --labelnum 3: patient patient01 ") and "has 1 of its 2" in line


def test_ids_without_the_patient_prefix_are_refused(echo, tmp_path):
    line = one_error_line(train(echo, tmp_path, "--labelnum", "4", "--group_by", r"^(pat\d+)-"))
    assert "patient00_a (in " in line and "does not match" in line


def test_check_reads_the_lists_of_a_validation_root(echo):
    """A validation split is a root of its own (train.list: the training patients, test.list: the validation ones),
    so the same check covers it."""
    source = open_source(echo, 2)
    train_ids = source.list_ids("train")
    check_whole_groups(GROUP, source, train_ids, train_ids[:4], "--labelnum 4")  # fine
    (echo / "test.list").write_text("patient00_b\n")  # validating on a frame of a training patient
    rest = [i for i in train_ids if i != "patient00_b"]
    with pytest.raises(DataError, match="patient patient00 is on both sides"):
        check_whole_groups(GROUP, source, rest, rest[:3], "--labelnum 3")


def test_a_labelled_list_may_carry_its_rule_in_comment_lines(echo, tmp_path):
    """--labeled_list files start with the rule that chose them ('#' lines, as benchmarks/camus_labelled_*.list)."""
    listed = tmp_path / "labelled.list"
    listed.write_text("# every 2nd patient of train.list\n\npatient00_a  # first frame\npatient00_b\n")
    assert read_id_list(listed) == ["patient00_a", "patient00_b"]
    result = train(echo, tmp_path, "--labeled_list", listed, "--group_by", GROUP)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "model" / "g" / "run.json").read_text())["labelled"] == 2
