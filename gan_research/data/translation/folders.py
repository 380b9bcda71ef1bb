"""Translation data from folders of image files: the pix2pix (paired) and CycleGAN (unpaired) layouts.

Listing and decoding the files (:func:`list_images`, :func:`load_image`,
:func:`load_side_by_side`), the checks of the folder datamodules' settings, and
:class:`PairedFolderDataModule` and :class:`UnpairedFolderDataModule`, which hold the decoded
images in memory as uint8 at ``load_size`` (memory: the package docstring).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from gan_research.data.base import check_channels
from gan_research.data.image_folder import DEFAULT_EXTENSIONS
from gan_research.data.translation.base import TranslationDataModule
from gan_research.errors import ConfigError, DataError
from gan_research.utils.data_spec import DataKind

DIRECTIONS = ("AtoB", "BtoA")

# What PIL raises for unreadable, truncated or hostile files (as image_folder.py).
_PIL_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
# Decoding is mostly C code that releases the GIL, so a few threads speed up loading.
_MAX_LOAD_THREADS = 8
_EXTENSIONS = tuple("." + e for e in DEFAULT_EXTENSIONS)

T = TypeVar("T")


def _check_derived(owner: str, key: str, given: Any, source: str, value: Any) -> None:
    """``dataset.<key>`` is read by model configs; it must agree with what it is derived from."""
    if given is not None and given != value:
        raise ConfigError(
            f"{owner}: dataset.{key}={given!r} disagrees with dataset.{source}={value!r}; {key} is "
            f"derived from {source} (the config sets {key}: ${{.{source}}}): set dataset.{source} instead"
        )


def _check_direction(owner: str, direction: Any) -> str:
    if direction not in DIRECTIONS:
        raise ConfigError(f"{owner}: dataset.direction={direction!r} is invalid; valid: {list(DIRECTIONS)}")
    return str(direction)


def _check_root(owner: str, root: Any, layout: str) -> Path:
    if root is None or str(root) in ("", "???"):
        raise ConfigError(
            f"{owner}: dataset.root must be the path of a folder holding {layout}, got {root!r}"
        )
    return Path(root).expanduser()


def list_images(folder: Path, owner: str, layout: str) -> list[Path]:
    """Image files under ``folder`` (recursively, hidden entries skipped), sorted by path.

    Raises DataError naming ``folder`` when it is missing, not a folder, or holds no images.
    """
    if not folder.exists():
        raise DataError(f"{owner}: {folder} does not exist; expected {layout}")
    if not folder.is_dir():
        raise DataError(f"{owner}: {folder} is a file, not a folder of images; expected {layout}")
    files = sorted(
        f
        for f in folder.rglob("*")
        if f.is_file()
        and f.suffix.lower() in _EXTENSIONS
        and not any(part.startswith(".") for part in f.relative_to(folder).parts)
    )
    if not files:
        raise DataError(
            f"{owner}: no image files in {folder} (searched extensions: {', '.join(DEFAULT_EXTENSIONS)})"
        )
    return files


def _to_tensor(image: Image.Image, size: int, channels: int) -> torch.Tensor:
    # Bicubic, as the reference's transforms.Resize(method=BICUBIC).
    image = image.resize((size, size), Image.Resampling.BICUBIC)
    pixels = np.asarray(image, dtype=np.uint8).copy()
    return torch.from_numpy(pixels).view(size, size, channels).permute(2, 0, 1)


def load_image(path: Path, size: int, channels: int) -> torch.Tensor:
    """Decode ``path`` as grey (1) or RGB (3), resize to ``size`` x ``size``: uint8 (C, size, size).

    Raises DataError naming the file when PIL cannot read it.
    """
    try:
        with Image.open(path) as image:
            return _to_tensor(image.convert("L" if channels == 1 else "RGB"), size, channels)
    except _PIL_ERRORS as error:
        raise DataError(f"cannot read image file {path}: {error}. Delete or replace it.") from error


def load_side_by_side(path: Path, size: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a pix2pix image into its left (A) and right (B) halves, each resized to ``size``.

    As the reference's ``aligned_dataset.py`` (``w2 = w // 2``), but an odd width is an
    error: the halves of such a file are not the same width, so it is not an A|B pair.
    """
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            width, height = image.size
            if width % 2:
                raise DataError(
                    f"paired image {path} is {width}x{height}: its width is odd, so it is not two "
                    "images of the same size side by side (A on the left, B on the right)"
                )
            half = width // 2
            a = _to_tensor(image.crop((0, 0, half, height)), size, channels)
            b = _to_tensor(image.crop((half, 0, width, height)), size, channels)
    except _PIL_ERRORS as error:
        raise DataError(f"cannot read image file {path}: {error}. Delete or replace it.") from error
    return a, b


def _load_all(load: Callable[[Path], T], files: list[Path], num_workers: int) -> list[T]:
    pool = ThreadPoolExecutor(max_workers=min(_MAX_LOAD_THREADS, max(1, num_workers)))
    try:
        return list(pool.map(load, files))
    finally:
        # On the first unreadable file, do not wait for the rest to decode.
        pool.shutdown(wait=True, cancel_futures=True)


class PairedFolderDataModule(TranslationDataModule):
    """Pairs in the layout of the pix2pix datasets (Isola et al. 2017; ``aligned_dataset.py``).

    ``root/train`` (training) and ``root/val`` (validation; ``root/test`` when there is no
    ``val``) hold images of A (left half) and B (right half) side by side, found recursively
    (extensions jpg, jpeg, png, bmp, webp; sorted path order). Each half is resized to
    ``load_size`` (training) or ``crop_size`` (validation) with bicubic interpolation.
    ``direction="BtoA"`` makes the right half ``a`` and the left half ``b``.

    ``image_size``, ``channels_a`` and ``channels_b`` are accepted for the configs (model
    configs read ``${dataset.image_size}``, ...) and must equal ``crop_size`` / ``channels``.
    All files are read and checked in ``setup``, before training: a missing or empty
    folder, an unreadable file or an odd width raises DataError naming the path.
    """

    name = "paired_folder"
    kinds = (DataKind.PAIRED,)

    def __init__(
        self,
        root: str | Path,
        load_size: int = 286,
        crop_size: int = 256,
        direction: str = "AtoB",
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
            crop_size=crop_size,
            load_size=load_size,
            flip=flip,
            channels_a=channels,
            channels_b=channels,
            batch_size=batch_size,
            num_workers=num_workers,
            batches_per_step=batches_per_step,
            seed=seed,
        )
        self.layout = "train/ and val/ (or test/) folders of A|B side-by-side images, as the pix2pix datasets"
        self.root = _check_root(self.name, root, self.layout)
        self.direction = _check_direction(self.name, direction)
        self.channels = channels
        _check_derived(self.name, "image_size", image_size, "crop_size", self.crop_size)
        _check_derived(self.name, "channels_a", channels_a, "channels", channels)
        _check_derived(self.name, "channels_b", channels_b, "channels", channels)

    def _split_dir(self, split: str) -> Path:
        if not self.root.is_dir():
            raise DataError(
                f"{self.name}: dataset.root={self.root} does not exist or is not a folder; expected "
                f"{self.layout}"
            )
        if split == "val" and not (self.root / "val").exists() and (self.root / "test").exists():
            return self.root / "test"
        return self.root / split

    def _read(self, split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        files = list_images(self._split_dir(split), self.name, self.layout)
        pairs = _load_all(lambda p: load_side_by_side(p, size, self.channels), files, self.num_workers)
        left, right = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
        return (left, right) if self.direction == "AtoB" else (right, left)

    def _load_splits(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        # Both folders are listed before any image is decoded, so a missing one fails fast.
        for split in ("train", "val"):
            list_images(self._split_dir(split), self.name, self.layout)
        train_a, train_b = self._read("train", self.load_size)
        val_a, val_b = self._read("val", self.crop_size)
        return train_a, train_b, val_a, val_b


class UnpairedFolderDataModule(TranslationDataModule):
    """Two unpaired domains in the CycleGAN datasets' layout (Zhu et al. 2017; ``unaligned_dataset.py``).

    ``root/trainA``, ``root/trainB`` (training) and ``root/testA``, ``root/testB``
    (validation, zipped to the shorter one) hold images, found recursively in sorted path
    order, resized (bicubic) to ``load_size`` for training and to ``crop_size`` for
    validation. An epoch is one pass over trainA; each A image is paired with a B image
    drawn uniformly at random, with its own crop and flip. ``direction="BtoA"`` swaps the
    domains. ``image_size``, ``channels_a`` and ``channels_b`` are accepted for the configs
    and must equal ``crop_size`` / ``channels``. Files are checked in ``setup`` (DataError
    naming the path).
    """

    name = "unpaired_folder"
    kinds = (DataKind.UNPAIRED,)

    def __init__(
        self,
        root: str | Path,
        load_size: int = 286,
        crop_size: int = 256,
        flip: bool = True,
        channels: int = 3,
        batch_size: int = 1,
        num_workers: int = 0,
        batches_per_step: int = 1,
        seed: int = 0,
        direction: str = "AtoB",
        image_size: int | None = None,
        channels_a: int | None = None,
        channels_b: int | None = None,
    ) -> None:
        channels = check_channels(channels, self.name)
        super().__init__(
            crop_size=crop_size,
            load_size=load_size,
            flip=flip,
            channels_a=channels,
            channels_b=channels,
            batch_size=batch_size,
            num_workers=num_workers,
            batches_per_step=batches_per_step,
            seed=seed,
        )
        self.layout = "folders trainA/, trainB/, testA/ and testB/ of images, as the CycleGAN datasets"
        self.root = _check_root(self.name, root, self.layout)
        self.direction = _check_direction(self.name, direction)
        self.channels = channels
        _check_derived(self.name, "image_size", image_size, "crop_size", self.crop_size)
        _check_derived(self.name, "channels_a", channels_a, "channels", channels)
        _check_derived(self.name, "channels_b", channels_b, "channels", channels)

    def _load_splits(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self.root.is_dir():
            raise DataError(
                f"{self.name}: dataset.root={self.root} does not exist or is not a folder; expected "
                f"{self.layout}"
            )
        a, b = ("A", "B") if self.direction == "AtoB" else ("B", "A")
        folders = [f"train{a}", f"train{b}", f"test{a}", f"test{b}"]
        files = [list_images(self.root / folder, self.name, self.layout) for folder in folders]
        sizes = [self.load_size, self.load_size, self.crop_size, self.crop_size]
        out = []
        for paths, size in zip(files, sizes, strict=True):
            images = _load_all(lambda p, s=size: load_image(p, s, self.channels), paths, self.num_workers)
            out.append(torch.stack(images))
        return out[0], out[1], out[2], out[3]
