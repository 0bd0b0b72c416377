"""Methods as modules: the moved methods train bit-identically to the code before the move; BCP against its
definition (the release's code, hand computations)."""

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import method_digest
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, SMALL_PATCH
from method_digest import (
    RUNS,
    STORED_PATH,
    curve_deviations,
    digest,
    environment,
    synthetic_root,
    train_and_digest,
    within_bounds,
)

import methods.bcp as bcp
import training.loop as training
from methods import BCP, Supervised, UAMTUnlabel
from training.config import resolve_flags
from utils.errors import DataError

STORED = json.loads(STORED_PATH.read_text())


@pytest.fixture(scope="module")
def digest_root(tmp_path_factory):
    return synthetic_root(tmp_path_factory.mktemp("digest_data"))


@pytest.mark.parametrize("name", list(RUNS))
def test_moved_methods_train_the_weights_of_the_code_before_the_move(name, digest_root, tmp_path):
    """The digests were stored by tests/method_digest.py --record from the scripts of the commit before the methods
    moved to methods/ (REFERENCE). Where that environment was recorded (same torch, kernels, CPU): bit-identical
    weights. Elsewhere: the first iterations' logged curves within the bounds tools/digest_drift.py measured."""
    now = train_and_digest(name, digest_root, tmp_path)
    recorded = [e["runs"][name] for e in STORED["environments"] if e["environment"] == environment()]
    if recorded:
        assert now["sha256"] == recorded[0]
    deviations = curve_deviations(now["curves"], STORED["curves"][name])
    assert within_bounds(deviations), deviations


def test_the_cross_machine_comparison_catches_a_real_change(digest_root, tmp_path):
    """The fallback used on unrecorded CPUs must still see a changed method: lambda x1.1 (a 2e-3 move at
    iteration 1) fails it, the unchanged run passes it."""
    reference = STORED["curves"]["uamt_unlabel"]
    changed = train_and_digest("uamt_unlabel", digest_root, tmp_path, flags=("--consistency", "0.11"))
    assert not within_bounds(curve_deviations(changed["curves"], reference))


def test_environment_tells_cpus_of_one_capability_apart(monkeypatch):
    """An Intel Xeon with AMX and an AMD EPYC both report torch capability AVX512: the CPU itself is in the key."""
    amd = {"vendor": "AuthenticAMD", "model": "AMD EPYC", "flags_sha256": "a"}
    intel = {"vendor": "GenuineIntel", "model": "Intel(R) Xeon(R) Platinum 8480+", "flags_sha256": "b"}
    monkeypatch.setattr(method_digest, "cpu_description", lambda: amd)
    first = environment()
    monkeypatch.setattr(method_digest, "cpu_description", lambda: intel)
    assert environment() != first and environment()["cpu_capability"] == first["cpu_capability"]


def test_cpu_description_reads_this_machines_cpu():
    description = method_digest.cpu_description()
    if Path("/proc/cpuinfo").is_file():
        info = Path("/proc/cpuinfo").read_text()
        assert description["model"] in info and description["vendor"] in info and description["flags_sha256"]


def test_digest_sees_a_one_ulp_change():
    state = {"w": torch.ones(3)}
    changed = {"w": torch.nextafter(torch.ones(3), torch.full((3,), 2.0))}
    assert digest(state)["sha256"] != digest(changed)["sha256"]


# --- BCP: the pieces -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(48, 48, 32), (112, 112, 80), (64, 96)])
def test_cube_has_two_thirds_of_each_side_and_starts_in_the_releases_range(shape):
    torch.manual_seed(0)
    sides = [int(s * 2 / 3) for s in shape]
    starts = []
    for _ in range(400):
        mask = bcp.cube_mask(shape, 2 / 3)
        zero = (mask == 0).nonzero()
        low, high = zero.min(0).values, zero.max(0).values
        assert (high - low + 1).tolist() == sides  # one box of int(side * 2/3) per axis
        assert int((mask == 0).sum()) == math.prod(sides)  # and nothing else
        starts.append(low.tolist())
    starts = np.array(starts)
    # np.random.randint(0, side - cube) in the release: 0 .. side - cube - 1, every position reachable.
    assert starts.min(0).tolist() == [0] * len(shape)
    assert starts.max(0).tolist() == [s - c - 1 for s, c in zip(shape, sides)]


def test_masked_dice_and_mix_loss_against_a_hand_computation():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 2, 3, 2, 2))
    outside_labels = rng.integers(0, 2, (2, 3, 2, 2))
    inside_labels = rng.integers(0, 2, (2, 3, 2, 2))
    mask = rng.integers(0, 2, (3, 2, 2))

    def dice_by_hand(labels, m):
        terms = []
        for n in range(2):
            for c in range(2):
                inter = union = 0.0
                for idx in np.ndindex(3, 2, 2):
                    z = logits[(n, slice(None), *idx)]
                    p = math.exp(z[c]) / sum(math.exp(v) for v in z)
                    g = float(labels[(n, *idx)] == c)
                    inter += m[idx] * p * g
                    union += m[idx] * (p + g)
                terms.append((2 * inter + 1e-5) / (union + 1e-5))
        return 1 - sum(terms) / len(terms)

    def ce_by_hand(labels, m):
        total = count = 0.0
        for n in range(2):
            for idx in np.ndindex(3, 2, 2):
                z = logits[(n, slice(None), *idx)]
                total += m[idx] * (math.log(sum(math.exp(v) for v in z)) - z[labels[(n, *idx)]])
                count += m[idx]
        return total / count

    t = torch.tensor
    got = bcp.mix_loss(t(logits), t(outside_labels), t(inside_labels), t(mask), 1.0, 0.5)
    inside = 1 - mask
    dice = dice_by_hand(outside_labels, mask) + 0.5 * dice_by_hand(inside_labels, inside)
    ce = ce_by_hand(outside_labels, mask) + 0.5 * ce_by_hand(inside_labels, inside)
    assert float(got) == pytest.approx((dice + ce) / 2, rel=1e-9)
    assert float(bcp.masked_dice_loss(t(logits), t(outside_labels))) == pytest.approx(
        dice_by_hand(outside_labels, np.ones((3, 2, 2))), rel=1e-9
    )


def test_largest_component_keeps_the_biggest_blob_with_full_connectivity():
    labels = np.zeros((8, 8, 8), dtype=np.int64)
    labels[0:2, 0:2, 0:2] = 1  # 8 voxels
    labels[2, 2, 2] = 1  # touches the first blob by a corner only: joined under full (26-) connectivity -> 9
    labels[5:8, 5:8, 6:8] = 1  # 18 voxels: the largest
    kept = bcp.largest_component(labels)
    expected = np.zeros_like(labels)
    expected[5:8, 5:8, 6:8] = 1
    assert np.array_equal(kept, expected)
    labels[5:8, 5:8, 6:8] = 0
    kept = bcp.largest_component(labels)
    assert kept.sum() == 9 and kept[2, 2, 2] == 1  # the corner voxel belongs to the largest component
    assert not bcp.largest_component(np.zeros((4, 4, 4), dtype=np.int64)).any()  # empty stays empty


class Recorder(torch.nn.Module):
    """A 'network' that records its input and answers one-hot logits of round(x) (item values are class IDs)."""

    def __init__(self, classes):
        super().__init__()
        self.classes, self.inputs = classes, []
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return 10.0 * F.one_hot(x[:, 0].round().long(), self.classes).movedim(-1, 1).float() + self.w


def bcp_args(**overrides):
    args = training.training_parser("", "x", BCP).parse_args(["--num_classes", "5", "--pre_iterations", "2"])
    for k, v in overrides.items():
        setattr(args, k, v)
    return args


def test_labels_travel_with_their_image_regions_in_both_stages(monkeypatch):
    """Items hold their class ID everywhere: l_a = 1, l_b = 2, u_a = 3, u_b = 4 (the teacher, a Recorder, then
    pseudo-labels u_a as 3 and u_b as 4). Every voxel of every mixed image must be scored against its own ID."""
    shape = (1, 1, 12, 12, 9)
    images = torch.cat([torch.full(shape, float(v)) for v in (1, 2, 3, 4)])
    labels = torch.cat([torch.full(shape[:1] + shape[2:], v) for v in (1, 2, 0, 0)])  # unlabelled: placeholders
    method = BCP(bcp_args(pseudo_label_lcc=0), lambda: Recorder(5))
    student = method.trained["student"]
    dice_targets, mixes = [], []
    real_dice, real_mix = bcp.masked_dice_loss, bcp.mix_loss

    def dice_spy(logits, labels, mask=None):
        dice_targets.append(labels)
        return real_dice(logits, labels, mask)

    def mix_spy(logits, outside, inside, mask, *weights):
        mixes.append((outside, inside, mask, weights))
        return real_mix(logits, outside, inside, mask, *weights)

    monkeypatch.setattr(bcp, "masked_dice_loss", dice_spy)
    monkeypatch.setattr(bcp, "mix_loss", mix_spy)

    torch.manual_seed(0)
    method.step({"student": student}, images, labels, slice(0, 2), iteration=0)  # stage 1: labelled pairs, both ways
    mixed, target = student.inputs[-1][:, 0], dice_targets[-1]
    assert mixed.shape[0] == 2 and torch.equal(target.float(), mixed)  # each voxel's label = its image's ID
    assert {tuple(torch.unique(m).tolist()) for m in mixed} == {(1.0, 2.0)}  # l_a in l_b and l_b in l_a
    assert torch.equal(mixed[0] + mixed[1], torch.full_like(mixed[0], 3.0))  # the same cube, the two ways round

    method.start_iteration(2, torch.optim.SGD(student.parameters(), lr=0.1))
    method.step({"student": student}, images, labels, slice(0, 2), iteration=2)  # stage 2
    mixed = student.inputs[-1][:, 0]
    (yo_l, yi_l, m, w_l), (yo_u, yi_u, _, w_u) = mixes
    inside = m == 0
    assert torch.equal(mixed[0][~inside], torch.ones_like(mixed[0][~inside]))  # l_a outside the cube
    assert torch.equal(mixed[0][inside], torch.full_like(mixed[0][inside], 3.0))  # u_a inside
    assert torch.equal(mixed[1][~inside], torch.full_like(mixed[1][~inside], 4.0))  # u_b outside
    assert torch.equal(mixed[1][inside], torch.full_like(mixed[1][inside], 2.0))  # l_b inside
    for (outside, inside_labels), image in zip([(yo_l, yi_l), (yo_u, yi_u)], mixed):
        assert torch.equal(outside[0][~inside], image[~inside].long())
        assert torch.equal(inside_labels[0][inside], image[inside].long())
    assert w_l == (1.0, 0.5) and w_u == (0.5, 1.0)  # ground truth weighs 1, pseudo-labels 0.5


def test_stage_two_starts_from_stage_one_and_the_lr_restarts():
    args = bcp_args(num_classes=2, base_lr=0.01, lr_step=3)
    method = BCP(args, lambda: torch.nn.Linear(3, 2))
    student = method.trained["student"]
    optimizer = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)
    student(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    method.start_iteration(1, optimizer)
    assert not torch.equal(method.teacher.weight, student.weight) and optimizer.state  # still stage 1
    method.start_iteration(2, optimizer)
    assert torch.equal(method.teacher.weight, student.weight) and not optimizer.state  # fresh momentum
    assert [method.learning_rate(t) for t in range(7)] == [0.01, 0.01, 0.01, 0.01, 0.01, pytest.approx(0.001),
                                                           pytest.approx(0.001)]  # fmt: skip


def test_bcp_refuses_an_unpaired_batch_in_one_line():
    with pytest.raises(DataError, match="--labeled_bs must be even and half of --batch_size"):
        BCP.check_args(bcp_args(batch_size=4, labeled_bs=1))
    with pytest.raises(DataError, match="--pre_iterations 2 must be in"):
        BCP.check_args(bcp_args(max_iterations=2))


# --- BCP: end to end ------------------------------------------------------------------------------------------------

BATCH = ["--batch_size", "4", "--labeled_bs", "2", "--labelnum", "4", "--num_workers", "0"]
SCHEDULE = ["--pre_iterations", "2", "--max_iterations", "4", "--save_every", "1"]
FLAGS = ["--patch_size", *SMALL_PATCH, "--device", "cpu", *BATCH, *SCHEDULE]


def test_teacher_of_stage_two_is_the_ema_of_stage_ones_final_student(synthetic_root, tmp_path):
    args = training.training_parser("", "bcp", BCP).parse_args(
        ["--root_path", str(synthetic_root), "--model_dir", str(tmp_path), *FLAGS, "--max_iterations", "3"]
        + ["--variant", "equal_work"]
    )
    run = training.train(args, BCP)
    w2, w3 = (torch.load(run / f"iter_{i}.pth", weights_only=True) for i in (2, 3))
    teacher = torch.load(run / training.STATE_FILE, weights_only=True)["networks"]["teacher"]
    parameters = [name for name in teacher if "running" not in name and "num_batches" not in name]
    assert len(parameters) > 50
    for name in parameters:  # BatchNorm buffers are the teacher's own; the parameters are the EMA's
        assert torch.allclose(teacher[name], 0.99 * w2[name] + 0.01 * w3[name], atol=1e-6), name
    assert json.loads((run / "run.json").read_text())["method"] == "bcp_equal_work"  # --variant: its own group


def test_resume_across_the_stage_boundary_ends_bit_identical(synthetic_root, tmp_path, monkeypatch):
    def train(exp):
        args = training.training_parser("", exp, BCP).parse_args(
            [
                "--root_path",
                str(synthetic_root),
                "--model_dir",
                str(tmp_path),
                "--exp",
                exp,
                "--resume",
                "auto",
                *FLAGS,
            ]  # fmt: skip
        )
        return training.train(args, BCP)

    whole = train("whole")
    real_end = BCP.end_iteration

    def stop_after_stage_one(self, iteration):
        real_end(self, iteration)
        if iteration == 0:  # the next step completes, the loop saves the state at iteration 2 (the boundary), stops
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(BCP, "end_iteration", stop_after_stage_one)
    with pytest.raises(training.RunStopped, match="stopped by SIGTERM at iteration 2"):
        train("parts")
    monkeypatch.setattr(BCP, "end_iteration", real_end)
    parts = train("parts")
    a, b = (torch.load(r / "iter_4.pth", weights_only=True) for r in (whole, parts))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_bcp_script_then_test(synthetic_root, tmp_path):
    common = ["--root_path", str(synthetic_root), "--model_dir", str(tmp_path), "--patch_size", *SMALL_PATCH,
              "--device", "cpu"]  # fmt: skip
    train = subprocess.run([sys.executable, str(REPO / "train_bcp.py"), *common, *BATCH, *SCHEDULE, "--exp", "b"],
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert train.returncode == 0, train.stderr
    test = subprocess.run([sys.executable, str(REPO / "test_LA.py"), *common, "--model", "b", "--iteration", "4",
                           "--save_nifti", "0"], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert test.returncode == 0, test.stderr
    assert (tmp_path / "b" / "test_iter_4" / "metrics.csv").is_file()
    bad = subprocess.run([sys.executable, str(REPO / "train_bcp.py"), *common, "--labeled_bs", "3"],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_uamt_student_batchnorm_auto_is_split_for_2d_in_one_process(monkeypatch, tmp_path):
    """The default (RESULTS.md, "HC18": split ahead of joint on validation frames over three seeds): split for 2D
    data, joint for volumes (the release's, LA bit-identical) and under torchrun (split is single-process); a flag
    given stays; a run saved with joint does not resume as split."""
    parser = training.training_parser("", "x", UAMTUnlabel)

    def resolved(*flags: str, patch: list[int]) -> str:
        args = parser.parse_args([*flags, "--patch_size", *map(str, patch)])
        return resolve_flags(args, UAMTUnlabel, len(patch), torch.device("cpu")).student_batchnorm

    assert parser.parse_args([]).student_batchnorm == "auto"
    assert resolved(patch=[128, 192]) == "split" and resolved(patch=[112, 112, 80]) == "joint"
    assert resolved("--student_batchnorm", "joint", patch=[128, 192]) == "joint"
    assert resolved("--student_batchnorm", "split", patch=[112, 112, 80]) == "split"
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert resolved(patch=[128, 192]) == "joint"
    monkeypatch.delenv("WORLD_SIZE")
    args = resolve_flags(parser.parse_args(["--patch_size", "128", "192"]), UAMTUnlabel, 2, torch.device("cpu"))
    assert args.student_batchnorm == "split"
    saved = {k: vars(args)[k] for k in training.RESUME_MUST_MATCH} | {"student_batchnorm": "joint"}
    keep = UAMTUnlabel.resume_must_match
    with pytest.raises(DataError, match="--student_batchnorm joint"):
        training.check_resumable({"args": saved}, args, tmp_path / "state.pth", keep)
    old = {k: v for k, v in saved.items() if k != "student_batchnorm"}  # saved before the flag existed: joint
    with pytest.raises(DataError, match="--student_batchnorm joint"):
        training.check_resumable({"args": old}, args, tmp_path / "state.pth", keep)
    supervised = training.training_parser("", "s", Supervised).parse_args([])  # no such flag: nothing to compare
    supervised.patch_size = [128, 192]
    training.check_resumable({"args": {k: vars(supervised).get(k) for k in training.RESUME_MUST_MATCH}}, supervised,
                             tmp_path / "state.pth", Supervised.resume_must_match)  # fmt: skip


@pytest.mark.parametrize("batchnorm", ["joint", "split"])
def test_uamt_student_batchnorm_joint_or_split(batchnorm, monkeypatch):
    """split: the labelled items' logits are those of a forward of the labelled items alone (BatchNorm statistics of
    those items only); joint (the release): those of one forward of the whole batch."""
    import methods.uamt as uamt

    args = training.training_parser("", "x", UAMTUnlabel).parse_args(["--student_batchnorm", batchnorm])
    torch.manual_seed(0)

    def network():
        return torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1), torch.nn.BatchNorm3d(2))

    images = torch.randn(4, 1, 4, 4, 4)
    images[2:] += 3.0  # unlabelled items with other statistics: joint and split normalise differently
    labels = torch.randint(0, 2, (4, 4, 4, 4))
    seen = []
    real = uamt.supervised_loss

    def spy(logits, y, *rest):
        seen.append(logits.detach())
        return real(logits, y, *rest)

    monkeypatch.setattr(uamt, "supervised_loss", spy)
    method = uamt.UAMTUnlabel(args, network)
    student = method.trained["student"]
    method.step({"student": student}, images, labels, slice(0, 2), iteration=0)
    alone, whole = network(), network()
    alone.load_state_dict(student.state_dict()), whole.load_state_dict(student.state_dict())
    expected = alone(images[:2]) if batchnorm == "split" else whole(images)[:2]
    other = whole(images)[:2] if batchnorm == "split" else alone(images[:2])
    assert torch.allclose(seen[0], expected.detach(), atol=1e-6)
    assert not torch.allclose(seen[0], other.detach(), atol=1e-3)
