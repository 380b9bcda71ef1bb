"""The conditional GAN family (Mirza & Osindero 2014, arXiv:1411.1784): G(z, y) and
D(x, y), both given the class label.

How the label enters is the networks' business (``model.generator`` /
``model.discriminator``): one-hot concatenation (``model=cgan``, seed 001's recipe),
or a projection discriminator (``model=cgan_projection``, Miyato & Koyama 2018),
or SAGAN's conditional batch norm and projection (``model=sagan``). The objective is
the configured adversarial loss on (image, label) pairs (the paper's eq. 2 with the
minimax loss): real pairs carry their dataset labels, fake pairs labels drawn
uniformly over the classes.

Everything class-conditional that other families share (the labelled-data check,
uniform label draws, class-ordered sample grids, labelled samples for the per-class
metrics) lives here; AC-GAN subclasses it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gan_research.errors import ConfigError
from gan_research.families.gan import GAN
from gan_research.utils.data_spec import DataKind
from gan_research.utils.validation import check_int_at_least

# Columns of the class-conditional sample grid: one fixed latent per column, a row per class.
GRID_COLUMNS = 8


class ConditionalGAN(GAN):
    """cGAN: G(z, y) → image of class y, D(x, y) → score of the pair.

    Args:
        num_classes: classes of the dataset (checked against the datamodule before training).
        **kwargs: those of :class:`~gan_research.families.base.AdversarialModule`.
    """

    data_kinds = (DataKind.IMAGES, DataKind.STACKED)
    needs_labels = True

    def __init__(self, *args: Any, num_classes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.num_classes = check_int_at_least("model", "num_classes", num_classes, 2, form="key")
        self.check_network_classes()

    def check_network_classes(self) -> None:
        """Both networks must be built for ``num_classes`` classes."""
        for name in ("generator", "discriminator"):
            have = getattr(getattr(self, name), "num_classes", None)
            if have != self.num_classes:
                raise ConfigError(
                    f"model.{name} ({type(getattr(self, name)).__name__}) is built for num_classes={have!r} "
                    f"but model.num_classes={self.num_classes}; a {type(self).__name__} needs a "
                    f"class-conditional {name} with num_classes: ${{model.num_classes}}"
                )

    def check_data(self, datamodule: Any) -> None:
        super().check_data(datamodule)
        name, classes = datamodule.spec.name, datamodule.spec.num_classes
        if classes != self.num_classes:
            raise ConfigError(
                f"model.num_classes={self.num_classes} but dataset '{name}' has {classes} classes; "
                f"set model.num_classes={classes}"
            )

    # ------------------------------------------------------------------ hooks
    def sample_condition(self, n: int) -> Tensor:
        # Uniform over the classes, as the paper's fake pairs; drawn globally so DDP trains
        # on the labels one process would draw.
        return self.draw_global(n, lambda m: torch.randint(self.num_classes, (m,), device=self.device))

    def real_condition(self, labels: Tensor) -> Tensor:
        return labels.long()

    def generate_fake(self, z: Tensor, condition: Tensor) -> Tensor:
        return self.generator(z, condition)

    def discriminate(self, x: Tensor, condition: Tensor) -> tuple[Tensor, Any]:
        return self.discriminator(x, condition), None

    # ------------------------------------------------------------ sampling
    def balanced_labels(self, n: int) -> Tensor:
        """0, 1, ..., K-1, 0, 1, ...: n labels as evenly spread over the classes as n allows."""
        return torch.arange(n, device=self.device) % self.num_classes

    def sample_for_evaluation(self, n: int) -> tuple[Tensor, Tensor]:
        labels = self.balanced_labels(n)
        return self.generate(n=n, condition=labels), labels

    def grid_samples(self) -> tuple[Tensor, int]:
        """A row per class, a column per fixed latent: columns show what z controls, rows what y does."""
        columns = min(GRID_COLUMNS, self.fixed_noise.shape[0])
        z = self.fixed_noise[:columns].repeat(self.num_classes, 1)
        labels = torch.arange(self.num_classes, device=self.device).repeat_interleave(columns)
        return self.generate(z, condition=labels), columns
