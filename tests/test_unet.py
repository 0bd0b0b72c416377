"""The 2D U-Net (networks/unet.py), UniMatch's feature perturbation (forward_fp) of both networks, the registry."""

import pytest
import torch
from torch import nn

from networks import NETWORKS, build_network
from networks.unet import UNet
from networks.vnet import VNet, count_parameters

DROPOUT_TYPES = (nn.Dropout, nn.Dropout2d, nn.Dropout3d)


def expected_unet_parameter_count(n_channels: int = 1, n_classes: int = 2) -> int:
    """From the design alone: 16-32-64-128-256 levels of two 3x3 convs with BatchNorm (2 cout each); each decoder
    level a 1x1 conv to the skip's width (no BatchNorm) and two 3x3 convs on the concatenation; a 3x3 output conv."""

    def conv(cin, cout, k, bn=True):
        return k * k * cin * cout + cout + (2 * cout if bn else 0)

    widths = [16, 32, 64, 128, 256]
    total = 0
    for cin, cout in zip([n_channels, *widths[:-1]], widths):  # encoder
        total += conv(cin, cout, 3) + conv(cout, cout, 3)
    for skip, deep in zip(widths, widths[1:]):  # decoder
        total += conv(deep, skip, 1, bn=False) + conv(2 * skip, skip, 3) + conv(skip, skip, 3)
    return total + conv(widths[0], n_classes, 3, bn=False)


def test_parameter_count_is_the_ssl4mis_unets():
    """1,813,474 parameters for 1 channel and 2 classes: the ~1.8 M of SSL4MIS's ACDC U-Net."""
    assert count_parameters(UNet()) == expected_unet_parameter_count() == 1_813_474
    assert 1_700_000 <= count_parameters(UNet()) <= 1_900_000
    assert count_parameters(UNet(n_channels=3, n_classes=4)) == expected_unet_parameter_count(3, 4)


def test_output_has_one_channel_per_class_and_the_image_size():
    net = UNet(n_classes=4).eval()
    assert net(torch.randn(2, 1, 64, 96)).shape == (2, 4, 64, 96)
    assert UNet(n_channels=3).eval()(torch.randn(1, 3, 32, 16)).shape == (1, 2, 32, 16)


@pytest.mark.parametrize("dimensions", [3, 1])
def test_volumes_are_refused_with_a_pointer_to_the_vnet(dimensions):
    with pytest.raises(ValueError, match=r"UNet is a 2D network.*use --net vnet for volumes"):
        UNet(dimensions=dimensions)


@pytest.mark.parametrize("shape", [(1, 1, 40, 32), (1, 1, 64, 72), (1, 1, 32, 32, 32), (1, 32, 32)])
def test_sides_not_multiple_of_16_or_not_2d_give_a_clear_error(shape):
    with pytest.raises(ValueError, match="2 spatial sides, each a multiple of 16"):
        UNet()(torch.zeros(shape))
    with pytest.raises(ValueError, match="multiple of 16"):
        UNet().forward_fp(torch.zeros(shape))


def test_encoder_dropout_rates_are_ssl4mis_and_has_dropout_false_removes_them():
    rates = [m.p for m in UNet().modules() if isinstance(m, DROPOUT_TYPES)]
    assert rates == [0.05, 0.1, 0.2, 0.3, 0.5]
    assert not [m for m in UNet(has_dropout=False).modules() if isinstance(m, DROPOUT_TYPES)]
    # A checkpoint of the training network loads into the test-time one.
    assert list(UNet().state_dict()) == list(UNet(has_dropout=False).state_dict())
    UNet(has_dropout=False).load_state_dict(UNet().state_dict())


def test_dropout_samples_differ_in_training_and_vanish_at_test():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 64, 48)
    net = UNet().train()
    assert not torch.allclose(net(x), net(x))  # two MC-dropout samples
    net.eval()
    assert torch.equal(net(x), net(x))
    plain = UNet(has_dropout=False).train()
    assert torch.equal(plain(x), plain(x))  # no dropout: batch-statistics BN is deterministic


# forward_fp: (clean logits, logits with Dropout2d/3d(0.5) on the decoder's inputs), one decoder pass.

FP_CASES = [
    pytest.param(lambda: UNet(), (2, 1, 64, 48), id="unet"),
    pytest.param(lambda: VNet(dimensions=2), (2, 1, 64, 48), id="vnet2d"),
    pytest.param(lambda: VNet(dimensions=3), (2, 1, 32, 32, 16), id="vnet3d"),
]


def record_decoder_inputs(net: nn.Module) -> list[list[torch.Tensor]]:
    """Wrap net._decode so every call's features are kept; returns the list the calls append to."""
    calls: list[list[torch.Tensor]] = []
    decode = net._decode

    def recording(features):
        calls.append([f.clone() for f in features])
        return decode(features)

    net._decode = recording
    return calls


@pytest.mark.parametrize(("make", "shape"), FP_CASES)
def test_forward_fp_clean_logits_are_forward_and_perturbed_ones_differ_in_eval_mode(make, shape):
    torch.manual_seed(0)
    net, x = make().eval(), torch.randn(shape)
    with torch.no_grad():
        clean, perturbed = net.forward_fp(x)
        plain = net(x)
    # In eval mode BatchNorm uses running statistics, so decoding the clean half beside the dropped one changes nothing
    # (exact on CPU; batch-size dependent kernels elsewhere could differ in the last bits).
    assert torch.equal(clean, plain)
    assert perturbed.shape == clean.shape == (shape[0], 2, *shape[2:])
    assert not torch.allclose(perturbed, clean)  # the perturbation is on in eval mode too, as in the release


@pytest.mark.parametrize(("make", "shape"), FP_CASES)
def test_forward_fp_drops_whole_channels_of_every_feature_the_decoder_reads(make, shape):
    torch.manual_seed(0)
    net, x = make().eval(), torch.randn(shape)
    with torch.no_grad():
        reference = net._encode(x)  # eval mode: the encoder is deterministic
        calls = record_decoder_inputs(net)
        _, perturbed = net.forward_fp(x)
    assert len(calls) == 1  # one decoder pass over clean and dropped features together
    (features,) = calls
    assert len(features) == len(reference) == 5  # the four skips and the bottleneck
    b = shape[0]
    dropped_maps = nonzero_maps = 0
    for got, ref in zip(features, reference):
        assert got.shape == (2 * b, *ref.shape[1:])
        assert torch.equal(got[:b], ref)
        # Channel dropout, p = 0.5: each (item, channel) map is zeroed whole or kept and scaled by 1 / (1 - p) = 2.
        maps, ref_maps = got[b:].flatten(2), ref.flatten(2)
        zeroed = (maps == 0).all(2)
        kept = (maps == 2 * ref_maps).all(2)
        assert torch.all(zeroed | kept)
        live = (ref_maps != 0).any(2)
        assert (zeroed & live).any() and (kept & live).any()  # every feature level is perturbed, not wiped out
        dropped_maps += int((zeroed & live).sum())
        nonzero_maps += int(live.sum())
    assert 0.4 < dropped_maps / nonzero_maps < 0.6  # ~1000 maps: p = 0.5 within 6 standard deviations
    with torch.no_grad():
        assert torch.equal(perturbed, net._decode([f[b:] for f in features]))


@pytest.mark.parametrize(("make", "shape"), FP_CASES)
def test_forward_fp_batchnorm_sees_both_halves_in_train_mode(make, shape):
    torch.manual_seed(0)
    net, x = make().train(), torch.randn(shape)
    for m in net.modules():  # isolate the BatchNorm effect from the network's own MC dropout
        if isinstance(m, DROPOUT_TYPES):
            m.p = 0.0
    with torch.no_grad():
        clean, _ = net.forward_fp(x)
        plain = net(x)
    assert clean.shape == plain.shape
    assert not torch.allclose(clean, plain)  # batch statistics over clean and dropped features differ from clean's


def test_forward_fp_adds_nothing_to_the_state_dict():
    for make in (UNet, VNet):
        net = make(dimensions=2)
        keys = list(net.state_dict())
        net.forward_fp(torch.randn(2, 1, 32, 32))
        assert list(net.state_dict()) == keys


# The registry.


def test_build_network_gives_the_named_class_with_the_requested_shape():
    assert NETWORKS == {"vnet": VNet, "unet": UNet}
    vnet = build_network("vnet", n_classes=3, dimensions=3, n_channels=2)
    assert type(vnet) is VNet and vnet.dimensions == 3 and vnet.has_dropout
    assert vnet.block_one.conv[0].in_channels == 2 and vnet.out_conv.out_channels == 3
    unet = build_network("unet", n_classes=4, dimensions=2, has_dropout=False)
    assert type(unet) is UNet and not unet.has_dropout
    assert unet.out_conv.out_channels == 4 and unet.in_conv.conv[0].in_channels == 1
    assert not [m for m in unet.modules() if isinstance(m, DROPOUT_TYPES)]


def test_build_network_refuses_an_unknown_name_and_a_3d_unet():
    with pytest.raises(ValueError, match=r"^unknown network 'resnet'; choose one of: vnet, unet$"):
        build_network("resnet", n_classes=2, dimensions=2)
    with pytest.raises(ValueError, match="use --net vnet for volumes"):
        build_network("unet", n_classes=2, dimensions=3)


def test_count_parameters_is_importable_from_the_package_and_the_module():
    from networks import count_parameters as from_package

    assert from_package is count_parameters
