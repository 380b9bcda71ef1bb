"""VQGAN's first stage (Esser et al. 2021, sec. 3.1; taming-transformers' Encoder/Decoder,
VectorQuantizer2, calculate_adaptive_weight): nearest-code quantisation on a hand-made codebook, the
straight-through gradient, the VQ terms and where their gradients go, the EMA codebook, codebook
usage, encoder/decoder shapes and layout, the config errors, and the adaptive weight of eq. 7 against
closed-form gradient norms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from gan_research.errors import ConfigError
from gan_research.losses.vqgan import adaptive_weight
from gan_research.networks.vqgan import (
    AttnBlock,
    Downsample,
    ResnetBlock,
    Upsample,
    VectorQuantizer,
    VQDecoder,
    VQEncoder,
    VQGANAutoencoder,
    group_norm,
)


@pytest.fixture(autouse=True)
def _one_thread():
    # Two threads on a shared two-core machine make these tiny convolutions 10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# A hand-made codebook and four inputs whose nearest codes are known (squared distances in comments).
CODES = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
VECTORS = torch.tensor(
    [
        [0.9, 0.2],  # -> 1 (0.05; code 0: 0.85)
        [0.1, 0.8],  # -> 2 (0.05; code 0: 0.65)
        [-0.7, -0.6],  # -> 3 (0.25; code 0: 0.85)
        [0.1, -0.2],  # -> 0 (0.05; code 1: 0.85)
    ]
)
NEAREST = [1, 2, 3, 0]
# Mean over the 8 elements of the squared errors 0.05 + 0.05 + 0.25 + 0.05.
MEAN_SQUARED_ERROR = 0.40 / 8


def hand_quantizer(**kwargs) -> VectorQuantizer:
    q = VectorQuantizer(4, 2, **kwargs)
    with torch.no_grad():
        q.codebook.copy_(CODES)
        if q.ema:
            q.embed_sum.copy_(CODES)  # the EMA state that makes m_k / N_k the code (N_k = 1)
    return q


def as_map(vectors: torch.Tensor) -> torch.Tensor:
    """(N, d) vectors -> a (1, d, 1, N) map: one row of N positions."""
    return vectors.t().reshape(1, vectors.shape[1], 1, vectors.shape[0]).clone()


def tiny_autoencoder(**kwargs) -> VQGANAutoencoder:
    options = {
        "channels": 3,
        "image_size": 16,
        "ch": 8,
        "ch_mult": (1, 2),
        "num_res_blocks": 1,
        "attn_resolutions": (8,),
        "z_channels": 4,
        "embed_dim": 3,
        "n_embed": 16,
        **kwargs,
    }
    return VQGANAutoencoder(**options)


# -- quantisation -------------------------------------------------------------------------------
def test_quantisation_picks_the_nearest_code() -> None:
    q = hand_quantizer()
    out = q(as_map(VECTORS))
    assert out.indices.shape == (1, 1, 4) and out.indices.dtype == torch.int64
    assert out.indices.flatten().tolist() == NEAREST
    torch.testing.assert_close(out.z_q, as_map(CODES[NEAREST]), rtol=0, atol=1e-7)


def test_quantisation_of_a_batch_matches_brute_force_nearest_neighbours() -> None:
    torch.manual_seed(0)
    q = VectorQuantizer(7, 3)
    with torch.no_grad():
        q.codebook.normal_()
    z = torch.randn(2, 3, 4, 5)
    out = q(z)
    vectors = z.permute(0, 2, 3, 1).reshape(-1, 3)  # position (b, i, j) in raster order
    expected = torch.cdist(vectors, q.codebook.detach()).argmin(1).view(2, 4, 5)
    assert torch.equal(out.indices, expected)
    torch.testing.assert_close(out.z_q, q.codebook.detach()[expected].permute(0, 3, 1, 2))


def test_straight_through_gradient_is_the_identity() -> None:
    torch.manual_seed(0)
    q = hand_quantizer()
    z = as_map(VECTORS).requires_grad_(True)
    weights = torch.randn_like(z)
    (weights * q(z).z_q).sum().backward()
    # d z_q / d z = I: the upstream gradient reaches z unchanged, and none reaches the codebook.
    torch.testing.assert_close(z.grad, weights, rtol=0, atol=0)
    assert q.codebook.grad is None


def test_codebook_and_commitment_terms_against_a_hand_computation() -> None:
    out = hand_quantizer(beta=0.25)(as_map(VECTORS))
    assert out.codebook_loss.item() == pytest.approx(MEAN_SQUARED_ERROR, rel=1e-6)
    assert out.commitment_loss.item() == pytest.approx(0.25 * MEAN_SQUARED_ERROR, rel=1e-6)
    assert out.vq_loss.item() == pytest.approx(1.25 * MEAN_SQUARED_ERROR, rel=1e-6)


def test_codebook_term_moves_only_the_codes_and_commitment_only_the_input() -> None:
    q = hand_quantizer(beta=0.25)
    z = as_map(VECTORS).requires_grad_(True)
    out = q(z)
    out.codebook_loss.backward(retain_graph=True)
    assert z.grad is None
    # d/de_k mean((e_k - sg[z])^2) = 2 Σ_{z->k} (e_k - z) / 8; code k gets exactly its input here.
    expected = torch.zeros_like(CODES)
    for vector, k in zip(VECTORS, NEAREST, strict=True):
        expected[k] = 2 * (CODES[k] - vector) / 8
    torch.testing.assert_close(q.codebook.grad, expected)
    q.codebook.grad = None
    out.commitment_loss.backward()
    assert q.codebook.grad is None
    torch.testing.assert_close(z.grad, as_map(2 * 0.25 * (VECTORS - CODES[NEAREST]) / 8))


def test_in_the_autoencoder_codebook_term_reaches_codebook_only_and_commitment_encoder_only() -> None:
    torch.manual_seed(0)
    ae = tiny_autoencoder()
    encoder_side = [*ae.encoder.parameters(), *ae.quant_conv.parameters()]
    decoder_side = [*ae.post_quant_conv.parameters(), *ae.decoder.parameters()]
    out = ae.encode(torch.randn(2, 3, 16, 16))
    out.codebook_loss.backward(retain_graph=True)
    assert ae.quantizer.codebook.grad is not None and ae.quantizer.codebook.grad.abs().sum() > 0
    assert all(p.grad is None for p in encoder_side + decoder_side)
    ae.zero_grad(set_to_none=True)
    out.commitment_loss.backward()
    assert ae.quantizer.codebook.grad is None
    assert all(p.grad is not None for p in encoder_side)
    assert sum(p.grad.abs().sum() for p in encoder_side) > 0
    assert all(p.grad is None for p in decoder_side)


def test_beta_on_codebook_swaps_the_weights_as_tamings_legacy_flag() -> None:
    out = hand_quantizer(beta=0.25, beta_on_codebook=True)(as_map(VECTORS))
    assert out.codebook_loss.item() == pytest.approx(0.25 * MEAN_SQUARED_ERROR, rel=1e-6)
    assert out.commitment_loss.item() == pytest.approx(MEAN_SQUARED_ERROR, rel=1e-6)


def test_embed_looks_up_codes_as_a_map() -> None:
    q = hand_quantizer()
    indices = torch.tensor([[[3, 1], [0, 2]]])
    out = q.embed(indices)
    assert out.shape == (1, 2, 2, 2)
    torch.testing.assert_close(out.permute(0, 2, 3, 1), CODES[indices])
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        q.embed(torch.tensor([[[4]]]))
    with pytest.raises(ValueError, match=r"\(B, h, w\)"):
        q.embed(torch.tensor([1, 2]))


def test_wrong_map_shape_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\(B, 2, h, w\)"):
        hand_quantizer()(torch.zeros(1, 3, 2, 2))


# -- EMA codebook -------------------------------------------------------------------------------
def test_ema_moves_assigned_codes_to_the_smoothed_running_mean() -> None:
    decay, eps = 0.9, 1e-5
    q = VectorQuantizer(3, 2, ema=True, decay=decay, eps=eps)
    start = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    with torch.no_grad():
        q.codebook.copy_(start)
        q.embed_sum.copy_(start)
    inputs = torch.tensor([[0.2, 0.0], [0.0, 0.2], [1.4, 1.2], [1.2, 1.0]])  # two to code 0, two to 1
    out = q.train()(as_map(inputs))
    assert out.indices.flatten().tolist() == [0, 0, 1, 1]
    # The step quantises with the codes as they were before its update (taming's order).
    torch.testing.assert_close(out.z_q, as_map(start[[0, 0, 1, 1]]))
    # By hand: N = γ·1 + (1-γ)·n, m = γ·e + (1-γ)·Σz, Ñ = (N + ε) / (ΣN + Kε) · ΣN, e = m / Ñ.
    counts = torch.tensor([2.0, 2.0, 0.0])
    sums = torch.tensor([[0.2, 0.2], [2.6, 2.2], [0.0, 0.0]])
    n = decay * 1.0 + (1 - decay) * counts
    m = decay * start + (1 - decay) * sums
    smoothed = (n + eps) / (n.sum() + 3 * eps) * n.sum()
    torch.testing.assert_close(q.cluster_size, n)
    torch.testing.assert_close(q.embed_sum, m)
    torch.testing.assert_close(q.codebook, m / smoothed[:, None])
    # Codes 0 and 1 moved toward the mean of their inputs; the unused code stayed (up to smoothing).
    for k, mean in ((0, inputs[:2].mean(0)), (1, inputs[2:].mean(0))):
        assert torch.dist(q.codebook[k], mean) < torch.dist(start[k], mean)
    torch.testing.assert_close(q.codebook[2], start[2], rtol=1e-4, atol=0)


def test_ema_has_no_codebook_gradient_and_no_update_in_eval_mode() -> None:
    q = hand_quantizer(ema=True, beta=0.25)
    assert list(q.parameters()) == []  # the codebook is a buffer: no optimiser can touch it
    assert {"codebook", "cluster_size", "embed_sum"} <= set(q.state_dict())
    z = as_map(VECTORS).requires_grad_(True)
    out = q.eval()(z)
    assert out.codebook_loss.item() == 0.0
    assert out.commitment_loss.item() == pytest.approx(0.25 * MEAN_SQUARED_ERROR, rel=1e-6)
    out.vq_loss.backward()
    assert not q.codebook.requires_grad and q.codebook.grad is None
    torch.testing.assert_close(z.grad, as_map(2 * 0.25 * (VECTORS - CODES[NEAREST]) / 8))
    # Eval mode: the statistics and codes are untouched.
    torch.testing.assert_close(q.codebook, CODES, rtol=0, atol=0)
    torch.testing.assert_close(q.cluster_size, torch.ones(4), rtol=0, atol=0)


def test_ema_buffers_travel_in_the_state_dict() -> None:
    q = hand_quantizer(ema=True).train()
    q(as_map(VECTORS))
    restored = VectorQuantizer(4, 2, ema=True)
    restored.load_state_dict(q.state_dict())
    for name in ("codebook", "cluster_size", "embed_sum"):
        torch.testing.assert_close(getattr(restored, name), getattr(q, name), rtol=0, atol=0)


def test_ema_statistics_are_summed_over_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two ranks holding the same shard: all_reduce(SUM) doubles the statistics, so the update must
    # equal one process's update on the shard twice over.
    reduced: list[tuple[int, ...]] = []

    def all_reduce(tensor: torch.Tensor, op=None) -> None:
        assert op == torch.distributed.ReduceOp.SUM
        reduced.append(tuple(tensor.shape))
        tensor.mul_(2)

    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "all_reduce", all_reduce)
    distributed = hand_quantizer(ema=True).train()
    distributed(as_map(VECTORS))
    assert sorted(reduced) == [(4,), (4, 2)]  # the counts and the sums
    monkeypatch.undo()
    single = hand_quantizer(ema=True).train()
    single(as_map(torch.cat([VECTORS, VECTORS])))
    for name in ("codebook", "cluster_size", "embed_sum"):
        torch.testing.assert_close(getattr(distributed, name), getattr(single, name))


# -- codebook usage -----------------------------------------------------------------------------
def test_codebook_usage_counts_codes_and_perplexity() -> None:
    q = VectorQuantizer(8, 2)
    used, perplexity = q.codebook_usage(torch.tensor([[[0, 1], [2, 3]]]))
    assert used.item() == 4 and perplexity.item() == pytest.approx(4.0, rel=1e-6)  # uniform over 4
    used, perplexity = q.codebook_usage(torch.full((2, 3, 3), 5))
    assert used.item() == 1 and perplexity.item() == pytest.approx(1.0)
    # Frequencies 1/2, 1/4, 1/4: exp(-(½ ln ½ + 2·¼ ln ¼)) = 2^1.5.
    used, perplexity = q.codebook_usage(torch.tensor([7, 7, 2, 0]))
    assert used.item() == 3 and perplexity.item() == pytest.approx(2**1.5, rel=1e-6)
    used, perplexity = q.codebook_usage(torch.arange(8).repeat(3))
    assert used.item() == 8 and perplexity.item() == pytest.approx(8.0, rel=1e-6)
    with pytest.raises(ValueError, match=r"\[0, 7\]"):
        q.codebook_usage(torch.tensor([8]))


# -- encoder and decoder ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("channels", "size", "ch", "ch_mult", "blocks", "attn", "z", "latent"),
    [
        (3, 16, 8, (1, 2), 1, (8,), 4, 8),
        (1, 32, 8, (1, 1, 2), 2, (), 3, 8),
        (3, 24, 16, (1, 2, 2, 4), 1, (6, 3), 5, 3),
    ],
)
def test_encoder_and_decoder_shapes(channels, size, ch, ch_mult, blocks, attn, z, latent) -> None:
    torch.manual_seed(0)
    options = {
        "channels": channels,
        "image_size": size,
        "ch": ch,
        "ch_mult": ch_mult,
        "num_res_blocks": blocks,
        "attn_resolutions": attn,
        "z_channels": z,
    }
    encoder, decoder = VQEncoder(**options), VQDecoder(**options)
    assert encoder.input_shape == (channels, size, size) == decoder.output_shape
    assert encoder.output_shape == (z, latent, latent) == decoder.input_shape
    h = encoder(torch.randn(2, channels, size, size))
    assert h.shape == (2, z, latent, latent)
    assert decoder(h).shape == (2, channels, size, size)
    # Attention where listed: num_res_blocks per attended level in E, one more in G, plus the middle.
    attended = sum(s in attn for s in (size // 2**i for i in range(len(ch_mult))))
    assert sum(isinstance(m, AttnBlock) for m in encoder.modules()) == blocks * attended + 1
    assert sum(isinstance(m, AttnBlock) for m in decoder.modules()) == (blocks + 1) * attended + 1
    assert sum(isinstance(m, Downsample) for m in encoder.modules()) == len(ch_mult) - 1
    assert sum(isinstance(m, Upsample) for m in decoder.modules()) == len(ch_mult) - 1


def test_state_dict_keys_follow_tamings_module_names() -> None:
    options = {"channels": 3, "image_size": 16, "ch": 8, "ch_mult": (1, 2), "num_res_blocks": 1}
    encoder = VQEncoder(**options, attn_resolutions=(8,), z_channels=4)
    decoder = VQDecoder(**options, attn_resolutions=(8,), z_channels=4)
    encoder_keys, decoder_keys = set(encoder.state_dict()), set(decoder.state_dict())
    assert {
        "conv_in.weight",
        "down.0.block.0.norm1.weight",
        "down.0.downsample.conv.weight",
        "down.1.block.0.nin_shortcut.weight",  # 8 -> 16 channels
        "down.1.attn.0.q.weight",
        "mid.block_1.conv1.weight",
        "mid.attn_1.proj_out.weight",
        "mid.block_2.conv2.weight",
        "norm_out.weight",
        "conv_out.weight",
    } <= encoder_keys
    assert not any(k.startswith("down.1.downsample") for k in encoder_keys)
    # up[0] works at the image side (no Upsample), up[1] at the latent side, num_res_blocks + 1 blocks.
    assert {
        "up.0.block.0.nin_shortcut.weight",  # 16 -> 8 channels
        "up.0.block.1.conv2.weight",
        "up.1.upsample.conv.weight",
        "up.1.attn.1.k.weight",
    } <= decoder_keys
    assert not any(k.startswith("up.0.upsample") or k.startswith("up.0.attn") for k in decoder_keys)


def test_group_norm_uses_32_groups_where_they_divide_else_the_largest_divisor() -> None:
    assert [group_norm(c).num_groups for c in (128, 256, 96, 64)] == [32, 32, 32, 32]
    assert [group_norm(c).num_groups for c in (8, 16, 48, 40, 7)] == [8, 16, 24, 20, 7]
    norm = group_norm(8)
    assert norm.eps == 1e-6 and norm.affine


def test_downsample_pads_bottom_right_only_then_strides_by_two() -> None:
    torch.manual_seed(0)
    down = Downsample(2)
    x = torch.randn(1, 2, 6, 6)
    out = down(x)
    assert out.shape == (1, 2, 3, 3)
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), down.conv.weight, down.conv.bias, stride=2)
    torch.testing.assert_close(out, expected)
    symmetric = F.conv2d(x, down.conv.weight, down.conv.bias, stride=2, padding=1)
    assert not torch.allclose(out, symmetric)


def test_upsample_is_nearest_then_conv() -> None:
    up = Upsample(2)
    x = torch.randn(1, 2, 3, 3)
    out = up(x)
    assert out.shape == (1, 2, 6, 6)
    torch.testing.assert_close(out, up.conv(x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)))


def test_attention_block_is_single_head_softmax_attention_plus_input() -> None:
    torch.manual_seed(0)
    block = AttnBlock(8)
    x = torch.randn(2, 8, 3, 4)
    h = block.norm(x)
    q, k, v = (conv(h).flatten(2) for conv in (block.q, block.k, block.v))  # (B, C, hw)
    weights = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(8), dim=-1)  # (B, hw_q, hw_k)
    attended = (v @ weights.transpose(1, 2)).view(2, 8, 3, 4)
    torch.testing.assert_close(block(x), x + block.proj_out(attended), rtol=1e-5, atol=1e-5)


def test_resnet_block_projects_the_skip_only_when_the_width_changes() -> None:
    torch.manual_seed(0)
    same, wider = ResnetBlock(8, 8), ResnetBlock(8, 16)
    assert same.nin_shortcut is None and isinstance(wider.nin_shortcut, nn.Conv2d)
    x = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        same.conv2.weight.zero_()
        same.conv2.bias.zero_()
    torch.testing.assert_close(same(x), x, rtol=0, atol=0)  # the residual branch adds nothing
    assert wider(x).shape == (2, 16, 4, 4)


def test_middle_attention_can_be_switched_off() -> None:
    options = {"channels": 1, "image_size": 8, "ch": 8, "ch_mult": (1, 2), "num_res_blocks": 1}
    encoder = VQEncoder(**options, attn_resolutions=(), z_channels=2, mid_attention=False)
    decoder = VQDecoder(**options, attn_resolutions=(), z_channels=2, mid_attention=False)
    assert not any(isinstance(m, AttnBlock) for m in [*encoder.modules(), *decoder.modules()])
    assert decoder(encoder(torch.randn(1, 1, 8, 8))).shape == (1, 1, 8, 8)


def test_list_configs_from_hydra_are_accepted() -> None:
    encoder = VQEncoder(
        channels=1,
        image_size=8,
        ch=8,
        ch_mult=OmegaConf.create([1, 2]),
        num_res_blocks=1,
        attn_resolutions=OmegaConf.create([4]),
        z_channels=2,
    )
    assert encoder.geometry.ch_mult == (1, 2) and encoder.geometry.attn_resolutions == (4,)


# -- config errors ------------------------------------------------------------------------------
BASE = {"channels": 1, "image_size": 16, "ch": 8, "ch_mult": (1, 2, 2), "num_res_blocks": 1, "z_channels": 2}


def test_image_size_not_divisible_by_the_downsampling_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        VQEncoder(**{**BASE, "image_size": 18}, attn_resolutions=())
    message = str(info.value)
    assert "VQEncoder: image_size=18" in message and "2**(len(ch_mult)-1)=4" in message
    assert "ch_mult=[1, 2, 2]" in message and "16 or 20" in message


def test_attention_at_a_side_the_network_never_has_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        VQDecoder(**BASE, attn_resolutions=(5, 8))
    message = str(info.value)
    assert "VQDecoder: attn_resolutions=[5, 8]" in message and "[5]" in message
    assert "[16, 8, 4]" in message  # the valid sides


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"ch": 0}, "VQGANAutoencoder: ch must be a positive integer, got 0"),
        ({"ch_mult": ()}, "ch_mult must be a list of positive integers (at least one)"),
        ({"ch_mult": "12"}, "ch_mult must be a list"),
        ({"ch_mult": (1, 0)}, "entry 0"),
        ({"attn_resolutions": 8}, "attn_resolutions must be a list"),
        ({"num_res_blocks": True}, "num_res_blocks"),
        ({"dropout": 1.0}, "dropout must be a number in [0, 1)"),
        ({"n_embed": 0}, "VQGANAutoencoder: n_embed must be a positive integer"),
        ({"embed_dim": -3}, "VQGANAutoencoder: embed_dim"),
        ({"beta": -0.1}, "beta must be a number >= 0"),
        ({"decay": 1.0}, "decay"),
        (
            {"ema": True, "beta_on_codebook": True},
            "beta_on_codebook=True needs the gradient-trained codebook",
        ),
    ],
)
def test_bad_settings_are_config_errors_naming_the_value(change, needle) -> None:
    with pytest.raises(ConfigError) as info:
        tiny_autoencoder(**change)
    assert needle in str(info.value)


# -- the autoencoder ----------------------------------------------------------------------------
def test_autoencoder_shapes_and_the_index_round_trip() -> None:
    torch.manual_seed(0)
    ae = tiny_autoencoder().eval()
    assert ae.input_shape == ae.output_shape == (3, 16, 16)
    assert ae.latent_shape == (8, 8) and ae.n_embed == 16 and ae.embed_dim == 3
    assert ae.downsampling_factor == 2
    assert ae.last_layer is ae.decoder.conv_out.weight
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        encoded = ae.encode(x)
        assert encoded.z_q.shape == (2, 3, 8, 8) and encoded.indices.shape == (2, 8, 8)
        from_codes = ae.decode(encoded.z_q)
        assert from_codes.shape == (2, 3, 16, 16)
        # z_q = z + (e - z) differs from e by rounding only.
        torch.testing.assert_close(ae.decode_indices(encoded.indices), from_codes, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ae(x), from_codes, rtol=0, atol=0)


# -- the adaptive weight (eq. 7) ----------------------------------------------------------------
def linear_last_layer() -> tuple[nn.Parameter, torch.Tensor]:
    # y = W x with ‖x‖ = 3: the gradient of a·Σy w.r.t. W is a·1xᵀ, of norm |a|·√3·3 for 3 outputs.
    weight = nn.Parameter(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)))
    x = torch.tensor([1.0, 2.0, 2.0, 0.0])
    return weight, weight @ x


def test_adaptive_weight_is_the_ratio_of_gradient_norms() -> None:
    weight, y = linear_last_layer()
    rec_loss, g_loss = 2.0 * y.sum(), -0.5 * y.sum()
    lam = adaptive_weight(rec_loss, g_loss, weight)
    expected = (2.0 * math.sqrt(3) * 3) / (0.5 * math.sqrt(3) * 3 + 1e-4)
    assert lam.item() == pytest.approx(expected, rel=1e-6)
    assert not lam.requires_grad
    # δ enters the denominator.
    lam_eps = adaptive_weight(rec_loss, g_loss, weight, eps=1.0)
    assert lam_eps.item() == pytest.approx(
        (2.0 * math.sqrt(3) * 3) / (0.5 * math.sqrt(3) * 3 + 1.0), rel=1e-6
    )
    # A squared-error reconstruction: ∇_W Σy² = 2y xᵀ, of norm 2‖y‖‖x‖.
    lam_sq = adaptive_weight((y**2).sum(), g_loss, weight)
    sq_expected = (2 * y.detach().norm() * 3) / (0.5 * math.sqrt(3) * 3 + 1e-4)
    assert lam_sq.item() == pytest.approx(sq_expected.item(), rel=1e-5)


def test_adaptive_weight_leaves_the_graph_for_the_callers_backward() -> None:
    weight, y = linear_last_layer()
    rec_loss, g_loss = 2.0 * y.sum(), -0.5 * y.sum()
    lam = adaptive_weight(rec_loss, g_loss, weight)
    (rec_loss + lam * g_loss).backward()  # would raise had the graph been freed
    x = torch.tensor([1.0, 2.0, 2.0, 0.0])
    torch.testing.assert_close(weight.grad, (2.0 - 0.5 * lam) * torch.ones(3, 1) * x)


def test_adaptive_weight_is_clamped() -> None:
    weight, y = linear_last_layer()
    rec_loss, g_loss = 2.0 * y.sum(), 1e-9 * y.sum()  # unclamped: ≈ 10.4 / 1e-4 ≈ 1e5
    assert adaptive_weight(rec_loss, g_loss, weight).item() == pytest.approx(1e4)
    assert adaptive_weight(rec_loss, g_loss, weight, max_weight=50.0).item() == pytest.approx(50.0)
    # No lower clamp is reached in practice (norms are >= 0), but a zero reconstruction gradient gives 0.
    assert adaptive_weight(0.0 * y.sum(), g_loss, weight).item() == 0.0


def test_adaptive_weight_refuses_losses_without_gradients() -> None:
    weight, y = linear_last_layer()
    with pytest.raises(ValueError, match="requires_grad"):
        adaptive_weight(y.sum().detach(), y.sum(), weight)
