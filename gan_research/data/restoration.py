"""Blind restoration data: (degraded, clean) image pairs, degraded on the fly by GFP-GAN's eq. 1.

GFP-GAN (Wang et al. 2021, "Towards Real-World Blind Face Restoration with Generative Facial
Prior", arXiv:2101.04061, Sec. 4.1) trains on clean FFHQ faces ``y`` and their synthetic
degradations ``x = [(y ⊛ k_σ)↓_r + n_δ]_JPEG_q`` (eq. 1), drawn afresh every time an image is
read (the reference's ``FFHQDegradationDataset.__getitem__``, TencentARC/GFPGAN). Every
datamodule here is a paired translation dataset (``DataKind.PAIRED``, A = degraded input, B =
clean target, both at ``image_size``: the reference resizes the degraded image back to the
input size, so the network sees input and target at one size) whose inputs come from
:func:`gan_research.data.degradation.degrade`:

- ``digits_degraded`` (:class:`DegradedDigitsDataModule`): embedded, no download. The 1797
  scikit-learn digits at ``image_size`` (32 px, grey), a seeded held-out split
  (``val_fraction``, ``split_seed``) as ``digits_sr``; FID and class preservation use the digits
  classifier (``spec.domain``), and the validation pairs' classes are known
  (:attr:`DegradedDigitsDataModule.val_labels`).
- ``degraded_folder`` (:class:`DegradedFolderDataModule`): any folder of clean images (FFHQ,
  CelebA-HQ, or not faces at all), centre-cropped to a square and resized to ``image_size``,
  decoded from disk per sample; ``root/<train_dir>`` and ``root/<val_dir>``, or ``val_dir: null``
  to hold out ``val_fraction`` of the training images (seeded by ``split_seed``).

**Keys.** A training pair's degradation is keyed by its *draw number* (``KeyedRandomSampler``'s
``(index, key)`` items) under the run's ``seed``: an image gets a fresh degradation every epoch,
identical for any ``num_workers``, under DDP and after a resume (``degrade``'s docstring). A
validation pair's degradation is keyed by its position in the validation split under a seed
derived from ``split_seed`` (not ``seed``) and made once, at ``setup``: every evaluation of
every run (of any seed) scores the same degraded inputs. The derived seed keeps validation
degradations apart from the training draws of the same number.

**Where the degradation runs.** In the dataset's batch fetch (``__getitems__``) of the in-memory
digits and in ``__getitem__`` of the folder dataset, i.e. in the data loader's process: with
``num_workers`` > 0 off the training process. ``degrade`` is per image anyway (each image has its
own kernel, size and JPEG codec call), so a batched call would only loop inside. Measured on
this repository's 2-core CPU, one thread, 32 px grey digits, batch 16: ``degrade`` takes about
14 ms per batch (~0.9 ms an image, PIL's JPEG round trip and the per-image blur and resizes
included); the ``digits_degraded`` training loader yields about 59 batches/s (17 ms a batch)
with ``num_workers: 0`` and 55 with one worker process (the same work, moved), against about
5,000 batches/s for ``digits_sr``'s pairs, which need no per-image work. A ``model=pix2pix``
training step at 32 px takes about 0.45 s at the experiments' width 32 (1.6 s at width 64) on
the same machine, so degrading in the training process costs under 4 % of the throughput and
the digits default to ``num_workers: 0``. RGB at 512 px (the paper's size) takes about 38 ms
an image: the folder datamodule defaults to 2 workers.

**Ranges** (config keys, the paper's values by default; :class:`DegradationRanges`):
``blur_sigma`` [0.2, 10], ``downsample`` [1, 8], ``noise`` [0, 15] (on the 0-255 scale),
``jpeg_quality`` [60, 100], ``anisotropic_prob`` 0, ``kernel_size`` 41, ``interpolation``
bilinear. The reference's training config (``options/train_gfpgan_v1.yml``) uses
``blur_sigma`` [0.1, 10], ``downsample`` [0.8, 8], ``noise`` [0, 20] and ``anisotropic_prob`` 0.5
(:meth:`DegradationRanges.reference`). A bad value is one ConfigError naming ``dataset.<key>``.

**Regions** (``regions``, default null): named boxes ``name: [y0, x0, y1, x1]`` (pixels of the
image at ``image_size``, rows y0 to y1 and columns x0 to x1, ends excluded) where every image
has the same part, for GFP-GAN's facial-component losses (Sec. 3.4, eq. 7: a discriminator and
a Gram-matrix style loss per region; ``families/gfpgan.py``). Exposed as
:attr:`_Restoration.regions` (name -> tuple, empty when none). The boxes are fixed: aligned
images such as FFHQ have their eyes and mouth at nearly fixed places. The reference instead
reads per-image eye and mouth landmarks from ``FFHQ_eye_mouth_landmarks_512.pth``
(``FFHQDegradationDataset``, ``crop_components: true``, enlarged by ``eye_enlarge_ratio``),
which is not part of this framework: that is the deviation. Boxes are in the coordinates of the
image as trained on: with ``flip``, a mirrored image's left-eye box holds the mirrored right eye,
which is what the reference's swapped, mirrored landmarks give too, so give mirror-symmetric
boxes (the eyes as a mirrored pair, the mouth centred).

Not done here (as in ``degradation.py``): the reference's colour jitter and grey conversion of
the input.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from gan_research.data.base import check_channels, uint8_to_signed_unit
from gan_research.data.degradation import DegradationRanges, degrade
from gan_research.data.digits import DigitsDataModule
from gan_research.data.image_folder import load_image
from gan_research.data.super_resolution import _image_size
from gan_research.data.translation.base import TranslationDataModule, TranslationDataset
from gan_research.data.translation.digits import check_digit_split, digit_splits
from gan_research.data.translation.folders import _check_derived, _check_root, _load_all, list_images
from gan_research.data.translation.jitter import jitter_draws
from gan_research.errors import ConfigError, DataError
from gan_research.utils.data_spec import DataKind, Domain
from gan_research.utils.validation import check_positive_int

log = logging.getLogger(__name__)

__all__ = [
    "DegradedDigitsDataModule",
    "DegradedFolderDataModule",
    "DegradedPairs",
    "FolderDegradationDataset",
    "check_regions",
    "degradation_ranges",
    "validation_seed",
]

# Config key of each DegradationRanges field (the keys follow the reference's option names).
_CONFIG_KEYS = {
    "sigma": "blur_sigma",
    "scale": "downsample",
    "noise": "noise",
    "quality": "jpeg_quality",
    "kernel_size": "kernel_size",
    "anisotropic_prob": "anisotropic_prob",
    "interpolation": "interpolation",
}
# The defaults, quoted in error messages: eq. 1's ranges are the paper's, the rest the reference's.
_DEFAULTS = {
    "blur_sigma": "the paper's: [0.2, 10]",
    "downsample": "the paper's: [1, 8]",
    "noise": "the paper's: [0, 15]",
    "jpeg_quality": "the paper's: [60, 100]",
    "anisotropic_prob": "the paper's: 0",
    "kernel_size": "the reference's: 41",
    "interpolation": "the reference's: bilinear",
}
# Salt of the validation degradations' seed ("val" in ASCII): apart from the training draws.
_VALIDATION_SALT = 0x76616C
# Hash stream of the folder dataset's mirroring (apart from degradation's 31-38, SR's 11-13).
_FLIP = 41


def degradation_ranges(
    owner: str,
    *,
    blur_sigma: Any = (0.2, 10.0),
    downsample: Any = (1.0, 8.0),
    noise: Any = (0.0, 15.0),
    jpeg_quality: Any = (60, 100),
    kernel_size: Any = 41,
    anisotropic_prob: Any = 0.0,
    interpolation: Any = "bilinear",
) -> DegradationRanges:
    """The :class:`DegradationRanges` of a datamodule's config keys (GFP-GAN eq. 1's ranges).

    ``DegradationRanges`` checks the values; its ConfigError is re-worded to name the config key
    (``digits_degraded: dataset.blur_sigma must be ..., got ...; the paper's: [0.2, 10]``).
    """
    try:
        return DegradationRanges(
            sigma=blur_sigma,
            scale=downsample,
            noise=noise,
            quality=jpeg_quality,
            kernel_size=kernel_size,
            anisotropic_prob=anisotropic_prob,
            interpolation=interpolation,
        )
    except ConfigError as err:
        found = re.search(r"\bdegradation\.(\w+)", str(err))
        key = _CONFIG_KEYS.get(found.group(1), found.group(1)) if found else None
        text = re.sub(
            r"\bdegradation\.(\w+)", lambda m: f"dataset.{_CONFIG_KEYS.get(m.group(1), m.group(1))}", str(err)
        )
        hint = f"; {_DEFAULTS[key]}" if key in _DEFAULTS else ""
        raise ConfigError(f"{owner}: {text}{hint}") from None


def check_regions(owner: str, regions: Any, image_size: int) -> dict[str, tuple[int, int, int, int]]:
    """The ``regions`` config key as ``{name: (y0, x0, y1, x1)}`` (empty for null), each box of
    integers inside an ``image_size`` image with a positive size (``0 <= y0 < y1 <= image_size``,
    likewise x). Anything else is one ConfigError naming ``dataset.regions`` or
    ``dataset.regions.<name>``."""
    if regions is None:
        return {}
    example = "e.g. {left_eye: [10, 6, 16, 14]}"
    if not isinstance(regions, Mapping):
        raise ConfigError(
            f"{owner}: dataset.regions={regions!r} is invalid: expected a mapping name -> [y0, x0, y1, x1] "
            f"({example}) or null"
        )
    boxes: dict[str, tuple[int, int, int, int]] = {}
    for name, box in regions.items():
        key = f"dataset.regions.{name}"
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(
                f"{owner}: {key} is an invalid region name: expected a name of letters, digits and _ "
                "(it names the region's discriminator)"
            )
        values = list(box) if isinstance(box, Sequence) and not isinstance(box, str) else None
        if (
            values is None
            or len(values) != 4
            or any(isinstance(v, bool) or not isinstance(v, int) for v in values)
        ):
            shown = values if values is not None else box
            raise ConfigError(
                f"{owner}: {key}={shown!r} is invalid: expected four integers [y0, x0, y1, x1], pixels "
                f"of the {image_size} px image ({example})"
            )
        y0, x0, y1, x1 = values
        if not (0 <= y0 < y1 <= image_size and 0 <= x0 < x1 <= image_size):
            raise ConfigError(
                f"{owner}: {key}={values} is invalid: the box [y0, x0, y1, x1] must lie inside the "
                f"{image_size} px image with a positive size (0 <= y0 < y1 <= {image_size}, "
                f"0 <= x0 < x1 <= {image_size})"
            )
        boxes[name] = (y0, x0, y1, x1)
    return boxes


def validation_seed(split_seed: int) -> int:
    """The seed of the validation degradations: derived from ``split_seed``, not the run's seed,
    so runs of every seed score the same inputs, and salted so validation pair ``i`` does not
    share its parameters with training draw ``i``."""
    return split_seed ^ _VALIDATION_SALT


class DegradedPairs(TranslationDataset):
    """Clean images held in memory, fetched a batch at a time as ``(degrade(clean), clean)``.

    Args:
        clean: NCHW clean images, float in [-1, 1] or uint8.
        ranges: eq. 1's parameter ranges.
        seed: the degradation's seed (the run's).

    Items are ``(index, draw number)`` of :class:`KeyedRandomSampler` (the degradation keyed by
    the draw number: fresh every epoch) or plain indices (keyed by the index: a fixed view). An
    :class:`~gan_research.data.base.InMemoryDataset`, so the shared loader batches it by indexing
    and ``data_on_device`` may move it (the degradation still runs on the CPU: its JPEG codec
    does, and ``degrade`` returns on the images' device).
    """

    def __init__(self, clean: torch.Tensor, ranges: DegradationRanges, seed: int) -> None:
        # a and b are the same tensor: A is made from B per batch.
        super().__init__(clean, clean, paired=True, crop_size=None, flip=False, seed=seed)
        self.ranges = ranges

    def to(
        self, device: torch.device | str, memory_format: torch.memory_format = torch.preserve_format
    ) -> None:
        # One copy on the device, not two.
        self.b = self.b.to(device, memory_format=memory_format)
        self.x = self.b

    def __getitems__(self, items: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        keyed = len(items) > 0 and isinstance(items[0], (tuple, list))
        keys = [int(item[1]) for item in items] if keyed else [int(i) for i in items]
        _, clean = super().__getitems__(items)
        return degrade(clean, keys, self.seed, self.ranges), clean


def _degraded_validation(
    clean: torch.Tensor, ranges: DegradationRanges, split_seed: int
) -> TranslationDataset:
    """The validation pairs, degraded once: pair ``i`` keyed by ``i`` under :func:`validation_seed`."""
    degraded = degrade(clean, list(range(len(clean))), validation_seed(split_seed), ranges)
    return TranslationDataset(degraded, clean, paired=True)


class _Restoration(TranslationDataModule):
    """What the restoration datamodules share: one image size and channel count on both sides,
    eq. 1's ranges from the config keys, and the fixed component regions.

    Attributes:
        regions: ``{name: (y0, x0, y1, x1)}``, boxes in pixels of the ``image_size`` images
            (the module docstring); empty when the config gives none. GFP-GAN reads it to train
            one facial-component discriminator per region.
    """

    kinds = (DataKind.PAIRED,)

    def __init__(
        self,
        *,
        image_size: int,
        channels: int,
        flip: bool,
        ranges: dict[str, Any],
        batch_size: int,
        num_workers: int,
        batches_per_step: int,
        seed: int,
        regions: Any = None,
    ) -> None:
        super().__init__(
            crop_size=image_size,
            load_size=image_size,
            flip=flip,
            channels_a=channels,
            channels_b=channels,
            batch_size=batch_size,
            num_workers=num_workers,
            batches_per_step=batches_per_step,
            seed=seed,
            crop_key="image_size",
        )
        self.ranges = degradation_ranges(self.name, **ranges)
        self.regions = check_regions(self.name, regions, self.crop_size)

    @property
    def val_labels(self) -> torch.Tensor | None:
        """The classes of the validation pairs in their fixed order ((N,) int64), or None when
        unknown; :class:`~gan_research.metrics.restoration.RestorationMetrics` scores class
        accuracy against them."""
        return None


class DegradedDigitsDataModule(_Restoration):
    """Embedded blind restoration of the digits: B = the digits at ``image_size`` (bilinear from
    scikit-learn's 8×8, as ``digits_sr``), A = B degraded by eq. 1 on the fly; a seeded held-out
    split (``val_fraction``, ``split_seed``) gives the validation pairs, degraded once.

    Positions in scikit-learn's order: ``train_indices`` and ``val_indices`` (after ``setup``).
    No jitter or mirroring: the digits are already at their final size and are not
    mirror-symmetric. ``blur_sigma`` ... ``interpolation`` and ``regions``: the module docstring.
    """

    name = "digits_degraded"

    def __init__(
        self,
        image_size: int = 32,
        blur_sigma: Sequence[float] = (0.2, 10.0),
        downsample: Sequence[float] = (1.0, 8.0),
        noise: Sequence[float] = (0.0, 15.0),
        jpeg_quality: Sequence[int] = (60, 100),
        anisotropic_prob: float = 0.0,
        kernel_size: int = 41,
        interpolation: str = "bilinear",
        val_fraction: float = 0.1,
        split_seed: int = 0,
        batch_size: int = 16,
        num_workers: int = 0,
        batches_per_step: int = 1,
        seed: int = 0,
        channels: int = 1,
        channels_a: int | None = None,
        channels_b: int | None = None,
        regions: Any = None,
    ) -> None:
        if channels != 1 or isinstance(channels, bool):
            raise ConfigError(
                f"{self.name}: dataset.channels={channels!r} is invalid; the digits are grey: valid: 1"
            )
        super().__init__(
            image_size=image_size,
            channels=1,
            flip=False,
            ranges={
                "blur_sigma": blur_sigma,
                "downsample": downsample,
                "noise": noise,
                "jpeg_quality": jpeg_quality,
                "kernel_size": kernel_size,
                "anisotropic_prob": anisotropic_prob,
                "interpolation": interpolation,
            },
            batch_size=batch_size,
            num_workers=num_workers,
            batches_per_step=batches_per_step,
            seed=seed,
            regions=regions,
        )
        _check_derived(self.name, "channels_a", channels_a, "channels", 1)
        _check_derived(self.name, "channels_b", channels_b, "channels", 1)
        self.val_fraction, self.split_seed = check_digit_split(self.name, val_fraction, split_seed)
        self.train_indices: torch.Tensor | None = None
        self.val_indices: torch.Tensor | None = None
        self._val_labels: torch.Tensor | None = None

    @property
    def domain(self) -> Domain:
        """The clean images are digits: restorations are scored by the digits classifier at
        ``image_size`` (FID, class agreement, identity distance)."""
        return Domain("digits", labelled_data=lambda size: DigitsDataModule(image_size=size))

    @property
    def val_labels(self) -> torch.Tensor:
        """The scikit-learn labels of the validation digits, in the validation order."""
        self.setup("fit")
        assert self._val_labels is not None
        return self._val_labels

    def _build_dataset(self) -> DegradedPairs:
        digits = DigitsDataModule(image_size=self.crop_size, channels=1, batch_size=1)
        digits.setup("fit")
        # test_fraction 0: every digit, in scikit-learn's order (as digit_images).
        images, labels = digits.train_set.x, digits.train_set.y  # type: ignore[attr-defined]
        train, val = digit_splits(len(images), self.val_fraction, self.split_seed)
        self.train_indices, self.val_indices = train, val
        self._val_labels = labels[val]
        self._val_set = _degraded_validation(images[val], self.ranges, self.split_seed)
        log.info(
            "%s: %d training digits (degraded on the fly), %d validation pairs at %d px",
            self.name,
            len(train),
            len(val),
            self.crop_size,
        )
        return DegradedPairs(images[train], self.ranges, self.seed)


class FolderDegradationDataset(Dataset):
    """Clean image files decoded per sample (centre square crop, resized to ``size``), optionally
    mirrored, and degraded by eq. 1: items ``(degraded, clean)`` in [-1, 1].

    Items are ``(index, draw number)`` of :class:`KeyedRandomSampler` (mirroring and degradation
    keyed by the draw number, under ``seed``) or plain indices (keyed by the index, no mirroring).

    Args:
        files: the clean images.
        size: side of the images.
        channels: 1 (grey) or 3 (RGB).
        flip: mirror half of the draws (the reference's ``use_hflip``).
        ranges: eq. 1's ranges.
        seed: the run's seed.
    """

    def __init__(
        self,
        files: Sequence[Path],
        size: int,
        channels: int,
        flip: bool,
        ranges: DegradationRanges,
        seed: int,
    ) -> None:
        self.files = list(files)
        self.size, self.channels, self.flip, self.ranges, self.seed = size, channels, flip, ranges, seed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: Any) -> tuple[torch.Tensor, torch.Tensor]:
        keyed = isinstance(item, (tuple, list))
        index, key = (int(item[0]), int(item[1])) if keyed else (int(item), int(item))
        clean = load_image(self.files[index], self.size, self.channels)  # uint8; DataError if unreadable
        if keyed and self.flip and bool(jitter_draws(self.seed, [key], _FLIP, 2)[0]):
            clean = clean.flip(-1)
        degraded = degrade(clean[None], [key], self.seed, self.ranges)[0]
        return uint8_to_signed_unit(degraded), uint8_to_signed_unit(clean)


class DegradedFolderDataModule(_Restoration):
    """Clean images from a folder, degraded on the fly by eq. 1 (any images; GFP-GAN: FFHQ).

    Layout: ``root/<train_dir>`` and ``root/<val_dir>`` hold images (found recursively, sorted
    path order, extensions png, jpg, jpeg, bmp, webp); with ``val_dir: null`` a seeded
    ``val_fraction`` of ``root/<train_dir>`` (``train_dir: .`` for ``root`` itself: FFHQ's flat
    folder) is held out instead. Every image is centre-cropped to a square and resized to
    ``image_size``. Training images are decoded per sample (``num_workers`` loader processes take
    the decoding and the degradation off the training process), mirrored with ``flip`` (the
    reference's ``use_hflip: true``); validation: ``max_val_images`` images (in file order),
    decoded and degraded once, held in memory as uint8.

    A missing or empty folder, or a file whose header cannot be read, is a DataError naming the
    path at ``setup``; a file that is corrupt past its header is one when it is read.
    ``regions``: fixed boxes of facial components (the module docstring).
    """

    name = "degraded_folder"

    def __init__(
        self,
        root: str | Path = "data/ffhq",
        train_dir: str = "train",
        val_dir: str | None = "val",
        val_fraction: float = 0.1,
        split_seed: int = 0,
        image_size: int = 512,
        channels: int = 3,
        flip: bool = True,
        blur_sigma: Sequence[float] = (0.2, 10.0),
        downsample: Sequence[float] = (1.0, 8.0),
        noise: Sequence[float] = (0.0, 15.0),
        jpeg_quality: Sequence[int] = (60, 100),
        anisotropic_prob: float = 0.0,
        kernel_size: int = 41,
        interpolation: str = "bilinear",
        max_val_images: int = 100,
        batch_size: int = 12,
        num_workers: int = 2,
        batches_per_step: int = 1,
        seed: int = 0,
        channels_a: int | None = None,
        channels_b: int | None = None,
        regions: Any = None,
    ) -> None:
        channels = check_channels(channels, self.name)
        super().__init__(
            image_size=image_size,
            channels=channels,
            flip=flip,
            ranges={
                "blur_sigma": blur_sigma,
                "downsample": downsample,
                "noise": noise,
                "jpeg_quality": jpeg_quality,
                "kernel_size": kernel_size,
                "anisotropic_prob": anisotropic_prob,
                "interpolation": interpolation,
            },
            batch_size=batch_size,
            num_workers=num_workers,
            batches_per_step=batches_per_step,
            seed=seed,
            regions=regions,
        )
        self.channels = channels
        _check_derived(self.name, "channels_a", channels_a, "channels", channels)
        _check_derived(self.name, "channels_b", channels_b, "channels", channels)
        self.layout = (
            f"images under root/{train_dir} and root/{val_dir}"
            if val_dir is not None
            else f"images under root/{train_dir} (val_dir: null holds out val_fraction of them)"
        )
        self.root = _check_root(self.name, root, self.layout)
        self.train_dir = str(train_dir)
        self.val_dir = None if val_dir is None else str(val_dir)
        # Images are found recursively: a validation folder inside the training one would be trained on.
        if self.val_dir is not None and (self.root / self.val_dir).resolve().is_relative_to(
            (self.root / self.train_dir).resolve()
        ):
            raise ConfigError(
                f"{self.name}: dataset.val_dir={self.val_dir!r} lies inside dataset.train_dir="
                f"{self.train_dir!r}, so its images would be trained on; use separate folders, or "
                "val_dir: null to hold out val_fraction of train_dir"
            )
        self.val_fraction, self.split_seed = check_digit_split(
            self.name,
            val_fraction,
            split_seed,
            share="the share of the images held out for validation when dataset.val_dir is null",
        )
        self.max_val_images = check_positive_int(self.name, "max_val_images", max_val_images, form="key")

    def _files(self) -> tuple[list[Path], list[Path]]:
        """(training files, validation files), every header checked."""
        if not self.root.is_dir():
            raise DataError(
                f"{self.name}: dataset.root={self.root} does not exist or is not a folder; expected "
                f"{self.layout}"
            )
        train = list_images(self.root / self.train_dir, self.name, self.layout)
        if self.val_dir is not None:
            val = list_images(self.root / self.val_dir, self.name, self.layout)
        else:
            keep, held_out = digit_splits(len(train), self.val_fraction, self.split_seed)
            # Both sets in file order (the permutation only chooses which files go where).
            train, val = (
                [train[i] for i in sorted(keep.tolist())],
                [train[i] for i in sorted(held_out.tolist())],
            )
        val = val[: self.max_val_images]
        for path in (*train, *val):
            _image_size(path, self.name)  # reads the header only: DataError naming the file
        return train, val

    def _build_dataset(self) -> FolderDegradationDataset:
        train, val = self._files()
        size, channels = self.crop_size, self.channels
        clean = torch.stack(_load_all(lambda p: load_image(p, size, channels), val, self.num_workers))
        self._val_set = _degraded_validation(clean, self.ranges, self.split_seed)
        log.info(
            "%s: %d training images (degraded on the fly), %d validation pairs at %d px",
            self.name,
            len(train),
            len(val),
            size,
        )
        return FolderDegradationDataset(train, size, channels, self.flip, self.ranges, self.seed)
