"""LightningDataModules: embedded (2-D mixtures, sklearn digits), torchvision, image folders,
image-to-image translation (paired and unpaired folders, embedded digits tasks)."""

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
from gan_research.data.translation.base import TranslationDataModule
from gan_research.data.translation.digits import DigitsEdgesDataModule, DigitsInvertedDataModule
from gan_research.data.translation.folders import PairedFolderDataModule, UnpairedFolderDataModule

__all__ = [
    "CIFAR10DataModule",
    "DigitsDataModule",
    "DigitsEdgesDataModule",
    "DigitsInvertedDataModule",
    "FashionMNISTDataModule",
    "GANDataModule",
    "GaussianMixture2D",
    "GridMixture",
    "ImageFolderDataModule",
    "InMemoryDataset",
    "MNISTDataModule",
    "PairedFolderDataModule",
    "RingMixture",
    "TorchvisionDataModule",
    "TranslationDataModule",
    "UnpairedFolderDataModule",
]
