"""Mode-collapse layers (networks/collapse.py) and the MLP / DCGAN discriminator options that use them."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gan_research.errors import ConfigError
from gan_research.networks.collapse import Maxout, MinibatchDiscrimination, MinibatchStd, pack
from gan_research.networks.dcgan import DCGANDiscriminator
from gan_research.networks.mlp import MLPDiscriminator
from gan_research.networks.progan_layers import MinibatchStdDev

# ---------------------------------------------------------------- minibatch discrimination


def test_minibatch_discrimination_output_sizes() -> None:
    md = MinibatchDiscrimination(6, num_kernels=4, kernel_dim=3)
    x = torch.randn(5, 6)
    out = md(x)
    assert out.shape == (5, 6 + 4)
    torch.testing.assert_close(out[:, :6], x)  # [f(x_i), o(x_i)]: the features pass through
    assert md.weight.shape == (6, 4, 3)  # T ∈ R^{A×B×C}
    assert MinibatchDiscrimination.couples_samples is True


def test_minibatch_discrimination_on_maps_appends_constant_channels() -> None:
    md = MinibatchDiscrimination(2 * 3 * 3, num_kernels=4, kernel_dim=2)
    x = torch.randn(5, 2, 3, 3)
    out = md(x)
    assert out.shape == (5, 2 + 4, 3, 3)
    torch.testing.assert_close(out[:, :2], x)
    planes = out[:, 2:]
    torch.testing.assert_close(planes, planes[:, :, :1, :1].expand_as(planes))
    torch.testing.assert_close(planes[:, :, 0, 0], md.similarities(x))


def test_minibatch_discrimination_matches_the_formula_by_hand() -> None:
    """o(x_i)_b = Σ_{j≠i} exp(−Σ_c |M_{i,b,c} − M_{j,b,c}|), M_i = f(x_i) T, summed with loops."""
    torch.manual_seed(0)
    md = MinibatchDiscrimination(3, num_kernels=2, kernel_dim=4)
    x = torch.randn(4, 3)
    with torch.no_grad():
        m = torch.einsum("na,abc->nbc", x, md.weight)
        expected = torch.zeros(4, 2)
        for i in range(4):
            for b in range(2):
                for j in range(4):
                    if j != i:
                        expected[i, b] += math.exp(-(m[i, b] - m[j, b]).abs().sum().item())
        torch.testing.assert_close(md.similarities(x), expected)
        md.include_self = True  # the paper's sum over every j: one more exp(0) = 1 per kernel
        torch.testing.assert_close(md.similarities(x), expected + 1)


def test_minibatch_discrimination_feature_of_sample_0_depends_on_another_sample() -> None:
    torch.manual_seed(0)
    md = MinibatchDiscrimination(8, num_kernels=5, kernel_dim=3)
    x = torch.randn(6, 8)
    moved = x.clone()
    moved[4] += 0.5  # change one other sample only
    with torch.no_grad():
        before, after = md(x)[0], md(moved)[0]
    torch.testing.assert_close(before[:8], after[:8])
    assert (before[8:] - after[8:]).abs().max() > 1e-4


@pytest.mark.parametrize(("include_self", "offset"), [(False, 1), (True, 0)])
def test_minibatch_discrimination_of_identical_samples_counts_the_batch(
    include_self: bool, offset: int
) -> None:
    # Every distance is 0, every c_b is 1: o = n − 1 without the j = i term (the reference), n with it.
    md = MinibatchDiscrimination(4, num_kernels=3, kernel_dim=2, include_self=include_self)
    x = torch.randn(1, 4).expand(7, 4)
    with torch.no_grad():
        o = md(x)[:, 4:]
    torch.testing.assert_close(o, torch.full((7, 3), float(7 - offset)))


def test_minibatch_discrimination_starts_with_unit_norm_columns() -> None:
    # The reference's weight-normalised T at log_weight_scale = 0.
    md = MinibatchDiscrimination(50, num_kernels=6, kernel_dim=5)
    torch.testing.assert_close(md.weight.norm(dim=0), torch.ones(6, 5))


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"in_features": 0}, "in_features"),
        ({"num_kernels": 0}, "num_kernels"),
        ({"kernel_dim": 2.5}, "kernel_dim"),
    ],
)
def test_minibatch_discrimination_refuses_bad_arguments(kwargs: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        MinibatchDiscrimination(**{"in_features": 4, **kwargs})


# ---------------------------------------------------------------- minibatch standard deviation


def test_minibatch_std_output_sizes() -> None:
    mbstd = MinibatchStd(group_size=4)
    assert mbstd(torch.randn(8, 5)).shape == (8, 6)
    assert mbstd(torch.randn(8, 3, 4, 4)).shape == (8, 4, 4, 4)
    assert MinibatchStd.couples_samples is True


def test_minibatch_std_of_vectors_is_the_group_std_averaged_over_features() -> None:
    x = torch.randn(4, 5)
    out = MinibatchStd(group_size=4)(x)
    torch.testing.assert_close(out[:, :5], x)
    # One group of 4: the population std of each feature over the group, averaged over features.
    expected = x.std(dim=0, unbiased=False).mean()
    torch.testing.assert_close(out[:, 5], expected.expand(4), atol=1e-6, rtol=1e-5)


def test_minibatch_std_of_maps_is_progans_layer() -> None:
    x = torch.randn(8, 3, 4, 4)
    torch.testing.assert_close(MinibatchStd(group_size=4)(x), MinibatchStdDev(group_size=4)(x))


@pytest.mark.parametrize("shape", [(8, 5), (8, 3, 2, 2)])
def test_minibatch_std_of_sample_0_depends_on_its_group(shape: tuple[int, ...]) -> None:
    # Batch 8, groups of 4: strided groups, sample 0 is with samples 2, 4, 6 (i mod 2).
    mbstd = MinibatchStd(group_size=4)
    x = torch.randn(*shape)
    in_group, other_group = x.clone(), x.clone()
    in_group[4] += 1.0
    other_group[1] += 1.0
    std_0 = mbstd(x)[0, -1]
    assert (mbstd(in_group)[0, -1] - std_0).abs().max() > 1e-3
    torch.testing.assert_close(mbstd(other_group)[0, -1], std_0)


@pytest.mark.parametrize("shape", [(6, 5), (6, 3, 2, 2)])
def test_minibatch_std_of_identical_samples_is_zero(shape: tuple[int, ...]) -> None:
    x = torch.randn(1, *shape[1:]).expand(*shape)
    std = MinibatchStd(group_size=3)(x)[:, -1]
    assert std.abs().max() < 1e-3  # sqrt(eps) = 1e-4 from MinibatchStdDev's eps


def test_minibatch_std_refuses_groups_of_one() -> None:
    with pytest.raises(ConfigError, match="group_size"):
        MinibatchStd(group_size=1)


# ---------------------------------------------------------------- maxout


def test_maxout_matches_a_hand_computation() -> None:
    layer = Maxout(2, 2, pieces=3)
    with torch.no_grad():
        # Unit 0 reads outputs 0..2, unit 1 outputs 3..5 (blocks' LinearMaxout layout).
        layer.linear.weight.copy_(
            torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0], [2.0, -1.0], [0.0, 0.0]])
        )
        layer.linear.bias.copy_(torch.tensor([0.0, 0.0, -4.0, 0.0, 0.0, 0.5]))
        x = torch.tensor([[1.0, 2.0], [-3.0, 1.0]])
        # Sample 0: pieces (1, 2, -1) → 2; (-1, 0, 0.5) → 0.5. Sample 1: (-3, 1, -6) → 1; (3, -7, 0.5) → 3.
        torch.testing.assert_close(layer(x), torch.tensor([[2.0, 0.5], [1.0, 3.0]]))
    assert layer(torch.randn(4, 7, 2)).shape == (4, 7, 2)  # any leading dimensions


def test_maxout_refuses_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="pieces"):
        Maxout(2, 2, pieces=0)


# ---------------------------------------------------------------- pack


def test_pack_shapes() -> None:
    assert pack(torch.randn(6, 3, 4, 4), 3).shape == (2, 9, 4, 4)
    assert pack(torch.randn(6, 2), 2).shape == (3, 4)
    x = torch.randn(5, 2)
    torch.testing.assert_close(pack(x, 1), x)


def test_pack_k_holds_consecutive_samples_in_order() -> None:
    x = torch.randn(8, 2, 3, 3)
    m = 4
    packed = pack(x, m)
    for k in range(2):
        torch.testing.assert_close(packed[k], torch.cat([x[k * m + i] for i in range(m)], dim=0))


def test_pack_refuses_a_batch_that_is_not_a_multiple() -> None:
    with pytest.raises(ValueError, match=r"B=7 is not a multiple of packing=2"):
        pack(torch.randn(7, 2), 2)
    with pytest.raises(ValueError, match="packing"):
        pack(torch.randn(4, 2), 0)


# ---------------------------------------------------------------- MLP discriminator

MLP_DEFAULT_KEYS = [
    "main.0.weight",
    "main.0.bias",
    "main.2.weight",
    "main.2.bias",
    "main.4.weight",
    "main.4.bias",
    "main.6.weight",
    "main.6.bias",
]


def test_mlp_default_state_dict_keys_and_outputs_are_unchanged() -> None:
    d = MLPDiscriminator()
    assert list(d.state_dict()) == MLP_DEFAULT_KEYS
    assert d.packing == 1 and d.input_shape == (2,)
    x = torch.randn(5, 2)
    torch.testing.assert_close(d(x), d.main(x).squeeze(1))  # the forward pass before the options


def test_mlp_options_only_add_collapse_keys() -> None:
    d = MLPDiscriminator(hidden_dim=16, minibatch_discrimination={"num_kernels": 3}, minibatch_std=2)
    keys = list(d.state_dict())
    assert keys == [*MLP_DEFAULT_KEYS, "collapse.0.weight"]
    assert d.main[-1].in_features == 16 + 3 + 1


def test_mlp_packing_widens_the_input_layer() -> None:
    d = MLPDiscriminator(input_dim=3, hidden_dim=16, packing=2)
    assert d.packing == 2 and d.input_shape == (6,)
    assert d.main[0].in_features == 6
    x = torch.randn(8, 3)
    assert d(pack(x, 2)).shape == (4,)


@pytest.mark.parametrize(
    "options", [{}, {"minibatch_discrimination": {"num_kernels": 4, "kernel_dim": 2}}, {"minibatch_std": 2}]
)
def test_mlp_features_are_the_last_hidden_layer(options: dict) -> None:
    d = MLPDiscriminator(hidden_dim=16, num_layers=2, **options)
    x = torch.randn(6, 2)
    features = d.features(x)
    assert features.shape == (6, 16)
    torch.testing.assert_close(features, d.main[:-1](x))
    assert d(x).shape == (6,)


@pytest.mark.parametrize(
    "options", [{"minibatch_discrimination": {"num_kernels": 4}}, {"minibatch_std": 2}], ids=["md", "mbstd"]
)
def test_mlp_options_make_sample_0s_score_depend_on_the_batch(options: dict) -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 2)
    moved = x.clone()
    moved[2] += 1.0  # sample 2 is in sample 0's group of 2 (strided: i mod 2)
    plain = MLPDiscriminator(hidden_dim=16)
    torch.testing.assert_close(plain(x)[0], plain(moved)[0])
    d = MLPDiscriminator(hidden_dim=16, **options)
    assert (d(x)[0] - d(moved)[0]).abs() > 1e-6


def test_mlp_with_the_options_supports_double_backward_and_trains_every_parameter() -> None:
    torch.manual_seed(0)
    d = MLPDiscriminator(
        hidden_dim=16, minibatch_discrimination={"num_kernels": 4}, minibatch_std=2, packing=2
    )
    x = torch.randn(6, 4, requires_grad=True)
    (grad,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)
    (d(x).sum() + grad.norm(dim=1).sub(1).square().mean()).backward()
    for name, param in d.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"packing": 0}, "packing"),
        ({"minibatch_std": 1}, "minibatch_std"),
        ({"minibatch_std": True}, "minibatch_std"),
        ({"minibatch_discrimination": 5}, "minibatch_discrimination"),
        ({"minibatch_discrimination": {"kernels": 5}}, "kernels"),
        ({"minibatch_discrimination": {"num_kernels": 0}}, "minibatch_discrimination.num_kernels"),
        ({"minibatch_discrimination": {"include_self": 1}}, "minibatch_discrimination.include_self"),
    ],
)
def test_mlp_refuses_bad_options(kwargs: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named) as info:
        MLPDiscriminator(**kwargs)
    assert "\n" not in str(info.value) and str(info.value).startswith("MLPDiscriminator: ")


# ---------------------------------------------------------------- DCGAN discriminator

_BN = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
DCGAN_DEFAULT_KEYS = [
    "main.0.weight",
    "main.2.weight",
    *(f"main.3.{k}" for k in _BN),
    "main.5.weight",
    *(f"main.6.{k}" for k in _BN),
    "main.8.weight",
    *(f"main.9.{k}" for k in _BN),
    "main.11.weight",
]


def test_dcgan_default_state_dict_keys_and_outputs_are_unchanged() -> None:
    d = DCGANDiscriminator()
    assert list(d.state_dict()) == DCGAN_DEFAULT_KEYS
    assert d.packing == 1 and d.input_shape == (3, 64, 64)
    small = DCGANDiscriminator(image_size=16, ndf=4).eval()
    x = torch.randn(3, 3, 16, 16)
    torch.testing.assert_close(small(x), small.main(x).view(3))  # the forward pass before the options


def test_dcgan_options_widen_the_output_layer_and_only_add_collapse_keys() -> None:
    d = DCGANDiscriminator(
        image_size=16, ndf=4, minibatch_discrimination={"num_kernels": 3, "kernel_dim": 2}, minibatch_std=2
    )
    # 16 px: widths 4, 8 and a 4×4 base map; the output conv reads 8 + 3 MD + 1 std channels.
    assert d.main[-1].in_channels == 8 + 3 + 1
    assert d.collapse[0].in_features == 8 * 4 * 4
    assert d.feature_shape == (8, 4, 4)
    plain_keys = list(DCGANDiscriminator(image_size=16, ndf=4).state_dict())
    assert list(d.state_dict()) == [*plain_keys, "collapse.0.weight"]
    x = torch.randn(6, 3, 16, 16)
    assert d.features(x).shape == (6, 8, 4, 4)
    assert d(x).shape == (6,)


def test_dcgan_packing_widens_the_first_convolution() -> None:
    d = DCGANDiscriminator(image_size=16, channels=1, ndf=4, packing=2)
    assert d.packing == 2 and d.input_shape == (2, 16, 16)
    assert d.main[0].in_channels == 2
    assert d(pack(torch.randn(6, 1, 16, 16), 2)).shape == (3,)


@pytest.mark.parametrize(
    "options", [{"minibatch_discrimination": {"num_kernels": 4}}, {"minibatch_std": 2}], ids=["md", "mbstd"]
)
def test_dcgan_options_make_sample_0s_score_depend_on_the_batch(options: dict) -> None:
    # Layer norm, so that nothing else couples the samples.
    torch.manual_seed(0)
    x = torch.randn(4, 3, 16, 16)
    moved = x.clone()
    moved[2] += 1.0
    plain = DCGANDiscriminator(image_size=16, ndf=4, norm="layer")
    torch.testing.assert_close(plain(x)[0], plain(moved)[0])
    d = DCGANDiscriminator(image_size=16, ndf=4, norm="layer", **options)
    assert (d(x)[0] - d(moved)[0]).abs() > 1e-6


def test_dcgan_spectral_norm_with_options_builds() -> None:
    d = DCGANDiscriminator(image_size=16, ndf=4, spectral_norm=True, norm="none", minibatch_std=2)
    assert d.feature_shape == (8, 4, 4)
    assert d(torch.randn(4, 3, 16, 16)).shape == (4,)
    assert isinstance(d.collapse[0], MinibatchStd) and not list(d.collapse.parameters())
    assert isinstance(d.main[-1], nn.Conv2d)
