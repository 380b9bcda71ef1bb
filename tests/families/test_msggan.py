"""MSG-GAN's family: the pyramids that reach D through the shared GAN step (fakes: G's image at
every scale; reals: average-pooled), and D's gradient reaching every scale's block of G."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gan_research.errors import ConfigError
from gan_research.families.msggan import MSGGAN
from gan_research.networks.msggan import unpack_scales
from gan_research.train import build

MSG = ("model=msggan", "dataset=digits", "model.width=8", "dataset.batch_size=4", "metrics=none", "threads=1")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def model(make_cfg) -> MSGGAN:
    return build(make_cfg(*MSG, "loss=relativistic_hinge"), prepare_evaluation=False)["model"]


def test_fakes_are_every_scale_of_g_and_reals_their_average_pooled_pyramid(model):
    z = torch.randn(3, model.generator.latent_dim)
    scales = model.generator.scales
    assert tuple(scales) == (4, 8, 16, 32)
    fake_scales = unpack_scales(model.generate_fake(z, None), scales)
    for got, expected in zip(fake_scales, model.generator.forward_scales(z), strict=True):
        torch.testing.assert_close(got, expected)
    real = torch.rand(3, 1, 32, 32) * 2 - 1
    real_scales = unpack_scales(model.real_samples(real), scales)
    torch.testing.assert_close(real_scales[-1], real)
    torch.testing.assert_close(real_scales[0], F.avg_pool2d(real, 8))
    # Both kinds have one shape, so flips, noise and penalties mix them elementwise.
    assert model.real_samples(real).shape == model.generate_fake(z, None).shape


def test_ds_gradient_reaches_every_scales_to_rgb_through_the_family(model):
    z = torch.randn(4, model.generator.latent_dim)
    scores, _ = model.discriminate(model.add_instance_noise(model.generate_fake(z, None)), None)
    scores.sum().backward()
    grads = [next(rgb.parameters()).grad for rgb in model.generator.to_rgb]
    assert len(grads) == 4 and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_a_network_pair_of_other_scales_is_refused(make_cfg):
    with pytest.raises(ConfigError, match="multi-scale generator"):
        build(
            make_cfg(
                *MSG,
                "model.generator._target_=gan_research.networks.dcgan.DCGANGenerator",
                "~model.generator.fmap_base",
                "~model.generator.fmap_max",
                "~model.generator.leaky_slope",
                "~model.generator.pixel_norm",
                "~model.generator.equalized_lr",
                "~model.generator.tanh",
                "+model.generator.ngf=8",
            ),
            prepare_evaluation=False,
        )


def test_scales_grid_holds_one_atlas_per_sample(model):
    grids = model.extra_grids()
    atlases, per_row = grids["scales"]
    assert per_row == 4 and atlases.shape == (16, 1, 32, 48)
