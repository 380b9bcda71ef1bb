"""MNIST / Fashion-MNIST / CIFAR-10 loaded by torchvision from tiny files in the native formats."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar
from hydra.utils import instantiate
from omegaconf import OmegaConf

from gan_research.data import CIFAR10DataModule, FashionMNISTDataModule, MNISTDataModule
from gan_research.data.torchvision_datasets import TorchvisionDataModule
from gan_research.errors import DataError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "dataset"
NUM_TRAIN = 20


def _write_idx(raw: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    # IDX format (yann.lecun.com/exdb/mnist): big-endian magic 0x0803 = uint8 x 3 dims
    # (2051) or 0x0801 = uint8 x 1 dim (2049), the dimension sizes, then the bytes.
    n, rows, cols = images.shape
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">4i", 2051, n, rows, cols) + images.tobytes()
    )
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">2i", 2049, n) + labels.tobytes())


def write_mnist(root: Path, folder: str) -> tuple[np.ndarray, np.ndarray]:
    """Write a 20-image training set (and a 5-image test set) like MNIST's raw files."""
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    images = rng.integers(0, 256, size=(NUM_TRAIN, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # make sure both ends of the range occur
    labels = (np.arange(NUM_TRAIN) % 10).astype(np.uint8)
    _write_idx(raw, "train", images, labels)
    _write_idx(raw, "t10k", images[:5], labels[:5])
    return images, labels


def write_cifar10(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Write CIFAR-10's python pickles: 5 training batches of 4 images, a test batch, the meta file."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    images = rng.integers(0, 256, size=(NUM_TRAIN, 3, 32, 32), dtype=np.uint8)
    images[0, 0, 0, :2] = (0, 255)
    labels = np.arange(NUM_TRAIN) % 10
    for i in range(5):
        part = slice(4 * i, 4 * (i + 1))
        batch = {"data": images[part].reshape(4, 3072), "labels": labels[part].tolist()}
        (folder / f"data_batch_{i + 1}").write_bytes(pickle.dumps(batch))
    test = {"data": images[:2].reshape(2, 3072), "labels": labels[:2].tolist()}
    (folder / "test_batch").write_bytes(pickle.dumps(test))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    meta = {"label_names": names}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return images, labels


@pytest.fixture
def skip_cifar_md5(monkeypatch: pytest.MonkeyPatch) -> None:
    # torchvision's CIFAR10 checks each file against the md5 of the official release,
    # which no hand-written file can match. Only that check is replaced (by "the file
    # exists"); unpickling and reshaping still run through torchvision's real code.
    monkeypatch.setattr(
        torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath)
    )


@pytest.mark.parametrize(
    ("cls", "folder"), [(MNISTDataModule, "MNIST"), (FashionMNISTDataModule, "FashionMNIST")]
)
def test_mnist_like_loads_native_idx_files(
    cls: type[TorchvisionDataModule], folder: str, tmp_path: Path
) -> None:
    images, labels = write_mnist(tmp_path, folder)
    dm = cls(root=tmp_path, batch_size=4)
    assert (dm.sample_shape, dm.num_classes, dm.spec.is_image) == ((1, 28, 28), 10, True)
    dm.setup("fit")
    x, y = dm.train_set[list(range(NUM_TRAIN))]
    assert x.shape == (NUM_TRAIN, 1, 28, 28) and x.dtype == torch.float32
    assert (x.min().item(), x.max().item()) == (-1.0, 1.0)
    assert torch.allclose(x[:, 0], torch.from_numpy(images).float() / 127.5 - 1)
    assert y.tolist() == labels.tolist()


def test_mnist_resized_batches(tmp_path: Path) -> None:
    write_mnist(tmp_path, "MNIST")
    dm = MNISTDataModule(root=tmp_path, image_size=32, channels=3, batch_size=3, batches_per_step=2)
    batches = list(dm.train_dataloader())
    assert len(batches) == NUM_TRAIN // 6
    x, y = batches[0]
    assert x.shape == (6, 3, 32, 32) and y.dtype == torch.int64
    assert x.min() >= -1 and x.max() <= 1


def test_cifar10_loads_native_pickles(tmp_path: Path, skip_cifar_md5: None) -> None:
    images, labels = write_cifar10(tmp_path)
    dm = CIFAR10DataModule(root=tmp_path, batch_size=4)
    assert (dm.sample_shape, dm.num_classes) == ((3, 32, 32), 10)
    dm.setup("fit")
    x, y = dm.train_set[list(range(NUM_TRAIN))]
    assert x.shape == (NUM_TRAIN, 3, 32, 32)
    assert (x.min().item(), x.max().item()) == (-1.0, 1.0)
    assert torch.allclose(x, torch.from_numpy(images).float() / 127.5 - 1)
    assert y.tolist() == labels.tolist()
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32)


def test_cifar10_grey_and_downscaled(tmp_path: Path, skip_cifar_md5: None) -> None:
    write_cifar10(tmp_path)
    dm = CIFAR10DataModule(root=tmp_path, image_size=16, channels=1, batch_size=4)
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, 16, 16)


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (MNISTDataModule, "MNIST/raw/train-images-idx3-ubyte"),
        (FashionMNISTDataModule, "FashionMNIST/raw/train-labels-idx1-ubyte"),
        (CIFAR10DataModule, "cifar-10-batches-py/data_batch_1"),
    ],
)
def test_missing_files_name_the_expected_path(
    cls: type[TorchvisionDataModule], expected: str, tmp_path: Path
) -> None:
    dm = cls(root=tmp_path)
    with pytest.raises(DataError) as error:
        dm.setup("fit")
    assert str(tmp_path / expected) in str(error.value)
    assert "dataset.download=true" in str(error.value)


def test_one_missing_mnist_file_is_named(tmp_path: Path) -> None:
    write_mnist(tmp_path, "MNIST")
    missing = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    missing.unlink()
    with pytest.raises(DataError, match=r"missing \S*t10k-labels-idx1-ubyte\. Set"):
        MNISTDataModule(root=tmp_path).setup("fit")


def test_truncated_idx_file_is_a_data_error(tmp_path: Path) -> None:
    write_mnist(tmp_path, "MNIST")
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])
    with pytest.raises(DataError, match=rf"dataset.root={tmp_path}"):
        MNISTDataModule(root=tmp_path).setup("fit")


def test_dataset_smaller_than_a_step(tmp_path: Path) -> None:
    write_mnist(tmp_path, "MNIST")
    with pytest.raises(DataError, match=r"20 samples.*16 \* 2 = 32"):
        MNISTDataModule(root=tmp_path, batch_size=16, batches_per_step=2).setup("fit")


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_config_instantiates_without_touching_disk(name: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "not-created"
    root = OmegaConf.create({"seed": 0, "paths": {"data_dir": str(data_dir)}})
    cfg = OmegaConf.merge(root, {"dataset": OmegaConf.load(CONF_DIR / f"{name}.yaml")})
    dm = instantiate(cfg.dataset)
    assert dm.name == name and dm.root == data_dir and dm.download is False
    assert dm.sample_shape == ((3, 32, 32) if name == "cifar10" else (1, 28, 28))
    assert not data_dir.exists()
