import pytest
import torch
from torch import nn

from networks.vnet import VNet, count_parameters


def expected_parameter_count(dimensions, n_channels=1, n_classes=2, f=16):
    """From the design alone: convs (k^d cin cout weights + cout biases), each followed by BatchNorm (2 cout)."""

    def conv(cin, cout, k, bn=True):
        return k**dimensions * cin * cout + cout + (2 * cout if bn else 0)

    encoder = [(1, n_channels, f), (2, 2 * f, 2 * f), (3, 4 * f, 4 * f), (3, 8 * f, 8 * f), (3, 16 * f, 16 * f)]
    decoder = [(3, 8 * f, 8 * f), (3, 4 * f, 4 * f), (2, 2 * f, 2 * f), (1, f, f)]
    total = 0
    for n_convs, cin, cout in encoder + decoder:  # 3x3(x3) convs of a stage; the first takes cin
        total += conv(cin, cout, 3) + (n_convs - 1) * conv(cout, cout, 3)
    widths = [f, 2 * f, 4 * f, 8 * f, 16 * f]
    total += sum(conv(a, b, 2) for a, b in zip(widths, widths[1:]))  # 2x2(x2) stride-2 downsampling
    total += sum(conv(b, a, 2) for a, b in zip(widths, widths[1:]))  # 2x2(x2) stride-2 transposed convs
    return total + conv(f, n_classes, 1, bn=False)  # 1x1(x1) output conv, no BatchNorm


def test_parameter_count_matches_the_published_vnet():
    assert count_parameters(VNet(n_channels=1, n_classes=2)) == 9_448_866


def test_parameter_count_formula_gives_the_published_count_in_3d_and_matches_2d_and_k_classes():
    assert expected_parameter_count(3) == 9_448_866  # the formula is right where the number is known
    assert count_parameters(VNet(dimensions=2)) == expected_parameter_count(2)
    assert count_parameters(VNet(n_classes=4, dimensions=2)) == expected_parameter_count(2, n_classes=4)
    assert count_parameters(VNet(n_channels=2, n_classes=3)) == expected_parameter_count(3, 2, 3)


def test_output_has_one_channel_per_class_and_the_input_size():
    net = VNet(n_classes=3).eval()
    assert net(torch.randn(2, 1, 32, 48, 16)).shape == (2, 3, 32, 48, 16)


def test_2d_network_gives_one_channel_per_class_and_the_image_size():
    net = VNet(n_classes=3, dimensions=2).eval()
    assert net(torch.randn(2, 1, 32, 48)).shape == (2, 3, 32, 48)
    layer_types = {type(m) for m in net.modules()}
    assert {nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.Dropout2d} <= layer_types
    assert not layer_types & {nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d, nn.Dropout3d}


@pytest.mark.parametrize(("dimensions", "shape"), [(2, (1, 1, 32, 32, 32)), (3, (1, 1, 32, 32)), (2, (1, 1, 40, 32))])
def test_input_of_the_wrong_dimensionality_or_side_gives_a_clear_error(dimensions, shape):
    with pytest.raises(ValueError, match=rf"{dimensions} spatial sides, each a multiple of 16"):
        VNet(dimensions=dimensions)(torch.zeros(shape))


@pytest.mark.parametrize("shape", [(1, 1, 40, 32, 32), (1, 1, 32, 32, 20)])
def test_sides_not_multiple_of_16_give_a_clear_error(shape):
    with pytest.raises(ValueError, match="multiple of 16"):
        VNet()(torch.zeros(shape))


@pytest.mark.parametrize(("dimensions", "shape"), [(3, (2, 1, 32, 32, 32)), (2, (2, 1, 64, 48))])
def test_dropout_samples_differ_in_training_and_vanish_at_test(dimensions, shape):
    torch.manual_seed(0)
    x = torch.randn(shape)
    net = VNet(has_dropout=True, dimensions=dimensions).train()
    assert not torch.allclose(net(x), net(x))  # two MC-dropout samples
    net.eval()
    assert torch.equal(net(x), net(x))
    plain = VNet(has_dropout=False, dimensions=dimensions).train()
    assert torch.allclose(plain(x), plain(x))  # no dropout: batch-statistics BN is deterministic


def test_2d_dropout_drops_whole_feature_maps_in_training_only():
    net = VNet(dimensions=2)
    features = torch.ones(4, 32, 8, 8)
    torch.manual_seed(0)
    dropped = net.dropout.train()(features)
    per_map = dropped.flatten(2)
    assert set(per_map.unique().tolist()) == {0.0, 2.0}  # p = 0.5: kept maps scaled by 1 / (1 - p)
    assert torch.all(per_map.amin(2) == per_map.amax(2))  # each map entirely kept or entirely dropped
    assert torch.equal(net.dropout.eval()(features), features)


@pytest.mark.parametrize("dimensions", [3, 2])
def test_state_dict_names_follow_the_uamt_release(dimensions):
    keys = set(VNet(dimensions=dimensions).state_dict())
    for key in [
        "block_one.conv.0.weight",
        "block_one.conv.1.running_mean",
        "block_one_dw.conv.0.weight",
        "block_five_up.conv.0.weight",
        "block_nine.conv.0.bias",
        "out_conv.weight",
    ]:
        assert key in keys


def test_2d_and_3d_networks_have_the_same_module_names():
    assert list(VNet(dimensions=2).state_dict()) == list(VNet(dimensions=3).state_dict())


def forward_before_the_encode_decode_split(net: VNet, x: torch.Tensor) -> torch.Tensor:
    """VNet.forward as it was before it was split into _encode / _decode (copied from that commit, check omitted;
    its `_maybe_dropout(x)` written out as it then was, before the dropout sites became a choice)."""

    def maybe_dropout(features: torch.Tensor) -> torch.Tensor:
        return net.dropout(features) if net.has_dropout else features

    x1 = net.block_one(x)
    x2 = net.block_two(net.block_one_dw(x1))
    x3 = net.block_three(net.block_two_dw(x2))
    x4 = net.block_four(net.block_three_dw(x3))
    x5 = maybe_dropout(net.block_five(net.block_four_dw(x4)))

    x6 = net.block_six(net.block_five_up(x5) + x4)
    x7 = net.block_seven(net.block_six_up(x6) + x3)
    x8 = net.block_eight(net.block_seven_up(x7) + x2)
    x9 = maybe_dropout(net.block_nine(net.block_eight_up(x8) + x1))
    return net.out_conv(x9)


@pytest.mark.parametrize(("dimensions", "shape"), [(3, (2, 1, 32, 32, 16)), (2, (2, 1, 64, 48))])
@pytest.mark.parametrize("train", [True, False])
def test_forward_is_bit_identical_to_the_forward_before_the_split(dimensions, shape, train):
    torch.manual_seed(0)
    net = VNet(dimensions=dimensions).train(train)
    x = torch.randn(shape)
    with torch.no_grad():
        torch.manual_seed(1)
        now = net(x)
        after_now = torch.rand(1)  # the same RNG draws: dropout masks, then what follows
        torch.manual_seed(1)
        before = forward_before_the_encode_decode_split(net, x)
        after_before = torch.rand(1)
    assert torch.equal(now, before)
    assert torch.equal(after_now, after_before)


RECORDED_WEIGHTED_SUM = 557562.9829398774


def position_weighted_sum(net: nn.Module) -> float:
    """Sum of every state_dict tensor, weighted by its position: changes if any tensor or the order of draws does."""
    return float(sum((i + 1) * t.double().sum() for i, t in enumerate(net.state_dict().values())))


def test_construction_still_draws_the_same_initial_weights():
    """Recorded from the seed-0 3D network before forward_fp and _encode / _decode were added."""
    torch.manual_seed(0)
    net = VNet()
    assert len(net.state_dict()) == 205
    assert position_weighted_sum(net) == pytest.approx(RECORDED_WEIGHTED_SUM, rel=0, abs=1e-6)
