"""Semantic label maps paired with images (GauGAN/SPADE's data; also pix2pix's labels → photo).

Pairs ``(a, b)`` as every paired translation dataset (:mod:`gan_research.data.translation`), with
``a`` the label map **one-hot**: a float (B, num_classes, H, W) of 0/1, one channel per class, as
the reference builds it (NVlabs/SPADE ``Pix2PixModel.preprocess_input``: ``scatter_`` of the label
ids). A pixel whose label is the ``ignore_index`` (or outside ``[0, num_classes)``) is all zeros:
it modulates nothing and the segmentation metrics skip it. The reference can instead give
"don't care" its own channel (``contain_dontcare_label``): set ``num_classes`` one higher and map
that id to the last class.

Label ids are held in memory as int16 maps, one-hot only per batch (a Cityscapes training set as
one-hot floats would need 35 channels x 4 bytes per pixel), and get the same random crop and flip
as their images (:class:`~gan_research.data.translation.TranslationDataset`'s paired jitter). The
datamodules declare ``num_classes`` (the semantic classes, ``spec.num_classes``) and
``channels_a == num_classes``, which the segmentation metrics read.

:class:`LabelFolderDataModule` reads the Cityscapes / ADE20K layout: an image folder and a label
folder of integer PNGs per split. Instance maps (the reference's ``--no_instance`` off for
Cityscapes, an edge map as an extra channel) are not read here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from gan_research.data.base import check_channels
from gan_research.data.translation import TranslationDataModule, TranslationDataset, list_images, load_image

# The folder datasets' shared checks and the errors PIL raises for bad files (translation/folders.py).
from gan_research.data.translation.folders import _PIL_ERRORS, _check_derived, _check_root
from gan_research.errors import ConfigError, DataError
from gan_research.utils.data_spec import DataKind
from gan_research.utils.validation import check_int_at_least

log = logging.getLogger(__name__)


def one_hot_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Label ids (B, 1, H, W) → one-hot float (B, num_classes, H, W); ids outside
    ``[0, num_classes)`` (the ignored pixels) give all-zero vectors."""
    ids = labels[:, 0].long()
    valid = (ids >= 0) & (ids < num_classes)
    onehot = F.one_hot(ids.clamp(0, num_classes - 1), num_classes).permute(0, 3, 1, 2).float()
    return onehot * valid[:, None].float()


def labels_of(onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot label maps (B, K, H, W) → ``(ids (B, H, W) int64, valid mask (B, H, W) bool)``."""
    return onehot.argmax(1), onehot.sum(1) > 0


class LabelMapDataset(TranslationDataset):
    """:class:`TranslationDataset` whose ``a`` side is int16 label ids (B, 1, H, W), returned
    one-hot (``num_classes`` channels) after the paired crop and flip."""

    def __init__(self, labels: torch.Tensor, images: torch.Tensor, num_classes: int, **kwargs: Any) -> None:
        if labels.dtype != torch.int16 or labels.dim() != 4 or labels.shape[1] != 1:
            raise ValueError(
                f"label maps must be int16 (N, 1, H, W), got {labels.dtype} {tuple(labels.shape)}"
            )
        super().__init__(labels, images, paired=True, **kwargs)
        self.num_classes = num_classes

    @classmethod
    def of(cls, dataset: TranslationDataset, num_classes: int) -> LabelMapDataset:
        """The pairs and jitter of ``dataset`` (built by the translation base), one-hot on the way out."""
        return cls(
            dataset.x,
            dataset.b,
            num_classes,
            crop_size=dataset.crop_size,
            flip=dataset.flip,
            seed=dataset.seed,
        )

    def __getitems__(self, items: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        labels, images = super().__getitems__(items)
        return one_hot_labels(labels, self.num_classes), images


class LabelMapDataModule(TranslationDataModule):
    """Base of the (label map, image) datamodules: subclasses set ``name`` and implement
    :meth:`_load_splits` returning int16 label ids as ``a`` (N, 1, H, W) and images as ``b``."""

    kinds = (DataKind.PAIRED,)

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        self._num_classes = check_int_at_least(self.name, "num_classes", num_classes, 2, form="argument")
        super().__init__(channels_a=self._num_classes, **kwargs)

    @property
    def num_classes(self) -> int:
        """The semantic classes: the channels of the one-hot ``a``."""
        return self._num_classes

    def _build_dataset(self) -> LabelMapDataset:
        train = super()._build_dataset()
        assert self._val_set is not None
        self._val_set = LabelMapDataset.of(self._val_set, self.num_classes)
        return LabelMapDataset.of(train, self.num_classes)


def load_label_map(
    path: Path, size: int, offset: int, ignore_index: int | None, num_classes: int
) -> torch.Tensor:
    """Decode an integer label PNG (mode L, P or I: the values are class ids, not colours), add
    ``offset``, mark ``ignore_index`` and out-of-range ids as -1, resize to ``size`` with nearest
    neighbour (ids must not be blended): int16 (1, size, size).

    Raises DataError naming the file when it cannot be read, holds colour (RGB) pixels, or holds
    an id (other than ``ignore_index``) of ``num_classes`` or more after the offset; ids that the
    offset makes negative (ADE20K's 0 = "other") are ignored pixels.
    """
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise DataError(
                    f"label map {path} is a {image.mode} image; expected one channel of integer class ids "
                    "(mode L, P or I), such as Cityscapes' *_labelIds.png or ADE20K's annotations"
                )
            if image.mode == "P":
                # The palette indices are the class ids (as in ADE20K/VOC label files).
                ids = np.asarray(image, dtype=np.int64)
                image = Image.fromarray(ids.astype(np.int32), mode="I")
            image = image.resize((size, size), Image.Resampling.NEAREST)
            ids = np.asarray(image, dtype=np.int64).copy()
    except _PIL_ERRORS as error:
        raise DataError(f"cannot read label map {path}: {error}. Delete or replace it.") from error
    ids = ids.reshape(size, size)
    ignored = ids == ignore_index if ignore_index is not None else np.zeros_like(ids, dtype=bool)
    ids = ids + offset
    too_big = (ids >= num_classes) & ~ignored
    if too_big.any():
        # Silently ignoring them would hide a wrong num_classes (or a colour-coded label file).
        raise DataError(
            f"label map {path} holds class id {int(ids[too_big].max()) - offset}, outside the "
            f"{num_classes} classes of dataset.num_classes={num_classes} (ids 0..{num_classes - 1} after "
            f"dataset.label_offset={offset}); set dataset.num_classes, or dataset.ignore_index for a "
            "'don't care' id"
        )
    ids[ignored | (ids < 0)] = -1
    return torch.from_numpy(ids.astype(np.int16))[None]


class LabelFolderDataModule(LabelMapDataModule):
    """(label map, image) pairs in the Cityscapes / ADE20K layout.

    ``root/<images>/<split>`` holds the images, ``root/<labels>/<split>`` the label maps (integer
    PNGs of class ids) for the splits ``train`` and ``val``, found recursively (sorted path order).
    An image and its label map pair up by file name without extension, after removing
    ``image_suffix`` and ``label_suffix`` from the end (Cityscapes: ``_leftImg8bit`` and
    ``_gtFine_labelIds``; ADE20K: none). Label ids are shifted by ``label_offset`` (ADE20K: -1,
    its 0 = "other" becoming -1, ignored, as the reference's ``label - 1``); ``ignore_index`` (before
    the shift; Cityscapes 255 in trainIds) and negative ids are ignored pixels, an id of
    ``num_classes`` (default 35, Cityscapes' labelIds as the reference) or more is an error.
    Images are resized with bicubic, label maps with nearest-neighbour interpolation, to
    ``load_size`` (training, then random ``crop_size`` crops and flips) or ``crop_size`` (validation).

    All files are listed and matched in ``setup``: a missing folder, an image without its label map
    (or the reverse), an unreadable file or a colour label map raises DataError naming the path.
    """

    name = "label_folder"

    def __init__(
        self,
        root: str | Path,
        num_classes: int = 35,
        ignore_index: int | None = 255,
        label_offset: int = 0,
        image_dir: str = "images",
        label_dir: str = "labels",
        image_suffix: str = "",
        label_suffix: str = "",
        load_size: int = 286,
        crop_size: int = 256,
        flip: bool = True,
        channels: int = 3,
        batch_size: int = 1,
        num_workers: int = 0,
        batches_per_step: int = 1,
        seed: int = 0,
        image_size: int | None = None,
        channels_a: int | None = None,
        channels_b: int | None = None,
    ) -> None:
        channels = check_channels(channels, self.name)
        super().__init__(
            num_classes=num_classes,
            crop_size=crop_size,
            load_size=load_size,
            flip=flip,
            channels_b=channels,
            batch_size=batch_size,
            num_workers=num_workers,
            batches_per_step=batches_per_step,
            seed=seed,
        )
        self.layout = (
            f"{image_dir}/train, {image_dir}/val (images) and {label_dir}/train, {label_dir}/val "
            "(integer label PNGs of the same names), as Cityscapes or ADE20K"
        )
        self.root = _check_root(self.name, root, self.layout)
        if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
            raise ConfigError(
                f"{self.name}: dataset.ignore_index must be an integer or null, got {ignore_index!r}"
            )
        if isinstance(label_offset, bool) or not isinstance(label_offset, int):
            raise ConfigError(f"{self.name}: dataset.label_offset must be an integer, got {label_offset!r}")
        self.ignore_index, self.label_offset = ignore_index, label_offset
        self.image_dir, self.label_dir = str(image_dir), str(label_dir)
        self.image_suffix, self.label_suffix = str(image_suffix), str(label_suffix)
        self.channels = channels
        _check_derived(self.name, "image_size", image_size, "crop_size", self.crop_size)
        _check_derived(self.name, "channels_a", channels_a, "num_classes", self.num_classes)
        _check_derived(self.name, "channels_b", channels_b, "channels", channels)

    def _key(self, path: Path, folder: Path, suffix: str) -> str:
        stem = str(path.relative_to(folder).with_suffix(""))
        return stem[: -len(suffix)] if suffix and stem.endswith(suffix) else stem

    def _pairs(self, split: str) -> list[tuple[Path, Path]]:
        if not self.root.is_dir():
            raise DataError(
                f"{self.name}: dataset.root={self.root} does not exist or is not a folder; "
                f"expected {self.layout}"
            )
        image_folder, label_folder = self.root / self.image_dir / split, self.root / self.label_dir / split
        images = {
            self._key(p, image_folder, self.image_suffix): p
            for p in list_images(image_folder, self.name, self.layout)
        }
        labels = {
            self._key(p, label_folder, self.label_suffix): p
            for p in list_images(label_folder, self.name, self.layout)
        }
        lonely = sorted(images.keys() - labels.keys())
        if lonely:
            raise DataError(
                f"{self.name}: {len(lonely)} image(s) in {image_folder} have no label map in "
                f"{label_folder}, e.g. {images[lonely[0]]} (expected {lonely[0]}{self.label_suffix}.png; "
                "set dataset.image_suffix and dataset.label_suffix to the parts of the names that differ)"
            )
        extra = sorted(labels.keys() - images.keys())
        if extra:
            raise DataError(f"{self.name}: label map {labels[extra[0]]} has no image in {image_folder}")
        return [(images[k], labels[k]) for k in sorted(images)]

    def _read(self, split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = self._pairs(split)
        labels = torch.stack(
            [
                load_label_map(p, size, self.label_offset, self.ignore_index, self.num_classes)
                for _, p in pairs
            ]
        )
        images = torch.stack([load_image(p, size, self.channels) for p, _ in pairs])
        return labels, images

    def _load_splits(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        # Both splits are listed and matched before any file is decoded, so a bad layout fails fast.
        for split in ("train", "val"):
            self._pairs(split)
        train_a, train_b = self._read("train", self.load_size)
        val_a, val_b = self._read("val", self.crop_size)
        return train_a, train_b, val_a, val_b


__all__ = [
    "LabelFolderDataModule",
    "LabelMapDataModule",
    "LabelMapDataset",
    "labels_of",
    "load_label_map",
    "one_hot_labels",
]
