"""Cross pseudo supervision against its definition, and the loop's generality: a method with two trained networks,
CPS and a toy one defined here (no edit to training/, evaluation/ or benchmarks/), trains both, saves, resumes
bit-identically and evaluates the network the method names."""

import argparse
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import SMALL_PATCH, method_args, train_test_predict

import training.loop as training
from methods import CPS, UAMTUnlabel
from methods.base import Method, StepOutput
from utils.checkpoint import load_checkpoint
from utils.errors import DataError
from utils.losses import supervised_loss

FLAGS = ["--patch_size", *SMALL_PATCH, "--device", "cpu", "--batch_size", "2", "--labeled_bs", "1", "--labelnum",
         "4", "--num_workers", "0", "--save_every", "1"]  # fmt: skip


def cps_args(**overrides) -> argparse.Namespace:
    return method_args(CPS, **({"num_classes": 3} | overrides))


def tiny_network() -> torch.nn.Module:
    return torch.nn.Conv2d(1, 3, kernel_size=3, padding=1)


def test_cps_loss_is_the_definition_and_pseudo_labels_carry_no_gradient():
    """L = L_s(f_a) + L_s(f_b) + lambda [CE(f_a, argmax f_b) + CE(f_b, argmax f_a)] over every item, each network's
    gradient from its own terms only: argmax targets (integers) open no path into the other network."""
    torch.manual_seed(0)
    method = CPS(cps_args(consistency=1.5, consistency_rampup=0.0), tiny_network)
    net_a, net_b = method.trained["net_a"], method.trained["net_b"]
    assert not torch.equal(net_a.weight, net_b.weight)  # two initialisations
    images = torch.randn(4, 1, 8, 8)
    labels = torch.randint(0, 3, (4, 8, 8))
    labeled = slice(0, 2)
    out = method.step({"net_a": net_a, "net_b": net_b}, images, labels, labeled, iteration=0)

    f_a, f_b = net_a(images), net_b(images)
    y_a, y_b = f_a.argmax(1), f_b.argmax(1)
    own_a = supervised_loss(f_a[labeled], labels[labeled])[0] + 1.5 * F.cross_entropy(f_a, y_b)
    own_b = supervised_loss(f_b[labeled], labels[labeled])[0] + 1.5 * F.cross_entropy(f_b, y_a)
    assert out.loss.item() == pytest.approx((own_a + own_b).item(), rel=1e-6)
    grads = torch.autograd.grad(out.loss, [net_a.weight, net_b.weight])
    expected = torch.autograd.grad(own_a, net_a.weight)[0], torch.autograd.grad(own_b, net_b.weight)[0]
    for got, want in zip(grads, expected):
        assert torch.allclose(got, want, atol=1e-6)


def test_cps_weight_ramps_when_asked_and_is_constant_by_default():
    method = CPS(cps_args(), tiny_network)
    images, labels = torch.randn(2, 1, 8, 8), torch.randint(0, 3, (2, 8, 8))
    nets = dict(method.trained)
    assert method.step(nets, images, labels, slice(0, 1), 0).scalars["train/consistency_weight"] == 1.5
    ramped = CPS(cps_args(consistency_rampup=8.0, rampup_epoch_iters=10), tiny_network)
    weight = ramped.step(nets, images, labels, slice(0, 1), 0).scalars["train/consistency_weight"]
    assert weight == pytest.approx(1.5 * torch.exp(torch.tensor(-5.0)).item())  # r(0) = exp(-5)


# --- A method of two trained networks, defined here: the loop must train it as it is -------------------------------


class TwoStudents(Method):
    """Two networks with their own supervised losses, plus a term tying their outputs together."""

    name = "two_students"
    semi_supervised = True
    trained_names = ("left", "right")
    evaluated = "right"

    def step(self, nets, images, labels, labeled, iteration):
        left, right = nets["left"](images), nets["right"](images)
        loss = supervised_loss(left[labeled], labels[labeled])[0] + supervised_loss(right[labeled], labels[labeled])[0]
        loss = loss + 0.1 * (left.softmax(1) - right.softmax(1)).pow(2).mean()
        return StepOutput(loss)


def train(method, root, model_dir, exp, *extra):
    parser = training.training_parser("", exp, method)
    args = parser.parse_args(["--root_path", str(root), "--model_dir", str(model_dir), "--exp", exp, *FLAGS, *extra])
    return training.train(args, method)


@pytest.mark.parametrize("method", [TwoStudents, CPS])
def test_two_trained_networks_both_move_save_and_resume_bit_identically(method, synthetic_root, tmp_path):
    names = method.trained_names
    states = []
    for iterations in (1, 2, 3):  # one run, resumed twice: the state after each iteration
        run = train(method, synthetic_root, tmp_path, "parts", "--max_iterations", str(iterations), "--resume", "auto")
        states.append(load_checkpoint(run / training.STATE_FILE)["networks"])
    assert list(states[0]) == list(names)
    for before, after in zip(states, states[1:]):
        for name in names:  # every trained network is stepped every iteration
            moved = [k for k, v in after[name].items() if v.is_floating_point() and not torch.equal(v, before[name][k])]
            assert any(k.endswith("weight") for k in moved), name

    whole = train(method, synthetic_root, tmp_path, "whole", "--max_iterations", "3")
    final = load_checkpoint(whole / training.STATE_FILE)["networks"]
    for name in names:
        assert all(torch.equal(final[name][k], states[-1][name][k]) for k in final[name]), name
    # iter_<N>.pth holds the network the method evaluates, and run.json says which method ran.
    evaluated = torch.load(whole / "iter_3.pth", weights_only=True)
    assert all(torch.equal(evaluated[k], final[method.evaluated][k]) for k in evaluated)
    assert json.loads((whole / "run.json").read_text())["method"] == method.name


def test_a_state_of_other_networks_is_refused(synthetic_root, tmp_path):
    train(UAMTUnlabel, synthetic_root, tmp_path, "x", "--max_iterations", "1")
    with pytest.raises(DataError, match="saved with the networks student, teacher, this method has left, right"):
        train(TwoStudents, synthetic_root, tmp_path, "x", "--max_iterations", "2", "--resume", "auto")


def test_train_cps_script_then_test_and_predict(synthetic_root, tmp_path):
    train_test_predict("train_cps.py", synthetic_root, tmp_path, "c", *FLAGS)
