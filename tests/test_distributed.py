"""Multi-process training through torchrun (gloo on CPU): batch shares, one teacher, rank 0 writes, and the same
steps as a single process with the same global batch."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, SMALL_PATCH

from dataloaders.sampler import TwoStreamBatchSampler
from networks.vnet import VNet


@pytest.mark.parametrize(("batch_size", "labeled_bs", "world_size"), [(4, 2, 2), (8, 4, 4), (6, 2, 2)])
def test_the_ranks_shares_make_up_the_single_process_batch(batch_size, labeled_bs, world_size):
    def batches(rank, world):
        sampler = TwoStreamBatchSampler(range(8), range(8, 20), batch_size, labeled_bs, 5, rank, world)
        return [b for _ in range(3) for b in sampler]  # 3 epochs

    single = batches(0, 1)
    shares = [batches(r, world_size) for r in range(world_size)]
    local_labeled = labeled_bs // world_size
    for b, batch in enumerate(single):
        assert sorted(x for s in shares for x in s[b][:local_labeled]) == sorted(batch[:labeled_bs])
        assert sorted(x for s in shares for x in s[b][local_labeled:]) == sorted(batch[labeled_bs:])


def test_a_batch_that_does_not_split_over_the_ranks_is_refused():
    with pytest.raises(ValueError, match="multiples of the number of processes"):
        TwoStreamBatchSampler(range(8), range(8, 20), 4, 1, 5, 0, 2)


# train_uamt_unlabel.py without what makes a rank's step differ from the single process's by design: dropout (each
# rank draws its own masks) and BatchNorm batch statistics (each rank normalises over its share of the batch);
# BatchNorm uses its running statistics instead. Teacher noise barely matters while lambda(t) is ~1e-3.
SCRIPT = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from torch import nn
from torch.nn import functional as F
nn.Dropout3d.forward = lambda self, x: x
nn.BatchNorm3d.forward = lambda self, x: F.batch_norm(
    x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
)
from methods import UAMTUnlabel
from training.loop import run_training
run_training(UAMTUnlabel, "", "run")
"""


def train(root, model_dir, processes):
    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", str(processes)] if processes > 1 else []
    script = model_dir.parent / "train_without_dropout.py"
    script.write_text(SCRIPT)
    return subprocess.run(
        [sys.executable, *launcher, str(script), "--root_path", str(root), "--model_dir",
         str(model_dir), "--exp", "run", "--patch_size", *SMALL_PATCH, "--labelnum", "4", "--batch_size", "4",
         "--labeled_bs", "2", "--max_iterations", "4", "--save_every", "4", "--device", "cpu", "--num_workers", "0"],
        capture_output=True, text=True, timeout=600, env=os.environ | {"OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def test_two_gloo_processes_take_the_single_process_steps(synthetic_root, tmp_path):
    single = train(synthetic_root, tmp_path / "single", 1)
    assert single.returncode == 0, single.stderr
    ddp = train(synthetic_root, tmp_path / "ddp", 2)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    run = tmp_path / "ddp" / "run"
    assert "2 processes" in json.loads((run / "run.json").read_text())["machine"]
    assert len(list((run / "log").glob("events.out.tfevents.*"))) == 1  # rank 0 alone logs
    assert (run / "log.txt").read_text().count("iteration 4:") == 1

    torch.manual_seed(1337)  # the runs' initial student: built right after seeding
    start = VNet(n_classes=2, has_dropout=True).state_dict()
    a = torch.load(tmp_path / "single" / "run" / "iter_4.pth", weights_only=True)
    b = torch.load(run / "iter_4.pth", weights_only=True)
    names = [k for k in start if k.endswith(".weight")]

    def distance(x, y):
        return torch.cat([(x[k] - y[k]).reshape(-1) for k in names]).norm()

    # What remains: the soft Dice and the consistency normaliser are ratios taken per share and averaged (one ratio
    # over the batch in a single process), and the teacher noise per rank; measured 0.7% of the distance the weights
    # travelled. Summed instead of averaged gradients, or shares that are not the batch, give differences of the
    # order of the distance itself.
    travelled = distance(a, start)
    assert travelled > 0
    assert distance(a, b) < 0.05 * travelled
