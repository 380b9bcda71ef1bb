"""Shared base of every GAN datamodule, and the fast path for data held in memory.

A GAN step consumes ``batch_size * batches_per_step`` real samples (one batch per
discriminator step), so every train loader yields batches of that size. Data small
enough for RAM is held as tensors and batched by tensor indexing: the per-sample
``__getitem__`` + collate of a plain DataLoader costs more than the step itself for
batches of 2-D points or 8x8 digits on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler, SequentialSampler

from gan_research.errors import ConfigError, DataError
from gan_research.utils import validation
from gan_research.utils.data_spec import TRANSLATION_KINDS, DataKind, DataSpec, Domain

# Images are resized in chunks so resizing 60k MNIST digits never holds a float copy
# of the whole dataset.
_RESIZE_CHUNK = 4096


class InMemoryDataset(Dataset):
    """Samples ``x`` with labels ``y``, fetched a whole batch at a time.

    ``x`` is either float (already in its final range) or uint8 images, which are
    scaled to [-1, 1] per batch: keeping uint8 in memory takes a quarter of the RAM.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if len(x) != len(y):
            raise ValueError(f"{len(x)} samples but {len(y)} labels")
        self.x = x
        self.y = y.to(torch.int64)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([index])
        return x[0], y[0]

    def to(
        self, device: torch.device | str, memory_format: torch.memory_format = torch.preserve_format
    ) -> None:
        """Hold the samples on ``device`` (fast path ``data_on_device``), images in ``memory_format``."""
        self.x = self.x.to(device, memory_format=memory_format) if self.x.dim() == 4 else self.x.to(device)
        self.y = self.y.to(device)

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        # The DataLoader calls this with a whole batch of indices when it exists.
        index = torch.as_tensor(indices, dtype=torch.int64)
        if self.x.device.type != "cpu":
            # From pinned memory without blocking: a pageable copy would make the host wait for
            # the device to finish its queued work, once per batch.
            index = index.pin_memory().to(self.x.device, non_blocking=True)
        x = self.x[index]
        if x.dtype == torch.uint8:
            x = uint8_to_signed_unit(x)
        return x, self.y[index]


class ResumableRandomSampler(DistributedSampler):
    """``RandomSampler``'s order under Lightning (one seeded generator, one fresh
    permutation per epoch), sharded across processes, with the position restorable.

    - One process: the order of ``RandomSampler(generator=Generator().manual_seed(seed))``.
    - ``num_replicas`` processes: process ``rank`` takes ``perm[rank::num_replicas]`` of the
      same permutation, so its batch ``k`` holds samples of the one-process batch ``k`` of
      ``num_replicas`` times the size: DDP with a per-process batch B sees, in total, the
      data a single process sees with batch ``num_replicas * B``.
    - :meth:`fast_forward`: a run resumed after ``s`` steps continues with the batch an
      uninterrupted run would draw at step ``s + 1``, not with the start of an epoch.

    A ``DistributedSampler`` subclass, so Lightning keeps it under DDP instead of replacing it.
    """

    def __init__(self, data_source: Dataset, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(data_source, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.generator = torch.Generator().manual_seed(seed)
        self._skip = 0

    def __len__(self) -> int:
        return len(self.dataset) // self.num_replicas  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        # The generator advances by itself from epoch to epoch, as RandomSampler's does.
        self.epoch = epoch

    def fast_forward(self, batches: int, batch_size: int) -> None:
        """Position the sampler after ``batches`` full batches of ``batch_size`` (per process)."""
        n = len(self.dataset)  # type: ignore[arg-type]
        per_epoch = len(self) // batch_size
        epochs, within = divmod(batches, per_epoch)
        self.generator = torch.Generator().manual_seed(self.seed)
        for _ in range(epochs):
            # One permutation per epoch: Lightning ends an epoch after its last full batch
            # without exhausting the sampler, so RandomSampler never drew its remainder there.
            torch.randperm(n, generator=self.generator)
        self._skip = within * batch_size

    def __iter__(self) -> Any:
        n = len(self.dataset)  # type: ignore[arg-type]
        skip, self._skip = self._skip, 0
        perm = torch.randperm(n, generator=self.generator)
        if self.num_replicas > 1:
            perm = perm[: len(self) * self.num_replicas][self.rank :: self.num_replicas]
        yield from perm.tolist()[skip:]


def _on_host(dataset: Dataset) -> bool:
    """False for an in-memory dataset already moved to the device (nothing to pin)."""
    return not isinstance(dataset, InMemoryDataset) or dataset.x.device.type == "cpu"


def _batch_as_is(batch: Any) -> Any:
    # InMemoryDataset already returns a collated batch; module-level so workers can pickle it.
    return batch


def uint8_to_signed_unit(x: torch.Tensor) -> torch.Tensor:
    """Map uint8 pixels 0..255 to float32 in [-1, 1]."""
    return x.to(torch.float32).div_(127.5).sub_(1.0)


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize NCHW images to ``size`` x ``size`` with bilinear interpolation.

    Antialiasing is on when downscaling (as PIL does). uint8 input is rounded back
    to uint8; float input stays float.
    """
    if x.shape[-2:] == (size, size):
        return x
    antialias = size < x.shape[-2] or size < x.shape[-1]
    chunks = []
    for chunk in x.split(_RESIZE_CHUNK):
        out = F.interpolate(
            chunk.to(torch.float32),
            size=(size, size),
            mode="bilinear",
            align_corners=False,
            antialias=antialias,
        )
        if x.dtype == torch.uint8:
            out = out.round_().clamp_(0, 255).to(torch.uint8)
        chunks.append(out)
    return torch.cat(chunks)


def check_channels(value: Any, owner: str) -> int:
    """Return ``value`` if it is 1 (grey) or 3 (RGB), else raise ConfigError."""
    if value not in (1, 3) or isinstance(value, bool):
        raise ConfigError(f"{owner}.channels must be 1 (grey) or 3 (RGB), got {value!r}")
    return int(value)


class GANDataModule(pl.LightningDataModule):
    """Base of all datamodules: batching, seeding and the checks every dataset shares.

    Subclasses set ``name`` and ``kinds``, implement ``sample_shape`` and
    ``num_classes`` (known from the config alone, before ``setup``) and
    ``_build_dataset`` (reads and validates the data; called once by ``setup``).
    What the data is reaches families, metrics and messages as :attr:`spec`
    (:class:`~gan_research.utils.data_spec.DataSpec`), never through the dataset's name.

    ``train_dataloader`` yields ``(x, y)`` with ``batch_size * batches_per_step``
    samples, shuffled by a generator seeded from ``seed``, dropping the last partial
    batch. ``val_dataloader`` walks the same training samples in a fixed order in
    batches of ``batch_size``: there is no held-out split, because GAN metrics (FID,
    IS, mode coverage) compare generated samples with the training distribution.
    """

    name: str = "dataset"
    #: The kinds this class can declare, the first being its usual one; read from the class
    #: alone (error messages list the dataset options of a kind without opening any data).
    kinds: ClassVar[tuple[DataKind, ...]] = (DataKind.IMAGES,)

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        batches_per_step: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        owner = "dataset"
        self.batch_size = validation.check_positive_int(owner, "batch_size", batch_size, form="key")
        self.batches_per_step = validation.check_positive_int(
            owner, "batches_per_step", batches_per_step, form="key"
        )
        self.num_workers = validation.check_int_at_least(owner, "num_workers", num_workers, 0, form="key")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"dataset.seed must be an integer, got {seed!r}")
        self.seed = seed
        self._train_set: Dataset | None = None
        self._resume_batches = 0

    # -- what a subclass provides ------------------------------------------------
    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample: ``(2,)`` for 2-D points, ``(C, H, W)`` for images."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int | None:
        """Number of label values, or None when the data is unlabelled."""
        raise NotImplementedError

    def _build_dataset(self) -> Dataset:
        """Read and validate the training data."""
        raise NotImplementedError

    # -- the declaration ---------------------------------------------------------
    @property
    def kind(self) -> DataKind:
        """What one sample is (one of :attr:`kinds`)."""
        return self.kinds[0]

    @property
    def domain(self) -> Domain | None:
        """The domain whose classifier the metrics may use: by default, labelled images are
        their own domain (the classifier trains on this dataset at the asked size)."""
        if self.kind is not DataKind.IMAGES or self.num_classes is None:
            return None
        return Domain(self.name, labelled_data=self._labelled_at)

    def _labelled_at(self, image_size: int) -> GANDataModule:
        if image_size != self.sample_shape[-1]:
            raise ConfigError(
                f"dataset '{self.name}' serves {self.sample_shape[-1]} px images; its classifier "
                f"cannot be trained at {image_size} px"
            )
        return self

    @property
    def spec(self) -> DataSpec:
        """This dataset's declaration (known from the config, before ``setup``)."""
        shape = tuple(int(n) for n in self.sample_shape)
        image = len(shape) == 3
        return DataSpec(
            name=self.name,
            kind=self.kind,
            sample_shape=shape,
            num_classes=self.num_classes,
            channels=shape[0] if image else None,
            image_size=shape[-1] if image else None,
            channels_a=getattr(self, "channels_a", None) if self.kind in TRANSLATION_KINDS else None,
            domain=self.domain,
            # A translation datamodule whose A images have another size (super-resolution's
            # low-resolution inputs) says so with ``image_size_a``.
            image_size_a=getattr(self, "image_size_a", None) if self.kind in TRANSLATION_KINDS else None,
        )

    # -- shared behaviour --------------------------------------------------------
    @property
    def step_batch_size(self) -> int:
        """Samples one training step consumes: ``batch_size * batches_per_step``."""
        return self.batch_size * self.batches_per_step

    @property
    def train_set(self) -> Dataset:
        """The training dataset (runs ``setup`` if it has not run yet)."""
        if self._train_set is None:
            self.setup("fit")
        assert self._train_set is not None
        return self._train_set

    def setup(self, stage: str | None = None) -> None:
        """Read and validate the data once; later calls do nothing."""
        if self._train_set is not None:
            return
        dataset = self._build_dataset()
        size = len(dataset)  # type: ignore[arg-type]
        if size < self.step_batch_size:
            raise DataError(
                f"dataset {self.name!r} has {size} samples, fewer than one training step needs: "
                f"batch_size * batches_per_step = {self.batch_size} * {self.batches_per_step} "
                f"= {self.step_batch_size}. Use a smaller dataset.batch_size or add data."
            )
        self._train_set = dataset

    def train_dataloader(self) -> DataLoader:
        """Shuffled batches of ``batch_size * batches_per_step`` samples, last partial batch dropped.

        A resumed run continues the data order where its checkpoint left it
        (``load_state_dict``), so its later steps see the same batches as an
        uninterrupted run.
        """
        # A fresh generator per call: two datamodules with the same seed give the same order.
        trainer = getattr(self, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = ResumableRandomSampler(self.train_set, seed=self.seed, num_replicas=world, rank=rank)
        if self._resume_batches:
            sampler.fast_forward(self._resume_batches, self.step_batch_size)
            self._resume_batches = 0
        return self._loader(sampler, self.step_batch_size, drop_last=True)

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints: the training batches consumed, one per generator step."""
        trainer = getattr(self, "trainer", None)
        return {"batches_consumed": int(trainer.global_step) if trainer is not None else 0}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning restores the datamodule before it asks for the train dataloader.
        self._resume_batches = int(state_dict.get("batches_consumed", 0))

    def val_dataloader(self) -> DataLoader:
        """The training samples in a fixed order, in batches of ``batch_size`` (see class docstring)."""
        return self._loader(SequentialSampler(self.train_set), self.batch_size, drop_last=False)

    def _loader(self, sampler: Any, batch_size: int, drop_last: bool) -> DataLoader:
        dataset = self.train_set
        return DataLoader(
            dataset,
            # batch_size + sampler (not a batch_sampler) is the form Lightning knows how to
            # rebuild around a DistributedSampler under DDP, keeping batch_size and drop_last.
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop_last,
            # InMemoryDataset.__getitems__ already returns a whole batch.
            collate_fn=_batch_as_is if isinstance(dataset, InMemoryDataset) else None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            # Page-locked batches let Lightning's copy to the GPU run without blocking the host.
            pin_memory=self._on_cuda() and _on_host(dataset),
            # Worker seeds come from this generator rather than the global RNG, so
            # iterating the loader does not shift the model's random stream.
            generator=torch.Generator().manual_seed(self.seed + 1),
        )

    def _on_cuda(self) -> bool:
        trainer = getattr(self, "trainer", None)
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, sample_shape={self.sample_shape}, "
            f"batch_size={self.batch_size}, batches_per_step={self.batches_per_step})"
        )

    # LightningDataModule.__str__ builds every dataloader, i.e. reads the data; printing
    # a datamodule (Hydra logs, debuggers) must not.
    __str__ = __repr__
