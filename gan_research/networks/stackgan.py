"""StackGAN's networks: conditioning augmentation, the Stage-I and the Stage-II GAN.

Zhang et al. 2017, "StackGAN: Text to Photo-realistic Image Synthesis with Stacked Generative
Adversarial Networks" (ICCV 2017, arXiv:1612.03242). Layer orders and widths follow the authors'
PyTorch code, hanzhanggit/StackGAN-Pytorch (``code/model.py``: ``CA_NET``, ``upBlock``,
``ResBlock``, ``D_GET_LOGITS``, ``STAGE1_G``, ``STAGE1_D``, ``STAGE2_G``, ``STAGE2_D``; sizes in
``code/miscc/config.py`` and ``code/cfg/*.yml``), written afresh and generalised from its fixed
64 px (Stage I) and 64 → 256 px (Stage II) to the sizes below.

- Conditioning augmentation (sec. 3.1, :class:`ConditioningAugmentation`): the text embedding
  φ_t gives μ(φ_t) and log σ²(φ_t); the condition is ĉ = μ + σ ⊙ ε, ε ~ N(0, I), and the
  generator adds λ·D_KL(N(μ, Σ) ‖ N(0, I)) to its loss (eq. 3 and 5, :func:`kl_divergence`).
- Stage I (sec. 3.2, :class:`StageIGenerator`, :class:`StageIDiscriminator`): [z; ĉ] → a 4×4
  map → nearest ×2 upsampling blocks → the low-resolution image; D encodes the image to 4×4,
  joins the replicated text and scores the pair.
- Stage II (sec. 3.3, :class:`StageIIGenerator`, :class:`StageIIDiscriminator`): Stage I's
  image is encoded, joined with its own ĉ, refined by residual blocks and upsampled by 2 or 4;
  a deeper D scores the pair (and, as the reference, the image alone).

Every network here returns raw logits: the reference ends D with a sigmoid and ``nn.BCELoss``;
the framework's losses apply the sigmoid themselves (softplus / BCE-with-logits, same loss).
Weights are initialised as the reference's ``weights_init`` (``code/miscc/utils.py``): convs
and linear layers N(0, 0.02) with zero biases, batch-norm scales N(1, 0.02) and zero shifts.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal, overload

import torch
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.networks.layers import dcgan_weights_init
from gan_research.utils.validation import check_image_size, check_int_at_least, check_positive_int

__all__ = [
    "CA_ACTIVATIONS",
    "STAGE_FACTORS",
    "ConditioningAugmentation",
    "ResidualBlock",
    "StageIDiscriminator",
    "StageIGenerator",
    "StageIIDiscriminator",
    "StageIIGenerator",
    "kl_divergence",
    "reparameterize",
    "up_block",
]

CA_ACTIVATIONS: tuple[str, ...] = ("relu", "leaky_relu", "glu")
"""What follows the conditioning augmentation's fc layer (see :class:`ConditioningAugmentation`)."""

STAGE_FACTORS: tuple[int, ...] = (2, 4)
"""How much Stage II enlarges Stage I's image: 4 in the paper (64 → 256), 2 for small images."""

# Every generator starts from, and every discriminator scores, a 4×4 map (the reference's s16
# at 64 px); the smallest image has two doublings above it, as the smallest Stage-I image in the
# reference is 64 = 4·2^4 and Stage II encodes its input by 4 (a 16 px Stage I → a 4×4 code).
_BASE_SIDE = 4
_SMALLEST_IMAGE = 16
# The reference's D encodes a 64 px image with four stride-2 convs to ndf·8 channels; at other
# sizes we keep that depth at the 4×4 end (see the discriminators).
_REFERENCE_DOWNSAMPLINGS = 4
_LEAKY_SLOPE = 0.2  # every LeakyReLU of the reference's D


# -- shared layers ------------------------------------------------------------------------------
def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3×3 stride-1 conv without bias (the reference's ``conv3x3``; a batch norm follows nearly all)."""
    return nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)


def up_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Nearest-neighbour ×2 upsampling → 3×3 conv → BN → ReLU (the reference's ``upBlock``).

    The paper (sec. 3.2, "Implementation details") uses nearest-neighbour upsampling followed by a
    3×3 stride-1 convolution instead of transposed convolutions.
    """
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        _conv3x3(in_channels, out_channels),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(True),
    )


class ResidualBlock(nn.Module):
    """ReLU(x + BN(conv3×3(ReLU(BN(conv3×3(x)))))): the reference's ``ResBlock``.

    Stage II's residual blocks (sec. 3.3 and "Implementation details": 3×3 stride-1 convs, batch
    norm and ReLU); the ReLU after the sum is the reference's.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv3x3(channels, channels),
            nn.BatchNorm2d(channels),
            nn.ReLU(True),
            _conv3x3(channels, channels),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x + self.body(x))


def _init_weights(module: nn.Module) -> None:
    """The reference's ``weights_init``: DCGAN's for convs and batch norms, and linear layers too."""
    dcgan_weights_init(module)
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _doublings(
    owner: str, image_size: object, name: str = "image_size", smallest: int = _SMALLEST_IMAGE
) -> int:
    """k with ``image_size == 4 · 2**k`` (a power of two >= ``smallest``); ConfigError listing the valid
    sizes otherwise, naming the argument ``name``."""
    try:
        size = check_image_size(owner, image_size, smallest=smallest)
    except ConfigError as error:
        # check_image_size names the argument image_size; Stage II's stage1_size must be named as given.
        raise ConfigError(str(error).replace("image_size", name, 1)) from None
    return (size // _BASE_SIDE).bit_length() - 1


def _check_ngf(owner: str, ngf: int, multiplier: int, halvings: int, image_size: int) -> None:
    """``multiplier·ngf`` channels must survive ``halvings`` halvings (one per upsampling block) whole."""
    if (multiplier * ngf) % 2**halvings:
        step = 2**halvings // math.gcd(multiplier, 2**halvings)
        raise ConfigError(
            f"{owner}: ngf={ngf} is not supported at image_size={image_size}: its {halvings} upsampling "
            f"blocks halve the {multiplier}·ngf={multiplier * ngf} channels of the first map into fractions; "
            f"ngf must be a multiple of {step}."
        )


def _check_text(owner: str, name: str, text: Tensor, batch: int, dim: int) -> None:
    if text.ndim != 2 or text.shape != (batch, dim):
        raise ValueError(f"{owner} expects {name} of shape ({batch}, {dim}), got {tuple(text.shape)}")


# -- conditioning augmentation ------------------------------------------------------------------
def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    """ĉ = μ + σ ⊙ ε with σ = exp(log σ² / 2) and ε ~ N(0, I) (sec. 3.1; the reference's ``reparametrize``).

    Differentiable in μ and log σ² (the reparameterisation trick of Kingma & Welling 2014): ∂ĉ/∂μ = 1,
    ∂ĉ/∂log σ² = σ ε / 2.
    """
    std = torch.exp(0.5 * logvar)
    return mu + std * torch.randn_like(std)


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """D_KL(N(μ, diag σ²) ‖ N(0, I)), reduced exactly as the reference's ``KL_loss``.

    Per element, ½ (μ² + σ² − 1 − log σ²); the reference (``code/miscc/utils.py``) takes
    ``-0.5 * mean(1 + logvar - mu² - exp(logvar))``: the **mean over all B × condition_dim
    elements**, i.e. the per-sample KL (summed over dimensions) averaged over the batch and then
    divided by ``condition_dim``. The paper's λ = 1 (sec. 3.2) and the reference's
    ``TRAIN.COEFF.KL = 2.0`` are weights of this per-dimension mean.
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"kl_divergence: mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} differ")
    return -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())


class ConditioningAugmentation(nn.Module):
    """Conditioning augmentation (sec. 3.1): text embedding φ_t → (ĉ, μ, log σ²).

    A fully connected layer maps φ_t to μ and log σ² (the first and second halves of its output
    after the activation); ĉ = μ + σ ⊙ ε, ε ~ N(0, I) (:func:`reparameterize`). ``activation``:

    - ``"relu"`` (default): the authors' PyTorch code (``CA_NET``): fc to 2·condition_dim, ReLU.
      μ and log σ² are then non-negative: σ ≥ 1, and the KL term is zero only at μ = 0, σ = 1.
    - ``"leaky_relu"``: the authors' TensorFlow code (hanzhanggit/StackGAN,
      ``stageI/model.py``, ``generate_condition``): fc to 2·condition_dim, LeakyReLU(0.2). The TF
      code reads the second half as log σ; here it is log σ², as in the PyTorch code.
    - ``"glu"``: StackGAN++'s ``CA_NET`` (Zhang et al. 2018, arXiv:1710.10916;
      hanzhanggit/StackGAN-v2, ``code/model.py``): fc to 4·condition_dim, then a gated linear unit
      (first half ⊙ sigmoid(second half)) down to 2·condition_dim; μ and log σ² may be negative.

    ``forward(embedding, sample=True)`` returns ``(c, mu, logvar)``, each (B, condition_dim).
    The reference samples ε in training and in evaluation alike (its ``netG.eval()`` sampling still
    draws), so ``sample`` defaults to True in both modes; ``sample=False`` returns c = μ, the
    deterministic condition (e.g. for fixed evaluation grids).
    """

    activations: tuple[str, ...] = CA_ACTIVATIONS

    def __init__(self, text_dim: int, condition_dim: int = 128, activation: str = "relu") -> None:
        super().__init__()
        owner = type(self).__name__
        self.text_dim = check_positive_int(owner, "text_dim", text_dim)
        self.condition_dim = check_positive_int(owner, "condition_dim", condition_dim)
        if not isinstance(activation, str) or activation not in CA_ACTIVATIONS:
            raise ConfigError(
                f"{owner}: unknown activation={activation!r}; valid choices: {', '.join(CA_ACTIVATIONS)} "
                f"(relu: StackGAN-Pytorch, leaky_relu: the TensorFlow StackGAN, glu: StackGAN++)."
            )
        self.activation = activation
        # GLU halves its input, so it needs twice the fc outputs for the same μ and log σ².
        self.fc = nn.Linear(text_dim, (4 if activation == "glu" else 2) * condition_dim)
        self.act: nn.Module
        if activation == "relu":
            self.act = nn.ReLU()
        elif activation == "leaky_relu":
            self.act = nn.LeakyReLU(_LEAKY_SLOPE)
        else:
            self.act = nn.GLU(dim=1)

    def encode(self, embedding: Tensor) -> tuple[Tensor, Tensor]:
        """(μ, log σ²), each (B, condition_dim), of text embeddings (B, text_dim)."""
        _check_text(type(self).__name__, "embedding", embedding, embedding.shape[0], self.text_dim)
        h = self.act(self.fc(embedding))
        return h[:, : self.condition_dim], h[:, self.condition_dim :]

    def forward(self, embedding: Tensor, sample: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(embedding)
        c = reparameterize(mu, logvar) if sample else mu
        return c, mu, logvar

    def extra_repr(self) -> str:
        return f"text_dim={self.text_dim}, condition_dim={self.condition_dim}, activation={self.activation!r}"


# -- Stage I ------------------------------------------------------------------------------------
class StageIGenerator(nn.Module):
    """Stage-I generator (sec. 3.2, Fig. 2; the reference's ``STAGE1_G``): (z, φ_t) → a low-resolution image.

    ĉ from conditioning augmentation; [z; ĉ] → fc (no bias) → BN1d → ReLU → a 4×4 map of
    ``8·ngf`` channels → k :func:`up_block` s, each halving the channels, to ``image_size = 4·2^k``
    → 3×3 conv (no bias) → tanh. At 64 px the widths are 8ngf, 4ngf, 2ngf, ngf, ngf/2 (the
    reference's ``GAN.GF_DIM`` is our ``ngf``: its ``STAGE1_G`` starts at ``GF_DIM * 8``);
    other sizes keep the 8·ngf start and halve once per doubling, so ``8·ngf`` must be divisible by
    ``2**k``.

    Args:
        text_dim: size of the text embedding φ_t (the reference's ``TEXT.DIMENSION``, 1024).
        image_size: the output side, 4·2^k with k ≥ 2 (16, 32, 64, ...; the paper's 64).
        channels: image channels (the reference's 3).
        latent_dim: size of z (``Z_DIM``, 100).
        condition_dim: size of ĉ (``GAN.CONDITION_DIM``, 128; the paper's N_g).
        ngf: width knob (``GAN.GF_DIM``: 128 by default, 192 for COCO).
        ca_activation: the conditioning augmentation's activation (:class:`ConditioningAugmentation`).

    ``forward(z, embedding, sample=True) -> (image, mu, logvar)``: z (B, latent_dim), φ_t
    (B, text_dim) → images (B, channels, image_size, image_size) in [-1, 1] and the CA's μ and
    log σ² (B, condition_dim), for the KL term and for D. (The reference's order is
    ``(text_embedding, noise)`` and it also returns ``None`` first; here z comes first, as every
    generator's, and the stage-II-only slot is dropped.)
    """

    def __init__(
        self,
        text_dim: int,
        image_size: int = 64,
        channels: int = 3,
        latent_dim: int = 100,
        condition_dim: int = 128,
        ngf: int = 128,
        ca_activation: str = "relu",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        doublings = _doublings(owner, image_size)
        self.channels = check_positive_int(owner, "channels", channels)
        self.latent_dim = check_positive_int(owner, "latent_dim", latent_dim)
        check_positive_int(owner, "ngf", ngf)
        top = 8 * ngf
        _check_ngf(owner, ngf, 8, doublings, image_size)
        self.ca = ConditioningAugmentation(text_dim, condition_dim, ca_activation)
        self.text_dim = self.ca.text_dim
        self.condition_dim = self.ca.condition_dim
        self.output_shape: tuple[int, int, int] = (channels, image_size, image_size)

        self.top_channels = top
        self.fc = nn.Sequential(
            # No bias: the batch norm that follows has its own shift (the reference's bias=False).
            nn.Linear(latent_dim + condition_dim, top * _BASE_SIDE**2, bias=False),
            nn.BatchNorm1d(top * _BASE_SIDE**2),
            nn.ReLU(True),
        )
        widths = [top // 2**i for i in range(doublings + 1)]
        self.upsample = nn.Sequential(*(up_block(a, b) for a, b in itertools.pairwise(widths)))
        self.to_image = nn.Sequential(_conv3x3(widths[-1], channels), nn.Tanh())
        self.apply(_init_weights)

    def forward(self, z: Tensor, embedding: Tensor, sample: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        owner = type(self).__name__
        _check_text(owner, "z", z, z.shape[0], self.latent_dim)
        _check_text(owner, "embedding", embedding, z.shape[0], self.text_dim)
        c, mu, logvar = self.ca(embedding, sample=sample)
        h = self.fc(torch.cat([z, c], dim=1)).view(z.shape[0], self.top_channels, _BASE_SIDE, _BASE_SIDE)
        return self.to_image(self.upsample(h)), mu, logvar


# -- the discriminators -------------------------------------------------------------------------
def _down(in_channels: int, out_channels: int, batch_norm: bool) -> list[nn.Module]:
    """4×4 stride-2 conv (no bias) [→ BN] → LeakyReLU(0.2): one halving of D's encoder."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 4, 2, 1, bias=False)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.LeakyReLU(_LEAKY_SLOPE, True))
    return layers


def _encoder(channels: int, widths: list[int], tail: list[int]) -> nn.Sequential:
    """Stride-2 convs to ``widths`` (BN on all but the first: DCGAN's rule, kept by the reference),
    then 3×3 stride-1 convs + BN + LeakyReLU to each of ``tail`` (STAGE2_D's narrowing at 4×4)."""
    layers: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(itertools.pairwise([channels, *widths])):
        layers += _down(c_in, c_out, batch_norm=i > 0)
    for c_in, c_out in itertools.pairwise([widths[-1], *tail]):
        layers += [_conv3x3(c_in, c_out), nn.BatchNorm2d(c_out), nn.LeakyReLU(_LEAKY_SLOPE, True)]
    return nn.Sequential(*layers)


class _ConditionalLogits(nn.Module):
    """The reference's ``D_GET_LOGITS(bcondition=True)``: [features; replicated text] → one logit.

    The text (B, condition_dim) is replicated over the 4×4 map (sec. 3.2: "spatially replicated to
    form a M_d × M_d × N_d tensor"), concatenated after the image features, then 3×3 conv (no
    bias) → BN → LeakyReLU(0.2) → 4×4 conv (stride 4, with bias) to one logit; no sigmoid.
    """

    def __init__(self, feature_channels: int, condition_dim: int) -> None:
        super().__init__()
        self.joint = nn.Sequential(
            _conv3x3(feature_channels + condition_dim, feature_channels),
            nn.BatchNorm2d(feature_channels),
            nn.LeakyReLU(_LEAKY_SLOPE, True),
        )
        self.out = nn.Conv2d(feature_channels, 1, _BASE_SIDE, stride=_BASE_SIDE)

    def forward(self, features: Tensor, condition: Tensor) -> Tensor:
        tiled = condition[:, :, None, None].expand(-1, -1, *features.shape[-2:])
        return self.out(self.joint(torch.cat([features, tiled], dim=1))).view(features.shape[0])


class _StackGANDiscriminator(nn.Module):
    """What both stages' discriminators share: the text input, the logit heads and ``forward``.

    Subclasses build ``self.encoder`` (image → (B, 8·ndf, 4, 4)).
    """

    def __init__(
        self,
        text_dim: int,
        image_size: int,
        channels: int,
        ndf: int,
        condition_dim: int,
        project_text: bool,
        unconditional_head: bool,
        smallest: int,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.downsamplings = _doublings(owner, image_size, smallest=smallest)
        self.channels = check_positive_int(owner, "channels", channels)
        self.ndf = check_positive_int(owner, "ndf", ndf)
        self.text_dim = check_positive_int(owner, "text_dim", text_dim)
        self.condition_dim = check_positive_int(owner, "condition_dim", condition_dim)
        if not project_text and text_dim != condition_dim:
            raise ConfigError(
                f"{owner}: text_dim={text_dim} differs from condition_dim={condition_dim}, but "
                f"project_text=False makes D replicate the text as given. The reference feeds D the "
                f"generator's CA mean μ (size condition_dim): set text_dim={condition_dim}; or set "
                f"project_text=True to compress a raw embedding with D's own fc layer (paper sec. 3.2)."
            )
        self.input_shape: tuple[int, int, int] = (channels, image_size, image_size)
        self.project_text = project_text
        self.feature_channels = 8 * ndf
        # Paper sec. 3.2 and the TF code's context_embedding: fc to N_d, LeakyReLU(0.2).
        self.text_projection: nn.Module = (
            nn.Sequential(nn.Linear(text_dim, condition_dim), nn.LeakyReLU(_LEAKY_SLOPE, True))
            if project_text
            else nn.Identity()
        )
        self.conditional = _ConditionalLogits(self.feature_channels, condition_dim)
        # D_GET_LOGITS(bcondition=False): a 4×4 stride-4 conv (with bias) on the features alone.
        self.unconditional: nn.Module | None = (
            nn.Conv2d(self.feature_channels, 1, _BASE_SIDE, stride=_BASE_SIDE) if unconditional_head else None
        )

    @property
    def has_unconditional_head(self) -> bool:
        return self.unconditional is not None

    def features(self, image: Tensor) -> Tensor:
        """The encoded image (B, 8·ndf, 4, 4) that both logit heads read (the reference's ``forward``)."""
        if tuple(image.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{type(self).__name__} expects images (B, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(image.shape)}"
            )
        return self.encoder(image)

    def conditional_logits(self, features: Tensor, text: Tensor) -> Tensor:
        """Logits (B,) of (image, text) pairs from :meth:`features` (the reference's ``get_cond_logits``)."""
        _check_text(type(self).__name__, "text", text, features.shape[0], self.text_dim)
        return self.conditional(features, self.text_projection(text))

    def unconditional_logits(self, features: Tensor) -> Tensor:
        """Logits (B,) of the images alone (the reference's ``get_uncond_logits``)."""
        if self.unconditional is None:
            raise ValueError(f"{type(self).__name__} was built without the unconditional head")
        return self.unconditional(features).view(features.shape[0])

    @overload
    def forward(self, image: Tensor, text: Tensor, unconditional: Literal[False] = ...) -> Tensor: ...

    @overload
    def forward(self, image: Tensor, text: Tensor, unconditional: Literal[True]) -> tuple[Tensor, Tensor]: ...

    def forward(
        self, image: Tensor, text: Tensor, unconditional: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Logits (B,) of (image, text) pairs; with ``unconditional=True``, ``(conditional,
        unconditional)`` from one pass of the encoder, as the reference's losses use both."""
        h = self.features(image)
        logits = self.conditional_logits(h, text)
        if unconditional:
            return logits, self.unconditional_logits(h)
        return logits


class StageIDiscriminator(_StackGANDiscriminator):
    """Stage-I discriminator (sec. 3.2; the reference's ``STAGE1_D`` and ``D_GET_LOGITS``).

    Encoder: one 4×4 stride-2 conv (no bias) per halving from ``image_size`` to 4×4, BN on all
    but the first, LeakyReLU(0.2), ending at 8·ndf channels; at 64 px ndf, 2ndf, 4ndf, 8ndf as the
    reference. Smaller images keep the reference's last layers (32 px: 2ndf, 4ndf, 8ndf; 16 px:
    4ndf, 8ndf); larger ones add ndf-wide layers at the image end. Then the conditional logit
    (:class:`_ConditionalLogits`): [features; replicated text] → 3×3 conv → BN → LeakyReLU →
    4×4 conv → one logit. ``unconditional_head=True`` adds the image-only logit
    (``forward(..., unconditional=True)``); the reference's ``STAGE1_D`` has none.

    D's text input: the reference feeds D the **generator's conditioning-augmentation mean μ**,
    detached (``code/miscc/utils.py``, ``compute_discriminator_loss`` / ``compute_generator_loss``:
    ``cond = conditions.detach()`` with ``conditions = mu``), and D replicates it as it is, so
    its compression of φ_t to N_d = condition_dim (paper sec. 3.2) is G's CA fc layer. That is the
    default (``project_text=False``; then ``text_dim`` must equal ``condition_dim``): a family
    passes ``mu.detach()``, so D's loss trains neither G nor its CA. With ``project_text=True`` D
    has its own fc + LeakyReLU(0.2) from ``text_dim`` to ``condition_dim`` and reads the raw
    embedding φ_t, as the paper and the authors' TensorFlow code (``context_embedding``) do.

    ``forward(image, text, unconditional=False)``: images (B, *input_shape) and text
    (B, text_dim) → logits (B,); with ``unconditional=True``, ``(conditional, unconditional)``.
    """

    def __init__(
        self,
        text_dim: int,
        image_size: int = 64,
        channels: int = 3,
        ndf: int = 64,
        condition_dim: int = 128,
        project_text: bool = False,
        unconditional_head: bool = False,
    ) -> None:
        super().__init__(
            text_dim,
            image_size,
            channels,
            ndf,
            condition_dim,
            project_text,
            unconditional_head,
            _SMALLEST_IMAGE,
        )
        n = self.downsamplings
        widths = [ndf * 2 ** max(0, i + _REFERENCE_DOWNSAMPLINGS - n) for i in range(n)]
        self.encoder = _encoder(channels, widths, tail=[])
        self.apply(_init_weights)


class StageIIDiscriminator(_StackGANDiscriminator):
    """Stage-II discriminator (sec. 3.3; the reference's ``STAGE2_D``).

    Encoder: one 4×4 stride-2 conv (no bias) per halving from ``image_size`` to 4×4, doubling the
    channels from ndf (BN on all but the first, LeakyReLU(0.2)), then 3×3 convs + BN + LeakyReLU
    halving the channels back to 8·ndf. At 256 px, the reference: ndf, 2ndf, 4ndf, 8ndf, 16ndf,
    32ndf, then 16ndf, 8ndf; at 128 px: ndf ... 16ndf, then 8ndf. At 64 px and below there is
    nothing to narrow, and the encoder is :class:`StageIDiscriminator`'s (at 64 px the reference's
    ``STAGE1_D`` is ``STAGE2_D``'s first four layers; 32 px: 2ndf, 4ndf, 8ndf). The logit heads are
    Stage I's; the unconditional head is on by default, as in the reference's ``STAGE2_D``, whose
    losses add the image-only terms to the conditional ones (``code/miscc/utils.py``). D's text
    input and ``forward`` are :class:`StageIDiscriminator`'s: by default the generator's CA mean
    μ, detached, as the reference (``project_text=True``: the raw embedding through D's own fc).
    """

    def __init__(
        self,
        text_dim: int,
        image_size: int = 256,
        channels: int = 3,
        ndf: int = 64,
        condition_dim: int = 128,
        project_text: bool = False,
        unconditional_head: bool = True,
    ) -> None:
        # Stage II at least doubles the smallest Stage-I image.
        super().__init__(
            text_dim,
            image_size,
            channels,
            ndf,
            condition_dim,
            project_text,
            unconditional_head,
            STAGE_FACTORS[0] * _SMALLEST_IMAGE,
        )
        n = self.downsamplings
        shift = max(0, _REFERENCE_DOWNSAMPLINGS - n)
        widths = [ndf * 2 ** (i + shift) for i in range(n)]
        narrowing = n + shift - _REFERENCE_DOWNSAMPLINGS  # 3×3 convs from ndf·2^(n-1) down to 8·ndf
        tail = [widths[-1] // 2**j for j in range(1, narrowing + 1)]
        self.encoder = _encoder(channels, widths, tail)
        self.apply(_init_weights)


# -- Stage II -----------------------------------------------------------------------------------
class StageIIGenerator(nn.Module):
    """Stage-II generator (sec. 3.3, Fig. 2; the reference's ``STAGE2_G``): (Stage-I image, φ_t) → image.

    Encoder (the reference's, ÷4): 3×3 conv (no bias) → ReLU → 4×4 stride-2 conv → BN → ReLU →
    4×4 stride-2 conv → BN → ReLU, to ``4·ngf`` channels at ``stage1_size / 4`` (16×16 for the
    paper's 64 px). Its own conditioning augmentation gives ĉ, replicated over that map and
    concatenated after the image features; 3×3 conv → BN → ReLU back to 4·ngf (``hr_joint``);
    ``num_residual`` :class:`ResidualBlock` s; :func:`up_block` s halving the channels up to
    ``image_size`` (4 of them for a factor 4: 4ngf → 2ngf → ngf → ngf/2 → ngf/4, the reference's;
    3 for a factor 2, ending at ngf/2); 3×3 conv (no bias) → tanh.

    Args:
        text_dim: size of φ_t.
        image_size: the output side, ``factor · stage1_size`` with factor 2 or 4
            (:data:`STAGE_FACTORS`; the paper's 64 → 256, the digits' 16 → 32 and 32 → 64).
        channels: image channels, the same for the input and the output.
        ngf: width knob (``GAN.GF_DIM``; unlike Stage I, Stage II's ``STAGE2_G`` uses it as is);
            a multiple of 4 for a factor 4, of 2 for a factor 2, so that every block has whole channels.
        condition_dim: size of ĉ.
        num_residual: residual blocks (``GAN.R_NUM``: 4 by default and for the paper's 256 px
            models, "Implementation details"; 2 for its 128 px ones and the COCO config).
        stage1_size: side of the Stage-I image, 4·2^k with k ≥ 2.
        ca_activation: the conditioning augmentation's activation.

    ``forward(stage1_image, embedding, sample=True) -> (image, mu, logvar)``. Stage II draws no z
    (sec. 3.3: the randomness is in the Stage-I image and ĉ). The reference runs the frozen Stage-I
    G inside ``STAGE2_G`` and detaches its image; here the family does both, so this network holds
    Stage II's weights only.
    """

    def __init__(
        self,
        text_dim: int,
        image_size: int = 256,
        channels: int = 3,
        ngf: int = 128,
        condition_dim: int = 128,
        num_residual: int = 4,
        stage1_size: int = 64,
        ca_activation: str = "relu",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        _doublings(owner, stage1_size, name="stage1_size")
        allowed = [f * stage1_size for f in STAGE_FACTORS]
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size not in allowed:
            raise ConfigError(
                f"{owner}: image_size={image_size!r} is not a Stage-II size for stage1_size={stage1_size}: "
                f"Stage II enlarges the Stage-I image by a factor of {' or '.join(map(str, STAGE_FACTORS))}, "
                f"so image_size must be one of {', '.join(map(str, allowed))}."
            )
        self.channels = check_positive_int(owner, "channels", channels)
        check_positive_int(owner, "ngf", ngf)
        self.num_residual = check_int_at_least(owner, "num_residual", num_residual, 0)
        self.factor = image_size // stage1_size
        # The encoder halves twice; the upsampling blocks double back and then by the factor.
        ups = 2 + self.factor.bit_length() - 1
        _check_ngf(owner, ngf, 4, ups, image_size)
        self.ca = ConditioningAugmentation(text_dim, condition_dim, ca_activation)
        self.text_dim = self.ca.text_dim
        self.condition_dim = self.ca.condition_dim
        self.stage1_size = stage1_size
        self.input_shape: tuple[int, int, int] = (channels, stage1_size, stage1_size)
        self.output_shape: tuple[int, int, int] = (channels, image_size, image_size)

        self.encoder = nn.Sequential(
            _conv3x3(channels, ngf),
            nn.ReLU(True),  # no batch norm on the input layer, as the reference
            nn.Conv2d(ngf, 2 * ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * ngf),
            nn.ReLU(True),
            nn.Conv2d(2 * ngf, 4 * ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(4 * ngf),
            nn.ReLU(True),
        )
        self.joint = nn.Sequential(
            _conv3x3(4 * ngf + condition_dim, 4 * ngf), nn.BatchNorm2d(4 * ngf), nn.ReLU(True)
        )
        self.residual = nn.Sequential(*(ResidualBlock(4 * ngf) for _ in range(num_residual)))
        widths = [4 * ngf // 2**i for i in range(ups + 1)]
        self.upsample = nn.Sequential(*(up_block(a, b) for a, b in itertools.pairwise(widths)))
        self.to_image = nn.Sequential(_conv3x3(widths[-1], channels), nn.Tanh())
        self.apply(_init_weights)

    def forward(
        self, stage1_image: Tensor, embedding: Tensor, sample: bool = True
    ) -> tuple[Tensor, Tensor, Tensor]:
        owner = type(self).__name__
        if tuple(stage1_image.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{owner} expects Stage-I images (B, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(stage1_image.shape)}"
            )
        _check_text(owner, "embedding", embedding, stage1_image.shape[0], self.text_dim)
        h = self.encoder(stage1_image)
        c, mu, logvar = self.ca(embedding, sample=sample)
        tiled = c[:, :, None, None].expand(-1, -1, *h.shape[-2:])
        h = self.residual(self.joint(torch.cat([h, tiled], dim=1)))
        return self.to_image(self.upsample(h)), mu, logvar
