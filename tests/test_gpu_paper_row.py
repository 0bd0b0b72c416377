"""tools/gpu_paper_row.py at toy size on the CPU: the smoke run, then the row; and the early stops."""

import csv
import json
import math
import os
import subprocess
import sys

import pytest
from conftest import REPO

from tools.gpu_paper_row import leading_that_fit
from utils.precision import resolve_precision

TOY_PATCH = [48, 32, 32]


def run_row(tmp_path, *flags):
    command = [sys.executable, "-m", "tools.gpu_paper_row", "--toy", "--out", str(tmp_path / "out"),
               "--model_dir", str(tmp_path / "runs"), *flags]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_toy_row_runs_the_smoke_run_then_trains_tests_and_writes_the_row(tmp_path):
    result = run_row(tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out, runs = tmp_path / "out", tmp_path / "runs"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "row.json", "row.md", "run.json", "test.json"]
    row = json.loads((out / "row.json").read_text())
    assert (row["method"], row["labelled"], row["unlabelled"], row["iterations"], row["test_cases"]) == (
        "uamt_unlabel", 2, 4, 4, 2)  # fmt: skip
    assert row["precision"] == resolve_precision("auto", "cpu", TOY_PATCH)  # what ran, as run.json records it
    assert row["test_precision"] == resolve_precision("auto", "cpu")
    assert 0 <= row["dice"] <= 100 and 0 <= row["jaccard"] <= row["dice"]
    assert row["ms_per_iteration"] > 0 and row["train_wall_s"] > 0 and row["test_wall_s"] > 0
    mean = list(csv.DictReader(open(out / "metrics.csv")))[-1]
    assert mean["case"] == "mean" and row["dice"] == pytest.approx(100 * float(mean["dice"]))
    for name in ("hd95", "asd"):  # voxels, as metrics.csv (undefined where every prediction is empty)
        assert row[name] == pytest.approx(float(mean[name]), nan_ok=True)
    table = (out / "row.md").read_text()
    assert "| UA-MT, paper (Yu et al. 2019) | 16 | 64 | 88.88 | 80.21 | 7.32 | 2.26 |" in table
    assert f"| UA-MT-unlabel, this run | 2 | 4 | {row['dice']:.2f} |" in table and "not the paper's 64" in table
    # The smoke run came first, with the same configuration, and its test read a training case, no test case.
    smoke = json.loads((runs / "smoke" / "run.json").read_text())
    assert smoke["iterations"] == 2 and smoke["args"]["patch_size"] == TOY_PATCH
    smoke_id = (runs / "toy_data" / "smoke.list").read_text().split()
    assert smoke_id[0] in (runs / "toy_data" / "train.list").read_text().split()
    assert json.loads((runs / "smoke" / "smoke_iter_2" / "test.json").read_text())["cases"] == 1
    order = [result.stdout.index(text) for text in ("--exp smoke", "smoke run passed", "--exp row")]
    assert order == sorted(order)


def test_a_failing_smoke_run_stops_the_script_before_the_long_run(tmp_path):
    result = run_row(tmp_path, "--patch_size", "40", "32", "32")
    assert result.returncode != 0
    assert "the smoke run's training failed (exit 2)" in result.stderr and "multiple of 16" in result.stderr
    assert not (tmp_path / "runs" / "row").exists() and not (tmp_path / "out" / "row.json").exists()


def test_a_projection_over_the_budget_stops_after_the_smoke_run(tmp_path):
    result = run_row(tmp_path, "--budget_s", "1")
    assert result.returncode == 4
    assert "exceed --budget_s 1" in result.stderr and "nothing trained" in result.stderr
    assert (tmp_path / "runs" / "smoke" / "iter_2.pth").is_file() and not (tmp_path / "runs" / "row").exists()


def test_staging_keeps_the_leading_unlabelled_cases_that_fit():
    sizes = {"a": 1.5, "b": 1.0, "c": 0.4, "d": 0.1}
    assert leading_that_fit(list(sizes), sizes, 2.5) == ["a", "b"]
    assert leading_that_fit(list(sizes), sizes, 2.0) == ["a"]  # c would fit in what is left, but b comes first
    assert leading_that_fit(list(sizes), sizes, 1.0) == []
    assert leading_that_fit(list(sizes), sizes, math.inf) == list(sizes)
