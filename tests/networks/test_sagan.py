"""SAGAN networks: self-attention block, ResNet G/D, conditional BN, projection, config checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from gan_research.errors import ConfigError
from gan_research.networks.sagan import (
    SAGAN_IMAGE_SIZES,
    ConditionalBatchNorm2d,
    SAGANDiscriminator,
    SAGANGenerator,
    SelfAttention,
)

LATENT = 16
WIDTH = 8  # tiny ngf/ndf: the attended maps still have >= 8 channels at every valid resolution


def make_g(**kwargs: object) -> SAGANGenerator:
    kwargs = {"latent_dim": LATENT, "ngf": WIDTH, "attention_resolution": 8, **kwargs}
    return SAGANGenerator(**kwargs)  # type: ignore[arg-type]


def make_d(**kwargs: object) -> SAGANDiscriminator:
    kwargs = {"ndf": WIDTH, "attention_resolution": 8, **kwargs}
    return SAGANDiscriminator(**kwargs)  # type: ignore[arg-type]


def labels(n: int, num_classes: int | None) -> torch.Tensor | None:
    return None if num_classes is None else torch.arange(n) % num_classes


def attention_modules(net: nn.Module) -> list[SelfAttention]:
    return [m for m in net.modules() if isinstance(m, SelfAttention)]


# --- shapes and range ------------------------------------------------------------------------


@pytest.mark.parametrize("image_size", [16, 32])
@pytest.mark.parametrize("num_classes", [None, 10])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_range(image_size: int, num_classes: int | None, channels: int) -> None:
    torch.manual_seed(0)
    g = make_g(image_size=image_size, channels=channels, num_classes=num_classes)
    d = make_d(image_size=image_size, channels=channels, num_classes=num_classes)
    assert g.output_shape == d.input_shape == (channels, image_size, image_size)
    assert g.latent_dim == LATENT and g.num_classes == d.num_classes == num_classes
    y = labels(5, num_classes)
    x = g(torch.randn(5, LATENT), y)
    assert x.shape == (5, channels, image_size, image_size)
    assert x.min() >= -1.0 and x.max() <= 1.0
    scores = d(x, y)
    assert scores.shape == (5,)
    assert torch.isfinite(scores).all()


def test_block_widths_follow_sngan_pattern() -> None:
    # 32 px: G 4×4×(8·ngf) → 8·ngf/2 … ngf; D ndf → 4·ndf, ending at 4×4.
    g, d = make_g(image_size=32), make_d(image_size=32)
    assert [b.conv2.out_channels for b in g.blocks] == [4 * WIDTH, 2 * WIDTH, WIDTH]
    assert g.linear.out_features == 8 * WIDTH * 4 * 4
    assert [b.conv2.out_channels for b in d.blocks] == [WIDTH, 2 * WIDTH, 4 * WIDTH]
    assert d.linear.in_features == 4 * WIDTH


# --- the self-attention block ------------------------------------------------------------------


def test_attention_is_identity_at_init_and_not_after_gamma_is_set() -> None:
    torch.manual_seed(0)
    attn = SelfAttention(16)
    x = torch.randn(2, 16, 8, 8)
    assert attn.gamma.item() == 0.0
    assert torch.equal(attn(x), x)
    with torch.no_grad():
        attn.gamma.fill_(1.0)
    assert not torch.allclose(attn(x), x, atol=1e-4)


def test_attention_map_rows_are_distributions_over_pooled_positions() -> None:
    torch.manual_seed(0)
    attn = SelfAttention(16, spectral_norm=False)
    o, beta = attn.attend(torch.randn(3, 16, 8, 8))
    assert o.shape == (3, 16, 8, 8)
    # One row per query position (64), one column per 2×2-max-pooled key position (16).
    assert beta.shape == (3, 64, 16)
    assert (beta >= 0).all()
    torch.testing.assert_close(beta.sum(dim=-1), torch.ones(3, 64))
    # Not uniform: the map depends on the content.
    assert not torch.allclose(beta, torch.full_like(beta, 1 / 16))


def test_attention_has_a_global_receptive_field() -> None:
    # One output position depends on the opposite corner of the map: no conv of the size does that.
    torch.manual_seed(0)
    attn = SelfAttention(16)
    with torch.no_grad():
        attn.gamma.fill_(1.0)
    x = torch.randn(1, 16, 8, 8, requires_grad=True)
    attn(x)[0, :, 0, 0].sum().backward()
    assert x.grad is not None
    assert x.grad[0, :, 7, 7].abs().sum() > 0


def test_attention_needs_eight_channels() -> None:
    with pytest.raises(ConfigError, match="channels=4"):
        SelfAttention(4)


@pytest.mark.parametrize(
    ("image_size", "resolution"), [(16, 8), (16, 16), (32, 8), (32, 16), (32, 32), (64, 32)]
)
def test_generator_attention_sits_at_configured_resolution(image_size: int, resolution: int) -> None:
    g = make_g(image_size=image_size, attention_resolution=resolution)
    (attn,) = attention_modules(g)
    sides: list[tuple[int, int]] = []
    attn.register_forward_hook(lambda _m, inputs, _out: sides.append(tuple(inputs[0].shape[-2:])))
    g(torch.randn(2, LATENT))
    assert sides == [(resolution, resolution)]


@pytest.mark.parametrize(("image_size", "resolution"), [(16, 8), (32, 8), (32, 16), (64, 32)])
def test_discriminator_attention_sits_at_configured_resolution(image_size: int, resolution: int) -> None:
    d = make_d(image_size=image_size, attention_resolution=resolution)
    (attn,) = attention_modules(d)
    sides: list[tuple[int, int]] = []
    attn.register_forward_hook(lambda _m, inputs, _out: sides.append(tuple(inputs[0].shape[-2:])))
    d(torch.randn(2, 3, image_size, image_size))
    assert sides == [(resolution, resolution)]


def test_no_attention_when_resolution_is_none() -> None:
    g, d = make_g(attention_resolution=None), make_d(attention_resolution=None)
    assert attention_modules(g) == [] and attention_modules(d) == []
    assert g(torch.randn(2, LATENT)).shape == (2, 3, 32, 32)
    assert d(torch.randn(2, 3, 32, 32)).shape == (2,)


# --- spectral norm -----------------------------------------------------------------------------


def linear_maps(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_spectral_norm_on_every_conv_and_linear_but_not_on_conditional_bn() -> None:
    g, d = make_g(num_classes=10), make_d(num_classes=10)
    for net in (g, d):
        maps = linear_maps(net)
        assert maps  # guard against a vacuous pass
        assert all(parametrize.is_parametrized(m, "weight") for m in maps)
    cbns = [m for m in g.modules() if isinstance(m, ConditionalBatchNorm2d)]
    assert len(cbns) == 2 * len(g.blocks)
    for cbn in cbns:
        assert not parametrize.is_parametrized(cbn.gain)
        assert not parametrize.is_parametrized(cbn.bias)
    # The projection embedding is a linear map of φ(x): normalised with the rest of D.
    assert d.embed is not None and parametrize.is_parametrized(d.embed, "weight")


def test_spectral_norm_can_be_disabled() -> None:
    g, d = make_g(num_classes=10, spectral_norm=False), make_d(num_classes=10, spectral_norm=False)
    assert not any(parametrize.is_parametrized(m) for net in (g, d) for m in net.modules())


# --- class conditioning ------------------------------------------------------------------------


def test_conditional_bn_starts_as_plain_bn_then_conditions_on_y() -> None:
    torch.manual_seed(0)
    g = make_g(num_classes=10)
    cbns = [m for m in g.modules() if isinstance(m, ConditionalBatchNorm2d)]
    for cbn in cbns:
        assert torch.equal(cbn.gain.weight, torch.ones_like(cbn.gain.weight))
        assert torch.equal(cbn.bias.weight, torch.zeros_like(cbn.bias.weight))
    z = torch.randn(1, LATENT).repeat(2, 1)  # same z, two classes, one batch
    y = torch.tensor([0, 1])
    x = g(z, y)
    # Gains 1 / biases 0 for every class: at init the class has no effect yet.
    torch.testing.assert_close(x[0], x[1])
    with torch.no_grad():  # what training does: per-class parameters move apart
        for cbn in cbns:
            cbn.gain.weight.normal_(1.0, 0.2)
            cbn.bias.weight.normal_(0.0, 0.2)
    x = g(z, y)
    assert not torch.allclose(x[0], x[1], atol=1e-3)


def test_projection_discriminator_score_depends_on_y() -> None:
    torch.manual_seed(0)
    d = make_d(num_classes=10)
    x = torch.randn(1, 3, 32, 32).repeat(2, 1, 1, 1)
    scores = d(x, torch.tensor([0, 1]))
    assert not torch.allclose(scores[0], scores[1])


# --- configuration and call errors -------------------------------------------------------------

SIZES_TEXT = "8, 16, 32, 64, 128, 256"


@pytest.mark.parametrize("bad", [48, 4, 0, 512, 32.0, True, "32"])
@pytest.mark.parametrize("factory", [make_g, make_d])
def test_invalid_image_size(factory, bad: object) -> None:
    assert ", ".join(map(str, SAGAN_IMAGE_SIZES)) == SIZES_TEXT
    with pytest.raises(ConfigError) as info:
        factory(image_size=bad, attention_resolution=None)
    assert f"image_size={bad!r}" in str(info.value)
    assert SIZES_TEXT in str(info.value)


@pytest.mark.parametrize(
    ("factory", "image_size", "bad", "valid"),
    [
        (make_g, 32, 4, "8, 16, 32, None"),
        (make_g, 32, 64, "8, 16, 32, None"),
        (make_g, 32, 12, "8, 16, 32, None"),
        (make_g, 32, "16", "8, 16, 32, None"),
        (make_g, 8, 4, "8, None"),
        # D's block outputs are image_size/2 … 4: no attention on the image itself.
        (make_d, 32, 32, "8, 16, None"),
        (make_d, 16, 16, "8, None"),
        (make_d, 8, 8, "Valid choices: None"),
    ],
)
def test_invalid_attention_resolution(factory, image_size: int, bad: object, valid: str) -> None:
    with pytest.raises(ConfigError) as info:
        factory(image_size=image_size, attention_resolution=bad)
    assert f"attention_resolution={bad!r}" in str(info.value)
    assert valid in str(info.value)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_invalid_num_classes(bad: object) -> None:
    for factory in (make_g, make_d):
        with pytest.raises(ConfigError, match="num_classes"):
            factory(num_classes=bad)


def test_label_misuse_raises_value_error() -> None:
    z, x = torch.randn(2, LATENT), torch.randn(2, 3, 32, 32)
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="needs labels"):
        make_g(num_classes=10)(z)
    with pytest.raises(ValueError, match="needs labels"):
        make_d(num_classes=10)(x)
    with pytest.raises(ValueError, match="unconditional"):
        make_g()(z, y)
    with pytest.raises(ValueError, match="unconditional"):
        make_d()(x, y)
    with pytest.raises(ValueError, match="shape"):
        make_g(num_classes=10)(z, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="shape"):
        make_d(num_classes=10)(x, y[:, None])


# --- gradients ---------------------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [None, 10])
def test_gradient_reaches_every_parameter(num_classes: int | None) -> None:
    torch.manual_seed(0)
    g, d = make_g(num_classes=num_classes), make_d(num_classes=num_classes)
    for attn in attention_modules(g) + attention_modules(d):
        # With γ = 0 the attention convs get exactly zero gradient (only γ does): by design, but
        # it would hide a disconnected attention branch.
        with torch.no_grad():
            attn.gamma.fill_(0.5)
    y = labels(6, num_classes)
    x = g(torch.randn(6, LATENT), y)
    # A random projection of G's output, so no batch-norm symmetry cancels a gradient.
    loss_g = (x * torch.randn_like(x)).sum()
    loss_d = d(x.detach(), y).sum()
    (loss_g + loss_d).backward()
    for net in (g, d):
        for name, p in net.named_parameters():
            assert p.grad is not None, f"{type(net).__name__}.{name} is unused"
            assert p.grad.abs().sum() > 0, f"{type(net).__name__}.{name} gets zero gradient"
