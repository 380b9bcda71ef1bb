"""VQGAN's first stage (Esser, Rombach & Ommer 2021, "Taming Transformers for High-Resolution Image
Synthesis", arXiv:2012.09841, sec. 3.1): a convolutional encoder E, a codebook Z = {z_k} of K
vectors of dimension n_z, and a decoder G.

- ẑ = E(x) ∈ R^{h×w×n_z}; each spatial vector is replaced by its nearest code (eq. 2:
  z_q = q(ẑ) := (argmin_{z_k ∈ Z} ‖ẑ_ij − z_k‖)_ij); the image is rebuilt as x̂ = G(z_q) (eq. 3).
- The quantiser is not differentiable; the straight-through estimator copies the decoder's
  gradient to the encoder (van den Oord et al. 2017, "Neural Discrete Representation Learning",
  arXiv:1711.00937, sec. 3.2): ``z + sg[z_q − z]``.
- The codebook learns from ‖sg[E(x)] − z_q‖² and the encoder commits to its codes with
  β‖sg[z_q] − E(x)‖² (van den Oord et al. eq. 3, β = 0.25). VQGAN's eq. 4 writes both terms with
  weight 1; its released code weights one of them by β = 0.25: which one depends on
  VectorQuantizer2's ``legacy`` flag (default True: β on the codebook term, a bug kept for
  backwards compatibility; False: β on the commitment term as in VQ-VAE). Here β is on the
  commitment term, and ``beta_on_codebook=True`` reproduces the legacy weighting.
- Optionally the codebook is an exponential moving average of the encoder outputs assigned to
  each code instead of a learned parameter (van den Oord et al. 2017, appendix A.1; Razavi et al.
  2019, "Generating Diverse High-Fidelity Images with VQ-VAE-2", arXiv:1906.00446).

Encoder and decoder follow the reference code's ``Encoder`` / ``Decoder``
(CompVis/taming-transformers, taming/modules/diffusionmodules/model.py), layer for layer and with
its module names (``conv_in``, ``down.<level>.block.<i>.norm1``, ``mid.attn_1``, ``up``, ``norm_out``,
``conv_out``), so the state-dict keys of the encoder, decoder, ``quant_conv`` and
``post_quant_conv`` are the reference's: GroupNorm + swish pre-activation ResNet blocks,
single-head spatial self-attention at the listed resolutions, stride-2 convolutions with
asymmetric (0, 1, 0, 1) padding down, nearest ×2 + 3×3 convolution up, a res-attn-res middle
block at the lowest resolution. The autoencoder (``taming/models/vqgan.py``, ``VQModel``) adds
1×1 convolutions from z_channels to the codebook dimension and back. Weights keep PyTorch's
default initialisation, as the reference does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.utils.validation import check_fraction, check_positive_float, check_positive_int

__all__ = [
    "AttnBlock",
    "Downsample",
    "Quantized",
    "ResnetBlock",
    "Upsample",
    "VQDecoder",
    "VQEncoder",
    "VQGANAutoencoder",
    "VQGeometry",
    "VectorQuantizer",
    "check_geometry",
    "group_norm",
]

# taming's ``Normalize``: 32 groups, eps 1e-6.
_MAX_GROUPS = 32
_NORM_EPS = 1e-6


def group_norm(channels: int) -> nn.GroupNorm:
    """taming's ``Normalize``: GroupNorm(32 groups, eps=1e-6, affine) over ``channels``.

    The number of groups is the largest divisor of ``channels`` that is at most 32.
    """
    # taming always uses 32 groups, which needs a multiple of 32 channels (every width of its
    # configs, ch=128 or 64 times its multipliers, is one; there the groups are exactly taming's).
    # GroupNorm refuses a group count that does not divide the channels, and the framework builds
    # every model at width 8 in its contract test; the largest divisor not above 32 keeps 32
    # wherever it fits and is otherwise the finest even split (8 channels: 8 groups of one).
    groups = max(g for g in range(1, min(_MAX_GROUPS, channels) + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels, eps=_NORM_EPS, affine=True)


class ResnetBlock(nn.Module):
    """GroupNorm → swish → conv3×3 → GroupNorm → swish → dropout → conv3×3, plus the input
    (through a 1×1 ``nin_shortcut`` when the width changes); taming's ``ResnetBlock`` without the
    diffusion timestep embedding (``temb_channels=0`` in its Encoder and Decoder)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        # taming's default conv_shortcut=False: a 1x1 projection, only when the width changes.
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # silu is taming's swish, x·σ(x)
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the h·w positions, plus the input; taming's ``AttnBlock``.

    softmax(q kᵀ / √C) v with q, k, v 1×1 convolutions of the group-normalised input, then a 1×1
    ``proj_out``. Written with ``scaled_dot_product_attention`` (same scale, 1/√C): the fused kernels
    avoid materialising the (h·w)² attention matrix on GPUs; the result is taming's bmm version.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        normed = self.norm(x)

        def tokens(conv: nn.Conv2d) -> Tensor:
            # (B, C, h, w) -> (B, 1 head, h·w, C)
            return conv(normed).flatten(2).transpose(1, 2).unsqueeze(1)

        attended = F.scaled_dot_product_attention(tokens(self.q), tokens(self.k), tokens(self.v))
        attended = attended.squeeze(1).transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(attended)


class Downsample(nn.Module):
    """Stride-2 3×3 convolution after zero padding of one row and column on the bottom/right only
    (taming's ``Downsample`` with ``resamp_with_conv=True``): an even side halves exactly."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        # (left, right, top, bottom): torch convolutions only pad symmetrically, hence F.pad.
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    """Nearest-neighbour ×2 then a 3×3 convolution (taming's ``Upsample``, ``with_conv=True``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _ResAttnStack(nn.Module):
    """The ResnetBlocks of one resolution level, each followed by an AttnBlock where the level
    attends (taming's ``down[i].block`` / ``down[i].attn`` pair, and the same under ``up``)."""

    def __init__(
        self, block_in: int, block_out: int, num_blocks: int, attention: bool, dropout: float
    ) -> None:
        super().__init__()
        widths = [block_in] + [block_out] * num_blocks
        self.block = nn.ModuleList(ResnetBlock(widths[i], widths[i + 1], dropout) for i in range(num_blocks))
        self.attn = nn.ModuleList(AttnBlock(block_out) for _ in range(num_blocks) if attention)

    def run_blocks(self, h: Tensor) -> Tensor:
        for i, block in enumerate(self.block):
            h = block(h)
            if len(self.attn) > 0:
                h = self.attn[i](h)
        return h


class _EncoderLevel(_ResAttnStack):
    def __init__(
        self, block_in: int, block_out: int, num_blocks: int, attention: bool, dropout: float, last: bool
    ) -> None:
        super().__init__(block_in, block_out, num_blocks, attention, dropout)
        self.downsample = None if last else Downsample(block_out)

    def forward(self, h: Tensor) -> Tensor:
        h = self.run_blocks(h)
        return h if self.downsample is None else self.downsample(h)


class _DecoderLevel(_ResAttnStack):
    def __init__(
        self, block_in: int, block_out: int, num_blocks: int, attention: bool, dropout: float, first: bool
    ) -> None:
        super().__init__(block_in, block_out, num_blocks, attention, dropout)
        self.upsample = None if first else Upsample(block_out)

    def forward(self, h: Tensor) -> Tensor:
        h = self.run_blocks(h)
        return h if self.upsample is None else self.upsample(h)


class _MidBlock(nn.Module):
    """ResnetBlock → AttnBlock → ResnetBlock at the lowest resolution (taming's ``mid``)."""

    def __init__(self, channels: int, dropout: float, attention: bool) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1: nn.Module = AttnBlock(channels) if attention else nn.Identity()
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, h: Tensor) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


@dataclass(frozen=True)
class VQGeometry:
    """The checked sizes shared by encoder, decoder and autoencoder (see :func:`check_geometry`)."""

    channels: int
    image_size: int
    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    attn_resolutions: tuple[int, ...]
    z_channels: int
    dropout: float

    @property
    def resolutions(self) -> tuple[int, ...]:
        """The side at each level, from the image's down to the latent's."""
        return tuple(self.image_size // 2**level for level in range(len(self.ch_mult)))

    @property
    def latent_size(self) -> int:
        """Side of the latent map: the image halved once per level but the last."""
        return self.resolutions[-1]


def _positive_ints(owner: str, name: str, value: object, *, allow_empty: bool) -> tuple[int, ...]:
    """A list of positive integers (Hydra passes a ListConfig, which is a Sequence) as a tuple."""
    rule = "a list of positive integers" + ("" if allow_empty else " (at least one)")
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(f"{owner}: {name} must be {rule}, got {value!r}.")
    items = tuple(value)
    if not items and not allow_empty:
        raise ConfigError(f"{owner}: {name} must be {rule}, got {list(items)}.")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            raise ConfigError(f"{owner}: {name} must be {rule}, got {list(items)} (entry {item!r}).")
    return items


def check_geometry(
    owner: str,
    channels: object,
    image_size: object,
    ch: object,
    ch_mult: object,
    num_res_blocks: object,
    attn_resolutions: object,
    z_channels: object,
    dropout: object,
) -> VQGeometry:
    """Check the encoder/decoder sizes, raising ConfigError naming the bad value and the valid ones.

    ``image_size`` must be divisible by 2**(len(ch_mult) − 1) (each level but the last halves the
    side), and every entry of ``attn_resolutions`` must be a side the network works at.
    """
    channels = check_positive_int(owner, "channels", channels)
    image_size = check_positive_int(owner, "image_size", image_size)
    ch = check_positive_int(owner, "ch", ch)
    mult = _positive_ints(owner, "ch_mult", ch_mult, allow_empty=False)
    num_res_blocks = check_positive_int(owner, "num_res_blocks", num_res_blocks)
    attn = _positive_ints(owner, "attn_resolutions", attn_resolutions, allow_empty=True)
    z_channels = check_positive_int(owner, "z_channels", z_channels)
    rate = check_fraction(owner, "dropout", dropout)
    factor = 2 ** (len(mult) - 1)
    if image_size % factor != 0:
        below = (image_size // factor) * factor
        near = f"{below} or {below + factor}" if below else f"{factor}"
        raise ConfigError(
            f"{owner}: image_size={image_size} is not divisible by 2**(len(ch_mult)-1)={factor}: "
            f"ch_mult={list(mult)} has {len(mult)} levels and each but the last halves the side; "
            f"use a multiple of {factor} (e.g. {near}) or fewer levels in ch_mult"
        )
    geometry = VQGeometry(channels, image_size, ch, mult, num_res_blocks, attn, z_channels, rate)
    bad = [r for r in attn if r not in geometry.resolutions]
    if bad:
        raise ConfigError(
            f"{owner}: attn_resolutions={list(attn)} has {bad}, not a side this network works at; "
            f"valid sides for image_size={image_size} and ch_mult={list(mult)}: {list(geometry.resolutions)}"
        )
    return geometry


class VQEncoder(nn.Module):
    """E: (B, channels, S, S) images → (B, z_channels, s, s) with s = S / 2**(len(ch_mult) − 1).

    taming's ``Encoder`` with ``double_z=False`` (VQGAN's setting): conv_in to ``ch``; per level
    ``num_res_blocks`` ResnetBlocks to ``ch·ch_mult[level]`` (each followed by an AttnBlock when the
    level's side is in ``attn_resolutions``) and, but for the last level, a Downsample; the middle
    block; GroupNorm, swish, conv_out to ``z_channels``.

    Args:
        channels: image channels.
        image_size: image side S (divisible by 2**(len(ch_mult) − 1)).
        ch: base width (taming: 128).
        ch_mult: width multiplier per level (taming's f=16 models: (1, 1, 2, 2, 4)).
        num_res_blocks: ResnetBlocks per level (2).
        attn_resolutions: sides at which the levels attend ((16,)).
        z_channels: channels of the output (256).
        dropout: dropout rate inside the ResnetBlocks (0).
        mid_attention: the AttnBlock of the middle block (taming: always).
    """

    def __init__(
        self,
        channels: int = 3,
        image_size: int = 256,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        z_channels: int = 256,
        dropout: float = 0.0,
        mid_attention: bool = True,
    ) -> None:
        super().__init__()
        g = check_geometry(
            type(self).__name__,
            channels,
            image_size,
            ch,
            ch_mult,
            num_res_blocks,
            attn_resolutions,
            z_channels,
            dropout,
        )
        self.geometry = g
        self.input_shape = (g.channels, g.image_size, g.image_size)
        self.output_shape = (g.z_channels, g.latent_size, g.latent_size)
        self.conv_in = nn.Conv2d(g.channels, g.ch, 3, padding=1)
        in_mult = (1, *g.ch_mult)
        self.down = nn.ModuleList(
            _EncoderLevel(
                g.ch * in_mult[level],
                g.ch * g.ch_mult[level],
                g.num_res_blocks,
                g.resolutions[level] in g.attn_resolutions,
                g.dropout,
                last=level == len(g.ch_mult) - 1,
            )
            for level in range(len(g.ch_mult))
        )
        width = g.ch * g.ch_mult[-1]
        self.mid = _MidBlock(width, g.dropout, mid_attention)
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, g.z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VQDecoder(nn.Module):
    """G: (B, z_channels, s, s) → (B, channels, S, S), taming's ``Decoder``.

    conv_in from ``z_channels`` to the widest width ``ch·ch_mult[-1]``; the middle block; per level,
    lowest resolution first, ``num_res_blocks + 1`` ResnetBlocks (with AttnBlocks at the sides in
    ``attn_resolutions``) and, but for the top level, an Upsample; GroupNorm, swish, conv_out to the
    image channels. No output activation, as in the reference: reconstructions are unbounded and
    are trained towards images in [-1, 1]. ``up`` is indexed by level (``up[0]`` works at the image
    side) though it runs from the last entry to the first, as taming's ``up.insert(0, ...)``.
    Arguments as :class:`VQEncoder`.
    """

    def __init__(
        self,
        channels: int = 3,
        image_size: int = 256,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        z_channels: int = 256,
        dropout: float = 0.0,
        mid_attention: bool = True,
    ) -> None:
        super().__init__()
        g = check_geometry(
            type(self).__name__,
            channels,
            image_size,
            ch,
            ch_mult,
            num_res_blocks,
            attn_resolutions,
            z_channels,
            dropout,
        )
        self.geometry = g
        self.input_shape = (g.z_channels, g.latent_size, g.latent_size)
        self.output_shape = (g.channels, g.image_size, g.image_size)
        width = g.ch * g.ch_mult[-1]
        self.conv_in = nn.Conv2d(g.z_channels, width, 3, padding=1)
        self.mid = _MidBlock(width, g.dropout, mid_attention)
        levels: list[_DecoderLevel] = []
        for level in reversed(range(len(g.ch_mult))):
            out = g.ch * g.ch_mult[level]
            attention = g.resolutions[level] in g.attn_resolutions
            levels.insert(
                0, _DecoderLevel(width, out, g.num_res_blocks + 1, attention, g.dropout, first=level == 0)
            )
            width = out
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, g.channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Quantized(NamedTuple):
    """What :class:`VectorQuantizer` returns for a (B, d, h, w) map.

    z_q: the nearest codes with the straight-through gradient (B, d, h, w); codebook_loss and
    commitment_loss: the two weighted VQ terms (scalars); indices: the codes' indices (B, h, w).
    """

    z_q: Tensor
    codebook_loss: Tensor
    commitment_loss: Tensor
    indices: Tensor

    @property
    def vq_loss(self) -> Tensor:
        """codebook_loss + commitment_loss: L_VQ of VQGAN's eq. 4 without the reconstruction term."""
        return self.codebook_loss + self.commitment_loss


def _all_reduce_sum(*tensors: Tensor) -> None:
    """Sum ``tensors`` over the processes of a distributed run, in place; nothing when single-process."""
    if dist.is_available() and dist.is_initialized():
        for tensor in tensors:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)


class VectorQuantizer(nn.Module):
    """Nearest-neighbour vector quantisation of (B, d, h, w) maps with a K × d codebook.

    VQGAN eq. 2 (the nearest code per position), the straight-through estimator (the returned
    z_q = z + sg[e − z]: its forward value is the code e, its gradient w.r.t. z the identity), and
    the VQ terms of van den Oord et al. 2017 eq. 3 / VQGAN eq. 4, each a mean over all elements as in
    taming's VectorQuantizer2: ``codebook_loss = mean((sg[z] − e)²)`` (moves the codes) and
    ``commitment_loss = β·mean((z − sg[e])²)`` (moves the encoder).

    Args:
        num_embeddings: K, the number of codes (taming: 1024 or 16384).
        embedding_dim: d, the dimension of a code (256).
        beta: the commitment weight β (0.25).
        ema: learn the codebook as exponential moving averages instead of by gradient (van den
            Oord et al. 2017, App. A.1; Razavi et al. 2019): N_k ← γ N_k + (1 − γ) n_k,
            m_k ← γ m_k + (1 − γ) Σ_{z→k} z, then e_k = m_k / Ñ_k with the Laplace-smoothed counts
            Ñ_k = (N_k + ε) / (Σ_j N_j + K ε) · Σ_j N_j, in training mode only. The codebook is then a
            buffer with no gradient, and codebook_loss is zero.
        decay: γ (0.99).
        eps: ε of the Laplace smoothing (1e-5).
        beta_on_codebook: weight the codebook term by β and leave the commitment term unweighted,
            as taming's VectorQuantizer2 with ``legacy=True`` (its default) does. A documented
            deviation from VQ-VAE kept for reproducing taming's checkpoints' training; refused with
            ``ema`` (there is no codebook term to weight).

    The codebook (``codebook``, K × d) is initialised U(−1/K, 1/K) as taming's VectorQuantizer2; so
    is the EMA codebook (taming's EMAVectorQuantizer draws N(0, 1)), so the two modes differ in the
    update rule only. Ties between equidistant codes go to the lowest index (``argmin``).
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        beta: float = 0.25,
        ema: bool = False,
        decay: float = 0.99,
        eps: float = 1e-5,
        beta_on_codebook: bool = False,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.num_embeddings = check_positive_int(owner, "num_embeddings", num_embeddings)
        self.embedding_dim = check_positive_int(owner, "embedding_dim", embedding_dim)
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
            raise ConfigError(f"{owner}: beta must be a number >= 0, got {beta!r}.")
        self.beta = float(beta)
        self.decay = check_fraction(owner, "decay", decay)
        self.eps = check_positive_float(owner, "eps", eps)
        if not isinstance(ema, bool) or not isinstance(beta_on_codebook, bool):
            raise ConfigError(
                f"{owner}: ema and beta_on_codebook must be true or false, got {ema!r}, {beta_on_codebook!r}."
            )
        if ema and beta_on_codebook:
            raise ConfigError(
                f"{owner}: beta_on_codebook=True needs the gradient-trained codebook, got ema=True; "
                "the EMA codebook has no loss term for beta to weight (valid: ema=False with "
                "beta_on_codebook either way, or ema=True with beta_on_codebook=False)"
            )
        self.ema = ema
        self.beta_on_codebook = beta_on_codebook
        k = self.num_embeddings
        init = torch.empty(k, self.embedding_dim).uniform_(-1.0 / k, 1.0 / k)
        self.codebook: Tensor
        if ema:
            self.register_buffer("codebook", init)
            # Every code starts as if it had been assigned one vector, itself: N_k = 1, m_k = e_k, so
            # m_k / N_k is the code from the first step on. taming starts N at 0 and m at e, which
            # after one update divides an unused code by ~ε and throws it far from the data.
            self.register_buffer("cluster_size", torch.ones(k))
            self.register_buffer("embed_sum", init.clone())
        else:
            self.codebook = nn.Parameter(init)

    @torch.no_grad()
    def nearest(self, flat: Tensor) -> Tensor:
        """Index of the nearest code for each row of ``flat`` (N, d): eq. 2's argmin, as int64 (N,)."""
        # In float32 even under autocast: half-precision distances would pick wrong neighbours when
        # codes are close, and the assignment is the whole point of the layer.
        with torch.autocast(device_type=flat.device.type, enabled=False):
            z = flat.float()
            codes = self.codebook.float()
            # ‖z − e‖² = ‖z‖² − 2 z·e + ‖e‖²: one (N, K) matmul instead of an (N, K, d) difference.
            distances = z.pow(2).sum(1, keepdim=True) - 2.0 * z @ codes.t() + codes.pow(2).sum(1)
            return distances.argmin(dim=1)

    def forward(self, z: Tensor) -> Quantized:
        """Quantise ``z`` (B, d, h, w); see the class docstring for the returned terms."""
        if z.dim() != 4 or z.shape[1] != self.embedding_dim:
            raise ValueError(
                f"{type(self).__name__} expects (B, {self.embedding_dim}, h, w) maps, "
                f"got shape {tuple(z.shape)}"
            )
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        indices = self.nearest(flat)
        # The codes as they were before this step's EMA update (taming's order).
        codes = F.embedding(indices, self.codebook).view(b, h, w, d).permute(0, 3, 1, 2)
        if self.ema and self.training:
            self._ema_update(flat.detach(), indices)
        # The squared errors in float32: under autocast z may be bf16, the codebook is float32.
        z32 = z.float()
        codebook_error = F.mse_loss(codes.float(), z32.detach())  # gradient to the codes only
        commitment_error = F.mse_loss(z32, codes.detach().float())  # gradient to the encoder only
        if self.ema:
            codebook_loss = commitment_error.new_zeros(())
            commitment_loss = self.beta * commitment_error
        elif self.beta_on_codebook:
            codebook_loss = self.beta * codebook_error
            commitment_loss = commitment_error
        else:
            codebook_loss = codebook_error
            commitment_loss = self.beta * commitment_error
        # Straight-through: forward value = the codes, d z_q / d z = I.
        z_q = z + (codes.to(z.dtype) - z).detach()
        return Quantized(z_q, codebook_loss, commitment_loss, indices.view(b, h, w))

    @torch.no_grad()
    def _ema_update(self, flat: Tensor, indices: Tensor) -> None:
        """One EMA step of the cluster sizes, the embedding sums and the codebook (class docstring)."""
        k = self.num_embeddings
        dtype = self.embed_sum.dtype
        counts = torch.bincount(indices, minlength=k).to(dtype)
        sums = torch.zeros_like(self.embed_sum).index_add_(0, indices, flat.to(dtype))
        # Under DDP each process sees its shard of the batch. DDP broadcasts buffers from rank 0 before
        # each forward (broadcast_buffers=True), so without this all-reduce the other ranks' statistics
        # would be overwritten and the codebook would follow rank 0's data alone; with it every rank
        # makes the same update from the whole global batch (Razavi et al.'s statistics over a batch).
        _all_reduce_sum(counts, sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1.0 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1.0 - self.decay)
        total = self.cluster_size.sum()
        # Laplace smoothing keeps every count positive (no division by zero for a code never used).
        smoothed = (self.cluster_size + self.eps) / (total + k * self.eps) * total
        self.codebook.copy_(self.embed_sum / smoothed.unsqueeze(1))

    def _check_indices(self, indices: Tensor) -> None:
        if indices.dtype not in (torch.int64, torch.int32) or indices.numel() == 0:
            raise ValueError(
                f"indices must be a non-empty integer tensor, got {indices.dtype} {tuple(indices.shape)}"
            )
        low, high = int(indices.min()), int(indices.max())
        if low < 0 or high >= self.num_embeddings:
            raise ValueError(
                f"indices must lie in [0, {self.num_embeddings - 1}] (the codebook's size), "
                f"got [{low}, {high}]"
            )

    def embed(self, indices: Tensor) -> Tensor:
        """The codes of ``indices`` (B, h, w) as a (B, d, h, w) map (taming's ``get_codebook_entry``)."""
        if indices.dim() != 3:
            raise ValueError(f"indices must be (B, h, w), got shape {tuple(indices.shape)}")
        self._check_indices(indices)
        return F.embedding(indices.long(), self.codebook).permute(0, 3, 1, 2).contiguous()

    @torch.no_grad()
    def codebook_usage(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """How much of the codebook ``indices`` (any shape) use: ``(codes_used, perplexity)``.

        codes_used: the number of distinct codes (int64 scalar); perplexity: exp(−Σ_k p_k log p_k) of
        the code frequencies p_k (0·log 0 = 0), from 1 (one code) to K (all equally often): the
        effective number of codes, as taming's ``perplexity``.
        """
        self._check_indices(indices)
        counts = torch.bincount(indices.reshape(-1).long(), minlength=self.num_embeddings)
        p = counts.double() / counts.sum()
        entropy = -torch.special.xlogy(p, p).sum()
        return (counts > 0).sum(), entropy.exp().float()


class VQGANAutoencoder(nn.Module):
    """VQGAN's first stage: image → codes → image (taming's ``VQModel`` without its loss).

    encoder → quant_conv (1×1, z_channels → embed_dim) → quantizer → post_quant_conv (1×1, back to
    z_channels) → decoder. ``forward(x)`` is the reconstruction G(q(E(x))) (eq. 3), so the
    autoencoder is an image-to-image generator; the VQ terms come from :meth:`encode`.

    Args:
        channels, image_size, ch, ch_mult, num_res_blocks, attn_resolutions, z_channels, dropout,
            mid_attention: the encoder's and decoder's (:class:`VQEncoder`); defaults: taming's f=16
            configs (e.g. configs/faceshq_vqgan.yaml).
        embed_dim: the codebook dimension d (256).
        n_embed: the number of codes K (1024).
        beta, ema, decay, eps, beta_on_codebook: the :class:`VectorQuantizer`'s.

    Attributes: ``input_shape`` = ``output_shape`` = (C, S, S); ``latent_shape`` = (h, w) of the
    code map (S / 2**(len(ch_mult) − 1) each); ``n_embed``; ``embed_dim``.
    """

    def __init__(
        self,
        channels: int = 3,
        image_size: int = 256,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        z_channels: int = 256,
        embed_dim: int = 256,
        n_embed: int = 1024,
        beta: float = 0.25,
        ema: bool = False,
        decay: float = 0.99,
        eps: float = 1e-5,
        beta_on_codebook: bool = False,
        dropout: float = 0.0,
        mid_attention: bool = True,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        # Checked here first so that a bad value is reported against this class, the one configured.
        g = check_geometry(
            owner, channels, image_size, ch, ch_mult, num_res_blocks, attn_resolutions, z_channels, dropout
        )
        self.embed_dim = check_positive_int(owner, "embed_dim", embed_dim)
        self.n_embed = check_positive_int(owner, "n_embed", n_embed)
        sizes = {
            "channels": g.channels,
            "image_size": g.image_size,
            "ch": g.ch,
            "ch_mult": g.ch_mult,
            "num_res_blocks": g.num_res_blocks,
            "attn_resolutions": g.attn_resolutions,
            "z_channels": g.z_channels,
            "dropout": g.dropout,
            "mid_attention": mid_attention,
        }
        self.encoder = VQEncoder(**sizes)
        self.quant_conv = nn.Conv2d(g.z_channels, self.embed_dim, 1)
        self.quantizer = VectorQuantizer(
            self.n_embed,
            self.embed_dim,
            beta=beta,
            ema=ema,
            decay=decay,
            eps=eps,
            beta_on_codebook=beta_on_codebook,
        )
        self.post_quant_conv = nn.Conv2d(self.embed_dim, g.z_channels, 1)
        self.decoder = VQDecoder(**sizes)
        self.input_shape = (g.channels, g.image_size, g.image_size)
        self.output_shape = self.input_shape
        self.latent_shape = (g.latent_size, g.latent_size)

    @property
    def last_layer(self) -> Tensor:
        """The decoder's last weight (conv_out), where VQGAN's eq. 7 compares gradient norms."""
        return self.decoder.conv_out.weight

    @property
    def downsampling_factor(self) -> int:
        """f = S / h (VQGAN's f, e.g. 16)."""
        return self.input_shape[1] // self.latent_shape[0]

    def encode(self, x: Tensor) -> Quantized:
        """x (B, C, S, S) → the quantised code map (B, embed_dim, h, w), its VQ terms and indices."""
        return self.quantizer(self.quant_conv(self.encoder(x)))

    def decode(self, z_q: Tensor) -> Tensor:
        """A (B, embed_dim, h, w) code map → images (B, C, S, S)."""
        return self.decoder(self.post_quant_conv(z_q))

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Code indices (B, h, w), e.g. a transformer's samples reshaped → images (B, C, S, S)."""
        return self.decode(self.quantizer.embed(indices))

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction x̂ = G(q(E(x))) (eq. 3)."""
        return self.decode(self.encode(x).z_q)
