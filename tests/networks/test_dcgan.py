"""DCGAN networks: the 64-px defaults are the PyTorch reference; other sizes by doubling stages.

Also holds the contract test every generator/discriminator of gan_research.networks passes.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from hydra.utils import instantiate
from torch import Tensor, nn
from torch.nn.utils import parametrize

from gan_research.errors import ConfigError
from gan_research.networks import (
    SUPPORTED_IMAGE_SIZES,
    AuxiliaryDCGANDiscriminator,
    ConditionalDCGANDiscriminator,
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
    PatchGANDiscriminator,
    SeedFashionDiscriminator,
    SeedFashionGenerator,
)
from gan_research.networks.dcgan import DISCRIMINATOR_NORMS, dcgan_stages


# The networks of pytorch/examples dcgan/main.py (nz=100, ngf=ndf=64, nc=3), copied verbatim
# apart from the argument names, as the reference to compare against.
def reference_generator(nz: int = 100, ngf: int = 64, nc: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
        nn.BatchNorm2d(ngf * 8),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf * 4),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf * 2),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
        nn.Tanh(),
    )


def reference_discriminator(ndf: int = 64, nc: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 2),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 4),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 8),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
        nn.Sigmoid(),
    )


def describe(layer: nn.Module) -> tuple:
    """The hyperparameters that define a layer, to compare two layer sequences."""
    if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
        return (
            type(layer).__name__,
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.bias is None,
        )
    if isinstance(layer, nn.BatchNorm2d):
        return ("BatchNorm2d", layer.num_features, layer.eps, layer.momentum, layer.affine)
    if isinstance(layer, nn.LeakyReLU):
        return ("LeakyReLU", layer.negative_slope)
    return (type(layer).__name__,)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_default_generator_is_the_reference_layer_for_layer() -> None:
    ours, ref = DCGANGenerator(), reference_generator()
    assert [describe(m) for m in ours.main] == [describe(m) for m in ref]
    assert n_params(ours) == n_params(ref) == 3_576_704
    # Same parameter names and shapes: reference checkpoints load as they are.
    ours.load_state_dict({f"main.{k}": v for k, v in ref.state_dict().items()}, strict=True)


def test_default_discriminator_is_the_reference_without_its_sigmoid() -> None:
    ours, ref = DCGANDiscriminator(), reference_discriminator()
    assert isinstance(ref[-1], nn.Sigmoid)
    assert [describe(m) for m in ours.main] == [describe(m) for m in ref[:-1]]
    assert not any(isinstance(m, nn.Sigmoid) for m in ours.modules())
    assert n_params(ours) == n_params(ref) == 2_765_568
    ours.load_state_dict({f"main.{k}": v for k, v in ref.state_dict().items()}, strict=True)


def test_loaded_reference_weights_give_the_reference_function() -> None:
    """With the reference's weights, D's logit is the reference's pre-sigmoid value and G matches."""
    torch.manual_seed(0)
    g_ref, d_ref = reference_generator(nz=100, ngf=8, nc=3), reference_discriminator(ndf=8, nc=3)
    g, d = DCGANGenerator(ngf=8), DCGANDiscriminator(ndf=8)
    g.load_state_dict({f"main.{k}": v for k, v in g_ref.state_dict().items()})
    d.load_state_dict({f"main.{k}": v for k, v in d_ref.state_dict().items()})
    for net in (g_ref, d_ref, g, d):
        net.eval()
    z = torch.randn(3, 100)
    with torch.no_grad():
        images = g(z)
        torch.testing.assert_close(images, g_ref(z.view(3, 100, 1, 1)))
        torch.testing.assert_close(torch.sigmoid(d(images)), d_ref(images).view(-1))


@pytest.mark.parametrize("image_size", [16, 28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_output_shapes(image_size: int, channels: int) -> None:
    g = DCGANGenerator(latent_dim=16, image_size=image_size, channels=channels, ngf=8)
    d = DCGANDiscriminator(image_size=image_size, channels=channels, ndf=8)
    images = g(torch.randn(2, 16))
    assert images.shape == (2, channels, image_size, image_size)
    assert g.output_shape == d.input_shape == (channels, image_size, image_size)
    assert d(images).shape == (2,)


def test_every_supported_size_builds_and_has_the_expected_depth() -> None:
    assert SUPPORTED_IMAGE_SIZES == (16, 28, 32, 56, 64, 112, 128, 224, 256)
    for size in SUPPORTED_IMAGE_SIZES:
        base, stages = dcgan_stages(size)
        assert base * 2**stages == size and stages >= 2
        g = DCGANGenerator(image_size=size, ngf=4, latent_dim=8)
        d = DCGANDiscriminator(image_size=size, ndf=4)
        g_convs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
        d_convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
        assert len(g_convs) == len(d_convs) == stages + 1
        # G starts from, and D ends on, a base×base map.
        assert g_convs[0].kernel_size == d_convs[-1].kernel_size == (base, base)


def test_mnist_size_starts_from_7x7() -> None:
    g = DCGANGenerator(image_size=28, channels=1, ngf=8, latent_dim=10)
    first = g.main[0]
    assert isinstance(first, nn.ConvTranspose2d) and first.kernel_size == (7, 7)
    assert first(torch.randn(1, 10, 1, 1)).shape[-2:] == (7, 7)


def test_channel_widths_double_per_stage_and_are_capped() -> None:
    g = DCGANGenerator(image_size=128, ngf=16)
    assert [m.out_channels for m in g.modules() if isinstance(m, nn.ConvTranspose2d)] == [
        256,
        128,
        64,
        32,
        16,
        3,
    ]
    g = DCGANGenerator(image_size=128, ngf=16, max_channels=64)
    assert [m.out_channels for m in g.modules() if isinstance(m, nn.ConvTranspose2d)] == [
        64,
        64,
        64,
        32,
        16,
        3,
    ]
    d = DCGANDiscriminator(image_size=128, ndf=16, max_channels=64)
    assert [m.out_channels for m in d.modules() if isinstance(m, nn.Conv2d)] == [16, 32, 64, 64, 64, 1]


def test_no_convolution_has_a_bias() -> None:
    for net in (
        DCGANGenerator(image_size=32, ngf=8),
        DCGANDiscriminator(image_size=32, ndf=8, spectral_norm=True),
    ):
        convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        assert convs and all(m.bias is None for m in convs)


def test_weights_follow_the_dcgan_initialisation() -> None:
    torch.manual_seed(0)
    for net in (DCGANGenerator(), DCGANDiscriminator()):
        conv_weights = torch.cat(
            [m.weight.flatten() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        )
        assert abs(conv_weights.mean().item()) < 1e-3
        assert conv_weights.std().item() == pytest.approx(0.02, rel=0.02)
        bn_scales = torch.cat([m.weight for m in net.modules() if isinstance(m, nn.BatchNorm2d)])
        bn_shifts = torch.cat([m.bias for m in net.modules() if isinstance(m, nn.BatchNorm2d)])
        assert bn_scales.mean().item() == pytest.approx(1.0, abs=0.01)
        assert bn_scales.std().item() == pytest.approx(0.02, rel=0.1)
        assert torch.all(bn_shifts == 0)


def test_generator_output_is_in_tanh_range() -> None:
    images = DCGANGenerator(image_size=16, ngf=8)(torch.randn(4, 100) * 10)
    assert images.abs().max() <= 1.0


@pytest.mark.parametrize("bad", [48, 30, 8, 14, 512, 448, 0, -64, 64.0, "64", True])
def test_invalid_sizes_raise_config_error_listing_valid_sizes(bad: object) -> None:
    for build in (DCGANGenerator, DCGANDiscriminator):
        with pytest.raises(ConfigError) as info:
            build(image_size=bad)
        message = str(info.value)
        assert repr(bad) in message
        assert "16, 28, 32, 56, 64, 112, 128, 224, 256" in message


@pytest.mark.parametrize(
    ("build", "kwargs", "named"),
    [
        (DCGANGenerator, {"channels": 0}, "channels"),
        (DCGANGenerator, {"ngf": -1}, "ngf"),
        (DCGANGenerator, {"latent_dim": 0}, "latent_dim"),
        (DCGANGenerator, {"max_channels": 0}, "max_channels"),
        (DCGANDiscriminator, {"leaky_slope": 1.5}, "leaky_slope"),
        (DCGANDiscriminator, {"ndf": 2.5}, "ndf"),
        (DCGANDiscriminator, {"norm": "spectral"}, "batch, layer, instance, none"),
    ],
)
def test_invalid_arguments_raise_config_error(build: type, kwargs: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        build(**kwargs)


def test_discriminator_norm_options() -> None:
    def norms(net: nn.Module) -> list[str]:
        kinds = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)
        return [type(m).__name__ for m in net.modules() if isinstance(m, kinds)]

    assert DCGANDiscriminator.norms == DISCRIMINATOR_NORMS == ("batch", "layer", "instance", "none")
    assert norms(DCGANDiscriminator()) == ["BatchNorm2d"] * 3
    assert norms(DCGANDiscriminator(norm="layer")) == ["GroupNorm"] * 3
    assert norms(DCGANDiscriminator(norm="instance")) == ["InstanceNorm2d"] * 3
    assert norms(DCGANDiscriminator(norm="none")) == []
    # The chosen value is declared (the gradient-penalty check names the key from it).
    assert DCGANDiscriminator(norm="layer").norm == "layer"
    assert ConditionalDCGANDiscriminator(10, norm="instance", image_size=16, ndf=4).norm == "instance"
    assert AuxiliaryDCGANDiscriminator(10, image_size=16, ndf=4).norm == "batch"
    # Layer norm keeps every sample's logit independent of the rest of the batch (needed by GP).
    d = DCGANDiscriminator(image_size=16, ndf=8, norm="layer")
    x = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(d(x)[:1], d(x[:1]))


def _sample0_input_gradient(d: nn.Module, batch: Tensor) -> Tensor:
    """∂(Σ_i D(x_i))/∂x_0: what a gradient penalty or R1 computes for sample 0
    (``gan_research.losses.regularizers._input_gradients``), D in training mode."""
    x = batch.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x).sum(), x)
    return grad[0]


PER_SAMPLE_CRITICS: dict[str, Callable[[str], nn.Module]] = {
    "dcgan": lambda norm: DCGANDiscriminator(image_size=16, channels=1, ndf=4, norm=norm),
    # pix2pix / CycleGAN's D: patch logits, summed like the scores.
    "patchgan": lambda norm: PatchGANDiscriminator(
        input_channels=1, ndf=4, n_layers=2, norm=norm, image_size=16
    ),
}


@pytest.mark.parametrize(
    ("name", "norm"),
    [("dcgan", n) for n in DISCRIMINATOR_NORMS] + [("patchgan", n) for n in PatchGANDiscriminator.norms],
)
def test_only_batch_norm_lets_the_other_samples_move_a_samples_input_gradient(name: str, norm: str) -> None:
    """The defining property behind the ban on gradient penalties with a batch-norm critic
    (Gulrajani et al. 2017, sec. 4): with a per-sample norm (layer, instance) or none, sample
    0's input gradient is the same whatever the other samples of the batch are; with batch
    norm (training mode) it moves."""
    torch.manual_seed(0)
    d = PER_SAMPLE_CRITICS[name](norm).train()
    batch = torch.randn(4, 1, 16, 16)
    others_changed = batch.clone()
    others_changed[1:] = 3.0 * torch.randn(3, 1, 16, 16) + 1.0
    grad, grad_changed = _sample0_input_gradient(d, batch), _sample0_input_gradient(d, others_changed)
    assert grad.abs().sum() > 0
    if norm == "batch":
        assert (grad_changed - grad).norm() > 0.05 * grad.norm()
    else:
        torch.testing.assert_close(grad_changed, grad)


def test_spectral_norm_wraps_every_discriminator_conv() -> None:
    torch.manual_seed(0)  # the power iteration's start vector: not whatever the worker's RNG holds
    d = DCGANDiscriminator(image_size=32, ndf=8, spectral_norm=True, norm="none")
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 and all(parametrize.is_parametrized(m, "weight") for m in convs)
    assert not any(parametrize.is_parametrized(m) for m in DCGANDiscriminator(image_size=32, ndf=8).modules())
    d(torch.randn(2, 3, 32, 32))  # one power iteration in training mode
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.1)


def test_hydra_instantiates_from_plain_values() -> None:
    g = instantiate(
        {"_target_": "gan_research.networks.DCGANGenerator", "image_size": 28, "channels": 1, "ngf": 8}
    )
    d = instantiate(
        {
            "_target_": "gan_research.networks.DCGANDiscriminator",
            "image_size": 28,
            "channels": 1,
            "ndf": 8,
            "max_channels": None,
            "spectral_norm": True,
        }
    )
    assert d(g(torch.randn(2, 100))).shape == (2,)


# --- Contract shared by every network of gan_research.networks -----------------------------------------

NetworkPair = tuple[Callable[[], nn.Module], Callable[[], nn.Module]]

PAIRS: dict[str, NetworkPair] = {
    "mlp": (MLPGenerator, MLPDiscriminator),
    "mlp-sn-wide": (
        lambda: MLPGenerator(latent_dim=8, hidden_dim=32, num_layers=2, output_dim=5),
        lambda: MLPDiscriminator(input_dim=5, hidden_dim=32, num_layers=4, spectral_norm=True),
    ),
    "dcgan-16-rgb": (
        lambda: DCGANGenerator(latent_dim=16, image_size=16, ngf=8),
        lambda: DCGANDiscriminator(image_size=16, ndf=8),
    ),
    "dcgan-28-gray-sn-layernorm": (
        lambda: DCGANGenerator(latent_dim=16, image_size=28, channels=1, ngf=8, max_channels=16),
        lambda: DCGANDiscriminator(image_size=28, channels=1, ndf=8, spectral_norm=True, norm="layer"),
    ),
    "seed-fashion": (SeedFashionGenerator, SeedFashionDiscriminator),
}


@pytest.mark.parametrize("name", list(PAIRS))
def test_network_contract(name: str) -> None:
    torch.manual_seed(0)
    make_g, make_d = PAIRS[name]
    g, d = make_g(), make_d()
    assert isinstance(g.latent_dim, int) and isinstance(g.output_shape, tuple)
    assert isinstance(d.input_shape, tuple)
    assert g.output_shape == d.input_shape

    batch = 3
    samples = g(torch.randn(batch, g.latent_dim))
    assert samples.shape == (batch, *g.output_shape)
    logits = d(samples)
    assert logits.shape == (batch,)
    # Raw logits: the losses apply the sigmoid, so no network may end in one.
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())

    # Gradients reach every parameter of both networks (nothing detached or dead by construction).
    (logits.sum() + d(torch.randn(batch, *d.input_shape)).sum()).backward()
    for net in (g, d):
        for pname, param in net.named_parameters():
            assert param.grad is not None, f"{name}: no gradient for {pname}"
            assert torch.isfinite(param.grad).all(), f"{name}: non-finite gradient for {pname}"
            assert param.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"


@pytest.mark.parametrize("name", list(PAIRS))
def test_discriminator_supports_double_backward(name: str) -> None:
    """Gradient penalties (WGAN-GP, R1) differentiate through ∂D/∂x; in-place activations must allow it."""
    torch.manual_seed(0)
    d = PAIRS[name][1]()
    x = torch.randn(4, *d.input_shape, requires_grad=True)
    (grad,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)
    penalty = grad.flatten(1).norm(dim=1).sub(1).square().mean()
    penalty.backward()
    # The output layer's bias does not affect ∂D/∂x, so not every parameter gets a gradient here.
    grads = [p.grad for p in d.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
