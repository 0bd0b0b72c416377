"""train.py --method NAME is the one entry point: it trains exactly what the method's train_<name>.py alias trains,
and without --method it names the methods found in methods/ (none registered by hand)."""

import os
import subprocess
import sys

import torch
from conftest import REPO

from dataloaders.synthetic_echo import make_synthetic_echo
from methods import METHODS


def run(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_train_py_trains_what_the_alias_trains(tmp_path):
    root = make_synthetic_echo(tmp_path / "echo", n_train=6, n_test=2, labelled=6, shape=(40, 48), seed=1)
    flags = ["--root_path", str(root), "--model_dir", str(tmp_path / "m"), "--patch_size", "32", "32", "--labelnum",
             "2", "--batch_size", "3", "--labeled_bs", "1", "--max_iterations", "2", "--save_every", "2",
             "--num_workers", "0", "--threads", "1", "--device", "cpu"]  # fmt: skip
    entry = run("train.py", "--method", "uamt_unlabel", *flags, "--exp", "entry")
    alias = run("train_uamt_unlabel.py", *flags, "--exp", "alias")
    assert entry.returncode == 0 and alias.returncode == 0, entry.stderr[-2000:] + alias.stderr[-2000:]
    a, b = (torch.load(tmp_path / "m" / exp / "iter_2.pth", weights_only=True) for exp in ("entry", "alias"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_py_without_a_method_names_every_method():
    result = run("train.py")
    assert result.returncode == 2 and "--method is required" in result.stderr
    assert all(name in result.stderr for name in METHODS)
    assert set(METHODS) == {"supervised", "uamt", "uamt_unlabel", "bcp", "cps", "unimatch"}  # found, not listed
