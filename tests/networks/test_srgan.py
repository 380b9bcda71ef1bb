"""SRGAN's networks (Ledig et al. 2017, Figure 4): SRResNet's shapes, sub-pixel blocks and residual
blocks, the VGG-style discriminator, the paper-size parameter counts (written out by hand from
the paper's layer list, not read from our code) and the config errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gan_research.errors import ConfigError
from gan_research.networks.srgan import (
    SCALES,
    ResidualBlock,
    SRGANDiscriminator,
    SRResNetGenerator,
    SubPixelUpsample,
    check_scale,
)


@pytest.fixture(autouse=True)
def _one_thread():
    # Two threads on a shared two-core machine make these tiny convolutions 10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout  # weights + bias


def bn(c: int) -> int:
    return 2 * c  # affine weight + bias


def prelu(c: int) -> int:
    return c  # one slope per channel


def dense(i: int, o: int) -> int:
    return i * o + o


# -- the generator ------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [2, 4, 8])
def test_generator_upsamples_by_scale_with_log2_subpixel_blocks(scale: int) -> None:
    g = SRResNetGenerator(channels=3, image_size=32, scale=scale, ngf=8, num_blocks=2)
    low = 32 // scale
    assert g.input_shape == (3, low, low) and g.output_shape == (3, 32, 32)
    out = g(torch.rand(2, 3, low, low) * 2 - 1)
    assert out.shape == (2, 3, 32, 32)
    blocks = [m for m in g.modules() if isinstance(m, SubPixelUpsample)]
    assert len(blocks) == int(math.log2(scale))
    shuffles = [m for m in g.modules() if isinstance(m, nn.PixelShuffle)]
    assert len(shuffles) == len(blocks) and all(s.upscale_factor == 2 for s in shuffles)
    assert sum(isinstance(m, ResidualBlock) for m in g.modules()) == 2


def test_grey_generator_keeps_one_channel() -> None:
    g = SRResNetGenerator(channels=1, image_size=32, scale=4, ngf=8, num_blocks=1)
    assert g.input_shape == (1, 8, 8) and g.output_shape == (1, 32, 32)
    assert g(torch.zeros(3, 1, 8, 8)).shape == (3, 1, 32, 32)


def test_pixel_shuffle_places_channels_in_the_2x2_block() -> None:
    # By hand: output channel c, position (2h + i, 2w + j) comes from input channel 4c + 2i + j at (h, w).
    x = torch.arange(2 * 8 * 3 * 3, dtype=torch.float32).view(2, 8, 3, 3)
    y = nn.PixelShuffle(2)(x)
    assert y.shape == (2, 2, 6, 6)
    for b in range(2):
        for c in range(2):
            for h in range(3):
                for w in range(3):
                    for i in range(2):
                        for j in range(2):
                            assert y[b, c, 2 * h + i, 2 * w + j] == x[b, 4 * c + 2 * i + j, h, w]


def test_subpixel_block_is_conv_then_pixel_shuffle_then_prelu() -> None:
    torch.manual_seed(0)
    block = SubPixelUpsample(8)
    conv_layer, _, act = block
    assert isinstance(conv_layer, nn.Conv2d) and conv_layer.kernel_size == (3, 3)
    assert (conv_layer.in_channels, conv_layer.out_channels) == (8, 32)
    assert isinstance(act, nn.PReLU) and act.num_parameters == 8
    with torch.no_grad():
        act.weight.uniform_(0.1, 0.9)  # distinct slopes per channel: a channel mix-up would show
    x = torch.randn(2, 8, 5, 5)
    out = block(x)
    assert out.shape == (2, 8, 10, 10)
    expected = F.prelu(F.pixel_shuffle(conv_layer(x), 2), act.weight)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_residual_block_is_identity_plus_its_body() -> None:
    torch.manual_seed(0)
    block = ResidualBlock(8)
    x = torch.randn(4, 8, 6, 6)
    assert not torch.allclose(block(x), x)
    torch.testing.assert_close(block(x), x + block.body(x), rtol=0, atol=0)
    last_bn = block.body[-1]
    assert isinstance(last_bn, nn.BatchNorm2d)
    with torch.no_grad():
        last_bn.weight.zero_()
        last_bn.bias.zero_()
    torch.testing.assert_close(block(x), x, rtol=0, atol=0)


def test_generator_output_stays_in_the_image_range() -> None:
    torch.manual_seed(0)
    g = SRResNetGenerator(channels=3, image_size=32, scale=4, ngf=8, num_blocks=2)
    with torch.no_grad():
        out = g(torch.randn(4, 3, 8, 8) * 50)  # far outside [-1, 1]: the output must not follow
    assert out.min() >= -1 and out.max() <= 1
    assert out.std() > 0.1  # not a constant image


def test_generator_has_the_long_skip_over_the_residual_trunk() -> None:
    g = SRResNetGenerator(channels=1, image_size=16, scale=2, ngf=8, num_blocks=2)
    # With the trunk's final BN zeroed, the trunk adds nothing: the features are the head's alone.
    with torch.no_grad():
        g.trunk_tail[1].weight.zero_()
        g.trunk_tail[1].bias.zero_()
    x = torch.randn(2, 1, 8, 8)
    expected = g.tail(g.upsample(g.head(x))).tanh()
    torch.testing.assert_close(g(x), expected)


def test_srresnet_has_the_papers_parameter_count() -> None:
    # Figure 4: k9n64s1 + PReLU; 16 x (k3n64s1, BN, PReLU, k3n64s1, BN); k3n64s1 + BN (long skip);
    # 2 x (k3n256s1, PixelShuffle x2, PReLU); k9n3s1.
    expected = (
        conv(3, 64, 9)
        + prelu(64)
        + 16 * (conv(64, 64, 3) + bn(64) + prelu(64) + conv(64, 64, 3) + bn(64))
        + conv(64, 64, 3)
        + bn(64)
        + 2 * (conv(64, 256, 3) + prelu(64))
        + conv(64, 3, 9)
    )
    assert expected == 1_550_659
    g = SRResNetGenerator(channels=3, image_size=96, scale=4, ngf=64, num_blocks=16)
    assert n_params(g) == expected
    assert g.input_shape == (3, 24, 24) and g.output_shape == (3, 96, 96)
    defaults = SRResNetGenerator()
    assert n_params(defaults) == expected


# -- the discriminator --------------------------------------------------------------------------
@pytest.mark.parametrize("size", [32, 96])
def test_discriminator_returns_one_logit_per_image(size: int) -> None:
    d = SRGANDiscriminator(channels=3, image_size=size, ndf=8, dense=16)
    assert d.input_shape == (3, size, size)
    out = d(torch.rand(2, 3, size, size) * 2 - 1)
    assert out.shape == (2, 1)
    # Logits, not probabilities: no sigmoid at the end.
    assert isinstance(d.classifier[-1], nn.Linear)
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())


def test_discriminator_layers_follow_the_paper() -> None:
    d = SRGANDiscriminator(channels=3, image_size=96, ndf=64, dense=1024)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert all(c.kernel_size == (3, 3) for c in convs)
    # Batch norm on all convolutions but the first; LeakyReLU(0.2) everywhere.
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 7
    slopes = {m.negative_slope for m in d.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.2}


def test_discriminator_at_96_px_has_the_papers_parameter_count() -> None:
    # k3n64s1; k3n64s2 ... k3n512s2 each with BN; dense 1024 on the 512 x 6 x 6 map; dense 1.
    expected = (
        conv(3, 64, 3)
        + conv(64, 64, 3)
        + bn(64)
        + conv(64, 128, 3)
        + bn(128)
        + conv(128, 128, 3)
        + bn(128)
        + conv(128, 256, 3)
        + bn(256)
        + conv(256, 256, 3)
        + bn(256)
        + conv(256, 512, 3)
        + bn(512)
        + conv(512, 512, 3)
        + bn(512)
        + dense(512 * 6 * 6, 1024)
        + dense(1024, 1)
    )
    assert expected == 23_565_505
    assert n_params(SRGANDiscriminator(channels=3, image_size=96, ndf=64, dense=1024)) == expected
    assert n_params(SRGANDiscriminator()) == expected


def test_discriminator_spectral_norm_wraps_every_conv_and_linear() -> None:
    d = SRGANDiscriminator(channels=1, image_size=32, ndf=8, dense=16, spectral_norm=True)
    layers = [m for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 10
    assert all(hasattr(m, "parametrizations") and "weight" in m.parametrizations for m in layers)
    assert d(torch.zeros(2, 1, 32, 32)).shape == (2, 1)
    plain = SRGANDiscriminator(channels=1, image_size=32, ndf=8, dense=16)
    assert not any(hasattr(m, "parametrizations") for m in plain.modules())


# -- config errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [3, 16, True, 4.0, "4"])
def test_bad_scale_is_a_config_error_naming_the_valid_scales(scale) -> None:
    with pytest.raises(ConfigError) as info:
        SRResNetGenerator(channels=1, image_size=48, scale=scale, ngf=8, num_blocks=1)
    message = str(info.value)
    assert f"model.generator.scale={scale!r}" in message
    assert "2, 4, 8" in message
    with pytest.raises(ConfigError, match=r"2, 4, 8"):
        check_scale(scale)


def test_good_scales_pass_the_check() -> None:
    assert SCALES == (2, 4, 8)
    assert [check_scale(s) for s in SCALES] == [2, 4, 8]


def test_image_size_not_a_multiple_of_scale_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        SRResNetGenerator(channels=1, image_size=30, scale=4, ngf=8, num_blocks=1)
    message = str(info.value)
    assert "model.generator.image_size=30" in message and "multiple of 4" in message


@pytest.mark.parametrize("size", [40, 24, 100])
def test_discriminator_size_not_a_multiple_of_16_is_a_config_error(size: int) -> None:
    with pytest.raises(ConfigError) as info:
        SRGANDiscriminator(channels=1, image_size=size, ndf=8, dense=16)
    message = str(info.value)
    assert f"model.discriminator.image_size={size}" in message and "multiple of 16" in message


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"ngf": 0}, "ngf"), ({"num_blocks": 0}, "num_blocks"), ({"channels": True}, "channels")],
)
def test_generator_sizes_must_be_positive_integers(kwargs, needle) -> None:
    options = {"channels": 1, "image_size": 32, "scale": 4, "ngf": 8, "num_blocks": 1, **kwargs}
    with pytest.raises(ConfigError, match=needle):
        SRResNetGenerator(**options)
