"""Captioned images for text-to-image GANs (StackGAN): digits with generated captions, and the
CUB-200 / Oxford-102 folder layout.

StackGAN (Zhang et al. 2017, "StackGAN: Text to Photo-realistic Image Synthesis with Stacked
Generative Adversarial Networks", arXiv:1612.03242) conditions on a sentence embedding of one of
an image's captions and trains a *matching-aware* discriminator (Reed et al. 2016, "Generative
Adversarial Text to Image Synthesis", GAN-CLS), which must also refuse a real image paired with a
caption that does not describe it.

**Batches.** Training and validation batches are ``(image, label, tokens, mismatched)``:

- ``image``: float (B, C, H, W) in [-1, 1]; ``label``: int64 (B,), the class;
- ``tokens``: int64 (B, L), one of the image's captions as word indices of :attr:`vocabulary`
  (``<pad>`` = 0 after the last word), ``L = max_caption_length``. In training, which caption is a
  seeded draw per sample and per epoch;
- ``mismatched``: int64 (B, L), a caption of a random training image **of another class** (drawn
  the same way): the matching-aware discriminator's "real image, wrong text" pair. Every caption
  names its class (the digits' templates all name the digit), so a mismatched caption never
  describes the image. (StackGAN's reference code instead pairs each image with the next one's
  text in the batch, ``real_features[:(batch_size-1)]`` with ``cond[1:]`` in StackGAN-Pytorch's
  ``miscc/utils.py`` ``compute_discriminator_loss``, which on the digits pairs same-class
  neighbours 10% of the time; a family that wants that can still use ``tokens.roll(1, 0)``.) With
  a single class (a one-class folder), it is a caption of another image.

A family unpacks ``image, label, tokens, mismatched = batch``; the metrics read ``batch[0]`` and
``batch[1]`` as images and labels, as for labelled image data.

**Reproducible draws, exact resume.** The caption of each sample, the mismatched image and its
caption are counter-based hashes of ``(seed, draw number)`` (the translation datasets' keyed
sampler, :mod:`gan_research.data.translation.jitter`): the same for any ``num_workers``, under DDP,
and after a resume; the global RNG is never touched.

**Validation.** ``val_dataloader`` walks all training images in a fixed order that cycles through
the classes (class 0's first image, class 1's first, ..., then the second of each), each with its
first caption and a fixed mismatched one: its first batch is a grid with every class, and its
images the metrics' real set. :meth:`first_validation_batch` cuts the first ``n``.

**What a caption says.** Besides tokens, the dataset keeps for every caption the label and (digits)
attribute bins it names (:func:`~gan_research.data.captions.caption_requirements`) and for every
image its own bins, so the text encoder's training (``metrics/text_encoder.py``) knows which
caption–image pairs of a batch are true: :func:`~gan_research.data.captions.captions_hold`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, SequentialSampler

from gan_research.data.base import GANDataModule, InMemoryDataset, _batch_as_is, check_channels
from gan_research.data.captions import (
    ATTRIBUTES,
    NUM_TEMPLATES,
    AttributeBins,
    Vocabulary,
    caption_requirements,
    caption_variants,
    measure_attributes,
    template_max_length,
    tokenize,
)
from gan_research.data.digits import DigitsDataModule
from gan_research.data.image_folder import DEFAULT_EXTENSIONS, load_image
from gan_research.data.translation.jitter import KeyedRandomSampler, jitter_draws
from gan_research.errors import ConfigError, DataError
from gan_research.utils.data_spec import DataKind, Domain
from gan_research.utils.validation import check_positive_int

log = logging.getLogger(__name__)

# Independent hash streams of one sample's draws: its caption, the mismatched image, that image's
# caption; and the fixed view's mismatched image and caption.
_CAPTION, _WRONG_IMAGE, _WRONG_CAPTION, _FIXED_WRONG_IMAGE, _FIXED_WRONG_CAPTION = range(5)
# Draws are made in [0, 2**62) and reduced per sample (the number of captions or of other-class
# images differs between samples); the modulo bias is below 2**-40.
_DRAW_RANGE = 1 << 62
# Decoding is mostly C code that releases the GIL, so a few threads speed up loading a folder.
_MAX_LOAD_THREADS = 8


class CaptionedDataset(InMemoryDataset):
    """Images with up to K captions each, fetched a batch at a time as ``(x, y, tokens, mismatched)``.

    Args:
        x: images (N, C, H, W), float in [-1, 1] or uint8 (scaled per batch).
        y: class labels (N,).
        tokens: (N, K, L) word indices of each image's captions (rows past ``counts[i]`` unused).
        counts: (N,) how many captions each image has (1..K).
        image_bins: (N, A) the image's attribute bins (A = 0: none).
        caption_bins: (N, K, A) the bins each caption names, -1 where it names none.
        caption_labels: (N, K) the label each caption names, -1 where it names none.
        seed: seed of the draw hash.

    Items are ``(index, draw number)`` from :class:`KeyedRandomSampler` (random caption, random
    mismatched caption) or positions of a fixed view (:meth:`reordered`): image ``order[p]``, its
    first caption, a mismatched caption fixed by ``p``. See the module docstring.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        tokens: Tensor,
        counts: Tensor,
        image_bins: Tensor,
        caption_bins: Tensor,
        caption_labels: Tensor,
        seed: int = 0,
    ) -> None:
        super().__init__(x, y)
        n = len(x)
        if tokens.dim() != 3 or len(tokens) != n or counts.shape != (n,):
            raise ValueError(f"{n} images need tokens (N, K, L) and counts (N,), got {tuple(tokens.shape)}")
        if bool((counts < 1).any()) or bool((counts > tokens.shape[1]).any()):
            raise ValueError(f"caption counts must be in 1..{tokens.shape[1]}")
        if n < 2:
            raise ValueError("a captioned dataset needs two images at least (mismatched captions)")
        self.tokens = tokens
        self.counts = counts.to(torch.int64)
        self.image_bins = image_bins.to(torch.int64)
        self.caption_bins = caption_bins.to(torch.int64)
        self.caption_labels = caption_labels.to(torch.int64)
        self.seed = seed
        self.order: Tensor | None = None
        # Mismatched captions come from another group: another class, or another image when the
        # data has one class. Images sorted by group, with each group's start and size, turn the
        # r-th image outside a group into an index without building per-group lists.
        labels = self.y.cpu()
        groups = labels if int(labels.unique().numel()) > 1 else torch.arange(n)
        _, groups = groups.unique(return_inverse=True)
        self._groups = groups
        self._by_group = torch.argsort(groups, stable=True)
        self._group_size = torch.bincount(groups)
        self._group_start = self._group_size.cumsum(0) - self._group_size

    def __len__(self) -> int:
        return len(self.x) if self.order is None else len(self.order)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # type: ignore[override]
        x, y, tokens, wrong = self.__getitems__([index])
        return x[0], y[0], tokens[0], wrong[0]

    def to(
        self, device: torch.device | str, memory_format: torch.memory_format = torch.preserve_format
    ) -> None:
        """Hold images, labels and tokens on ``device`` (the draws' small lookups stay on the CPU)."""
        super().to(device, memory_format=memory_format)
        self.tokens = self.tokens.to(device)

    def reordered(self, order: Tensor) -> CaptionedDataset:
        """A fixed view of the same tensors: position ``p`` is image ``order[p]`` (no copy)."""
        view = copy.copy(self)
        view.order = order.to(torch.int64)
        return view

    def caption_index(self, index: Tensor, keys: Sequence[int] | None) -> Tensor:
        """Which caption of each image: a keyed draw, or the first caption for a fixed view."""
        if keys is None:
            return torch.zeros_like(index)
        return jitter_draws(self.seed, keys, _CAPTION, _DRAW_RANGE) % self.counts[index]

    def mismatched(self, index: Tensor, keys: Sequence[int], fixed: bool) -> tuple[Tensor, Tensor]:
        """``(image, caption)`` indices of a caption of another group's image, for each of ``index``."""
        streams = (_FIXED_WRONG_IMAGE, _FIXED_WRONG_CAPTION) if fixed else (_WRONG_IMAGE, _WRONG_CAPTION)
        group = self._groups[index]
        size, start = self._group_size[group], self._group_start[group]
        r = jitter_draws(self.seed, keys, streams[0], _DRAW_RANGE) % (len(self._groups) - size)
        other = self._by_group[torch.where(r < start, r, r + size)]
        caption = jitter_draws(self.seed, keys, streams[1], _DRAW_RANGE) % self.counts[other]
        return other, caption

    def __getitems__(self, items: Sequence[Any]) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # type: ignore[override]
        keyed = len(items) > 0 and isinstance(items[0], (tuple, list))
        if keyed:
            indices, keys = zip(*items, strict=True)
            index = torch.as_tensor(indices, dtype=torch.int64)
            caption = self.caption_index(index, keys)
            other, other_caption = self.mismatched(index, keys, fixed=False)
        else:
            positions = torch.as_tensor(items, dtype=torch.int64)
            index = positions if self.order is None else self.order[positions]
            caption = self.caption_index(index, None)
            other, other_caption = self.mismatched(index, positions.tolist(), fixed=True)
        device = self.x.device
        x = self.x[index.to(device)]
        if x.dtype == torch.uint8:
            x = x.to(torch.float32).div_(127.5).sub_(1.0)
        tokens = self.tokens[index.to(device), caption.to(device)].to(torch.int64)
        wrong = self.tokens[other.to(device), other_caption.to(device)].to(torch.int64)
        return x, self.y[index.to(self.y.device)], tokens, wrong


def interleaved_order(labels: Tensor) -> Tensor:
    """Positions that cycle through the classes: each class's first image (in label order), then
    each class's second, ...; within a class the dataset's order is kept."""
    labels = labels.cpu().to(torch.int64)
    order = torch.argsort(labels, stable=True)
    sorted_labels = labels[order]
    sizes = torch.bincount(sorted_labels)
    starts = sizes.cumsum(0) - sizes
    rank = torch.empty_like(labels)
    rank[order] = torch.arange(len(labels)) - starts[sorted_labels]
    return torch.argsort(rank * (int(labels.max()) + 1 if len(labels) else 1) + labels, stable=True)


class _CaptionedDataModule(GANDataModule):
    """Shared base: the dataset from images and caption texts, keyed training batches, the fixed
    validation view. Subclasses implement :meth:`_load` and :attr:`vocabulary`."""

    kinds = (DataKind.CAPTIONED,)

    def __init__(
        self,
        image_size: int,
        channels: int,
        captions_per_image: int,
        batch_size: int,
        num_workers: int,
        batches_per_step: int,
        seed: int,
    ) -> None:
        super().__init__(
            batch_size=batch_size, num_workers=num_workers, batches_per_step=batches_per_step, seed=seed
        )
        self.image_size = check_positive_int(self.name, "image_size", image_size, form="key")
        self.channels = check_channels(channels, self.name)
        self.captions_per_image = check_positive_int(
            self.name, "captions_per_image", captions_per_image, form="key"
        )
        self._texts: list[list[str]] | None = None
        self._val_set: CaptionedDataset | None = None

    # -- what a subclass provides ------------------------------------------------
    def _load(self) -> tuple[Tensor, Tensor, list[list[str]], Tensor]:
        """``(images, labels, captions per image, image attribute bins (N, A))``."""
        raise NotImplementedError

    @property
    def vocabulary(self) -> Vocabulary:
        raise NotImplementedError

    @property
    def max_caption_length(self) -> int:
        """Words per caption in a batch (``tokens.shape[1]``): longer captions are cut."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------
    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (self.channels, self.image_size, self.image_size)

    def captions(self, i: int) -> list[str]:
        """The captions of training image ``i`` (in the training set's order)."""
        self.setup("fit")
        assert self._texts is not None
        return list(self._texts[i])

    def _build_dataset(self) -> CaptionedDataset:
        images, labels, texts, image_bins = self._load()
        vocabulary, length = self.vocabulary, self.max_caption_length
        k = max(len(captions) for captions in texts)
        n, attributes = len(texts), image_bins.shape[1]
        # Each distinct caption is encoded and read once (the digits have 2,160 for 8,985 captions).
        unique = list(dict.fromkeys(caption for captions in texts for caption in captions))
        row_of = {caption: r for r, caption in enumerate(unique)}
        encoded = vocabulary.encode_all(unique, length)
        # Rows past an image's caption count point at caption 0; they are never drawn.
        rows = torch.tensor([[row_of[c] for c in captions] + [0] * (k - len(captions)) for captions in texts])
        tokens = encoded[rows.view(n, k)]
        said = [self._requirements(caption) for caption in unique]
        said_labels = torch.tensor([-1 if label is None else label for label, _ in said], dtype=torch.int64)
        said_bins = torch.tensor([bins for _, bins in said], dtype=torch.int64).view(len(unique), attributes)
        # A caption that names no label (free text) is about its image's class.
        caption_labels = said_labels[rows.view(n, k)]
        caption_labels = torch.where(caption_labels < 0, labels.view(n, 1), caption_labels)
        caption_bins = said_bins[rows.view(n, k)]
        counts = torch.tensor([len(captions) for captions in texts], dtype=torch.int64)
        # Small vocabularies fit int16 (CUB's ~5k words), which quarters the tokens' memory.
        if len(vocabulary) <= torch.iinfo(torch.int16).max:
            tokens = tokens.to(torch.int16)
        self._texts = texts
        dataset = CaptionedDataset(
            images, labels, tokens, counts, image_bins, caption_bins, caption_labels, seed=self.seed
        )
        self._val_set = dataset.reordered(interleaved_order(labels))
        return dataset

    def _requirements(self, caption: str) -> tuple[int | None, list[int]]:
        """The label (None: its image's class) and attribute bins (-1: unsaid) a caption names;
        by default none: a free caption is about its image's class."""
        return None, []

    @property
    def val_set(self) -> CaptionedDataset:
        """The fixed validation view (all training images, classes interleaved; module docstring)."""
        self.setup("fit")
        assert self._val_set is not None
        return self._val_set

    def train_dataloader(self) -> DataLoader:
        """Shuffled ``(image, label, tokens, mismatched)`` batches of ``batch_size * batches_per_step``,
        with keyed caption draws (module docstring); resumable."""
        trainer = getattr(self, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = KeyedRandomSampler(self.train_set, seed=self.seed, num_replicas=world, rank=rank)
        if self._resume_batches:
            sampler.fast_forward(self._resume_batches, self.step_batch_size)
            self._resume_batches = 0
        return self._loader(sampler, self.step_batch_size, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        """The fixed validation view in batches of ``batch_size`` (module docstring)."""
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

    def first_validation_batch(self, n: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(images, labels, tokens)`` of the first ``n`` validation items (fewer if there are
        fewer): a fixed set covering every class, for sample grids."""
        dataset = self.val_set
        x, y, tokens, _ = dataset.__getitems__(list(range(min(n, len(dataset)))))
        return x, y, tokens

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, sample_shape={self.sample_shape}, "
            f"captions_per_image={self.captions_per_image}, batch_size={self.batch_size}, "
            f"batches_per_step={self.batches_per_step})"
        )

    __str__ = __repr__


class CaptionedDigitsDataModule(_CaptionedDataModule):
    """scikit-learn's digits (:class:`DigitsDataModule`, resized to ``image_size``) with captions
    built from the label and from attributes measured on the pixels (:mod:`~gan_research.data.captions`).

    Each digit's stroke thickness, slant and size are measured at ``image_size``
    (:func:`measure_attributes`) and binned at the terciles of the digits of its class
    (:attr:`attribute_bins`, per class, see :class:`AttributeBins`: the thresholds a metric must
    reuse on generated images, with the class the caption asks for). Image ``i``
    gets ``captions_per_image`` captions: templates ``i, i+1, ... (mod 8)`` of
    :func:`caption_variants`, so every template is used equally often. The vocabulary is every
    word the templates can produce, known before any data is read.

    The digits classifier applies (:attr:`domain`): a captioned digit is a digit.
    """

    name = "captioned_digits"

    def __init__(
        self,
        image_size: int = 64,
        channels: int = 1,
        batch_size: int = 64,
        captions_per_image: int = 5,
        num_workers: int = 0,
        batches_per_step: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(
            image_size=image_size,
            channels=channels,
            captions_per_image=captions_per_image,
            batch_size=batch_size,
            num_workers=num_workers,
            batches_per_step=batches_per_step,
            seed=seed,
        )
        if self.captions_per_image > NUM_TEMPLATES:
            raise ConfigError(
                f"{self.name}.captions_per_image={captions_per_image} is invalid: expected "
                f"1..{NUM_TEMPLATES} (one caption per template; there are {NUM_TEMPLATES})"
            )
        self._vocabulary = Vocabulary.from_templates()
        self._attribute_bins: AttributeBins | None = None
        self._attributes: dict[str, Tensor] | None = None

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def domain(self) -> Domain:
        """The digits: generated images are scored by the digits classifier at their size."""
        return Domain("digits", labelled_data=lambda size: DigitsDataModule(image_size=size, channels=1))

    @property
    def vocabulary(self) -> Vocabulary:
        return self._vocabulary

    @property
    def max_caption_length(self) -> int:
        """The longest template caption's word count: no caption is ever cut."""
        return template_max_length()

    @property
    def attribute_bins(self) -> AttributeBins:
        """The per-class tercile thresholds of the digits' attributes at ``image_size`` (runs ``setup``)."""
        self.setup("fit")
        assert self._attribute_bins is not None
        return self._attribute_bins

    @property
    def attributes(self) -> dict[str, Tensor]:
        """The measured attributes of every training digit, (N,) each (runs ``setup``)."""
        self.setup("fit")
        assert self._attributes is not None
        return dict(self._attributes)

    def _load(self) -> tuple[Tensor, Tensor, list[list[str]], Tensor]:
        digits = DigitsDataModule(image_size=self.image_size, channels=self.channels)
        digits.setup("fit")
        images, labels = digits.train_set.x, digits.train_set.y
        self._attributes = measure_attributes(images)
        self._attribute_bins = AttributeBins.fit(self._attributes, labels, num_classes=self.num_classes)
        bins = self._attribute_bins.assign(self._attributes, labels)
        image_bins = torch.stack([bins[name] for name in ATTRIBUTES], dim=1)
        texts = []
        for i, (label, row) in enumerate(zip(labels.tolist(), image_bins.tolist(), strict=True)):
            variants = caption_variants(label, dict(zip(ATTRIBUTES, row, strict=True)))
            texts.append([variants[(i + j) % NUM_TEMPLATES] for j in range(self.captions_per_image)])
        return images, labels, texts, image_bins

    def _requirements(self, caption: str) -> tuple[int | None, list[int]]:
        named, bins = caption_requirements(caption)
        return (None if named < 0 else named), bins


@dataclass(frozen=True)
class _FolderLayout:
    images: list[Path]
    caption_files: list[Path]
    labels: list[int]
    classes: list[str]


class CaptionedFolderDataModule(_CaptionedDataModule):
    """Captioned images in the CUB-200 / Oxford-102 layout of StackGAN's and AttnGAN's caption files.

    Layout::

        root/images/<class>/<name>.jpg     the images, one subfolder per class (label: sorted index)
        root/text/<class>/<name>.txt       its captions, one per line

    (``image_dir`` and ``text_dir`` rename the two folders, e.g. ``CUB_200_2011/images``.) Each
    image uses the first ``captions_per_image`` non-empty lines of its caption file (CUB has ten);
    caption files without an image are ignored. Images are centre-cropped to a square, resized to
    ``image_size`` and held in memory as uint8 (CUB's 11,788 images take 145 MB at 64 px, 2.3 GB at
    256 px). The vocabulary is the training captions' words (lower-cased, punctuation stripped,
    :func:`~gan_research.data.captions.tokenize`) seen at least ``min_word_count`` times; captions
    are cut at ``max_caption_length`` words (None: the longest caption's length).

    The folder, its classes and its captions are listed on first use (``num_classes``,
    ``vocabulary``): a missing folder, a missing caption file, an empty caption file or an empty
    folder is one DataError naming the path and the expected layout. StackGAN crops CUB's birds to
    their bounding boxes first; this layout carries none, so crop the images beforehand to match.
    """

    name = "captioned_folder"

    def __init__(
        self,
        root: str | Path,
        image_size: int = 64,
        channels: int = 3,
        captions_per_image: int = 10,
        max_caption_length: int | None = None,
        min_word_count: int = 1,
        image_dir: str = "images",
        text_dir: str = "text",
        extensions: Sequence[str] = DEFAULT_EXTENSIONS,
        batch_size: int = 64,
        num_workers: int = 0,
        batches_per_step: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(
            image_size=image_size,
            channels=channels,
            captions_per_image=captions_per_image,
            batch_size=batch_size,
            num_workers=num_workers,
            batches_per_step=batches_per_step,
            seed=seed,
        )
        if root is None or str(root) in ("", "???"):
            raise ConfigError(
                f"{self.name}: dataset.root must be the folder holding {image_dir}/ and {text_dir}/, "
                f"got {root!r}"
            )
        self.root = Path(root).expanduser()
        if max_caption_length is not None:
            max_caption_length = check_positive_int(
                self.name, "max_caption_length", max_caption_length, form="key"
            )
        self._max_caption_length = max_caption_length
        self.min_word_count = check_positive_int(self.name, "min_word_count", min_word_count, form="key")
        for key, value in (("image_dir", image_dir), ("text_dir", text_dir)):
            if not isinstance(value, str) or not value.strip("/"):
                raise ConfigError(f"{self.name}: dataset.{key} must be a folder name, got {value!r}")
        self.image_dir, self.text_dir = image_dir, text_dir
        if isinstance(extensions, str):
            extensions = [extensions]
        if not extensions or not all(isinstance(e, str) and e.strip(".") for e in extensions):
            raise ConfigError(
                f"{self.name}: dataset.extensions must be a non-empty list of file extensions such as "
                f"{list(DEFAULT_EXTENSIONS)}, got {extensions!r}"
            )
        self.extensions = tuple(sorted({"." + e.lower().lstrip(".") for e in extensions}))
        self._layout: _FolderLayout | None = None
        self._caption_texts: list[list[str]] | None = None
        self._vocabulary: Vocabulary | None = None

    @property
    def expected_layout(self) -> str:
        return (
            f"expected {self.root}/{self.image_dir}/<class>/<name>.jpg with its captions, one per line, in "
            f"{self.root}/{self.text_dir}/<class>/<name>.txt (the CUB-200 / Oxford-102 layout of StackGAN "
            f"and AttnGAN)"
        )

    @property
    def layout(self) -> _FolderLayout:
        if self._layout is None:
            self._layout = self._scan()
        return self._layout

    @property
    def num_classes(self) -> int:
        """The class subfolders (lists the folder on first use)."""
        return len(self.layout.classes)

    @property
    def classes(self) -> list[str]:
        """Class folder names in label order."""
        return list(self.layout.classes)

    @property
    def caption_texts(self) -> list[list[str]]:
        """Each image's captions as read (first ``captions_per_image`` non-empty lines)."""
        if self._caption_texts is None:
            self._caption_texts = [self._read_captions(path) for path in self.layout.caption_files]
        return self._caption_texts

    @property
    def vocabulary(self) -> Vocabulary:
        if self._vocabulary is None:
            texts = (caption for captions in self.caption_texts for caption in captions)
            self._vocabulary = Vocabulary.from_texts(texts, min_count=self.min_word_count)
        return self._vocabulary

    @property
    def max_caption_length(self) -> int:
        if self._max_caption_length is None:
            longest = max(len(tokenize(c)) for captions in self.caption_texts for c in captions)
            self._max_caption_length = max(1, longest)
        return self._max_caption_length

    def _is_image(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() in self.extensions and not path.name.startswith(".")

    def _scan(self) -> _FolderLayout:
        root, image_root, text_root = self.root, self.root / self.image_dir, self.root / self.text_dir
        layout = self.expected_layout
        if not root.is_dir():
            what = "is a file, not a folder" if root.exists() else "does not exist"
            raise DataError(f"{self.name}: dataset.root={root} {what}; {layout}.")
        for folder in (image_root, text_root):
            if not folder.is_dir():
                raise DataError(f"{self.name}: {folder} is not a folder; {layout}.")
        entries = sorted(p for p in image_root.iterdir() if not p.name.startswith("."))
        loose = [p for p in entries if self._is_image(p)]
        if loose:
            raise DataError(
                f"{self.name}: {image_root} holds images outside class subfolders (e.g. {loose[0].name}); "
                f"{layout}."
            )
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
        if not any(per_class.values()):
            raise DataError(
                f"{self.name}: no image files ({searched}) in the class subfolders of {image_root}; {layout}."
            )
        empty = [name for name, files in per_class.items() if not files]
        if empty:
            raise DataError(
                f"{self.name}: class subfolders {empty} of {image_root} hold no images ({searched}); "
                f"remove them or add images, since every subfolder is a class; {layout}."
            )
        classes = sorted(per_class)
        images = [f for name in classes for f in per_class[name]]
        labels = [label for label, name in enumerate(classes) for _ in per_class[name]]
        caption_files = [text_root / f.relative_to(image_root).with_suffix(".txt") for f in images]
        missing = [
            (image, text) for image, text in zip(images, caption_files, strict=True) if not text.is_file()
        ]
        if missing:
            image, text = missing[0]
            raise DataError(
                f"{self.name}: {len(missing)} of {len(images)} images have no caption file, e.g. {image} "
                f"(its captions would be {text}); {layout}."
            )
        return _FolderLayout(images=images, caption_files=caption_files, labels=labels, classes=classes)

    def _read_captions(self, path: Path) -> list[str]:
        try:
            # errors="replace": a few CUB caption files hold stray bytes; tokenize drops them.
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            raise DataError(f"{self.name}: cannot read caption file {path}: {error}") from error
        captions = [line.strip() for line in text.splitlines() if tokenize(line)]
        if not captions:
            raise DataError(
                f"{self.name}: caption file {path} holds no caption (one caption per line); "
                f"{self.expected_layout}."
            )
        return captions[: self.captions_per_image]

    def _load(self) -> tuple[Tensor, Tensor, list[list[str]], Tensor]:
        layout, texts = self.layout, self.caption_texts
        if len(layout.images) < 2:
            raise DataError(
                f"{self.name}: {self.root / self.image_dir} holds {len(layout.images)} image; mismatched "
                "captions need two at least."
            )
        threads = min(_MAX_LOAD_THREADS, max(1, self.num_workers))
        pool = ThreadPoolExecutor(max_workers=threads)
        try:
            images = list(pool.map(lambda p: load_image(p, self.image_size, self.channels), layout.images))
        finally:
            # On the first unreadable file, do not wait for the rest to decode.
            pool.shutdown(wait=True, cancel_futures=True)
        labels = torch.tensor(layout.labels, dtype=torch.int64)
        return torch.stack(images), labels, texts, torch.zeros(len(images), 0, dtype=torch.int64)
