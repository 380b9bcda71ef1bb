"""Synthetic 2-D Gaussian mixtures from the mode-collapse literature.

The ring of 8 Gaussians and the 5x5 grid of 25 Gaussians are the standard toy
targets for counting recovered modes (Metz et al. 2017, "Unrolled GANs";
Srivastava et al. 2017, "VEEGAN"). Points are sampled once, with the seed, and the
label of a point is the index of its mode, so evaluation code can read ``modes``
and ``std`` to count "high-quality" samples per mode.
"""

from __future__ import annotations

import math

import torch

from gan_research.data.base import GANDataModule, InMemoryDataset
from gan_research.errors import ConfigError
from gan_research.utils.data_spec import DataKind
from gan_research.utils.validation import check_positive_float, check_positive_int


class GaussianMixture2D(GANDataModule):
    """Isotropic Gaussians with a shared ``std`` at the rows of ``modes``, equally weighted."""

    kinds = (DataKind.MIXTURE,)

    def __init__(
        self,
        modes: torch.Tensor,
        std: float,
        num_samples: int = 100_000,
        name: str = "mixture",
        batch_size: int = 64,
        num_workers: int = 0,
        batches_per_step: int = 1,
        seed: int = 0,
        dim: int = 2,
    ) -> None:
        super().__init__(
            batch_size=batch_size, num_workers=num_workers, batches_per_step=batches_per_step, seed=seed
        )
        self.name = name
        # Declared in the config (dataset.dim) so that point networks read their size from it and
        # image networks, which read dataset.image_size, are told apart before anything is built.
        if dim != 2 or isinstance(dim, bool):
            raise ConfigError(
                f"{name}: dataset.dim={dim!r} is invalid; the mixtures are 2-D points: valid: 2"
            )
        self.std = check_positive_float(name, "std", std, form="key")
        self.num_samples = check_positive_int(name, "num_samples", num_samples, form="key")
        self.modes = torch.as_tensor(modes, dtype=torch.float32)
        if self.modes.ndim != 2 or self.modes.shape[1] != 2 or len(self.modes) == 0:
            raise ConfigError(
                f"{name}: modes must be a non-empty (num_modes, 2) tensor, "
                f"got shape {tuple(self.modes.shape)}"
            )

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (2,)

    @property
    def num_classes(self) -> int:
        return len(self.modes)

    @property
    def num_modes(self) -> int:
        return len(self.modes)

    def _build_dataset(self) -> InMemoryDataset:
        generator = torch.Generator().manual_seed(self.seed)
        labels = torch.randint(len(self.modes), (self.num_samples,), generator=generator)
        noise = torch.randn(self.num_samples, 2, generator=generator) * self.std
        return InMemoryDataset(self.modes[labels] + noise, labels)


class RingMixture(GaussianMixture2D):
    """``num_modes`` Gaussians evenly spaced on a circle: mode i at radius*(cos 2πi/n, sin 2πi/n)."""

    def __init__(
        self,
        num_modes: int = 8,
        radius: float = 1.0,
        std: float = 0.01,
        num_samples: int = 100_000,
        batch_size: int = 64,
        num_workers: int = 0,
        batches_per_step: int = 1,
        seed: int = 0,
        dim: int = 2,
    ) -> None:
        check_positive_int("ring", "num_modes", num_modes, form="key")
        radius = check_positive_float("ring", "radius", radius, form="key")
        name = f"ring{num_modes}"
        angles = 2 * math.pi * torch.arange(num_modes, dtype=torch.float64) / num_modes
        modes = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
        self.radius = radius
        super().__init__(
            modes=modes,
            std=std,
            num_samples=num_samples,
            name=name,
            batch_size=batch_size,
            num_workers=num_workers,
            batches_per_step=batches_per_step,
            seed=seed,
            dim=dim,
        )


class GridMixture(GaussianMixture2D):
    """``grid_size``² Gaussians on a square grid centred at 0 with ``spacing`` between neighbours.

    The defaults give the usual 25 modes at {-4, -2, 0, 2, 4}².
    """

    def __init__(
        self,
        grid_size: int = 5,
        spacing: float = 2.0,
        std: float = 0.05,
        num_samples: int = 100_000,
        batch_size: int = 64,
        num_workers: int = 0,
        batches_per_step: int = 1,
        seed: int = 0,
        dim: int = 2,
    ) -> None:
        check_positive_int("grid", "grid_size", grid_size, form="key")
        spacing = check_positive_float("grid", "spacing", spacing, form="key")
        name = f"grid{grid_size * grid_size}"
        axis = (torch.arange(grid_size, dtype=torch.float64) - (grid_size - 1) / 2) * spacing
        xs, ys = torch.meshgrid(axis, axis, indexing="ij")
        modes = torch.stack([xs.flatten(), ys.flatten()], dim=1)
        self.grid_size = grid_size
        self.spacing = spacing
        super().__init__(
            modes=modes,
            std=std,
            num_samples=num_samples,
            name=name,
            batch_size=batch_size,
            num_workers=num_workers,
            batches_per_step=batches_per_step,
            seed=seed,
            dim=dim,
        )
