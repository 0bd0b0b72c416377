"""--threads: every script takes it, and it sets torch's CPU thread count before any work."""

import pytest
import torch
from conftest import run_script as run

import evaluation.testing as testing
from evaluation.predicting import predicting_parser
from methods import Supervised, UAMTUnlabel
from training.options import training_parser
from utils.errors import DataError
from utils.threads import set_threads


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_every_script_takes_threads_defaulting_to_torchs_own():
    parsers = [
        (training_parser("", "x", UAMTUnlabel), []),
        (training_parser("", "x", Supervised), []),
        (testing.testing_parser(), []),
        (predicting_parser(), ["--checkpoint", "c.pth", "--input", "frames"]),
    ]
    for parser, required in parsers:
        assert parser.parse_args(required).threads is None
        assert parser.parse_args([*required, "--threads", "1"]).threads == 1


def test_set_threads_sets_torchs_thread_count(restore_threads):
    before = torch.get_num_threads()
    set_threads(None)
    assert torch.get_num_threads() == before  # no flag: torch's default stays
    set_threads(1)
    assert torch.get_num_threads() == 1
    with pytest.raises(DataError, match="--threads 0: give 1 or more threads"):
        set_threads(0)


@pytest.mark.parametrize("script", ["train_supervised.py", "test_LA.py"])
def test_a_bad_thread_count_is_one_line_and_exit_2(script, tmp_path):
    result = run(script, "--threads", "0", "--root_path", tmp_path / "nowhere", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --threads 0: give 1 or more threads (or leave it out for torch's default)"
