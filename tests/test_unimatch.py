"""UniMatch (methods/unimatch.py) against its definition: the weak view's pseudo-labels and confidence mask, CutMix
moving image and pseudo-label regions together, two different strong views, the loss from its parts, resume, and the
scripts end to end on volumes and frames."""

import argparse

import pytest
import torch
import torch.nn.functional as F
from conftest import SMALL_PATCH, method_args, run_script, train_test_predict

import methods.unimatch as unimatch
import training.loop as training
from dataloaders.synthetic_echo import make_synthetic_echo
from methods import METHODS, UniMatch
from utils.checkpoint import load_checkpoint
from utils.errors import DataError
from utils.losses import supervised_loss


def unimatch_args(**overrides) -> argparse.Namespace:
    return method_args(UniMatch, **({"num_classes": 3} | overrides))


class TinyFp(torch.nn.Conv2d):
    """A one-layer 'network' with a deterministic feature perturbation: the perturbed logits use half the weight."""

    def __init__(self, classes: int = 3):
        super().__init__(1, classes, kernel_size=3, padding=1)
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return super().forward(x)

    def forward_fp(self, x):
        self.inputs.append(x.detach().clone())
        return super().forward(x), F.conv2d(x, 0.5 * self.weight, self.bias, padding=1)


class IdNetwork(torch.nn.Module):
    """Answers logits -k (x - c)^2 per class c: argmax = round(x) (items carry their class ID as value), and the
    confidence of an ID with one neighbouring class (the last one) is higher than that of an ID with two."""

    def __init__(self, classes: int):
        super().__init__()
        self.classes, self.inputs = classes, []
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        centres = torch.arange(self.classes, dtype=x.dtype).view(1, -1, *[1] * (x.dim() - 2))
        return -2.0 * (x - centres) ** 2 + self.w

    def forward_fp(self, x):
        return self.forward(x), self.forward(x)


def spy_dice(monkeypatch) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Record every (logits, targets, confident) the unlabelled loss is given, in the step's order: the fp stream,
    then strong views 1 and 2."""
    calls = []
    real = unimatch.confident_dice_loss

    def spy(logits, targets, confident):
        calls.append((logits, targets, confident))
        return real(logits, targets, confident)

    monkeypatch.setattr(unimatch, "confident_dice_loss", spy)
    return calls


def dice_by_definition(logits, targets, keep, smooth=1e-5):
    """1 - mean over classes c of (2 sum_k p_c g_c + s) / (sum_k p_c^2 + sum_k g_c^2 + s), k the kept voxels."""
    p = logits.softmax(1)
    losses = []
    for c in range(logits.shape[1]):
        pc, gc = p[:, c][keep], (targets == c).float()[keep]
        losses.append(1 - (2 * (pc * gc).sum() + smooth) / ((pc * pc).sum() + (gc * gc).sum() + smooth))
    return torch.stack(losses).mean()


def test_loss_is_the_releases_formula_from_its_parts_and_pseudo_labels_carry_no_gradient(monkeypatch):
    """L = (L_s + 0.5 L_fp + 0.25 L_s1 + 0.25 L_s2) / 2 with the strong views, partners and boxes fixed here; the
    gradient is the formula's with the weak logits held constant (pseudo-labels and confidences are targets)."""
    scales = iter([2.0, -1.0])  # view 1 = 2 u_w, view 2 = -u_w: two different 'strong' views
    monkeypatch.setattr(unimatch, "strong_view", lambda x: next(scales) * x)
    monkeypatch.setattr(unimatch, "cutmix_partners", lambda n: torch.tensor([1, 2, 0]))
    box = torch.zeros(3, 8, 8, dtype=torch.bool)
    box[:, 2:5, 1:6] = True
    monkeypatch.setattr(unimatch, "cutmix_box", lambda shape, p: box[0])
    calls = spy_dice(monkeypatch)
    torch.manual_seed(0)
    tau = 0.5
    method = UniMatch(unimatch_args(conf_thresh=tau), TinyFp)
    net = method.trained["student"]
    images, labels = torch.randn(5, 1, 8, 8), torch.randint(0, 3, (5, 8, 8))
    out = method.step({"student": net}, images, labels, slice(0, 2), iteration=0)
    for _, targets, confident in calls:
        assert not targets.requires_grad and not confident.requires_grad

    u = images[2:]
    weak = net(images)[2:].detach()  # the weak prediction, a constant
    c_w, y_w = weak.softmax(1).max(1)
    assert 0 < (c_w >= tau).float().mean() < 1  # the threshold keeps some voxels, not all
    partner = torch.tensor([1, 2, 0])
    targets = torch.where(box, y_w[partner], y_w)
    keep = torch.where(box, c_w[partner], c_w) >= tau
    s1 = torch.where(box[:, None], 2 * u[partner], 2 * u)
    s2 = torch.where(box[:, None], -u[partner], -u)
    perturbed = F.conv2d(images, 0.5 * net.weight, net.bias, padding=1)[2:]
    l_s = supervised_loss(net(images)[:2], labels[:2])[0]
    l_fp = dice_by_definition(perturbed, y_w, c_w >= tau)
    q_s1, q_s2 = net(torch.cat([s1, s2])).chunk(2)
    l_s1, l_s2 = dice_by_definition(q_s1, targets, keep), dice_by_definition(q_s2, targets, keep)
    expected = (l_s + 0.5 * l_fp + 0.25 * l_s1 + 0.25 * l_s2) / 2
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    for name, value in [("loss_x", l_s), ("loss_fp", l_fp), ("loss_s1", l_s1), ("loss_s2", l_s2)]:
        assert out.scalars[f"loss/{name}"].item() == pytest.approx(value.item(), rel=1e-6)
    assert float(out.scalars["unimatch/mask_ratio"]) == pytest.approx(float((c_w >= tau).float().mean()))
    got = torch.autograd.grad(out.loss, [net.weight, net.bias])
    want = torch.autograd.grad(expected, [net.weight, net.bias])
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-7)


def test_confidence_mask_is_exactly_the_threshold_on_the_weak_max_softmax(monkeypatch):
    calls = spy_dice(monkeypatch)
    torch.manual_seed(1)
    net = TinyFp()
    images = torch.randn(4, 1, 8, 8)
    weak = net(images)[2:].detach()  # the weak prediction: the unlabelled items of the batch's forward
    confidence = weak.softmax(1).amax(1)
    tau = float(confidence.flatten()[7])  # one voxel sits exactly on tau: kept (>=)
    method = UniMatch(unimatch_args(conf_thresh=tau), lambda: net)
    method.step({"student": net}, images, torch.zeros(4, 8, 8, dtype=torch.long), slice(0, 2), iteration=0)
    fp_logits, fp_targets, fp_confident = calls[0]  # the fp stream: the weak items' own pseudo-labels
    assert torch.equal(fp_confident, confidence >= tau) and fp_confident.flatten()[7]
    assert 0 < fp_confident.float().mean() < 1
    assert torch.equal(fp_targets, weak.argmax(1))


@pytest.mark.parametrize("tau", [0.0, 0.85])
def test_cutmix_moves_an_image_region_with_its_pseudo_label_and_confidence(monkeypatch, tau):
    """Unlabelled items hold their ID (3, 4, 5) everywhere; the network's pseudo-label of a voxel is its value, and
    only ID 5 (the last class: confidence 0.88, the others 0.79) is confident at tau 0.85. Each strong view's every
    pixel must be scored against its own ID, and be confident where (and only where) it shows ID 5."""
    calls = spy_dice(monkeypatch)
    net = IdNetwork(6)
    images = torch.cat([torch.full((1, 1, 16, 16), float(v)) for v in (1, 2, 3, 4, 5)])
    labels = torch.cat([torch.full((1, 16, 16), v) for v in (1, 2, 0, 0, 0)])
    method = UniMatch(unimatch_args(num_classes=6, cutmix_p=1.0, conf_thresh=tau), lambda: net)
    torch.manual_seed(0)
    method.step({"student": net}, images, labels, slice(0, 2), iteration=0)
    strong = net.inputs[-1][:, 0]  # [view 1 of items 3, 4, 5; view 2 of them]
    assert strong.shape[0] == 6
    # Intensity augmentation keeps a constant item constant (up to the blur kernel's rounding): its ID stays readable.
    torch.testing.assert_close(strong, strong.round())
    strong = strong.round()
    for view, (_, targets, confident) in zip(strong.chunk(2), calls[1:]):
        assert torch.equal(targets.float(), view)  # each pixel's target is the ID of the image it shows
        assert torch.equal(confident, view == 5 if tau else torch.ones_like(confident))
        for item, own in zip(view, (3.0, 4.0, 5.0)):
            values = set(torch.unique(item).tolist())
            assert own in values and len(values) == 2  # a box of exactly one other item (cutmix_p = 1)


def test_the_two_strong_views_differ():
    torch.manual_seed(2)
    net = TinyFp()
    method = UniMatch(unimatch_args(), lambda: net)
    images = torch.randn(4, 1, 16, 16)
    for _ in range(3):
        method.step({"student": net}, images, torch.zeros(4, 16, 16, dtype=torch.long), slice(0, 2), iteration=0)
        view_1, view_2 = net.inputs[-1].chunk(2)
        assert view_1.shape == view_2.shape == (2, 1, 16, 16) and not torch.equal(view_1, view_2)


def test_pseudo_label_accuracy_on_the_labelled_items_is_the_weak_argmax_against_the_truth():
    net = IdNetwork(6)
    images = torch.cat([torch.full((1, 1, 8, 8), float(v)) for v in (1, 2, 3, 4)])
    labels = torch.cat([torch.full((1, 8, 8), 1), torch.full((1, 8, 8), 0), torch.zeros(2, 8, 8, dtype=torch.long)])
    out = UniMatch(unimatch_args(num_classes=6), lambda: net).step({"student": net}, images, labels, slice(0, 2), 0)
    assert float(out.scalars["unimatch/pseudo_label_accuracy_labelled"]) == 0.5  # item 1 right, item 2 wrong


def test_flags_that_cannot_train_are_refused(monkeypatch):
    args = unimatch_args(batch_size=3, labeled_bs=2)
    with pytest.raises(DataError, match="2\\+ unlabelled items"):
        UniMatch.check_args(args)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(DataError, match="single-process only"):
        UniMatch.check_args(unimatch_args())
    assert METHODS["unimatch"] is UniMatch


FLAGS = ["--patch_size", *SMALL_PATCH, "--device", "cpu", "--batch_size", "3", "--labeled_bs", "1", "--labelnum",
         "4", "--num_workers", "0", "--save_every", "1"]  # fmt: skip


def train(root, model_dir, exp, *extra):
    parser = training.training_parser("", exp, UniMatch)
    args = parser.parse_args(["--root_path", str(root), "--model_dir", str(model_dir), "--exp", exp, *FLAGS, *extra])
    return training.train(args, UniMatch)


def test_train_then_resume_is_bit_identical(synthetic_root, tmp_path):
    states = []
    for iterations in (1, 2):  # one run, resumed once
        run = train(synthetic_root, tmp_path, "parts", "--max_iterations", str(iterations), "--resume", "auto")
        states.append(load_checkpoint(run / training.STATE_FILE)["networks"]["student"])
    whole = train(synthetic_root, tmp_path, "whole", "--max_iterations", "2")
    final = load_checkpoint(whole / training.STATE_FILE)["networks"]["student"]
    assert any(not torch.equal(states[0][k], states[1][k]) for k in final if final[k].is_floating_point())
    assert all(torch.equal(final[k], states[-1][k]) for k in final)


def test_train_unimatch_script_then_test_and_predict_on_volumes(synthetic_root, tmp_path):
    run = train_test_predict("train_unimatch.py", synthetic_root, tmp_path, "u", *FLAGS)
    log = (run / "log.txt").read_text()
    assert "loss_fp" in log and "mask_ratio" in log


def test_train_unimatch_script_then_test_and_predict_on_frames_with_the_unet(tmp_path):
    root = make_synthetic_echo(tmp_path / "echo", n_train=8, n_test=2, labelled=3, shape=(64, 64), seed=4)
    model = tmp_path / "model"
    trained = run_script("train_unimatch.py", "--root_path", root, "--model_dir", model, "--exp", "f", "--net",
                         "unet", "--patch_size", "48", "48", "--labelnum", "3", "--batch_size", "4", "--labeled_bs",
                         "2", "--max_iterations", "2", "--save_every", "2", "--num_workers", "0", "--device", "cpu",
                         cwd=tmp_path)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    tested = run_script("test_LA.py", "--root_path", root, "--model_dir", model, "--model", "f", "--iteration", "2",
                        "--stride_xy", "16", "--device", "cpu", cwd=tmp_path)  # fmt: skip
    assert tested.returncode == 0, tested.stderr
    assert (model / "f" / "test_iter_2" / "metrics.csv").is_file()
    predicted = run_script("predict.py", "--checkpoint", model / "f" / "iter_2.pth", "--root_path", root,
                           "--split", "test", "--mc_passes", "2", "--stride_xy", "16", "--device", "cpu",
                           cwd=tmp_path)  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr


def test_the_fp_forward_runs_under_bf16_like_the_plain_forward():
    """--precision bf16: the loop hands the step a Bf16Forward; forward_fp must run under the same autocast and give
    float32 logits (close to float32's)."""
    from utils.precision import Bf16Forward

    torch.manual_seed(3)
    net, x = TinyFp(), torch.randn(2, 1, 8, 8)
    clean, perturbed = Bf16Forward(net, "cpu").forward_fp(x)
    assert clean.dtype == perturbed.dtype == torch.float32
    torch.testing.assert_close(clean, net(x), rtol=0.05, atol=0.05)
    assert not torch.equal(clean, net(x))  # computed in bf16, not silently in float32
    torch.testing.assert_close(perturbed, F.conv2d(x, 0.5 * net.weight, net.bias, padding=1), rtol=0.05, atol=0.05)
