import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial import cKDTree
from torch import nn

from networks.vnet import VNet
from utils.evaluation import (
    case_metrics,
    sliding_window_probability,
    summarize,
    whole_volume_probability,
    window_starts,
)


class ConstantNet(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, x):
        return self.logits.reshape(1, -1, 1, 1, 1).expand(x.shape[0], -1, *x.shape[2:])


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
