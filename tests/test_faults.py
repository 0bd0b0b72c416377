"""A crash loses no finished work: atomic checkpoints, exact resume, clean stops on signals and non-finite losses."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, SMALL_PATCH

import methods.uamt
import training.loop as training
import utils.checkpoint as checkpoint
from dataloaders.sampler import TwoStreamBatchSampler
from methods import UAMTUnlabel

# 6 labelled cases at 1 per batch: 6 batches an epoch, so a stop falls inside an epoch.
FLAGS = ["--patch_size", *SMALL_PATCH, "--batch_size", "2", "--labeled_bs", "1", "--labelnum", "6",
         "--device", "cpu", "--num_workers", "1", "--save_every", "2"]  # fmt: skip


def command(root, exp, iterations, *extra):
    return [sys.executable, str(REPO / "train_uamt_unlabel.py"), "--root_path", str(root), "--exp", exp,
            "--max_iterations", str(iterations), *FLAGS, *extra]  # fmt: skip


def weights(path):
    return torch.load(path, weights_only=True)


def assert_same(a, b):
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "weights differ"


def wait_for(path, process, timeout=240):
    start = time.time()
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.time() - start < timeout
        time.sleep(0.02)


def test_sampler_resumes_mid_epoch_with_the_same_batches():
    full = TwoStreamBatchSampler(range(6), range(6, 9), 2, 1, seed=4)
    first, second = list(full), list(full)
    part = TwoStreamBatchSampler(range(6), range(6, 9), 2, 1, seed=4)
    iterator = iter(part)
    [next(iterator) for _ in range(2)]
    state = part.state_dict(batches_done=2)
    resumed = TwoStreamBatchSampler(range(6), range(6, 9), 2, 1, seed=99)
    resumed.load_state_dict(state)
    assert list(resumed) == first[2:]
    assert list(resumed) == second


def test_sigkill_between_checkpoints_then_resume_ends_with_the_same_weights(synthetic_root, tmp_path):
    subprocess.run(command(synthetic_root, "straight", 6), cwd=tmp_path, check=True, capture_output=True)
    run = tmp_path / "model" / "killed"
    process = subprocess.Popen(command(synthetic_root, "killed", 6), cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    wait_for(run / "iter_2.pth", process)
    wait_for(run / training.STATE_FILE, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run / "iter_4.pth").exists(), "the run was not killed between checkpoints"
    result = subprocess.run(command(synthetic_root, "killed", 6, "--resume", "auto"), cwd=tmp_path,
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "resumed from" in result.stdout and "at iteration 2" in result.stdout
    assert_same(weights(run / "iter_6.pth"), weights(tmp_path / "model" / "straight" / "iter_6.pth"))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_the_state_and_exits_cleanly(synthetic_root, tmp_path, signum):
    """Sent to the whole process group, loader workers included, as Ctrl-C and batch schedulers do."""
    run = tmp_path / "model" / "stopped"
    process = subprocess.Popen(command(synthetic_root, "stopped", 50), cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    log = run / "log.txt"
    wait_for(log, process)
    while "iteration 1:" not in log.read_text():
        time.sleep(0.02)
    os.killpg(process.pid, signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]  # the rest is the progress bar
    name = signal.Signals(signum).name
    assert len(errors) == 1 and f"stopped by {name} at iteration" in errors[0] and "Traceback" not in stderr
    state = checkpoint.load_checkpoint(run / training.STATE_FILE)
    assert 1 <= state["iteration"] < 50

    other = subprocess.run(command(synthetic_root, "stopped", 50, "--resume", "auto", "--labelnum", "5"),
                           cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert other.returncode == 2 and "saved with --labelnum 6" in other.stderr


def test_non_finite_loss_stops_naming_the_iteration_and_keeps_the_last_good_checkpoint(
    synthetic_root, tmp_path, monkeypatch
):
    real = methods.uamt.supervised_loss
    calls = []

    def poisoned(logits, labels, *rest):
        calls.append(1)
        loss, parts = real(logits, labels, *rest)
        return (loss * float("nan"), parts) if len(calls) == 3 else (loss, parts)

    monkeypatch.setattr(methods.uamt, "supervised_loss", poisoned)
    parser = training.training_parser("", "nan", UAMTUnlabel)
    args = parser.parse_args(["--root_path", str(synthetic_root), "--model_dir", str(tmp_path), "--exp", "nan",
                              "--max_iterations", "6", *FLAGS])  # fmt: skip
    with pytest.raises(training.RunStopped, match="loss is nan at iteration 3") as stopped:
        training.train(args, UAMTUnlabel)
    assert stopped.value.exit_code == 3
    # The traceback holds the loader: its workers (which ignore SIGTERM) must be gone, or the interpreter's exit hangs.
    assert not multiprocessing.active_children()
    run = tmp_path / "nan"
    assert (run / "iter_2.pth").exists() and not (run / "iter_4.pth").exists()
    state = checkpoint.load_checkpoint(run / training.STATE_FILE)
    assert state["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in state["networks"]["student"].values() if v.is_floating_point())


def test_non_finite_weights_are_never_saved(synthetic_root, tmp_path, monkeypatch):
    real = methods.uamt.ema_update
    calls = []

    def poisoning(teacher, student, *args):  # runs after the optimiser step: make the 4th step's weights infinite
        calls.append(1)
        if len(calls) == 4:
            student.out_conv.bias.data.fill_(float("inf"))
        real(teacher, student, *args)

    monkeypatch.setattr(methods.uamt, "ema_update", poisoning)
    parser = training.training_parser("", "inf", UAMTUnlabel)
    args = parser.parse_args(["--root_path", str(synthetic_root), "--model_dir", str(tmp_path), "--exp", "inf",
                              "--max_iterations", "6", *FLAGS])  # fmt: skip
    with pytest.raises(training.RunStopped, match="non-finite weights at iteration 4; nothing saved") as stopped:
        training.train(args, UAMTUnlabel)
    assert stopped.value.exit_code == 3
    run = tmp_path / "inf"
    assert (run / "iter_2.pth").exists() and not (run / "iter_4.pth").exists()
    assert checkpoint.load_checkpoint(run / training.STATE_FILE)["iteration"] == 2


def test_a_kill_while_saving_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "state.pth"
    checkpoint.save_atomic({"a": torch.ones(3)}, path)

    def dies_half_way(obj, target):
        with open(target, "wb") as f:
            f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_atomic({"a": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(checkpoint.load_checkpoint(path)["a"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir() if p.name != "state.pth.tmp"] == ["state.pth"]
    os.remove(tmp_path / "state.pth.tmp")
