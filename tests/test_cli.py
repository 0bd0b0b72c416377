"""The first hour of a new user: a mistyped flag, --help, --device cuda on a CPU-only torch, a missing checkpoint,
predict.py on the LA data."""

import math
import re

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import SMALL_PATCH
from test_end_to_end import run

import evaluation.predicting as predicting
import evaluation.testing as testing
import training.loop as training
from dataloaders.h5_cases import case_path, read_case
from dataloaders.sources import open_folder
from evaluation.testing import load_network
from evaluation.windows import sliding_window_probability
from methods import METHODS, UAMTUnlabel
from networks.vnet import VNet
from utils.checkpoint import load_checkpoint
from utils.cli import Parser, check_device
from utils.errors import DataError

# --- a mistyped flag: the error and a guess, not 30 lines of usage ------------------------------------------------


def parse_error(parser: Parser, argv: list[str], capsys) -> list[str]:
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.splitlines()


def test_mistyped_flag_names_the_flag_meant_in_two_lines(capsys):
    parser = training.training_parser("", "x", UAMTUnlabel)
    lines = parse_error(parser, ["--max_iteratons", "20"], capsys)
    assert lines[0] == "error: unrecognized arguments: --max_iteratons 20; did you mean --max_iterations?"
    assert len(lines) == 2 and "--help" in lines[1]
    # Dashes for underscores, the --flag=value form, several at once.
    lines = parse_error(parser, ["--max-iterations=20", "--labelnumm", "3"], capsys)
    assert lines[0].endswith("did you mean --max_iterations (for --max-iterations), --labelnum (for --labelnumm)?")
    # Nothing alike: the error alone, no guess.
    assert parse_error(parser, ["--zzzz"], capsys)[0] == "error: unrecognized arguments: --zzzz"
    # Other argparse errors are short too.
    lines = parse_error(testing.testing_parser(), ["--iteration"], capsys)
    assert lines[0] == "error: argument --iteration: expected one argument" and len(lines) == 2


@pytest.mark.parametrize(
    ("script", "typo", "meant"),
    [
        ("train_uamt_unlabel.py", "--max_iteratons", "--max_iterations"),
        ("train_supervised.py", "--labelnumm", "--labelnum"),
        ("test_LA.py", "--iterations", "--iteration"),
        ("predict.py", "--checkpoints", "--checkpoint"),
        ("check_data.py", "--rootpath", "--root_path"),
        ("demo.py", "--iteratons", "--iterations"),
        ("summarize.py", "--comapre", "--compare"),
    ],
)
def test_every_script_answers_a_typo_in_two_lines(script, typo, meant, tmp_path):
    result = run(script, typo, "7", cwd=tmp_path)
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and result.stdout == ""
    assert lines[0].endswith(f"; did you mean {meant}?") and typo in lines[0]
    assert len(lines) == 2 and not any(line.startswith("usage:") for line in lines)
    assert list(tmp_path.iterdir()) == []  # nothing generated or written


def test_every_flag_has_help_and_its_default_once():
    parsers = [
        *(training.training_parser("", "x", method) for method in METHODS.values()),
        testing.testing_parser(),
        predicting.predicting_parser(),
    ]
    for parser in parsers:
        for action in parser._actions:
            text = parser._get_formatter()._expand_help(action)  # the help as --help prints it
            assert action.help and text.count("default:") <= 1, (action.option_strings, text)
            assert "(default: None)" not in text and "(default: )" not in text
    helps = {a.dest: a.help for a in predicting.predicting_parser()._actions}
    assert helps["out"] == "output folder; default: <input>_pred, or <checkpoint folder>/<split>_iter_<N>_pred"
    formatter = testing.testing_parser()._get_formatter()
    shown = {a.dest: formatter._expand_help(a) for a in testing.testing_parser()._actions}
    assert shown["stride_xy"].endswith("(default: 18)") and shown["iteration"].endswith("(default: 6000)")


def test_check_data_help_names_rows_and_columns(tmp_path):
    result = run("check_data.py", "--help", cwd=tmp_path)
    assert "--center_crop ROWS COLS" in result.stdout and "CENTER_CROP" not in result.stdout


# --- --device cuda on a torch that cannot run it: one line, exit 2, nothing written ---------------------------------

NO_CUDA = "this torch has no CUDA; install a CUDA build or use --device cpu"


def test_device_check():
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(DataError, match="--device gpu: not a device; use cpu, cuda or cuda:N"):
        check_device("gpu")
    if not torch.cuda.is_available():
        reason = NO_CUDA if not torch.backends.cuda.is_built() else "no CUDA device is visible"
        with pytest.raises(DataError, match=reason):
            check_device("cuda:0")
    else:
        with pytest.raises(DataError, match=f"has {torch.cuda.device_count()} CUDA device"):
            check_device(f"cuda:{torch.cuda.device_count()}")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A run folder holding an (untrained) 3D checkpoint iter_5.pth: what testing and prediction load."""
    run_dir = tmp_path_factory.mktemp("model") / "run"
    run_dir.mkdir()
    torch.manual_seed(0)
    torch.save(VNet(n_classes=2, has_dropout=True).state_dict(), run_dir / "iter_5.pth")
    return run_dir


@pytest.mark.skipif(torch.cuda.is_available(), reason="this torch runs on CUDA: --device cuda is valid here")
@pytest.mark.parametrize("script", ["train_uamt_unlabel.py", "test_LA.py", "predict.py"])
def test_device_cuda_without_cuda_is_one_line_and_writes_nothing(script, synthetic_root, trained_run, tmp_path):
    args = {
        "train_uamt_unlabel.py": ["--root_path", synthetic_root, "--patch_size", *SMALL_PATCH, "--labelnum", 4,
                                  "--max_iterations", 1, "--num_workers", 0],
        "test_LA.py": ["--root_path", synthetic_root, "--model_dir", trained_run.parent, "--model", "run",
                       "--iteration", 5],
        "predict.py": ["--checkpoint", trained_run / "iter_5.pth", "--root_path", synthetic_root, "--out",
                       tmp_path / "out"],
    }[script]  # fmt: skip
    before = sorted(trained_run.iterdir())
    result = run(script, *args, "--device", "cuda", cwd=tmp_path)
    assert result.returncode == 2
    reason = NO_CUDA if not torch.backends.cuda.is_built() else "no CUDA device is visible"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --device cuda: {reason}")
    assert list(tmp_path.iterdir()) == [] and sorted(trained_run.iterdir()) == before


# --- test_LA.py: a missing checkpoint names the ones that exist -----------------------------------------------------


def evaluate_error(model_dir, model: str, iteration: int) -> str:
    args = testing.testing_parser().parse_args(
        ["--model_dir", str(model_dir), "--model", model, "--iteration", str(iteration), "--device", "cpu"]
    )
    with pytest.raises(DataError) as error:
        testing.evaluate(args)
    return str(error.value)


def test_missing_checkpoint_names_the_iterations_the_run_has(tmp_path):
    model = tmp_path / "model"
    assert evaluate_error(model, "demo", 20).endswith(f"{model}/ holds no runs: train one first, or pass --model_dir")
    (model / "demo").mkdir(parents=True)
    (model / "other").mkdir()
    message = evaluate_error(model, "dmeo", 20)
    assert message.endswith(f"no run dmeo: {model}/ holds demo, other (--model NAME)")
    assert evaluate_error(model, "demo", 20).endswith("holds no iter_*.pth yet (training saves one every --save_every "
                                                      "iterations)")  # fmt: skip
    (model / "demo" / "iter_80.pth").write_bytes(b"")
    message = evaluate_error(model, "demo", 20)
    assert message == (
        f"{model}/demo/iter_20.pth: checkpoint not found; {model}/demo/iter_80.pth exists: --iteration 80"
    )
    assert "--resume" not in message
    for n in (1000, 200):
        (model / "demo" / f"iter_{n}.pth").write_bytes(b"")
    (model / "demo" / "iter_x.pth").write_bytes(b"")  # not a checkpoint of the run's
    message = evaluate_error(model, "demo", 20)
    assert message.endswith(f"{model}/demo/ holds iter_{{80,200,1000}}.pth: --iteration 1000 (the last)")


def test_test_la_prints_the_missing_checkpoint_hint_in_one_line(trained_run, tmp_path):
    result = run("test_LA.py", "--model_dir", trained_run.parent, "--model", "run", "--iteration", 6000,
                 "--device", "cpu", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {trained_run}/iter_6000.pth: checkpoint not found; {trained_run}/iter_5.pth exists: --iteration 5"
    ]


def test_a_missing_checkpoint_file_names_its_folders_checkpoints(trained_run):
    # predict.py --checkpoint and train --resume PATH: what the folder holds, and no flag of another script.
    with pytest.raises(DataError) as error:
        load_checkpoint(trained_run / "iter_9.pth")
    assert str(error.value) == f"{trained_run}/iter_9.pth: checkpoint not found; {trained_run}/ holds iter_5.pth"


# --- predict.py on a dataset's split (the LA h5 layout) ----------------------------------------------------------


def test_predict_segments_the_cases_of_a_dataset_split(synthetic_root, trained_run, tmp_path):
    result = run("predict.py", "--checkpoint", trained_run / "iter_5.pth", "--root_path", synthetic_root,
                 "--split", "test", "--patch_size", *SMALL_PATCH, "--stride_xy", 16, "--stride_z", 16,
                 "--mc_passes", 2, "--device", "cpu", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = trained_run / "test_iter_5_pred"  # beside the checkpoint, as test_LA.py's test_iter_5/
    ids = (synthetic_root / "test.list").read_text().split()
    assert f"{len(ids)} predictions in {out}/" in result.stdout
    expected_files = {f"{i}_{suffix}" for i in ids for suffix in ("pred.nii.gz", "uncertainty.nii.gz", "overlay.png")}
    # volumes.csv: voxels per structure (LA h5 carries no spacing); predict.json: the settings
    assert {p.name for p in out.iterdir()} == expected_files | {"volumes.csv", "predict.json"}
    net, _ = load_network(trained_run / "iter_5.pth", "cpu")
    for case_id in ids:
        image, _ = read_case(case_path(synthetic_root, case_id))
        expected = sliding_window_probability(net, image, [32, 32, 32], 16, 16, 2).argmax(0).numpy()
        prediction = np.asarray(nib.load(out / f"{case_id}_pred.nii.gz").dataobj)
        assert prediction.shape == image.shape
        # This case's image, segmented as test_LA.py would (threads may flip a voxel at an exact tie).
        assert (prediction == expected).mean() > 0.999
        uncertainty = np.asarray(nib.load(out / f"{case_id}_uncertainty.nii.gz").dataobj)
        assert uncertainty.shape == image.shape and 0 <= uncertainty.min() and uncertainty.max() <= math.log(2) + 1e-5


def test_predict_points_a_dataset_root_given_as_input_to_root_path(synthetic_root):
    hint = f"holds test.list, train.list: for a dataset pass --root_path {synthetic_root} --split test"
    with pytest.raises(DataError, match=re.escape(hint)):
        open_folder(synthetic_root)


def test_predict_takes_a_folder_or_a_dataset_not_both(capsys):
    parser = predicting.predicting_parser()
    lines = parse_error(parser, ["--checkpoint", "c.pth", "--input", "a", "--root_path", "b"], capsys)
    assert lines[0] == "error: argument --root_path: not allowed with argument --input"
    assert parse_error(parser, ["--checkpoint", "c.pth"], capsys)[0].endswith("--input --root_path is required")
