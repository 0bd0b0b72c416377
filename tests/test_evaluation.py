import itertools
import math

import numpy as np
import pytest
import torch
from medpy.metric import binary
from scipy import ndimage
from scipy.spatial import cKDTree
from torch import nn

from evaluation.metrics import METRICS, case_metrics, class_metrics, metric_columns, summarize
from evaluation.testing import resolve_blend
from evaluation.windows import gaussian_weights, sliding_window_probability, whole_volume_probability, window_starts
from networks.vnet import VNet


class ConstantNet(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, x):
        return self.logits.reshape(1, -1, *[1] * (x.dim() - 2)).expand(x.shape[0], -1, *x.shape[2:])


def test_window_starts_end_at_the_edge():
    assert window_starts(100, 32, 18) == [0, 18, 36, 54, 68]
    assert window_starts(32, 32, 18) == [0]
    assert window_starts(88, 80, 4) == [0, 4, 8]


@pytest.mark.parametrize("shape", [(50, 41, 37), (20, 70, 16), (32, 32, 32)])
def test_constant_network_gives_its_constant_everywhere(shape):
    logits = [0.3, 1.2, -0.5]
    image = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    probability = sliding_window_probability(ConstantNet(logits), image, (32, 32, 16), 7, 5, num_classes=3)
    assert probability.shape == (3, *shape)
    expected = torch.softmax(torch.tensor(logits), 0).reshape(3, 1, 1, 1)
    assert torch.allclose(probability, expected.expand_as(probability), atol=1e-6)  # no voxel left uncovered


class RecordingNet(ConstantNet):
    """A constant network that keeps the spatial shape of every window it sees."""

    def __init__(self, logits):
        super().__init__(logits)
        self.seen = []

    def forward(self, x):
        self.seen += [tuple(x.shape[2:])] * x.shape[0]
        return super().forward(x)


@pytest.mark.parametrize(("shape", "patch"), [((70, 90), (32, 48)), ((40, 36, 30), (32, 16, 24))])
def test_patch_sides_follow_the_arrays_axes(shape, patch):
    """--patch_size gives one side per array axis, in order: for a 2D frame rows then columns (32 rows x 48 columns
    here, as --resize and --center_crop count), for a volume its stored axes."""
    net = RecordingNet([0.0, 1.0])
    sliding_window_probability(net, np.zeros(shape, np.float32), patch, 16, 8, 2)
    counts = [len(window_starts(s, p, st)) for s, p, st in zip(shape, patch, (16, 16, 8))]
    assert set(net.seen) == {patch} and len(net.seen) == math.prod(counts)


def reference_sliding_window(net, image, patch, stride_xy, stride_z, num_classes):
    """An independent slow version: the UA-MT release's loop, window by window with numpy accumulation."""
    w, h, d = image.shape
    pad = [max(p - s, 0) for s, p in zip(image.shape, patch)]
    image = np.pad(image, [(p // 2, p - p // 2) for p in pad])
    ww, hh, dd = image.shape
    score = np.zeros((num_classes, ww, hh, dd))
    count = np.zeros((ww, hh, dd))
    for x in range(math.ceil((ww - patch[0]) / stride_xy) + 1):
        xs = min(stride_xy * x, ww - patch[0])
        for y in range(math.ceil((hh - patch[1]) / stride_xy) + 1):
            ys = min(stride_xy * y, hh - patch[1])
            for z in range(math.ceil((dd - patch[2]) / stride_z) + 1):
                zs = min(stride_z * z, dd - patch[2])
                window = image[xs : xs + patch[0], ys : ys + patch[1], zs : zs + patch[2]]
                with torch.no_grad():
                    y_ = torch.softmax(net(torch.from_numpy(window[None, None].copy())), 1)[0].numpy()
                score[:, xs : xs + patch[0], ys : ys + patch[1], zs : zs + patch[2]] += y_
                count[xs : xs + patch[0], ys : ys + patch[1], zs : zs + patch[2]] += 1
    score /= count
    p0 = [p // 2 for p in pad]
    return score[:, p0[0] : p0[0] + w, p0[1] : p0[1] + h, p0[2] : p0[2] + d]


@pytest.mark.parametrize("shape", [(41, 36, 22), (24, 40, 20)])
@pytest.mark.parametrize("windows_per_batch", [1, 3])
def test_sliding_window_matches_the_windowwise_reference(shape, windows_per_batch):
    torch.manual_seed(0)
    net = VNet(n_filters=4, has_dropout=False).eval()
    image = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    ours = sliding_window_probability(net, image, (32, 32, 16), 9, 6, 2, windows_per_batch=windows_per_batch)
    theirs = reference_sliding_window(net, image, (32, 32, 16), 9, 6, 2)
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5)


@pytest.mark.parametrize("shape", [(50, 41), (20, 70), (32, 32)])
def test_constant_network_gives_its_constant_on_every_pixel_of_a_2d_image(shape):
    logits = [0.3, 1.2, -0.5]
    image = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    probability = sliding_window_probability(ConstantNet(logits), image, (32, 16), 7, 99, num_classes=3)
    assert probability.shape == (3, *shape)
    expected = torch.softmax(torch.tensor(logits), 0).reshape(3, 1, 1)
    assert torch.allclose(probability, expected.expand_as(probability), atol=1e-6)


def reference_sliding_window_2d(net, image, patch, stride, num_classes):
    """The same slow loop in the plane: every (x, y) window, the last clamped to the edge, numpy accumulation."""
    w, h = image.shape
    pad = [max(p - s, 0) for s, p in zip(image.shape, patch)]
    image = np.pad(image, [(p // 2, p - p // 2) for p in pad])
    ww, hh = image.shape
    score = np.zeros((num_classes, ww, hh))
    count = np.zeros((ww, hh))
    for x in range(math.ceil((ww - patch[0]) / stride) + 1):
        xs = min(stride * x, ww - patch[0])
        for y in range(math.ceil((hh - patch[1]) / stride) + 1):
            ys = min(stride * y, hh - patch[1])
            window = image[xs : xs + patch[0], ys : ys + patch[1]]
            with torch.no_grad():
                y_ = torch.softmax(net(torch.from_numpy(window[None, None].copy())), 1)[0].numpy()
            score[:, xs : xs + patch[0], ys : ys + patch[1]] += y_
            count[xs : xs + patch[0], ys : ys + patch[1]] += 1
    score /= count
    return score[:, pad[0] // 2 : pad[0] // 2 + w, pad[1] // 2 : pad[1] // 2 + h]


@pytest.mark.parametrize("shape", [(71, 50), (24, 40)])  # the second is padded on the first side
@pytest.mark.parametrize("windows_per_batch", [1, 4])
def test_2d_sliding_window_matches_the_windowwise_reference(shape, windows_per_batch):
    torch.manual_seed(0)
    net = VNet(n_classes=3, n_filters=4, has_dropout=False, dimensions=2).eval()
    image = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    ours = sliding_window_probability(net, image, (32, 32), 9, 6, 3, windows_per_batch=windows_per_batch)
    theirs = reference_sliding_window_2d(net, image, (32, 32), 9, 3)
    assert ours.shape == (3, *shape)
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5)


# --- the Gaussian blend: an option (2D default in the scripts); the uniform average stays the release's -----------


def reference_weighted_window(net, image, patch, strides, num_classes, sigma_scale=1 / 8):
    """Window by window in numpy: each window's softmax times exp(-d²/2σ²) per axis (σ = side/8, d from the window's
    centre), summed and divided by the summed weights. No padding: the image is at least the patch."""
    grids = np.meshgrid(*[np.arange(p) - (p - 1) / 2 for p in patch], indexing="ij")
    weight = np.exp(-0.5 * sum((g / (p * sigma_scale)) ** 2 for g, p in zip(grids, patch)))
    score = np.zeros((num_classes, *image.shape))
    total = np.zeros(image.shape)
    starts = [[min(st * i, s - p) for i in range(math.ceil((s - p) / st) + 1)]
              for s, p, st in zip(image.shape, patch, strides)]  # fmt: skip
    for corner in itertools.product(*starts):
        window = tuple(slice(c, c + p) for c, p in zip(corner, patch))
        with torch.no_grad():
            y = torch.softmax(net(torch.from_numpy(image[window][None, None].copy())), 1)[0].numpy()
        score[(slice(None), *window)] += y * weight
        total[window] += weight
    return score / total


@pytest.mark.parametrize(("shape", "patch", "strides"), [((71, 50), (32, 32), (9, 9)), ((41, 36, 22), (32, 32, 16),
                                                         (9, 9, 6))])  # fmt: skip
def test_gaussian_blend_matches_the_weighted_windowwise_reference(shape, patch, strides):
    torch.manual_seed(0)
    net = VNet(n_classes=3, n_filters=4, has_dropout=False, dimensions=len(shape)).eval()
    image = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    ours = sliding_window_probability(net, image, patch, strides[0], strides[-1], 3, blend="gaussian")
    np.testing.assert_allclose(ours.numpy(), reference_weighted_window(net, image, patch, strides, 3), atol=1e-5)
    uniform = sliding_window_probability(net, image, patch, strides[0], strides[-1], 3)
    assert not torch.allclose(ours, uniform, atol=1e-4)  # an option that changes something, not the default
    weights = gaussian_weights(patch)
    assert weights.shape == patch and weights.max() == 1.0 and weights.min() > 0


def test_gaussian_blend_keeps_a_constant_network_constant():
    probability = sliding_window_probability(ConstantNet([0.3, 1.2]), np.zeros((50, 41)), (32, 16), 7, 0, 2,
                                             blend="gaussian")  # fmt: skip
    expected = torch.softmax(torch.tensor([0.3, 1.2]), 0).reshape(2, 1, 1)
    assert torch.allclose(probability, expected.expand_as(probability), atol=1e-6)


class RampNet(nn.Module):
    """Foreground logit rising from -3 to 3 down each window's rows, whatever the input: a network whose output
    depends on the position in the window, as real ones do near window borders (less context, zero padding)."""

    def forward(self, x):
        ramp = torch.linspace(-3, 3, x.shape[2]).reshape(1, -1, *[1] * (x.dim() - 3)).expand(x.shape[0], *x.shape[2:])
        return torch.stack([torch.zeros_like(ramp), ramp], 1)


def test_gaussian_blend_removes_the_seams_at_window_borders():
    """The uniform average jumps where a window starts or ends (the seams of the uncertainty panel); the Gaussian
    blend changes no faster there than a window's own output does."""
    image = np.zeros((100, 40), np.float32)
    jumps = {}
    for blend in ("uniform", "gaussian"):
        foreground = sliding_window_probability(RampNet(), image, (32, 32), 12, 0, 2, blend=blend)[1]
        jumps[blend] = foreground.diff(dim=0).abs().max().item()
    own_step = torch.sigmoid(torch.linspace(-3, 3, 32)).diff().max().item()  # the steepest step inside a window
    assert jumps["uniform"] > 4 * own_step and jumps["gaussian"] < 1.5 * own_step


def test_blend_auto_is_uniform_for_volumes_and_gaussian_for_2d():
    assert resolve_blend("auto", 3) == "uniform"  # LA: the release's average, numbers unchanged
    assert resolve_blend("auto", 2) == "gaussian"
    assert resolve_blend("uniform", 2) == "uniform" and resolve_blend("gaussian", 3) == "gaussian"
    with pytest.raises(ValueError, match="blend 'mean'"):
        sliding_window_probability(ConstantNet([0.0, 1.0]), np.zeros((40, 40), np.float32), (32, 32), 8, 4, 2,
                                   blend="mean")  # fmt: skip


def test_sliding_window_refuses_a_patch_of_another_dimensionality():
    with pytest.raises(ValueError, match="one per axis"):
        sliding_window_probability(ConstantNet([0.0, 1.0]), np.zeros((40, 40), np.float32), (32, 32, 16), 8, 4, 2)


@pytest.mark.parametrize("shape", [(50, 41), (32, 48)])
def test_2d_whole_image_pass_is_the_network_on_the_zero_padded_image(shape):
    torch.manual_seed(0)
    image = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    net = VNet(n_classes=3, n_filters=4, has_dropout=False, dimensions=2).eval()
    probability = whole_volume_probability(net, image)
    pads = [(-s % 16) // 2 for s in shape]
    padded = np.zeros([s + (-s % 16) for s in shape], np.float32)
    padded[tuple(slice(p, p + s) for p, s in zip(pads, shape))] = image
    with torch.no_grad():
        full = torch.softmax(net(torch.from_numpy(padded)[None, None]), 1)[0]
    assert probability.shape == (3, *shape)
    assert torch.allclose(probability, full[(slice(None), *(slice(p, p + s) for p, s in zip(pads, shape)))], atol=1e-5)


# --- metrics against their definitions ---------------------------------------------------------------------------


def _surface(mask):
    return mask & ~ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1))


def _directed_distances(a, b):
    """Distance from each surface voxel of a to the nearest surface voxel of b (brute force with a KD-tree)."""
    return cKDTree(np.argwhere(_surface(b))).query(np.argwhere(_surface(a)))[0]


def _blob_mask(rng, shape=(30, 28, 20)):
    return ndimage.gaussian_filter(rng.standard_normal(shape), 2.5) > rng.uniform(0.0, 0.08)


@pytest.mark.parametrize("seed", range(4))
def test_metrics_match_their_definitions(seed):
    rng = np.random.default_rng(seed)
    prediction, truth = _blob_mask(rng), _blob_mask(rng)
    m = case_metrics(prediction, truth)
    tp = np.sum(prediction & truth)
    assert m["dice"] == pytest.approx(2 * tp / (prediction.sum() + truth.sum()))
    assert m["jaccard"] == pytest.approx(tp / np.sum(prediction | truth))
    assert m["precision"] == pytest.approx(tp / prediction.sum())
    assert m["recall"] == pytest.approx(tp / truth.sum())
    forward, backward = _directed_distances(prediction, truth), _directed_distances(truth, prediction)
    assert m["hd95"] == pytest.approx(np.percentile(np.hstack([forward, backward]), 95))
    assert m["asd"] == pytest.approx(forward.mean())


def test_empty_prediction_scores_zero_and_leaves_distances_undefined():
    truth = np.zeros((10, 10, 10), bool)
    truth[3:6, 3:6, 3:6] = True
    empty = case_metrics(np.zeros_like(truth), truth)
    assert empty["dice"] == 0.0 and empty["jaccard"] == 0.0 and empty["recall"] == 0.0
    assert math.isnan(empty["hd95"]) and math.isnan(empty["asd"]) and math.isnan(empty["precision"])
    perfect = case_metrics(truth, truth)
    assert perfect["dice"] == 1.0 and perfect["hd95"] == 0.0
    means, undefined = summarize([empty, perfect])
    assert means["dice"] == 0.5
    assert means["hd95"] == 0.0 and undefined["hd95"] == 1 and undefined["precision"] == 1 and undefined["dice"] == 0


@pytest.mark.parametrize("shape", [(50, 41, 37), (32, 48, 16)])
def test_whole_volume_pass_is_the_network_on_the_zero_padded_volume(shape):
    torch.manual_seed(0)
    image = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    pointwise = nn.Conv3d(1, 2, 1)  # its output at a voxel depends on that voxel only: padding must not matter
    expected = torch.softmax(pointwise(torch.from_numpy(image)[None, None]), 1)[0].detach()
    assert torch.allclose(whole_volume_probability(pointwise, image), expected, atol=1e-6)
    net = VNet(n_classes=2, has_dropout=False).eval()
    probability = whole_volume_probability(net, image)
    assert probability.shape == (2, *shape)
    # Centred padding to multiples of 16, by hand.
    pads = [(-s % 16) // 2 for s in shape]
    padded = np.zeros([s + (-s % 16) for s in shape], np.float32)
    padded[tuple(slice(p, p + s) for p, s in zip(pads, shape))] = image
    with torch.no_grad():
        full = torch.softmax(net(torch.from_numpy(padded)[None, None]), 1)[0]
    assert torch.allclose(probability, full[(slice(None), *(slice(p, p + s) for p, s in zip(pads, shape)))], atol=1e-5)


# --- per-class metrics for K classes, against medpy directly --------------------------------------------------------


def _label_map(rng, shape, num_classes):
    """Smooth noise cut into K-1 nested foreground classes: class c where the field exceeds threshold c."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    field /= np.abs(field).max()
    thresholds = np.linspace(0.05, 0.4, num_classes - 1)
    return np.sum([field > t for t in thresholds], axis=0).astype(np.uint8)


def _medpy(prediction, truth):
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "dice": binary.dc(prediction, truth),
            "jaccard": binary.jc(prediction, truth),
            "precision": binary.precision(prediction, truth),
            "recall": binary.recall(prediction, truth),
            "hd95": binary.hd95(prediction, truth),
            "asd": binary.asd(prediction, truth),
        }


@pytest.mark.parametrize("shape", [(48, 40), (30, 28, 20)])
@pytest.mark.parametrize("seed", range(2))
def test_three_class_metrics_are_medpys_per_class_and_their_mean(shape, seed):
    rng = np.random.default_rng(seed)
    prediction, truth = _label_map(rng, shape, 3), _label_map(rng, shape, 3)
    for labels in (prediction, truth):
        assert set(np.unique(labels)) == {0, 1, 2}  # every class present: every metric defined
    m = class_metrics(prediction, truth, 3)
    assert set(m) == set(metric_columns(3))
    per_class = {c: _medpy(prediction == c, truth == c) for c in (1, 2)}
    for name in METRICS:
        for c in (1, 2):
            assert m[f"{name}_{c}"] == pytest.approx(per_class[c][name])
        assert m[name] == pytest.approx((per_class[1][name] + per_class[2][name]) / 2)


def test_mean_over_classes_leaves_out_a_class_where_a_metric_is_undefined():
    rng = np.random.default_rng(5)
    truth = _label_map(rng, (30, 28, 20), 3)
    prediction = np.where(truth == 2, 1, truth).astype(np.uint8)  # class 2 never predicted
    m = class_metrics(prediction, truth, 3)
    class_1 = _medpy(prediction == 1, truth == 1)
    assert m["dice_2"] == 0.0 and m["recall_2"] == 0.0  # an empty prediction scores 0 (case_metrics' rule)
    assert math.isnan(m["hd95_2"]) and math.isnan(m["asd_2"]) and math.isnan(m["precision_2"])
    assert m["dice"] == pytest.approx(class_1["dice"] / 2)  # defined for both classes: averaged with the 0
    for name in ("hd95", "asd", "precision"):  # undefined for class 2: the mean is class 1's alone
        assert m[name] == pytest.approx(class_1[name])
    all_missing = class_metrics(np.zeros_like(truth), truth, 3)
    assert math.isnan(all_missing["hd95"]) and all_missing["dice"] == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_two_classes_give_exactly_the_binary_metrics_under_the_papers_columns(seed):
    rng = np.random.default_rng(seed)
    prediction, truth = _blob_mask(rng).astype(np.uint8), _blob_mask(rng).astype(np.uint8)
    assert metric_columns(2) == ("case", "dice", "jaccard", "hd95", "asd", "precision", "recall")[1:]
    m = class_metrics(prediction, truth, 2)
    binary_metrics = case_metrics(prediction == 1, truth == 1)
    assert {k: m[k] for k in METRICS} == binary_metrics  # bit for bit: a mean of one value is that value
    empty = class_metrics(np.zeros_like(truth), truth, 2)
    assert math.isnan(empty["hd95"]) and empty["dice"] == 0.0


def test_k_class_columns_are_the_means_then_each_class():
    assert metric_columns(3) == (*METRICS, *(f"{m}_1" for m in METRICS), *(f"{m}_2" for m in METRICS))
