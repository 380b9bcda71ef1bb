"""MSG-GAN's networks (Karnewar & Wang 2020): G's images at every scale, D's three combine functions,
every scale reaching the score and every to-RGB getting gradient, the real pyramid by average
pooling, the scale atlas (layout by hand, exact round trip, gradients and R1 per scale), the
parameter counts written out by hand from the reference's layer list (akanimax/BMSG-GAN), and the
config errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gan_research.errors import ConfigError
from gan_research.networks.msggan import (
    COMBINE_FUNCTIONS,
    MSGGANDiscriminator,
    MSGGANGenerator,
    ScaleCombine,
    image_pyramid,
    pack_scales,
    unpack_scales,
)
from gan_research.networks.progan_layers import EqualizedConv2d, EqualizedLinear, MinibatchStdDev, PixelNorm

LATENT = 8
TINY = {"fmap_max": 8}  # model.width=8


@pytest.fixture(autouse=True)
def _one_thread():
    # Two threads on a shared two-core machine make these tiny convolutions 10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def make_g(size: int = 16, **kwargs: object) -> MSGGANGenerator:
    return MSGGANGenerator(**{"latent_dim": LATENT, "image_size": size, "channels": 3, **TINY, **kwargs})  # type: ignore[arg-type]


def make_d(size: int = 16, **kwargs: object) -> MSGGANDiscriminator:
    return MSGGANDiscriminator(**{"image_size": size, "channels": 3, **TINY, **kwargs})  # type: ignore[arg-type]


def random_pyramid(size: int, batch: int = 4, channels: int = 3) -> list[torch.Tensor]:
    sides = []
    side = 4
    while side <= size:
        sides.append(side)
        side *= 2
    return [torch.randn(batch, channels, s, s) for s in sides]


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    # torch.testing.assert_close's float32 tolerances, without the 1.5 s its first call spends
    # importing torch.distributed: this file should run in a few seconds on its own.
    assert actual.shape == expected.shape
    assert torch.allclose(actual, expected, rtol=1.3e-6, atol=1e-5), (actual - expected).abs().max()


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout  # weights + bias


def dense(i: int, o: int) -> int:
    return i * o + o


# -- shapes -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("size", "sides"), [(16, (4, 8, 16)), (32, (4, 8, 16, 32))])
def test_generator_emits_every_scale_and_forward_is_the_full_resolution_one(size, sides) -> None:
    g = make_g(size)
    assert g.scales == sides
    assert g.latent_dim == LATENT and g.output_shape == (3, size, size)
    z = torch.randn(2, LATENT)
    outs = g.forward_scales(z)
    assert [tuple(x.shape) for x in outs] == [(2, 3, s, s) for s in sides]
    assert torch.equal(g(z), outs[-1])


@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize("combine", COMBINE_FUNCTIONS)
def test_discriminator_scores_the_generators_pyramid(size: int, combine: str) -> None:
    g, d = make_g(size), make_d(size, combine=combine)
    assert d.scales == g.scales and d.input_shape == g.output_shape == (3, size, size)
    assert d.combine == combine
    scores = d(g.forward_scales(torch.randn(4, LATENT)))
    assert scores.shape == (4,) and torch.isfinite(scores).all()


def test_grey_networks_keep_one_channel() -> None:
    g, d = make_g(8, channels=1), make_d(8, channels=1)
    outs = g.forward_scales(torch.randn(2, LATENT))
    assert [tuple(x.shape) for x in outs] == [(2, 1, 4, 4), (2, 1, 8, 8)]
    assert d(outs).shape == (2,)


# -- config errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [4, 12, 24, 0, True, 16.0, "16"])
@pytest.mark.parametrize("cls", [MSGGANGenerator, MSGGANDiscriminator])
def test_bad_image_size_is_a_config_error_naming_it_and_the_valid_sizes(cls, size) -> None:
    with pytest.raises(ConfigError) as info:
        cls(image_size=size, channels=3, **TINY)
    message = str(info.value)
    assert f"got {size!r}" in message and cls.__name__ in message
    assert "8, 16, 32, 64" in message


@pytest.mark.parametrize("combine", ["concat", "", None, "SIMPLE", "lin-cat"])
def test_bad_combine_is_a_config_error_listing_the_three(combine) -> None:
    with pytest.raises(ConfigError) as info:
        make_d(combine=combine)
    message = str(info.value)
    assert f"combine={combine!r}" in message
    assert "simple, lin_cat, cat_lin" in message


# -- the combine functions ----------------------------------------------------------------------
def test_each_combine_function_is_the_papers_phi() -> None:
    o, x = torch.randn(2, 5, 4, 4), torch.randn(2, 3, 4, 4)

    simple = ScaleCombine("simple", 5, 3, 4)
    assert simple.proj is None and n_params(simple) == 0 and simple.out_channels == 8
    assert torch.equal(simple(o, x), torch.cat([o, x], 1))

    lin_cat = ScaleCombine("lin_cat", 5, 3, 4)
    assert isinstance(lin_cat.proj, EqualizedConv2d) and lin_cat.proj.kernel_size == 1
    assert (lin_cat.proj.in_channels, lin_cat.proj.out_channels, lin_cat.out_channels) == (3, 4, 9)
    with torch.no_grad():
        lin_cat.proj.bias.uniform_()  # a nonzero bias: a missing one would show
    assert torch.equal(lin_cat(o, x), torch.cat([o, lin_cat.proj(x)], 1))

    cat_lin = ScaleCombine("cat_lin", 5, 3, 4)
    assert isinstance(cat_lin.proj, EqualizedConv2d) and cat_lin.proj.kernel_size == 1
    assert (cat_lin.proj.in_channels, cat_lin.proj.out_channels, cat_lin.out_channels) == (8, 4, 4)
    # By hand: a 1x1 conv of the concatenation is the per-pixel matrix product with its weight.
    w = cat_lin.proj.weight[:, :, 0, 0] * cat_lin.proj.weight_scale
    expected = torch.einsum("oc,bchw->bohw", w, torch.cat([o, x], 1)) + cat_lin.proj.bias.view(1, -1, 1, 1)
    assert_close(cat_lin(o, x), expected)


@pytest.mark.parametrize("combine", COMBINE_FUNCTIONS)
def test_every_scale_reaches_the_score(combine: str) -> None:
    d = make_d(16, combine=combine)
    scales = random_pyramid(16)
    base = d(scales)
    for s in range(len(scales)):
        changed = [x.clone() for x in scales]
        changed[s] += torch.randn_like(changed[s])  # only this scale changes
        assert (d(changed) - base).abs().min() > 1e-6, f"scale {s} does not reach every score"

    leaves = [x.clone().requires_grad_() for x in scales]
    d(leaves).sum().backward()
    for s, x in enumerate(leaves):
        assert x.grad is not None and x.grad.abs().sum() > 0, f"no gradient at scale {s}"
    for s, phi in enumerate(d.combines):
        if combine == "simple":
            assert phi.proj is None
        else:  # the 1x1 conv r' of every lower scale is on the path to the score
            assert phi.proj.weight.grad is not None and phi.proj.weight.grad.abs().sum() > 0, s


@pytest.mark.parametrize("combine", COMBINE_FUNCTIONS)
def test_gradients_reach_every_to_rgb_through_forward_scales(combine: str) -> None:
    g, d = make_g(16), make_d(16, combine=combine)
    z = torch.randn(4, LATENT)
    d(g.forward_scales(z)).sum().backward()
    for s, to_rgb in enumerate(g.to_rgb):
        assert to_rgb.weight.grad is not None and to_rgb.weight.grad.abs().sum() > 0, f"to_rgb[{s}]"
    for s, block in enumerate(g.blocks):
        grads = [p.grad for p in block.parameters()]
        assert all(gr is not None and gr.abs().sum() > 0 for gr in grads), f"block {s}"

    # Contrast: scoring only G's full-resolution image (D pools the pyramid from it), the lower
    # to-RGBs are off the path: multi-scale gradients need forward_scales.
    g.zero_grad(set_to_none=True)
    d(g(z)).sum().backward()
    assert all(to_rgb.weight.grad is None for to_rgb in g.to_rgb[:-1])
    assert g.to_rgb[-1].weight.grad is not None


# -- what D reads -------------------------------------------------------------------------------
def test_discriminator_on_a_full_image_reads_its_average_pooled_pyramid() -> None:
    d = make_d(16)
    x = torch.randn(4, 3, 16, 16)
    by_hand = [F.avg_pool2d(x, 4), F.avg_pool2d(x, 2), x]
    assert torch.equal(d(x), d(by_hand))


def test_discriminator_on_an_atlas_reads_the_packed_scales() -> None:
    d = make_d(16, combine="lin_cat")
    scales = random_pyramid(16)
    assert_close(d(pack_scales(scales)), d(scales))


def test_discriminator_refuses_pyramids_that_do_not_fit() -> None:
    d = make_d(16)
    scales = random_pyramid(16)
    with pytest.raises(ValueError, match="lowest first"):
        d(scales[::-1])
    with pytest.raises(ValueError, match="lowest first"):
        d(scales[1:])
    with pytest.raises(ValueError, match="lowest first"):
        d([x[:, :1] for x in scales])  # one channel for a three-channel D
    with pytest.raises(ValueError, match="16x16 images"):
        d(torch.randn(4, 3, 8, 8))


# -- the real pyramid ---------------------------------------------------------------------------
@pytest.mark.parametrize("size", [16, 32])
def test_image_pyramid_is_average_pooling_to_each_scale(size: int) -> None:
    x = torch.randn(2, 3, size, size)
    sides = make_d(size).scales
    pyramid = image_pyramid(x, sides)
    assert [p.shape[-1] for p in pyramid] == list(sides)
    for p, s in zip(pyramid[:-1], sides[:-1], strict=True):
        assert torch.equal(p, F.avg_pool2d(x, size // s))
    assert pyramid[-1] is x
    # Pooling by 2**k at once is pooling by 2, k times (the reference pools the full image).
    halved = x
    for p in reversed(pyramid[:-1]):
        halved = F.avg_pool2d(halved, 2)
        assert_close(p, halved)


def test_image_pyramid_refuses_sides_that_do_not_divide() -> None:
    with pytest.raises(ValueError, match="does not divide"):
        image_pyramid(torch.zeros(1, 1, 16, 16), (3, 16))
    with pytest.raises(ValueError, match="square"):
        image_pyramid(torch.zeros(1, 1, 16, 8), (4, 8))


# -- the scale atlas ----------------------------------------------------------------------------
@pytest.mark.parametrize("size", [16, 32])
def test_pack_unpack_round_trip_exactly(size: int) -> None:
    scales = random_pyramid(size, batch=2)
    atlas = pack_scales(scales)
    assert atlas.shape == (2, 3, size, size + size // 2)
    back = unpack_scales(atlas, [x.shape[-1] for x in scales])
    assert len(back) == len(scales)
    for a, b in zip(back, scales, strict=True):
        assert torch.equal(a, b)


def test_atlas_layout_by_hand_at_16_px() -> None:
    s4, s8, s16 = random_pyramid(16, batch=2)
    atlas = pack_scales([s4, s8, s16])  # 16 x 24
    assert torch.equal(atlas[..., :16, :16], s16)  # full resolution on the left
    assert torch.equal(atlas[..., 0:8, 16:24], s8)  # the column: 8x8 on top,
    assert torch.equal(atlas[..., 8:12, 16:20], s4)  # 4x4 below it
    assert torch.count_nonzero(atlas[..., 12:16, 16:24]) == 0
    assert torch.count_nonzero(atlas[..., 8:12, 20:24]) == 0


def test_atlas_unused_area_is_zero_at_32_px() -> None:
    scales = [x.abs() + 1 for x in random_pyramid(32, batch=2)]  # no zero pixel in any scale
    atlas = pack_scales(scales)
    used = torch.zeros(32, 48, dtype=torch.bool)
    used[:32, :32] = True  # 32x32
    used[0:16, 32:48] = True  # 16x16
    used[16:24, 32:40] = True  # 8x8
    used[24:28, 32:36] = True  # 4x4
    assert torch.count_nonzero(atlas[..., ~used]) == 0
    assert bool((atlas[..., used] != 0).all())
    assert int(used.sum()) == 32 * 32 + 16 * 16 + 8 * 8 + 4 * 4


def test_pack_scales_passes_each_scale_its_slice_of_the_gradient() -> None:
    scales = [x.requires_grad_() for x in random_pyramid(16, batch=2)]
    weights = torch.randn(2, 3, 16, 24)
    (pack_scales(scales) * weights).sum().backward()
    for x, w in zip(scales, unpack_scales(weights, (4, 8, 16)), strict=True):
        assert torch.equal(x.grad, w)


@pytest.mark.parametrize("combine", COMBINE_FUNCTIONS)
def test_atlas_gradient_is_the_per_scale_gradients_so_r1_adds_up(combine: str) -> None:
    d = make_d(16, combine=combine)
    scales = [x.requires_grad_() for x in random_pyramid(16)]
    per_scale = torch.autograd.grad(d(scales).sum(), scales)

    atlas = pack_scales([x.detach() for x in scales]).requires_grad_()
    (on_atlas,) = torch.autograd.grad(d(unpack_scales(atlas, d.scales)).sum(), atlas)
    assert_close(on_atlas, pack_scales(per_scale))
    assert torch.count_nonzero(on_atlas[..., 12:16, 16:24]) == 0  # the unused area gets none

    # R1 (Mescheder et al. 2018): |grad|^2 per sample; on the atlas it is the sum over scales.
    r1_atlas = on_atlas.pow(2).sum(dim=(1, 2, 3))
    r1_scales = sum(g.pow(2).sum(dim=(1, 2, 3)) for g in per_scale)
    assert_close(r1_atlas, r1_scales)


def test_atlas_helpers_refuse_what_is_not_a_pyramid() -> None:
    with pytest.raises(ValueError, match="doubling"):
        pack_scales([torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 16, 16)])
    with pytest.raises(ValueError, match="same batch and channels"):
        pack_scales([torch.zeros(1, 1, 4, 4), torch.zeros(1, 3, 8, 8)])
    with pytest.raises(ValueError, match="atlas of scales"):
        unpack_scales(torch.zeros(1, 3, 16, 16), (4, 8, 16))


# -- layers and parameter counts ----------------------------------------------------------------
def test_layer_order_follows_progan_blocks() -> None:
    g, d = make_g(16), make_d(16)
    assert [type(m) for m in g.blocks[1]] == [
        nn.Upsample,
        EqualizedConv2d,
        nn.LeakyReLU,
        PixelNorm,
        EqualizedConv2d,
        nn.LeakyReLU,
        PixelNorm,
    ]
    assert [type(m) for m in g.blocks[0]][1:] == [
        nn.LeakyReLU,
        PixelNorm,
        EqualizedConv2d,
        nn.LeakyReLU,
        PixelNorm,
    ]
    assert isinstance(g.normalize_latent, PixelNorm)
    # to-RGB: 1x1, gain 1 (linear output).
    assert all(c.kernel_size == 1 and c.weight_scale == pytest.approx(1 / 8**0.5) for c in g.to_rgb)
    assert {m.negative_slope for m in g.modules() if isinstance(m, nn.LeakyReLU)} == {0.2}

    assert [type(m) for m in d.blocks[1]] == [
        EqualizedConv2d,
        nn.LeakyReLU,
        EqualizedConv2d,
        nn.LeakyReLU,
        nn.AvgPool2d,
    ]
    final = list(d.output_block)
    assert [type(m) for m in final] == [
        MinibatchStdDev,
        EqualizedConv2d,
        nn.LeakyReLU,
        EqualizedConv2d,
        nn.LeakyReLU,
        nn.Flatten,
        EqualizedLinear,
    ]
    assert final[0].group_size == 4 and final[0].num_channels == 1
    assert (final[1].kernel_size, final[3].kernel_size, final[3].padding) == (3, 4, 0)
    assert final[6].out_features == 1
    assert not any(isinstance(m, nn.Tanh) for m in g.modules())


@pytest.mark.parametrize("equalized_lr", [True, False])
def test_lin_cat_networks_have_the_bmsg_gan_parameter_counts(equalized_lr: bool) -> None:
    # akanimax/BMSG-GAN, GAN.py / CustomLayers.py, depth=5 (64 px), latent_size = feature_size = 8,
    # RGB. Their widths: 8 up to 32 px, 4 at 64 px = ours with fmap_base=16*8, fmap_max=8.
    # Discriminator, layer by layer from its constructor:
    #   layers[0..2] = DisGeneralConvBlock(8, 4): conv3x3 8->8, conv3x3 8->4
    #   layers[3]    = DisGeneralConvBlock(4, 4): conv3x3 4->4 twice
    #   rgb_to_features[0..2] = from_rgb(4); rgb_to_features[3] (replaced) = from_rgb(8 // 2) = 4
    #   final_converter = from_rgb(4)
    #   DisFinalBlock(8): conv3x3 9->8, conv4x4 8->8, conv1x1 8->1
    bmsg_d = (
        3 * (conv(8, 8, 3) + conv(8, 4, 3))
        + 2 * conv(4, 4, 3)
        + 4 * conv(3, 4, 1)
        + conv(3, 4, 1)
        + conv(9, 8, 3)
        + conv(8, 8, 4)
        + conv(8, 1, 1)
    )
    assert bmsg_d == 4701
    # Generator: GenInitialBlock(8): deconv4x4 8->8, conv3x3 8->8; layers for 8, 16, 32 px:
    # GenGeneralConvBlock(8, 8); for 64 px: GenGeneralConvBlock(8, 4); to_rgb 1x1 per block.
    bmsg_g = (
        (8 * 8 * 4 * 4 + 8)
        + conv(8, 8, 3)
        + 3 * 2 * conv(8, 8, 3)
        + conv(8, 4, 3)
        + conv(4, 4, 3)
        + 4 * conv(8, 3, 1)
        + conv(4, 3, 1)
    )
    assert bmsg_g == 5683
    sizes = {"image_size": 64, "channels": 3, "fmap_base": 128, "fmap_max": 8, "equalized_lr": equalized_lr}
    d = MSGGANDiscriminator(combine="lin_cat", **sizes)
    g = MSGGANGenerator(latent_dim=8, **sizes)
    assert n_params(d) == bmsg_d
    assert n_params(g) == bmsg_g
    # The combined maps have BMSG-GAN's widths: 4 feature + 4 image channels below the top.
    assert [phi.out_channels for phi in d.combines] == [8, 8, 8, 8]
    plain = (nn.Conv2d, nn.Linear)
    assert any(isinstance(m, plain) for m in d.modules()) != equalized_lr
    assert any(isinstance(m, EqualizedConv2d) for m in g.modules()) == equalized_lr


def test_simple_and_cat_lin_parameter_counts_by_hand() -> None:
    # 16 px, grey, width 8 everywhere: from_rgb 1->8; the 16 px block; a combine at 8 and at 4 px;
    # the 8 px block; the final block (mbstd +1 channel, conv3x3, conv4x4, dense).
    simple = (
        conv(1, 8, 1)
        + conv(8, 8, 3)
        + conv(8, 8, 3)
        + conv(8 + 1, 8, 3)  # reads [features; image]
        + conv(8, 8, 3)
        + conv(8 + 1 + 1, 8, 3)  # [features; image] + the stddev map
        + conv(8, 8, 4)
        + dense(8, 1)
    )
    cat_lin = (
        conv(1, 8, 1)
        + 2 * conv(8, 8, 3)
        + conv(8 + 1, 8, 1)  # r' at 8 px
        + 2 * conv(8, 8, 3)
        + conv(8 + 1, 8, 1)  # r' at 4 px
        + conv(8 + 1, 8, 3)
        + conv(8, 8, 4)
        + dense(8, 1)
    )
    kw = {"image_size": 16, "channels": 1, "fmap_max": 8}
    assert n_params(MSGGANDiscriminator(combine="simple", **kw)) == simple == 4193
    assert n_params(MSGGANDiscriminator(combine="cat_lin", **kw)) == cat_lin == 4209


# -- options ------------------------------------------------------------------------------------
def test_output_is_linear_unless_tanh_is_asked_for() -> None:
    g, g_tanh = make_g(16), make_g(16, tanh=True)
    g_tanh.load_state_dict(g.state_dict())
    z = torch.randn(4, LATENT) * 3
    linear, squashed = g.forward_scales(z), g_tanh.forward_scales(z)
    assert max(x.abs().max() for x in linear) > 1  # not bounded: no tanh
    for a, b in zip(linear, squashed, strict=True):
        assert_close(b, torch.tanh(a))


def test_pixel_norm_and_equalized_lr_can_be_switched_off() -> None:
    g = make_g(8, pixel_norm=False, equalized_lr=False)
    assert not any(isinstance(m, (PixelNorm, EqualizedConv2d, EqualizedLinear)) for m in g.modules())
    d = make_d(8, equalized_lr=False)
    assert not any(isinstance(m, (EqualizedConv2d, EqualizedLinear)) for m in d.modules())
    assert d(g.forward_scales(torch.randn(2, LATENT))).shape == (2,)
