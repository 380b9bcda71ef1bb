"""Super-resolution data: the embedded digits_sr pairs and sr_folder's crops of HR files written
here (their LR made on the fly or read from lr_root), reproducibility, and the data/config errors."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gan_research.data.super_resolution import (
    DigitsSuperResolutionDataModule,
    SuperResolutionFolderDataModule,
    bicubic_downsample,
    bicubic_upsample,
)
from gan_research.data.translation import digit_images
from gan_research.errors import ConfigError, DataError
from gan_research.utils.data_spec import DataKind

CROP, SCALE = 16, 4
SIZES = [(50, 40), (64, 64), (48, 56), (64, 48)]  # (width, height) of the HR files, in file order


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """A [-1, 1] image (C, H, W) back to its 0..255 pixels (H, W, C)."""
    return ((x + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """(H, W, C) uint8 pixels -> (C, H, W) in [-1, 1]."""
    return torch.from_numpy(pixels).permute(2, 0, 1).float() / 127.5 - 1.0


def write_hr(folder: Path, sizes: list[tuple[int, int]], seed: int) -> list[np.ndarray]:
    """Random RGB HR images of the given (width, height), named 0.png, 1.png, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = []
    for i, (w, h) in enumerate(sizes):
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
        images.append(pixels)
    return images


def write_lr(folder: Path, images: list[np.ndarray]) -> list[np.ndarray]:
    """The exact ×SCALE bicubic downsampling of each HR image, 8-bit, with the HR files' names."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, pixels in enumerate(images):
        low = to_uint8(bicubic_downsample(to_tensor(pixels)[None], SCALE)[0])
        Image.fromarray(low).save(folder / f"{i}.png")
        out.append(low)
    return out


def locate(crop: np.ndarray, sources: list[np.ndarray]) -> tuple[int, int, int, bool]:
    """``(source, top, left, flipped)`` of the one HR crop of ``sources`` equal to ``crop``
    (searched at every pixel offset, not only the LR grid)."""
    side = crop.shape[0]
    found = []
    for (s, image), flipped in itertools.product(enumerate(sources), (False, True)):
        view = image[:, ::-1] if flipped else image
        h, w = view.shape[:2]
        # Candidates from the crop's top-left 4x4 corner (random pixels: few false hits), then the whole crop.
        corners = np.lib.stride_tricks.sliding_window_view(view[: h - side + 4, : w - side + 4], (4, 4, 3))
        for top, left in zip(
            *np.nonzero((corners[:, :, 0] == crop[:4, :4]).all(axis=(-3, -2, -1))), strict=True
        ):
            if np.array_equal(view[top : top + side, left : left + side], crop):
                found.append((s, int(top), int(w - side - left if flipped else left), flipped))
    assert len(found) == 1, found
    return found[0]


def folder_dm(root: Path, **kwargs) -> SuperResolutionFolderDataModule:
    options = dict(crop_size=CROP, scale=SCALE, batch_size=2, num_workers=0)
    return SuperResolutionFolderDataModule(root=str(root), **{**options, **kwargs})


def batches(dm, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader = dm.train_dataloader()
    out: list[tuple[torch.Tensor, torch.Tensor]] = []
    while len(out) < count:
        out += list(itertools.islice(iter(loader), count - len(out)))
    return out


# -- digits_sr ----------------------------------------------------------------------------------
def test_digits_sr_pairs_are_hr_digits_and_their_bicubic_downsampling() -> None:
    dm = DigitsSuperResolutionDataModule(batch_size=4)
    spec = dm.spec
    assert spec.kind is DataKind.PAIRED and dm.paired
    assert spec.a_shape == (1, 8, 8) and spec.sample_shape == (1, 32, 32)
    assert (spec.channels, spec.image_size, spec.channels_a) == (1, 32, 1)
    assert spec.domain is not None and spec.domain.name == "digits"
    lr, hr = next(iter(dm.train_dataloader()))
    assert lr.shape == (4, 1, 8, 8) and hr.shape == (4, 1, 32, 32)
    assert lr.dtype == hr.dtype == torch.float32
    assert torch.equal(lr, bicubic_downsample(hr, 4))
    assert hr.min() >= -1 and hr.max() <= 1 and hr.std() > 0.3
    # HR images are the digits at 32 px (every training HR is one of them).
    digits = digit_images(32)
    for image in hr:
        assert (digits - image).abs().flatten(1).amax(1).min() == 0
    # Validation pairs: held out, fixed order, the same relation.
    (val_lr, val_hr), again = next(iter(dm.val_dataloader())), next(iter(dm.val_dataloader()))
    assert torch.equal(val_lr, again[0]) and torch.equal(val_hr, again[1])
    assert torch.equal(val_lr, bicubic_downsample(val_hr, 4))
    total = len(dm.train_set) + len(dm.val_set)
    assert total == 1797 and len(dm.val_set) == round(0.1 * 1797)


def test_digits_sr_scale_2_gives_16_px_inputs() -> None:
    dm = DigitsSuperResolutionDataModule(scale=2, batch_size=2)
    assert dm.spec.a_shape == (1, 16, 16)
    lr, hr = next(iter(dm.train_dataloader()))
    assert lr.shape == (2, 1, 16, 16) and torch.equal(lr, bicubic_downsample(hr, 2))


def test_bicubic_downsample_is_antialiased_and_clamped() -> None:
    # A checkerboard of the finest frequency averages out to grey with antialiasing; plain
    # (point-sampling) bicubic would alias it to a strong pattern.
    board = (torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2 * 2.0 - 1.0
    low = bicubic_downsample(board[None, None], 4)
    assert low.shape == (1, 1, 8, 8) and low.abs().max() < 0.05
    # Overshoot at a hard edge stays inside the image range.
    edge = torch.full((1, 1, 32, 32), -1.0)
    edge[..., 16:] = 1.0
    assert bicubic_downsample(edge, 4).abs().max() <= 1.0
    up = bicubic_upsample(bicubic_downsample(edge, 4), 4)
    assert up.shape == (1, 1, 32, 32) and up.abs().max() <= 1.0


def test_bicubic_upsample_is_keys_cubic_with_a_minus_half() -> None:
    # "The bicubic baseline of every SR paper" is MATLAB's imresize: Keys' cubic with a = -0.5
    # (the module docstring's kernel). An impulse upsampled x2 shows the kernel: output pixel k
    # reads input coordinate (k + 0.5) / 2 - 0.5 (align_corners=False).
    def keys(x: float, a: float = -0.5) -> float:
        x = abs(x)
        if x <= 1:
            return (a + 2) * x**3 - (a + 3) * x**2 + 1
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a if x < 2 else 0.0

    lr = torch.zeros(1, 1, 8, 8)
    lr[..., 4, 4] = 0.5
    up = bicubic_upsample(lr, 2)[0, 0].double()
    weights = torch.tensor([keys((k + 0.5) / 2 - 0.5 - 4) for k in range(16)], dtype=torch.float64)
    torch.testing.assert_close(up, 0.5 * torch.outer(weights, weights), rtol=0, atol=1e-6)


@pytest.mark.parametrize("scale", [3, 16, True])
def test_digits_sr_bad_scale_is_a_config_error(scale) -> None:
    with pytest.raises(ConfigError) as info:
        DigitsSuperResolutionDataModule(scale=scale)
    assert f"dataset.scale={scale!r}" in str(info.value) and "2, 4, 8" in str(info.value)


def test_digits_sr_image_size_not_a_multiple_of_scale_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"dataset.image_size=36 .*multiple of dataset.scale=8"):
        DigitsSuperResolutionDataModule(image_size=36, scale=8)


# -- sr_folder: LR made on the fly --------------------------------------------------------------
@pytest.fixture
def hr_folder(tmp_path: Path) -> tuple[Path, list[np.ndarray], list[np.ndarray]]:
    train = write_hr(tmp_path / "train", SIZES, seed=1)
    val = write_hr(tmp_path / "val", SIZES[:2], seed=2)
    return tmp_path, train, val


def test_folder_crops_hr_and_downsamples_them(hr_folder) -> None:
    root, train, _ = hr_folder
    dm = folder_dm(root, flip=True)
    spec = dm.spec
    assert spec.kind is DataKind.PAIRED
    assert spec.a_shape == (3, 4, 4) and spec.sample_shape == (3, CROP, CROP)
    views = set()
    for lr, hr in batches(dm, 6):
        assert lr.shape == (2, 3, 4, 4) and hr.shape == (2, 3, CROP, CROP)
        torch.testing.assert_close(lr, bicubic_downsample(hr, SCALE), rtol=0, atol=1e-6)
        for image in hr:
            source, top, left, flipped = locate(to_uint8(image), train)
            # Crops sit on the LR grid (so a given LR file stays aligned) and inside the image.
            assert top % SCALE == 0 and left % SCALE == 0
            views.add((source, top, left, flipped))
    # The crops move and mirror between draws.
    assert len({v[1:3] for v in views}) > 3 and {v[3] for v in views} == {False, True}


def test_folder_crops_are_reproducible_from_seed_and_key(hr_folder) -> None:
    root, _, _ = hr_folder
    one, two, other = (batches(folder_dm(root, seed=s), 4) for s in (7, 7, 8))
    assert all(torch.equal(x[1], y[1]) and torch.equal(x[0], y[0]) for x, y in zip(one, two, strict=True))
    assert not all(torch.equal(x[1], y[1]) for x, y in zip(one, other, strict=True))
    dataset = folder_dm(root, seed=3).train_set
    first, again = dataset[(1, 5)], dataset[(1, 5)]
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    draws = {to_uint8(dataset[(1, key)][1]).tobytes() for key in range(12)}
    assert len(draws) > 3  # another draw of the same image: another crop


def test_folder_validation_is_centre_crops_in_file_order(hr_folder) -> None:
    root, _, val = hr_folder
    dm = folder_dm(root, flip=True)
    lr, hr = next(iter(dm.val_dataloader()))
    assert lr.shape == (2, 3, 4, 4) and hr.shape == (2, 3, CROP, CROP)
    torch.testing.assert_close(lr, bicubic_downsample(hr, SCALE), rtol=0, atol=1e-6)
    for i, image in enumerate(hr):
        source, top, left, flipped = locate(to_uint8(image), val)
        assert source == i and not flipped
        h, w = val[i].shape[:2]
        # The centre, snapped to the LR grid.
        assert top % SCALE == 0 and abs(top - (h - CROP) / 2) <= SCALE / 2
        assert left % SCALE == 0 and abs(left - (w - CROP) / 2) <= SCALE / 2
    again = next(iter(dm.val_dataloader()))
    assert torch.equal(again[1], hr) and torch.equal(again[0], lr)


def test_folder_grey_channels(hr_folder) -> None:
    root, _, _ = hr_folder
    lr, hr = next(iter(folder_dm(root, channels=1).train_dataloader()))
    assert lr.shape == (2, 1, 4, 4) and hr.shape == (2, 1, CROP, CROP)


def test_folder_max_val_images_caps_the_validation_crops(hr_folder) -> None:
    root, _, _ = hr_folder
    dm = folder_dm(root, max_val_images=1)
    assert len(dm.val_set) == 1


# -- sr_folder: LR files from lr_root -----------------------------------------------------------
def test_lr_root_files_are_cropped_in_alignment_with_the_hr_crop(tmp_path: Path) -> None:
    sizes = [(64, 48), (48, 64), (64, 64), (32, 48)]  # multiples of the scale: an exact LR grid
    train = write_hr(tmp_path / "hr" / "train", sizes, seed=3)
    val = write_hr(tmp_path / "hr" / "val", sizes[:2], seed=4)
    low_train = write_lr(tmp_path / "lr" / "train", train)
    low_val = write_lr(tmp_path / "lr" / "val", val)
    dm = folder_dm(tmp_path / "hr", lr_root=str(tmp_path / "lr"), crop_size=32, flip=True)
    views = set()

    def check(lr: torch.Tensor, hr: torch.Tensor, sources: list[np.ndarray], lows: list[np.ndarray]):
        source, top, left, flipped = locate(to_uint8(hr), sources)
        views.add((top, left, flipped))
        assert top % SCALE == 0 and left % SCALE == 0
        side = 32 // SCALE
        # The LR input is the LR file's crop at the same place (mirrored with the HR crop) ...
        window = lows[source][top // SCALE : top // SCALE + side, left // SCALE : left // SCALE + side]
        expected = window[:, ::-1] if flipped else window
        assert np.array_equal(to_uint8(lr), expected)
        # ... which agrees with the bicubic downsampling of the whole HR image to within rounding.
        full = bicubic_downsample(to_tensor(sources[source])[None], SCALE)[0]
        crop = full[:, top // SCALE : top // SCALE + side, left // SCALE : left // SCALE + side]
        crop = crop.flip(-1) if flipped else crop
        torch.testing.assert_close(lr, crop, rtol=0, atol=0.5 / 127.5 + 1e-6)

    for lr, hr in batches(dm, 6):
        assert lr.shape == (2, 3, 8, 8) and hr.shape == (2, 3, 32, 32)
        for x, y in zip(lr, hr, strict=True):
            check(x, y, train, low_train)
    assert len({v[:2] for v in views}) > 3 and {v[2] for v in views} == {False, True}
    val_lr, val_hr = next(iter(dm.val_dataloader()))
    for x, y in zip(val_lr, val_hr, strict=True):
        check(x, y, val, low_val)


def test_lr_root_mirrors_the_sub_folders_of_the_hr_images(tmp_path: Path) -> None:
    # HR images are found in sub-folders too (list_images is recursive); their LR files sit in the
    # same sub-folders under lr_root ("the same sub-folders and file names"). Two HR files of the
    # same name in different sub-folders must each get their own LR file.
    hr_a = write_hr(tmp_path / "hr" / "train" / "a", [(64, 48)], seed=11)
    hr_b = write_hr(tmp_path / "hr" / "train" / "b", [(48, 64)], seed=12)
    write_lr(tmp_path / "lr" / "train" / "a", hr_a)
    write_lr(tmp_path / "lr" / "train" / "b", hr_b)
    val = write_hr(tmp_path / "hr" / "val", [(64, 64)], seed=13)
    write_lr(tmp_path / "lr" / "val", val)
    dm = folder_dm(tmp_path / "hr", lr_root=str(tmp_path / "lr"), crop_size=32, flip=False)
    dm.setup()
    sources = [hr_a[0], hr_b[0]]
    lows = [write_lr(tmp_path / "check" / str(i), [img])[0] for i, img in enumerate(sources)]
    for lr, hr in batches(dm, 2):
        for x, y in zip(lr, hr, strict=True):
            source, top, left, _ = locate(to_uint8(y), sources)
            window = lows[source][top // SCALE : top // SCALE + 8, left // SCALE : left // SCALE + 8]
            assert np.array_equal(to_uint8(x), window)


def test_missing_lr_file_is_a_data_error(tmp_path: Path) -> None:
    train = write_hr(tmp_path / "hr" / "train", SIZES[:2], seed=5)
    val = write_hr(tmp_path / "hr" / "val", SIZES[:2], seed=6)
    write_lr(tmp_path / "lr" / "train", train[:1])  # 1.png has no LR file
    write_lr(tmp_path / "lr" / "val", val)
    dm = folder_dm(tmp_path / "hr", lr_root=str(tmp_path / "lr"))
    with pytest.raises(DataError) as info:
        dm.setup()
    message = str(info.value)
    assert str(tmp_path / "lr" / "train" / "1.png") in message and "missing" in message


def test_lr_file_of_the_wrong_size_is_a_data_error(tmp_path: Path) -> None:
    train = write_hr(tmp_path / "hr" / "train", [(64, 48), (64, 64)], seed=7)
    write_hr(tmp_path / "hr" / "val", [(64, 64)], seed=8)
    write_lr(tmp_path / "lr" / "train", train)
    (tmp_path / "lr" / "val").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(tmp_path / "lr" / "val" / "0.png")  # x2, not x4
    dm = folder_dm(tmp_path / "hr", lr_root=str(tmp_path / "lr"))
    with pytest.raises(DataError) as info:
        dm.setup()
    message = str(info.value)
    assert str(tmp_path / "lr" / "val" / "0.png") in message
    assert "32x32" in message and "16x16" in message and "dataset.scale=4" in message


# -- sr_folder: errors --------------------------------------------------------------------------
def test_hr_image_smaller_than_the_crop_is_a_data_error(tmp_path: Path) -> None:
    write_hr(tmp_path / "train", [(64, 64), (20, 40)], seed=9)
    write_hr(tmp_path / "val", [(64, 64)], seed=10)
    with pytest.raises(DataError) as info:
        folder_dm(tmp_path, crop_size=24).setup()
    message = str(info.value)
    assert str(tmp_path / "train" / "1.png") in message
    assert "20x40" in message and "dataset.crop_size=24" in message


@pytest.mark.parametrize("scale", [3, 16, True])
def test_folder_bad_scale_is_a_config_error(tmp_path: Path, scale) -> None:
    with pytest.raises(ConfigError) as info:
        folder_dm(tmp_path, scale=scale)
    assert f"dataset.scale={scale!r}" in str(info.value) and "2, 4, 8" in str(info.value)


def test_folder_crop_not_a_multiple_of_scale_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"dataset.crop_size=18 .*multiple of dataset.scale=4"):
        folder_dm(tmp_path, crop_size=18)


def test_folder_image_size_must_follow_crop_size(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"dataset.image_size=32 disagrees with dataset.crop_size=16"):
        folder_dm(tmp_path, image_size=32)


def test_folder_missing_root_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere"):
        folder_dm(tmp_path / "nowhere").setup()
