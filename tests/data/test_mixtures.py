"""2-D Gaussian mixtures, and the batching that every in-memory datamodule shares."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from lightning_fabric.utilities.data import _replace_dunder_methods
from omegaconf import OmegaConf
from pytorch_lightning.utilities.data import _update_dataloader
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from gan_research.data import GANDataModule, GridMixture, RingMixture
from gan_research.errors import ConfigError, DataError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "dataset"


def _batches(dm: GANDataModule, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(itertools.islice(dm.train_dataloader(), count))


def test_ring8_modes_lie_on_the_circle() -> None:
    dm = RingMixture()
    assert dm.name == "ring8"
    assert dm.modes.shape == (8, 2)
    for i, (x, y) in enumerate(dm.modes.tolist()):
        assert x == pytest.approx(math.cos(2 * math.pi * i / 8), abs=1e-6)
        assert y == pytest.approx(math.sin(2 * math.pi * i / 8), abs=1e-6)
    assert RingMixture(num_modes=6, radius=2.0).modes.norm(dim=1).tolist() == pytest.approx([2.0] * 6)


def test_grid25_modes_are_a_centred_grid_with_spacing_2() -> None:
    dm = GridMixture()
    assert dm.name == "grid25"
    assert dm.modes.shape == (25, 2)
    expected = {(float(x), float(y)) for x in range(-4, 5, 2) for y in range(-4, 5, 2)}
    assert {tuple(m) for m in dm.modes.tolist()} == expected
    distances = torch.cdist(dm.modes, dm.modes) + torch.eye(25) * 1e9
    assert distances.min().item() == pytest.approx(2.0)


@pytest.mark.parametrize(("cls", "std"), [(RingMixture, 0.01), (GridMixture, 0.05)])
def test_samples_have_the_configured_std_and_mode_labels(cls: type[GANDataModule], std: float) -> None:
    dm = cls()
    assert (dm.sample_shape, dm.num_classes, dm.spec.is_image, dm.std) == ((2,), len(dm.modes), False, std)
    dm.setup("fit")
    x, y = dm.train_set.x, dm.train_set.y
    assert x.shape == (100_000, 2) and x.dtype == torch.float32 and y.dtype == torch.int64
    # Modes are far apart relative to std, so the nearest mode of a point is its label.
    assert torch.equal(torch.cdist(x, dm.modes).argmin(dim=1), y)
    assert torch.bincount(y, minlength=dm.num_classes).min() > 0
    for mode in range(dm.num_classes):
        offsets = x[y == mode] - dm.modes[mode]
        assert offsets.mean(dim=0).abs().max() < 0.1 * std
        assert offsets.std(dim=0).tolist() == pytest.approx([std, std], rel=0.1)


def test_loader_yields_batches_per_step_batches_at_once() -> None:
    dm = RingMixture(num_samples=10_000, batch_size=256, batches_per_step=3)
    loader = dm.train_dataloader()
    assert len(loader) == 10_000 // 768  # last partial batch dropped
    batches = list(loader)
    assert len(batches) == len(loader)
    for x, y in batches:
        assert x.shape == (768, 2) and x.dtype == torch.float32
        assert y.shape == (768,) and y.dtype == torch.int64
    # Shuffled, without repeats inside an epoch.
    xs = torch.cat([x for x, _ in batches])
    assert torch.unique(xs, dim=0).shape[0] == len(xs)
    assert not torch.equal(xs, dm.train_set.x[: len(xs)])


def test_same_seed_same_batches_different_seed_different() -> None:
    def first(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return _batches(RingMixture(num_samples=2_000, batch_size=64, seed=seed), 3)

    same = zip(first(1), first(1), strict=True)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in same)
    assert not torch.equal(first(1)[0][0], first(2)[0][0])


def test_setup_is_idempotent_and_val_loader_is_ordered() -> None:
    dm = GridMixture(num_samples=1_000, batch_size=100)
    dm.setup("fit")
    data = dm.train_set
    dm.setup("fit")
    assert dm.train_set is data
    assert torch.equal(torch.cat([x for x, _ in dm.val_dataloader()]), data.x)


def test_workers_get_batches_too() -> None:
    dm = RingMixture(num_samples=1_000, batch_size=100, num_workers=1)
    loader = dm.train_dataloader()
    assert loader.persistent_workers
    x, y = next(iter(loader))
    assert x.shape == (100, 2) and y.shape == (100,)


def test_lightning_can_shard_the_loader_for_ddp() -> None:
    # Under DDP Lightning re-creates the loader around a DistributedSampler; batches
    # must stay whole batches of batch_size * batches_per_step.
    # (Private Lightning helpers: the two steps its data connector takes for DDP.)
    dm = RingMixture(num_samples=1_000, batch_size=50, batches_per_step=2)
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        loader = dm.train_dataloader()
    sampler = DistributedSampler(dm.train_set, num_replicas=2, rank=0, shuffle=True, seed=0)
    loader = _update_dataloader(loader, sampler)
    batches = list(loader)
    assert len(batches) == 500 // 100
    assert all(x.shape == (100, 2) for x, _ in batches)


def test_too_few_samples_for_one_step_is_a_data_error() -> None:
    dm = RingMixture(num_samples=100, batch_size=64, batches_per_step=2)
    with pytest.raises(DataError, match=r"100 samples.*64 \* 2 = 128"):
        dm.setup("fit")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_modes": 0}, "num_modes"),
        ({"std": -1.0}, "std"),
        ({"radius": 0}, "radius"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_workers": -1}, "num_workers"),
    ],
)
def test_bad_ring_config_is_a_config_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RingMixture(**kwargs)


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_config_instantiates(name: str, tmp_path: Path) -> None:
    root = OmegaConf.create({"seed": 3, "paths": {"data_dir": str(tmp_path)}})
    cfg = OmegaConf.merge(root, {"dataset": OmegaConf.load(CONF_DIR / f"{name}.yaml")})
    dm = instantiate(cfg.dataset, batches_per_step=2)
    assert dm.name == name and dm.seed == 3 and dm.batches_per_step == 2
