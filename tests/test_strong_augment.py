"""UniMatch's strong augmentations (dataloaders/strong_augment.py), each alone on a made-up batch, against what it is
defined to do."""

import math

import pytest
import torch

from dataloaders import strong_augment as sa


def ramp(n: int = 2, shape: tuple[int, ...] = (8, 8), low: float = -1.0, high: float = 3.0) -> torch.Tensor:
    """n items (1 channel) whose values run evenly from `low` to `high`: a known range and mean."""
    values = torch.linspace(low, high, math.prod(shape))
    return values.reshape(1, 1, *shape).repeat(n, 1, *[1] * len(shape))


def test_brightness_scales_the_distance_from_each_items_minimum_and_clips_at_its_maximum():
    x = ramp()  # range [-1, 3]
    out = sa.brightness(x, torch.tensor([0.5, 1.5]))
    torch.testing.assert_close(out[0], -1 + 0.5 * (x[0] + 1))  # darker: nothing clipped
    torch.testing.assert_close(out[1], (-1 + 1.5 * (x[1] + 1)).clamp(max=3.0))  # brighter: the top saturates
    assert out[1].max() == 3.0 and (out[1] == 3.0).sum() > 1
    torch.testing.assert_close(sa.brightness(x, torch.ones(2)), x)


def test_contrast_scales_the_distance_from_each_items_mean_within_its_range():
    x = ramp()  # mean 1
    out = sa.contrast(x, torch.tensor([0.5, 0.0]))
    torch.testing.assert_close(out[0], 1 + 0.5 * (x[0] - 1))
    assert out[0].mean().item() == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(out[1], torch.ones_like(x[1]))  # factor 0: the grey mean
    strong = sa.contrast(x, torch.tensor([2.0, 2.0]))
    assert strong.min() == -1.0 and strong.max() == 3.0  # clipped to the item's own range


def test_gamma_is_the_power_curve_of_the_item_rescaled_to_its_range():
    x = ramp(1, low=2.0, high=4.0)
    out = sa.gamma(x, torch.tensor([2.0]))
    torch.testing.assert_close(out, 2.0 + 2.0 * ((x - 2.0) / 2.0) ** 2)
    assert out.min() == 2.0 and out.max() == 4.0  # the ends stay
    torch.testing.assert_close(sa.gamma(x, torch.tensor([1.0])), x)
    constant = torch.full((1, 1, 4, 4, 4), 5.0)
    assert torch.equal(sa.gamma(constant, torch.tensor([0.7])), constant)


def test_gaussian_noise_adds_zero_mean_noise_of_each_items_sigma():
    torch.manual_seed(0)
    x = torch.zeros(2, 1, 64, 64, 16)
    out = sa.gaussian_noise(x, torch.tensor([0.0, 0.1]))
    assert torch.equal(out[0], x[0])
    assert out[1].std().item() == pytest.approx(0.1, rel=0.02) and abs(out[1].mean().item()) < 2e-3


@pytest.mark.parametrize("shape", [(31, 31), (21, 21, 21)], ids=["frame", "volume"])
def test_gaussian_blur_spreads_an_impulse_into_a_normalised_gaussian_of_that_sigma(shape):
    x = torch.zeros(2, 1, *shape)
    centre = tuple(s // 2 for s in shape)
    x[(slice(None), 0, *centre)] = 1.0
    out = sa.gaussian_blur(x, torch.tensor([1.5, 0.0]))
    assert torch.equal(out[1], x[1])  # sigma 0: unchanged
    blurred = out[0, 0].double()
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert blurred[centre].item() == blurred.max().item()
    for axis in range(len(shape)):  # the spread along every axis is sigma
        profile = blurred.sum([d for d in range(len(shape)) if d != axis])
        offsets = torch.arange(shape[axis], dtype=torch.float64) - centre[axis]
        assert math.sqrt((profile * offsets**2).sum().item()) == pytest.approx(1.5, rel=0.02)
        torch.testing.assert_close(profile, profile.flip(0))  # symmetric
    constant = torch.full((1, 1, *shape), 2.0)
    torch.testing.assert_close(sa.gaussian_blur(constant, torch.tensor([2.0])), constant)  # edges extended


def test_colour_jitter_changes_chosen_items_only_and_keeps_each_within_its_range():
    torch.manual_seed(0)
    x = torch.randn(6, 1, 16, 16) * torch.arange(1, 7).view(6, 1, 1, 1)
    assert torch.equal(sa.colour_jitter(x, p=0.0), x)
    out = sa.colour_jitter(x, p=1.0)
    for item, original in zip(out, x):
        assert not torch.equal(item, original)
        assert item.min() >= original.min() and item.max() <= original.max()


def test_strong_views_of_frames_stay_in_range_and_constant_items_stay_constant():
    torch.manual_seed(1)
    x = torch.cat([torch.randn(3, 1, 32, 32), torch.full((1, 1, 32, 32), 4.0)])
    out = sa.strong_view(x)
    assert out.shape == x.shape
    for item, original in zip(out, x):  # jitter clips to the range, blur averages: nothing leaves it
        assert item.min() >= original.min() - 1e-5 and item.max() <= original.max() + 1e-5
    torch.testing.assert_close(out[-1], x[-1])


def test_two_strong_views_differ_and_a_seed_repeats_them():
    for seed in range(5):
        torch.manual_seed(seed)
        x = torch.randn(2, 1, 16, 16, 16)
        first, second = sa.strong_view(x), sa.strong_view(x)
        assert not torch.equal(first, second)
        torch.manual_seed(seed)
        torch.randn(2, 1, 16, 16, 16)
        assert torch.equal(sa.strong_view(x), first)  # torch's generator only: a resumed run draws the same


def box_sides(mask: torch.Tensor) -> list[int]:
    """The sides of the single box in `mask`, checked to be a filled box."""
    where = mask.nonzero()
    low, high = where.min(0).values, where.max(0).values
    sides = (high - low + 1).tolist()
    assert mask.sum().item() == math.prod(sides)  # one filled box
    return sides


def test_cutmix_box_2d_is_the_releases_box():
    torch.manual_seed(0)
    assert not sa.cutmix_box((64, 64), p=0.0).any()
    boxes = [sa.cutmix_box((256, 256), p=0.5) for _ in range(400)]
    present = [b for b in boxes if b.any()]
    assert 160 < len(present) < 240  # p = 0.5
    for mask in present:
        h, w = box_sides(mask)
        share = h * w / 256**2
        assert 0.02 * 0.9 <= share <= 0.4  # int() shortens the sides a little
        assert 0.3 * 0.9 <= h / w <= (1 / 0.3) * 1.1


def test_cutmix_box_3d_fits_in_the_patch_with_its_share():
    torch.manual_seed(0)
    for _ in range(100):
        mask = sa.cutmix_box((48, 48, 32), p=1.0)
        sides = box_sides(mask)
        share = math.prod(sides) / (48 * 48 * 32)
        assert 0.02 * 0.8 <= share <= 0.4
