"""Blind restoration data (gan_research.data.restoration): digits_degraded's (degraded, clean) pairs
and degraded_folder's on PNG/JPEG files written here, the degradation keyed by the draw number
(fresh per draw, reproducible, resumable) and by the index for the fixed validation pairs, the
config errors, and composition with pix2pix and metrics=restoration."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from gan_research.data.degradation import DegradationRanges, degrade
from gan_research.data.digits import DigitsDataModule
from gan_research.data.image_folder import load_image
from gan_research.data.restoration import (
    DegradedDigitsDataModule,
    DegradedFolderDataModule,
    degradation_ranges,
    validation_seed,
)
from gan_research.data.translation import KeyedRandomSampler, digit_images
from gan_research.errors import ConfigError, DataError
from gan_research.utils.data_spec import DataKind

SIZE = 16


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> DegradedDigitsDataModule:
    dm = DegradedDigitsDataModule(batch_size=16, seed=3)
    dm.setup()
    return dm


def on_uint8_grid(x: torch.Tensor) -> bool:
    pixels = (x + 1) * 127.5
    return bool(((pixels - pixels.round()).abs() < 1e-3).all())


# -- digits_degraded ----------------------------------------------------------------------------
def test_digits_pairs_are_clean_digits_and_their_keyed_degradation(digits) -> None:
    spec = digits.spec
    assert spec.kind is DataKind.PAIRED and digits.paired
    assert spec.a_shape == spec.sample_shape == (1, 32, 32) and spec.image_size_a is None
    assert (spec.channels, spec.image_size, spec.channels_a) == (1, 32, 1)
    assert spec.domain is not None and spec.domain.name == "digits"
    a, b = next(iter(digits.train_dataloader()))
    assert a.shape == b.shape == (16, 1, 32, 32) and a.dtype == b.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1 and b.min() >= -1 and b.max() <= 1
    assert on_uint8_grid(a)  # eq. 1 ends on the uint8 grid
    # Every clean image is a digit; every input differs from its clean image.
    every = digit_images(32)
    assert all((every - image).abs().flatten(1).amax(1).min() == 0 for image in b)
    assert ((a - b).abs().flatten(1).mean(1) > 0.01).all()
    # The input is degrade(clean) keyed by the sampler's draw numbers under the run's seed.
    items = list(itertools.islice(iter(KeyedRandomSampler(digits.train_set, seed=3)), 16))
    index, keys = zip(*items, strict=True)
    assert torch.equal(b, digits.train_set.b[list(index)])
    assert torch.equal(a, degrade(b, list(keys), 3, DegradationRanges()))
    assert list(keys) == list(range(16))  # the first epoch's draw numbers


def test_a_draw_is_reproducible_and_each_draw_is_fresh(digits) -> None:
    dataset, n = digits.train_set, len(digits.train_set)
    first, again = dataset.__getitems__([(5, 40)]), dataset.__getitems__([(5, 40)])
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    # The same image drawn again (next epoch's draw number, or any other) gets another degradation.
    for key in (41, 40 + n):
        other = dataset.__getitems__([(5, key)])
        assert torch.equal(other[1], first[1]) and not torch.equal(other[0], first[0])
    # Independent of the batch it is drawn in.
    batch = dataset.__getitems__([(7, 3), (5, 40), (9, 2)])
    assert torch.equal(batch[0][1], first[0][0])
    # Another run seed, another degradation of the same draw.
    other_seed = DegradedDigitsDataModule(seed=4).train_set.__getitems__([(5, 40)])
    assert not torch.equal(other_seed[0], first[0])


def test_a_resumed_run_sees_the_same_degraded_batches(digits) -> None:
    uninterrupted = list(itertools.islice(iter(digits.train_dataloader()), 4))
    resumed = DegradedDigitsDataModule(batch_size=16, seed=3)
    resumed.load_state_dict({"batches_consumed": 3})
    a, b = next(iter(resumed.train_dataloader()))
    assert torch.equal(a, uninterrupted[3][0]) and torch.equal(b, uninterrupted[3][1])


def test_validation_pairs_are_fixed_held_out_and_keyed_by_index(digits) -> None:
    (a, b), (a2, b2) = next(iter(digits.val_dataloader())), next(iter(digits.val_dataloader()))
    assert torch.equal(a, a2) and torch.equal(b, b2) and a.shape == (16, 1, 32, 32)
    n_val = len(digits.val_set)
    assert n_val == round(0.1 * 1797) and len(digits.train_set) + n_val == 1797
    assert set(digits.train_indices.tolist()).isdisjoint(digits.val_indices.tolist())
    clean = digit_images(32)[digits.val_indices]
    assert torch.equal(digits.val_set.b, clean)
    # Pair i is keyed by i under the split's seed (not the run's: every seed scores the same inputs).
    expected = degrade(clean, list(range(n_val)), validation_seed(0), DegradationRanges())
    assert torch.equal(digits.val_set.x, expected)
    assert validation_seed(0) != 0  # apart from the training draws of the same number
    other_run = DegradedDigitsDataModule(seed=99)
    assert torch.equal(other_run.val_set.x, digits.val_set.x)
    other_split = DegradedDigitsDataModule(split_seed=1)
    assert not torch.equal(other_split.val_set.b, digits.val_set.b)
    # The classes of the validation digits, in the validation order.
    labels = DigitsDataModule(image_size=8).train_set.y
    assert torch.equal(digits.val_labels, labels[digits.val_indices])


def test_config_ranges_reach_the_degradation() -> None:
    dm = DegradedDigitsDataModule(
        blur_sigma=OmegaConf.create([2, 2]),  # a config's lists are accepted
        downsample=[2, 2],
        noise=[0, 0],
        jpeg_quality=[90, 90],
        anisotropic_prob=0.5,
        kernel_size=21,
        interpolation="bicubic",
    )
    assert dm.ranges == DegradationRanges(
        sigma=(2, 2), scale=(2, 2), noise=(0, 0), quality=(90, 90), kernel_size=21, anisotropic_prob=0.5,
        interpolation="bicubic",
    )  # fmt: skip
    assert DegradedDigitsDataModule().ranges == DegradationRanges()  # the paper's
    a, b = dm.train_set.__getitems__([(0, 0)])
    assert torch.equal(a, degrade(b, [0], 0, dm.ranges))


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("blur_sigma", [0, 10], "0 < low <= high"),
        ("downsample", [8, 1], "0 < low <= high"),
        ("noise", [-1, 15], "0 <= low <= high"),
        ("jpeg_quality", [60, 101], "1 <= low <= high <= 100"),
        ("jpeg_quality", 80, "pair"),
        ("kernel_size", 40, "odd"),
        ("anisotropic_prob", 1.5, "[0, 1]"),
        ("interpolation", "nearest", "bilinear, bicubic"),
    ],
)
def test_bad_ranges_are_one_line_config_errors_naming_the_key(key, value, expected) -> None:
    with pytest.raises(ConfigError) as info:
        DegradedDigitsDataModule(**{key: value})
    message = str(info.value)
    assert message.startswith(f"digits_degraded: dataset.{key}") and expected in message
    assert "\n" not in message and "degradation." not in message
    with pytest.raises(ConfigError, match=rf"^degraded_folder: dataset\.{key}"):
        DegradedFolderDataModule(root="x", **{key: value})


def test_degradation_ranges_names_the_papers_value() -> None:
    with pytest.raises(ConfigError, match=r"dataset\.blur_sigma .*the paper's: \[0\.2, 10\]"):
        degradation_ranges("owner", blur_sigma=[0, 1])


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"channels": 3}, "dataset.channels=3"),
        ({"channels_a": 3}, "dataset.channels_a=3"),
        ({"val_fraction": 0.9}, "dataset.val_fraction=0.9"),
        ({"image_size": 0}, "image_size"),
    ],
)
def test_bad_digits_settings_are_config_errors(kwargs, expected) -> None:
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        DegradedDigitsDataModule(**kwargs)


# -- regions ------------------------------------------------------------------------------------
def test_regions_are_fixed_boxes_as_tuples_and_none_by_default() -> None:
    assert DegradedDigitsDataModule().regions == {}
    assert DegradedFolderDataModule(root="x").regions == {}
    boxes = {"left_eye": [10, 4, 16, 14], "mouth": (20, 8, 32, 24), "whole": [0, 0, 32, 32]}
    dm = DegradedDigitsDataModule(regions=boxes)
    assert dm.regions == {"left_eye": (10, 4, 16, 14), "mouth": (20, 8, 32, 24), "whole": (0, 0, 32, 32)}
    assert list(dm.regions) == ["left_eye", "mouth", "whole"]  # the config's order
    # A config mapping of lists (what Hydra passes) is read the same.
    node = OmegaConf.create({"top": [0, 0, 8, 16]})
    assert DegradedFolderDataModule(root="x", image_size=16, regions=node).regions == {"top": (0, 0, 8, 16)}


@pytest.mark.parametrize(
    ("regions", "key", "expected"),
    [
        ([[0, 0, 8, 8]], "dataset.regions=", "expected a mapping name -> [y0, x0, y1, x1]"),
        ({"eye": [0, 0, 8]}, "dataset.regions.eye=[0, 0, 8]", "expected four integers"),
        ({"eye": [0, 0, 8, 8.5]}, "dataset.regions.eye=", "expected four integers"),
        ({"eye": [0, 0, True, 8]}, "dataset.regions.eye=", "expected four integers"),
        ({"eye": "0 0 8 8"}, "dataset.regions.eye='0 0 8 8'", "expected four integers"),
        ({"eye": [0, 0, 40, 8]}, "dataset.regions.eye=[0, 0, 40, 8]", "inside the 32 px image"),
        ({"eye": [-1, 0, 8, 8]}, "dataset.regions.eye=[-1, 0, 8, 8]", "inside the 32 px image"),
        ({"eye": [8, 0, 8, 8]}, "dataset.regions.eye=[8, 0, 8, 8]", "positive size"),
        ({"eye": [0, 9, 8, 8]}, "dataset.regions.eye=[0, 9, 8, 8]", "positive size"),
        ({"left eye": [0, 0, 8, 8]}, "dataset.regions.left eye", "invalid region name"),
    ],
    ids=["list", "three", "float", "bool", "string", "outside", "negative", "empty", "reversed", "name"],
)
def test_bad_regions_are_one_line_config_errors_naming_the_region(regions, key, expected) -> None:
    for cls, kwargs in (
        (DegradedDigitsDataModule, {}),
        (DegradedFolderDataModule, {"root": "x", "image_size": 32}),
    ):
        with pytest.raises(ConfigError) as info:
            cls(regions=regions, **kwargs)
        message = str(info.value)
        assert message.startswith(f"{cls.name}: {key}"), message
        assert expected in message and "\n" not in message


# -- degraded_folder ----------------------------------------------------------------------------
def write_images(folder: Path, specs: list[tuple[str, str, tuple[int, int]]], seed: int) -> list[Path]:
    """Random images: (name with extension, PIL mode L or RGB, (width, height))."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for name, mode, (w, h) in specs:
        shape = (h, w) if mode == "L" else (h, w, 3)
        # Smooth-ish content (upsampled noise) so JPEG keeps it recognisable.
        pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name, **({"quality": 95} if name.endswith(".jpg") else {}))
        paths.append(folder / name)
    return paths


TRAIN = [
    ("a.png", "L", (20, 24)),
    ("b.jpg", "RGB", (32, 32)),
    ("c.png", "RGB", (40, 18)),
    ("d.jpg", "L", (16, 16)),
]
VAL = [("v0.png", "RGB", (24, 24)), ("v1.jpg", "L", (30, 20))]


@pytest.fixture
def face_folder(tmp_path: Path) -> tuple[Path, list[Path], list[Path]]:
    return tmp_path, write_images(tmp_path / "train", TRAIN, 1), write_images(tmp_path / "val", VAL, 2)


def folder_dm(root: Path, **kwargs) -> DegradedFolderDataModule:
    options = dict(image_size=SIZE, batch_size=2, num_workers=0, seed=5)
    return DegradedFolderDataModule(root=str(root), **{**options, **kwargs})


@pytest.mark.parametrize("channels", [1, 3])
def test_folder_pairs_are_files_and_their_keyed_degradation(face_folder, channels) -> None:
    root, train, _ = face_folder
    dm = folder_dm(root, channels=channels)
    spec = dm.spec
    assert spec.kind is DataKind.PAIRED and spec.domain is None
    assert spec.a_shape == spec.sample_shape == (channels, SIZE, SIZE)
    a, b = next(iter(dm.train_dataloader()))
    assert a.shape == b.shape == (2, channels, SIZE, SIZE) and a.dtype == torch.float32
    assert on_uint8_grid(a) and on_uint8_grid(b) and a.min() >= -1 and b.max() <= 1
    dataset = dm.train_set
    flips = set()
    for key in range(12):
        index = key % len(train)
        x, y = dataset[(index, key)]
        clean = load_image(train[index], SIZE, channels)  # centre square crop, resized
        mirrored = torch.equal(y, clean.flip(-1).float() / 127.5 - 1)
        assert mirrored or torch.equal(y, clean.float() / 127.5 - 1)
        flips.add(mirrored)
        pixels = ((y + 1) * 127.5).round().to(torch.uint8)
        assert torch.equal(x, degrade(pixels[None], [key], 5, dm.ranges)[0].float() / 127.5 - 1)
        assert (x - y).abs().mean() > 0.01
        again = dataset[(index, key)]
        assert torch.equal(again[0], x) and torch.equal(again[1], y)
    assert flips == {False, True}
    assert not torch.equal(dataset[(0, 0)][0], dataset[(0, 4)][0])  # the same file, another draw
    unflipped = folder_dm(root, channels=channels, flip=False).train_set
    assert all(
        torch.equal(unflipped[(0, k)][1], load_image(train[0], SIZE, channels) / 127.5 - 1) for k in range(6)
    )


def test_folder_validation_is_fixed_and_keyed_by_index(face_folder) -> None:
    root, _, val = face_folder
    dm = folder_dm(root, channels=3, split_seed=7)
    a, b = next(iter(dm.val_dataloader()))
    clean = torch.stack([load_image(p, SIZE, 3) for p in val])
    assert torch.equal(b, clean.float() / 127.5 - 1)
    expected = degrade(clean, [0, 1], validation_seed(7), dm.ranges)
    assert torch.equal(a, expected.float() / 127.5 - 1)
    again = next(iter(folder_dm(root, channels=3, split_seed=7, seed=6).val_dataloader()))
    assert torch.equal(again[0], a) and torch.equal(again[1], b)
    assert len(folder_dm(root, max_val_images=1).val_set) == 1


def test_folder_without_val_dir_holds_out_a_seeded_share(tmp_path: Path) -> None:
    files = write_images(tmp_path, [(f"{i:02d}.png", "RGB", (16, 16)) for i in range(10)], 3)
    dm = folder_dm(tmp_path, train_dir=".", val_dir=None, val_fraction=0.3, split_seed=2)
    dm.setup()
    train, val = dm.train_set.files, dm.val_set
    assert len(train) == 7 and len(val) == 3 and sorted(train) == train
    held = [p for p in files if p not in train]
    # Held in memory as uint8 (scaled to [-1, 1] per batch).
    assert torch.equal(val.b, torch.stack([load_image(p, SIZE, 3) for p in held]))
    other = folder_dm(tmp_path, train_dir=".", val_dir=None, val_fraction=0.3, split_seed=3)
    assert other.train_set.files != train


def test_folder_errors_are_one_line_data_errors_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere") as info:
        folder_dm(tmp_path / "nowhere").setup()
    assert "\n" not in str(info.value)
    (tmp_path / "train").mkdir()
    write_images(tmp_path / "val", VAL, 4)
    with pytest.raises(DataError, match=r"no image files in .*train"):
        folder_dm(tmp_path).setup()
    write_images(tmp_path / "train", TRAIN[:2], 5)
    (tmp_path / "train" / "broken.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError) as info:
        folder_dm(tmp_path).setup()
    assert str(tmp_path / "train" / "broken.png") in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"dataset\.root"):
        DegradedFolderDataModule(root="???")
    with pytest.raises(ConfigError, match=r"dataset\.channels_b=1 disagrees"):
        DegradedFolderDataModule(root="x", channels=3, channels_b=1)
    with pytest.raises(ConfigError, match=r"dataset\.val_dir='val' lies inside dataset\.train_dir='\.'"):
        DegradedFolderDataModule(root=str(tmp_path), train_dir=".", val_dir="val")


# -- configs ------------------------------------------------------------------------------------
def test_pix2pix_composes_with_digits_degraded_and_restoration_metrics(make_cfg) -> None:
    from gan_research.metrics.restoration import RestorationMetrics
    from gan_research.train import build

    cfg = make_cfg(
        "model=pix2pix",
        "dataset=digits_degraded",
        "metrics=restoration",
        "model.generator.num_downs=5",
        "model.discriminator.input_channels=2",
        "model.discriminator.n_layers=2",
        "metrics.feature_network=none",
        "metrics.identity_network=none",
        "dataset.noise=[0,5]",
    )
    dm = instantiate(cfg.dataset)
    assert isinstance(dm, DegradedDigitsDataModule) and dm.ranges.noise == (0.0, 5.0)
    assert (cfg.dataset.channels_a, cfg.dataset.channels_b, cfg.dataset.image_size) == (1, 1, 32)
    objs = build(cfg)
    assert isinstance(objs["evaluation"].evaluator, RestorationMetrics)
    assert objs["model"].generator.output_shape == (1, 32, 32)


def test_degraded_folder_config_instantiates(make_cfg, face_folder) -> None:
    root, _, _ = face_folder
    cfg = make_cfg(
        "dataset=degraded_folder",
        f"dataset.root={root}",
        f"dataset.image_size={SIZE}",
        "dataset.batch_size=2",
    )
    dm = instantiate(cfg.dataset)
    assert isinstance(dm, DegradedFolderDataModule) and dm.ranges == DegradationRanges()
    assert dm.spec.sample_shape == (3, SIZE, SIZE) and cfg.dataset.channels_a == 3
    assert len(dm.train_set) == len(TRAIN)
    assert dm.regions == {}


def test_regions_are_given_as_a_dict_override(make_cfg) -> None:
    cfg = make_cfg("dataset=digits_degraded", "dataset.regions={top:[0,0,16,32],bottom:[16,0,32,32]}")
    assert instantiate(cfg.dataset).regions == {"top": (0, 0, 16, 32), "bottom": (16, 0, 32, 32)}
    assert instantiate(make_cfg("dataset=digits_degraded").dataset).regions == {}
