"""scikit-learn's bundled 8x8 handwritten digits, resized: real images with no download.

1797 digits (UCI "Optical Recognition of Handwritten Digits", pixel values 0..16)
ship inside scikit-learn, so this dataset works on machines without internet and
is the default for smoke tests and CPU experiments.

``test_fraction > 0`` holds a stratified, seeded share of the digits out of the
training set as ``test_set``, for families that report a classification accuracy
(the semi-supervised GAN); GAN metrics keep comparing with the training set.
"""

from __future__ import annotations

import torch

from gan_research.data.base import GANDataModule, InMemoryDataset, check_channels, resize_images
from gan_research.errors import ConfigError
from gan_research.utils.images import convert_channels
from gan_research.utils.validation import check_positive_int

_NATIVE_SIZE = 8
_MAX_PIXEL = 16.0
# The smallest class has 174 digits: at 0.9 it still keeps 17 of them for training.
_MAX_TEST_FRACTION = 0.9


class DigitsDataModule(GANDataModule):
    """All 1797 digits, bilinearly resized to ``image_size`` and scaled to [-1, 1] (0 -> -1, 16 -> 1).

    ``channels=3`` repeats the grey channel, for networks or metrics that expect RGB.

    ``test_fraction``: share of each class held out as ``test_set`` (stratified: class
    ``c`` with ``n_c`` digits gives ``round(test_fraction * n_c)`` of them), chosen by a
    generator seeded with ``split_seed`` and removed from ``train_set``. The split does not
    follow the run's ``seed``, so runs of different seeds are scored on the same test
    digits. 0 (the default) keeps all 1797 digits for training and ``test_set`` is None.
    ``train_indices`` / ``test_indices`` are the two sets' positions in scikit-learn's order.
    """

    name = "digits"

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 1,
        batch_size: int = 64,
        num_workers: int = 0,
        batches_per_step: int = 1,
        seed: int = 0,
        test_fraction: float = 0.0,
        split_seed: int = 0,
    ) -> None:
        super().__init__(
            batch_size=batch_size, num_workers=num_workers, batches_per_step=batches_per_step, seed=seed
        )
        self.image_size = check_positive_int(self.name, "image_size", image_size, form="key")
        self.channels = check_channels(channels, self.name)
        if (
            isinstance(test_fraction, bool)
            or not isinstance(test_fraction, (int, float))
            or not 0.0 <= test_fraction <= _MAX_TEST_FRACTION
        ):
            raise ConfigError(
                f"{self.name}.test_fraction={test_fraction!r} is invalid: expected a number in "
                f"[0, {_MAX_TEST_FRACTION}] (0: no held-out split; e.g. 0.2 holds out a fifth of each class)"
            )
        self.test_fraction = float(test_fraction)
        if isinstance(split_seed, bool) or not isinstance(split_seed, int):
            raise ConfigError(f"{self.name}.split_seed must be an integer, got {split_seed!r}")
        self.split_seed = split_seed
        self._test_set: InMemoryDataset | None = None
        self.train_indices: torch.Tensor | None = None
        self.test_indices: torch.Tensor | None = None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (self.channels, self.image_size, self.image_size)

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def test_set(self) -> InMemoryDataset | None:
        """The held-out digits (runs ``setup`` if needed); None when ``test_fraction`` is 0."""
        if self.test_fraction == 0.0:
            return None
        self.setup("fit")
        return self._test_set

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
        train, test = stratified_split(labels, self.test_fraction, self.split_seed)
        self.train_indices, self.test_indices = train, test
        if len(test):
            self._test_set = InMemoryDataset(images[test].contiguous(), labels[test])
        return InMemoryDataset(images[train].contiguous(), labels[train])


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, test)`` positions: ``round(fraction * n_c)`` random ones of each class ``c`` held out.

    Drawn class by class (in label order) from one generator seeded with ``seed``; each
    set is returned in ascending order, so the kept samples keep the dataset's order.
    """
    generator = torch.Generator().manual_seed(seed)
    held_out = []
    for c in labels.unique(sorted=True).tolist():
        members = (labels == c).nonzero().view(-1)
        take = round(fraction * len(members))
        held_out.append(members[torch.randperm(len(members), generator=generator)[:take]])
    test = torch.cat(held_out).sort().values
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[test] = False
    return keep.nonzero().view(-1), test
