"""The embedded semantic scenes: deterministic for a seed, disjoint splits, every class present and
painted in its documented colour, the declared spec, aligned (label map, photo) training batches
and the config errors."""

from __future__ import annotations

import itertools

import pytest
import torch

from gan_research.data.scenes import CLASSES, COLOURS, ScenesDataModule, make_scenes
from gan_research.data.semantic import labels_of
from gan_research.errors import ConfigError
from gan_research.utils.data_spec import DataKind


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_make_scenes_is_deterministic_for_a_seed_and_differs_across_seeds() -> None:
    labels, images = make_scenes(8, 32, seed=3)
    assert labels.shape == (8, 1, 32, 32) and labels.dtype == torch.int16
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.uint8
    again = make_scenes(8, 32, seed=3)
    assert torch.equal(labels, again[0]) and torch.equal(images, again[1])
    other_labels, other_images = make_scenes(8, 32, seed=4)
    assert not torch.equal(labels, other_labels) and not torch.equal(images, other_images)
    # Every scene is its own layout (no repeats within a set).
    flat = labels.flatten(1)
    assert all(not torch.equal(flat[i], flat[j]) for i in range(8) for j in range(i))


def test_every_class_occurs_and_ids_are_in_range() -> None:
    labels, _ = make_scenes(64, 32, seed=0)
    counts = torch.bincount(labels.flatten().long(), minlength=len(CLASSES))
    assert len(counts) == len(CLASSES) == 6
    assert bool((counts > 0).all()), counts
    # Each scene has a background and at least one shape.
    per_scene = [set(s.unique().tolist()) for s in labels]
    assert all(len(ids - {0}) >= 1 for ids in per_scene)


def test_each_class_is_painted_in_its_documented_colour() -> None:
    labels, images = make_scenes(64, 32, seed=0)
    pixels = images.float().permute(1, 0, 2, 3) / 255  # (3, N, s, s)
    base = torch.tensor(COLOURS)
    for k, name in enumerate(CLASSES):
        colour = pixels[:, labels[:, 0] == k].median(1).values
        # Brightness, tint and texture scale a class's base colour: the same factor in R, G and B ...
        ratio = colour / base[k]
        assert float(ratio.max() / ratio.min()) < 1.1, (name, colour, ratio)
        assert 0.5 < float(ratio.mean()) < 1.3, (name, colour, ratio)
        # ... and no other class's colour fits as well (a permuted palette would fail here).
        spreads = [(colour / base[j]).max() / (colour / base[j]).min() for j in range(len(CLASSES))]
        assert int(torch.stack(spreads).argmin()) == k, (name, spreads)


def test_spec_declares_paired_label_maps_of_six_classes() -> None:
    dm = ScenesDataModule(num_train=8, num_val=4, batch_size=4)
    spec = dm.spec
    assert spec.kind is DataKind.PAIRED
    assert spec.num_classes == 6 and spec.channels_a == 6 and spec.channels == 3
    assert spec.a_shape == (6, 32, 32) and spec.sample_shape == (3, 32, 32) and spec.image_size == 32
    assert dm.class_names == CLASSES


def test_training_and_validation_scenes_differ() -> None:
    # load_size = image_size: both splits at 32 px, so their layouts can be compared directly.
    dm = ScenesDataModule(image_size=32, load_size=32, num_train=64, num_val=16, batch_size=4)
    train, val = dm.train_set.x.flatten(1), dm.val_set.x.flatten(1)
    assert train.shape == (64, 32 * 32) and val.shape == (16, 32 * 32)
    assert not any(torch.equal(v, t) for v in val for t in train)
    # The scene seed moves both splits; the run's seed does not move the scenes.
    moved = ScenesDataModule(image_size=32, load_size=32, num_train=64, num_val=16, scene_seed=1)
    assert not torch.equal(moved.val_set.x, dm.val_set.x)
    reseeded = ScenesDataModule(image_size=32, load_size=32, num_train=64, num_val=16, seed=7)
    assert torch.equal(reseeded.val_set.x, dm.val_set.x) and torch.equal(reseeded.train_set.x, dm.train_set.x)


def test_batches_are_one_hot_maps_with_their_photos_after_the_jitter() -> None:
    dm = ScenesDataModule(image_size=32, load_size=36, num_train=16, num_val=4, batch_size=8)
    scenes, photos = dm.train_set.x[:, 0].long(), dm.train_set.b  # at load_size, before the jitter
    a, b = next(iter(dm.train_dataloader()))
    assert a.shape == (8, 6, 32, 32) and b.shape == (8, 3, 32, 32)
    assert torch.equal(a.sum(1), torch.ones(8, 32, 32))
    assert float(b.min()) >= -1 and float(b.max()) <= 1
    ids, _ = labels_of(a)
    views = set()
    for label_crop, photo in zip(ids, b, strict=True):
        pixels = ((photo + 1) * 127.5).round().to(torch.uint8)
        # Where the photo was cut from (unique: the background's speckle is per pixel) ...
        found = [
            (s, top, left, flip)
            for s, flip in itertools.product(range(len(photos)), (False, True))
            for top, left in itertools.product(range(5), repeat=2)
            if torch.equal(view(photos[s], flip)[:, top : top + 32, left : left + 32], pixels)
        ]
        assert len(found) == 1, found
        s, top, left, flip = found[0]
        # ... is where its label map was cut from.
        assert torch.equal(view(scenes[s], flip)[top : top + 32, left : left + 32], label_crop)
        views.add((top, left, flip))
    assert len(views) > 2  # the crops moved
    a, b = next(iter(dm.val_dataloader()))
    assert torch.equal(labels_of(a)[0], dm.val_set.x[:4, 0].long())


def view(x: torch.Tensor, flip: bool) -> torch.Tensor:
    return x.flip(-1) if flip else x


@pytest.mark.parametrize(
    ("key", "value", "valid"),
    [("num_classes", 5, 6), ("channels_a", 3, 6), ("channels_b", 1, 3), ("num_classes", True, 6)],
)
def test_fixed_keys_are_config_errors_naming_the_valid_value(key: str, value, valid: int) -> None:
    with pytest.raises(ConfigError) as info:
        ScenesDataModule(**{key: value})
    message = str(info.value)
    assert f"dataset.{key}={value!r}" in message and f"valid: {valid}" in message


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"num_val": 1}, "dataset.num_val"),
        ({"num_train": 0}, "dataset.num_train"),
        ({"load_size": 30}, "dataset.load_size=30"),
        ({"scene_seed": "a"}, "dataset.scene_seed"),
    ],
)
def test_bad_sizes_are_config_errors(kwargs, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        ScenesDataModule(**kwargs)
