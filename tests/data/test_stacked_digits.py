"""Stacked digits: three independent digits per image, 1000 modes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from gan_research.data import DigitsDataModule
from gan_research.data.stacked_digits import StackedDigitsDataModule
from gan_research.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "dataset"


@pytest.fixture(scope="module")
def stacked() -> StackedDigitsDataModule:
    dm = StackedDigitsDataModule(image_size=32, num_samples=3000, batch_size=32, seed=0)
    dm.setup()
    return dm


def test_shapes_and_loader(stacked: StackedDigitsDataModule) -> None:
    assert (stacked.name, stacked.num_classes, stacked.num_modes) == ("stacked_digits", 1000, 1000)
    assert stacked.sample_shape == (3, 32, 32)
    assert stacked.train_set.x.shape == (3000, 3, 32, 32) and stacked.train_set.x.dtype == torch.uint8
    x, y = next(iter(stacked.train_dataloader()))
    assert x.shape == (32, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (32,)
    assert x.min().item() >= -1.0 and x.max().item() <= 1.0


def test_labels_cover_many_of_the_1000_modes(stacked: StackedDigitsDataModule) -> None:
    y = stacked.train_set.y
    assert y.dtype == torch.int64 and int(y.min()) >= 0 and int(y.max()) <= 999
    # 3000 uniform draws over 1000 modes cover 1000 * (1 - e^-3) ≈ 950 of them.
    assert y.unique().numel() > 900


def test_each_channel_is_a_digit_of_its_label(stacked: StackedDigitsDataModule) -> None:
    digits = DigitsDataModule(image_size=32)
    digits.setup()
    base = ((digits.train_set.x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).flatten(1)
    x, y = stacked.train_set.x[:200], stacked.train_set.y[:200]
    for channel, place in enumerate((100, 10, 1)):
        pixels = x[:, channel].flatten(1)
        # Every channel is exactly one of the 1797 digits; its class is that digit of the label.
        match = (pixels[:, None, :] == base[None, :, :]).all(dim=2)
        assert match.any(dim=1).all()
        found = match.float().argmax(dim=1)
        assert torch.equal(digits.train_set.y[found], (y // place) % 10)


def test_channels_are_drawn_independently(stacked: StackedDigitsDataModule) -> None:
    y = stacked.train_set.y
    first, last = y // 100, y % 10
    assert (first == last).float().mean().item() < 0.2  # 0.1 expected; identical channels would give 1


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b, c = (StackedDigitsDataModule(num_samples=100, image_size=16, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.train_set.x, b.train_set.x) and torch.equal(a.train_set.y, b.train_set.y)
    assert not torch.equal(a.train_set.y, c.train_set.y)
    assert a.train_set.x.shape == (100, 3, 16, 16)


def test_defaults_and_bad_values() -> None:
    dm = StackedDigitsDataModule()
    assert (dm.num_samples, dm.image_size, dm.channels) == (50_000, 32, 3)
    with pytest.raises(ConfigError, match=r"stacked_digits.channels must be 3"):
        StackedDigitsDataModule(channels=1)
    with pytest.raises(ConfigError, match=r"stacked_digits.num_samples must be a positive integer, got 0"):
        StackedDigitsDataModule(num_samples=0)


def test_config_instantiates(tmp_path: Path) -> None:
    root = OmegaConf.create({"seed": 0, "paths": {"data_dir": str(tmp_path)}})
    cfg = OmegaConf.merge(root, {"dataset": OmegaConf.load(CONF_DIR / "stacked_digits.yaml")})
    dm = instantiate(cfg.dataset, num_samples=64)
    assert isinstance(dm, StackedDigitsDataModule) and dm.sample_shape == (3, 32, 32)
    assert cfg.dataset.num_samples == 50_000 and cfg.dataset.channels == 3
