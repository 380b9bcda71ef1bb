"""The embedded translation tasks built from scikit-learn's digits (no download).

:class:`DigitsEdgesDataModule` (paired: a digit's outline -> the digit) and
:class:`DigitsInvertedDataModule` (unpaired: digits <-> inverted digits), their shared base, and
the helpers the digits super-resolution task uses too (:func:`digit_images`,
:func:`check_digit_split`, :func:`digit_splits`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from gan_research.data.digits import DigitsDataModule
from gan_research.data.translation.base import TranslationDataModule
from gan_research.errors import ConfigError
from gan_research.utils.data_spec import DataKind, Domain


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


def check_digit_split(
    owner: str,
    val_fraction: Any,
    split_seed: Any,
    share: str = "the share of the 1797 digits held out for validation (e.g. 0.1)",
) -> tuple[float, int]:
    """The held-out share of the digits (in (0, 0.5]) and the split's seed, checked; ``share``
    says in the error what the fraction is of (a folder's images for the folder datasets)."""
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, (int, float))
        or not 0.0 < val_fraction <= 0.5
    ):
        raise ConfigError(
            f"{owner}: dataset.val_fraction={val_fraction!r} is invalid: expected a number in "
            f"(0, 0.5], {share}"
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
