"""CycleGAN's network pairs: shapes, checks, instantiation from config on their own, and the
default pairs' parameter counts (the reference prints 11.378 M per generator and 2.765 M per
discriminator for resnet_9blocks / basic D on RGB, junyanz/pytorch-CycleGAN-and-pix2pix)."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from gan_research.errors import ConfigError
from gan_research.networks.pairs import DiscriminatorPair, TranslationPair
from gan_research.networks.patchgan import PatchGANDiscriminator
from gan_research.networks.resnet_generator import ResnetGenerator


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tiny_g(c_in: int, c_out: int, size: int = 16) -> ResnetGenerator:
    return ResnetGenerator(c_in, c_out, ngf=4, n_blocks=1, image_size=size)


def tiny_d(channels: int, size: int = 16) -> PatchGANDiscriminator:
    return PatchGANDiscriminator(channels, ndf=4, n_layers=2, norm="instance", image_size=size)


def test_translation_pair_shapes_and_forward():
    g, f = tiny_g(1, 3), tiny_g(3, 1)
    pair = TranslationPair(g, f)
    assert pair.input_shape == (1, 16, 16) and pair.output_shape == (3, 16, 16)
    a = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(pair(a), g(a))
    assert n_params(pair) == n_params(g) + n_params(f)


def test_translation_pair_errors():
    with pytest.raises(ConfigError, match=r"b_to_a must map \(3, 16, 16\) -> \(1, 16, 16\)"):
        TranslationPair(tiny_g(1, 3), tiny_g(1, 3))
    with pytest.raises(ConfigError, match="b_to_a must map"):
        TranslationPair(tiny_g(1, 1, 16), tiny_g(1, 1, 32))
    with pytest.raises(ConfigError, match="lacks the attribute 'input_shape'"):
        TranslationPair(nn.Identity(), tiny_g(1, 1))


def test_discriminator_pair_shapes_and_forward():
    d_a, d_b = tiny_d(1), tiny_d(3)
    pair = DiscriminatorPair(d_a, d_b)
    assert pair.input_shape_a == (1, 16, 16) and pair.input_shape == (3, 16, 16)
    a, b = torch.randn(2, 1, 16, 16), torch.randn(2, 3, 16, 16)
    out_a, out_b = pair(a, b)
    torch.testing.assert_close(out_a, d_a(a))
    torch.testing.assert_close(out_b, d_b(b))
    with pytest.raises(ConfigError, match="d_b"):
        DiscriminatorPair(d_a, nn.Identity())


def test_compile_reaches_each_member(monkeypatch):
    calls: list[str] = []
    pair = TranslationPair(tiny_g(1, 1), tiny_g(1, 1))
    discs = DiscriminatorPair(tiny_d(1), tiny_d(1))
    for name, module in (("g", pair.a_to_b), ("f", pair.b_to_a), ("d_a", discs.d_a), ("d_b", discs.d_b)):
        monkeypatch.setattr(module, "compile", lambda *a, _n=name, **k: calls.append(_n))
    pair.compile(backend="eager")
    discs.compile()
    assert calls == ["g", "f", "d_a", "d_b"]


def test_pairs_instantiate_from_config_on_their_own(make_cfg):
    cfg = make_cfg(
        "model=cyclegan",
        "dataset=digits_inverted",
        "model.generator.a_to_b.ngf=8",
        "model.generator.a_to_b.n_blocks=2",
        "model.discriminator.d_a.ndf=8",
    )
    g, d = instantiate(cfg.model.generator), instantiate(cfg.model.discriminator)
    assert isinstance(g, TranslationPair) and isinstance(d, DiscriminatorPair)
    # F and D_B follow G's and D_A's widths unless set on their own.
    assert n_params(g.a_to_b) == n_params(g.b_to_a) == n_params(ResnetGenerator(1, 1, 8, 2, image_size=32))
    assert n_params(d.d_a) == n_params(d.d_b)
    assert g.output_shape == d.input_shape == (1, 32, 32)


def test_default_pairs_have_the_reference_parameter_counts(make_cfg, tmp_path):
    # dataset=unpaired_folder: RGB at 256 px, the CycleGAN datasets' setting; tiny=False: the
    # model config's own widths.
    cfg = make_cfg("model=cyclegan", "dataset=unpaired_folder", f"dataset.root={tmp_path}", tiny=False)
    g, d = instantiate(cfg.model.generator), instantiate(cfg.model.discriminator)
    assert [n_params(g.a_to_b), n_params(g.b_to_a)] == [11_378_179, 11_378_179]
    assert [n_params(d.d_a), n_params(d.d_b)] == [2_764_737, 2_764_737]
    assert g.input_shape == g.output_shape == d.input_shape == (3, 256, 256)
