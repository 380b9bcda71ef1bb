"""MNIST, Fashion-MNIST and CIFAR-10 through torchvision's own loading code.

torchvision reads the native files (idx for (Fashion-)MNIST, pickled batches for
CIFAR-10); we take its raw uint8 tensors once, resize them to ``image_size`` and
keep them in memory, so training batches are cut by tensor indexing instead of
per-sample PIL transforms. ``download=true`` lets torchvision fetch missing files
where there is internet; without it a missing file is a DataError naming it.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import ClassVar
from urllib.error import URLError

import numpy as np
import torch
from torchvision import datasets
from torchvision.datasets import VisionDataset

from gan_research.data.base import GANDataModule, InMemoryDataset, check_channels, resize_images
from gan_research.errors import ConfigError, DataError
from gan_research.utils.images import convert_channels
from gan_research.utils.validation import check_positive_int


class TorchvisionDataModule(GANDataModule):
    """Training split of a torchvision dataset, held in memory as uint8.

    Subclasses name the torchvision class, its native channels and size, the files
    torchvision expects under ``root`` and how to put them there by hand.
    """

    dataset_class: ClassVar[type[VisionDataset]]
    native_channels: ClassVar[int]
    native_size: ClassVar[int]
    # Paths relative to root that torchvision requires before it loads anything.
    expected_files: ClassVar[tuple[str, ...]]
    manual_hint: ClassVar[str]

    def __init__(
        self,
        root: str | Path,
        image_size: int | None = None,
        channels: int | None = None,
        download: bool = False,
        batch_size: int = 64,
        num_workers: int = 0,
        batches_per_step: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(
            batch_size=batch_size, num_workers=num_workers, batches_per_step=batches_per_step, seed=seed
        )
        if root is None or str(root) in ("", "???"):
            raise ConfigError(f"{self.name}: dataset.root must be a directory path, got {root!r}")
        # Only a path is stored here: the disk is first touched in prepare_data/setup.
        self.root = Path(root).expanduser()
        size = self.native_size if image_size is None else image_size
        self.image_size = check_positive_int(self.name, "image_size", size, form="key")
        self.channels = check_channels(self.native_channels if channels is None else channels, self.name)
        if not isinstance(download, bool):
            raise ConfigError(f"{self.name}: dataset.download must be true or false, got {download!r}")
        self.download = download

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (self.channels, self.image_size, self.image_size)

    @property
    def num_classes(self) -> int:
        return 10

    def prepare_data(self) -> None:
        # Lightning calls this on one process per node, so DDP ranks do not download concurrently.
        if self.download:
            self._open(download=True)

    def _build_dataset(self) -> InMemoryDataset:
        dataset = self._open(download=self.download)
        images, labels = self._raw_tensors(dataset)
        images = convert_channels(resize_images(images, self.image_size), self.channels)
        return InMemoryDataset(images.contiguous(), labels)

    def _raw_tensors(self, dataset: VisionDataset) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 NCHW images and int64 labels of a loaded torchvision dataset."""
        raise NotImplementedError

    def _open(self, download: bool) -> VisionDataset:
        hint = self.manual_hint.replace("<root>", str(self.root))
        try:
            return self.dataset_class(root=str(self.root), train=True, download=download)
        except (RuntimeError, URLError) as error:
            # torchvision says only "Dataset not found"; name what is missing and where.
            missing = [str(self.root / f) for f in self.expected_files if not (self.root / f).is_file()]
            if missing:
                what = "missing " + ", ".join(missing)
            else:
                what = f"the files under {self.root} are present but torchvision rejected them ({error})"
            if download:
                fix = f"Downloading failed ({error}); without internet, {hint}"
            else:
                fix = f"Set dataset.download=true to fetch it (needs internet), or {hint}"
            raise DataError(
                f"{self.name} could not be loaded from dataset.root={self.root}: {what}. {fix}."
            ) from error
        except (OSError, ValueError, EOFError, pickle.UnpicklingError, AssertionError) as error:
            raise DataError(
                f"{self.name} under dataset.root={self.root} could not be read ({error!r}); the files are "
                f"corrupt or not in the native format. Delete them and set dataset.download=true, or {hint}."
            ) from error


def _mnist_files(folder: str) -> tuple[str, ...]:
    # torchvision requires the test files too, even for the training split.
    names = (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
    return tuple(f"{folder}/raw/{name}" for name in names)


class _MNISTLike(TorchvisionDataModule):
    native_channels = 1
    native_size = 28

    def _raw_tensors(self, dataset: VisionDataset) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.as_tensor(dataset.data, dtype=torch.uint8).unsqueeze(1)  # N,28,28 -> N,1,28,28
        return images, torch.as_tensor(dataset.targets, dtype=torch.int64)


class MNISTDataModule(_MNISTLike):
    """MNIST training set (60k grey 28x28 digits)."""

    name = "mnist"
    dataset_class = datasets.MNIST
    expected_files = _mnist_files("MNIST")
    manual_hint = "copy the four idx files (decompressed: gunzip the .gz downloads) into <root>/MNIST/raw/"


class FashionMNISTDataModule(_MNISTLike):
    """Fashion-MNIST training set (60k grey 28x28 clothing images)."""

    name = "fashion_mnist"
    dataset_class = datasets.FashionMNIST
    expected_files = _mnist_files("FashionMNIST")
    manual_hint = (
        "copy the four idx files (decompressed: gunzip the .gz downloads) into <root>/FashionMNIST/raw/"
    )


class CIFAR10DataModule(TorchvisionDataModule):
    """CIFAR-10 training set (50k RGB 32x32 images)."""

    name = "cifar10"
    dataset_class = datasets.CIFAR10
    native_channels = 3
    native_size = 32
    expected_files = tuple(
        f"cifar-10-batches-py/{name}"
        for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]
    )
    manual_hint = (
        "extract cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) so that "
        "<root>/cifar-10-batches-py/ holds data_batch_1..5, test_batch and batches.meta"
    )

    def _raw_tensors(self, dataset: VisionDataset) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.from_numpy(np.ascontiguousarray(dataset.data)).permute(0, 3, 1, 2)  # NHWC -> NCHW
        return images.contiguous(), torch.as_tensor(dataset.targets, dtype=torch.int64)
