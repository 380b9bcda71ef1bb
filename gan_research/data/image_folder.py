"""A folder of your own images: flat, or one subfolder per class.

Layouts::

    root/a.png, root/b.jpg, ...              flat: labels are 0, num_classes is None
    root/cat/a.png, root/dog/b.png, ...      classes: label = index of the sorted folder name

Every image is centre-cropped to a square and resized to ``image_size``. Files are
checked before training starts: with ``cache=true`` (default) every image is
decoded into a uint8 tensor in memory, which reads each file completely; with
``cache=false`` images are decoded per sample during training, so ``verify=true``
first runs PIL's ``verify()`` over every file to catch corrupt ones early.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from gan_research.data.base import GANDataModule, InMemoryDataset, check_channels, uint8_to_signed_unit
from gan_research.errors import ConfigError, DataError
from gan_research.utils.validation import check_positive_int

DEFAULT_EXTENSIONS = ("png", "jpg", "jpeg", "bmp", "webp")

# What PIL raises for unreadable, truncated or hostile files.
_PIL_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)

# Decoding is mostly C code that releases the GIL, so a few threads speed up caching.
_MAX_LOAD_THREADS = 8


def load_image(path: Path, image_size: int, channels: int) -> torch.Tensor:
    """Decode ``path``, centre-crop it to a square, resize it: uint8 tensor (C, size, size).

    Raises DataError naming the file when PIL cannot read it.
    """
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            width, height = image.size
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            image = image.crop((left, top, left + side, top + side))
            image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except _PIL_ERRORS as error:
        raise DataError(f"cannot read image file {path}: {error}. Delete or replace it.") from error
    return torch.from_numpy(pixels.copy()).view(image_size, image_size, channels).permute(2, 0, 1)


class ImageFileDataset(Dataset):
    """Images decoded from disk per sample (``cache=false``), as float32 in [-1, 1]."""

    def __init__(self, files: Sequence[Path], labels: Sequence[int], image_size: int, channels: int) -> None:
        self.files = list(files)
        self.labels = list(labels)
        self.image_size = image_size
        self.channels = channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = load_image(self.files[index], self.image_size, self.channels)
        return uint8_to_signed_unit(image), self.labels[index]


@dataclass(frozen=True)
class _Layout:
    files: list[Path]
    labels: list[int]
    classes: list[str] | None  # None for a flat folder


class ImageFolderDataModule(GANDataModule):
    """Images from ``root`` (see the module docstring for layouts, caching and checks)."""

    name = "image_folder"

    def __init__(
        self,
        root: str | Path,
        image_size: int = 64,
        channels: int = 3,
        extensions: Sequence[str] = DEFAULT_EXTENSIONS,
        verify: bool = True,
        cache: bool = True,
        batch_size: int = 64,
        num_workers: int = 0,
        batches_per_step: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(
            batch_size=batch_size, num_workers=num_workers, batches_per_step=batches_per_step, seed=seed
        )
        if root is None or str(root) in ("", "???"):
            raise ConfigError(
                f"image_folder: dataset.root must be the path of a folder of images, got {root!r}"
            )
        self.root = Path(root).expanduser()
        self.image_size = check_positive_int(self.name, "image_size", image_size, form="key")
        self.channels = check_channels(channels, self.name)
        if isinstance(extensions, str):
            extensions = [extensions]
        if not extensions or not all(isinstance(e, str) and e.strip(".") for e in extensions):
            raise ConfigError(
                f"image_folder: dataset.extensions must be a non-empty list of file extensions "
                f"such as {list(DEFAULT_EXTENSIONS)}, got {extensions!r}"
            )
        self.extensions = tuple(sorted({"." + e.lower().lstrip(".") for e in extensions}))
        for flag, value in (("verify", verify), ("cache", cache)):
            if not isinstance(value, bool):
                raise ConfigError(f"image_folder: dataset.{flag} must be true or false, got {value!r}")
        self.verify = verify
        self.cache = cache
        self._layout: _Layout | None = None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (self.channels, self.image_size, self.image_size)

    @property
    def num_classes(self) -> int | None:
        """Number of class subfolders, or None for a flat folder (lists ``root`` on first use)."""
        classes = self.layout.classes
        return None if classes is None else len(classes)

    @property
    def classes(self) -> list[str] | None:
        """Class folder names in label order, or None for a flat folder."""
        return self.layout.classes

    @property
    def layout(self) -> _Layout:
        if self._layout is None:
            self._layout = self._scan()
        return self._layout

    def _is_image(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() in self.extensions

    def _scan(self) -> _Layout:
        root = self.root
        if not root.exists():
            raise DataError(
                f"image_folder: dataset.root={root} does not exist. Point dataset.root at a folder of "
                f"images, or at a folder with one subfolder of images per class."
            )
        if not root.is_dir():
            raise DataError(f"image_folder: dataset.root={root} is a file, not a folder of images.")
        # Hidden entries (.DS_Store, .ipynb_checkpoints) are never data.
        entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
        flat = [p for p in entries if self._is_image(p)]
        per_class = {
            d.name: sorted(
                f
                for f in d.rglob("*")
                if self._is_image(f) and not any(part.startswith(".") for part in f.relative_to(d).parts)
            )
            for d in entries
            if d.is_dir()
        }
        searched = ", ".join(self.extensions)
        if flat and any(per_class.values()):
            raise DataError(
                f"image_folder: {root} holds both images and subfolders of images; use either a flat "
                f"folder or one subfolder per class (move the {len(flat)} top-level images, e.g. "
                f"{flat[0].name}, into a subfolder)."
            )
        if flat:
            return _Layout(files=flat, labels=[0] * len(flat), classes=None)
        if not any(per_class.values()):
            raise DataError(
                f"image_folder: no image files in {root} or its subfolders "
                f"(searched extensions: {searched}; set dataset.extensions to add others)."
            )
        empty = [name for name, files in per_class.items() if not files]
        if empty:
            raise DataError(
                f"image_folder: class subfolders {empty} of {root} contain no images with extensions "
                f"{searched}; remove them or add images, since every subfolder is a class."
            )
        classes = sorted(per_class)
        files = [f for name in classes for f in per_class[name]]
        labels = [label for label, name in enumerate(classes) for _ in per_class[name]]
        return _Layout(files=files, labels=labels, classes=classes)

    def _build_dataset(self) -> Dataset:
        layout = self.layout
        if self.cache:
            return InMemoryDataset(self._load_all(layout.files), torch.tensor(layout.labels))
        if self.verify:
            for path in layout.files:
                try:
                    with Image.open(path) as image:
                        image.verify()
                except _PIL_ERRORS as error:
                    raise DataError(
                        f"cannot read image file {path}: {error}. Delete or replace it."
                    ) from error
        return ImageFileDataset(layout.files, layout.labels, self.image_size, self.channels)

    def _load_all(self, files: list[Path]) -> torch.Tensor:
        threads = min(_MAX_LOAD_THREADS, max(1, self.num_workers))
        pool = ThreadPoolExecutor(max_workers=threads)
        try:
            images = list(pool.map(lambda path: load_image(path, self.image_size, self.channels), files))
        finally:
            # On the first unreadable file, do not wait for the rest to decode.
            pool.shutdown(wait=True, cancel_futures=True)
        return torch.stack(images)
