"""Image-to-image translation networks: pix2pix's U-Net and PatchGAN, CycleGAN's ResNet generator.

The defaults must be the authors' released networks (junyanz/pytorch-CycleGAN-and-pix2pix,
models/networks.py) layer for layer: their published parameter counts, and their state-dict
keys and shapes (so reference checkpoints load). The expected key lists below were written out
by hand from the reference code, not generated from ours.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gan_research.errors import ConfigError
from gan_research.networks.patchgan import PatchGANDiscriminator
from gan_research.networks.resnet_generator import ResnetGenerator
from gan_research.networks.unet import UNetGenerator


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def batch_norm(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    """The state-dict entries of a reference BatchNorm2d(channels) (affine, running stats)."""
    return {
        f"{prefix}.weight": (channels,),
        f"{prefix}.bias": (channels,),
        f"{prefix}.running_mean": (channels,),
        f"{prefix}.running_var": (channels,),
        f"{prefix}.num_batches_tracked": (),
    }


def conv(prefix: str, weight: tuple[int, ...], bias: int | None = None) -> dict[str, tuple[int, ...]]:
    entries = {f"{prefix}.weight": weight}
    if bias is not None:
        entries[f"{prefix}.bias"] = (bias,)
    return entries


# ---------------------------------------------------------------------------------------------
# Published parameter counts (the reference prints them when it builds its networks).


@pytest.fixture(scope="module")
def unet_256() -> UNetGenerator:
    return UNetGenerator()


@pytest.fixture(scope="module")
def resnet_9blocks() -> ResnetGenerator:
    return ResnetGenerator()


def test_unet_256_has_the_published_parameter_count(unet_256: UNetGenerator) -> None:
    assert n_params(unet_256) == 54_413_955
    assert unet_256.input_shape == unet_256.output_shape == (3, 256, 256)
    # pix2pix's default: dropout in the three 8*ngf decoder levels below the bottleneck.
    assert sum(isinstance(m, nn.Dropout) for m in unet_256.modules()) == 3


def test_unet_128_depth() -> None:
    unet_128 = UNetGenerator(num_downs=7, image_size=128)
    assert n_params(unet_128) == 41_828_995
    assert sum(isinstance(m, nn.Dropout) for m in unet_128.modules()) == 2


def test_resnet_generators_have_the_published_parameter_counts(resnet_9blocks: ResnetGenerator) -> None:
    assert n_params(resnet_9blocks) == 11_378_179
    assert n_params(ResnetGenerator(n_blocks=6, image_size=128)) == 7_837_699
    assert resnet_9blocks.input_shape == resnet_9blocks.output_shape == (3, 256, 256)


def test_patchgan_has_the_published_parameter_counts() -> None:
    assert n_params(PatchGANDiscriminator(input_channels=6, norm="batch")) == 2_768_705
    assert n_params(PatchGANDiscriminator(input_channels=3, norm="instance")) == 2_764_737


def test_weights_follow_the_reference_normal_initialisation(resnet_9blocks: ResnetGenerator) -> None:
    """N(0, 0.02) conv weights, zero biases, batch-norm scales N(1, 0.02): the reference's init_weights."""
    torch.manual_seed(0)
    unet = UNetGenerator(ngf=16)
    for net in (resnet_9blocks, unet):
        convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        weights = torch.cat([m.weight.detach().flatten() for m in convs])
        assert abs(weights.mean().item()) < 1e-3
        assert weights.std().item() == pytest.approx(0.02, rel=0.02)
        assert all(torch.all(m.bias == 0) for m in convs if m.bias is not None)
    norms = [m for m in unet.modules() if isinstance(m, nn.BatchNorm2d)]
    scales = torch.cat([m.weight.detach() for m in norms])
    assert scales.mean().item() == pytest.approx(1.0, abs=0.01)
    assert scales.std().item() == pytest.approx(0.02, rel=0.2)
    assert all(torch.all(m.bias == 0) for m in norms)


# ---------------------------------------------------------------------------------------------
# State dicts: the reference's module names, widths, kernels and biases.


def test_unet_state_dict_is_the_references() -> None:
    # UnetGenerator(3, 2, num_downs=5, ngf=8, batch norm): outermost(2, 8) > (8, 16) > (16, 32) >
    # (32, 64) > innermost(64, 64). Each block's Sequential: intermediate [LeakyReLU, Conv, BN,
    # submodule, ReLU, ConvT, BN]; innermost [LeakyReLU, Conv, ReLU, ConvT, BN]; outermost
    # [Conv, submodule, ReLU, ConvT(bias), Tanh]. Batch norm: no conv bias but the last.
    b1 = "model.model.1"
    b2 = f"{b1}.model.3"
    b3 = f"{b2}.model.3"
    b4 = f"{b3}.model.3"
    expected = {
        **conv("model.model.0", (8, 3, 4, 4)),
        **conv(f"{b1}.model.1", (16, 8, 4, 4)),
        **batch_norm(f"{b1}.model.2", 16),
        **conv(f"{b2}.model.1", (32, 16, 4, 4)),
        **batch_norm(f"{b2}.model.2", 32),
        **conv(f"{b3}.model.1", (64, 32, 4, 4)),
        **batch_norm(f"{b3}.model.2", 64),
        **conv(f"{b4}.model.1", (64, 64, 4, 4)),
        **conv(f"{b4}.model.3", (64, 64, 4, 4)),  # ConvTranspose2d weights are (in, out, k, k)
        **batch_norm(f"{b4}.model.4", 64),
        **conv(f"{b3}.model.5", (128, 32, 4, 4)),
        **batch_norm(f"{b3}.model.6", 32),
        **conv(f"{b2}.model.5", (64, 16, 4, 4)),
        **batch_norm(f"{b2}.model.6", 16),
        **conv(f"{b1}.model.5", (32, 8, 4, 4)),
        **batch_norm(f"{b1}.model.6", 8),
        **conv("model.model.3", (16, 2, 4, 4), bias=2),
    }
    net = UNetGenerator(3, 2, num_downs=5, ngf=8, image_size=32)
    assert shapes(net) == expected
    assert list(net.state_dict()) == list(expected)  # the reference's order too


def test_unet_with_instance_norm_has_biases_and_no_norm_state() -> None:
    b1 = "model.model.1"
    b2, b3 = f"{b1}.model.3", f"{b1}.model.3.model.3"
    b4 = f"{b3}.model.3"
    expected = {
        **conv("model.model.0", (8, 1, 4, 4), bias=8),
        **conv(f"{b1}.model.1", (16, 8, 4, 4), bias=16),
        **conv(f"{b2}.model.1", (32, 16, 4, 4), bias=32),
        **conv(f"{b3}.model.1", (64, 32, 4, 4), bias=64),
        **conv(f"{b4}.model.1", (64, 64, 4, 4), bias=64),
        **conv(f"{b4}.model.3", (64, 64, 4, 4), bias=64),
        **conv(f"{b3}.model.5", (128, 32, 4, 4), bias=32),
        **conv(f"{b2}.model.5", (64, 16, 4, 4), bias=16),
        **conv(f"{b1}.model.5", (32, 8, 4, 4), bias=8),
        **conv("model.model.3", (16, 1, 4, 4), bias=1),
    }
    assert shapes(UNetGenerator(1, 1, num_downs=5, ngf=8, norm="instance", image_size=32)) == expected


def test_unet_dropout_sits_after_the_intermediate_8ngf_blocks_without_shifting_keys() -> None:
    # num_downs=7: two intermediate 8*ngf blocks between the 4ngf->8ngf block and the innermost;
    # each ends in Dropout(0.5) (index 7, after the parameters: the keys do not move).
    net = UNetGenerator(num_downs=7, ngf=4, image_size=128, use_dropout=True)
    plain = UNetGenerator(num_downs=7, ngf=4, image_size=128, use_dropout=False)
    assert shapes(net) == shapes(plain)
    dropouts = {name: m for name, m in net.named_modules() if isinstance(m, nn.Dropout)}
    # model.model.1 is the (ngf, 2ngf) block, then (2ngf, 4ngf), (4ngf, 8ngf), the first 8ngf one.
    inner = "model.model.1.model.3.model.3.model.3"
    assert sorted(dropouts) == [f"{inner}.model.3.model.7", f"{inner}.model.7"]
    assert all(m.p == 0.5 for m in dropouts.values())
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    # The reference's shallowest U-Net has no such blocks, hence no dropout at all.
    assert not any(isinstance(m, nn.Dropout) for m in UNetGenerator(num_downs=5, image_size=32).modules())


def test_resnet_state_dict_is_the_references() -> None:
    # ResnetGenerator(3, 2, ngf=4, n_blocks=1, instance norm): [pad, conv7, IN, ReLU] (0-3),
    # [conv3 s2, IN, ReLU] x2 (4-9), ResnetBlock (10: [pad, conv, IN, ReLU, pad, conv, IN]),
    # [convT, IN, ReLU] x2 (11-16), pad, conv7 (18), Tanh. Instance norm: every conv has a bias.
    expected = {
        **conv("model.1", (4, 3, 7, 7), bias=4),
        **conv("model.4", (8, 4, 3, 3), bias=8),
        **conv("model.7", (16, 8, 3, 3), bias=16),
        **conv("model.10.conv_block.1", (16, 16, 3, 3), bias=16),
        **conv("model.10.conv_block.5", (16, 16, 3, 3), bias=16),
        **conv("model.11", (16, 8, 3, 3), bias=8),
        **conv("model.14", (8, 4, 3, 3), bias=4),
        **conv("model.18", (2, 4, 7, 7), bias=2),
    }
    net = ResnetGenerator(3, 2, ngf=4, n_blocks=1, image_size=32)
    assert shapes(net) == expected
    assert list(net.state_dict()) == list(expected)
    ups = [m for m in net.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.kernel_size, m.stride, m.padding, m.output_padding) for m in ups] == [
        ((3, 3), (2, 2), (1, 1), (1, 1))
    ] * 2
    assert isinstance(net.model[0], nn.ReflectionPad2d) and net.model[0].padding == (3, 3, 3, 3)
    assert isinstance(net.model[-1], nn.Tanh)


def test_resnet_9blocks_keys_match_the_released_checkpoints(resnet_9blocks: ResnetGenerator) -> None:
    keys = list(resnet_9blocks.state_dict())
    assert keys[:2] == ["model.1.weight", "model.1.bias"]
    blocks = [
        f"model.{i}.conv_block.{j}.{p}" for i in range(10, 19) for j in (1, 5) for p in ("weight", "bias")
    ]
    assert keys[6:-6] == blocks
    assert keys[-6:] == [f"model.{i}.{p}" for i in (19, 22, 26) for p in ("weight", "bias")]


def test_resnet_with_batch_norm_drops_the_biases_before_norms() -> None:
    expected = {
        **conv("model.1", (4, 1, 7, 7)),
        **batch_norm("model.2", 4),
        **conv("model.4", (8, 4, 3, 3)),
        **batch_norm("model.5", 8),
        **conv("model.7", (16, 8, 3, 3)),
        **batch_norm("model.8", 16),
        **conv("model.10.conv_block.1", (16, 16, 3, 3)),
        **batch_norm("model.10.conv_block.2", 16),
        **conv("model.10.conv_block.5", (16, 16, 3, 3)),
        **batch_norm("model.10.conv_block.6", 16),
        **conv("model.11", (16, 8, 3, 3)),
        **batch_norm("model.12", 8),
        **conv("model.14", (8, 4, 3, 3)),
        **batch_norm("model.15", 4),
        **conv("model.18", (1, 4, 7, 7), bias=1),
    }
    assert shapes(ResnetGenerator(1, 1, ngf=4, n_blocks=1, norm="batch", image_size=32)) == expected


@pytest.mark.parametrize(
    ("padding_type", "use_dropout", "convs", "pads"),
    [
        ("reflect", False, (1, 5), nn.ReflectionPad2d),
        ("reflect", True, (1, 6), nn.ReflectionPad2d),
        ("replicate", False, (1, 5), nn.ReplicationPad2d),
        ("zero", False, (0, 3), None),
        ("zero", True, (0, 4), None),
    ],
)
def test_resnet_block_layout(
    padding_type: str, use_dropout: bool, convs: tuple[int, int], pads: type | None
) -> None:
    net = ResnetGenerator(
        ngf=4, n_blocks=2, padding_type=padding_type, use_dropout=use_dropout, image_size=32
    )
    block = net.model[10].conv_block
    assert [i for i, m in enumerate(block) if isinstance(m, nn.Conv2d)] == list(convs)
    assert [m.padding for m in block if isinstance(m, nn.Conv2d)] == [(1, 1) if pads is None else (0, 0)] * 2
    if pads is not None:
        assert [type(m) for m in block if isinstance(m, (nn.ReflectionPad2d, nn.ReplicationPad2d))] == [
            pads
        ] * 2
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == (2 if use_dropout else 0)
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_patchgan_state_dict_is_the_references() -> None:
    # NLayerDiscriminator(6, ndf=4, n_layers=3, batch norm): conv (bias), LReLU, [conv, BN, LReLU]
    # x2 (stride 2), conv, BN, LReLU (stride 1), conv (bias) to one channel.
    expected = {
        **conv("model.0", (4, 6, 4, 4), bias=4),
        **conv("model.2", (8, 4, 4, 4)),
        **batch_norm("model.3", 8),
        **conv("model.5", (16, 8, 4, 4)),
        **batch_norm("model.6", 16),
        **conv("model.8", (32, 16, 4, 4)),
        **batch_norm("model.9", 32),
        **conv("model.11", (1, 32, 4, 4), bias=1),
    }
    assert shapes(PatchGANDiscriminator(6, ndf=4, image_size=32)) == expected
    # Instance norm (no affine, no running stats): no norm state, and biases on every conv.
    instance = {
        **conv("model.0", (4, 3, 4, 4), bias=4),
        **conv("model.2", (8, 4, 4, 4), bias=8),
        **conv("model.5", (16, 8, 4, 4), bias=16),
        **conv("model.8", (32, 16, 4, 4), bias=32),
        **conv("model.11", (1, 32, 4, 4), bias=1),
    }
    assert shapes(PatchGANDiscriminator(3, ndf=4, norm="instance", image_size=32)) == instance


# ---------------------------------------------------------------------------------------------
# Behaviour.


def test_patchgan_output_is_30x30_at_256px() -> None:
    d = PatchGANDiscriminator(6, ndf=2, image_size=256)
    assert d.input_shape == (6, 256, 256)
    assert d(torch.randn(1, 6, 256, 256)).shape == (1, 1, 30, 30)


@pytest.mark.parametrize(("n_layers", "field"), [(1, 16), (2, 34), (3, 70), (4, 142)])
def test_patchgan_receptive_field(n_layers: int, field: int) -> None:
    """The input pixels one central output depends on span field x field (70 for the paper's D)."""
    torch.manual_seed(0)
    d = PatchGANDiscriminator(1, ndf=2, n_layers=n_layers, norm="none", image_size=256).double()
    x = torch.randn(1, 1, 256, 256, dtype=torch.float64, requires_grad=True)
    out = d(x)
    h, w = out.shape[-2:]
    out[0, 0, h // 2, w // 2].backward()
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
    assert rows.max() - rows.min() + 1 == field
    assert cols.max() - cols.min() + 1 == field
    assert len(rows) == field * field  # the whole square, not just its outline


def test_patchgan_one_input_pixel_moves_a_block_of_patches() -> None:
    """Perturbing one pixel changes only the patches whose 70x70 field covers it."""
    torch.manual_seed(0)
    d = PatchGANDiscriminator(1, ndf=2, norm="none", image_size=128).double()
    x = torch.randn(1, 1, 128, 128, dtype=torch.float64)
    y = x.clone()
    y[0, 0, 64, 64] += 1.0
    with torch.no_grad():
        changed = torch.nonzero(d(x) != d(y))
    # Output i sees input rows 8i - 23 .. 8i + 46 (stride 8, field 70, the paddings shifting it by
    # 1 + 2 + 4 + 8 + 8 = 23): the outputs whose field covers row 64 are i = 3 .. 10.
    assert sorted({int(i) for i in changed[:, 2]}) == list(range(3, 11))
    assert sorted({int(j) for j in changed[:, 3]}) == list(range(3, 11))


def test_patchgan_rejects_too_many_layers() -> None:
    with pytest.raises(ConfigError, match="n_layers=4"):
        PatchGANDiscriminator(3, n_layers=4, image_size=32)
    PatchGANDiscriminator(3, ndf=2, n_layers=3, image_size=32)  # 2x2 patches: still fine


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_unet_shapes_and_range(channels: int, norm: str) -> None:
    torch.manual_seed(0)
    net = UNetGenerator(channels, channels, num_downs=5, ngf=8, norm=norm, image_size=32)
    assert net.input_shape == net.output_shape == (channels, 32, 32)
    y = net(10 * torch.randn(2, channels, 32, 32))
    assert y.shape == (2, channels, 32, 32)
    assert y.abs().max() <= 1.0


def test_unet_maps_between_channel_counts_and_reaches_a_1x1_bottleneck() -> None:
    net = UNetGenerator(1, 3, num_downs=6, ngf=2, image_size=64)
    innermost = net.model.model[1].model[3].model[3].model[3].model[3]
    assert innermost.model[1].out_channels == 16  # 8 * ngf
    seen = []
    innermost.model[1].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    assert net(torch.randn(2, 1, 64, 64)).shape == (2, 3, 64, 64)
    assert seen == [(2, 16, 1, 1)]


def test_unet_skip_carries_the_leaky_relu_features_like_the_reference() -> None:
    """The reference's in-place LeakyReLU overwrites a block's input before the skip concatenation."""
    torch.manual_seed(0)
    net = UNetGenerator(num_downs=5, ngf=4, image_size=32)
    block = net.model.model[1]  # input: the outermost block's 4-channel 16x16 features
    x = torch.randn(2, 4, 16, 16)
    y = block(x.clone())
    assert y.shape == (2, 8, 16, 16)
    torch.testing.assert_close(y[:, :4], F.leaky_relu(x, 0.2))


def test_unet_dropout_is_active_in_train_mode_only() -> None:
    torch.manual_seed(0)
    net = UNetGenerator(num_downs=6, ngf=4, image_size=64, use_dropout=True)
    x = torch.randn(2, 3, 64, 64)
    net.train()
    assert not torch.equal(net(x), net(x))
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
    plain = UNetGenerator(num_downs=6, ngf=4, image_size=64, use_dropout=False).train()
    assert torch.equal(plain(x), plain(x))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("n_blocks", [0, 2])
def test_resnet_shapes_and_range(channels: int, n_blocks: int) -> None:
    torch.manual_seed(0)
    net = ResnetGenerator(channels, 3, ngf=4, n_blocks=n_blocks, image_size=32)
    assert net.input_shape == (channels, 32, 32) and net.output_shape == (3, 32, 32)
    y = net(10 * torch.randn(2, channels, 32, 32))
    assert y.shape == (2, 3, 32, 32)
    assert y.abs().max() <= 1.0
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == 4 + 2 * n_blocks


@pytest.mark.parametrize(
    "make",
    [
        lambda: UNetGenerator(1, 3, num_downs=6, ngf=4, norm="batch", image_size=64),
        lambda: UNetGenerator(3, 1, num_downs=5, ngf=4, norm="instance", image_size=32),
        lambda: ResnetGenerator(1, 3, ngf=4, n_blocks=2, norm="instance", image_size=32),
        lambda: ResnetGenerator(3, 3, ngf=4, n_blocks=1, norm="batch", use_dropout=True, image_size=16),
        lambda: PatchGANDiscriminator(4, ndf=4, n_layers=2, norm="batch", image_size=32),
    ],
)
def test_gradients_reach_every_parameter(make) -> None:
    torch.manual_seed(0)
    net = make()
    out = net(torch.randn(2, *net.input_shape))
    # A random weighting: a plain sum right after a norm layer has zero gradient by construction.
    (out * torch.randn_like(out)).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# ---------------------------------------------------------------------------------------------
# Configuration errors.


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": 48}, "image_size=48 is not divisible by 2\\*\\*num_downs=256"),
        ({"image_size": 64, "num_downs": 7}, "num_downs <= 6"),
        ({"image_size": 16, "num_downs": 5}, "image_size=16"),
        ({"num_downs": 4, "image_size": 32}, "num_downs=4"),
        ({"norm": "group"}, "norm='group'.*batch, instance, none"),
        ({"ngf": 0}, "ngf"),
        ({"input_channels": True}, "input_channels"),
    ],
)
def test_unet_config_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        UNetGenerator(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_blocks": -1}, "n_blocks"),
        ({"n_blocks": 1.5}, "n_blocks"),
        ({"n_blocks": True}, "n_blocks"),
        ({"norm": "layer"}, "norm='layer'.*batch, instance, none"),
        ({"padding_type": "circular"}, "padding_type='circular'.*reflect, replicate, zero"),
        ({"image_size": 30}, "image_size=30"),
        ({"image_size": 4}, "image_size=4"),
        ({"ngf": -2}, "ngf"),
        ({"output_channels": 0}, "output_channels"),
    ],
)
def test_resnet_config_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ResnetGenerator(**kwargs)
