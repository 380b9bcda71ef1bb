"""LightningDataModules: embedded (2-D mixtures, sklearn digits), torchvision, image folders."""

from gan_research.data.base import GANDataModule, InMemoryDataset
from gan_research.data.digits import DigitsDataModule
from gan_research.data.image_folder import ImageFolderDataModule
from gan_research.data.mixtures import GaussianMixture2D, GridMixture, RingMixture
from gan_research.data.torchvision_datasets import (
    CIFAR10DataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    TorchvisionDataModule,
)

__all__ = [
    "CIFAR10DataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "GANDataModule",
    "GaussianMixture2D",
    "GridMixture",
    "ImageFolderDataModule",
    "InMemoryDataset",
    "MNISTDataModule",
    "RingMixture",
    "TorchvisionDataModule",
]
