"""ProGAN networks: resolutions per stage, the fade-in mix of G and its mirror in D, checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gan_research.errors import ConfigError
from gan_research.networks.progan import (
    ProGANDiscriminator,
    ProGANGenerator,
    feature_maps,
    stage_resolution,
)

LATENT = 8
SIZES = {"fmap_base": 32, "fmap_max": 8}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def make_g(**kwargs: object) -> ProGANGenerator:
    return ProGANGenerator(**{"latent_dim": LATENT, "image_size": 32, "channels": 1, **SIZES, **kwargs})  # type: ignore[arg-type]


def make_d(**kwargs: object) -> ProGANDiscriminator:
    return ProGANDiscriminator(**{"image_size": 32, "channels": 1, **SIZES, **kwargs})  # type: ignore[arg-type]


def test_all_blocks_are_built_up_front_and_output_grows_with_the_stage() -> None:
    g, d = make_g(), make_d()
    assert g.num_stages == d.num_stages == 4
    assert len(g.to_rgb) == len(d.from_rgb) == 4
    z = torch.randn(4, LATENT)
    for stage in range(4):
        out = g(z, stage=stage)
        assert out.shape == (4, 1, stage_resolution(stage), stage_resolution(stage))
        assert d(out, stage=stage).shape == (4,)
    assert g(z).shape == (4, 1, 32, 32)  # stage None: the final resolution
    assert g.output_shape == d.input_shape == (1, 32, 32)


def test_generator_fade_in_mixes_upsampled_previous_output_with_new_block() -> None:
    g = make_g()
    z = torch.randn(4, LATENT)
    stage = 2
    previous = F.interpolate(g(z, stage=stage - 1), scale_factor=2, mode="nearest")
    # alpha 0: exactly the previous resolution's output, upsampled.
    torch.testing.assert_close(g(z, stage=stage, alpha=0.0), previous)
    new = g(z, stage=stage, alpha=1.0)
    h = g.input_block(g.input_layer(g.normalize_latent(z)).view(4, -1, 4, 4))
    h = g.blocks[1](h)
    torch.testing.assert_close(new, g.to_rgb[2](g.blocks[2](h)))
    # In between: (1 - alpha) * up(rgb_prev) + alpha * rgb_new.
    torch.testing.assert_close(g(z, stage=stage, alpha=0.3), 0.7 * previous + 0.3 * new)


def test_discriminator_fade_in_is_the_mirror() -> None:
    d = make_d()
    x = torch.randn(4, 1, 16, 16)
    # alpha 0: the new block is bypassed; D scores the half-resolution image at the previous stage.
    torch.testing.assert_close(d(x, stage=2, alpha=0.0), d(F.avg_pool2d(x, 2), stage=1))
    new_features = d.blocks[2](d.from_rgb[2](x))
    old_features = d.from_rgb[1](F.avg_pool2d(x, 2))
    mixed = 0.25 * old_features + 0.75 * new_features
    expected = d.output_block(d.blocks[1](mixed)).squeeze(1)
    torch.testing.assert_close(d(x, stage=2, alpha=0.75), expected)


def test_blocks_above_the_stage_get_no_gradient() -> None:
    g, d = make_g(), make_d()
    d(g(torch.randn(4, LATENT), stage=1, alpha=0.5), stage=1, alpha=0.5).mean().backward()
    for name, module in [
        ("g.blocks[2]", g.blocks[2]),
        ("g.to_rgb[3]", g.to_rgb[3]),
        ("d.from_rgb[2]", d.from_rgb[2]),
    ]:
        assert all(p.grad is None for p in module.parameters()), name
    for name, module in [
        ("g.to_rgb[0]", g.to_rgb[0]),
        ("g.blocks[1]", g.blocks[1]),
        ("d.from_rgb[0]", d.from_rgb[0]),
    ]:
        assert all(p.grad is not None for p in module.parameters()), name


def test_channel_widths_follow_the_paper() -> None:
    # Table 2: 512 maps up to 32x32, then 256, 128, 64, 32 and 16 at 1024x1024.
    widths = [feature_maps(2**k, 8192, 512) for k in range(2, 11)]
    assert widths == [512, 512, 512, 512, 256, 128, 64, 32, 16]


def test_generator_uses_pixel_norm_and_the_paper_layers() -> None:
    g = make_g()
    z = torch.randn(4, LATENT) * 5.0
    h = g.input_block(g.input_layer(g.normalize_latent(z)).view(4, -1, 4, 4))
    torch.testing.assert_close(h.pow(2).mean(dim=1), torch.ones(4, 4, 4), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(g(z), g(z * 3.0), rtol=1e-4, atol=1e-4)  # z is pixel-normalised first


@pytest.mark.parametrize("size", [3, 12, 0, True])
def test_bad_image_size_is_a_config_error(size: object) -> None:
    with pytest.raises(ConfigError, match="power of two"):
        make_g(image_size=size)
    with pytest.raises(ConfigError, match="power of two"):
        make_d(image_size=size)


def test_bad_stage_alpha_and_input_size_are_clear_errors() -> None:
    g, d = make_g(), make_d()
    with pytest.raises(ValueError, match="stage must be"):
        g(torch.randn(2, LATENT), stage=4)
    with pytest.raises(ValueError, match="alpha must be"):
        g(torch.randn(2, LATENT), stage=1, alpha=1.5)
    with pytest.raises(ValueError, match="reads 8x8"):
        d(torch.randn(2, 1, 16, 16), stage=1)
