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
    assert (dm.name, dm.num_classes, dm.is_image) == ("digits", 10, True)
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
