"""A folder of images: flat and class layouts, and the errors for bad folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from gan_research.data import ImageFolderDataModule
from gan_research.errors import ConfigError, DataError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "dataset"


def write_images(folder: Path, count: int, size: tuple[int, int] = (12, 12), ext: str = "png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(list(folder.iterdir())))
    for i in range(count):
        pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{i:03d}.{ext}")


@pytest.mark.parametrize("cache", [True, False])
def test_flat_folder(tmp_path: Path, cache: bool) -> None:
    write_images(tmp_path, 6)
    write_images(tmp_path, 2, ext="jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    dm = ImageFolderDataModule(root=tmp_path, image_size=8, batch_size=4, batches_per_step=2, cache=cache)
    assert dm.sample_shape == (3, 8, 8) and dm.spec.is_image
    assert dm.num_classes is None
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 8, 8) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert y.dtype == torch.int64 and y.tolist() == [0] * 8


def test_class_subfolders_give_sorted_labels(tmp_path: Path) -> None:
    write_images(tmp_path / "dog", 3)
    write_images(tmp_path / "cat", 2)
    dm = ImageFolderDataModule(root=tmp_path, image_size=8, channels=1, batch_size=5)
    assert (dm.num_classes, dm.classes) == (2, ["cat", "dog"])
    assert dm.sample_shape == (1, 8, 8)
    dm.setup("fit")
    assert dm.train_set.y.tolist() == [0, 0, 1, 1, 1]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (5, 1, 8, 8) and sorted(y.tolist()) == [0, 0, 1, 1, 1]


def test_images_are_centre_cropped_then_resized(tmp_path: Path) -> None:
    # 40x20: a black quarter on each side of a white centre; the square crop is all white.
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, 10:30] = 255
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    dm = ImageFolderDataModule(root=tmp_path, image_size=4, batch_size=1)
    dm.setup()
    assert torch.equal(dm.train_set.x, torch.full((1, 3, 4, 4), 255, dtype=torch.uint8))
    x, _ = next(iter(dm.train_dataloader()))
    assert torch.equal(x, torch.ones(1, 3, 4, 4))


def test_missing_root_is_named(tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"{root} does not exist"):
        ImageFolderDataModule(root=root).setup("fit")


def test_empty_folder_names_folder_and_extensions(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=rf"no image files in {tmp_path}.*\.png"):
        ImageFolderDataModule(root=tmp_path).setup("fit")


@pytest.mark.parametrize("cache", [True, False])
def test_corrupt_file_is_named(tmp_path: Path, cache: bool) -> None:
    write_images(tmp_path, 3)
    (tmp_path / "x.png").write_bytes(np.random.default_rng(0).bytes(300))
    dm = ImageFolderDataModule(root=tmp_path, image_size=8, batch_size=2, cache=cache)
    with pytest.raises(DataError, match=r"x\.png"):
        dm.setup("fit")


def test_too_few_images_for_a_step(tmp_path: Path) -> None:
    write_images(tmp_path, 3)
    with pytest.raises(DataError, match=r"3 samples.*2 \* 2 = 4"):
        ImageFolderDataModule(root=tmp_path, image_size=8, batch_size=2, batches_per_step=2).setup("fit")


def test_mixed_layout_and_empty_class_are_errors(tmp_path: Path) -> None:
    write_images(tmp_path / "cat", 2)
    (tmp_path / "dog").mkdir()
    with pytest.raises(DataError, match=r"\['dog'\]"):
        ImageFolderDataModule(root=tmp_path, batch_size=1).setup("fit")
    write_images(tmp_path, 2)
    with pytest.raises(DataError, match="both images and subfolders"):
        ImageFolderDataModule(root=tmp_path, batch_size=1).setup("fit")


def test_bad_options_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="channels"):
        ImageFolderDataModule(root=tmp_path, channels=4)
    with pytest.raises(ConfigError, match="extensions"):
        ImageFolderDataModule(root=tmp_path, extensions=[])


def test_config_instantiates_without_touching_disk(tmp_path: Path) -> None:
    root = tmp_path / "images"
    base = OmegaConf.create({"seed": 0, "paths": {"data_dir": str(tmp_path)}})
    cfg = OmegaConf.merge(base, {"dataset": OmegaConf.load(CONF_DIR / "image_folder.yaml")})
    assert OmegaConf.is_missing(cfg.dataset, "root")
    cfg.dataset.root = str(root)
    dm = instantiate(cfg.dataset, batch_size=2)
    assert dm.sample_shape == (3, 64, 64) and dm.extensions == (".bmp", ".jpeg", ".jpg", ".png", ".webp")
    write_images(root, 2, size=(70, 64), ext="JPG")
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (2, 3, 64, 64)
