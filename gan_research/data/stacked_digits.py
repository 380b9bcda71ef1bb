"""Stacked digits: the Stacked-MNIST mode-collapse benchmark built on scikit-learn's bundled digits.

Stacked MNIST (Metz et al. 2017, unrolled GANs; Srivastava et al. 2017, VEEGAN;
Lin et al. 2018, PacGAN) puts three independently drawn digits in the three
channels of one image, giving 10^3 = 1000 modes. A generator's mode coverage is
the number of distinct ``100*d0 + 10*d1 + d2`` that a digits classifier reads off
its samples' channels (:func:`gan_research.metrics.classifier.count_stacked_modes`).
Here the digits are scikit-learn's 1797 bundled ones, so no download is needed.
"""

from __future__ import annotations

import torch

from gan_research.data.base import GANDataModule, InMemoryDataset
from gan_research.data.digits import DigitsDataModule
from gan_research.errors import ConfigError
from gan_research.utils.data_spec import DataKind, Domain
from gan_research.utils.validation import check_positive_int

NUM_MODES = 1000


class StackedDigitsDataModule(GANDataModule):
    """``num_samples`` RGB images whose channels are independent random digits; label = 100*d0 + 10*d1 + d2.

    The samples are drawn once from ``seed`` and held in memory as uint8 (50k at
    32x32 take 150 MB; float would take 600 MB), scaled to [-1, 1] per batch.
    Each channel is a digit exactly as :class:`DigitsDataModule` serves it at
    ``image_size``, quantised to 8 bits.
    """

    name = "stacked_digits"
    kinds = (DataKind.STACKED,)

    def __init__(
        self,
        image_size: int = 32,
        num_samples: int = 50_000,
        channels: int = 3,
        batch_size: int = 64,
        num_workers: int = 0,
        batches_per_step: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(
            batch_size=batch_size, num_workers=num_workers, batches_per_step=batches_per_step, seed=seed
        )
        self.image_size = check_positive_int(self.name, "image_size", image_size, form="key")
        self.num_samples = check_positive_int(self.name, "num_samples", num_samples, form="key")
        # Accepted (and only as 3) because networks read ${dataset.channels} from every image dataset.
        if channels != 3 or isinstance(channels, bool):
            raise ConfigError(
                f"{self.name}.channels must be 3 (one digit per channel, 1000 modes), got {channels!r}; "
                "for grey digits use dataset=digits"
            )
        self.channels = 3

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (3, self.image_size, self.image_size)

    @property
    def num_classes(self) -> int:
        return NUM_MODES

    @property
    def num_modes(self) -> int:
        return NUM_MODES

    @property
    def domain(self) -> Domain:
        """Each channel is a digit: modes are counted by the digits classifier, channel by channel."""
        return Domain("digits", labelled_data=lambda size: DigitsDataModule(image_size=size, channels=1))

    def _build_dataset(self) -> InMemoryDataset:
        digits = DigitsDataModule(image_size=self.image_size, channels=1)
        digits.setup()
        images, labels = digits.train_set.x, digits.train_set.y  # (1797, 1, S, S) in [-1, 1]
        images_u8 = ((images + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
        generator = torch.Generator().manual_seed(self.seed)
        picks = torch.randint(len(images_u8), (self.num_samples, 3), generator=generator)
        x = images_u8[picks].view(self.num_samples, 3, self.image_size, self.image_size)
        y = labels[picks] @ torch.tensor([100, 10, 1], dtype=torch.int64)
        return InMemoryDataset(x.contiguous(), y)
