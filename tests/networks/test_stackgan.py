"""StackGAN's networks (Zhang et al. 2017, arXiv:1612.03242): the conditioning augmentation's KL and
reparameterisation, the shapes of both stages at the paper's and the digits' sizes, the text and the
image reaching D, gradients reaching G through D, parameter counts worked out by hand from the
reference's layer list (hanzhanggit/StackGAN-Pytorch, ``code/model.py``), and the config errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gan_research.errors import ConfigError
from gan_research.networks.stackgan import (
    CA_ACTIVATIONS,
    ConditioningAugmentation,
    ResidualBlock,
    StageIDiscriminator,
    StageIGenerator,
    StageIIDiscriminator,
    StageIIGenerator,
    kl_divergence,
    reparameterize,
)


@pytest.fixture(autouse=True)
def _one_thread():
    # Two threads on a shared two-core machine make these tiny convolutions 10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv(cin: int, cout: int, k: int, bias: bool = False) -> int:
    return cin * cout * k * k + (cout if bias else 0)  # the reference's convs are bias-free but D's last


def bn(c: int) -> int:
    return 2 * c  # affine weight + bias


def dense(i: int, o: int, bias: bool = True) -> int:
    return i * o + (o if bias else 0)


# -- conditioning augmentation ------------------------------------------------------------------
def test_kl_is_zero_for_the_standard_normal() -> None:
    zeros = torch.zeros(3, 5)
    assert kl_divergence(zeros, zeros).item() == 0.0


def test_kl_matches_a_hand_computed_example() -> None:
    # Per element ½(μ² + σ² − 1 − log σ²): μ = 1, σ² = 1 → ½; μ = 0, σ² = 2 → ½(1 − ln 2).
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)]])
    expected = (0.5 + 0.5 * (1 - math.log(2.0))) / 2  # the mean over the two elements
    assert expected == pytest.approx(0.32671, abs=1e-5)
    assert kl_divergence(mu, logvar).item() == pytest.approx(expected, rel=1e-6)


def test_kl_is_the_mean_over_all_elements_as_the_reference() -> None:
    # KL_loss takes torch.mean over B × condition_dim: one sample with μ = 1 in one of 2 dims, in a
    # batch of 2, gives ½ / 4. Summing over dims and averaging over the batch would give ½ / 2.
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    assert kl_divergence(mu, torch.zeros(2, 2)).item() == pytest.approx(0.125)
    # And it is the textbook closed form, log(1/σ) + (σ² + μ²)/2 − ½ per element, averaged over all.
    torch.manual_seed(0)
    mu, logvar = torch.randn(4, 6), torch.randn(4, 6)
    sigma = torch.exp(0.5 * logvar)
    exact = -torch.log(sigma) + (sigma**2 + mu**2) / 2 - 0.5
    torch.testing.assert_close(kl_divergence(mu, logvar), exact.mean())


def test_reparameterised_condition_has_mean_mu_and_std_sigma() -> None:
    torch.manual_seed(0)
    n = 20_000
    mu = torch.tensor([0.5, -1.0]).expand(n, 2)
    logvar = torch.tensor([math.log(4.0), math.log(0.25)]).expand(n, 2)  # σ = 2, 0.5
    c = reparameterize(mu, logvar)
    torch.testing.assert_close(c.mean(0), torch.tensor([0.5, -1.0]), atol=0.05, rtol=0)
    torch.testing.assert_close(c.std(0), torch.tensor([2.0, 0.5]), atol=0, rtol=0.03)


def test_gradients_reach_mu_and_logvar_through_the_sample() -> None:
    torch.manual_seed(0)
    mu = torch.randn(4, 3, requires_grad=True)
    logvar = torch.randn(4, 3, requires_grad=True)
    c = reparameterize(mu, logvar)
    c.sum().backward()
    # ∂c/∂μ = 1, ∂c/∂log σ² = σε/2 = (c − μ)/2.
    torch.testing.assert_close(mu.grad, torch.ones(4, 3))
    torch.testing.assert_close(logvar.grad, 0.5 * (c - mu).detach())


def test_ca_samples_in_eval_mode_too_and_sample_false_returns_mu() -> None:
    torch.manual_seed(0)
    ca = ConditioningAugmentation(text_dim=6, condition_dim=4)
    with torch.no_grad():
        ca.fc.bias.fill_(0.3)  # μ, log σ² > 0 after the ReLU, so every dimension is live
    e = torch.randn(3, 6)
    c, mu, logvar = ca(e, sample=False)
    assert c is mu and mu.shape == logvar.shape == (3, 4)
    ca.eval()
    first, mu_eval, _ = ca(e)
    second, _, _ = ca(e)
    assert not torch.equal(first, second)  # the reference draws ε in evaluation as well
    torch.testing.assert_close(mu_eval, mu)


@pytest.mark.parametrize("activation", CA_ACTIVATIONS)
def test_ca_activation_shapes_mu_and_logvar(activation: str) -> None:
    torch.manual_seed(0)
    ca = ConditioningAugmentation(text_dim=6, condition_dim=4, activation=activation)
    # GLU halves its input: StackGAN++'s fc to 4·c_dim; the others' fc to 2·c_dim.
    assert ca.fc.out_features == (16 if activation == "glu" else 8)
    with torch.no_grad():
        ca.fc.weight.normal_()  # large weights, so signs of μ and log σ² are far from 0
    _, mu, logvar = ca(torch.randn(64, 6))
    assert mu.shape == logvar.shape == (64, 4)
    if activation == "relu":  # StackGAN-Pytorch's CA_NET: non-negative μ and log σ²
        assert mu.min() >= 0 and logvar.min() >= 0
    else:
        assert mu.min() < 0 and logvar.min() < 0


def test_unknown_ca_activation_is_a_config_error_listing_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"activation='tanh'.*relu, leaky_relu, glu"):
        ConditioningAugmentation(8, 4, activation="tanh")
    with pytest.raises(ConfigError, match="activation='gelu'"):
        StageIGenerator(8, image_size=16, ngf=2, condition_dim=4, latent_dim=4, ca_activation="gelu")


# -- Stage I ------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [16, 32, 64])
def test_stage_one_shapes(size: int) -> None:
    torch.manual_seed(0)
    g = StageIGenerator(text_dim=10, image_size=size, channels=3, latent_dim=8, condition_dim=6, ngf=8)
    d = StageIDiscriminator(text_dim=6, image_size=size, channels=3, ndf=8, condition_dim=6)
    assert g.latent_dim == 8 and g.text_dim == 10 and g.output_shape == (3, size, size)
    assert d.input_shape == (3, size, size) and d.text_dim == 6
    image, mu, logvar = g(torch.randn(2, 8), torch.randn(2, 10))
    assert image.shape == (2, 3, size, size) and mu.shape == logvar.shape == (2, 6)
    assert image.min() >= -1 and image.max() <= 1
    logits = d(image, mu.detach())
    assert logits.shape == (2,)
    # Raw logits: no sigmoid anywhere (the reference's D ends with one).
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())


def test_stage_one_generator_follows_the_reference_layers_at_64_px() -> None:
    # STAGE1_G: fc to 4×4 × GF_DIM·8, four upBlocks halving the channels, conv3x3 to the image.
    g = StageIGenerator(text_dim=8, image_size=64, channels=3, latent_dim=4, condition_dim=4, ngf=16)
    convs = [m for m in g.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (128, 64),
        (64, 32),
        (32, 16),
        (16, 8),
        (8, 3),
    ]
    assert all(c.kernel_size == (3, 3) and c.bias is None for c in convs)
    ups = [m for m in g.modules() if isinstance(m, nn.Upsample)]
    assert len(ups) == 4 and all(u.mode == "nearest" and u.scale_factor == 2 for u in ups)


def test_stage_one_generator_parameter_count_by_hand() -> None:
    # text 16, c 4, z 8, ngf 2 (8·ngf = 16 channels at 4×4), 16 px, 3 channels:
    #   CA fc 16 → 8 with bias                       16·8 + 8          =  136
    #   fc [z; c] = 12 → 16·4·4 = 256, no bias      12·256            = 3072
    #   BN1d(256)                                    2·256             =  512
    #   upBlock 16 → 8 (conv3x3, BN)                 16·8·9 + 2·8      = 1168
    #   upBlock 8 → 4                                8·4·9 + 2·4       =  296
    #   conv3x3 4 → 3                                4·3·9             =  108
    g = StageIGenerator(text_dim=16, image_size=16, channels=3, latent_dim=8, condition_dim=4, ngf=2)
    assert n_params(g) == 136 + 3072 + 512 + 1168 + 296 + 108 == 5292


def test_stage_one_generator_at_the_reference_size() -> None:
    # birds/flowers defaults (config.py): TEXT.DIMENSION 1024, CONDITION_DIM 128, Z_DIM 100, GF_DIM 128.
    expected = (
        dense(1024, 256)
        + dense(228, 1024 * 16, bias=False)
        + bn(1024 * 16)
        + sum(conv(c, c // 2, 3) + bn(c // 2) for c in (1024, 512, 256, 128))
        + conv(64, 3, 3)
    )
    assert expected == 10_301_248
    assert n_params(StageIGenerator(text_dim=1024)) == expected


def test_stage_one_discriminator_parameter_count_by_hand() -> None:
    # 16 px, 1 channel, ndf 2, c 4: the reference's last two encoder layers (4ndf, 8ndf), then D_GET_LOGITS.
    #   conv4x4 1 → 8, no BN                        1·8·16        =  128
    #   conv4x4 8 → 16 + BN                         8·16·16 + 32  = 2080
    #   conv3x3 (16 + 4) → 16 + BN                  20·16·9 + 32  = 2912
    #   conv4x4 16 → 1 with bias                    16·16 + 1     =  257
    d = StageIDiscriminator(text_dim=4, image_size=16, channels=1, ndf=2, condition_dim=4)
    assert n_params(d) == 128 + 2080 + 2912 + 257 == 5377


def test_discriminator_reads_the_text() -> None:
    torch.manual_seed(0)
    d = StageIDiscriminator(text_dim=6, image_size=16, channels=1, ndf=4, condition_dim=6).eval()
    image, text = torch.randn(2, 1, 16, 16), torch.randn(2, 6)
    before = d(image, text)
    other = text.clone()
    other[0] = torch.randn(6)  # only sample 0's text changes
    after = d(image, other)
    assert not torch.allclose(before[0], after[0])
    assert torch.equal(before[1], after[1])  # eval mode: samples do not see each other


def test_discriminator_reads_the_image() -> None:
    torch.manual_seed(0)
    d = StageIIDiscriminator(text_dim=6, image_size=32, channels=1, ndf=4, condition_dim=6).eval()
    image, text = torch.randn(2, 1, 32, 32), torch.randn(2, 6)
    other = image.clone()
    other[0] = torch.randn(1, 32, 32)
    before, after = d(image, text), d(other, text)
    assert not torch.allclose(before[0], after[0]) and torch.equal(before[1], after[1])


def test_discriminator_text_is_the_ca_mean_unless_it_projects_the_embedding() -> None:
    # The reference feeds D the condition_dim-sized μ: a raw embedding needs project_text.
    with pytest.raises(ConfigError, match=r"text_dim=32 differs from condition_dim=4.*project_text=True"):
        StageIDiscriminator(text_dim=32, image_size=16, channels=1, ndf=2, condition_dim=4)
    torch.manual_seed(0)
    d = StageIDiscriminator(text_dim=32, image_size=16, channels=1, ndf=2, condition_dim=4, project_text=True)
    assert isinstance(d.text_projection[0], nn.Linear) and d.text_projection[0].in_features == 32
    assert d(torch.randn(3, 1, 16, 16), torch.randn(3, 32)).shape == (3,)
    with pytest.raises(ValueError, match=r"text of shape \(3, 32\)"):
        d(torch.randn(3, 1, 16, 16), torch.randn(3, 4))


def test_gradients_reach_the_stage_one_generator_through_d() -> None:
    torch.manual_seed(0)
    g = StageIGenerator(text_dim=8, image_size=16, channels=1, latent_dim=4, condition_dim=4, ngf=4)
    d = StageIDiscriminator(text_dim=4, image_size=16, channels=1, ndf=4, condition_dim=4)
    with torch.no_grad():
        g.ca.fc.bias.fill_(0.1)  # every μ, log σ² unit live after the ReLU
    image, mu, _ = g(torch.randn(4, 4), torch.randn(4, 8))
    # The non-saturating G loss, with D's text detached as the reference's (no KL term: D's path only).
    F.softplus(-d(image, mu.detach())).mean().backward()
    for name, p in g.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is not None for p in d.parameters())


# -- Stage II -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("stage1", "stage2"), [(16, 32), (32, 64), (64, 256)])
def test_stage_two_shapes(stage1: int, stage2: int) -> None:
    torch.manual_seed(0)
    g = StageIIGenerator(
        text_dim=10, image_size=stage2, channels=3, ngf=8, condition_dim=6, num_residual=1, stage1_size=stage1
    )
    d = StageIIDiscriminator(text_dim=6, image_size=stage2, channels=3, ndf=2, condition_dim=6)
    assert g.input_shape == (3, stage1, stage1) and g.output_shape == (3, stage2, stage2)
    assert d.input_shape == (3, stage2, stage2)
    image, mu, logvar = g(torch.rand(2, 3, stage1, stage1) * 2 - 1, torch.randn(2, 10))
    assert image.shape == (2, 3, stage2, stage2) and mu.shape == logvar.shape == (2, 6)
    conditional, unconditional = d(image, mu.detach(), unconditional=True)
    assert conditional.shape == unconditional.shape == (2,)


def test_stage_two_generator_parameter_count_by_hand() -> None:
    # 16 → 32 px, 1 channel, ngf 4, c 4, two residual blocks: STAGE2_G's layer list.
    expected = (
        dense(16, 8)  # CA
        + conv(1, 4, 3)  # encoder: conv3x3 + ReLU
        + conv(4, 8, 4)
        + bn(8)
        + conv(8, 16, 4)
        + bn(16)
        + conv(16 + 4, 16, 3)  # hr_joint
        + bn(16)
        + 2 * (2 * (conv(16, 16, 3) + bn(16)))  # R_NUM ResBlocks
        + sum(conv(c, c // 2, 3) + bn(c // 2) for c in (16, 8, 4))  # ×2 back to 16 px, then ×2
        + conv(2, 1, 3)
    )
    g = StageIIGenerator(
        text_dim=16, image_size=32, channels=1, ngf=4, condition_dim=4, num_residual=2, stage1_size=16
    )
    assert n_params(g) == expected == 16_594


def test_stage_two_generator_reads_the_image_and_the_text() -> None:
    torch.manual_seed(0)
    g = StageIIGenerator(text_dim=8, image_size=32, channels=1, ngf=4, condition_dim=4, stage1_size=16)
    with torch.no_grad():
        g.ca.fc.bias.fill_(0.1)
    g.eval()
    low, text = torch.rand(2, 1, 16, 16), torch.randn(2, 8)
    out = g(low, text, sample=False)[0]
    torch.testing.assert_close(g(low, text, sample=False)[0], out, rtol=0, atol=0)  # sample=False: fixed
    assert not torch.allclose(g(low.flip(-1), text, sample=False)[0], out)
    assert not torch.allclose(g(low, torch.randn(2, 8), sample=False)[0], out)


def test_residual_block_adds_its_input_then_applies_relu() -> None:
    torch.manual_seed(0)
    block = ResidualBlock(4)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(block(x), torch.relu(x + block.body(x)))
    with torch.no_grad():
        block.body[-1].weight.zero_()
        block.body[-1].bias.zero_()
    torch.testing.assert_close(block(x), torch.relu(x), rtol=0, atol=0)


def test_stage_two_discriminator_follows_the_reference_at_256_px() -> None:
    # STAGE2_D: six 4×4 stride-2 convs ndf … 32ndf, then conv3x3 to 16ndf and to 8ndf.
    d = StageIIDiscriminator(text_dim=4, image_size=256, channels=3, ndf=2, condition_dim=4)
    convs = [m for m in d.encoder if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [2, 4, 8, 16, 32, 64, 32, 16]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 2, 2, 2, 1, 1]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.encoder) == 7  # all but the first conv
    assert d.has_unconditional_head


def test_stage_two_and_stage_one_discriminators_coincide_at_64_px() -> None:
    # The reference's STAGE1_D is the first four layers of its STAGE2_D.
    one = StageIDiscriminator(text_dim=4, image_size=64, channels=3, ndf=2, condition_dim=4)
    two = StageIIDiscriminator(text_dim=4, image_size=64, channels=3, ndf=2, condition_dim=4)
    shapes = [p.shape for p in one.encoder.parameters()]
    assert shapes == [p.shape for p in two.encoder.parameters()]
    assert [s[0] for s in shapes if len(s) == 4] == [2, 4, 8, 16]


def test_unconditional_logit_ignores_the_text() -> None:
    torch.manual_seed(0)
    d = StageIIDiscriminator(text_dim=4, image_size=32, channels=1, ndf=2, condition_dim=4).eval()
    image = torch.randn(2, 1, 32, 32)
    cond_a, uncond_a = d(image, torch.randn(2, 4), unconditional=True)
    cond_b, uncond_b = d(image, torch.randn(2, 4), unconditional=True)
    assert torch.equal(uncond_a, uncond_b) and not torch.allclose(cond_a, cond_b)
    stage_one = StageIDiscriminator(text_dim=4, image_size=32, channels=1, ndf=2, condition_dim=4)
    assert not stage_one.has_unconditional_head  # STAGE1_D's get_uncond_logits is None
    with pytest.raises(ValueError, match="without the unconditional head"):
        stage_one(image, torch.randn(2, 4), unconditional=True)


def test_gradients_reach_the_stage_two_generator_through_d() -> None:
    torch.manual_seed(0)
    g = StageIIGenerator(text_dim=8, image_size=32, channels=1, ngf=4, condition_dim=4, stage1_size=16)
    d = StageIIDiscriminator(text_dim=4, image_size=32, channels=1, ndf=2, condition_dim=4)
    with torch.no_grad():
        g.ca.fc.bias.fill_(0.1)
    image, mu, _ = g(torch.rand(4, 1, 16, 16), torch.randn(4, 8))
    conditional, unconditional = d(image, mu.detach(), unconditional=True)
    (F.softplus(-conditional) + F.softplus(-unconditional)).mean().backward()
    for name, p in g.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# -- config errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [48, 8, 100, 64.0, True, "64"])
def test_stage_one_size_not_4_times_a_power_of_two_is_a_config_error(size) -> None:
    with pytest.raises(ConfigError, match=r"image_size.*16, 32, 64") as info:
        StageIGenerator(text_dim=8, image_size=size, ngf=2, condition_dim=4, latent_dim=4)
    assert repr(size) in str(info.value)
    with pytest.raises(ConfigError, match=r"image_size.*16, 32, 64"):
        StageIDiscriminator(text_dim=4, image_size=size, ndf=2, condition_dim=4)


@pytest.mark.parametrize("size", [128, 16, 48, 32.0, None])
def test_stage_two_factor_other_than_2_or_4_is_a_config_error(size) -> None:
    with pytest.raises(ConfigError) as info:
        StageIIGenerator(text_dim=8, image_size=size, channels=1, ngf=4, condition_dim=4, stage1_size=16)
    message = str(info.value)
    assert f"image_size={size!r}" in message and "stage1_size=16" in message
    assert "2 or 4" in message and "32, 64" in message


def test_bad_stage_one_size_of_stage_two_is_named_stage1_size() -> None:
    with pytest.raises(ConfigError, match=r"stage1_size must be a power of two >= 16.*got 24"):
        StageIIGenerator(text_dim=8, image_size=48, channels=1, ngf=4, condition_dim=4, stage1_size=24)


def test_stage_two_discriminator_below_32_px_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"image_size must be a power of two >= 32"):
        StageIIDiscriminator(text_dim=4, image_size=16, ndf=2, condition_dim=4)


def test_ngf_that_halves_into_fractions_is_a_config_error() -> None:
    # 64 px: 8·ngf halved four times; ngf = 1 leaves half a channel.
    with pytest.raises(ConfigError, match=r"ngf=1 .*image_size=64.*multiple of 2"):
        StageIGenerator(text_dim=8, image_size=64, ngf=1, condition_dim=4, latent_dim=4)
    # Factor 4: 4·ngf halved four times (the reference's ngf/4 at 256 px).
    with pytest.raises(ConfigError, match=r"ngf=6 .*image_size=256.*multiple of 4"):
        StageIIGenerator(text_dim=8, image_size=256, ngf=6, condition_dim=4, stage1_size=64)
    StageIIGenerator(text_dim=8, image_size=32, ngf=2, condition_dim=4, stage1_size=16)  # factor 2: even ngf


@pytest.mark.parametrize(("kwargs", "needle"), [({"ngf": 0}, "ngf"), ({"num_residual": -1}, "num_residual")])
def test_stage_two_widths_must_be_valid_integers(kwargs, needle) -> None:
    options = {"text_dim": 8, "image_size": 32, "ngf": 4, "condition_dim": 4, "stage1_size": 16, **kwargs}
    with pytest.raises(ConfigError, match=needle):
        StageIIGenerator(**options)
