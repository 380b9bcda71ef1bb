"""SAGAN generator and discriminator (Zhang, Goodfellow, Metaxas & Odena 2019, arXiv:1805.08318).

Both networks are the ResNet GAN of SN-GAN (Miyato et al. 2018, arXiv:1802.05957, its ResNet models)
as the SAGAN authors' release builds it (brain-research/self-attention-gan), with one
self-attention block (SAGAN sec. 3) on the feature map of side ``attention_resolution``,
spectral norm in *both* networks (sec. 4.1), and, when ``num_classes`` is set, conditional
batch norm in G and a projection discriminator (Miyato & Koyama 2018, arXiv:1802.05637), the
class-conditional setting of SAGAN's ImageNet experiments (sec. 5).

Sizes: G starts from a 4×4 map and doubles it k ≥ 1 times, so ``image_size`` is 4·2^k
(:data:`SAGAN_IMAGE_SIZES`); D halves the image k times back down to 4×4. Widths follow the
SN-GAN/SAGAN pattern: G goes ngf·2^k → ngf, halving per block; D goes ndf → ndf·2^(k-1),
doubling per block.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from gan_research.errors import ConfigError
from gan_research.networks.layers import apply_spectral_norm
from gan_research.utils.validation import check_positive_int

_BASE_SIDE = 4  # side of G's first and D's last feature map, as in SN-GAN and SAGAN
_MAX_IMAGE_SIZE = 256
SAGAN_IMAGE_SIZES: tuple[int, ...] = tuple(_BASE_SIDE * 2**k for k in range(1, 7))
"""Every ``image_size`` the SAGAN networks can produce: 8, 16, 32, 64, 128, 256."""

# Attention on a 4×4 map (16 positions, pooled to 4 keys) is not long-range in any sense, and
# SAGAN's ablation (sec. 5.2, table 1) only places it on maps of side 8 and up.
_MIN_ATTENTION_SIDE = 8
# SAGAN sec. 3: C̄ = C/k with k = 8 for the query/key projections f and g.
_QK_REDUCTION = 8
# The authors' code (and BigGAN's `Attention`) gives the value projection h C/2 channels.
_VALUE_REDUCTION = 2


def sagan_stages(image_size: object) -> int:
    """Return k with ``image_size == 4 * 2**k``; raise ConfigError for any other size."""
    # The isinstance check keeps 32.0 and True out of the shapes (both compare equal to ints).
    if isinstance(image_size, int) and not isinstance(image_size, bool) and image_size in SAGAN_IMAGE_SIZES:
        return image_size.bit_length() - _BASE_SIDE.bit_length()
    raise ConfigError(
        f"SAGAN cannot produce image_size={image_size!r}: it must be 4·2^k with k >= 1 and at most "
        f"{_MAX_IMAGE_SIZE} px. Valid sizes: {', '.join(map(str, SAGAN_IMAGE_SIZES))}."
    )


def _check_attention_resolution(owner: str, value: object, sides: list[int]) -> int | None:
    """Return ``value`` if it is None or one of ``sides`` (the block outputs of side >= 8)."""
    valid = sorted(s for s in sides if s >= _MIN_ATTENTION_SIDE)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value in valid:
        return value
    choices = ", ".join(map(str, valid)) + (", " if valid else "") + "None (no attention)"
    raise ConfigError(
        f"{owner}: attention_resolution={value!r} is not the side of one of its block outputs "
        f"(>= {_MIN_ATTENTION_SIDE}) at this image size. Valid choices: {choices}."
    )


def _check_num_classes(owner: str, num_classes: object) -> int | None:
    return None if num_classes is None else check_positive_int(owner, "num_classes", num_classes)


def _check_labels(owner: str, num_classes: int | None, batch: int, y: Tensor | None) -> None:
    if num_classes is None and y is not None:
        raise ValueError(
            f"{owner} is unconditional (num_classes=None) but was given labels y; "
            "build it with num_classes=N to condition on classes, or call it without y."
        )
    if num_classes is not None:
        if y is None:
            raise ValueError(
                f"{owner} is class-conditional (num_classes={num_classes}) and needs labels: "
                "call it with y, a LongTensor of shape (B,) with values in [0, num_classes)."
            )
        if y.shape != (batch,):
            raise ValueError(
                f"{owner}: labels y must have shape ({batch},) to match the batch, got {tuple(y.shape)}."
            )


def _init_weights(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases, the initialiser of the authors' release.

    Runs before spectral norm is registered (whose power iteration starts from these weights).
    Batch norms keep PyTorch's defaults (scale 1, shift 0); class embeddings are set by their owners.
    """
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class SelfAttention(nn.Module):
    """Self-attention block of SAGAN (Zhang et al. 2019, arXiv:1805.08318, sec. 3, eq. 1–3).

    With x of shape (C, N), N = H·W positions, and 1×1 convolutions f, g (C → C/8), h (C → C/2)
    and v (C/2 → C):

    - eq. 1: s_ij = f(x_i)ᵀ g(x_j), β_{j,i} = softmax over i of s_ij — how much output
      position j attends to position i;
    - eq. 2: o_j = v(Σ_i β_{j,i} h(x_i));
    - eq. 3: y = x + γ·o, γ a learnable scalar initialised to 0, so the block starts as the
      identity and the network first relies on local (convolutional) cues (sec. 3).

    Variant: the authors' released code (``sn_non_local_block_sim``; BigGAN-PyTorch's
    ``layers.Attention`` is the same), not the paper's plain form. It differs in two ways:
    h has C/2 channels instead of C/8, and the key and value branches f and h — the ones summed
    over i in eq. 1–2 — are max-pooled 2×2, so every query attends to N/4 pooled positions.
    That cuts the attention map from N² to N²/4 entries at the same receptive field (the whole
    map). Queries g stay at full resolution, so the output keeps the input's H×W. The 1×1
    convolutions are bias-free as in that code. Needs C >= 8 and H, W >= 2 (even for an exact
    2×2 pooling).
    """

    def __init__(self, channels: int, spectral_norm: bool = True):
        super().__init__()
        owner = type(self).__name__
        check_positive_int(owner, "channels", channels)
        if channels < _QK_REDUCTION:
            raise ConfigError(
                f"{owner}: channels={channels!r} is too few for the C/{_QK_REDUCTION} query/key "
                f"projections; the attended feature map needs at least {_QK_REDUCTION} channels "
                "(raise the network width or move attention_resolution)."
            )
        self.channels = channels
        qk, value = channels // _QK_REDUCTION, channels // _VALUE_REDUCTION
        self.f = nn.Conv2d(channels, qk, 1, bias=False)  # keys (pooled)
        self.g = nn.Conv2d(channels, qk, 1, bias=False)  # queries (full resolution)
        self.h = nn.Conv2d(channels, value, 1, bias=False)  # values (pooled)
        self.v = nn.Conv2d(value, channels, 1, bias=False)  # back to C channels
        # Scalar, as `sigma_ratio` in the authors' code; 0 makes the block the identity at init.
        self.gamma = nn.Parameter(torch.zeros(()))
        self.apply(_init_weights)
        if spectral_norm:
            apply_spectral_norm(self)

    def attend(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(o, beta)``: eq. 2's o of shape (B, C, H, W) and the attention map.

        ``beta`` has shape (B, H·W, H·W/4) (with even H, W): row j is β_{j,·} over the pooled
        key positions, a probability distribution (rows sum to 1).
        """
        b, _, height, width = x.shape
        queries = self.g(x).flatten(2)  # (B, C/8, N)
        keys = F.max_pool2d(self.f(x), 2).flatten(2)  # (B, C/8, N/4)
        values = F.max_pool2d(self.h(x), 2).flatten(2)  # (B, C/2, N/4)
        # scores[b, j, i] = s_ij = f(x_i)ᵀ g(x_j); the softmax over i (last dim) is eq. 1.
        beta = torch.softmax(queries.transpose(1, 2) @ keys, dim=-1)
        attended = (values @ beta.transpose(1, 2)).view(b, -1, height, width)  # Σ_i β_{j,i} h(x_i)
        return self.v(attended), beta

    def forward(self, x: Tensor) -> Tensor:
        """Eq. 3: ``x + gamma * o`` for feature maps of shape (B, C, H, W)."""
        o, _ = self.attend(x)
        return x + self.gamma * o


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose scale and shift depend on the class (de Vries et al. 2017, arXiv:1707.00683).

    The generator-side conditioning of Miyato & Koyama 2018 (arXiv:1802.05637) and of SAGAN's
    class-conditional experiments: normalise without affine parameters, then apply a per-class
    gain γ_y and bias β_y looked up in two embeddings. Gains start at 1 and biases at 0, so at
    init it is a plain batch norm for every class. The embeddings are not spectrally normalised:
    they are a normalisation's scale, not a linear map of the features.
    """

    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Embedding(num_classes, num_features)
        self.bias = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Normalise x (B, C, H, W) and scale/shift sample b with its class y[b]'s parameters."""
        return self.gain(y)[:, :, None, None] * self.bn(x) + self.bias(y)[:, :, None, None]


def _make_norm(channels: int, num_classes: int | None) -> nn.Module:
    return nn.BatchNorm2d(channels) if num_classes is None else ConditionalBatchNorm2d(channels, num_classes)


def _normalise(norm: nn.Module, x: Tensor, y: Tensor | None) -> Tensor:
    return norm(x) if isinstance(norm, nn.BatchNorm2d) else norm(x, y)


class _GeneratorBlock(nn.Module):
    """SN-GAN/SAGAN up-sampling residual block: (C)BN ReLU up×2 conv3 (C)BN ReLU conv3, + up×2 conv1.

    Nearest-neighbour up-sampling, as in both references. The convolutions are bias-free: their
    outputs reach a batch norm (this block's second one, or the next block's / the final one),
    which removes any per-channel constant, so a bias would get no gradient.
    """

    def __init__(self, c_in: int, c_out: int, num_classes: int | None):
        super().__init__()
        self.bn1 = _make_norm(c_in, num_classes)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False)
        self.bn2 = _make_norm(c_out, num_classes)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        h = F.interpolate(F.relu(_normalise(self.bn1, x, y)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(_normalise(self.bn2, self.conv1(h), y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class _DiscriminatorBlock(nn.Module):
    """SN-GAN/SAGAN down-sampling residual block.

    ``optimized`` (the first block, on the image): conv3 ReLU conv3 avgpool, shortcut avgpool
    conv1 — no ReLU on the raw image. Otherwise: ReLU conv3 ReLU conv3 avgpool, shortcut
    avgpool conv1 (the references convolve before pooling; both are linear, so pooling first is
    the same map at a quarter of the cost).
    """

    def __init__(self, c_in: int, c_out: int, optimized: bool):
        super().__init__()
        self.optimized = optimized
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.optimized else F.relu(x)
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(h))), 2)
        return h + self.shortcut(F.avg_pool2d(x, 2))


class SAGANGenerator(nn.Module):
    """SAGAN ResNet generator (arXiv:1805.08318, sec. 3–5; blocks of SN-GAN, arXiv:1802.05957).

    Layers: linear z → (ngf·2^k)×4×4; k up-sampling residual blocks, each doubling the side
    and halving the width down to ngf; :class:`SelfAttention` after the block whose output side
    is ``attention_resolution`` (None: no attention); BN ReLU conv3 (→ ``channels``) tanh.

    With ``num_classes`` every block's batch norms are :class:`ConditionalBatchNorm2d`
    (the final one stays unconditional, as in the authors' code) and ``forward`` needs labels.
    ``spectral_norm`` puts spectral norm on every linear map of G — SAGAN sec. 4.1 finds SN in G
    as well as D stabilises training — but not on the conditional-BN embeddings.
    """

    def __init__(
        self,
        latent_dim: int = 128,
        image_size: int = 32,
        channels: int = 3,
        ngf: int = 64,
        attention_resolution: int | None = 16,
        num_classes: int | None = None,
        spectral_norm: bool = True,
    ):
        super().__init__()
        owner = type(self).__name__
        stages = sagan_stages(image_size)
        self.latent_dim = check_positive_int(owner, "latent_dim", latent_dim)
        check_positive_int(owner, "channels", channels)
        check_positive_int(owner, "ngf", ngf)
        self.num_classes = _check_num_classes(owner, num_classes)
        sides = [_BASE_SIDE * 2 ** (i + 1) for i in range(stages)]  # block output sides
        self.attention_resolution = _check_attention_resolution(owner, attention_resolution, sides)
        self.output_shape: tuple[int, ...] = (channels, image_size, image_size)

        widths = [ngf * 2 ** (stages - i) for i in range(stages + 1)]  # 4×4 map, then each block
        self._base_width = widths[0]
        # Bias-free: the first block's batch norm removes it (see _GeneratorBlock).
        self.linear = nn.Linear(latent_dim, widths[0] * _BASE_SIDE**2, bias=False)
        self.blocks = nn.ModuleList(
            _GeneratorBlock(c_in, c_out, self.num_classes) for c_in, c_out in itertools.pairwise(widths)
        )
        self.attention_index: int | None = None
        self.attention: SelfAttention | None = None
        if self.attention_resolution is not None:
            self.attention_index = sides.index(self.attention_resolution)
            # SN is registered below for the whole network at once.
            self.attention = SelfAttention(widths[self.attention_index + 1], spectral_norm=False)
        self.bn = nn.BatchNorm2d(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], channels, 3, 1, 1)
        self.apply(_init_weights)
        if spectral_norm:
            # Linear and conv layers only: apply_spectral_norm leaves nn.Embedding alone.
            apply_spectral_norm(self)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Map noise (B, latent_dim) [and labels (B,)] to images (B, channels, size, size) in [-1, 1]."""
        _check_labels(type(self).__name__, self.num_classes, z.shape[0], y)
        h = self.linear(z).view(z.shape[0], self._base_width, _BASE_SIDE, _BASE_SIDE)
        for i, block in enumerate(self.blocks):
            h = block(h, y)
            if i == self.attention_index and self.attention is not None:
                h = self.attention(h)
        return torch.tanh(self.conv_out(F.relu(self.bn(h))))


class SAGANDiscriminator(nn.Module):
    """SAGAN ResNet discriminator (arXiv:1805.08318, sec. 3–5; blocks of SN-GAN, arXiv:1802.05957).

    Layers: k down-sampling residual blocks (the first one "optimized", see
    :class:`_DiscriminatorBlock`) from the image to a 4×4 map, widths ndf, 2·ndf, …,
    ndf·2^(k-1); :class:`SelfAttention` after the block whose output side is
    ``attention_resolution``; ReLU; global *sum* pooling φ(x) (SN-GAN's choice, kept by SAGAN);
    linear → score. D's block outputs have sides image_size/2 … 4, so the valid attention
    resolutions are those of side >= 8 (one fewer than G's: D has no image_size-side block output).

    With ``num_classes``: projection discriminator (Miyato & Koyama 2018, arXiv:1802.05637,
    eq. 3), score = ψ(φ(x)) + ⟨embed(y), φ(x)⟩, with the embedding spectrally normalised like
    every other layer when ``spectral_norm`` (as in SAGAN's code). Returns raw scores of shape
    (B,); the losses apply any sigmoid (SAGAN trains with the hinge loss, sec. 3, eq. 4).
    """

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        ndf: int = 64,
        attention_resolution: int | None = 16,
        num_classes: int | None = None,
        spectral_norm: bool = True,
    ):
        super().__init__()
        owner = type(self).__name__
        stages = sagan_stages(image_size)
        check_positive_int(owner, "channels", channels)
        check_positive_int(owner, "ndf", ndf)
        self.num_classes = _check_num_classes(owner, num_classes)
        sides = [image_size // 2 ** (i + 1) for i in range(stages)]  # block output sides
        self.attention_resolution = _check_attention_resolution(owner, attention_resolution, sides)
        self.input_shape: tuple[int, ...] = (channels, image_size, image_size)

        widths = [channels] + [ndf * 2**i for i in range(stages)]
        self.blocks = nn.ModuleList(
            _DiscriminatorBlock(c_in, c_out, optimized=i == 0)
            for i, (c_in, c_out) in enumerate(itertools.pairwise(widths))
        )
        self.attention_index: int | None = None
        self.attention: SelfAttention | None = None
        if self.attention_resolution is not None:
            self.attention_index = sides.index(self.attention_resolution)
            self.attention = SelfAttention(widths[self.attention_index + 1], spectral_norm=False)
        self.linear = nn.Linear(widths[-1], 1)
        self.embed: nn.Embedding | None = None
        if self.num_classes is not None:
            self.embed = nn.Embedding(self.num_classes, widths[-1])
            nn.init.xavier_uniform_(self.embed.weight)  # as the authors' sn_embedding
        self.apply(_init_weights)
        if spectral_norm:
            apply_spectral_norm(self)
            if self.embed is not None:
                # The projection's embedding is a linear map of φ(x) too, so it is normalised
                # like the rest of D (unlike G's conditional-BN embeddings).
                _spectral_norm(self.embed)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Map images (B, channels, size, size) [and labels (B,)] to scores of shape (B,)."""
        _check_labels(type(self).__name__, self.num_classes, x.shape[0], y)
        h = x
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i == self.attention_index and self.attention is not None:
                h = self.attention(h)
        features = F.relu(h).sum(dim=(2, 3))  # φ(x): global sum pooling, (B, C)
        score = self.linear(features).view(x.shape[0])
        if self.embed is not None and y is not None:
            score = score + (self.embed(y) * features).sum(dim=1)  # projection term, eq. 3
        return score
