"""Perceptual losses (losses/perceptual.py): Gram matrix and total variation against hand-computed
values, content loss on a feature network passed in, style loss that an optimised image lowers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.losses.perceptual import PerceptualLoss, StyleLoss, gram_matrix, total_variation
from gan_research.networks.perceptual import RandomFeatures


@pytest.fixture(autouse=True)
def one_thread():
    # Tensors of a few hundred elements gain nothing from intra-op threads, and on shared cores the
    # threads spin against each other (20 Adam steps: 0.1 s on one thread, 5 s on two busy ones).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Identity(nn.Module):
    """A feature network whose one layer is the image itself: the losses' arithmetic in pixels."""

    layers = ("pixels",)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"pixels": x}


def test_gram_matrix_by_hand() -> None:
    # Two channels over two positions: F = [[1, 2], [3, 4]].
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 1, 2)
    # G_ij = sum_k F_ik F_jk = [[1+4, 3+8], [3+8, 9+16]], divided by C*H*W = 2*1*2 = 4.
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4
    torch.testing.assert_close(gram_matrix(features), expected)
    assert gram_matrix(torch.rand(3, 5, 4, 4)).shape == (3, 5, 5)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        gram_matrix(torch.rand(2, 5))


def test_total_variation_by_hand() -> None:
    x = torch.tensor([[0.0, 1.0], [3.0, 5.0]]).reshape(1, 1, 2, 2)
    # Vertical differences 3, 4 (mean |.| 3.5); horizontal 1, 2 (mean 1.5).
    assert total_variation(x).item() == pytest.approx(5.0)
    # Squared: (9 + 16) / 2 + (1 + 4) / 2.
    assert total_variation(x, squared=True).item() == pytest.approx(15.0)
    assert total_variation(torch.ones(2, 3, 4, 4)).item() == 0


def test_content_loss_is_the_feature_distance() -> None:
    x, y = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    mse = PerceptualLoss(Identity(), {"pixels": 2.0})
    torch.testing.assert_close(mse(x, y), 2 * F.mse_loss(x, y))
    assert mse(x, x).item() == 0
    l1 = PerceptualLoss(Identity(), {"pixels": 1.0}, criterion="l1")
    torch.testing.assert_close(l1(x, y), F.l1_loss(x, y))


def test_feature_scale_divides_the_features_as_srgan() -> None:
    # Ledig et al. 2017 §3.2: VGG features / 12.75, i.e. the MSE times 1 / 12.75^2 ~ 0.006.
    x, y = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
    scaled = PerceptualLoss(Identity(), {"pixels": 1.0}, feature_scale=12.75)
    torch.testing.assert_close(scaled(x, y), F.mse_loss(x, y) / 12.75**2)


def test_gradients_reach_the_input_not_the_target() -> None:
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    target = torch.rand(1, 3, 8, 8, requires_grad=True)
    loss = PerceptualLoss(RandomFeatures(channels=(4, 8)), {"scale1": 1.0, "scale2": 0.5})
    loss(x, target).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert target.grad is None


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"\['relu5_4'\].*\('pixels',\)"):
        PerceptualLoss(Identity(), {"relu5_4": 1.0})
    with pytest.raises(ConfigError, match="criterion 'l3'"):
        PerceptualLoss(Identity(), {"pixels": 1.0}, criterion="l3")
    with pytest.raises(ConfigError, match="feature_scale"):
        PerceptualLoss(Identity(), {"pixels": 1.0}, feature_scale=0)
    with pytest.raises(ConfigError, match="empty"):
        StyleLoss(Identity(), {})
    with pytest.raises(ConfigError, match=">= 0"):
        StyleLoss(Identity(), {"pixels": -1.0})


def test_style_loss_is_the_gram_distance() -> None:
    style, x = torch.rand(1, 3, 4, 4), torch.rand(2, 3, 4, 4)
    loss = StyleLoss(Identity(), {"pixels": 3.0})
    with pytest.raises(RuntimeError, match="set_style"):
        loss(x)
    loss.set_style(style)
    expected = 3 * F.mse_loss(gram_matrix(x), gram_matrix(style).expand(2, 3, 3))
    torch.testing.assert_close(loss(x), expected)
    assert loss(style).item() == pytest.approx(0.0, abs=1e-7)
    assert loss.state_dict() == {}  # the style is an input, not a learned state


def test_optimising_an_image_towards_a_style_lowers_the_style_loss() -> None:
    generator = torch.Generator().manual_seed(0)
    # A striped style and a noise image, 16 x 16; random features (no weights file needed).
    style = torch.sin(torch.arange(16.0)).repeat(1, 3, 16, 1)
    image = (torch.rand(1, 3, 16, 16, generator=generator) * 2 - 1).requires_grad_(True)
    loss = StyleLoss(RandomFeatures(seed=0, channels=(8, 16)), {"scale1": 1.0, "scale2": 1.0})
    loss.set_style(style)
    optimizer = torch.optim.Adam([image], lr=0.05)
    first = loss(image).item()
    for _ in range(20):
        optimizer.zero_grad()
        loss(image).backward()
        optimizer.step()
    assert loss(image).item() < 0.5 * first


def test_perceptual_none_is_no_network_even_with_an_experiments_keys_merged_in() -> None:
    from omegaconf import OmegaConf

    from gan_research.errors import ConfigError
    from gan_research.losses.perceptual import feature_network_or_none

    net = torch.nn.Conv2d(1, 1, 1)
    assert feature_network_or_none(net) is net
    assert feature_network_or_none(None) is None
    # perceptual=none: an empty node, or the keys an experiment sets for its usual network
    # (spade_cityscapes' perceptual.layers) merged into it; both mean no network.
    assert feature_network_or_none(OmegaConf.create({})) is None
    assert feature_network_or_none(OmegaConf.create({"layers": ["relu1_1"]})) is None
    # A node with a target Hydra did not build is an error, naming the key.
    with pytest.raises(ConfigError, match=r"model.perceptual must be a feature network or none"):
        feature_network_or_none(OmegaConf.create({"_target_": "x.Y"}))
    with pytest.raises(ConfigError, match=r"model.perceptual"):
        feature_network_or_none(3)
