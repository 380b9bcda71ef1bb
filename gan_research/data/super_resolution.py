"""Super-resolution data: (low-resolution, high-resolution) image pairs (SRGAN, Ledig et al. 2017).

Every datamodule here is a paired translation dataset (``DataKind.PAIRED``) whose source domain
A is smaller than B: ``spec.image_size_a = image_size / scale``. Batches are ``(lr, hr)`` in
[-1, 1]; ``val_dataloader`` yields the held-out pairs in a fixed order.

Low-resolution images are made the way SR benchmarks make them: bicubic downsampling with
antialiasing (``F.interpolate(mode="bicubic", antialias=True)``: Keys' cubic with a = -0.5,
the kernel widened by the scale, as MATLAB's ``imresize`` that produced Set5/Set14/DIV2K's LR
images and as PIL's ``BICUBIC``), applied to the high-resolution crop, so every crop has its own
exact LR counterpart (the paper: "obtained the LR images by downsampling the HR images using
bicubic kernel with downsampling factor r = 4", §3.2). Given LR files (paired folders, DIV2K's
``*_LR_bicubic`` layout) are used as they are instead.

- ``digits_sr`` (:class:`DigitsSuperResolutionDataModule`): embedded, no download. The 1797
  scikit-learn digits at 32 px as HR, their ×4 bicubic downsampling (8 px) as LR.
- ``sr_folder`` (:class:`SuperResolutionFolderDataModule`): a folder of HR images of any size
  (DIV2K, ImageNet crops), read from disk per step: random ``crop_size`` HR crops (96 px as the
  paper), optionally mirrored, their LR made on the fly or cropped from an ``lr_root`` folder of
  matching file names; validation: the centre ``crop_size`` crop of each validation image.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from gan_research.data.base import ConfigError, DataError, check_channels
from gan_research.data.digits import DigitsDataModule
from gan_research.data.translation.base import TranslationDataModule, TranslationDataset
from gan_research.data.translation.digits import check_digit_split, digit_images, digit_splits
from gan_research.data.translation.folders import _check_derived, _check_root, list_images
from gan_research.data.translation.jitter import jitter_draws
from gan_research.utils.data_spec import DataKind, Domain
from gan_research.utils.images import resize_bicubic
from gan_research.utils.validation import check_positive_int

log = logging.getLogger(__name__)

#: Scale factors the datamodules make (those SRResNet's ×2 sub-pixel blocks can undo).
SCALES = (2, 4, 8)
# Jitter streams of the folder dataset (see translation.jitter.jitter_draws).
_TOP, _LEFT, _FLIP = 11, 12, 13


def bicubic_downsample(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """``hr`` (B, C, H, W) in [-1, 1] downsampled by ``scale`` (MATLAB/PIL bicubic, antialiased)."""
    return resize_bicubic(hr, (hr.shape[-2] // scale, hr.shape[-1] // scale))


def bicubic_upsample(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic baseline of every SR paper: ``lr`` upsampled by ``scale`` (MATLAB/PIL bicubic)."""
    return resize_bicubic(lr, (lr.shape[-2] * scale, lr.shape[-1] * scale))


def check_scale(owner: str, scale: Any) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in SCALES:
        raise ConfigError(
            f"{owner}: dataset.scale={scale!r} is invalid: valid scales are {', '.join(map(str, SCALES))}"
        )
    return scale


class _SuperResolution(TranslationDataModule):
    """What the SR datamodules share: ``scale`` and the smaller A side."""

    kinds = (DataKind.PAIRED,)

    def __init__(self, *, crop_size: int, scale: int, channels: int, crop_key: str, **kwargs: Any) -> None:
        super().__init__(
            crop_size=crop_size,
            load_size=crop_size,
            channels_a=channels,
            channels_b=channels,
            crop_key=crop_key,
            **kwargs,
        )
        self.scale = check_scale(self.name, scale)
        if self.crop_size % self.scale != 0:
            raise ConfigError(
                f"{self.name}: dataset.{crop_key}={crop_size} is not a multiple of dataset.scale="
                f"{scale}: the low-resolution side would be {crop_size / scale:g} px; use a multiple "
                f"of {scale}"
            )

    @property
    def image_size_a(self) -> int:
        """Side of the low-resolution inputs."""
        return self.crop_size // self.scale

    @property
    def a_shape(self) -> tuple[int, int, int]:
        return (self.channels_a, self.image_size_a, self.image_size_a)


class DigitsSuperResolutionDataModule(_SuperResolution):
    """Embedded ×``scale`` super-resolution of the digits: HR = the digits at ``image_size``
    (bilinear from scikit-learn's 8×8), LR = their bicubic downsampling; a seeded held-out split
    (``val_fraction``, ``split_seed``) gives the validation pairs. No jitter: the images are
    already at their final size. FID of the outputs uses the digits classifier."""

    name = "digits_sr"

    def __init__(
        self,
        image_size: int = 32,
        scale: int = 4,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        batch_size: int = 16,
        num_workers: int = 0,
        batches_per_step: int = 1,
        seed: int = 0,
        channels: int = 1,
    ) -> None:
        if channels != 1 or isinstance(channels, bool):
            raise ConfigError(
                f"digits_sr: dataset.channels={channels!r} is invalid; the digits are grey: valid: 1"
            )
        super().__init__(
            crop_size=image_size,
            scale=scale,
            channels=1,
            crop_key="image_size",
            flip=False,
            batch_size=batch_size,
            num_workers=num_workers,
            batches_per_step=batches_per_step,
            seed=seed,
        )
        self.val_fraction, self.split_seed = check_digit_split(self.name, val_fraction, split_seed)

    @property
    def domain(self) -> Domain:
        """HR images are digits: outputs are scored by the digits classifier at ``image_size``."""
        return Domain("digits", labelled_data=lambda size: DigitsDataModule(image_size=size))

    def _load_splits(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        hr = digit_images(self.crop_size)
        lr = bicubic_downsample(hr, self.scale)
        train, val = digit_splits(len(hr), self.val_fraction, self.split_seed)
        return lr[train], hr[train], lr[val], hr[val]

    def _build_dataset(self) -> TranslationDataset:
        train_lr, train_hr, val_lr, val_hr = self._load_splits()
        self._val_set = TranslationDataset(val_lr, val_hr, paired=True)
        return TranslationDataset(train_lr, train_hr, paired=True, seed=self.seed)


class FolderSuperResolutionDataset(Dataset):
    """HR image files decoded per sample: a random ``crop`` × ``crop`` HR crop (optionally mirrored)
    and its LR counterpart. Items are ``(index, draw)`` keys of :class:`KeyedRandomSampler`, so
    the crop follows the data stream and a resumed run sees the same crops.

    Args:
        hr_files: the HR images.
        lr_files: matching LR images (``scale`` times smaller), or None to downsample the crop.
        crop: HR crop side (a multiple of ``scale``).
        scale, channels, flip, seed: as the datamodule's.
    """

    def __init__(
        self,
        hr_files: Sequence[Path],
        lr_files: Sequence[Path] | None,
        crop: int,
        scale: int,
        channels: int,
        flip: bool,
        seed: int,
    ) -> None:
        self.hr_files = list(hr_files)
        self.lr_files = None if lr_files is None else list(lr_files)
        self.crop, self.scale, self.channels, self.flip, self.seed = crop, scale, channels, flip, seed

    def __len__(self) -> int:
        return len(self.hr_files)

    def _read(self, path: Path) -> torch.Tensor:
        with Image.open(path) as image:
            image = image.convert("RGB" if self.channels == 3 else "L")
            data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
            return data.view(image.height, image.width, self.channels).permute(2, 0, 1)

    def __getitem__(self, item: Any) -> tuple[torch.Tensor, torch.Tensor]:
        index, key = item if isinstance(item, (tuple, list)) else (item, None)
        hr = self._read(self.hr_files[index])
        s, crop = self.scale, self.crop
        # Crop positions on the LR grid, so a given LR file and the HR crop stay aligned.
        rows, cols = (hr.shape[-2] - crop) // s + 1, (hr.shape[-1] - crop) // s + 1
        if key is None:  # a fixed view: the centre crop
            top, left, mirror = rows // 2, cols // 2, False
        else:
            top = int(jitter_draws(self.seed, [key], _TOP, rows)[0])
            left = int(jitter_draws(self.seed, [key], _LEFT, cols)[0])
            mirror = self.flip and bool(jitter_draws(self.seed, [key], _FLIP, 2)[0])
        hr = hr[:, top * s : top * s + crop, left * s : left * s + crop].float() / 127.5 - 1.0
        if self.lr_files is None:
            lr = bicubic_downsample(hr[None], s)[0]
        else:
            low = self._read(self.lr_files[index])
            side = crop // s
            lr = low[:, top : top + side, left : left + side].float() / 127.5 - 1.0
        if mirror:
            hr, lr = hr.flip(-1), lr.flip(-1)
        return lr, hr


def _image_size(path: Path, owner: str) -> tuple[int, int]:
    """(width, height) from the file's header, or one DataError naming the file."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError) as err:
        raise DataError(f"{owner}: cannot read image {path}: {err}") from None


class SuperResolutionFolderDataModule(_SuperResolution):
    """HR images in ``root/<train_dir>`` and ``root/<val_dir>`` (any sizes, at least ``crop_size``
    on each side), LR inputs made by bicubic downsampling or read from ``lr_root`` (the same
    sub-folders and relative paths, each file's stem followed by ``lr_suffix``, ``scale`` times
    smaller: DIV2K's ``X4/0001x4.png`` for ``0001.png`` with ``lr_suffix: x4``).

    Training: random HR crops decoded per step (``num_workers`` loader processes take the
    decoding off the training process). Validation: the centre crop of every validation image,
    held in memory (``max_val_images`` of them, in file-name order).
    """

    name = "sr_folder"

    def __init__(
        self,
        root: str = "data/div2k",
        train_dir: str = "train",
        val_dir: str = "val",
        lr_root: str | None = None,
        lr_suffix: str = "",
        crop_size: int = 96,
        image_size: int | None = None,
        scale: int = 4,
        flip: bool = True,
        channels: int = 3,
        max_val_images: int = 100,
        batch_size: int = 16,
        num_workers: int = 2,
        batches_per_step: int = 1,
        seed: int = 0,
    ) -> None:
        channels = check_channels(channels, self.name)
        super().__init__(
            crop_size=crop_size,
            scale=scale,
            channels=channels,
            crop_key="crop_size",
            flip=flip,
            batch_size=batch_size,
            num_workers=num_workers,
            batches_per_step=batches_per_step,
            seed=seed,
        )
        _check_derived(self.name, "image_size", image_size, "crop_size", self.crop_size)
        self.root = _check_root(self.name, root, "a folder of HR images per split")
        self.train_dir, self.val_dir = str(train_dir), str(val_dir)
        self.lr_root = None if lr_root is None else Path(str(lr_root)).expanduser()
        self.lr_suffix = str(lr_suffix or "")
        self.max_val_images = check_positive_int(self.name, "max_val_images", max_val_images, form="key")

    def _files(self, split: str) -> tuple[list[Path], list[Path] | None]:
        layout = f"HR images under {self.root}/{self.train_dir} and {self.root}/{self.val_dir}"
        hr = list_images(self.root / split, self.name, layout)
        lr = None
        if self.lr_root is not None:
            # The same relative path (sub-folders included), the stem suffixed as DIV2K names its
            # LR files (0001.png -> 0001x4.png with lr_suffix: x4).
            folder = self.root / split
            lr = [
                (self.lr_root / split / p.relative_to(folder)).with_name(p.stem + self.lr_suffix + p.suffix)
                for p in hr
            ]
            missing = [str(p) for p in lr if not p.is_file()]
            if missing:
                raise DataError(
                    f"{self.name}: {len(missing)} LR image(s) missing under dataset.lr_root, e.g. "
                    f"{missing[0]} (each HR file needs an LR file of the same name)"
                )
        for index, path in enumerate(hr):
            width, height = _image_size(path, self.name)
            if min(width, height) < self.crop_size:
                raise DataError(
                    f"{self.name}: HR image {path} is {width}x{height} px, smaller than "
                    f"dataset.crop_size={self.crop_size}; use a crop_size <= {min(width, height)} "
                    "or remove the image"
                )
            if lr is not None:
                size = _image_size(lr[index], self.name)
                if size != (width // self.scale, height // self.scale):
                    raise DataError(
                        f"{self.name}: LR image {lr[index]} is {size[0]}x{size[1]} px; for the "
                        f"{width}x{height} HR image and dataset.scale={self.scale} it must be "
                        f"{width // self.scale}x{height // self.scale}"
                    )
        return hr, lr

    def _build_dataset(self) -> FolderSuperResolutionDataset:
        train_hr, train_lr = self._files(self.train_dir)
        val_hr, val_lr = self._files(self.val_dir)
        val_hr, val_lr = (
            val_hr[: self.max_val_images],
            None if val_lr is None else val_lr[: self.max_val_images],
        )
        common = {"crop": self.crop_size, "scale": self.scale, "channels": self.channels_b, "seed": self.seed}
        val = FolderSuperResolutionDataset(val_hr, val_lr, flip=False, **common)
        pairs = [val[i] for i in range(len(val))]
        self._val_set = TranslationDataset(
            torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]), paired=True
        )
        log.info(
            "%s: %d training HR images (random %d px crops, x%d), %d validation crops",
            self.name,
            len(train_hr),
            self.crop_size,
            self.scale,
            len(val_hr),
        )
        return FolderSuperResolutionDataset(train_hr, train_lr, flip=self.flip, **common)
