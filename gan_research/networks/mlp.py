"""Fully connected generator and discriminator for low-dimensional data (the 2-D mixtures).

The toy setting of Goodfellow et al. 2014 (arXiv:1406.2661) and of the mode-collapse
studies on rings/grids of Gaussians (Metz et al. 2017, "Unrolled GANs", arXiv:1611.02163):
small MLPs are enough and train in seconds on a CPU.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gan_research.networks.layers import apply_spectral_norm
from gan_research.utils.validation import check_fraction, check_positive_int


class MLPGenerator(nn.Module):
    """``num_layers`` hidden Linear+ReLU layers, then a linear output layer.

    The output has no squashing activation: 2-D mixture samples are unbounded.
    """

    def __init__(self, latent_dim: int = 2, hidden_dim: int = 128, num_layers: int = 3, output_dim: int = 2):
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
            layers += [nn.Linear(width, hidden_dim), nn.ReLU(inplace=True)]
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
    """

    def __init__(
        self,
        input_dim: int = 2,
        hidden_dim: int = 128,
        num_layers: int = 3,
        leaky_slope: float = 0.2,
        spectral_norm: bool = False,
    ):
        super().__init__()
        owner = type(self).__name__
        check_positive_int(owner, "input_dim", input_dim)
        check_positive_int(owner, "hidden_dim", hidden_dim)
        check_positive_int(owner, "num_layers", num_layers)
        slope = check_fraction(owner, "leaky_slope", leaky_slope)
        self.input_shape: tuple[int, ...] = (input_dim,)

        layers: list[nn.Module] = []
        width = input_dim
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_dim), nn.LeakyReLU(slope, inplace=True)]
            width = hidden_dim
        layers.append(nn.Linear(width, 1))
        self.main = nn.Sequential(*layers)
        if spectral_norm:
            apply_spectral_norm(self.main)

    def forward(self, x: Tensor) -> Tensor:
        """Map samples of shape (B, input_dim) to logits of shape (B,)."""
        logits: torch.Tensor = self.main(x)
        return logits.squeeze(1)
