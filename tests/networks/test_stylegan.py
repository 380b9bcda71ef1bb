"""StyleGAN / StyleGAN2 networks: demodulation, AdaIN, style routing, truncation, shapes, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gan_research.errors import ConfigError
from gan_research.networks.stylegan import (
    AdaIN,
    MappingNetwork,
    ModulatedConv2d,
    StyleGAN2Discriminator,
    StyleGANGenerator,
    mix_styles,
    num_styles,
    style_groups,
    truncate,
)

TINY = {"latent_dim": 16, "w_dim": 16, "fmap_base": 128, "fmap_max": 16, "mapping_layers": 2}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: with several threads on a shared CPU, thread synchronisation costs more
    than the convolutions themselves (about 10x here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_generator(version: int = 2, **kwargs) -> StyleGANGenerator:
    return StyleGANGenerator(image_size=32, channels=1, version=version, **{**TINY, **kwargs})


def modulated_output_std(demodulate: bool) -> float:
    torch.manual_seed(0)
    conv = ModulatedConv2d(64, 64, 3, w_dim=8, demodulate=demodulate)
    x = torch.randn(16, 64, 16, 16)
    # Random styles far from 1: demodulation must undo their scale, plain modulation keeps it.
    styles = torch.randn(16, 64) * 3.0
    with torch.no_grad():
        out = conv(x, torch.zeros(16, 8), styles=styles)
    # Ignore the zero-padded border, where fewer inputs contribute.
    return out[:, :, 1:-1, 1:-1].std().item()


def test_demodulation_gives_unit_variance_outputs():
    """StyleGAN2 eq. 2-3: unit-variance i.i.d. input and any styles → unit-variance outputs."""
    assert modulated_output_std(True) == pytest.approx(1.0, abs=0.05)


def test_without_demodulation_the_output_scale_follows_the_styles():
    assert abs(modulated_output_std(False) - 1.0) > 0.5


def test_demodulated_weights_have_unit_norm_per_output_channel():
    conv = ModulatedConv2d(8, 4, 3, w_dim=8, demodulate=True)
    w = conv.modulated_weight(torch.randn(5, 8) * 4)
    assert torch.allclose(w.pow(2).sum(dim=(2, 3, 4)), torch.ones(5, 4), atol=1e-5)


def test_forward_is_the_convolution_with_the_modulated_weights():
    """The batched (non-fused) forward equals a per-sample convolution with eq. 1-3's weights."""
    torch.manual_seed(0)
    for demodulate in (True, False):
        conv = ModulatedConv2d(6, 5, 3, w_dim=8, demodulate=demodulate)
        x, styles = torch.randn(3, 6, 8, 8), torch.randn(3, 6) * 2
        weights = conv.modulated_weight(styles)
        expected = torch.cat([F.conv2d(x[b : b + 1], weights[b], padding=1) for b in range(3)])
        assert torch.allclose(conv(x, torch.zeros(3, 8), styles=styles), expected, atol=1e-5)


def test_adain_output_statistics_are_the_styles_scale_and_bias():
    """StyleGAN eq. 1: per sample and channel, mean y_b and std |y_s|."""
    torch.manual_seed(0)
    adain = AdaIN(channels=6, w_dim=8)
    x = torch.randn(3, 6, 16, 16) * 5 + 2
    w = torch.randn(3, 8)
    with torch.no_grad():
        out = adain(x, w)
        y_s, y_b = adain.style(w)
    assert torch.allclose(out.mean(dim=(2, 3)), y_b, atol=1e-4)
    assert torch.allclose(out.std(dim=(2, 3), unbiased=False), y_s.abs(), atol=1e-3)


@pytest.mark.parametrize("version", [1, 2])
def test_mixing_switches_styles_at_the_crossover_layer(version):
    """Every layer reads its own style index: with ws mixed at k, layers reading indices < k
    receive w1, the others w2 (checked on the w each layer's forward is called with)."""
    torch.manual_seed(0)
    g = tiny_generator(version)
    z1, z2 = torch.randn(2, 16), torch.randn(2, 16)
    ws1, ws2 = g.mapping(z1), g.mapping(z2)
    k = 3
    mixed = mix_styles(ws1, ws2, k)
    seen: dict[str, torch.Tensor] = {}

    def hook(name):
        return lambda module, args: seen.__setitem__(name, args[1].detach())

    for name, module in g.synthesis_network.layers.items():
        module.register_forward_pre_hook(hook(name))
    for name, module in g.synthesis_network.to_rgb.items():
        module.register_forward_pre_hook(hook(f"torgb{name[1:]}"))
    g.synthesis(mixed)
    assert [name for name, _ in g.synthesis_network.layer_styles] == list(seen)
    for name, index in g.synthesis_network.layer_styles:
        expected = ws1[:, 0] if index < k else ws2[:, 0]
        assert torch.equal(seen[name], expected), (name, index)


def test_mix_styles_per_sample_crossover():
    ws1, ws2 = torch.zeros(2, 8, 4), torch.ones(2, 8, 4)
    mixed = mix_styles(ws1, ws2, torch.tensor([2, 5]))
    assert mixed[0, :2].eq(0).all() and mixed[0, 2:].eq(1).all()
    assert mixed[1, :5].eq(0).all() and mixed[1, 5:].eq(1).all()


def test_truncation_moves_w_toward_the_mean():
    torch.manual_seed(0)
    g = tiny_generator()
    g.mapping_network.w_avg.copy_(torch.randn(16))
    z = torch.randn(4, 16)
    ws = g.mapping(z, update_w_avg=False)
    w_avg = g.w_avg
    assert torch.allclose(g.mapping(z, truncation_psi=0.0, update_w_avg=False), w_avg.expand_as(ws))
    assert torch.equal(g.mapping(z, truncation_psi=1.0, update_w_avg=False), ws)
    distance = (ws - w_avg).norm(dim=-1)
    for psi in (0.25, 0.5, 0.7):
        truncated = g.mapping(z, truncation_psi=psi, update_w_avg=False)
        assert torch.allclose((truncated - w_avg).norm(dim=-1), psi * distance, rtol=1e-4)
    # A cutoff truncates only the first styles.
    partial = truncate(ws, w_avg, 0.0, cutoff=2)
    assert torch.allclose(partial[:, :2], w_avg.expand(4, 2, 16)) and torch.equal(partial[:, 2:], ws[:, 2:])


def test_w_avg_tracks_the_mapping_outputs_in_training_only():
    torch.manual_seed(0)
    mapping = MappingNetwork(16, 16, num_layers=2, w_avg_beta=0.5)
    z = torch.randn(8, 16)
    mapping.eval()
    mapping(z)
    assert mapping.w_avg.eq(0).all()
    mapping.train()
    w = mapping(z)
    assert torch.allclose(mapping.w_avg, 0.5 * w.detach().mean(0))


def test_mapping_normalises_z_and_has_the_papers_depth_and_lr_multiplier():
    mapping = MappingNetwork()
    assert len(mapping.layers) == 8 and all(layer.lr_multiplier == 0.01 for layer in mapping.layers)
    z = torch.randn(4, 512)
    assert torch.allclose(mapping(z, update_w_avg=False), mapping(z * 7.0, update_w_avg=False), atol=1e-4)


@pytest.mark.parametrize("version", [1, 2])
def test_generator_and_discriminator_shapes(version):
    g = tiny_generator(version)
    d = StyleGAN2Discriminator(image_size=32, channels=1, fmap_base=128, fmap_max=16)
    assert g.num_ws == num_styles(32) == 8
    x = g(torch.randn(4, 16))
    assert x.shape == (4, 1, 32, 32) == (4, *g.output_shape)
    assert d(x).shape == (4,) and tuple(d.input_shape) == g.output_shape


@pytest.mark.parametrize("version", [1, 2])
def test_noise_strength_is_per_channel_in_v1_and_one_scalar_per_layer_in_v2(version):
    """v1: StyleGAN's B, learned per-feature scaling factors (sec. 2, Fig. 1b). v2: one scalar
    per layer, stylegan2-ada-pytorch training/networks.py SynthesisLayer:
    ``self.noise_strength = torch.nn.Parameter(torch.zeros([]))``."""
    layers = tiny_generator(version).synthesis_network.layers
    for layer in layers.values():
        strength = layer.noise.strength
        expected = (layer.bias.shape[0],) if version == 1 else ()
        assert strength.shape == expected and strength.eq(0).all()


def test_noise_inputs_start_at_zero_strength():
    g = tiny_generator(2)
    strengths = [m.noise.strength for m in g.synthesis_network.layers.values()]
    assert all(s.dim() == 0 and s.eq(0).all() for s in strengths)
    torch.manual_seed(1)
    ws = g.mapping(torch.randn(2, 16))
    # Zero strengths: random and no noise give the same image; a strength makes them differ.
    assert torch.allclose(g.synthesis(ws, "random"), g.synthesis(ws, "none"), atol=1e-6)
    with torch.no_grad():
        for s in strengths:
            s.fill_(0.5)
    assert not torch.allclose(g.synthesis(ws, "random"), g.synthesis(ws, "none"))
    assert torch.equal(g.synthesis(ws, "const"), g.synthesis(ws, "const"))


def test_parameter_counts_match_the_official_config_f_at_1024():
    """stylegan2-ada-pytorch config-f (paper config): D 29.0M, G synthesis 28.3M, mapping 2.1M."""
    d = StyleGAN2Discriminator(image_size=1024, channels=3)
    assert sum(p.numel() for p in d.parameters()) / 1e6 == pytest.approx(29.0, abs=0.1)
    g = StyleGANGenerator(image_size=1024, channels=3)
    assert g.num_ws == 18
    assert sum(p.numel() for p in g.mapping_network.parameters()) == 8 * (512 * 512 + 512)
    # Exactly the official synthesis network (stylegan2-ada-pytorch SynthesisNetwork, config-f, skip
    # to-RGB): 28,268,812, so G has 30,370,060 parameters. Its 17 SynthesisLayers have one scalar
    # noise strength each; per-channel strengths (as before issue 14) added 5,551 (sum of their widths
    # minus 17).
    assert sum(p.numel() for p in g.synthesis_network.parameters()) == 28_268_812
    assert sum(p.numel() for p in g.parameters()) == 30_370_060


def test_style_groups_cover_every_style():
    for size in (32, 64, 1024):
        groups = style_groups(size)
        covered = sorted(i for s in groups.values() for i in range(num_styles(size))[s])
        assert covered == list(range(num_styles(size)))
    assert style_groups(1024)["fine"] == slice(8, 18)


@pytest.mark.parametrize("size", [16, 48, 2048, 32.0, True])
def test_bad_image_size_is_a_config_error_naming_the_valid_sizes(size):
    with pytest.raises(ConfigError, match="32, 64, 128, 256, 512, 1024"):
        StyleGANGenerator(image_size=size, **TINY)
    with pytest.raises(ConfigError, match="image_size"):
        StyleGAN2Discriminator(image_size=size)


def test_bad_version_is_a_config_error():
    with pytest.raises(ConfigError, match=r"version=3 .*\[1, 2\]"):
        tiny_generator(version=3)
