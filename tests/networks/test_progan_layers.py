"""ProGAN layers: equalised learning rate, pixel norm, minibatch standard deviation."""

from __future__ import annotations

import math

import pytest
import torch

from gan_research.errors import ConfigError
from gan_research.networks.progan_layers import (
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
    PixelNorm,
    minibatch_group_size,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_equalized_linear_stores_unit_normal_weights_and_scales_at_runtime() -> None:
    layer = EqualizedLinear(256, 128)
    assert abs(layer.weight.std().item() - 1.0) < 0.02
    assert abs(layer.weight.mean().item()) < 0.02
    assert layer.weight_scale == pytest.approx(math.sqrt(2.0 / 256))
    assert torch.count_nonzero(layer.bias) == 0
    x = torch.randn(3, 256)
    expected = x @ (layer.weight * math.sqrt(2.0 / 256)).T
    torch.testing.assert_close(layer(x), expected)


def test_equalized_conv_runtime_scale_uses_fan_in() -> None:
    conv = EqualizedConv2d(8, 4, 3, padding=1)
    assert conv.weight_scale == pytest.approx(math.sqrt(2.0 / (8 * 9)))
    assert abs(conv.weight.std().item() - 1.0) < 0.1
    x = torch.randn(2, 8, 5, 5)
    expected = torch.nn.functional.conv2d(x, conv.weight * conv.weight_scale, conv.bias, padding=1)
    torch.testing.assert_close(conv(x), expected)
    assert conv(x).shape == (2, 4, 5, 5)


def test_output_variance_follows_the_gain_convention() -> None:
    """gain 1 keeps unit variance; the default gain sqrt(2) gives variance 2, i.e. a
    unit second moment after ReLU (He et al. 2015) — the official ProGAN convention."""
    x = torch.randn(4096, 512)
    linear_gain1 = EqualizedLinear(512, 512, gain=1.0)
    assert linear_gain1(x).var().item() == pytest.approx(1.0, rel=0.1)
    linear_he = EqualizedLinear(512, 512)
    y = linear_he(x)
    assert y.var().item() == pytest.approx(2.0, rel=0.1)
    assert torch.relu(y).pow(2).mean().item() == pytest.approx(1.0, rel=0.1)

    maps = torch.randn(64, 64, 8, 8)
    conv = EqualizedConv2d(64, 64, 3, padding=1, gain=1.0)
    assert conv(maps)[:, :, 1:-1, 1:-1].var().item() == pytest.approx(1.0, rel=0.1)


def test_lr_multiplier_keeps_effective_init_and_slows_the_layer() -> None:
    slow = EqualizedLinear(64, 32, lr_multiplier=0.01, bias_init=1.0)
    # The stored weight is N(0, 1/lr_mul²), the effective one N(0, 1) * He constant.
    effective = slow.weight * slow.weight_scale
    assert effective.std().item() == pytest.approx(math.sqrt(2.0 / 64), rel=0.1)
    torch.testing.assert_close(slow.bias * slow.lr_multiplier, torch.ones(32))
    # A unit step on the stored parameter moves the effective weight by lr_mul * c.
    assert slow.weight_scale == pytest.approx(0.01 * math.sqrt(2.0 / 64))
    with pytest.raises(ConfigError, match="lr_multiplier"):
        EqualizedLinear(4, 4, lr_multiplier=0.0)


def test_pixel_norm_gives_unit_mean_square_per_pixel() -> None:
    norm = PixelNorm()
    maps = torch.randn(3, 16, 4, 4) * 7.0 + 2.0
    out = norm(maps)
    torch.testing.assert_close(out.pow(2).mean(dim=1), torch.ones(3, 4, 4))
    latent = torch.randn(5, 32) * 0.1
    torch.testing.assert_close(norm(latent).pow(2).mean(dim=1), torch.ones(5))
    # Scale invariant: the direction of each pixel's feature vector is unchanged.
    torch.testing.assert_close(norm(maps * 3.0), out, rtol=1e-5, atol=1e-5)


def test_minibatch_stddev_appends_group_std_channel() -> None:
    layer = MinibatchStdDev(group_size=4)
    x = torch.randn(8, 6, 4, 4)
    out = layer(x)
    assert out.shape == (8, 7, 4, 4)
    torch.testing.assert_close(out[:, :6], x)
    # Strided groups: sample i is in group i mod 2 (N/G = 2 groups of 4).
    for group in range(2):
        members = x[group::2]
        expected = (members.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        channel = out[group::2, 6]
        torch.testing.assert_close(channel, expected.expand_as(channel))


def test_minibatch_stddev_multiple_channels() -> None:
    layer = MinibatchStdDev(group_size=2, num_channels=2)
    x = torch.randn(4, 6, 3, 3)
    out = layer(x)
    assert out.shape == (4, 8, 3, 3)
    members = x[0::2]  # group 0 = samples 0 and 2
    for slot, channels in enumerate((slice(0, 3), slice(3, 6))):
        part = members[:, channels]
        expected = (part.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        torch.testing.assert_close(out[0, 6 + slot], expected.expand(3, 3))
    with pytest.raises(ConfigError, match="num_channels"):
        MinibatchStdDev(num_channels=4)(torch.randn(4, 6, 2, 2))


@pytest.mark.parametrize(
    ("batch", "group", "expected"),
    [(8, 4, 4), (6, 4, 3), (2, 4, 2), (7, 4, 7), (1, 4, 1), (9, 4, 3), (10, 4, 2)],
)
def test_group_size_rule_for_uneven_batches(batch: int, group: int, expected: int) -> None:
    assert minibatch_group_size(batch, group) == expected
    out = MinibatchStdDev(group_size=group)(torch.randn(batch, 2, 2, 2))
    assert out.shape == (batch, 3, 2, 2)
    assert torch.isfinite(out).all()


def test_minibatch_stddev_of_identical_samples_is_about_zero() -> None:
    x = torch.randn(1, 3, 2, 2).repeat(4, 1, 1, 1)
    out = MinibatchStdDev()(x)
    assert out[:, 3].max().item() < 1e-3


def test_bad_sizes_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="group_size"):
        MinibatchStdDev(group_size=0)
    with pytest.raises(ConfigError, match="in_features"):
        EqualizedLinear(0, 3)
    with pytest.raises(ConfigError, match="kernel_size"):
        EqualizedConv2d(3, 3, 0)
