"""The shared base of the translation datamodules: the in-memory ``(a, b)`` dataset and the datamodule.

:class:`TranslationDataset` holds the ``a`` and ``b`` images in memory and fetches a batch at a
time, jittered by draw number (:mod:`~gan_research.data.translation.jitter`) or as a fixed
view; :class:`TranslationDataModule` is the base of the folder and digits datamodules: jittered
training batches, fixed validation pairs, shapes known from the config. Random jitter and
memory: the package docstring (:mod:`gan_research.data.translation`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, SequentialSampler

from gan_research.data.base import (
    GANDataModule,
    InMemoryDataset,
    _batch_as_is,
    uint8_to_signed_unit,
)
from gan_research.data.translation.jitter import KeyedRandomSampler, crop_and_flip, jitter_draws
from gan_research.errors import ConfigError, DataError
from gan_research.utils.data_spec import DataKind
from gan_research.utils.validation import check_positive_int

log = logging.getLogger(__name__)

# Independent hash streams of one sample's jitter: A's crop and flip (shared by B when
# paired), B's own crop and flip, and the B image drawn for an unpaired A.
_TOP_A, _LEFT_A, _FLIP_A, _TOP_B, _LEFT_B, _FLIP_B, _B_INDEX = range(7)


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


class TranslationDataModule(GANDataModule):
    """Base of the translation datamodules: jittered ``(a, b)`` training batches, fixed validation pairs.

    Subclasses set ``name`` and ``paired`` and implement :meth:`_load_splits`. Training
    batches hold ``batch_size * batches_per_step`` pairs in the shuffled, resumable order
    of :class:`GANDataModule` (here with :class:`KeyedRandomSampler`, see the package
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
        self.crop_size = check_positive_int(self.name, crop_key, crop_size, form="key")
        self.load_size = check_positive_int(self.name, "load_size", load_size, form="key")
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
        jitter follows the data stream (package docstring).
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
