"""scikit-learn's bundled 8x8 handwritten digits, resized: real images with no download.

1797 digits (UCI "Optical Recognition of Handwritten Digits", pixel values 0..16)
ship inside scikit-learn, so this dataset works on machines without internet and
is the default for smoke tests and CPU experiments.
"""

from __future__ import annotations

import torch

from gan_research.data.base import (
    GANDataModule,
    InMemoryDataset,
    check_channels,
    check_positive_int,
    convert_channels,
    resize_images,
)

_NATIVE_SIZE = 8
_MAX_PIXEL = 16.0


class DigitsDataModule(GANDataModule):
    """All 1797 digits, bilinearly resized to ``image_size`` and scaled to [-1, 1] (0 -> -1, 16 -> 1).

    ``channels=3`` repeats the grey channel, for networks or metrics that expect RGB.
    """

    name = "digits"
    is_image = True

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 1,
        batch_size: int = 64,
        num_workers: int = 0,
        batches_per_step: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(
            batch_size=batch_size, num_workers=num_workers, batches_per_step=batches_per_step, seed=seed
        )
        self.image_size = check_positive_int("image_size", image_size, self.name)
        self.channels = check_channels(channels, self.name)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (self.channels, self.image_size, self.image_size)

    @property
    def num_classes(self) -> int:
        return 10

    def _build_dataset(self) -> InMemoryDataset:
        # Imported here: scikit-learn is slow to import and only this dataset needs it.
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.as_tensor(digits.images, dtype=torch.float32).view(-1, 1, _NATIVE_SIZE, _NATIVE_SIZE)
        images = images * (2.0 / _MAX_PIXEL) - 1.0
        # Bilinear interpolation stays inside the input range up to rounding; clamp that away.
        images = resize_images(images, self.image_size).clamp_(-1.0, 1.0)
        images = convert_channels(images, self.channels)
        labels = torch.as_tensor(digits.target, dtype=torch.int64)
        return InMemoryDataset(images.contiguous(), labels)
