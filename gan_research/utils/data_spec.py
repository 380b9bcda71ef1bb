"""What a dataset is, declared by its datamodule and read by families, metrics and error messages.

Every datamodule states its kind, labels, channels and image size as a :class:`DataSpec`
(``datamodule.spec``), and the kinds its class can declare (``kinds``, read from the class
alone, before any data is opened). Families state the kinds they learn from
(``data_kinds``); metrics choose their feature space from the spec's :class:`Domain`. No
code outside a datamodule branches on a dataset's name.

Kept in ``utils`` (the lowest layer) because families, metrics and datamodules all read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from torch import Tensor

from gan_research.errors import ConfigError


class DataKind(str, Enum):
    """What one training sample is."""

    #: 2-D points from a Gaussian mixture with known modes (ring8, grid25): sample shape (2,).
    MIXTURE = "mixture"
    #: Images (C, H, W), labelled when ``num_classes`` is set.
    IMAGES = "images"
    #: Images whose channels are independent labelled images (Stacked MNIST: 1000 modes).
    STACKED = "stacked"
    #: Aligned (a, b) image pairs (pix2pix): ``b`` belongs to ``a``.
    PAIRED = "paired"
    #: Two image domains A and B without alignment (CycleGAN).
    UNPAIRED = "unpaired"
    #: Labelled images, each with captions describing it (text-to-image: StackGAN).
    CAPTIONED = "captioned"

    def describe(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    DataKind.MIXTURE: "2-D points from a Gaussian mixture",
    DataKind.IMAGES: "images",
    DataKind.STACKED: "stacked images (a labelled image per channel)",
    DataKind.PAIRED: "paired image translation (aligned a -> b)",
    DataKind.UNPAIRED: "unpaired image translation (domains A and B)",
    DataKind.CAPTIONED: "captioned images (text to image)",
}

#: The translation kinds: samples are (a, b) and the networks map one domain to the other.
TRANSLATION_KINDS: tuple[DataKind, ...] = (DataKind.PAIRED, DataKind.UNPAIRED)


@dataclass(frozen=True)
class Domain:
    """A domain with a classifier the framework trains itself (``gan-classifier``), so its
    metrics (classifier FID, class coverage, code accuracy) need no external weights.

    Args:
        name: the classifier's name and cache key (``digits``).
        labelled_data: builds the labelled datamodule the classifier trains on, at an image size.
        view: maps this dataset's images into the classifier's input (e.g. ``-x`` for inverted
            digits); applied alike to real and generated images, so it is a fixed feature map.
    """

    name: str
    labelled_data: Callable[[int], Any]
    view: Callable[[Tensor], Tensor] = lambda x: x


@dataclass(frozen=True)
class DataSpec:
    """One dataset's declaration.

    Args:
        name: the dataset's name (the config option), used in messages and cache keys only.
        kind: what a sample is (:class:`DataKind`).
        sample_shape: one sample's shape: (2,) for points, (C, H, W) for images; for
            translation kinds the target domain B's (what a generator A -> B produces).
        num_classes: label values, or None when unlabelled (modes of a mixture count as labels).
        channels, image_size: of the images (None for points); for translation, of domain B.
        channels_a: translation only, the source domain's channels.
        image_size_a: translation only, the source domain's image side when it differs from
            B's (super-resolution: the low-resolution input); None: the same as B's.
        domain: the domain whose classifier the metrics may use (None: Inception only).
    """

    name: str
    kind: DataKind
    sample_shape: tuple[int, ...]
    num_classes: int | None = None
    channels: int | None = None
    image_size: int | None = None
    channels_a: int | None = None
    domain: Domain | None = None
    image_size_a: int | None = None

    @property
    def is_image(self) -> bool:
        return self.kind is not DataKind.MIXTURE

    @property
    def translation(self) -> bool:
        return self.kind in TRANSLATION_KINDS

    @property
    def a_shape(self) -> tuple[int, ...]:
        if not self.translation:
            raise AttributeError(f"dataset '{self.name}' ({self.kind.value}) has no source domain A")
        if self.image_size_a is None:
            return (self.channels_a, *self.sample_shape[1:])
        return (self.channels_a, self.image_size_a, self.image_size_a)


class DataKindError(ConfigError):
    """A family cannot learn from this kind of data. ``kinds`` are the ones it can, so an
    entry point that knows the config tree can list the datasets that declare them."""

    def __init__(self, message: str, kinds: tuple[DataKind, ...]) -> None:
        super().__init__(message)
        self.kinds = kinds


def require_kind(
    spec: DataSpec, kinds: tuple[DataKind, ...], who: str, *, labelled: bool = False, why: str = ""
) -> None:
    """Raise :class:`DataKindError` unless ``spec`` is one of ``kinds`` (and labelled, if asked)."""
    wanted = " or ".join(k.describe() for k in kinds)
    reason = f" ({why})" if why else ""
    if spec.kind not in kinds:
        raise DataKindError(
            f"{who} learns from {wanted}{reason}, but dataset '{spec.name}' is {spec.kind.describe()}",
            kinds,
        )
    if labelled and spec.num_classes is None:
        raise DataKindError(
            f"{who} needs labelled {wanted}{reason}, but dataset '{spec.name}' has no labels", kinds
        )
