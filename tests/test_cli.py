"""The first hour of a new user: a mistyped flag and --help."""

import pytest
from test_end_to_end import run

import utils.predicting as predicting
import utils.testing as testing
import utils.training as training
from utils.cli import Parser

# --- a mistyped flag: the error and a guess, not 30 lines of usage ------------------------------------------------


def parse_error(parser: Parser, argv: list[str], capsys) -> list[str]:
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.splitlines()


def test_mistyped_flag_names_the_flag_meant_in_two_lines(capsys):
    parser = training.training_parser("", "x", semi_supervised=True)
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
        training.training_parser("", "x", semi_supervised=True),
        training.training_parser("", "x", semi_supervised=False),
        testing.testing_parser(),
        predicting.predicting_parser(),
    ]
    for parser in parsers:
        for action in parser._actions:
            text = parser._get_formatter()._expand_help(action)  # the help as --help prints it
            assert action.help and text.count("default:") <= 1, (action.option_strings, text)
            assert "(default: None)" not in text and "(default: )" not in text
    helps = {a.dest: a.help for a in predicting.predicting_parser()._actions}
    assert helps["out"] == "output folder; default: <input>_pred"
    formatter = testing.testing_parser()._get_formatter()
    shown = {a.dest: formatter._expand_help(a) for a in testing.testing_parser()._actions}
    assert shown["stride_xy"].endswith("(default: 18)") and shown["iteration"].endswith("(default: 6000)")


def test_check_data_help_names_rows_and_columns(tmp_path):
    result = run("check_data.py", "--help", cwd=tmp_path)
    assert "--center_crop ROWS COLS" in result.stdout and "CENTER_CROP" not in result.stdout
