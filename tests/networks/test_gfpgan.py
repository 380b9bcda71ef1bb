"""GFP-GAN's generator (gan_research.networks.gfpgan): shapes and the image pyramid, W+ or one w, the
U-Net wiring of the reference (GFPGANv1Clean), the CS-SFT after each resolution's upsampling conv
with its pass-through channels intact, the prior's arithmetic equal to StyleGAN2's synthesis, the
frozen or trainable prior, and loading the prior from a StyleGAN2 run's checkpoint with its
one-line refusals; the facial-component discriminator's logits, features and layout."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from gan_research.errors import CheckpointError, ConfigError
from gan_research.networks.gfpgan import PRIOR_KEY, FacialComponentDiscriminator, GFPGANGenerator
from gan_research.networks.stylegan import StyleGANGenerator
from gan_research.utils.weights import WeightsFileMissing

TINY = {"w_dim": 16, "fmap_base": 64, "fmap_max": 16}


@pytest.fixture(autouse=True)
def _one_thread():
    # Two threads on a shared two-core machine make these tiny convolutions slower, not faster.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make(image_size: int = 32, channels: int = 1, **kwargs) -> GFPGANGenerator:
    torch.manual_seed(0)
    return GFPGANGenerator(image_size=image_size, channels=channels, **{**TINY, **kwargs})


def images(n: int, channels: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# -- shapes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("size", "channels"), [(8, 1), (16, 3), (32, 1), (32, 3)])
def test_restores_an_image_of_the_input_shape_with_one_pyramid_image_per_level(size, channels):
    g = make(size, channels)
    assert g.input_shape == g.output_shape == (channels, size, size)
    levels = [2**k for k in range(3, int(math.log2(size)) + 1)]
    assert g.resolutions == tuple(levels)
    x = images(2, channels, size)
    out = g(x)
    assert out.shape == (2, channels, size, size)
    image, pyramid = g(x, return_pyramid=True)
    assert image.shape == out.shape
    assert [tuple(p.shape) for p in pyramid] == [(2, channels, r, r) for r in levels]
    assert all(torch.isfinite(t).all() for t in [image, *pyramid])


def test_widths_follow_the_prior_and_the_unet_settings():
    g = make(32, 1)  # prior widths min(64 // r, 16): 16, 8, 4, 2 at 4, 8, 16, 32
    assert [g.sft[f"b{r}"].channels for r in (8, 16, 32)] == [8, 4, 2]
    assert [g.sft[f"b{r}"].modulated_channels for r in (8, 16, 32)] == [4, 2, 1]
    assert [g.sft[f"b{r}"].scale[0].in_channels for r in (8, 16, 32)] == [8, 4, 2]  # U-Net = prior
    half = make(32, 1, unet_fmap_base=32, unet_fmap_max=8)  # the reference's half-width U-Net
    assert [half.sft[f"b{r}"].scale[0].in_channels for r in (8, 16, 32)] == [4, 2, 1]
    assert half.conv_body_first.out_channels == 1 and half.final_conv.out_channels == 8
    assert [half.sft[f"b{r}"].channels for r in (8, 16, 32)] == [8, 4, 2]  # the prior is unchanged


# -- the latent code ------------------------------------------------------------------------------
def test_different_w_gives_one_w_per_style_input_else_one_broadcast_w():
    x = images(2, 1, 32)
    plus = make(32, 1, different_w=True)
    assert plus.final_linear.out_features == plus.num_ws * 16 == 8 * 16
    ws, _ = plus.encode(x)
    assert ws.shape == (2, 8, 16)
    assert not torch.allclose(ws[:, 0], ws[:, 1])
    single = make(32, 1, different_w=False)
    assert single.final_linear.out_features == 16
    ws, _ = single.encode(x)
    assert ws.shape == (2, 8, 16)
    assert torch.equal(ws, ws[:, :1].expand_as(ws))
    assert single(x).shape == (2, 1, 32, 32)


# -- the U-Net wiring -----------------------------------------------------------------------------
def reference_unet(g: GFPGANGenerator, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """GFPGANv1Clean.forward's encoder and decoder loops, written as the reference writes them."""
    unet_skips = []
    feat = F.leaky_relu(g.conv_body_first(x), 0.2)
    for i in range(len(g.conv_body_down)):
        feat = g.conv_body_down[i](feat)
        unet_skips.insert(0, feat)
    feat = F.leaky_relu(g.final_conv(feat), 0.2)
    style_code = g.final_linear(feat.view(feat.size(0), -1)).view(x.shape[0], -1, g.w_dim)
    decoder = []
    for i in range(len(g.conv_body_up)):
        feat = feat + unet_skips[i]
        feat = g.conv_body_up[i](feat)
        decoder.append(feat)
    return style_code, decoder


@pytest.mark.parametrize("size", [8, 32])
def test_the_unet_adds_each_skip_before_the_up_block_as_the_reference(size):
    g = make(size, 3)
    x = images(2, 3, size)
    ws, features = g.encode(x)
    want_ws, want_features = reference_unet(g, x)
    torch.testing.assert_close(ws, want_ws)
    assert list(features) == list(g.resolutions)
    for r, want in zip(g.resolutions, want_features, strict=True):
        assert features[r].shape[-1] == r
        torch.testing.assert_close(features[r], want)
    _, pyramid = g(x, return_pyramid=True)
    for rgb, level, to_rgb in zip(pyramid, want_features, g.pyramid_to_rgb, strict=True):
        torch.testing.assert_close(rgb, to_rgb(level))


# -- the prior with CS-SFT ------------------------------------------------------------------------
def make_sft_identity(g: GFPGANGenerator) -> None:
    """α = 1 and β = 0 exactly: the CS-SFT layers leave the prior's features unchanged."""
    with torch.no_grad():
        for sft in g.sft.values():
            for net, bias in ((sft.scale, 1.0), (sft.shift, 0.0)):
                net[-1].weight.zero_()
                net[-1].bias.fill_(bias)


def test_with_identity_sft_the_prior_computes_exactly_stylegan2s_synthesis():
    g = make(32, 3, noise_mode="const")
    x = images(2, 3, 32)
    ws, _ = g.encode(x)
    modulated = g(x)
    make_sft_identity(g)
    torch.testing.assert_close(g(x), g.synthesis(ws, noise_mode="const"), rtol=0, atol=1e-6)
    # ... and the CS-SFT does change it when it is not the identity.
    assert not torch.allclose(modulated, g.synthesis(ws, noise_mode="const"), atol=1e-3)


@pytest.mark.parametrize(("split", "identity"), [(0.5, {8: 4, 16: 2, 32: 1}), (1.0, {8: 0, 16: 0, 32: 0})])
def test_the_cs_sft_follows_each_upsampling_conv_and_passes_the_first_channels_through(split, identity):
    g = make(32, 1, sft_split=split)
    conv_out, next_in = {}, {}
    for r in (8, 16, 32):
        g.synthesis.layers[f"b{r}_conv0"].register_forward_hook(
            lambda _m, _a, out, r=r: conv_out.__setitem__(r, out)
        )
        g.synthesis.layers[f"b{r}_conv1"].register_forward_pre_hook(
            lambda _m, args, r=r: next_in.__setitem__(r, args[0])
        )
    g(images(2, 1, 32))
    for r, k in identity.items():
        assert g.sft[f"b{r}"].identity_channels == k
        assert torch.equal(next_in[r][:, :k], conv_out[r][:, :k]), r
        # The modulated channels differ in every channel: α and β came from the decoder features.
        changed = (next_in[r][:, k:] - conv_out[r][:, k:]).abs().amax(dim=(0, 2, 3))
        assert (changed > 1e-4).all(), (r, changed)


def test_noise_mode_is_read_at_every_call():
    g = make(16, 1)
    with torch.no_grad():
        for layer in g.synthesis.layers.values():
            layer.noise.strength.fill_(1.0)  # zero at init: no visible noise otherwise
    x = images(2, 1, 16)
    g.noise_mode = "const"
    torch.testing.assert_close(g(x), g(x), rtol=0, atol=0)
    g.noise_mode = "random"
    assert not torch.allclose(g(x), g(x))
    g.noise_mode = "wrong"
    with pytest.raises(
        ConfigError, match=r"model\.generator\.noise_mode='wrong' is invalid: expected one of"
    ):
        g(x)


# -- frozen or trainable prior --------------------------------------------------------------------
def backward(g: GFPGANGenerator) -> None:
    image, pyramid = g(images(2, 1, 16), return_pyramid=True)
    (image.square().mean() + sum(p.square().mean() for p in pyramid)).backward()


def test_the_frozen_prior_gets_no_gradient_while_the_unet_and_cs_sft_do():
    g = make(16, 1)
    assert not any(p.requires_grad for p in g.synthesis.parameters())
    backward(g)
    for name, p in g.named_parameters():
        if name.startswith("synthesis."):
            assert p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert any(n.startswith("sft.") for n, _ in g.named_parameters())


def test_a_trainable_prior_gets_gradients():
    g = make(16, 1, prior_trainable=True)
    backward(g)
    for name, p in g.synthesis.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# -- loading the prior ----------------------------------------------------------------------------
def stylegan2(image_size: int = 32, channels: int = 1, w_dim: int = 16, version: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    return StyleGANGenerator(
        latent_dim=16,
        w_dim=w_dim,
        image_size=image_size,
        channels=channels,
        fmap_base=64,
        fmap_max=16,
        version=version,
    )


def write_run(path, generator, ema=None, **extra) -> str:
    """A checkpoint as the StyleGAN2 family writes it: the LightningModule's state dict (``generator.``,
    ``generator_ema.``, the discriminator, buffers) and Lightning's bookkeeping."""
    state = {f"generator.{k}": v for k, v in generator.state_dict().items()}
    if ema is not None:
        state.update({f"generator_ema.{k}": v for k, v in ema.state_dict().items()})
    state.update({"discriminator.fc.weight": torch.zeros(4, 4), "pl_mean": torch.zeros(())})
    torch.save(
        {"state_dict": state, "global_step": 500, "epoch": 0, "pytorch-lightning_version": "2.6", **extra},
        path,
    )
    return str(path)


def run_with_ema(tmp_path):
    plain = stylegan2(seed=0)
    ema = copy.deepcopy(plain)
    with torch.no_grad():
        for p in ema.parameters():
            p.add_(torch.randn_like(p))
    return write_run(tmp_path / "last.ckpt", plain, ema), plain, ema


def assert_same_weights(synthesis, source) -> None:
    want = source.synthesis_network.state_dict()
    got = synthesis.state_dict()
    assert list(got) == list(want)
    for key, value in want.items():
        assert torch.equal(got[key], value), key


def test_the_prior_loads_the_ema_synthesis_weights_and_is_frozen(tmp_path):
    path, plain, ema = run_with_ema(tmp_path)
    g = make(32, 1, prior_checkpoint=path)
    assert_same_weights(g.synthesis, ema)
    assert not torch.equal(g.synthesis.const, plain.synthesis_network.const)
    assert g.prior_source == path and g.prior_weights == "generator_ema"
    assert not any(p.requires_grad for p in g.synthesis.parameters())
    assert all(p.requires_grad for n, p in g.named_parameters() if not n.startswith("synthesis."))
    assert g(images(1, 1, 32)).shape == (1, 1, 32, 32)


def test_prior_use_ema_false_loads_the_trained_generator(tmp_path):
    path, plain, _ = run_with_ema(tmp_path)
    g = make(32, 1, prior_checkpoint=path, prior_use_ema=False, prior_trainable=True)
    assert_same_weights(g.synthesis, plain)
    assert g.prior_weights == "generator"
    assert all(p.requires_grad for p in g.synthesis.parameters())


def test_a_run_without_ema_gives_its_generator(tmp_path):
    plain = stylegan2(seed=3)
    g = make(32, 1, prior_checkpoint=write_run(tmp_path / "a.ckpt", plain))
    assert_same_weights(g.synthesis, plain)
    assert g.prior_weights == "generator"


def refusal(error, **kwargs) -> str:
    with pytest.raises(error) as info:
        make(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert PRIOR_KEY in message
    return message


@pytest.mark.parametrize(
    ("prior", "model", "expected"),
    [
        # A 32 px prior for a 16 px model: its b32 layers have no place here.
        ({}, {"image_size": 16}, ["unexpected", "synthesis_network.layers.b32_conv0", "32 px", "16 px"]),
        # A 64 px prior for a 32 px model.
        ({"image_size": 64}, {}, ["unexpected", "64 px", "expects a 32 px"]),
        # A 32 px prior for a 64 px model: the b64 layers are missing.
        ({}, {"image_size": 64}, ["missing", "synthesis_network.layers.b64_conv0", "expects a 64 px"]),
        (
            {"channels": 3},
            {},
            [
                "to_rgb.b4.bias has shape (3,) in the file, expected (1,)",
                "3-channel",
                "expects a 32 px, 1-channel",
            ],
        ),
        (
            {"w_dim": 32},
            {},
            [
                "layers.b4_conv1.conv.affine.weight has shape (16, 32) in the file, expected (16, 16)",
                "w_dim 32",
                "1-channel StyleGAN2 with w_dim 16",
            ],
        ),
    ],
)
def test_a_prior_of_another_size_is_one_line_naming_the_key_and_both_priors(tmp_path, prior, model, expected):
    path = write_run(tmp_path / "other.ckpt", stylegan2(**prior), stylegan2(**prior))
    message = refusal(CheckpointError, prior_checkpoint=path, **model)
    assert "does not fit this GFPGANGenerator" in message
    for text in expected:
        assert text in message, (text, message)


def test_a_missing_file_says_how_to_make_one(tmp_path):
    missing = str(tmp_path / "nowhere.ckpt")
    message = refusal(WeightsFileMissing, prior_checkpoint=missing)
    assert issubclass(WeightsFileMissing, ConfigError)
    assert f"{PRIOR_KEY}={missing}" in message and "does not exist" in message
    assert "gan-train experiment=stylegan2_digits" in message


def test_a_run_without_stylegan2_synthesis_weights_is_refused(tmp_path):
    path = tmp_path / "dcgan.ckpt"
    torch.save({"state_dict": {"generator.main.0.weight": torch.zeros(2, 2)}, "global_step": 1}, path)
    message = refusal(CheckpointError, prior_checkpoint=str(path))
    assert "holds no StyleGAN2 synthesis weights" in message
    assert "generator.synthesis_network.*" in message and "generator.main.0.weight" in message


def test_a_stylegan_v1_run_is_refused(tmp_path):
    path = write_run(tmp_path / "v1.ckpt", stylegan2(version=1))
    message = refusal(CheckpointError, prior_checkpoint=path)
    assert "StyleGAN (version 1)" in message and "StyleGAN2" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (torch.zeros(3), "holds a Tensor, no 'state_dict'"),
        ({"generator.synthesis_network.const": torch.zeros(1)}, "no 'state_dict'"),
    ],
)
def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path, content, expected):
    path = tmp_path / "weights.pt"
    torch.save(content, path)
    message = refusal(CheckpointError, prior_checkpoint=str(path))
    assert "is not a training checkpoint" in message and expected in message


def test_a_text_file_is_refused(tmp_path):
    path = tmp_path / "notes.ckpt"
    path.write_text("not a checkpoint\n")
    message = refusal(CheckpointError, prior_checkpoint=str(path))
    assert "could not be loaded" in message and "Expected a Lightning checkpoint" in message


RAN: list[str] = []


def _planted() -> dict:
    RAN.append("code ran")
    return {}


class Planted:
    """Unpickles by calling ``_planted``: what a malicious checkpoint does with a shell command."""

    def __reduce__(self):
        return (_planted, ())


def test_a_checkpoint_holding_a_pickled_object_is_refused_without_running_it(tmp_path):
    path = write_run(tmp_path / "planted.ckpt", stylegan2(), hyper_parameters=Planted())
    RAN.clear()
    message = refusal(CheckpointError, prior_checkpoint=path)
    assert RAN == []
    assert "refused, never run" in message


# -- config errors --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": 12}, r"model\.generator\.image_size=12 is invalid: expected a power of two >= 8"),
        ({"image_size": 4}, r"model\.generator\.image_size=4 is invalid: expected a power of two >= 8"),
        ({"image_size": True}, r"model\.generator\.image_size=True is invalid"),
        ({"channels": 0}, r"model\.generator\.channels=0 is invalid: expected a positive integer"),
        ({"w_dim": 0}, r"model\.generator\.w_dim=0 is invalid"),
        ({"unet_fmap_base": 0}, r"unet_fmap_base=0 is invalid: expected a positive integer or null"),
        ({"sft_split": 0}, r"model\.generator\.sft_split=0 is invalid: expected a number in \(0, 1\]"),
        ({"sft_split": 1.5}, r"model\.generator\.sft_split=1\.5 is invalid: expected a number in \(0, 1\]"),
        (
            {"noise_mode": "fixed"},
            r"noise_mode='fixed' is invalid: expected one of \['random', 'const', 'none'\]",
        ),
        ({"different_w": "yes"}, r"model\.generator\.different_w='yes' is invalid: expected true or false"),
    ],
)
def test_bad_arguments_are_one_line_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match) as info:
        make(**{"image_size": 16, **kwargs})
    assert "\n" not in str(info.value) and str(info.value).startswith("model.generator.")


def test_an_input_of_the_wrong_shape_is_refused():
    g = make(16, 1)
    with pytest.raises(ValueError, match=r"expected images \(B, 1, 16, 16\), got \(2, 1, 32, 32\)"):
        g(images(2, 1, 32))


# -- facial-component discriminator ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("channels", "width", "height", "side"), [(1, 4, 16, 32), (3, 2, 12, 20), (3, 1, 4, 4)]
)
def test_the_component_discriminator_gives_a_logit_map_and_two_feature_maps(channels, width, height, side):
    torch.manual_seed(0)
    d = FacialComponentDiscriminator(channels=channels, width=width)
    crops = torch.rand(2, channels, height, side) * 2 - 1
    logits = d(crops)
    assert logits.shape == (2, 1, height // 4, side // 4)
    again, features = d(crops, return_features=True)
    torch.testing.assert_close(again, logits, rtol=0, atol=0)
    # After conv3 (2w channels, half the side) and after conv5 (4w, a quarter): the style loss's.
    assert [tuple(f.shape) for f in features] == [
        (2, 2 * width, height // 2, side // 2),
        (2, 4 * width, height // 4, side // 4),
    ]
    # The logits depend on the crops, and the features carry gradient (the style loss needs it).
    crops.requires_grad_(True)
    logits, features = d(crops, return_features=True)
    assert all(f.requires_grad for f in features)
    (logits.sum()).backward()
    assert crops.grad is not None and crops.grad.abs().sum() > 0


def test_the_component_discriminator_has_the_reference_layout():
    """With channels 3 and width 64 the reference's six 3x3 convolutions (64, 128, 128, 256, 256,
    1 channels): as many weights as its FacialComponentDiscriminator (1,110,785)."""
    d = FacialComponentDiscriminator()
    assert (d.channels, d.width) == (3, 64)
    convs = [d.conv1, d.conv2, d.conv3, d.conv4, d.conv5, d.final_conv]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (3, 64, (3, 3)),
        (64, 128, (3, 3)),
        (128, 128, (3, 3)),
        (128, 256, (3, 3)),
        (256, 256, (3, 3)),
        (256, 1, (3, 3)),
    ]
    assert sum(p.numel() for p in d.parameters()) == 1_110_785


def test_the_component_discriminator_refuses_bad_arguments_and_crops():
    with pytest.raises(ConfigError, match=r"width must be a positive integer, got 0"):
        FacialComponentDiscriminator(channels=1, width=0)
    with pytest.raises(ConfigError, match=r"channels must be a positive integer, got True"):
        FacialComponentDiscriminator(channels=True)
    d = FacialComponentDiscriminator(channels=1, width=2)
    with pytest.raises(ValueError, match=r"expected crops \(B, 1, H, W\) with H, W >= 4, got \(2, 1, 3, 8\)"):
        d(torch.zeros(2, 1, 3, 8))
    with pytest.raises(ValueError, match=r"got \(2, 3, 8, 8\)"):
        d(torch.zeros(2, 3, 8, 8))
