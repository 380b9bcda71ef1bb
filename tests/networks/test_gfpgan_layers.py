"""GFP-GAN's channel-split SFT (eq. 4, gan_research.networks.gfpgan_layers.CSSFT): the identity part
passes bitwise, the rest is α ⊙ F + β from the condition nets, conditions of another size are
resized, gradients reach the condition nets, and the split and config errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gan_research.errors import ConfigError
from gan_research.networks.gfpgan_layers import CSSFT


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def inputs(channels: int = 8, condition_channels: int = 6, size: int = 8, condition_size: int | None = None):
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, channels, size, size, generator=g)
    cs = condition_size or size
    condition = torch.randn(2, condition_channels, cs, cs, generator=g)
    return features, condition


def by_hand(net: torch.nn.Sequential, condition: torch.Tensor) -> torch.Tensor:
    """conv3x3 -> LeakyReLU(0.2) -> conv3x3 with the net's weights (the reference's condition nets)."""
    first, _, last = net
    hidden = F.leaky_relu(F.conv2d(condition, first.weight, first.bias, padding=1), 0.2)
    return F.conv2d(hidden, last.weight, last.bias, padding=1)


def test_the_first_half_passes_through_and_the_second_is_alpha_f_plus_beta():
    torch.manual_seed(0)
    sft = CSSFT(8, 6)  # split=0.5: the reference's sft_half=True
    assert (sft.identity_channels, sft.modulated_channels) == (4, 4)
    features, condition = inputs()
    out = sft(features, condition)
    assert out.shape == features.shape
    assert torch.equal(out[:, :4], features[:, :4])
    alpha, beta = by_hand(sft.scale, condition), by_hand(sft.shift, condition)
    assert alpha.shape == beta.shape == (2, 4, 8, 8)
    torch.testing.assert_close(out[:, 4:], alpha * features[:, 4:] + beta)


@pytest.mark.parametrize(
    ("channels", "split", "identity"),
    [(8, 1.0, 0), (8, 0.25, 6), (5, 0.5, 2), (10, 0.9, 1), (10, 0.1, 9), (100, 0.07, 93), (8, 0.01, 7)],
)
def test_split_is_the_modulated_fraction(channels, split, identity):
    sft = CSSFT(channels, 3, split=split)
    assert sft.identity_channels == identity and sft.modulated_channels == channels - identity
    features, condition = inputs(channels, 3)
    out = sft(features, condition)
    assert torch.equal(out[:, :identity], features[:, :identity])
    alpha, beta = sft.modulation(condition, features.shape[-2:])
    torch.testing.assert_close(out[:, identity:], alpha * features[:, identity:] + beta)


def test_alpha_starts_near_one():
    # The reference's condition_scale ends with bias_init_val=1, condition_shift with 0: the
    # prior's features start nearly unchanged.
    sft = CSSFT(8, 6)
    assert torch.equal(sft.scale[-1].bias, torch.ones(4)) and torch.equal(sft.shift[-1].bias, torch.zeros(4))


@pytest.mark.parametrize("condition_size", [4, 16])
def test_a_condition_of_another_size_is_resized_to_the_features(condition_size):
    torch.manual_seed(0)
    sft = CSSFT(8, 6)
    features, condition = inputs(size=8, condition_size=condition_size)
    resized = F.interpolate(
        condition, size=(8, 8), mode="bilinear", align_corners=False, antialias=condition_size > 8
    )
    out = sft(features, condition)
    assert out.shape == features.shape
    torch.testing.assert_close(out, sft(features, resized))


def test_gradients_reach_the_condition_nets_the_condition_and_the_features():
    torch.manual_seed(0)
    sft = CSSFT(8, 6)
    features, condition = inputs(condition_size=4)
    features.requires_grad_(True)
    condition.requires_grad_(True)
    sft(features, condition).square().mean().backward()
    for name, param in sft.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert condition.grad.abs().sum() > 0
    assert features.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channels": 0, "condition_channels": 4}, "channels must be a positive integer"),
        ({"channels": 8, "condition_channels": 0}, "condition_channels must be a positive integer"),
        ({"channels": 8, "condition_channels": 4, "split": 0.0}, r"split must be a number in \(0, 1\]"),
        ({"channels": 8, "condition_channels": 4, "split": 1.5}, r"split must be a number in \(0, 1\]"),
        ({"channels": 8, "condition_channels": 4, "split": True}, r"split must be a number in \(0, 1\]"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        CSSFT(**kwargs)


def test_mismatched_inputs_are_refused():
    sft = CSSFT(8, 6)
    features, condition = inputs()
    with pytest.raises(ValueError, match=r"expected features \(B, 8, H, W\)"):
        sft(features[:, :6], condition)
    with pytest.raises(ValueError, match="expected a condition"):
        sft(features, condition[:1])
