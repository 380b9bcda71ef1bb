"""scikit-learn's bundled digits, resized and scaled to [-1, 1]."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from gan_research.data import DigitsDataModule
from gan_research.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "dataset"


@pytest.mark.parametrize("image_size", [32, 28])
def test_all_digits_resized_into_signed_unit_range(image_size: int) -> None:
    dm = DigitsDataModule(image_size=image_size)
    assert dm.sample_shape == (1, image_size, image_size)  # known before setup
    assert (dm.name, dm.num_classes, dm.spec.is_image) == ("digits", 10, True)
    dm.setup("fit")
    x, y = dm.train_set.x, dm.train_set.y
    assert x.shape == (1797, 1, image_size, image_size) and x.dtype == torch.float32
    assert x.min().item() == -1.0
    assert x.max().item() == pytest.approx(1.0, abs=1e-6)
    assert x.max().item() <= 1.0
    assert y.dtype == torch.int64 and sorted(y.unique().tolist()) == list(range(10))


def test_native_size_keeps_sklearn_pixels() -> None:
    from sklearn.datasets import load_digits

    dm = DigitsDataModule(image_size=8)
    dm.setup()
    expected = torch.as_tensor(load_digits().images, dtype=torch.float32) / 8 - 1
    assert torch.allclose(dm.train_set.x[:, 0], expected)


def test_loader_batches_and_rgb_option() -> None:
    dm = DigitsDataModule(image_size=16, channels=3, batch_size=32, batches_per_step=2)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (64, 3, 16, 16) and y.shape == (64,)
    assert torch.equal(x[:, 0], x[:, 2])


def test_bad_channels_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"channels must be 1 \(grey\) or 3 \(RGB\), got 2"):
        DigitsDataModule(channels=2)


def test_config_instantiates(tmp_path: Path) -> None:
    root = OmegaConf.create({"seed": 0, "paths": {"data_dir": str(tmp_path)}})
    cfg = OmegaConf.merge(root, {"dataset": OmegaConf.load(CONF_DIR / "digits.yaml")})
    dm = instantiate(cfg.dataset)
    assert isinstance(dm, DigitsDataModule) and dm.sample_shape == (1, 32, 32)


def test_default_keeps_every_digit_for_training() -> None:
    dm = DigitsDataModule(image_size=8)
    assert dm.test_set is None
    dm.setup()
    assert len(dm.train_set) == 1797 and torch.equal(dm.train_indices, torch.arange(1797))
    assert dm.test_set is None and len(dm.test_indices) == 0


def test_held_out_split_is_stratified_disjoint_and_removed_from_training() -> None:
    full = DigitsDataModule(image_size=8)
    dm = DigitsDataModule(image_size=8, test_fraction=0.2)
    counts = full.train_set.y.bincount()
    expected_test = torch.tensor([round(0.2 * int(n)) for n in counts])
    test, train = dm.test_set, dm.train_set
    assert torch.equal(test.y.bincount(minlength=10), expected_test)
    assert torch.equal(train.y.bincount(minlength=10), counts - expected_test)
    assert len(test) == int(expected_test.sum()) == 359 and len(train) == 1797 - 359
    train_idx, test_idx = set(dm.train_indices.tolist()), set(dm.test_indices.tolist())
    assert not train_idx & test_idx and train_idx | test_idx == set(range(1797))
    assert torch.equal(train.x, full.train_set.x[dm.train_indices])
    assert torch.equal(test.x, full.train_set.x[dm.test_indices])
    assert torch.equal(test.y, full.train_set.y[dm.test_indices])
    # Training batches come from the training part only.
    x, _ = next(iter(dm.train_dataloader()))
    assert all(any(torch.equal(row, t) for t in train.x) for row in x[:4])


def test_held_out_split_is_reproducible_from_its_own_seed() -> None:
    def split(**kwargs) -> torch.Tensor:
        dm = DigitsDataModule(image_size=8, test_fraction=0.2, **kwargs)
        dm.setup()
        return dm.test_indices

    assert torch.equal(split(), split())
    assert torch.equal(split(seed=5), split(seed=6))  # the run's seed does not move the split
    assert not torch.equal(split(split_seed=0), split(split_seed=1))


@pytest.mark.parametrize("value", [-0.1, 0.95, 1.0, True, "0.2"])
def test_bad_test_fraction_is_a_config_error(value) -> None:
    with pytest.raises(ConfigError, match=rf"digits.test_fraction={value!r} is invalid.*\[0, 0.9\]"):
        DigitsDataModule(test_fraction=value)


def test_config_default_has_no_held_out_split(tmp_path: Path) -> None:
    cfg = OmegaConf.load(CONF_DIR / "digits.yaml")
    assert cfg.test_fraction == 0.0 and cfg.split_seed == 0
