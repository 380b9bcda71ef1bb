"""GauGAN's networks (Park et al. 2019): SPADE's per-pixel modulation by the label map, the SPADE
residual block, the generator (normal / more / most, the multimodal variant's encoder and latent),
the multi-scale discriminator, the reference's parameter counts (NVlabs/SPADE, instantiated at
its settings) and the config errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gan_research.data.semantic import one_hot_labels
from gan_research.errors import ConfigError
from gan_research.networks.spade import (
    SPADE,
    ConvEncoder,
    MultiscaleDiscriminator,
    NLayerDiscriminator,
    SPADEGenerator,
    SPADEResBlock,
    final_logits,
)

K = 4  # classes of the test label maps


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def label_map(ids: torch.Tensor) -> torch.Tensor:
    """Ids (B, H, W) -> one-hot (B, K, H, W)."""
    return one_hot_labels(ids[:, None], K)


def random_map(b: int, size: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return label_map(torch.randint(0, K, (b, size, size), generator=gen))


def spectral(module: nn.Module) -> bool:
    return hasattr(module, "parametrizations") and "weight" in module.parametrizations


# -- SPADE -------------------------------------------------------------------------------------
def test_a_constant_label_map_gives_the_same_modulation_everywhere() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 8, 12, 12)
    seg = label_map(torch.full((2, 12, 12), 2))
    # 1x1 convolutions see one pixel: γ and β are constant over the whole map.
    gamma, beta = SPADE(8, K, hidden=16, kernel_size=1).modulation(x, seg)
    for t in (gamma, beta):
        assert t.shape == (2, 8, 12, 12)
        torch.testing.assert_close(t, t[:, :, :1, :1].expand_as(t), rtol=0, atol=1e-6)
    # 3x3 convolutions (the reference's) zero-pad the map: constant except within 2 px of the
    # border (two stacked convolutions), where the padding is seen.
    gamma, beta = SPADE(8, K, hidden=16).modulation(x, seg)
    for t in (gamma, beta):
        inner = t[:, :, 2:-2, 2:-2]
        torch.testing.assert_close(inner, inner[:, :, :1, :1].expand_as(inner), rtol=0, atol=1e-6)
        assert not torch.allclose(t[:, :, 0, 0], t[:, :, 6, 6])  # the border does see the padding
    # ... and the same for every sample: the modulation depends on the map only, not on x.
    torch.testing.assert_close(gamma[0], gamma[1])


def test_changing_one_region_changes_the_modulation_only_there() -> None:
    torch.manual_seed(0)
    spade = SPADE(8, K, hidden=16)
    x = torch.randn(1, 8, 16, 16)
    ids = torch.zeros(1, 16, 16, dtype=torch.int64)
    ids[:, :, 8:] = 1
    edited = ids.clone()
    edited[:, 6:10, 3:7] = 3  # a 4x4 region
    before, after = spade.modulation(x, label_map(ids)), spade.modulation(x, label_map(edited))
    # Reach of the change: the region dilated by the two 3x3 convolutions' receptive field (2 px).
    reach = torch.zeros(16, 16, dtype=torch.bool)
    reach[4:12, 1:9] = True
    for old, new in zip(before, after, strict=True):
        changed = (old - new).abs().amax(dim=(0, 1)) > 0
        assert bool(changed[6:10, 3:7].all())  # inside the region
        assert not bool(changed[~reach].any())  # nowhere beyond its reach
    # The output: norm(x) does not depend on the map, so it changes exactly where γ, β do.
    out_old, out_new = spade(x, label_map(ids)), spade(x, label_map(edited))
    changed = (out_old - out_new).abs().amax(dim=(0, 1)) > 0
    assert bool(changed[6:10, 3:7].all()) and not bool(changed[~reach].any())


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_output_is_param_free_norm_times_one_plus_gamma_plus_beta(norm: str) -> None:
    torch.manual_seed(0)
    spade = SPADE(6, K, hidden=16, param_free_norm=norm)
    x = torch.randn(3, 6, 8, 8) * 3 + 1
    seg = random_map(3, 8)
    gamma, beta = spade.modulation(x, seg)
    dims = (0, 2, 3) if norm == "batch" else (2, 3)  # batch statistics in training, per sample for instance
    mean, var = x.mean(dims, keepdim=True), x.var(dims, unbiased=False, keepdim=True)
    normalised = (x - mean) / torch.sqrt(var + 1e-5)
    torch.testing.assert_close(spade(x, seg), normalised * (1 + gamma) + beta)
    assert not any(p.numel() for p in spade.param_free_norm.parameters())  # no affine of its own


def test_the_label_map_is_resized_to_the_activations_without_blending() -> None:
    torch.manual_seed(0)
    spade = SPADE(4, K, hidden=8)
    seen: list[torch.Tensor] = []
    spade.mlp_shared.register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0]))
    seg = random_map(2, 32)
    gamma, _ = spade.modulation(torch.randn(2, 4, 12, 12), seg)  # a non-integer ratio
    assert gamma.shape == (2, 4, 12, 12) and seen[0].shape == (2, K, 12, 12)
    assert set(seen[0].unique().tolist()) == {0.0, 1.0}
    assert torch.equal(seen[0].sum(1), torch.ones(2, 12, 12))  # still one class per pixel


def test_unknown_param_free_norm_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"param_free_norm='layer'.*batch, instance"):
        SPADE(4, K, param_free_norm="layer")
    with pytest.raises(ConfigError, match=r"param_free_norm='layer'.*batch, instance"):
        SPADEGenerator(K, 3, 32, ngf=8, param_free_norm="layer")


# -- the residual block ------------------------------------------------------------------------
@pytest.mark.parametrize(("fin", "fout"), [(16, 16), (16, 8), (8, 16)])
def test_learned_shortcut_exists_iff_the_channels_change(fin: int, fout: int) -> None:
    torch.manual_seed(0)
    block = SPADEResBlock(fin, fout, K, hidden=16).eval()  # eval: spectral norm's vectors stay put
    assert block.learned_shortcut == (fin != fout)
    assert hasattr(block, "conv_s") == hasattr(block, "norm_s") == (fin != fout)
    middle = min(fin, fout)
    assert (block.conv_0.in_channels, block.conv_0.out_channels) == (fin, middle)
    assert (block.conv_1.in_channels, block.conv_1.out_channels) == (middle, fout)
    convs = [block.conv_0, block.conv_1, *([block.conv_s] if fin != fout else [])]
    assert all(spectral(c) for c in convs)
    x, seg = torch.randn(2, fin, 8, 8), random_map(2, 16)
    out = block(x, seg)
    assert out.shape == (2, fout, 8, 8)
    dx = block.conv_1(
        F.leaky_relu(block.norm_1(block.conv_0(F.leaky_relu(block.norm_0(x, seg), 0.2)), seg), 0.2)
    )
    if fin == fout:
        torch.testing.assert_close(out, x + dx)  # the identity shortcut
    else:
        assert block.conv_s.kernel_size == (1, 1) and block.conv_s.bias is None
        torch.testing.assert_close(out, block.conv_s(block.norm_s(x, seg)) + dx)


def test_residual_block_without_spectral_norm() -> None:
    block = SPADEResBlock(8, 4, K, hidden=8, spectral_norm=False)
    assert not any(spectral(m) for m in block.modules())


# -- the generator -----------------------------------------------------------------------------
@pytest.mark.parametrize(("mode", "doublings"), [("normal", 5), ("more", 6), ("most", 7)])
def test_generator_output_shape_and_range(mode: str, doublings: int) -> None:
    torch.manual_seed(0)
    size = 2**doublings  # starts from a 1x1 map
    g = SPADEGenerator(K, 3, size, ngf=4, num_upsampling_layers=mode, spade_hidden=8)
    assert g.start_size == 1 and g.input_shape == (K, size, size) and g.output_shape == (3, size, size)
    assert hasattr(g, "up_4") == (mode == "most")
    sizes: dict[str, int] = {}

    def record(name: str):
        def hook(_, inputs) -> None:  # returns None: the inputs pass unchanged
            sizes.setdefault(name, inputs[0].shape[-1])

        return hook

    for name in ("G_middle_0", "G_middle_1", "conv_img"):
        getattr(g, name).register_forward_pre_hook(record(name))
    with torch.no_grad():
        out = g(random_map(2, size))
        loud = g(random_map(2, size) * 1e4)  # the label map scaled far out: still in range
    assert out.shape == (2, 3, size, size) and sizes["conv_img"] == size
    # "more" and "most" add a doubling between the two middle blocks.
    assert (sizes["G_middle_0"], sizes["G_middle_1"]) == ((2, 2) if mode == "normal" else (2, 4))
    assert float(out.abs().max()) <= 1 and float(out.std()) > 0  # tanh, not a constant
    assert float(loud.abs().max()) <= 1


@pytest.mark.parametrize(
    ("size", "mode", "multiple"), [(48, "normal", 32), (32, "more", 64), (64, "most", 128)]
)
def test_image_size_must_be_divisible_by_the_upsampling(size: int, mode: str, multiple: int) -> None:
    with pytest.raises(ConfigError) as info:
        SPADEGenerator(K, 3, size, ngf=4, num_upsampling_layers=mode)
    message = str(info.value)
    assert f"image_size={size}" in message and f"multiple of {multiple}" in message


def test_unknown_upsampling_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"num_upsampling_layers='many'.*normal, more, most"):
        SPADEGenerator(K, 3, 32, ngf=4, num_upsampling_layers="many")


def test_generator_modulates_every_block_with_the_label_map() -> None:
    torch.manual_seed(0)
    g = SPADEGenerator(K, 3, 32, ngf=4, spade_hidden=8).eval()
    spades = [m for m in g.modules() if isinstance(m, SPADE)]
    seen: list[tuple[int, ...]] = []
    for m in spades:
        m.register_forward_hook(lambda _, inputs, __: seen.append(tuple(inputs[1].shape)))
    seg = random_map(1, 32)
    g(seg)
    assert len(seen) == len(spades) and set(seen) == {(1, K, 32, 32)}  # the full-resolution map
    # Another layout, another image.
    assert not torch.allclose(g(seg), g(random_map(1, 32, seed=1)))


def test_multimodal_generator_encodes_images_and_takes_a_latent() -> None:
    torch.manual_seed(0)
    g = SPADEGenerator(K, 3, 32, ngf=4, spade_hidden=8, use_vae=True, z_dim=16).eval()
    assert g.latent_dim == 16 and isinstance(g.encoder, ConvEncoder)
    mu, logvar = g.encode(torch.rand(3, 3, 32, 32) * 2 - 1)
    assert mu.shape == logvar.shape == (3, 16)
    seg = random_map(2, 32)
    z1, z2 = torch.randn(2, 16), torch.randn(2, 16)
    out = g(seg, z1)
    assert out.shape == (2, 3, 32, 32)
    assert torch.equal(out, g(seg, z1))  # eval mode: deterministic for a latent
    assert not torch.allclose(out, g(seg, z2))  # another latent, another style
    assert not torch.allclose(g(seg), g(seg))  # no latent given: z ~ N(0, I) drawn per call


def test_encode_needs_the_multimodal_variant() -> None:
    g = SPADEGenerator(K, 3, 32, ngf=4, spade_hidden=8)
    assert g.encoder is None
    with pytest.raises(RuntimeError, match=r"use_vae"):
        g.encode(torch.zeros(1, 3, 32, 32))


def test_encoder_halves_down_to_4x4() -> None:
    e = ConvEncoder(3, 32, ndf=4, z_dim=8)
    convs = [m for m in e.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 and all(c.stride == (2, 2) and spectral(c) for c in convs)  # 32 -> 4
    assert [c.out_channels for c in convs] == [4, 8, 16]
    assert e.fc_mu.in_features == 16 * 4 * 4
    with pytest.raises(ConfigError, match=r"image_size"):
        ConvEncoder(3, 24)


@pytest.mark.slow
def test_parameter_counts_equal_the_reference() -> None:
    # NVlabs/SPADE at its defaults (ngf = ndf = 64, z_dim 256, num_D 2, n_layers_D 4, 128 SPADE
    # hidden channels), Cityscapes' 35 label channels at 256 px, counted by instantiating its code.
    assert n_params(SPADEGenerator(35, 3, 256)) == 93_018_051
    assert n_params(MultiscaleDiscriminator(label_channels=35, image_channels=3, image_size=256)) == 5_599_362
    multimodal = SPADEGenerator(35, 3, 256, use_vae=True)
    assert multimodal.encoder is not None
    encoder = n_params(multimodal.encoder)
    assert encoder == 10_463_424  # the reference's ConvEncoder (netE)
    # The reference's netG with --use_vae (its encoder apart): ours holds the encoder inside G.
    assert n_params(multimodal) - encoder == 109_537_219
    assert n_params(multimodal) == 109_537_219 + 10_463_424


# -- the discriminator -------------------------------------------------------------------------
def test_each_scale_returns_its_layer_outputs_ending_with_the_logits() -> None:
    torch.manual_seed(0)
    d = MultiscaleDiscriminator(K, 3, 32, ndf=4, n_layers=3, num_d=3).eval()
    assert d.input_shape == (K + 3, 32, 32)
    x = torch.randn(2, K + 3, 32, 32)
    outputs = d(x)
    assert len(outputs) == 3 and all(len(layers) == 3 + 1 for layers in outputs)
    assert [t.shape[1] for t in outputs[0]] == [4, 8, 16, 1]
    # Each scale sees the input average-pooled once more than the previous one.
    pooled = x
    for i, layers in enumerate(outputs):
        if i > 0:
            pooled = F.avg_pool2d(pooled, 3, 2, 1, count_include_pad=False)
        expected = d.scales[i](pooled)
        assert all(torch.equal(a, b) for a, b in zip(layers, expected, strict=True))
    assert outputs[1][-1].shape[-1] < outputs[0][-1].shape[-1]


def test_scales_have_their_own_weights() -> None:
    d = MultiscaleDiscriminator(K, 3, 32, ndf=4, n_layers=3, num_d=2)
    a, b = (dict(s.named_parameters()) for s in d.scales)
    assert a.keys() == b.keys() and all(a[k] is not b[k] for k in a)


def test_final_logits_concatenate_every_scale_per_sample() -> None:
    torch.manual_seed(0)
    d = MultiscaleDiscriminator(K, 3, 32, ndf=4, n_layers=3, num_d=2).eval()
    x = torch.randn(3, K + 3, 32, 32)
    outputs = d(x)
    logits = final_logits(outputs)
    sizes = [layers[-1][0].numel() for layers in outputs]
    assert logits.shape == (3, sum(sizes))
    torch.testing.assert_close(logits[:, : sizes[0]], outputs[0][-1].flatten(1), rtol=0, atol=0)
    torch.testing.assert_close(logits[:, sizes[0] :], outputs[1][-1].flatten(1), rtol=0, atol=0)
    # Instance norm: a sample's logits do not depend on the rest of the batch.
    torch.testing.assert_close(final_logits(d(x[1:2])), logits[1:2])


def test_discriminator_layers_follow_the_reference() -> None:
    scale = NLayerDiscriminator(7, ndf=64, n_layers=4)
    convs = [m for m in scale.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    assert all(c.kernel_size == (4, 4) and c.padding == (2, 2) for c in convs)
    assert all(spectral(c) for c in convs)
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in scale.modules()) == 3  # not after the first
    # Channels are capped at 512.
    deep = NLayerDiscriminator(7, ndf=64, n_layers=6)
    assert [m.out_channels for m in deep.modules() if isinstance(m, nn.Conv2d)] == [
        64,
        128,
        256,
        512,
        512,
        512,
        1,
    ]


def test_spectral_norm_is_on_every_conv_of_the_multiscale_discriminator() -> None:
    d = MultiscaleDiscriminator(K, 3, 32, ndf=4, n_layers=3)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2 * 4 and all(spectral(c) for c in convs)
    plain = MultiscaleDiscriminator(K, 3, 32, ndf=4, n_layers=3, spectral_norm=False, norm="none")
    assert not any(spectral(m) for m in plain.modules())
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in plain.modules())
    assert d.norm == "instance" and plain.norm == "none"


def test_too_small_an_image_for_the_scales_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        MultiscaleDiscriminator(K, 3, 8, ndf=4, n_layers=4, num_d=2)
    message = str(info.value)
    assert "num_d=2" in message and "n_layers=4" in message and "8 px" in message
    # The smallest size that keeps a patch at the coarsest scale: 16 / 2 / 2**3 = 1.
    assert MultiscaleDiscriminator(K, 3, 16, ndf=4, n_layers=4, num_d=2).input_shape == (K + 3, 16, 16)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"num_d": 0}, "num_d"),
        ({"label_channels": True}, "label_channels"),
        ({"norm": "layer"}, "norm='layer'"),
    ],
)
def test_bad_discriminator_settings_are_config_errors(kwargs, needle: str) -> None:
    options = {"label_channels": K, "image_channels": 3, "image_size": 32, "ndf": 4, "n_layers": 3, **kwargs}
    with pytest.raises(ConfigError, match=needle):
        MultiscaleDiscriminator(**options)
