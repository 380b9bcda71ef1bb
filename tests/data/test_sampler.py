"""The training sampler: RandomSampler's order, sharded for DDP, resumable mid-epoch."""

from __future__ import annotations

import itertools

import torch
from torch.utils.data import RandomSampler, TensorDataset

from gan_research.data.base import ResumableRandomSampler

DATA = TensorDataset(torch.arange(100))
B = 8  # 12 full batches per epoch; 4 samples dropped


def _lightning_like(sampler, epochs: int) -> list[list[int]]:
    """Batches as Lightning takes them: full batches only, the iterator left unexhausted."""
    out = []
    for _ in range(epochs):
        it = iter(sampler)
        per_epoch = len(sampler) // B
        out += [list(itertools.islice(it, B)) for _ in range(per_epoch)]
    return out


def test_one_process_order_is_random_samplers():
    ours = _lightning_like(ResumableRandomSampler(DATA, seed=3), epochs=3)
    theirs = _lightning_like(RandomSampler(DATA, generator=torch.Generator().manual_seed(3)), epochs=3)
    assert ours == theirs


def test_fast_forward_continues_where_an_uninterrupted_run_is():
    full = _lightning_like(ResumableRandomSampler(DATA, seed=3), epochs=4)
    for done in (0, 5, 12, 17, 30):  # inside the first epoch, at a boundary, later epochs
        resumed = ResumableRandomSampler(DATA, seed=3)
        resumed.fast_forward(done, B)
        first = list(resumed)  # the rest of the interrupted epoch
        rest = [first[i : i + B] for i in range(0, len(first) - B + 1, B)]
        assert rest == full[done : done + len(rest)], done
        assert done + len(rest) == (done // 12 + 1) * 12
        assert _lightning_like(resumed, epochs=1) == full[done + len(rest) : done + len(rest) + 12]


def test_two_shards_make_up_the_one_process_batches():
    """DDP with 2 processes and batch B per process sees what one process sees with batch 2B."""
    one = _lightning_like(ResumableRandomSampler(DATA, seed=1), epochs=2)
    big = [one[i] + one[i + 1] for i in range(0, len(one), 2)]  # one process, batches of 2B
    ranks = [_lightning_like(ResumableRandomSampler(DATA, seed=1, num_replicas=2, rank=r), 2) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(big) == 12
    for k, batch in enumerate(big):
        assert set(ranks[0][k]).isdisjoint(ranks[1][k])
        assert sorted(ranks[0][k] + ranks[1][k]) == sorted(batch), k
