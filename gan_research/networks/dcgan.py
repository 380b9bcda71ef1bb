"""DCGAN generator and discriminator (Radford, Metz & Chintala 2016, arXiv:1511.06434).

The architecture guidelines of the paper (sec. 3): strided convolutions instead of
pooling, batch norm in both networks (except G's output and D's input layer), ReLU in G
with a tanh output, LeakyReLU(0.2) in D, no fully connected hidden layers.

At ``image_size=64`` with the default widths both networks are layer for layer, and
parameter name for parameter name, the PyTorch reference (pytorch/examples, dcgan/main.py):
its checkpoints load with ``load_state_dict``. Other sizes change only the number of
doubling stages, see :func:`dcgan_stages`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.networks.collapse import collapse_layers
from gan_research.networks.layers import apply_spectral_norm, dcgan_weights_init
from gan_research.utils.validation import check_fraction, check_positive_int

# Side of the first (generator) / last (discriminator) feature map. 4 is the reference;
# 7 gives the MNIST family (28 = 7·2²) without resizing the data.
_BASE_SIDES = (4, 7)
# At least two stride-2 stages, so D has a batch-normalised hidden layer between its input
# layer and its output layer like the reference; at most 256 px, where the uncapped widths
# already reach 32·ngf channels (2048 at the default ngf).
_MIN_STAGES = 2
_MAX_IMAGE_SIZE = 256


def _size_table() -> dict[int, tuple[int, int]]:
    table = {}
    for base in _BASE_SIDES:
        stages = _MIN_STAGES
        while base * 2**stages <= _MAX_IMAGE_SIZE:
            table[base * 2**stages] = (base, stages)
            stages += 1
    return dict(sorted(table.items()))


_SIZES = _size_table()
SUPPORTED_IMAGE_SIZES: tuple[int, ...] = tuple(_SIZES)
"""Every ``image_size`` the DCGAN networks can produce: 16, 28, 32, 56, 64, 112, 128, 224, 256."""

DISCRIMINATOR_NORMS = ("batch", "layer", "instance", "none")
"""Valid ``norm`` values of the DCGAN discriminators (hidden layers); every one but ``batch``
normalises each sample on its own, as a gradient penalty needs (see :class:`DCGANDiscriminator`)."""


def dcgan_stages(image_size: int) -> tuple[int, int]:
    """Return ``(base_side, stages)`` with ``image_size == base_side * 2**stages``.

    G starts from a ``base_side``² map and doubles it ``stages`` times; D mirrors it.
    Raises ConfigError for sizes no such network produces.
    """
    # The isinstance check keeps 64.0 (equal and hash-equal to 64) out of the shapes.
    if isinstance(image_size, int) and not isinstance(image_size, bool) and image_size in _SIZES:
        return _SIZES[image_size]
    raise ConfigError(
        f"DCGAN cannot produce image_size={image_size!r}: it must be 4·2^k or 7·2^k with at least two "
        f"doubling stages and at most {_MAX_IMAGE_SIZE} px. Valid sizes: "
        f"{', '.join(map(str, SUPPORTED_IMAGE_SIZES))}."
    )


def _widths(base_width: int, stages: int, max_channels: int | None) -> list[int]:
    """Channels of the hidden maps from the image side inwards: base·2^i, capped at max_channels."""
    widths = [base_width * 2**i for i in range(stages)]
    return widths if max_channels is None else [min(w, max_channels) for w in widths]


def _check_widths(owner: str, channels: object, max_channels: object) -> None:
    check_positive_int(owner, "channels", channels)
    if max_channels is not None:
        check_positive_int(owner, "max_channels", max_channels)


class DCGANGenerator(nn.Module):
    """DCGAN generator: project z to a ``base``² map, then stride-2 transposed convolutions.

    Layers (reference at 64 px): ConvT(nz, 8·ngf, 4, 1, 0) BN ReLU, then per stage
    ConvT(C, C/2, 4, 2, 1) BN ReLU, and ConvT(ngf, channels, 4, 2, 1) Tanh. Convolutions
    are bias-free because the batch norm that follows has its own shift. Weights follow
    :func:`~gan_research.networks.layers.dcgan_weights_init`.
    """

    def __init__(
        self,
        latent_dim: int = 100,
        image_size: int = 64,
        channels: int = 3,
        ngf: int = 64,
        max_channels: int | None = None,
    ):
        super().__init__()
        owner = type(self).__name__
        base, stages = dcgan_stages(image_size)
        _check_widths(owner, channels, max_channels)
        self.latent_dim = check_positive_int(owner, "latent_dim", latent_dim)
        check_positive_int(owner, "ngf", ngf)
        self.output_shape: tuple[int, ...] = (channels, image_size, image_size)

        widths = _widths(ngf, stages, max_channels)[::-1]  # from the base map outwards
        layers: list[nn.Module] = [
            # On z seen as a 1×1 map this is a dense layer to a base×base map: the paper's projection of z.
            nn.ConvTranspose2d(latent_dim, widths[0], base, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
        ]
        for c_in, c_out in itertools.pairwise(widths):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(True),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        # One flat Sequential named `main`, as in the reference, so state-dict keys match it.
        self.main = nn.Sequential(*layers)
        self.apply(dcgan_weights_init)

    def forward(self, z: Tensor) -> Tensor:
        """Map noise of shape (B, latent_dim) to images (B, channels, image_size, image_size) in [-1, 1]."""
        return self.main(z.reshape(z.shape[0], self.latent_dim, 1, 1))


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator: stride-2 convolutions down to a ``base``² map, then one logit.

    Layers (reference at 64 px): Conv(channels, ndf, 4, 2, 1) LReLU, then per stage
    Conv(C, 2C, 4, 2, 1) BN LReLU, and Conv(8·ndf, 1, 4, 1, 0). The reference ends with a
    sigmoid; here the forward pass returns the raw logit / critic value of shape (B,), and the
    losses apply the sigmoid through softplus / BCE-with-logits (same loss, numerically stable).

    ``norm`` chooses the hidden layers' normalisation (``model.discriminator.norm``):

    - ``"batch"``: the paper's and the reference's batch norm (the default, so existing runs
      keep their numbers).
    - ``"layer"``: GroupNorm with one group, i.e. layer norm over C×H×W with a per-channel
      scale and shift. WGAN-GP's critic (Gulrajani et al. 2017, arXiv:1704.00028, sec. 4, "no
      critic batch normalization"; layer norm as the drop-in replacement): the penalty
      constrains each sample's own input gradient, and batch statistics make a sample's score,
      and so its gradient, depend on the rest of the batch. A gradient penalty or R1 with
      ``"batch"`` is refused when the model is built
      (:meth:`~gan_research.families.base.AdversarialModule.check_critic_normalisation`).
    - ``"instance"``: instance norm (per sample and channel over H×W, learned per-channel
      scale and shift; Ulyanov et al. 2016, arXiv:1607.08022), also per sample.
    - ``"none"``: no normalisation; with ``spectral_norm=True`` the SN-GAN discriminator
      setting (Miyato et al. 2018, arXiv:1802.05957).

    Convolutions stay bias-free in every setting, as in the reference. The chosen value is
    the attribute ``norm``; ``norms`` lists the valid ones.

    Mode-collapse remedies, all off by default (layers, state-dict keys and outputs are then
    the reference's):

    - ``packing``: PacGAN (Lin et al. 2018, arXiv:1712.04086, sec. 3): the first convolution
      takes ``channels * packing`` channels, ``packing`` images stacked along the channels by
      :func:`~gan_research.networks.collapse.pack`; the training step packs, not this network.
    - ``minibatch_discrimination``: a mapping of
      :class:`~gan_research.networks.collapse.MinibatchDiscrimination`'s arguments
      (``num_kernels``, ``kernel_dim``, ``include_self``; ``{}`` for its defaults) applied to the
      flattened base×base map before the output layer (Salimans et al. 2016, arXiv:1606.03498,
      sec. 3.2); its ``num_kernels`` outputs are appended as constant channels over that map.
    - ``minibatch_std``: the group size of a
      :class:`~gan_research.networks.collapse.MinibatchStd` appending one constant channel
      there, after the MD channels (Karras et al. 2018, arXiv:1710.10196, sec. 3).

    The output convolution then reads width + num_kernels (+ 1) channels. The inserted layers
    live in ``collapse`` beside ``main`` (so ``main``'s keys never move); :meth:`features`
    stays the map before them.
    """

    norms: tuple[str, ...] = DISCRIMINATOR_NORMS

    def __init__(
        self,
        image_size: int = 64,
        channels: int = 3,
        ndf: int = 64,
        max_channels: int | None = None,
        leaky_slope: float = 0.2,
        spectral_norm: bool = False,
        norm: str = "batch",
        *,
        packing: int = 1,
        minibatch_discrimination: Mapping[str, object] | None = None,
        minibatch_std: int | None = None,
    ):
        super().__init__()
        owner = type(self).__name__
        base, stages = dcgan_stages(image_size)
        _check_widths(owner, channels, max_channels)
        check_positive_int(owner, "ndf", ndf)
        slope = check_fraction(owner, "leaky_slope", leaky_slope)
        if norm not in DISCRIMINATOR_NORMS:
            raise ConfigError(
                f"{owner}: unknown norm={norm!r}; valid choices: {', '.join(DISCRIMINATOR_NORMS)}."
            )
        self.norm = norm
        self.packing = check_positive_int(owner, "packing", packing)
        self.input_shape: tuple[int, ...] = (channels * packing, image_size, image_size)

        widths = _widths(ndf, stages, max_channels)  # from the image inwards
        self._feature_shape: tuple[int, int, int] = (widths[-1], base, base)
        collapse, added = collapse_layers(
            owner, widths[-1] * base * base, minibatch_discrimination, minibatch_std
        )
        # The paper leaves D's input layer without batch norm (sec. 3: it caused oscillation).
        layers: list[nn.Module] = [
            nn.Conv2d(channels * packing, widths[0], 4, 2, 1, bias=False),
            nn.LeakyReLU(slope, True),
        ]
        for c_in, c_out in itertools.pairwise(widths):
            layers.append(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(c_out))
            elif norm == "layer":
                layers.append(nn.GroupNorm(1, c_out))
            elif norm == "instance":
                layers.append(nn.InstanceNorm2d(c_out, affine=True))
            layers.append(nn.LeakyReLU(slope, True))
        layers.append(nn.Conv2d(widths[-1] + added, 1, base, 1, 0, bias=False))
        self.main = nn.Sequential(*layers)
        self.collapse = collapse  # after main: its keys (if any) follow main's in the state dict
        self.apply(dcgan_weights_init)
        if spectral_norm:
            # After the init: registering runs power iterations on the current weights.
            apply_spectral_norm(self.main)

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """Shape (C, base, base) of the last hidden map, what :meth:`features` returns.

        Without minibatch discrimination / std it is the output layer's input; with them the
        output layer reads their extra channels too. Stored at construction rather than read off
        the output layer's weight, which those channels widen.
        """
        return self._feature_shape

    def features(self, x: Tensor) -> Tensor:
        """The last hidden map (B, C, base, base), before minibatch discrimination / std.

        The body that conditional heads share, and the intermediate layer f(x) of Salimans et
        al. 2016's feature matching (sec. 3.1).
        """
        hidden: Tensor = self.main[:-1](x)
        return hidden

    def forward(self, x: Tensor) -> Tensor:
        """Map images (B, channels * packing, image_size, image_size) to logits of shape (B,)."""
        # view(B) rather than view(-1): a wrongly sized input fails here instead of silently
        # returning B·k "logits".
        return self.main[-1](self.collapse(self.features(x))).view(x.shape[0])
