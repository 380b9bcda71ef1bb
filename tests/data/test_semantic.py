"""Semantic label maps: the one-hot encoding and its inverse, and label_folder (the Cityscapes /
ADE20K layout) read from files written here in the native format: integer label PNGs beside RGB
photos, nearest-neighbour resizing, ignored ids, the label offset, the paired jitter, and the
data/config errors naming the path."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gan_research.data.semantic import LabelFolderDataModule, labels_of, load_label_map, one_hot_labels
from gan_research.errors import ConfigError, DataError
from gan_research.utils.data_spec import DataKind

IMAGE_SUFFIX, LABEL_SUFFIX = "_leftImg8bit", "_gtFine_labelIds"
K = 5  # classes of the random label maps
#: The colour of each class in the photos the tests write: a photo pixel says its label.
PALETTE = np.array([[0, 0, 0], [250, 10, 10], [10, 250, 10], [10, 10, 250], [250, 250, 250]], dtype=np.uint8)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_pair(
    root: Path,
    split: str,
    name: str,
    ids: np.ndarray,
    photo: np.ndarray | None = None,
    image_ext: str = ".png",
    label_mode: str = "L",
) -> tuple[Path, Path]:
    """A Cityscapes-like pair: root/images/<split>/<city>/<name>_leftImg8bit<ext> and
    root/labels/<split>/<city>/<name>_gtFine_labelIds.png holding the ids (mode L or P)."""
    image_path = root / "images" / split / "city" / f"{name}{IMAGE_SUFFIX}{image_ext}"
    label_path = root / "labels" / split / "city" / f"{name}{LABEL_SUFFIX}.png"
    image_path.parent.mkdir(parents=True, exist_ok=True)
    label_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(PALETTE[ids % len(PALETTE)] if photo is None else photo).save(image_path)
    label = Image.fromarray(ids.astype(np.uint8), mode="L")
    if label_mode == "P":
        label = label.convert("P")
        # A palette whose colours are not the ids: the indices must be read, not the colours.
        label.putpalette([(7 * i + 100) % 256 for i in range(256 * 3)])
    label.save(label_path)
    return image_path, label_path


def write_random_split(root: Path, split: str, count: int, side: int, seed: int) -> list[np.ndarray]:
    """``count`` pairs of random per-pixel ids in [0, K) and photos in their palette colours."""
    rng = np.random.default_rng(seed)
    maps = [rng.integers(0, K, size=(side, side)) for _ in range(count)]
    for i, ids in enumerate(maps):
        write_pair(root, split, f"scene_{i:03d}", ids)
    return maps


def folder_dm(root: Path, **kwargs) -> LabelFolderDataModule:
    options = dict(
        num_classes=K,
        image_suffix=IMAGE_SUFFIX,
        label_suffix=LABEL_SUFFIX,
        load_size=24,
        crop_size=16,
        batch_size=3,
    )
    return LabelFolderDataModule(root=root, **{**options, **kwargs})


def photo_ids(image: torch.Tensor) -> torch.Tensor:
    """The class of every pixel of a [-1, 1] photo (3, H, W) written in PALETTE colours (-1: none)."""
    pixels = ((image + 1) * 127.5).round().to(torch.int64).permute(1, 2, 0)  # (H, W, 3)
    palette = torch.from_numpy(PALETTE.astype(np.int64))
    match = (pixels[:, :, None, :] == palette[None, None]).all(-1)  # (H, W, K)
    return torch.where(match.any(-1), match.to(torch.int64).argmax(-1), torch.full(match.shape[:2], -1))


def locate(crop: np.ndarray, sources: list[np.ndarray]) -> tuple[int, int, int, bool]:
    """``(source, top, left, flipped)`` of the one view of ``sources`` equal to ``crop``."""
    found = []
    side = crop.shape[-1]
    for (s, ids), flipped in itertools.product(enumerate(sources), (False, True)):
        view = ids[:, ::-1] if flipped else ids
        for top, left in itertools.product(range(ids.shape[0] - side + 1), repeat=2):
            if np.array_equal(view[top : top + side, left : left + side], crop):
                found.append((s, top, left, flipped))
    assert len(found) == 1, found
    return found[0]


# -- one-hot -----------------------------------------------------------------------------------
def test_one_hot_and_back_round_trip() -> None:
    ids = torch.randint(0, 7, (3, 1, 5, 6), generator=torch.Generator().manual_seed(0), dtype=torch.int16)
    onehot = one_hot_labels(ids, 7)
    assert onehot.shape == (3, 7, 5, 6) and onehot.dtype == torch.float32
    assert set(onehot.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(onehot.sum(1), torch.ones(3, 5, 6))
    back, valid = labels_of(onehot)
    assert back.dtype == torch.int64 and valid.dtype == torch.bool
    assert torch.equal(back, ids[:, 0].long()) and bool(valid.all())
    # Channel k is on exactly where the id is k.
    for k in range(7):
        assert torch.equal(onehot[:, k].bool(), ids[:, 0] == k)


def test_ignored_ids_are_all_zero_vectors_and_invalid() -> None:
    ids = torch.tensor([[[[-1, 0, 3], [4, 9, 2]]]], dtype=torch.int16)  # K = 4: -1, 4 and 9 ignored
    onehot = one_hot_labels(ids, 4)
    ignored = torch.tensor([[[True, False, False], [True, True, False]]])
    assert torch.equal(onehot.sum(1) == 0, ignored)
    back, valid = labels_of(onehot)
    assert torch.equal(valid, ~ignored)
    assert torch.equal(back[valid], torch.tensor([0, 3, 2]))


# -- label_folder ------------------------------------------------------------------------------
def test_label_folder_batches_are_one_hot_maps_and_photos(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 2)):
        for i in range(count):
            ids = rng.integers(0, K, size=(20, 20))
            photo = rng.integers(0, 256, size=(20, 20, 3), dtype=np.uint8)
            # JPEG photos (ADE20K) and PNG label maps pair up by name.
            write_pair(tmp_path, split, f"aachen_{i:06d}", ids, photo=photo, image_ext=".jpg")
    dm = folder_dm(tmp_path, batch_size=2)
    spec = dm.spec
    assert spec.kind is DataKind.PAIRED and spec.num_classes == K and spec.channels_a == K
    assert spec.a_shape == (K, 16, 16) and spec.sample_shape == (3, 16, 16)
    a, b = next(iter(dm.train_dataloader()))
    assert a.shape == (2, K, 16, 16) and a.dtype == torch.float32
    assert b.shape == (2, 3, 16, 16) and b.dtype == torch.float32
    assert torch.equal(a.sum(1), torch.ones(2, 16, 16))  # one class per pixel, none ignored
    assert set(a.unique().tolist()) == {0.0, 1.0}
    assert -1 <= float(b.min()) < 0 < float(b.max()) <= 1
    val = list(dm.val_dataloader())
    assert sum(len(x) for x, _ in val) == 2
    assert all(x.shape[1:] == (K, 16, 16) and y.shape[1:] == (3, 16, 16) for x, y in val)


@pytest.mark.parametrize("mode", ["L", "P"])
def test_nearest_neighbour_resize_keeps_the_ids(tmp_path: Path, mode: str) -> None:
    # Quadrants of ids 0, 3, 7, 3 at 16 px, read at 24 px: any blending would make 1, 2, 4, 5 or 6.
    ids = np.zeros((16, 16), dtype=np.int64)
    ids[:8, 8:], ids[8:, :8], ids[8:, 8:] = 3, 7, 3
    for split in ("train", "val"):
        write_pair(tmp_path, split, "x", ids, label_mode=mode)
    dm = folder_dm(tmp_path, num_classes=8, load_size=24, crop_size=24, flip=False, batch_size=1)
    expected = np.zeros((24, 24), dtype=np.int64)
    expected[:12, 12:], expected[12:, :12], expected[12:, 12:] = 3, 7, 3
    for a, _ in (next(iter(dm.train_dataloader())), next(iter(dm.val_dataloader()))):
        got, valid = labels_of(a)
        assert bool(valid.all())
        assert np.array_equal(got[0].numpy(), expected)


def test_ignore_index_and_label_offset(tmp_path: Path) -> None:
    ids = np.array([[0, 1, 4, 5, 255, 2]], dtype=np.int64).repeat(6, axis=0)
    path = write_pair(tmp_path, "train", "x", ids)[1]

    def read(**kwargs) -> list[int]:
        return load_label_map(path, 6, **kwargs)[0, 0].tolist()

    assert read(offset=0, ignore_index=255, num_classes=6) == [0, 1, 4, 5, -1, 2]
    # ignore_index is an id before the shift: 4 is ignored, not class 3; 0 becomes -1 (ADE20K's "other").
    assert read(offset=-1, ignore_index=4, num_classes=255) == [-1, 0, -1, 4, 254, 1]
    assert read(offset=0, ignore_index=None, num_classes=256) == [0, 1, 4, 5, 255, 2]
    # An id beyond num_classes that is not the ignore_index is a wrong num_classes (or a colour-coded
    # file): an error naming the file and the id, not pixels silently ignored, wrapped or clipped.
    with pytest.raises(DataError, match=r"x.*holds class id 255.*dataset.num_classes=5"):
        read(offset=0, ignore_index=None, num_classes=5)
    with pytest.raises(DataError, match=r"holds class id 5, outside the 5 classes"):
        read(offset=0, ignore_index=255, num_classes=5)

    # Through the datamodule: ignored pixels are all-zero one-hot vectors.
    write_pair(tmp_path, "val", "x", ids)
    dm = folder_dm(tmp_path, num_classes=256, load_size=6, crop_size=6, ignore_index=1, batch_size=1)
    a, _ = next(iter(dm.val_dataloader()))
    got, valid = labels_of(a)
    assert valid[0, 0].tolist() == [True, False, True, True, True, True]
    assert got[0, 0][valid[0, 0]].tolist() == [0, 4, 5, 255, 2]


def test_random_crop_and_flip_are_the_same_for_map_and_photo(tmp_path: Path) -> None:
    maps = write_random_split(tmp_path, "train", 6, side=24, seed=1)
    val_maps = write_random_split(tmp_path, "val", 2, side=16, seed=2)
    dm = folder_dm(tmp_path, load_size=24, crop_size=16, flip=True, batch_size=3)
    views = set()
    loader = dm.train_dataloader()
    for a, b in itertools.islice(itertools.chain(loader, loader), 4):
        ids, valid = labels_of(a)
        assert bool(valid.all())
        for label_crop, photo in zip(ids, b, strict=True):
            # The photo's colours spell its label map, pixel for pixel, after the jitter.
            assert torch.equal(photo_ids(photo), label_crop)
            views.add(locate(label_crop.numpy(), maps)[1:])
    # The jitter happened: several offsets, both orientations.
    assert len({v[:2] for v in views}) > 3 and {v[2] for v in views} == {False, True}
    # Validation pairs: at crop_size, as written, in file order.
    a, b = next(iter(dm.val_dataloader()))
    assert [labels_of(a)[0][i].numpy().tolist() for i in range(2)] == [m.tolist() for m in val_maps]
    assert all(torch.equal(photo_ids(b[i]), labels_of(a)[0][i]) for i in range(2))


def test_the_jitter_is_reproducible_for_a_seed(tmp_path: Path) -> None:
    write_random_split(tmp_path, "train", 6, side=24, seed=1)
    write_random_split(tmp_path, "val", 2, side=16, seed=2)
    first = [a for a, _ in itertools.islice(folder_dm(tmp_path, seed=3).train_dataloader(), 2)]
    again = [a for a, _ in itertools.islice(folder_dm(tmp_path, seed=3).train_dataloader(), 2)]
    other = [a for a, _ in itertools.islice(folder_dm(tmp_path, seed=4).train_dataloader(), 2)]
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(first, other, strict=True))


# -- errors ------------------------------------------------------------------------------------
def test_missing_root_is_a_data_error_naming_it_and_creates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "cityscapes"
    dm = folder_dm(root)
    with pytest.raises(DataError) as info:
        dm.setup("fit")
    message = str(info.value)
    assert str(root) in message and "images/train" in message and "labels/train" in message
    assert not root.exists() and list(tmp_path.iterdir()) == []


def test_unset_root_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"dataset.root"):
        LabelFolderDataModule(root="???", num_classes=K)


def test_missing_split_folder_is_a_data_error_naming_it(tmp_path: Path) -> None:
    write_random_split(tmp_path, "train", 2, side=16, seed=0)
    with pytest.raises(DataError, match=str(tmp_path / "images" / "val")):
        folder_dm(tmp_path, load_size=16).setup("fit")


def test_image_without_label_map_is_a_data_error_naming_both(tmp_path: Path) -> None:
    write_random_split(tmp_path, "train", 2, side=16, seed=0)
    write_random_split(tmp_path, "val", 2, side=16, seed=1)
    image, label = write_pair(tmp_path, "val", "lonely", np.zeros((16, 16), dtype=np.int64))
    label.unlink()
    with pytest.raises(DataError) as info:
        folder_dm(tmp_path, load_size=16).setup("fit")
    message = str(info.value)
    assert str(image) in message and f"lonely{LABEL_SUFFIX}.png" in message
    assert "dataset.image_suffix" in message and "dataset.label_suffix" in message


def test_label_map_without_image_is_a_data_error_naming_it(tmp_path: Path) -> None:
    write_random_split(tmp_path, "train", 2, side=16, seed=0)
    write_random_split(tmp_path, "val", 2, side=16, seed=1)
    image, label = write_pair(tmp_path, "train", "orphan", np.zeros((16, 16), dtype=np.int64))
    image.unlink()
    with pytest.raises(DataError, match=str(label)):
        folder_dm(tmp_path, load_size=16).setup("fit")


def test_wrong_suffixes_pair_nothing_and_say_which_keys_to_set(tmp_path: Path) -> None:
    write_random_split(tmp_path, "train", 2, side=16, seed=0)
    write_random_split(tmp_path, "val", 2, side=16, seed=1)
    with pytest.raises(DataError, match=r"dataset.image_suffix and dataset.label_suffix"):
        folder_dm(tmp_path, load_size=16, image_suffix="", label_suffix="").setup("fit")


def test_colour_label_map_is_a_data_error_naming_it(tmp_path: Path) -> None:
    write_random_split(tmp_path, "train", 2, side=16, seed=0)
    write_random_split(tmp_path, "val", 2, side=16, seed=1)
    label = tmp_path / "labels" / "train" / "city" / f"scene_001{LABEL_SUFFIX}.png"
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(label)  # a colour-coded map
    with pytest.raises(DataError) as info:
        folder_dm(tmp_path, load_size=16).setup("fit")
    message = str(info.value)
    assert str(label) in message and "RGB" in message and "class ids" in message


def test_every_file_is_matched_before_any_is_decoded(tmp_path: Path) -> None:
    # A corrupt training photo and an unmatched validation photo: the layout error comes first.
    write_random_split(tmp_path, "train", 2, side=16, seed=0)
    write_random_split(tmp_path, "val", 2, side=16, seed=1)
    (tmp_path / "images" / "train" / "city" / f"scene_000{IMAGE_SUFFIX}.png").write_bytes(b"not a png")
    _, label = write_pair(tmp_path, "val", "lonely", np.zeros((16, 16), dtype=np.int64))
    label.unlink()
    with pytest.raises(DataError, match=r"have no label map"):
        folder_dm(tmp_path, load_size=16).setup("fit")
    write_pair(tmp_path, "val", "lonely", np.zeros((16, 16), dtype=np.int64))
    with pytest.raises(DataError, match=r"cannot read image file .*scene_000"):
        folder_dm(tmp_path, load_size=16).setup("fit")


@pytest.mark.parametrize("num_classes", [1, 0, True, 2.5])
def test_fewer_than_two_classes_is_a_config_error(tmp_path: Path, num_classes) -> None:
    with pytest.raises(ConfigError, match=r"num_classes must be an integer >= 2"):
        folder_dm(tmp_path, num_classes=num_classes)


def test_derived_keys_must_agree(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"dataset.image_size=32 disagrees with dataset.crop_size=16"):
        folder_dm(tmp_path, image_size=32)
    with pytest.raises(ConfigError, match=r"dataset.channels_a=3 disagrees with dataset.num_classes=5"):
        folder_dm(tmp_path, channels_a=3)
    assert folder_dm(tmp_path, image_size=16, channels_a=K, channels_b=3).a_shape == (K, 16, 16)
