"""Fully connected generator and discriminator for low-dimensional data (the 2-D mixtures).

The toy setting of Goodfellow et al. 2014 (arXiv:1406.2661) and of the mode-collapse
studies on rings/grids of Gaussians (Metz et al. 2017, "Unrolled GANs", arXiv:1611.02163):
small MLPs are enough and train in seconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from gan_research.networks.collapse import collapse_layers
from gan_research.networks.layers import apply_spectral_norm
from gan_research.utils.validation import check_fraction, check_positive_int


class MLPGenerator(nn.Module):
    """``num_layers`` hidden Linear+ReLU layers, then a linear output layer.

    The output has no squashing activation: 2-D mixture samples are unbounded.
    ``batch_norm``: each hidden Linear is bias-free and followed by ``BatchNorm1d(eps=bn_eps,
    momentum=bn_momentum)`` before its ReLU (PacGAN's generator, ``networks/pacgan.py``); the
    batch norm's shift plays the bias's part.
    """

    def __init__(
        self,
        latent_dim: int = 2,
        hidden_dim: int = 128,
        num_layers: int = 3,
        output_dim: int = 2,
        *,
        batch_norm: bool = False,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ):
        super().__init__()
        owner = type(self).__name__
        self.latent_dim = check_positive_int(owner, "latent_dim", latent_dim)
        check_positive_int(owner, "hidden_dim", hidden_dim)
        check_positive_int(owner, "num_layers", num_layers)
        check_positive_int(owner, "output_dim", output_dim)
        self.output_shape: tuple[int, ...] = (output_dim,)

        layers: list[nn.Module] = []
        width = latent_dim
        for _ in range(num_layers):
            if batch_norm:
                layers += [
                    nn.Linear(width, hidden_dim, bias=False),
                    nn.BatchNorm1d(hidden_dim, eps=bn_eps, momentum=bn_momentum),
                ]
            else:
                layers.append(nn.Linear(width, hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            width = hidden_dim
        layers.append(nn.Linear(width, output_dim))
        self.main = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        """Map noise ``z`` of shape (B, latent_dim) to samples of shape (B, output_dim)."""
        return self.main(z)


class MLPDiscriminator(nn.Module):
    """``num_layers`` hidden Linear+LeakyReLU layers, then a linear layer to one raw logit.

    No sigmoid: the forward pass returns logits (or critic values for Wasserstein losses);
    the losses apply the sigmoid themselves through softplus / BCE-with-logits.
    ``spectral_norm=True`` normalises every Linear (Miyato et al. 2018, arXiv:1802.05957).

    Mode-collapse remedies, all off by default (the network, its state-dict keys and its
    outputs are then the plain one's):

    - ``packing``: PacGAN (Lin et al. 2018, arXiv:1712.04086, sec. 3): the input layer takes
      ``input_dim * packing`` features, i.e. ``packing`` samples concatenated by
      :func:`~gan_research.networks.collapse.pack`; the training step packs, not this network.
    - ``minibatch_discrimination``: a mapping of
      :class:`~gan_research.networks.collapse.MinibatchDiscrimination`'s arguments
      (``num_kernels``, ``kernel_dim``, ``include_self``; ``{}`` for its defaults), inserted after
      the last hidden layer (Salimans et al. 2016, arXiv:1606.03498, sec. 3.2).
    - ``minibatch_std``: the group size of a
      :class:`~gan_research.networks.collapse.MinibatchStd` inserted there too, after it
      (Karras et al. 2018, arXiv:1710.10196, sec. 3): one more feature.

    The inserted layers live in ``collapse`` beside ``main``, which stays hidden layers + output
    Linear, so ``main``'s keys (``main.0.weight`` …) are the same in every configuration.
    Spectral norm does not reach the minibatch-discrimination tensor (it is no Linear).
    """

    def __init__(
        self,
        input_dim: int = 2,
        hidden_dim: int = 128,
        num_layers: int = 3,
        leaky_slope: float = 0.2,
        spectral_norm: bool = False,
        *,
        packing: int = 1,
        minibatch_discrimination: Mapping[str, object] | None = None,
        minibatch_std: int | None = None,
    ):
        super().__init__()
        owner = type(self).__name__
        check_positive_int(owner, "input_dim", input_dim)
        check_positive_int(owner, "hidden_dim", hidden_dim)
        check_positive_int(owner, "num_layers", num_layers)
        slope = check_fraction(owner, "leaky_slope", leaky_slope)
        self.packing = check_positive_int(owner, "packing", packing)
        self.input_shape: tuple[int, ...] = (input_dim * packing,)

        collapse, added = collapse_layers(owner, hidden_dim, minibatch_discrimination, minibatch_std)
        layers: list[nn.Module] = []
        width = input_dim * packing
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_dim), nn.LeakyReLU(slope, inplace=True)]
            width = hidden_dim
        layers.append(nn.Linear(width + added, 1))
        self.main = nn.Sequential(*layers)
        self.collapse = collapse  # after main: its keys (if any) follow main's in the state dict
        if spectral_norm:
            apply_spectral_norm(self.main)

    def features(self, x: Tensor) -> Tensor:
        """The last hidden layer's activations (B, hidden_dim), before minibatch discrimination / std.

        The intermediate layer f(x) of Salimans et al. 2016's feature matching (sec. 3.1).
        """
        hidden: Tensor = self.main[:-1](x)
        return hidden

    def forward(self, x: Tensor) -> Tensor:
        """Map samples of shape (B, input_dim * packing) to logits of shape (B,)."""
        logits: torch.Tensor = self.main[-1](self.collapse(self.features(x)))
        return logits.squeeze(1)
