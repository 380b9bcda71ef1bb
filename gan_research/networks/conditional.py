"""DCGAN networks for the conditional and auxiliary-head families (cGAN, projection
discriminator, AC-GAN, InfoGAN, semi-supervised GAN).

Each wraps the DCGAN networks of :mod:`gan_research.networks.dcgan`, so the body,
its widths, norms and initialisation are the unconditional ones and only the way a
label enters (or a head leaves) differs:

- :class:`ConditionalDCGANGenerator`: the one-hot label concatenated with z
  (Mirza & Osindero 2014, arXiv:1411.1784, sec. 3.2).
- :class:`ConditionalDCGANDiscriminator`: ``conditioning="concat"`` appends the
  one-hot label to the image as constant planes (the convolutional form of the same
  paper's input concatenation); ``"projection"`` adds the inner product of a class
  embedding with D's pooled features (Miyato & Koyama 2018, arXiv:1802.05637, eq. 3).
- :class:`AuxiliaryDCGANDiscriminator`: the adversarial output plus a linear head on
  the same features: AC-GAN's class logits (Odena et al. 2017), InfoGAN's Q network
  (Chen et al. 2016, sec. 6), or the semi-supervised GAN's K class logits with the
  real/fake logit derived from them (Salimans et al. 2016, sec. 5).
- :class:`CodeDCGANGenerator`: InfoGAN's G(z, c), the latent code vector concatenated
  with z (Chen et al. 2016, arXiv:1606.03657, sec. 4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as sn

from gan_research.errors import ConfigError
from gan_research.networks.dcgan import DISCRIMINATOR_NORMS, DCGANDiscriminator, DCGANGenerator
from gan_research.utils.validation import check_positive_int

CONDITIONINGS = ("concat", "projection")


def _check_labels(owner: str, y: Tensor | None, batch: int, num_classes: int) -> Tensor:
    if y is None:
        raise ValueError(f"{owner} is class-conditional: call it with labels y of shape ({batch},)")
    if y.shape != (batch,):
        raise ValueError(f"{owner}: labels must have shape ({batch},), got {tuple(y.shape)}")
    return y.long()


class ConditionalDCGANGenerator(nn.Module):
    """DCGAN generator of ``[z, one_hot(y)]`` (Mirza & Osindero 2014, sec. 3.2).

    ``latent_dim`` is the noise dimension only; the wrapped DCGAN generator (``net``) sees
    ``latent_dim + num_classes`` inputs.
    """

    def __init__(
        self,
        num_classes: int,
        latent_dim: int = 100,
        image_size: int = 64,
        channels: int = 3,
        ngf: int = 64,
        max_channels: int | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.num_classes = check_positive_int(owner, "num_classes", num_classes)
        self.latent_dim = check_positive_int(owner, "latent_dim", latent_dim)
        self.net = DCGANGenerator(latent_dim + num_classes, image_size, channels, ngf, max_channels)
        self.output_shape = self.net.output_shape

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Images (B, C, H, W) in [-1, 1] of classes ``y`` (B,) from noise ``z`` (B, latent_dim)."""
        y = _check_labels(type(self).__name__, y, z.shape[0], self.num_classes)
        one_hot = F.one_hot(y, self.num_classes).to(z.dtype)
        return self.net(torch.cat([z, one_hot], dim=1))


class ConditionalDCGANDiscriminator(nn.Module):
    """DCGAN discriminator D(x, y) → score, conditioned by concatenation or projection.

    - ``concat``: ``num_classes`` constant planes, 1 for the label's plane, appended to the
      image channels; the DCGAN body (``net``) takes ``channels + num_classes`` inputs.
    - ``projection`` (Miyato & Koyama 2018, eq. 3): ``f(x, y) = ψ(φ(x)) + embed(y)ᵀ φ(x)``,
      where ψ is the DCGAN output layer on the last hidden map and φ(x) that map summed over
      its positions (the global sum pooling of the paper's ResNet D). The embedding is
      spectrally normalised with the rest when ``spectral_norm`` (the SN-GAN setting the
      projection paper trains with).

    ``norm``: the body's hidden normalisation, batch | layer | instance | none (see
    :class:`~gan_research.networks.dcgan.DCGANDiscriminator`; a gradient penalty needs a
    per-sample one).
    """

    norms: tuple[str, ...] = DISCRIMINATOR_NORMS

    def __init__(
        self,
        num_classes: int,
        conditioning: str = "projection",
        image_size: int = 64,
        channels: int = 3,
        ndf: int = 64,
        max_channels: int | None = None,
        leaky_slope: float = 0.2,
        spectral_norm: bool = False,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.num_classes = check_positive_int(owner, "num_classes", num_classes)
        if conditioning not in CONDITIONINGS:
            raise ConfigError(
                f"{owner}: unknown conditioning={conditioning!r}; valid choices: {', '.join(CONDITIONINGS)}."
            )
        self.conditioning = conditioning
        self.norm = norm
        in_channels = channels + num_classes if conditioning == "concat" else channels
        self.net = DCGANDiscriminator(
            image_size, in_channels, ndf, max_channels, leaky_slope, spectral_norm=spectral_norm, norm=norm
        )
        self.input_shape: tuple[int, ...] = (channels, image_size, image_size)
        if conditioning == "projection":
            feature_channels = self.net.feature_shape[0]
            self.embed = nn.Embedding(num_classes, feature_channels)
            # Small initial projections: at the start D is (close to) the unconditional one.
            nn.init.normal_(self.embed.weight, 0.0, 0.02)
            if spectral_norm:
                sn(self.embed)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Scores of shape (B,) for images ``x`` claimed to be of classes ``y``."""
        y = _check_labels(type(self).__name__, y, x.shape[0], self.num_classes)
        if self.conditioning == "concat":
            planes = F.one_hot(y, self.num_classes).to(x.dtype)[:, :, None, None]
            planes = planes.expand(-1, -1, x.shape[2], x.shape[3])
            return self.net(torch.cat([x, planes], dim=1))
        h = self.net.features(x)
        score = self.net.main[-1](h).view(x.shape[0])
        return score + (self.embed(y) * h.sum(dim=(2, 3))).sum(dim=1)


class AuxiliaryDCGANDiscriminator(nn.Module):
    """DCGAN discriminator with a linear head beside its output: D(x) → (score, head(x)).

    The head reads the flattened last hidden map, the features the adversarial output
    layer reads, so both share D's whole body (AC-GAN, sec. 3; InfoGAN's Q, sec. 6).

    ``adversarial_head=False`` is the semi-supervised (K+1)-class discriminator of
    Salimans et al. 2016 (sec. 5): the head gives K class logits l, the fake class's logit
    is fixed at 0, so the real/fake logit is ``logsumexp(l)`` (D(x) = Z(x) / (Z(x) + 1)).

    ``norm``: the body's hidden normalisation, batch | layer | instance | none (see
    :class:`~gan_research.networks.dcgan.DCGANDiscriminator`; a gradient penalty needs a
    per-sample one).
    """

    norms: tuple[str, ...] = DISCRIMINATOR_NORMS

    def __init__(
        self,
        num_outputs: int,
        image_size: int = 64,
        channels: int = 3,
        ndf: int = 64,
        max_channels: int | None = None,
        leaky_slope: float = 0.2,
        spectral_norm: bool = False,
        norm: str = "batch",
        adversarial_head: bool = True,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.num_outputs = check_positive_int(owner, "num_outputs", num_outputs)
        self.norm = norm
        self.net = DCGANDiscriminator(
            image_size, channels, ndf, max_channels, leaky_slope, spectral_norm=spectral_norm, norm=norm
        )
        self.input_shape: tuple[int, ...] = self.net.input_shape
        self.adversarial_head = adversarial_head
        c, h, w = self.net.feature_shape
        self.head = nn.Linear(c * h * w, num_outputs)
        if spectral_norm:
            sn(self.head)
        if not adversarial_head:
            # The class logits replace the output layer: dropping it keeps every parameter
            # in use, which DDP and the optimiser's gradient norms rely on.
            self.net.main[-1] = nn.Identity()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(scores (B,), head outputs (B, num_outputs))."""
        h = self.net.features(x)
        out = self.head(h.flatten(1))
        if self.adversarial_head:
            score = self.net.main[-1](h).view(x.shape[0])
        else:
            score = torch.logsumexp(out, dim=1)
        return score, out


class CodeDCGANGenerator(nn.Module):
    """DCGAN generator of ``[z, c]``: noise and a latent code vector (InfoGAN, Chen et al. 2016,
    arXiv:1606.03657, sec. 4: G(z, c)).

    ``latent_dim`` is the noise dimension only and ``code_dim`` the code vector's length (the
    one-hot categorical codes and the continuous codes, laid out by the family); the wrapped
    DCGAN generator (``net``) sees ``latent_dim + code_dim`` inputs.
    """

    def __init__(
        self,
        latent_dim: int = 62,
        code_dim: int = 12,
        image_size: int = 64,
        channels: int = 3,
        ngf: int = 64,
        max_channels: int | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.latent_dim = check_positive_int(owner, "latent_dim", latent_dim)
        self.code_dim = check_positive_int(owner, "code_dim", code_dim)
        self.net = DCGANGenerator(latent_dim + code_dim, image_size, channels, ngf, max_channels)
        self.output_shape = self.net.output_shape

    def forward(self, z: Tensor, code: Tensor | None = None) -> Tensor:
        """Images (B, C, H, W) in [-1, 1] from noise ``z`` (B, latent_dim) and ``code`` (B, code_dim)."""
        owner = type(self).__name__
        if code is None:
            raise ValueError(
                f"{owner} takes a latent code: call it with code of shape ({z.shape[0]}, {self.code_dim})"
            )
        if code.shape != (z.shape[0], self.code_dim):
            raise ValueError(
                f"{owner}: code must have shape ({z.shape[0]}, {self.code_dim}), got {tuple(code.shape)}"
            )
        return self.net(torch.cat([z, code.to(z.dtype)], dim=1))
