"""--precision fp32|bf16|auto: native-bf16 detection, refusals, the bf16 training step and bf16 inference."""

import csv
import json
import re

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import SMALL_PATCH

import evaluation.predicting as predicting
import evaluation.testing as testing
import training.loop as training
from dataloaders.synthetic import make_synthetic_la
from methods import UAMTUnlabel
from networks.vnet import VNet
from utils import precision
from utils.errors import DataError
from utils.losses import supervised_loss
from utils.mean_teacher import ema_update, uncertainty_aware_consistency
from utils.precision import (
    bf16_gradient_problem,
    bf16_support,
    cast_forward,
    cpu_bf16_support,
    cpu_flags,
    resolve_precision,
)

NATIVE, WHY_NOT = bf16_support("cpu")
needs_native_bf16 = pytest.mark.skipif(not NATIVE, reason=f"no native bf16 here: {WHY_NOT}")
# The loop's bf16 tests use a patch whose bottleneck avoids a oneDNN bf16 gradient bug (see bf16_gradient_problem).
BF16_PATCH = ["48", "32", "32"]

SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512_vnni\n"
ZEN2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma sha_ni\n\nprocessor\t: 1\nflags\t\t: fpu sse2 avx avx2\n"
COOPER_LAKE = SKYLAKE.replace("avx512_vnni", "avx512_vnni avx512_bf16")
SAPPHIRE_RAPIDS = SKYLAKE.replace("avx512_vnni", "avx512_vnni amx_bf16 amx_tile")
NEOVERSE_V1 = "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd aes sha2 sve bf16 i8mm\n"
GRAVITON2 = "processor\t: 0\nFeatures\t: fp asimd aes sha2 crc32 atomics\n"


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [(SKYLAKE, False), (ZEN2, False), (COOPER_LAKE, True), (SAPPHIRE_RAPIDS, True), (NEOVERSE_V1, True),
     (GRAVITON2, False)],
)  # fmt: skip
def test_cpuinfo_flags_decide_native_bf16(cpuinfo, native, tmp_path, monkeypatch):
    """AVX-512 alone (what get_cpu_capability() calls 'AVX512', and where oneDNN only emulates bf16) is not native;
    avx512_bf16, amx_bf16 or Arm's bf16 are."""
    monkeypatch.setattr(precision, "onednn_bf16", lambda: True)
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    answer, why = cpu_bf16_support(path)
    assert answer is native
    assert ("CPU flags" in why) if native else ("no native bf16" in why and "\n" not in why)


def test_no_cpuinfo_or_no_onednn_is_not_native(tmp_path, monkeypatch):
    assert cpu_flags(tmp_path / "absent") is None
    assert cpu_bf16_support(tmp_path / "absent")[0] is False
    path = tmp_path / "cpuinfo"
    path.write_text(COOPER_LAKE)
    monkeypatch.setattr(precision, "onednn_bf16", lambda: False)
    native, why = cpu_bf16_support(path)
    assert not native and "oneDNN" in why


def test_explicit_bf16_is_refused_and_auto_is_fp32_without_native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: (False, "this CPU has no native bf16 arithmetic"))
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "cpu", [48, 32, 32]) == "fp32"
    with pytest.raises(DataError) as refusal:
        resolve_precision("bf16", "cpu")
    message = str(refusal.value)
    assert "\n" not in message and "no native bf16" in message and "use --precision fp32" in message


def test_auto_is_bf16_where_native_unless_the_gradient_check_fails(monkeypatch, capsys):
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: (True, "CPU flags avx512_bf16"))
    monkeypatch.setattr(precision, "bf16_gradient_problem", lambda patch, device: None)
    assert resolve_precision("auto", "cpu") == resolve_precision("bf16", "cpu", [48, 32, 32]) == "bf16"
    monkeypatch.setattr(precision, "bf16_gradient_problem", lambda patch, device: "wrong gradients at 2x2x2")
    assert resolve_precision("bf16", "cpu") == "bf16"  # inference: forwards only, the check does not apply
    assert resolve_precision("auto", "cpu", [32, 32, 32]) == "fp32"
    assert "trains in fp32: wrong gradients at 2x2x2" in capsys.readouterr().err
    with pytest.raises(DataError, match="wrong gradients at 2x2x2; use --precision fp32"):
        resolve_precision("bf16", "cpu", [32, 32, 32])


class _FlipGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight):
        return weight.view_as(weight)

    @staticmethod
    def backward(ctx, grad):
        return -grad


def test_gradient_check_reports_a_convolution_whose_bf16_weight_gradient_is_wrong(monkeypatch):
    """A stand-in for a broken kernel: under autocast the weight gradient comes back negated."""
    real = torch.nn.functional.conv2d
    assert bf16_gradient_problem([32, 32], "cpu") is None  # 2D convolutions agree (rounding only)

    def broken(x, weight, **kwargs):
        if torch.is_autocast_enabled("cpu"):
            weight = _FlipGradient.apply(weight)
        return real(x, weight, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", broken)
    problem = bf16_gradient_problem([32, 32], "cpu")
    assert problem is not None and "32x32 voxels (V-Net level 0" in problem and "cosine to float32 -1.00" in problem


@pytest.mark.parametrize("script", ["train", "test", "predict"])
def test_the_scripts_refuse_bf16_in_one_line_before_writing(script, synthetic_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: (False, "this CPU has no native bf16 arithmetic"))
    common = ["--precision", "bf16", "--device", "cpu"]
    if script == "train":
        args = training.training_parser("", "x", UAMTUnlabel).parse_args(
            [*common, "--root_path", str(synthetic_root), "--patch_size", *SMALL_PATCH, "--labelnum", "3",
             "--max_iterations", "1", "--num_workers", "0", "--model_dir", str(tmp_path / "model")]
        )  # fmt: skip
        job, guard = (lambda: training.train(args, UAMTUnlabel)), training.run_guarded
    elif script == "test":
        args = testing.testing_parser().parse_args(
            [*common, "--root_path", str(synthetic_root), "--model", "x", "--model_dir", str(tmp_path / "model"),
             "--iteration", "1"]
        )  # fmt: skip
        job, guard = (lambda: testing.evaluate(args)), testing.run_guarded
    else:
        args = predicting.predicting_parser().parse_args(
            [*common, "--checkpoint", str(tmp_path / "model" / "x" / "iter_1.pth"), "--input", str(tmp_path / "in"),
             "--out", str(tmp_path / "out")]
        )  # fmt: skip
        job, guard = (lambda: predicting.predict(args)), predicting.run_guarded
    with pytest.raises(SystemExit) as stop:
        guard(job)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --precision bf16 on cpu: this CPU has no native bf16")
    assert not (tmp_path / "model").exists() and not (tmp_path / "out").exists()


def _uamt_step(mode: str, seed: int = 0) -> dict:
    """One UA-MT step of a narrow V-Net (4 filters) on 2 labelled + 2 unlabelled random items, as the loop runs it:
    student forward, supervised loss, teacher target + 8 MC passes (2 per forward), masked consistency, SGD step,
    EMA. The same seeds for both modes: the same weights, inputs, dropout masks and teacher noise."""
    torch.manual_seed(seed)
    student = VNet(n_classes=2, n_filters=4, has_dropout=True).train()
    teacher = VNet(n_classes=2, n_filters=4, has_dropout=True).train()
    ema_update(teacher, student, 0.99, 0)
    images = torch.randn(4, 1, *map(int, BF16_PATCH), generator=torch.Generator().manual_seed(seed))
    labels = (images[:, 0] > 0.8).long()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)
    torch.manual_seed(100 + seed)
    logits = cast_forward(student, mode, "cpu")(images)
    loss_sup, _ = supervised_loss(logits[:2], labels[:2])
    consistency = uncertainty_aware_consistency(logits[2:], cast_forward(teacher, mode, "cpu"), images[2:], 0.6, 8, 2)
    loss = loss_sup + 0.1 * consistency.loss
    loss.backward()
    gradient = {n: p.grad.clone() for n, p in student.named_parameters()}
    optimizer.step()
    ema_update(teacher, student, 0.99, 1)
    tensors = [logits, consistency.teacher_logits, consistency.uncertainty, consistency.mask, consistency.loss, loss]
    return {"loss": loss.item(), "tensors": tensors, "gradient": gradient, "student": student, "teacher": teacher}


def test_a_bf16_uamt_step_is_finite_float32_outside_the_forwards_and_close_to_fp32():
    """Tolerances. bf16 keeps 8 significant bits: each logit is rounded by up to 2^-9 relative, and the loss averages
    smooth functions of ~10^5 of them, so its relative error stays well under 2^-8 = 0.4% (measured: at most 3e-4
    over 8 seeds and widths); 0.5% catches anything worse than rounding (a loss taken from bf16 tensors, a broken
    forward kernel). Gradients: the output layer's sees one rounding (measured cosine to fp32 > 0.99999); deeper
    ones are chaotic at initialisation (perturbing the weights by 2^-9 in float64 already gives a whole-gradient
    cosine of 0.82; bf16 gave 0.75-0.91), so the whole gradient only has to point the same way (> 0.5), which a
    wrong kernel does not (cosine ~0 or NaN)."""
    fp32, bf16 = _uamt_step("fp32"), _uamt_step("bf16")
    for tensor in bf16["tensors"]:  # logits are cast right after each forward: everything after is float32
        assert tensor.dtype == torch.float32 and torch.isfinite(tensor).all()
    for net in (bf16["student"], bf16["teacher"]):  # the weights, the optimiser step and the EMA stay float32
        assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in net.parameters())
    assert bf16["loss"] == pytest.approx(fp32["loss"], rel=5e-3)

    def cosine(a, b):
        return torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()

    assert cosine(fp32["gradient"]["out_conv.weight"], bf16["gradient"]["out_conv.weight"]) > 0.999
    whole = [torch.cat([g[n].flatten() for n in g]) for g in (fp32["gradient"], bf16["gradient"])]
    assert cosine(*whole) > 0.5


@needs_native_bf16
def test_training_loop_in_bf16_logs_a_close_first_loss_and_records_the_precision(synthetic_root, tmp_path):
    parser = training.training_parser("", "x", UAMTUnlabel)
    losses = {}
    for mode in ("fp32", "auto"):
        args = parser.parse_args(["--root_path", str(synthetic_root), "--patch_size", *BF16_PATCH, "--batch_size",
                                  "2", "--labeled_bs", "1", "--labelnum", "3", "--max_iterations", "1",
                                  "--num_workers", "0", "--device", "cpu", "--precision", mode, "--exp", mode,
                                  "--model_dir", str(tmp_path)])  # fmt: skip
        run = training.train(args, UAMTUnlabel)
        assert json.loads((run / "run.json").read_text())["args"]["precision"] == {"fp32": "fp32", "auto": "bf16"}[mode]
        losses[mode] = float(re.search(r"loss/loss ([0-9.]+)", (run / "log.txt").read_text()).group(1))
    assert losses["auto"] == pytest.approx(losses["fp32"], rel=5e-3)  # same weights and batch; see the step test


@needs_native_bf16
def test_test_la_in_bf16_agrees_with_fp32_on_the_voxels_of_a_case(tmp_path):
    """A seeded (untrained) V-Net whose prediction splits the case: many voxels lie near the decision boundary, a
    harder test of agreement than a trained network's confident output. Window softmax differences stay within
    bf16 rounding of the logits, so at most a few boundary voxels may flip."""
    root = make_synthetic_la(tmp_path / "LA", n_train=1, n_test=1, shape_range=((48, 48, 32), (48, 48, 32)), seed=5)
    torch.manual_seed(0)
    run = tmp_path / "model" / "seeded"
    run.mkdir(parents=True)
    torch.save(VNet(n_classes=2).state_dict(), run / "iter_1.pth")
    case = (root / "test.list").read_text().split()[0]
    predictions, dice = {}, {}
    for mode in ("fp32", "bf16"):
        args = testing.testing_parser().parse_args(
            ["--root_path", str(root), "--model_dir", str(tmp_path / "model"), "--model", "seeded", "--iteration",
             "1", "--patch_size", *SMALL_PATCH, "--stride_xy", "16", "--stride_z", "16", "--device", "cpu",
             "--precision", mode]
        )  # fmt: skip
        testing.evaluate(args)
        out = run / "test_iter_1"
        assert json.loads((out / "test.json").read_text())["precision"] == mode
        predictions[mode] = np.asarray(nib.load(out / f"{case}_pred.nii.gz").dataobj)
        dice[mode] = float(list(csv.DictReader(open(out / "metrics.csv")))[0]["dice"])
    foreground = predictions["fp32"].mean()
    assert 0.1 < foreground < 0.9  # a split prediction, so that agreement means something
    assert (predictions["bf16"] == predictions["fp32"]).mean() >= 0.99
    assert dice["bf16"] == pytest.approx(dice["fp32"], abs=0.01)
