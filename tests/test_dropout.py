"""The V-Net's dropout choices (networks/vnet.py DropoutSpec; --dropout_rate/_where/_kind): the default is the
release's network draw for draw, another choice puts its dropout where it says, and a run's choice travels through
run.json to the test-time network."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from evaluation.testing import load_network
from networks import build_network
from networks.vnet import DEFAULT_DROPOUT, DropoutSpec, VNet
from training.options import check_args, training_parser
from utils.errors import DataError


def release_forward(net: VNet, x: torch.Tensor) -> torch.Tensor:
    """The UA-MT release's V-Net forward written out from its blocks: channel dropout p = 0.5 on the bottleneck and
    on block_nine's output, drawn in that order."""
    drop = F.dropout2d if x.dim() == 4 else F.dropout3d
    x1 = net.block_one(x)
    x2 = net.block_two(net.block_one_dw(x1))
    x3 = net.block_three(net.block_two_dw(x2))
    x4 = net.block_four(net.block_three_dw(x3))
    x5 = drop(net.block_five(net.block_four_dw(x4)), p=0.5, training=True)
    x6 = net.block_six(net.block_five_up(x5) + x4)
    x7 = net.block_seven(net.block_six_up(x6) + x3)
    x8 = net.block_eight(net.block_seven_up(x7) + x2)
    x9 = drop(net.block_nine(net.block_eight_up(x8) + x1), p=0.5, training=True)
    return net.out_conv(x9)


@pytest.mark.parametrize(("dimensions", "shape"), [(2, (3, 1, 32, 48)), (3, (2, 1, 16, 16, 32))])
def test_the_default_is_the_release_network_draw_for_draw(dimensions, shape):
    torch.manual_seed(5)
    net = VNet(dimensions=dimensions).train()
    x = torch.randn(shape)
    torch.manual_seed(11)
    ours = net(x)
    torch.manual_seed(11)
    release = release_forward(net, x)
    assert torch.equal(ours, release)
    assert net.dropout_spec == DropoutSpec(0.5, "bottleneck+decoder", "channel")


@pytest.mark.parametrize("dimensions", [2, 3])
def test_every_choice_keeps_the_state_dict_keys_and_shapes_and_the_seeded_weights(dimensions):
    torch.manual_seed(0)
    default = VNet(dimensions=dimensions).state_dict()
    torch.manual_seed(0)
    other = VNet(dimensions=dimensions, dropout=DropoutSpec(0.1, "decoder", "element")).state_dict()
    assert list(default) == list(other)
    assert all(torch.equal(default[k], other[k]) for k in default)  # the dropout choice draws no weights


def dropout_inputs_and_outputs(net: VNet, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """site -> (the features before the site, the features the next layer reads), captured by hooks."""
    seen = {}
    net.block_five.register_forward_hook(lambda m, i, o: seen.__setitem__("bottleneck_in", o))
    net.block_five_up.register_forward_pre_hook(lambda m, i: seen.__setitem__("bottleneck_out", i[0]))
    net.block_nine.register_forward_hook(lambda m, i, o: seen.__setitem__("decoder_in", o))
    net.out_conv.register_forward_pre_hook(lambda m, i: seen.__setitem__("decoder_out", i[0]))
    net(x)
    return {s: (seen[f"{s}_in"], seen[f"{s}_out"]) for s in ("bottleneck", "decoder")}


def kept_scale(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """after / before where a value was kept (0 where dropped); `before` is a ReLU output, so positive values only."""
    positive = before > 0
    return (after[positive] / before[positive]).round(decimals=5).unique()  # x / (1 - p) / x: float rounding


@pytest.mark.parametrize(
    ("where", "dropped"),
    [("bottleneck", {"bottleneck"}), ("decoder", {"decoder"}), ("bottleneck+decoder", {"bottleneck", "decoder"})],
)
def test_dropout_acts_at_the_sites_it_names_only(where, dropped):
    torch.manual_seed(1)
    net = VNet(dimensions=2, dropout=DropoutSpec(0.5, where, "channel")).train()
    for site, (before, after) in dropout_inputs_and_outputs(net, torch.randn(2, 1, 32, 32)).items():
        if site in dropped:
            assert set(kept_scale(before, after).tolist()) == {0.0, 2.0}  # dropped, or kept x 1 / (1 - 0.5)
        else:
            assert torch.equal(before, after)


def test_channel_dropout_zeroes_whole_maps_and_element_dropout_single_values_at_its_rate():
    torch.manual_seed(2)
    x = torch.randn(4, 1, 64, 64)
    channel = VNet(dimensions=2, dropout=DropoutSpec(0.2, "decoder", "channel")).train()
    before, after = dropout_inputs_and_outputs(channel, x)["decoder"]
    assert isinstance(channel.dropout, nn.Dropout2d) and channel.dropout.p == 0.2
    assert torch.allclose(kept_scale(before, after), torch.tensor([0.0, 1 / 0.8]))
    positive = before > 0
    dropped_maps = ((after == 0) & positive).flatten(2).any(2)  # maps that lost a value
    assert torch.equal(dropped_maps, (after == 0).flatten(2).all(2))  # ... lost all of it, and no other did
    assert 0 < dropped_maps.float().mean() < 0.5  # 64 maps at p = 0.2

    element = VNet(dimensions=2, dropout=DropoutSpec(0.2, "decoder", "element")).train()
    before, after = dropout_inputs_and_outputs(element, x)["decoder"]
    assert type(element.dropout) is nn.Dropout and element.dropout.p == 0.2
    positive = before > 0
    share = float((after[positive] == 0).float().mean())
    assert abs(share - 0.2) < 0.01  # ~260,000 positive values: the rate within 1 point
    dropped_maps = ((after == 0) & positive).flatten(2).any(2)
    whole_maps = ((after == 0) | ~positive).flatten(2).all(2)
    assert dropped_maps.all() and not whole_maps.any()  # every map loses some values, none loses all
    assert torch.allclose(after[positive & (after != 0)], before[positive & (after != 0)] / 0.8)


def test_no_dropout_anywhere_without_has_dropout_and_in_eval_mode():
    x = torch.randn(2, 1, 32, 32)
    for spec in (DEFAULT_DROPOUT, DropoutSpec(0.2, "decoder", "element")):
        net = VNet(dimensions=2, has_dropout=False, dropout=spec).train()
        assert all(torch.equal(a, b) for a, b in dropout_inputs_and_outputs(net, x).values())
        net = VNet(dimensions=2, dropout=spec).eval()
        assert all(torch.equal(a, b) for a, b in dropout_inputs_and_outputs(net, x).values())


def test_impossible_choices_and_the_unet_are_refused():
    for bad in ({"rate": 0.0}, {"rate": 1.0}, {"where": "encoder"}, {"kind": "spatial"}):
        with pytest.raises(ValueError):
            DropoutSpec(**bad)
    with pytest.raises(ValueError, match="V-Net's dropout"):
        build_network("unet", 2, 2, dropout=DropoutSpec(0.1))
    assert build_network("unet", 2, 2) is not None  # the default passes


def parse(*flags):
    from methods.supervised import Supervised

    args = training_parser("t", "t", Supervised).parse_args(["--patch_size", "32", "32", *flags])
    return args, Supervised


def test_training_flags_default_to_the_release_and_refuse_a_unet_with_another_dropout():
    args, method = parse()
    assert (args.dropout_rate, args.dropout_where, args.dropout_kind) == (0.5, "bottleneck+decoder", "channel")
    args, method = parse("--net", "unet", "--dropout_kind", "element")
    with pytest.raises(DataError, match="V-Net's dropout"):
        check_args(args, method)
    args, method = parse("--dropout_rate", "1.5")
    with pytest.raises(DataError, match="dropout rate"):
        check_args(args, method)


@pytest.mark.parametrize(
    ("run_args", "expected"),
    [
        (
            {"dropout_rate": 0.1, "dropout_where": "decoder", "dropout_kind": "element"},
            DropoutSpec(0.1, "decoder", "element"),
        ),
        ({}, DEFAULT_DROPOUT),  # a run.json from before the flags: the release's dropout
        (None, DEFAULT_DROPOUT),  # no run.json at all
    ],
)
def test_the_test_time_network_has_the_run_json_dropout(tmp_path, run_args, expected):
    net = VNet(dimensions=2, n_classes=3)
    torch.save(net.state_dict(), tmp_path / "iter_1.pth")
    if run_args is not None:
        (tmp_path / "run.json").write_text(json.dumps({"args": {"net": "vnet", **run_args}}))
    loaded, classes = load_network(tmp_path / "iter_1.pth", "cpu", has_dropout=True)
    assert classes == 3 and loaded.dropout_spec == expected and loaded.has_dropout
    assert loaded.dropout.p == expected.rate
