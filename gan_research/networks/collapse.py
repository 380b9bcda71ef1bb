"""Discriminator layers against mode collapse: the network side of the remedies of the literature.

- :class:`MinibatchDiscrimination`: Salimans et al. 2016, "Improved Techniques for Training
  GANs" (arXiv:1606.03498), sec. 3.2.
- :class:`MinibatchStd`: the minibatch standard deviation of Karras et al. 2018 (arXiv:1710.10196,
  sec. 3), for feature vectors as well as feature maps.
- :class:`Maxout`: Goodfellow et al. 2013, "Maxout Networks" (arXiv:1302.4389), eq. 1; the
  hidden layers of the PacGAN 2-D discriminators (:mod:`gan_research.networks.pacgan`).
- :func:`pack`: PacGAN's packing (Lin et al. 2018, arXiv:1712.04086, sec. 3): m consecutive
  samples concatenated into one input of the discriminator.

The first two make a sample's score depend on the other samples of the batch (class attribute
``couples_samples = True``), which is their point: D sees how diverse the batch is. A gradient
penalty meant per sample does not see a per-sample critic through them.

:func:`collapse_layers` builds the optional MD / minibatch-std stack the discriminators
(``MLPDiscriminator``, ``DCGANDiscriminator``, ``MaxoutDiscriminator``) insert before their
output layer, from their ``minibatch_discrimination`` / ``minibatch_std`` arguments.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.networks.progan_layers import MinibatchStdDev
from gan_research.utils.validation import check_int_at_least, check_positive_int

__all__ = [
    "MINIBATCH_DISCRIMINATION_KEYS",
    "Maxout",
    "MinibatchDiscrimination",
    "MinibatchStd",
    "collapse_layers",
    "pack",
]

MINIBATCH_DISCRIMINATION_KEYS = ("num_kernels", "kernel_dim", "include_self")
"""The keys a discriminator's ``minibatch_discrimination`` mapping may have (its constructor's arguments)."""


class MinibatchDiscrimination(nn.Module):
    """Minibatch discrimination (Salimans et al. 2016, sec. 3.2).

    With f(x_i) ∈ R^A the input features and T ∈ R^{A×B×C} a learned tensor
    (A = ``in_features``, B = ``num_kernels``, C = ``kernel_dim``):

        M_i = f(x_i) T ∈ R^{B×C},   c_b(x_i, x_j) = exp(−‖M_{i,b} − M_{j,b}‖_L1),
        o(x_i)_b = Σ_j c_b(x_i, x_j),

    and the output is the concatenation [f(x_i), o(x_i)] (A + B features).

    Whether the sum includes j = i: the paper writes Σ_{j=1}^{n}, which does (the term is
    exp(0) = 1 for every sample, a constant). The reference code, openai/improved-gan, leaves
    it out in both its versions: ``mnist_svhn_cifar10/nn.py`` ``MinibatchLayer`` adds 1e6·I to the
    distances (exp(−1e6) = 0) and ``imagenet/discriminator.py`` multiplies by ``1 − eye``. We
    follow the reference: ``include_self=False`` by default, so a batch of n identical samples
    gives o = n − 1; ``include_self=True`` is the paper's formula (o = n). The constant 1 is
    absorbed by the bias of the layer that reads o, so the two are the same model family.

    Initialisation: the reference stores T through weight normalisation, every column
    T[:, b, c] of unit L2 norm at the start (``theta`` N(0, 0.05) divided by its column norm,
    ``log_weight_scale`` 0). We start from that same T, but as a plain parameter: the reference's
    data-dependent initialisation of the scale and its bias b = −1 on o are not reproduced (the
    bias is a constant shift the next layer's bias absorbs). A plain N(0, 0.1) would not do for
    wide inputs: on DCGAN's 8192 flattened features the L1 distances start in the tens, every
    c_b is exp(−40) ≈ 0 and neither o nor its gradient carries anything.

    Input: feature vectors (N, A), or feature maps (N, C', H, W) with A = C'·H·W: the map is
    flattened for M (as the reference flattens inputs of more than two dimensions) and o is
    appended as ``num_kernels`` constant channels over the H×W map, so a convolutional output
    layer can still read it: the output is (N, C' + B, H, W).
    """

    couples_samples = True  # o(x_i) sums over every x_j of the batch

    def __init__(
        self, in_features: int, num_kernels: int = 100, kernel_dim: int = 5, include_self: bool = False
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.in_features = check_positive_int(owner, "in_features", in_features)
        self.num_kernels = check_positive_int(owner, "num_kernels", num_kernels)
        self.kernel_dim = check_positive_int(owner, "kernel_dim", kernel_dim)
        if not isinstance(include_self, bool):
            raise ConfigError(f"{owner}: include_self must be true or false, got {include_self!r}.")
        self.include_self = include_self
        weight = torch.randn(in_features, num_kernels, kernel_dim)
        # Unit-norm columns over the input dimension: the reference's initial (weight-normalised) T.
        self.weight = nn.Parameter(weight / weight.norm(dim=0, keepdim=True))

    @property
    def out_features(self) -> int:
        """Features (for vectors) or channels added (for maps): ``num_kernels``."""
        return self.num_kernels

    def similarities(self, x: Tensor) -> Tensor:
        """o(x_i) of every sample: shape (N, num_kernels)."""
        flat = x.flatten(1)
        m = (flat @ self.weight.view(self.in_features, -1)).view(-1, self.num_kernels, self.kernel_dim)
        # (N, 1, B, C) − (1, N, B, C): every pair's L1 distance per kernel, (N, N, B). Broadcasting
        # rather than torch.cdist so that gradient penalties can differentiate twice through it.
        distances = (m.unsqueeze(1) - m.unsqueeze(0)).abs().sum(dim=3)
        c = torch.exp(-distances)
        if not self.include_self:
            # A mask rather than subtracting 1: the same value, and exact whatever the dtype.
            c = c * (1.0 - torch.eye(c.shape[0], dtype=c.dtype, device=c.device)).unsqueeze(2)
        return c.sum(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """[f(x_i), o(x_i)]: (N, A + B) for (N, A) input, (N, C' + B, H, W) for (N, C', H, W)."""
        o = self.similarities(x)
        if x.dim() == 2:
            return torch.cat([x, o], dim=1)
        planes = o.view(*o.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
        return torch.cat([x, planes], dim=1)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_kernels={self.num_kernels}, "
            f"kernel_dim={self.kernel_dim}, include_self={self.include_self}"
        )


class MinibatchStd(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018, sec. 3) of feature vectors or maps.

    Each feature's standard deviation over a group of ``group_size`` samples, averaged over
    the features (and pixels), appended to every sample of the group as one more feature:
    (N, F) → (N, F + 1), or one constant channel: (N, C, H, W) → (N, C + 1, H, W).

    Both cases are :class:`~gan_research.networks.progan_layers.MinibatchStdDev` with one
    statistic, vectors being seen as 1×1 maps; its grouping applies (strided groups: sample i
    is in group i mod (N/G), G from :func:`~gan_research.networks.progan_layers.minibatch_group_size`
    for batches G does not divide). ``group_size`` must be at least 2: a group of one sample
    has standard deviation 0 whatever the batch, a constant feature that tells D nothing.
    """

    couples_samples = True  # the appended statistic is computed over the sample's group

    def __init__(self, group_size: int = 4) -> None:
        super().__init__()
        self.group_size = check_int_at_least(type(self).__name__, "group_size", group_size, 2)
        self.layer = MinibatchStdDev(group_size=group_size, num_channels=1)

    @property
    def out_features(self) -> int:
        """Features (for vectors) or channels (for maps) added: 1."""
        return 1

    def forward(self, x: Tensor) -> Tensor:
        """(N, F) → (N, F + 1); (N, C, H, W) → (N, C + 1, H, W)."""
        if x.dim() == 2:
            return self.layer(x[:, :, None, None]).flatten(1)
        if x.dim() == 4:
            return self.layer(x)
        raise ValueError(f"MinibatchStd takes (N, F) or (N, C, H, W) input, got shape {tuple(x.shape)}")

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"


class Maxout(nn.Module):
    """Maxout layer (Goodfellow et al. 2013, eq. 1): h_i(x) = max_{j ∈ [1, k]} (x W_{·ij} + b_ij).

    A Linear to ``out_features · pieces`` units, then the maximum over each unit's ``pieces``
    consecutive outputs: the layout of blocks' ``LinearMaxout`` (a Linear, then ``Maxout``
    reshaping the last axis to (out_features, pieces)), which the PacGAN reference builds its
    2-D discriminators from. Unit i reads outputs i·pieces … i·pieces + pieces − 1.
    """

    def __init__(self, in_features: int, out_features: int, pieces: int) -> None:
        super().__init__()
        owner = type(self).__name__
        self.in_features = check_positive_int(owner, "in_features", in_features)
        self.out_features = check_positive_int(owner, "out_features", out_features)
        self.pieces = check_positive_int(owner, "pieces", pieces)
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: Tensor) -> Tensor:
        """(..., in_features) → (..., out_features)."""
        y = self.linear(x)
        return y.view(*y.shape[:-1], self.out_features, self.pieces).amax(dim=-1)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, pieces={self.pieces}"


def pack(x: Tensor, packing: int) -> Tensor:
    """Pack ``packing`` consecutive samples into one: (B, C, ...) → (B/packing, packing·C, ...).

    PacGAN (Lin et al. 2018, sec. 3): the discriminator maps m samples "concatenated" into one
    input to a single score; the reference (fjxmlzn/PacGAN, ``pacgan/bricks.py``) concatenates
    the m generated batches along the feature axis. Pack k holds samples k·m, …, k·m + m − 1 in
    this order, sample k·m's channels first. Real and fake batches are packed alike; the
    discriminator only has an input layer ``packing`` times wider.

    Raises ValueError naming B and ``packing`` when B is not a multiple of ``packing``.
    """
    if isinstance(packing, bool) or not isinstance(packing, int) or packing < 1:
        raise ValueError(f"pack: packing must be a positive integer, got {packing!r}")
    if x.dim() < 2:
        raise ValueError(f"pack: expected input of shape (B, C, ...), got shape {tuple(x.shape)}")
    batch = x.shape[0]
    if batch % packing:
        raise ValueError(f"pack: the batch size B={batch} is not a multiple of packing={packing}")
    # Row-major reshape: the packing·C channels of pack k are samples k·m … k·m+m−1 back to back.
    return x.reshape(batch // packing, packing * x.shape[1], *x.shape[2:])


def collapse_layers(
    owner: str,
    in_features: int,
    minibatch_discrimination: Mapping[str, object] | None,
    minibatch_std: int | None,
) -> tuple[nn.Sequential, int]:
    """The optional layers a discriminator inserts before its output layer, and the width they add.

    ``owner``: the discriminator's class name, for the messages. ``in_features``: the size of
    the (flattened) features they read. ``minibatch_discrimination``: None, or a mapping with
    keys among :data:`MINIBATCH_DISCRIMINATION_KEYS` (the arguments of
    :class:`MinibatchDiscrimination`; ``{}`` takes its defaults). ``minibatch_std``: None or the
    group size of :class:`MinibatchStd`.

    Minibatch discrimination comes first, the minibatch standard deviation last (ProGAN puts it
    right before D's last layers), so with both on the statistic also covers the o features.
    Returns ``(layers, added)``: an ``nn.Sequential`` (empty when both are off: no parameters,
    no state-dict keys) and the number of features / channels it appends. Raises ConfigError
    naming the bad argument.
    """
    layers: list[nn.Module] = []
    added = 0
    if minibatch_discrimination is not None:
        if not isinstance(minibatch_discrimination, Mapping):
            raise ConfigError(
                f"{owner}: minibatch_discrimination must be a mapping with keys among "
                f"{', '.join(MINIBATCH_DISCRIMINATION_KEYS)}, or null; got {minibatch_discrimination!r}."
            )
        unknown = [key for key in minibatch_discrimination if key not in MINIBATCH_DISCRIMINATION_KEYS]
        if unknown:
            raise ConfigError(
                f"{owner}: minibatch_discrimination has unknown key(s) {', '.join(map(str, unknown))}; "
                f"valid keys: {', '.join(MINIBATCH_DISCRIMINATION_KEYS)}."
            )
        options = dict(minibatch_discrimination)
        for key in ("num_kernels", "kernel_dim"):
            if key in options:
                check_positive_int(owner, f"minibatch_discrimination.{key}", options[key])
        if "include_self" in options and not isinstance(options["include_self"], bool):
            raise ConfigError(
                f"{owner}: minibatch_discrimination.include_self must be true or false, "
                f"got {options['include_self']!r}."
            )
        md = MinibatchDiscrimination(in_features, **options)  # checked above, so errors name the key
        layers.append(md)
        added += md.out_features
    if minibatch_std is not None:
        check_int_at_least(owner, "minibatch_std", minibatch_std, 2)
        mbstd = MinibatchStd(minibatch_std)
        layers.append(mbstd)
        added += mbstd.out_features
    return nn.Sequential(*layers), added
