"""Counter-based random jitter of the translation datasets: the keyed sampler, the hash, the crop.

:class:`KeyedRandomSampler` pairs every training index with its draw number,
:func:`jitter_draws` hashes ``(seed, draw number, stream)`` into a sample's crop offsets, flip
and (unpaired) B index, and :func:`crop_and_flip` cuts a whole batch's crops in one gather.
Why the jitter is a pure function of the seed and the position in the data stream: "Reproducible
jitter, exact resume" in the package docstring (:mod:`gan_research.data.translation`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from gan_research.data.base import ResumableRandomSampler

_U64 = (1 << 64) - 1


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
    sample's random jitter from ``key`` (see the package docstring).
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
