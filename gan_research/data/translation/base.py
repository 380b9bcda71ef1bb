"""Image-to-image translation data (pix2pix, CycleGAN): pairs ``(a, b)`` or two unpaired domains.

Four datamodules, all yielding training batches ``(a, b)`` of float images in [-1, 1]:

- :class:`PairedFolderDataModule`: the layout of the pix2pix datasets (facades, maps,
  cityscapes, edges2shoes, ...): ``root/train`` and ``root/val`` (or ``root/test``) hold
  images with A in the left half and B in the right half.
- :class:`UnpairedFolderDataModule`: the layout of the CycleGAN datasets (horse2zebra, ...):
  ``root/trainA``, ``root/trainB``, ``root/testA``, ``root/testB``.
- :class:`DigitsEdgesDataModule` (paired) and :class:`DigitsInvertedDataModule` (unpaired):
  embedded tasks built from scikit-learn's digits, no download.

**Random jitter** follows the reference implementation's ``--preprocess resize_and_crop``
(pix2pix sec. 6.2: "resizing the 256x256 input images to 286x286 and then randomly cropping
back to size 256x256", plus mirroring; ``data/base_dataset.py`` of
junyanz/pytorch-CycleGAN-and-pix2pix): every image is resized to ``load_size`` once, when
it is loaded (the resize is deterministic, so doing it once gives the reference's pixels),
and each training sample is cropped to ``crop_size`` at a random offset and flipped with
probability 1/2 when ``flip``. Paired data gets the same crop and flip in ``a`` and ``b``
(``aligned_dataset.py``: one ``get_params`` for both); unpaired data draws them, and the
B image itself, independently of ``a`` (``unaligned_dataset.py``: ``index_B`` uniform at
random). Validation images are resized straight to ``crop_size``: no crop, no flip.

**Reproducible jitter, exact resume.** The jitter draws no random numbers from any
generator with state. The training sampler (:class:`KeyedRandomSampler`) pairs every
index with its *draw number* ``k`` (permutation number * dataset size + position in that
permutation), and a sample's crop offsets, flip and (unpaired) B index are a counter-based
hash (SplitMix64, Steele et al. 2014) of ``(seed, k, stream)``. So the jitter is a pure
function of the seed and the position in the data stream: identical for two datamodules
with the same seed, with any ``num_workers`` or prefetching, under DDP (a rank's sample
has the draw number it has in the one-process stream), and after a resume, since
``fast_forward`` restores the permutation count with the sampler's position. The global
torch RNG is never touched.

**Memory.** Images are held in memory (uint8 for the folder datasets, float32 for the
digits), resized to ``load_size``: the pix2pix/CycleGAN datasets are small (facades: 400
training pairs, 0.2 GB at 286 px; maps: 1,096, 0.5 GB; horse2zebra: 2,401 images, 0.6 GB),
and in-memory tensors batch by indexing, move to the GPU with ``callbacks.fast_path``,
and crop on the fly there. The edges2shoes/edges2handbags sets (50k/137k pairs, 25/70 GB
at 286 px) do not fit: use a subset, or a smaller ``load_size``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, SequentialSampler

from gan_research.data.base import (
    GANDataModule,
    InMemoryDataset,
    ResumableRandomSampler,
    _batch_as_is,
    check_channels,
    check_positive_int,
    uint8_to_signed_unit,
)
from gan_research.data.digits import DigitsDataModule
from gan_research.data.image_folder import DEFAULT_EXTENSIONS
from gan_research.errors import ConfigError, DataError
from gan_research.utils.data_spec import DataKind, Domain

log = logging.getLogger(__name__)

DIRECTIONS = ("AtoB", "BtoA")

# What PIL raises for unreadable, truncated or hostile files (as image_folder.py).
_PIL_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
# Decoding is mostly C code that releases the GIL, so a few threads speed up loading.
_MAX_LOAD_THREADS = 8
_EXTENSIONS = tuple("." + e for e in DEFAULT_EXTENSIONS)

# Independent hash streams of one sample's jitter: A's crop and flip (shared by B when
# paired), B's own crop and flip, and the B image drawn for an unpaired A.
_TOP_A, _LEFT_A, _FLIP_A, _TOP_B, _LEFT_B, _FLIP_B, _B_INDEX = range(7)

_U64 = (1 << 64) - 1

T = TypeVar("T")


# -- counter-based jitter ------------------------------------------------------------
def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function (Steele, Lea & Flood 2014) on uint64 arrays (wrapping)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def jitter_draws(seed: int, keys: Sequence[int] | np.ndarray, stream: int, high: int) -> torch.Tensor:
    """One integer in ``[0, high)`` per draw number in ``keys``: a hash of ``(seed, key, stream)``.

    The same arguments always give the same integers; different streams or keys give
    (statistically) independent ones. The modulo bias is below ``high / 2**64``.
    """
    keys = np.asarray(keys, dtype=np.uint64)
    salt = _splitmix64(np.asarray([seed & _U64], dtype=np.uint64))
    hashed = _splitmix64(_splitmix64(keys ^ salt) + np.uint64(stream))
    return torch.from_numpy((hashed % np.uint64(high)).astype(np.int64))


class KeyedRandomSampler(ResumableRandomSampler):
    """:class:`ResumableRandomSampler`'s indices, each paired with its draw number.

    Yields ``(index, key)`` with ``key = p * n + position``: ``p`` counts the permutations
    drawn before (one per epoch) and ``position`` is the place in the one-process
    permutation of ``n`` samples, also under DDP. The translation datasets derive a
    sample's random jitter from ``key`` (see the module docstring).
    """

    def __init__(self, data_source: Any, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(data_source, seed=seed, num_replicas=num_replicas, rank=rank)
        self._permutations = 0

    def fast_forward(self, batches: int, batch_size: int) -> None:
        super().fast_forward(batches, batch_size)
        self._permutations = batches // (len(self) // batch_size)

    def __iter__(self) -> Any:
        # ResumableRandomSampler.__iter__'s order, with the keys sliced alongside.
        n = len(self.dataset)  # type: ignore[arg-type]
        skip, self._skip = self._skip, 0
        first = self._permutations * n
        self._permutations += 1
        perm = torch.randperm(n, generator=self.generator)
        keys = torch.arange(first, first + n)
        if self.num_replicas > 1:
            keep = len(self) * self.num_replicas
            perm = perm[:keep][self.rank :: self.num_replicas]
            keys = keys[:keep][self.rank :: self.num_replicas]
        yield from zip(perm.tolist()[skip:], keys.tolist()[skip:], strict=True)


def crop_and_flip(
    images: torch.Tensor,
    index: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    flip: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """``images[index[i]]`` cropped to ``size`` x ``size`` at ``(top[i], left[i])``, mirrored if ``flip[i]``.

    One gather for the whole batch (no per-sample kernels when the images live on the GPU).
    """
    device = images.device
    steps = torch.arange(size)
    rows = top[:, None] + steps
    cols = left[:, None] + torch.where(flip[:, None], size - 1 - steps, steps)
    channels = torch.arange(images.shape[1])
    if device.type != "cpu":
        # From pinned memory without blocking, as InMemoryDataset sends its indices.
        index, rows, cols, channels = (
            t.pin_memory().to(device, non_blocking=True) for t in (index, rows, cols, channels)
        )
    return images[
        index[:, None, None, None],
        channels[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def _to_signed_unit(x: torch.Tensor) -> torch.Tensor:
    return uint8_to_signed_unit(x) if x.dtype == torch.uint8 else x


class TranslationDataset(InMemoryDataset):
    """Images ``a`` (``x``) and ``b`` held in memory, fetched a batch at a time as ``(a, b)``.

    Args:
        a, b: NCHW images, uint8 (scaled to [-1, 1] per batch) or float in [-1, 1].
        paired: ``b[i]`` belongs to ``a[i]`` (same length, same crop and flip); otherwise
            ``b`` is drawn independently of ``a``.
        crop_size: training data: random crops of this size (``flip``: random mirroring);
            None: the images are already at their final size and returned as they are.
        seed: seed of the jitter hash.

    Items are ``(index, draw number)`` from :class:`KeyedRandomSampler` (random jitter) or
    plain indices (``a[i]`` with ``b[i % len(b)]``, centre crop, no flip: a fixed view for
    anything outside training). An :class:`InMemoryDataset`, so the shared loader and the
    ``data_on_device`` fast path treat it as one; it has no labels (``y`` is None).
    """

    def __init__(
        self,
        a: torch.Tensor,
        b: torch.Tensor,
        paired: bool,
        crop_size: int | None = None,
        flip: bool = False,
        seed: int = 0,
    ) -> None:
        if paired and len(a) != len(b):
            raise ValueError(f"paired data needs as many b as a images, got {len(a)} and {len(b)}")
        if crop_size is not None and crop_size > min(a.shape[-1], b.shape[-1]):
            raise ValueError(f"crop_size {crop_size} is larger than the images {tuple(a.shape[-2:])}")
        self.x = a
        self.b = b
        self.y = None  # type: ignore[assignment]
        self.paired = paired
        self.crop_size = crop_size
        self.flip = flip
        self.seed = seed

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        a, b = self.__getitems__([index])
        return a[0], b[0]

    def to(
        self, device: torch.device | str, memory_format: torch.memory_format = torch.preserve_format
    ) -> None:
        self.x = self.x.to(device, memory_format=memory_format)
        self.b = self.b.to(device, memory_format=memory_format)

    def __getitems__(self, items: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        keyed = len(items) > 0 and isinstance(items[0], (tuple, list))
        if keyed:
            indices, keys = zip(*items, strict=True)
        else:
            indices, keys = items, None
        index = torch.as_tensor(indices, dtype=torch.int64)
        if keys is not None and not self.paired:
            b_index = jitter_draws(self.seed, keys, _B_INDEX, len(self.b))
        else:
            b_index = index % len(self.b)
        if self.crop_size is None:
            a, b = self.x[index.to(self.x.device)], self.b[b_index.to(self.b.device)]
        else:
            a, b = self._jitter(index, b_index, keys)
        return _to_signed_unit(a), _to_signed_unit(b)

    def _jitter(
        self, index: torch.Tensor, b_index: torch.Tensor, keys: Sequence[int] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.crop_size
        assert size is not None

        def params(images: torch.Tensor, streams: tuple[int, int, int]) -> tuple[torch.Tensor, ...]:
            margin_y, margin_x = images.shape[-2] - size, images.shape[-1] - size
            if keys is None:  # a fixed view: centre crop, no flip
                n = len(index)
                return (
                    torch.full((n,), margin_y // 2),
                    torch.full((n,), margin_x // 2),
                    torch.zeros(n, dtype=torch.bool),
                )
            top = jitter_draws(self.seed, keys, streams[0], margin_y + 1)
            left = jitter_draws(self.seed, keys, streams[1], margin_x + 1)
            flip = (
                jitter_draws(self.seed, keys, streams[2], 2).bool()
                if self.flip
                else torch.zeros(len(keys), dtype=torch.bool)
            )
            return top, left, flip

        params_a = params(self.x, (_TOP_A, _LEFT_A, _FLIP_A))
        # Paired: B gets A's crop and flip (the reference's one get_params for both images).
        params_b = params_a if self.paired else params(self.b, (_TOP_B, _LEFT_B, _FLIP_B))
        a = crop_and_flip(self.x, index, *params_a, size)
        b = crop_and_flip(self.b, b_index, *params_b, size)
        return a, b


# -- the shared datamodule --------------------------------------------------------------
class TranslationDataModule(GANDataModule):
    """Base of the translation datamodules: jittered ``(a, b)`` training batches, fixed validation pairs.

    Subclasses set ``name`` and ``paired`` and implement :meth:`_load_splits`. Training
    batches hold ``batch_size * batches_per_step`` pairs in the shuffled, resumable order
    of :class:`GANDataModule` (here with :class:`KeyedRandomSampler`, see the module
    docstring); ``val_dataloader`` yields the held-out pairs (unpaired: A and B test images
    zipped to the shorter list) in a fixed order, in batches of ``batch_size``.

    ``a_shape`` / ``b_shape`` are ``(C, crop_size, crop_size)``; ``sample_shape`` is
    ``b_shape`` (what a generator A -> B produces); there are no labels (``num_classes`` None).
    """

    kinds = (DataKind.PAIRED,)

    @property
    def paired(self) -> bool:
        """``b[i]`` belongs to ``a[i]`` (kind paired); otherwise two unaligned domains."""
        return self.kind is DataKind.PAIRED

    def __init__(
        self,
        crop_size: int,
        load_size: int,
        flip: bool,
        channels_a: int,
        channels_b: int,
        batch_size: int,
        num_workers: int,
        batches_per_step: int,
        seed: int,
        crop_key: str = "crop_size",
    ) -> None:
        super().__init__(
            batch_size=batch_size, num_workers=num_workers, batches_per_step=batches_per_step, seed=seed
        )
        self.crop_size = check_positive_int(crop_key, crop_size, self.name)
        self.load_size = check_positive_int("load_size", load_size, self.name)
        if self.load_size < self.crop_size:
            raise ConfigError(
                f"{self.name}: dataset.load_size={load_size} is smaller than dataset.{crop_key}="
                f"{crop_size}; images are resized to load_size and then cropped to {crop_key}, so "
                f"load_size must be >= {crop_key} (equal: no random crop)"
            )
        if not isinstance(flip, bool):
            raise ConfigError(f"{self.name}: dataset.flip must be true or false, got {flip!r}")
        self.flip = flip
        self.channels_a = channels_a
        self.channels_b = channels_b
        self._val_set: TranslationDataset | None = None

    # -- shapes, known from the config ----------------------------------------------
    @property
    def image_size(self) -> int:
        """Side of the images the networks see: the training crops and the validation images."""
        return self.crop_size

    @property
    def a_shape(self) -> tuple[int, int, int]:
        return (self.channels_a, self.crop_size, self.crop_size)

    @property
    def b_shape(self) -> tuple[int, int, int]:
        return (self.channels_b, self.crop_size, self.crop_size)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.b_shape

    @property
    def num_classes(self) -> int | None:
        return None

    # -- data ---------------------------------------------------------------------
    def _load_splits(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(train_a, train_b, val_a, val_b)``: training images at ``load_size``, validation
        images at ``crop_size``, uint8 or float in [-1, 1]; raises DataError for bad data."""
        raise NotImplementedError

    def _build_dataset(self) -> TranslationDataset:
        train_a, train_b, val_a, val_b = self._load_splits()
        if not self.paired:
            # Unpaired validation: testA and testB zipped to the shorter one.
            m = min(len(val_a), len(val_b))
            val_a, val_b = val_a[:m], val_b[:m]
        self._val_set = TranslationDataset(val_a, val_b, paired=True)
        megabytes = sum(t.numel() * t.element_size() for t in (train_a, train_b, val_a, val_b)) / 2**20
        log.info(
            "%s: %d training A / %d B images at %d px, %d validation pairs at %d px (%.0f MiB in memory)",
            self.name,
            len(train_a),
            len(train_b),
            self.load_size,
            len(val_a),
            self.crop_size,
            megabytes,
        )
        return TranslationDataset(
            train_a, train_b, paired=self.paired, crop_size=self.crop_size, flip=self.flip, seed=self.seed
        )

    @property
    def val_set(self) -> TranslationDataset:
        """The validation pairs (runs ``setup`` if it has not run yet)."""
        if self._val_set is None:
            self.setup("fit")
        assert self._val_set is not None
        return self._val_set

    def train_dataloader(self) -> DataLoader:
        """Shuffled, jittered ``(a, b)`` batches of ``batch_size * batches_per_step``; resumable.

        As :meth:`GANDataModule.train_dataloader`, with :class:`KeyedRandomSampler` so the
        jitter follows the data stream (module docstring).
        """
        trainer = getattr(self, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = KeyedRandomSampler(self.train_set, seed=self.seed, num_replicas=world, rank=rank)
        if self._resume_batches:
            sampler.fast_forward(self._resume_batches, self.step_batch_size)
            self._resume_batches = 0
        return self._loader(sampler, self.step_batch_size, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        """The validation pairs ``(a, b)`` in a fixed order, without jitter, in batches of ``batch_size``."""
        dataset = self.val_set
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=SequentialSampler(dataset),
            drop_last=False,
            collate_fn=_batch_as_is,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self._on_cuda() and dataset.x.device.type == "cpu",
            generator=torch.Generator().manual_seed(self.seed + 1),
        )

    def first_validation_pairs(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` validation pairs ``(a, b)`` in the fixed order (fewer if there are fewer):
        the fixed grids' inputs and the evaluation's samples of the translation families."""
        a_chunks, b_chunks, have = [], [], 0
        # Reading the loader must not move the training RNG stream (exact resume, comparable runs).
        with torch.random.fork_rng(devices=[]):
            for a, b in self.val_dataloader():
                a_chunks.append(a)
                b_chunks.append(b)
                have += len(a)
                if have >= n:
                    break
        if not a_chunks:
            raise DataError(f"dataset '{self.name}' has no validation pairs")
        return torch.cat(a_chunks)[:n], torch.cat(b_chunks)[:n]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, paired={self.paired}, a_shape={self.a_shape}, "
            f"b_shape={self.b_shape}, load_size={self.load_size}, batch_size={self.batch_size}, "
            f"batches_per_step={self.batches_per_step})"
        )

    __str__ = __repr__


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


# -- folders of image files --------------------------------------------------------------
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


# -- embedded tasks from the digits -------------------------------------------------------
def digit_images(size: int) -> torch.Tensor:
    """All 1797 scikit-learn digits at ``size`` x ``size``, float in [-1, 1], in scikit-learn's order
    (the pixels of :class:`DigitsDataModule`)."""
    digits = DigitsDataModule(image_size=size, channels=1, batch_size=1)
    digits.setup("fit")
    return digits.train_set.x  # type: ignore[attr-defined]


def edge_map(images: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Outlines of the strokes: +1 on the outline, -1 elsewhere (same shape as ``images``).

    ``images`` in [-1, 1] are binarised (a pixel is stroke when its intensity, mapped to
    [0, 1], exceeds ``threshold``) and the outline is the internal morphological gradient
    of that mask (Serra 1982): ``mask - erode(mask)`` with a 3x3 square, i.e. the stroke
    pixels with a background pixel among their 8 neighbours, a 1-pixel contour. Pixels
    outside the image do not count as background, so strokes cut by the border have no
    outline along it. Binarising first gives thin, clean lines, as the edge maps of the
    pix2pix edges2* datasets; a gradient of the blurry upscaled digit would give broad bands.
    """
    mask = ((images + 1) * 0.5 > threshold).to(images.dtype)
    # max_pool2d pads with -inf, so the erosion ignores pixels outside the image.
    eroded = -F.max_pool2d(-mask, kernel_size=3, stride=1, padding=1)
    return (mask - eroded) * 2 - 1


def check_digit_split(owner: str, val_fraction: Any, split_seed: Any) -> tuple[float, int]:
    """The held-out share of the digits (in (0, 0.5]) and the split's seed, checked."""
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, (int, float))
        or not 0.0 < val_fraction <= 0.5
    ):
        raise ConfigError(
            f"{owner}: dataset.val_fraction={val_fraction!r} is invalid: expected a number in "
            "(0, 0.5], the share of the 1797 digits held out for validation (e.g. 0.1)"
        )
    if isinstance(split_seed, bool) or not isinstance(split_seed, int):
        raise ConfigError(f"{owner}: dataset.split_seed must be an integer, got {split_seed!r}")
    return float(val_fraction), split_seed


def digit_splits(n: int, val_fraction: float, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, val)`` positions: a permutation seeded by ``split_seed``, its first
    ``max(2, round(val_fraction * n))`` entries held out; each set in the permutation's order."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    n_val = max(2, round(val_fraction * n))
    return perm[n_val:], perm[:n_val]


class _DigitsTranslation(TranslationDataModule):
    """Shared arguments of the embedded digits tasks (grey, 1 channel per domain)."""

    def __init__(
        self,
        image_size: int,
        load_size: int,
        flip: bool,
        val_fraction: float,
        split_seed: int,
        batch_size: int,
        num_workers: int,
        batches_per_step: int,
        seed: int,
        channels_a: int,
        channels_b: int,
    ) -> None:
        super().__init__(
            crop_size=image_size,
            load_size=load_size,
            flip=flip,
            channels_a=1,
            channels_b=1,
            batch_size=batch_size,
            num_workers=num_workers,
            batches_per_step=batches_per_step,
            seed=seed,
            crop_key="image_size",
        )
        for key, value in (("channels_a", channels_a), ("channels_b", channels_b)):
            if value != 1 or isinstance(value, bool):
                raise ConfigError(
                    f"{self.name}: dataset.{key}={value!r} is invalid; the digits are grey: valid: 1"
                )
        self.val_fraction, self.split_seed = check_digit_split(self.name, val_fraction, split_seed)

    #: Maps a B image into the digits classifier's input (see :attr:`domain`).
    digit_view: Callable[[torch.Tensor], torch.Tensor] = staticmethod(lambda x: x)

    @property
    def domain(self) -> Domain:
        """B is digits (seen through :attr:`digit_view`), so translations are scored by the digits
        classifier, trained once on :class:`DigitsDataModule` at the crop size."""
        return Domain(
            "digits", labelled_data=lambda size: DigitsDataModule(image_size=size), view=self.digit_view
        )


def _invert(x: torch.Tensor) -> torch.Tensor:
    return -x


class DigitsEdgesDataModule(_DigitsTranslation):
    """Embedded paired task (pix2pix's edges -> photo, on the digits): A = outline of a digit, B = the digit.

    The digits are resized (bilinear, from 8x8) to ``load_size`` for training and to
    ``image_size`` for validation; A is :func:`edge_map` of B computed at that resolution
    (binarised at ``edge_threshold``), then jittered together with B. A seeded permutation
    (``split_seed``, apart from the run's seed so every run is scored on the same digits)
    holds ``val_fraction`` of the digits out for validation (``val_indices``; training:
    ``train_indices``, positions in scikit-learn's order). ``flip`` is off by default:
    digits are not mirror-symmetric.
    """

    name = "digits_edges"
    kinds = (DataKind.PAIRED,)

    def __init__(
        self,
        image_size: int = 32,
        load_size: int = 36,
        flip: bool = False,
        edge_threshold: float = 0.5,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        batch_size: int = 16,
        num_workers: int = 0,
        batches_per_step: int = 1,
        seed: int = 0,
        channels_a: int = 1,
        channels_b: int = 1,
    ) -> None:
        super().__init__(
            image_size=image_size,
            load_size=load_size,
            flip=flip,
            val_fraction=val_fraction,
            split_seed=split_seed,
            batch_size=batch_size,
            num_workers=num_workers,
            batches_per_step=batches_per_step,
            seed=seed,
            channels_a=channels_a,
            channels_b=channels_b,
        )
        if (
            isinstance(edge_threshold, bool)
            or not isinstance(edge_threshold, (int, float))
            or not 0.0 < edge_threshold < 1.0
        ):
            raise ConfigError(
                f"{self.name}: dataset.edge_threshold={edge_threshold!r} is invalid: expected a number in "
                "(0, 1), the intensity above which a pixel is stroke (e.g. 0.5)"
            )
        self.edge_threshold = float(edge_threshold)
        self.train_indices: torch.Tensor | None = None
        self.val_indices: torch.Tensor | None = None

    def _load_splits(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        big, small = digit_images(self.load_size), digit_images(self.crop_size)
        train, val = digit_splits(len(big), self.val_fraction, self.split_seed)
        self.train_indices, self.val_indices = train, val
        train_b, val_b = big[train], small[val]
        return (edge_map(train_b, self.edge_threshold), train_b, edge_map(val_b, self.edge_threshold), val_b)


class DigitsInvertedDataModule(_DigitsTranslation):
    """Embedded unpaired task (CycleGAN on the digits): A = digits, B = inverted digits ``-x``.

    Inversion in [-1, 1] (white strokes on black become black strokes on white) is a
    bijection CycleGAN can learn exactly, so the cycle error can go to 0. The domains come
    from DISJOINT digits: a seeded permutation (``split_seed``) holds ``val_fraction`` of the
    digits out for validation and splits the rest in two halves, A from the first and B
    (inverted) from the second; the held-out digits are split the same way into the
    validation A and B. Index sets (positions in scikit-learn's order): ``a_indices``,
    ``b_indices``, ``val_a_indices``, ``val_b_indices``. Resizing and jitter as
    :class:`DigitsEdgesDataModule`, B's crop and flip drawn independently of A's.
    """

    name = "digits_inverted"
    kinds = (DataKind.UNPAIRED,)
    # B is the inverted digit, so the classifier sees -x: one fixed feature map φ(x) = classifier(-x)
    # for the real and the translated images, and the FID is a distance in that space.
    digit_view = staticmethod(_invert)

    def __init__(
        self,
        image_size: int = 32,
        load_size: int = 36,
        flip: bool = False,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        batch_size: int = 16,
        num_workers: int = 0,
        batches_per_step: int = 1,
        seed: int = 0,
        channels_a: int = 1,
        channels_b: int = 1,
    ) -> None:
        super().__init__(
            image_size=image_size,
            load_size=load_size,
            flip=flip,
            val_fraction=val_fraction,
            split_seed=split_seed,
            batch_size=batch_size,
            num_workers=num_workers,
            batches_per_step=batches_per_step,
            seed=seed,
            channels_a=channels_a,
            channels_b=channels_b,
        )
        self.a_indices: torch.Tensor | None = None
        self.b_indices: torch.Tensor | None = None
        self.val_a_indices: torch.Tensor | None = None
        self.val_b_indices: torch.Tensor | None = None

    def _load_splits(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        big, small = digit_images(self.load_size), digit_images(self.crop_size)
        train, val = digit_splits(len(big), self.val_fraction, self.split_seed)
        half, val_half = len(train) // 2, len(val) // 2
        self.a_indices, self.b_indices = train[:half], train[half:]
        self.val_a_indices, self.val_b_indices = val[:val_half], val[val_half:]
        return (
            big[self.a_indices],
            -big[self.b_indices],
            small[self.val_a_indices],
            -small[self.val_b_indices],
        )
