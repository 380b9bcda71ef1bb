"""PacGAN's 2-D networks (networks/pacgan.py) against the reference fjxmlzn/PacGAN 2DRing/2DGrid tasks."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn
from torch.nn.utils import parametrize

from gan_research.networks.collapse import Maxout, pack
from gan_research.networks.pacgan import MaxoutDiscriminator, PacGANGenerator


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_generator_parameter_count_is_the_references() -> None:
    # decoder dims [2, 400, 400, 400, 400, 2], hidden Linears without bias, each followed by a
    # batch norm with a scale and a shift; the output Linear has a bias.
    first = 2 * 400 + 2 * 400
    hidden = 3 * (400 * 400 + 2 * 400)
    output = 400 * 2 + 2
    assert first + hidden + output == 484_802
    assert n_params(PacGANGenerator()) == 484_802


@pytest.mark.parametrize("packing", [1, 4])
def test_discriminator_parameter_count_is_the_references(packing: int) -> None:
    # LinearMaxout(2·m → 200, 5 pieces) = Linear(2·m, 1000), then two LinearMaxout(200 → 200, 5
    # pieces) = Linear(200, 1000), then Linear(200, 1); every layer with a bias.
    expected = (2 * packing * 1000 + 1000) + 2 * (200 * 1000 + 1000) + (200 + 1)
    assert expected == {1: 405_201, 4: 411_201}[packing]
    assert n_params(MaxoutDiscriminator(packing=packing)) == expected


def test_generator_layers_are_the_references() -> None:
    g = PacGANGenerator()
    assert g.latent_dim == 2 and g.output_shape == (2,)
    kinds = [type(m) for m in g.main]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 4 + [nn.Linear]
    linears = [m for m in g.main if isinstance(m, nn.Linear)]
    assert [m.bias is None for m in linears] == [True] * 4 + [False]
    norms = [m for m in g.main if isinstance(m, nn.BatchNorm1d)]
    # blocks' BatchNormalization: epsilon 1e-4; the task's population update m·0.05 + p·0.95.
    assert {(m.eps, m.momentum) for m in norms} == {(1e-4, 0.05)}


def test_discriminator_layers_are_the_references() -> None:
    d = MaxoutDiscriminator(packing=3)
    assert d.packing == 3 and d.input_shape == (6,)
    maxouts = list(d.main)[:-1]
    assert all(isinstance(m, Maxout) for m in maxouts) and len(maxouts) == 3
    assert [(m.in_features, m.out_features, m.pieces) for m in maxouts] == [
        (6, 200, 5),
        (200, 200, 5),
        (200, 200, 5),
    ]
    assert isinstance(d.main[-1], nn.Linear) and (d.main[-1].in_features, d.main[-1].out_features) == (200, 1)
    assert list(MaxoutDiscriminator().state_dict()) == [
        "main.0.linear.weight",
        "main.0.linear.bias",
        "main.1.linear.weight",
        "main.1.linear.bias",
        "main.2.linear.weight",
        "main.2.linear.bias",
        "main.3.weight",
        "main.3.bias",
    ]


@pytest.mark.parametrize("build", [PacGANGenerator, MaxoutDiscriminator])
def test_initialisation_is_the_references(build: type) -> None:
    torch.manual_seed(0)
    net = build()
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    for layer in linears:
        if layer.weight.numel() >= 10_000:  # enough entries for a tight estimate of the std
            assert layer.weight.std().item() == pytest.approx(0.02, rel=0.05)
        assert layer.weight.abs().max() < 0.02 * 7
        if layer.bias is not None:
            assert torch.count_nonzero(layer.bias) == 0
    for norm in (m for m in net.modules() if isinstance(m, nn.BatchNorm1d)):
        assert torch.equal(norm.weight, torch.ones_like(norm.weight))
        assert torch.count_nonzero(norm.bias) == 0


def test_shapes_and_packing() -> None:
    g, d = PacGANGenerator(hidden_dim=16), MaxoutDiscriminator(hidden_dim=8, packing=2)
    samples = g(torch.randn(6, 2))
    assert samples.shape == (6, 2)
    packs = pack(samples, 2)
    assert packs.shape == (3, 4) == (3, *d.input_shape)
    assert d(packs).shape == (3,)
    assert d.features(packs).shape == (3, 8)


def test_discriminator_options() -> None:
    d = MaxoutDiscriminator(hidden_dim=8, minibatch_discrimination={"num_kernels": 3}, minibatch_std=2)
    assert d.main[-1].in_features == 8 + 3 + 1
    x = torch.randn(4, 2)
    assert d(x).shape == (4,)
    torch.testing.assert_close(d.features(x), d.main[:-1](x))


def test_spectral_norm_wraps_every_linear() -> None:
    d = MaxoutDiscriminator(hidden_dim=8, spectral_norm=True)
    linears = [m for m in d.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 4 and all(parametrize.is_parametrized(m, "weight") for m in linears)
    assert d(torch.randn(4, 2)).shape == (4,)


def test_hydra_instantiates_with_a_nested_minibatch_discrimination_config() -> None:
    cfg = OmegaConf.create(
        {
            "_target_": "gan_research.networks.pacgan.MaxoutDiscriminator",
            "hidden_dim": 8,
            "packing": 2,
            "minibatch_discrimination": {"num_kernels": 3, "kernel_dim": 2},
        }
    )
    d = instantiate(cfg)
    assert d.input_shape == (4,) and d.main[-1].in_features == 8 + 3
    assert d(torch.randn(4, 4)).shape == (4,)
