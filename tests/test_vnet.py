import pytest
import torch

from networks.vnet import VNet, count_parameters


def test_parameter_count_matches_the_published_vnet():
    assert count_parameters(VNet(n_channels=1, n_classes=2)) == 9_448_866


def test_output_has_one_channel_per_class_and_the_input_size():
    net = VNet(n_classes=3).eval()
    assert net(torch.randn(2, 1, 32, 48, 16)).shape == (2, 3, 32, 48, 16)


@pytest.mark.parametrize("shape", [(1, 1, 40, 32, 32), (1, 1, 32, 32, 20)])
def test_sides_not_multiple_of_16_give_a_clear_error(shape):
    with pytest.raises(ValueError, match="multiple of 16"):
        VNet()(torch.zeros(shape))


def test_dropout_samples_differ_in_training_and_vanish_at_test():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 32, 32, 32)
    net = VNet(has_dropout=True).train()
    assert not torch.allclose(net(x), net(x))  # two MC-dropout samples
    net.eval()
    assert torch.equal(net(x), net(x))
    plain = VNet(has_dropout=False).train()
    assert torch.allclose(plain(x), plain(x))  # no dropout: batch-statistics BN is deterministic


def test_state_dict_names_follow_the_uamt_release():
    keys = set(VNet().state_dict())
    for key in [
        "block_one.conv.0.weight",
        "block_one.conv.1.running_mean",
        "block_one_dw.conv.0.weight",
        "block_five_up.conv.0.weight",
        "block_nine.conv.0.bias",
        "out_conv.weight",
    ]:
        assert key in keys
