"""Translation data: paired/unpaired folders read from files written here, the digits tasks, jitter."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from gan_research.data import (
    DigitsEdgesDataModule,
    DigitsInvertedDataModule,
    PairedFolderDataModule,
    UnpairedFolderDataModule,
)
from gan_research.data.base import ResumableRandomSampler
from gan_research.data.translation import (
    KeyedRandomSampler,
    TranslationDataset,
    digit_images,
    edge_map,
    jitter_draws,
)
from gan_research.errors import ConfigError, DataError

HALF = 12  # side of each written image (each half of a pair); = load_size, so PIL does not resize
CROP = 8
OFFSET = 50  # paired files: B = A + OFFSET, pixel for pixel


def texture(rng: np.random.Generator, side: int = HALF) -> np.ndarray:
    """Random grey pixels in 0..200 (room for + OFFSET), with no symmetry a crop or flip could hide."""
    return rng.integers(0, 201, size=(side, side), dtype=np.uint8)


def write_pairs(
    folder: Path, count: int, seed: int, width: int = 2 * HALF
) -> list[tuple[np.ndarray, np.ndarray]]:
    """pix2pix files: A (left) a random texture, B (right) = A + OFFSET. Returns [(A, B)] in file order."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(count):
        a = texture(rng)
        b = a + OFFSET
        pixels = np.zeros((HALF, width), dtype=np.uint8)
        pixels[:, :HALF], pixels[:, HALF : 2 * HALF] = a, b
        Image.fromarray(pixels).convert("RGB").save(folder / f"{i:03d}.png")
        pairs.append((a, b))
    return pairs


def write_domain(folder: Path, count: int, seed: int) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = [texture(rng) for _ in range(count)]
    for i, pixels in enumerate(images):
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return images


def as_uint8(x: torch.Tensor) -> np.ndarray:
    """A [-1, 1] grey image (1, H, W) back to its 0..255 pixels."""
    return ((x[0] + 1) * 127.5).round().to(torch.uint8).numpy()


def locate(crop: np.ndarray, sources: list[np.ndarray]) -> tuple[int, int, int, bool]:
    """``(source, top, left, flipped)`` of the one crop of ``sources`` equal to ``crop``."""
    found = []
    side = crop.shape[-1]
    for (s, image), flipped in itertools.product(enumerate(sources), (False, True)):
        view = image[:, ::-1] if flipped else image
        for top, left in itertools.product(range(image.shape[0] - side + 1), repeat=2):
            if np.array_equal(view[top : top + side, left : left + side], crop):
                # A flipped crop at `left` of the mirror is the crop at the mirrored offset.
                found.append((s, top, image.shape[1] - side - left if flipped else left, flipped))
    assert len(found) == 1, found
    return found[0]


def batches(dm, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``count`` training batches, over epochs as Lightning takes them (one loader, re-iterated)."""
    loader = dm.train_dataloader()
    out: list[tuple[torch.Tensor, torch.Tensor]] = []
    while len(out) < count:
        out += list(itertools.islice(iter(loader), count - len(out)))
    return out


def paired_dm(root: Path, **kwargs) -> PairedFolderDataModule:
    options = dict(load_size=HALF, crop_size=CROP, channels=1, batch_size=4)
    return PairedFolderDataModule(root=root, **{**options, **kwargs})


# -- paired folders ----------------------------------------------------------------------
@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_paired_folder_halves_crop_and_flip_together(tmp_path: Path, direction: str) -> None:
    pairs = write_pairs(tmp_path / "train", 6, seed=1)
    write_pairs(tmp_path / "val", 2, seed=2)
    dm = paired_dm(tmp_path, direction=direction, flip=True, batch_size=3, batches_per_step=2)
    assert dm.paired and dm.a_shape == dm.b_shape == dm.sample_shape == (1, CROP, CROP)
    assert dm.num_classes is None
    lefts, rights = [p[0] for p in pairs], [p[1] for p in pairs]
    sources_a, sources_b = (lefts, rights) if direction == "AtoB" else (rights, lefts)
    seen = set()
    for a, b in batches(dm, 4):
        assert a.shape == b.shape == (6, 1, CROP, CROP) and a.dtype == torch.float32
        assert a.min() >= -1 and b.max() <= 1
        # B = A + OFFSET survives the jitter: the same crop and flip in a and b.
        sign = 1 if direction == "AtoB" else -1
        torch.testing.assert_close(b - a, torch.full_like(a, sign * OFFSET / 127.5), atol=1e-5, rtol=0)
        for x, y in zip(a, b, strict=True):
            where = locate(as_uint8(x), sources_a)  # a comes from the A half (B half for BtoA) ...
            assert locate(as_uint8(y), sources_b) == where  # ... and b from the other half, same view
            seen.add(where[1:])
    # The jitter really moves and mirrors: several offsets, both flips.
    assert len({s[:2] for s in seen}) > 3 and {s[2] for s in seen} == {False, True}


def test_paired_folder_resizes_to_load_size(tmp_path: Path) -> None:
    write_pairs(tmp_path / "train", 2, seed=1)
    write_pairs(tmp_path / "test", 2, seed=2)  # no val/: test/ is the validation split
    dm = PairedFolderDataModule(root=tmp_path, load_size=16, crop_size=10, channels=3, batch_size=2)
    dm.setup()
    assert dm.train_set.x.shape == dm.train_set.b.shape == (2, 3, 16, 16)
    assert dm.train_set.x.dtype == torch.uint8  # held as uint8, scaled per batch
    assert dm.val_set.x.shape == (2, 3, 10, 10)
    a, b = next(iter(dm.train_dataloader()))
    assert a.shape == b.shape == (2, 3, 10, 10)


def test_paired_val_is_fixed_unjittered_and_sorted(tmp_path: Path) -> None:
    write_pairs(tmp_path / "train", 4, seed=1)
    val = write_pairs(tmp_path / "val", 3, seed=2)
    test = write_pairs(tmp_path / "test", 3, seed=3)
    # Validation images are resized straight to crop_size; written at that size, they come back as is.
    dm = paired_dm(tmp_path, load_size=HALF, crop_size=HALF, flip=True, batch_size=2)
    first = list(dm.val_dataloader())
    assert [len(a) for a, _ in first] == [2, 1]
    a = torch.cat([x for x, _ in first])
    b = torch.cat([y for _, y in first])
    for i, (left, right) in enumerate(val):  # val/ wins over test/, in file order, no crop, no flip
        assert np.array_equal(as_uint8(a[i]), left) and np.array_equal(as_uint8(b[i]), right)
    assert not np.array_equal(as_uint8(a[0]), test[0][0])
    again = list(dm.val_dataloader())
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(first, again, strict=True))


# -- unpaired folders --------------------------------------------------------------------
def make_unpaired(root: Path) -> dict[str, list[np.ndarray]]:
    return {
        name: write_domain(root / name, count, seed)
        for name, count, seed in (("trainA", 5, 1), ("trainB", 7, 2), ("testA", 3, 3), ("testB", 2, 4))
    }


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_unpaired_folder_domains_and_independent_b(tmp_path: Path, direction: str) -> None:
    domains = make_unpaired(tmp_path)
    dm = UnpairedFolderDataModule(
        root=tmp_path, load_size=HALF, crop_size=CROP, channels=1, batch_size=5, direction=direction
    )
    assert not dm.paired and dm.a_shape == dm.b_shape == (1, CROP, CROP)
    a_name, b_name = ("trainA", "trainB") if direction == "AtoB" else ("trainB", "trainA")
    dm.setup()
    assert len(dm.train_set) == len(domains[a_name])  # an epoch is a pass over domain A
    views = []
    for a, b in batches(dm, 6):
        assert a.shape == b.shape == (5, 1, CROP, CROP)
        for x, y in zip(a, b, strict=True):
            views.append((locate(as_uint8(x), domains[a_name]), locate(as_uint8(y), domains[b_name])))
    # b is drawn independently of a: its own image, crop and flip.
    b_images_per_a = {}
    for view_a, view_b in views:
        b_images_per_a.setdefault(view_a[0], set()).add(view_b[0])
    assert any(len(s) > 1 for s in b_images_per_a.values())
    assert sum(view_a[1:] != view_b[1:] for view_a, view_b in views) > len(views) // 2
    assert {view_b[3] for _, view_b in views} == {False, True}
    # Validation: testA and testB zipped to the shorter, in file order, no jitter.
    val_a, val_b = ("testA", "testB") if direction == "AtoB" else ("testB", "testA")
    dm = UnpairedFolderDataModule(tmp_path, HALF, HALF, channels=1, batch_size=2, direction=direction)
    a, b = next(iter(dm.val_dataloader()))
    assert len(a) == len(b) == 2
    for i in range(2):
        assert np.array_equal(as_uint8(a[i]), domains[val_a][i])
        assert np.array_equal(as_uint8(b[i]), domains[val_b][i])


# -- jitter: reproducible, resumable, off the global RNG ---------------------------------
def test_jitter_is_reproducible_from_the_seed(tmp_path: Path) -> None:
    write_pairs(tmp_path / "train", 6, seed=1)
    write_pairs(tmp_path / "val", 1, seed=2)
    one, two, other = (batches(paired_dm(tmp_path, seed=s, batch_size=2), 6) for s in (7, 7, 8))
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(one, two, strict=True))
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(one, other, strict=True))


def test_jitter_survives_workers_and_leaves_the_global_rng_alone(tmp_path: Path) -> None:
    write_pairs(tmp_path / "train", 6, seed=1)
    write_pairs(tmp_path / "val", 1, seed=2)
    state = torch.get_rng_state()
    in_process = batches(paired_dm(tmp_path, batch_size=2), 5)
    assert torch.equal(torch.get_rng_state(), state)
    in_workers = batches(paired_dm(tmp_path, batch_size=2, num_workers=2), 5)
    assert all(
        torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])
        for x, y in zip(in_process, in_workers, strict=True)
    )


@pytest.mark.parametrize("done", [2, 5, 7])  # mid-epoch, at an epoch boundary, in a later epoch
def test_resume_continues_with_the_same_jittered_batches(tmp_path: Path, done: int) -> None:
    make_unpaired(tmp_path)  # unpaired: the B draws must resume too; 5 A images, 5 steps per epoch

    def make() -> UnpairedFolderDataModule:
        return UnpairedFolderDataModule(tmp_path, HALF, CROP, channels=1, batch_size=1, seed=3)

    full = batches(make(), 12)
    resumed = make()
    resumed.load_state_dict({"batches_consumed": done})  # what a checkpoint at step `done` restores
    rest = batches(resumed, 12 - done)
    assert all(
        torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(full[done:], rest, strict=True)
    )
    assert not torch.equal(full[done][0], full[done - 1][0])


def test_keyed_sampler_keeps_the_resumable_order_and_numbers_draws() -> None:
    data = torch.arange(10)
    ours, theirs = KeyedRandomSampler(data, seed=4), ResumableRandomSampler(data, seed=4)
    epochs = [list(ours) for _ in range(3)]
    assert [[i for i, _ in e] for e in epochs] == [list(theirs) for _ in range(3)]
    assert [k for e in epochs for _, k in e] == list(range(30))
    # Under DDP each rank's sample keeps its one-process draw number.
    shards = [list(KeyedRandomSampler(data, seed=4, num_replicas=2, rank=r)) for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == sorted(epochs[0])


def test_jitter_draws_are_a_pure_function_in_range() -> None:
    keys = np.arange(1000)
    x = jitter_draws(5, keys, stream=0, high=7)
    assert torch.equal(x, jitter_draws(5, keys, stream=0, high=7))
    assert x.min() == 0 and x.max() == 6 and len(x.unique()) == 7
    assert not torch.equal(x, jitter_draws(5, keys, stream=1, high=7))
    assert not torch.equal(x, jitter_draws(6, keys, stream=0, high=7))
    assert torch.equal(jitter_draws(-1, [3], 0, 5), jitter_draws(-1, [3], 0, 5))  # negative seeds hash


# -- errors --------------------------------------------------------------------------------
def named(path: Path) -> str:
    return re.escape(str(path))


def test_folder_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=named(missing)):
        paired_dm(missing).setup()
    root = tmp_path / "pairs"
    (root / "val").mkdir(parents=True)
    with pytest.raises(DataError, match=named(root / "train") + " does not exist"):
        paired_dm(root).setup()
    (root / "train").mkdir()
    with pytest.raises(DataError, match=rf"no image files in {named(root / 'train')}.*png"):
        paired_dm(root).setup()
    write_pairs(root / "train", 4, seed=1)
    with pytest.raises(DataError, match=rf"no image files in {named(root / 'val')}"):
        paired_dm(root).setup()
    (root / "val").rmdir()
    with pytest.raises(DataError, match=named(root / "val") + r" does not exist.*or test"):
        paired_dm(root).setup()
    write_pairs(root / "val", 1, seed=2, width=2 * HALF + 1)
    with pytest.raises(DataError, match=named(root / "val" / "000.png") + r".*width is odd"):
        paired_dm(root).setup()
    (root / "train" / "001.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=named(root / "train" / "001.png")):
        paired_dm(root).setup()
    unpaired = tmp_path / "domains"
    make_unpaired(unpaired)
    for f in (unpaired / "testB").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=rf"no image files in {named(unpaired / 'testB')}"):
        UnpairedFolderDataModule(unpaired, HALF, CROP, batch_size=1).setup()
    (unpaired / "testB").rmdir()
    with pytest.raises(DataError, match=named(unpaired / "testB") + " does not exist.*testA"):
        UnpairedFolderDataModule(unpaired, HALF, CROP, batch_size=1).setup()


def test_bad_options_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"load_size=8 is smaller than dataset\.crop_size=12"):
        PairedFolderDataModule(tmp_path, load_size=8, crop_size=12)
    with pytest.raises(ConfigError, match=r"direction='AB'.*\['AtoB', 'BtoA'\]"):
        PairedFolderDataModule(tmp_path, direction="AB")
    with pytest.raises(ConfigError, match=r"image_size=64 disagrees with dataset\.crop_size=256"):
        UnpairedFolderDataModule(tmp_path, image_size=64)
    with pytest.raises(ConfigError, match=r"channels_b=3 disagrees with dataset\.channels=1"):
        PairedFolderDataModule(tmp_path, channels=1, channels_b=3)
    with pytest.raises(ConfigError, match=r"dataset\.root"):
        PairedFolderDataModule("???")
    with pytest.raises(ConfigError, match=r"channels_a=3.*valid: 1"):
        DigitsEdgesDataModule(channels_a=3)
    with pytest.raises(ConfigError, match="val_fraction"):
        DigitsInvertedDataModule(val_fraction=0.0)
    with pytest.raises(ConfigError, match="image_size"):
        DigitsEdgesDataModule(image_size=40, load_size=36)


# -- embedded digits tasks ---------------------------------------------------------------
def test_edge_map_is_the_inner_outline() -> None:
    image = -torch.ones(1, 1, 8, 8)
    image[..., 2:6, 1:7] = 1.0  # a 4x6 block of stroke
    expected = -torch.ones(1, 1, 8, 8)
    expected[..., 2:6, 1:7] = 1.0
    expected[..., 3:5, 2:6] = -1.0  # the interior: all 8 neighbours are stroke
    assert torch.equal(edge_map(image), expected)
    # Below the threshold nothing is stroke; strokes cut by the border have no outline along it.
    assert torch.equal(edge_map(image * 0.0 - 0.2, threshold=0.5), -torch.ones(1, 1, 8, 8))
    full = torch.ones(1, 1, 4, 4)
    assert torch.equal(edge_map(full), -torch.ones(1, 1, 4, 4))


def test_digits_edges_pairs() -> None:
    dm = DigitsEdgesDataModule(image_size=16, load_size=20, batch_size=8)
    assert dm.paired and dm.a_shape == dm.b_shape == dm.sample_shape == (1, 16, 16)
    dm.setup()
    train, val = dm.train_indices, dm.val_indices
    assert len(val) == round(0.1 * 1797) and len(train) + len(val) == 1797
    assert set(train.tolist()).isdisjoint(val.tolist())
    digits = digit_images(20)
    # B is the digit at load_size; A its outline, traced as documented at that resolution.
    assert torch.equal(dm.train_set.b, digits[train])
    assert torch.equal(dm.train_set.x, edge_map(digits[train], 0.5))
    val_a, val_b = next(iter(dm.val_dataloader()))
    small = digit_images(16)[val[:8]]
    assert torch.equal(val_b, small) and torch.equal(val_a, edge_map(small))
    a, b = next(iter(dm.train_dataloader()))
    assert a.shape == b.shape == (8, 1, 16, 16)
    assert set(a.unique().tolist()) == {-1.0, 1.0} and b.min() >= -1 and b.max() <= 1
    # The crop is shared: A is still the outline of B (the erosion of a crop differs only at its border).
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    assert torch.equal(a[inner], edge_map(b)[inner])


def test_digits_inverted_domains_are_disjoint_and_inverted() -> None:
    dm = DigitsInvertedDataModule(image_size=16, load_size=18, batch_size=8)
    assert not dm.paired and dm.b_shape == (1, 16, 16)
    dm.setup()
    sets = [set(t.tolist()) for t in (dm.a_indices, dm.b_indices, dm.val_a_indices, dm.val_b_indices)]
    assert sum(len(s) for s in sets) == len(set().union(*sets)) == 1797  # disjoint, every digit once
    assert abs(len(sets[0]) - len(sets[1])) <= 1 and abs(len(sets[2]) - len(sets[3])) <= 1
    digits = digit_images(18)
    assert torch.equal(dm.train_set.x, digits[dm.a_indices])
    assert torch.equal(dm.train_set.b, -digits[dm.b_indices])
    a, b = next(iter(dm.train_dataloader()))
    assert a.shape == b.shape == (8, 1, 16, 16) and a.min() >= -1 and b.max() <= 1
    # Inverted domain: mostly white background (+1) where the digits are mostly black (-1).
    assert a.mean() < -0.2 and b.mean() > 0.2
    val_a, val_b = next(iter(dm.val_dataloader()))
    small = digit_images(16)
    assert torch.equal(val_a, small[dm.val_a_indices[:8]]) and torch.equal(
        val_b, -small[dm.val_b_indices[:8]]
    )


def test_plain_indices_give_a_centre_crop() -> None:
    a = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    dataset = TranslationDataset(a, a + 1, paired=True, crop_size=4, flip=True)
    x, y = dataset[1]
    assert torch.equal(x, a[1, :, 1:5, 1:5]) and torch.equal(y, x + 1)


# -- configs ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dataset", "cls", "shape"),
    [
        ("digits_edges", DigitsEdgesDataModule, (1, 32, 32)),
        ("digits_inverted", DigitsInvertedDataModule, (1, 32, 32)),
        ("paired_folder", PairedFolderDataModule, (3, 256, 256)),
        ("unpaired_folder", UnpairedFolderDataModule, (3, 256, 256)),
    ],
)
def test_configs_compose_and_instantiate(make_cfg, tmp_path: Path, dataset: str, cls: type, shape) -> None:
    overrides = [f"dataset={dataset}", "seed=5"]
    if "folder" in dataset:
        overrides.append(f"dataset.root={tmp_path}")
    cfg = make_cfg(*overrides)
    dm = instantiate(cfg.dataset)
    assert isinstance(dm, cls) and dm.seed == 5
    assert (cfg.dataset.channels_a, cfg.dataset.image_size, cfg.dataset.image_size) == dm.a_shape == shape
    assert cfg.dataset.channels_b == dm.b_shape[0]
    if "folder" in dataset:
        # The keys models read follow the constructor arguments they are derived from.
        cfg = make_cfg(*overrides, "dataset.crop_size=64", "dataset.load_size=72", "dataset.channels=1")
        assert (cfg.dataset.image_size, cfg.dataset.channels_a, cfg.dataset.channels_b) == (64, 1, 1)
        assert instantiate(cfg.dataset).a_shape == (1, 64, 64)
