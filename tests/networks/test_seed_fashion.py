"""Seed 004's Fashion-MNIST GAN: the PyTorch port reproduces its Keras summary tables."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from gan_research.errors import ConfigError
from gan_research.networks import SeedFashionDiscriminator, SeedFashionGenerator
from gan_research.networks.seed_fashion import KerasSameConv2d

# Rows of the seed's Keras summaries: (layer type, output shape without the batch, params),
# with NHWC shapes turned into NCHW. The generator's last Keras row, Conv2D(activation='tanh'),
# is two modules here, hence the extra Tanh row.
GENERATOR_TABLE = [
    ("Dense", (6272,), 809_088),
    ("LeakyReLU", (6272,), 0),
    ("Reshape", (128, 7, 7), 0),
    ("Conv2DTranspose", (128, 14, 14), 262_272),
    ("LeakyReLU", (128, 14, 14), 0),
    ("BatchNormalization", (128, 14, 14), 512),
    ("Conv2DTranspose", (1, 28, 28), 2_049),
    ("LeakyReLU", (1, 28, 28), 0),
    ("BatchNormalization", (1, 28, 28), 4),
    ("Conv2D", (128, 28, 28), 2_176),
    ("LeakyReLU", (128, 28, 28), 0),
    ("Conv2D", (128, 28, 28), 262_272),
    ("LeakyReLU", (128, 28, 28), 0),
    ("Conv2D", (1, 28, 28), 2_049),
    ("tanh", (1, 28, 28), 0),
]
DISCRIMINATOR_TABLE = [
    ("Conv2D", (32, 24, 24), 832),
    ("LeakyReLU", (32, 24, 24), 0),
    ("Dropout", (32, 24, 24), 0),
    ("Conv2D", (64, 20, 20), 51_264),
    ("LeakyReLU", (64, 20, 20), 0),
    ("Dropout", (64, 20, 20), 0),
    ("Conv2D", (128, 16, 16), 204_928),
    ("LeakyReLU", (128, 16, 16), 0),
    ("Dropout", (128, 16, 16), 0),
    ("Conv2D", (256, 12, 12), 819_456),
    ("LeakyReLU", (256, 12, 12), 0),
    ("Dropout", (256, 12, 12), 0),
    ("Flatten", (36_864,), 0),
    ("Dropout", (36_864,), 0),
    ("Dense", (1,), 36_865),
]
KERAS_TO_TORCH = {
    "Dense": nn.Linear,
    "LeakyReLU": nn.LeakyReLU,
    "Reshape": nn.Unflatten,
    "Conv2DTranspose": nn.ConvTranspose2d,
    "BatchNormalization": nn.BatchNorm2d,
    "Conv2D": nn.Conv2d,
    "tanh": nn.Tanh,
    "Dropout": nn.Dropout,
    "Flatten": nn.Flatten,
}


def keras_params(module: nn.Module) -> int:
    """Keras' count: trainable weights plus batch-norm moving mean/variance."""
    return sum(p.numel() for p in module.parameters()) + running_stats(module)


def running_stats(module: nn.Module) -> int:
    names = {"running_mean", "running_var"}
    return sum(b.numel() for name, b in module.named_buffers() if name.rsplit(".", 1)[-1] in names)


def trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    ("build", "table", "input_shape"),
    [
        (SeedFashionGenerator, GENERATOR_TABLE, (128,)),
        (SeedFashionDiscriminator, DISCRIMINATOR_TABLE, (1, 28, 28)),
    ],
)
def test_layers_match_the_keras_table(build: type, table: list, input_shape: tuple) -> None:
    net = build()
    assert len(net.main) == len(table)
    x = torch.randn(2, *input_shape)
    for layer, (keras_type, shape, params) in zip(net.main, table, strict=True):
        x = layer(x)
        assert isinstance(layer, KERAS_TO_TORCH[keras_type]), (layer, keras_type)
        assert tuple(x.shape[1:]) == shape, (layer, keras_type)
        assert keras_params(layer) == params, (layer, keras_type)


def test_parameter_counts_match_the_seed() -> None:
    g, d = SeedFashionGenerator(), SeedFashionDiscriminator()
    assert trainable(g) == 1_340_164
    assert trainable(d) == 1_113_345
    # Keras' 258 non-trainable parameters are the BN moving statistics: 2·(128 + 1).
    assert running_stats(g) == 258
    assert keras_params(g) == 1_340_422
    assert not list(d.buffers())


def test_output_shapes_and_range() -> None:
    g, d = SeedFashionGenerator(), SeedFashionDiscriminator()
    images = g(torch.randn(5, 128))
    assert images.shape == (5, 1, 28, 28)
    assert images.abs().max() <= 1.0
    assert d(images).shape == (5,)
    assert g.output_shape == d.input_shape == (1, 28, 28)
    assert g.latent_dim == 128


def test_keras_defaults_are_translated() -> None:
    g, d = SeedFashionGenerator(), SeedFashionDiscriminator()
    norms = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [(m.momentum, m.eps) for m in norms] == [(0.01, 1e-3)] * 2
    assert {m.negative_slope for m in g.modules() if isinstance(m, nn.LeakyReLU)} == {0.2}
    assert {m.p for m in d.modules() if isinstance(m, nn.Dropout)} == {0.4}
    # Glorot-uniform kernels and zero biases, as Keras initialises them.
    dense = g.main[0]
    bound = (6 / (dense.in_features + dense.out_features)) ** 0.5
    assert dense.weight.abs().max() <= bound
    assert torch.all(dense.bias == 0)
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())


def test_constructor_options() -> None:
    g = SeedFashionGenerator(latent_dim=64, leaky_slope=0.3)
    assert g(torch.randn(2, 64)).shape == (2, 1, 28, 28)
    assert {m.negative_slope for m in g.modules() if isinstance(m, nn.LeakyReLU)} == {0.3}
    d = SeedFashionDiscriminator(dropout=0.0, leaky_slope=0.3).eval()
    assert {m.p for m in d.modules() if isinstance(m, nn.Dropout)} == {0.0}


def test_dropout_only_acts_in_training_mode() -> None:
    d = SeedFashionDiscriminator()
    x = torch.randn(4, 1, 28, 28)
    d.eval()
    torch.testing.assert_close(d(x), d(x))
    d.train()
    torch.manual_seed(0)
    first = d(x)
    assert not torch.allclose(first, d(x))


@pytest.mark.parametrize("kernel_size", [3, 4, 5])
def test_keras_same_padding_matches_tensorflow_and_pytorch_same(kernel_size: int) -> None:
    conv = KerasSameConv2d(2, 3, kernel_size)
    x = torch.randn(1, 2, 7, 7)
    before, after = (kernel_size - 1) // 2, kernel_size // 2  # TensorFlow: the odd pixel goes after
    expected = F.conv2d(F.pad(x, (before, after, before, after)), conv.weight, conv.bias)
    torch.testing.assert_close(conv(x), expected)
    with warnings.catch_warnings():
        # PyTorch warns that an even kernel needs a padded copy; the result is what we check.
        warnings.simplefilter("ignore", UserWarning)
        torch_same = F.conv2d(x, conv.weight, conv.bias, padding="same")
    torch.testing.assert_close(conv(x), torch_same)
    assert conv(x).shape[-2:] == (7, 7)


def test_transposed_same_padding_doubles_the_map() -> None:
    # Keras Conv2DTranspose(k=4, s=2, 'same') outputs exactly 2× its input, as padding=1 does.
    up = SeedFashionGenerator().main[3]
    assert (up.kernel_size, up.stride, up.padding, up.output_padding) == ((4, 4), (2, 2), (1, 1), (0, 0))


@pytest.mark.parametrize("build", [SeedFashionGenerator, SeedFashionDiscriminator])
@pytest.mark.parametrize(("image_size", "channels"), [(32, 1), (28, 3), (64, 3)])
def test_other_image_shapes_raise_config_error(build: type, image_size: int, channels: int) -> None:
    with pytest.raises(ConfigError) as info:
        build(image_size=image_size, channels=channels)
    message = str(info.value)
    assert (
        "28×28×1" in message and f"image_size={image_size}" in message and f"channels={channels}" in message
    )
    assert "fashion_mnist" in message and "model=dcgan" in message


@pytest.mark.parametrize(
    ("build", "kwargs"),
    [
        (SeedFashionGenerator, {"latent_dim": 0}),
        (SeedFashionGenerator, {"leaky_slope": -0.1}),
        (SeedFashionDiscriminator, {"dropout": 1.0}),
        (SeedFashionDiscriminator, {"leaky_slope": "0.2"}),
    ],
)
def test_invalid_arguments_raise_config_error(build: type, kwargs: dict) -> None:
    (name,) = kwargs
    with pytest.raises(ConfigError, match=name):
        build(**kwargs)
