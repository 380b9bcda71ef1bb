"""Super-resolution metrics: PSNR/SSIM on the luma channel with the SR papers' protocol (BT.601 Y,
border crop, 8-bit quantisation) against hand computations and an independent numpy SSIM, and the
evaluator's bicubic baseline on the embedded digits_sr pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.signal import correlate2d

from gan_research.data.super_resolution import DigitsSuperResolutionDataModule
from gan_research.data.translation import DigitsEdgesDataModule
from gan_research.errors import ConfigError
from gan_research.metrics.super_resolution import (
    SuperResolutionMetrics,
    bicubic_upscale,
    crop_border,
    psnr_y,
    ssim_y,
    to_luma_255,
)
from gan_research.train import build


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def from_pixels(pixels: np.ndarray) -> torch.Tensor:
    """uint8 pixels (B, H, W, C) -> images in [-1, 1] (B, C, H, W), as the networks output them."""
    return torch.from_numpy(pixels.astype(np.float64) / 127.5 - 1.0).permute(0, 3, 1, 2).float()


def luma(pixels: np.ndarray) -> np.ndarray:
    """BT.601 (MATLAB rgb2ycbcr) Y of uint8 RGB pixels (..., 3): 16 + 65.481 R + 128.553 G + 24.966 B."""
    rgb = pixels.astype(np.float64) / 255.0
    return 16.0 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]


def psnr_by_hand(y_sr: np.ndarray, y_hr: np.ndarray, border: int) -> float:
    if border:
        y_sr, y_hr = y_sr[border:-border, border:-border], y_hr[border:-border, border:-border]
    mse = float(np.mean((y_sr - y_hr) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def gaussian_window() -> np.ndarray:
    """MATLAB's fspecial('gaussian', 11, 1.5)."""
    x = np.arange(11) - 5.0
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.5**2))
    return g / g.sum()


def ssim_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    """ssim_index.m on two 2-D arrays in [0, 255]: Gaussian window, 'valid' filtering, mean of the map."""
    w = gaussian_window()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def filt(a: np.ndarray) -> np.ndarray:
        return correlate2d(a, w, mode="valid")

    mu_x, mu_y = filt(x), filt(y)
    var_x, var_y = filt(x * x) - mu_x**2, filt(y * y) - mu_y**2
    cov = filt(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


def random_pixels(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


# -- luma, border, PSNR -------------------------------------------------------------------------
def test_luma_is_bt601_of_the_8_bit_pixels() -> None:
    pixels = np.array([[[[100, 150, 200], [0, 0, 0]], [[255, 255, 255], [255, 0, 0]]]], dtype=np.uint8)
    y = to_luma_255(from_pixels(pixels))
    assert y.shape == (1, 1, 2, 2) and y.dtype == torch.float64
    expected = luma(pixels)[0]
    np.testing.assert_allclose(y[0, 0].numpy(), expected, rtol=0, atol=1e-10)
    # The range of rgb2ycbcr's Y: black 16, white 235.
    assert y[0, 0, 0, 1] == pytest.approx(16.0) and y[0, 0, 1, 0] == pytest.approx(235.0)
    assert y[0, 0, 0, 0] == pytest.approx(16 + (65.481 * 100 + 128.553 * 150 + 24.966 * 200) / 255)


def test_psnr_y_of_rgb_images_matches_the_hand_computation() -> None:
    hr_pixels = random_pixels((2, 16, 16, 3), seed=0)
    noise = np.random.default_rng(1).integers(-20, 21, size=hr_pixels.shape)
    sr_pixels = np.clip(hr_pixels.astype(int) + noise, 0, 255).astype(np.uint8)
    got = psnr_y(from_pixels(sr_pixels), from_pixels(hr_pixels), border=4)
    assert got.shape == (2,) and got.dtype == torch.float64
    for i in range(2):
        expected = psnr_by_hand(luma(sr_pixels[i]), luma(hr_pixels[i]), border=4)
        assert 20 < expected < 50
        assert float(got[i]) == pytest.approx(expected, rel=1e-12)
    # Without the crop: the whole image.
    whole = psnr_y(from_pixels(sr_pixels), from_pixels(hr_pixels), border=0)
    assert float(whole[0]) == pytest.approx(
        psnr_by_hand(luma(sr_pixels[0]), luma(hr_pixels[0]), 0), rel=1e-12
    )


def test_psnr_y_of_a_uniform_colour_shift() -> None:
    # Every pixel (100, 150, 200) -> (110, 140, 190): dY is one number, PSNR has a closed form.
    hr = np.empty((1, 12, 12, 3), dtype=np.uint8)
    hr[...] = (100, 150, 200)
    sr = np.empty_like(hr)
    sr[...] = (110, 140, 190)
    d_y = (65.481 * 10 - 128.553 * 10 - 24.966 * 10) / 255
    expected = 10 * math.log10(255**2 / d_y**2)
    assert float(psnr_y(from_pixels(sr), from_pixels(hr), border=2)[0]) == pytest.approx(expected, rel=1e-12)


def test_differences_only_in_the_border_are_cropped_away() -> None:
    hr_pixels = random_pixels((1, 16, 16, 3), seed=2)
    sr_pixels = hr_pixels.copy()
    sr_pixels[:, :4] = 255 - sr_pixels[:, :4]  # the top strip of the 4-pixel border
    sr_pixels[:, :, -4:] = 0  # the right strip
    sr, hr = from_pixels(sr_pixels), from_pixels(hr_pixels)
    assert math.isinf(float(psnr_y(sr, hr, border=4)[0]))
    assert float(ssim_y(sr, hr, border=0)[0]) < 1.0  # whole images differ ...
    assert math.isfinite(float(psnr_y(sr, hr, border=3)[0]))  # ... and a 3-pixel crop keeps some
    assert float(psnr_y(sr, hr, border=3)[0]) == pytest.approx(
        psnr_by_hand(luma(sr_pixels[0]), luma(hr_pixels[0]), 3), rel=1e-12
    )


def test_grey_images_are_their_own_luma() -> None:
    hr_pixels = random_pixels((2, 12, 12, 1), seed=3)
    sr_pixels = np.clip(hr_pixels.astype(int) + 9, 0, 255).astype(np.uint8)
    y = to_luma_255(from_pixels(hr_pixels))
    np.testing.assert_array_equal(y[:, 0].numpy(), hr_pixels[..., 0].astype(np.float64))  # no 16 + ...
    got = psnr_y(from_pixels(sr_pixels), from_pixels(hr_pixels), border=2)
    for i in range(2):
        plain = psnr_by_hand(sr_pixels[i, ..., 0].astype(float), hr_pixels[i, ..., 0].astype(float), 2)
        assert float(got[i]) == pytest.approx(plain, rel=1e-12)
        # BT.601 of a grey (R = G = B) image would scale the differences by 219/255.
        as_rgb = psnr_by_hand(luma(np.repeat(sr_pixels[i], 3, -1)), luma(np.repeat(hr_pixels[i], 3, -1)), 2)
        assert abs(float(got[i]) - as_rgb) > 1.0


def test_images_are_quantised_to_8_bits_and_clamped_first() -> None:
    hr_pixels = random_pixels((2, 12, 12, 3), seed=4)
    hr = from_pixels(hr_pixels)
    # Less than half a grey level off: the same 8-bit image, a perfect score.
    assert torch.isinf(psnr_y(hr + 0.4 / 127.5, hr, border=2)).all()
    assert ssim_y(hr - 0.4 / 127.5, hr, border=0).tolist() == pytest.approx([1.0, 1.0], abs=1e-12)
    # 0.6 of a level rounds to the next level: one level up everywhere (but where already 255).
    shifted = psnr_y(hr + 0.6 / 127.5, hr, border=2)
    for i in range(2):
        up = np.clip(hr_pixels[i].astype(int) + 1, 0, 255)
        expected = psnr_by_hand(luma(up), luma(hr_pixels[i]), 2)
        assert 45 < expected < 50  # about one level of luma: ~48 dB
        assert float(shifted[i]) == pytest.approx(expected, rel=1e-12)
    # Outputs beyond the image range count as the range's ends.
    white = torch.ones(1, 3, 12, 12)
    assert math.isinf(float(psnr_y(white * 3, white, border=0)[0]))


def test_crop_border_removes_border_pixels_from_each_side() -> None:
    x = torch.arange(100.0).view(1, 1, 10, 10)
    assert torch.equal(crop_border(x, 0), x)
    assert torch.equal(crop_border(x, 2), x[..., 2:8, 2:8])
    with pytest.raises(ValueError, match="border of 5"):
        crop_border(x, 5)


# -- SSIM ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_y_matches_an_independent_implementation(channels: int) -> None:
    hr_pixels = random_pixels((2, 24, 24, channels), seed=5)
    other = random_pixels((2, 24, 24, channels), seed=6)
    sr_pixels = np.round(0.7 * hr_pixels + 0.3 * other).astype(np.uint8)  # correlated: SSIM far from 0 and 1
    got = ssim_y(from_pixels(sr_pixels), from_pixels(hr_pixels), border=2)
    assert got.shape == (2,) and got.dtype == torch.float64
    for i in range(2):
        if channels == 3:
            y_sr, y_hr = luma(sr_pixels[i]), luma(hr_pixels[i])
        else:
            y_sr, y_hr = sr_pixels[i, ..., 0].astype(float), hr_pixels[i, ..., 0].astype(float)
        expected = ssim_by_hand(y_sr[2:-2, 2:-2], y_hr[2:-2, 2:-2])  # 20 x 20 -> a 10 x 10 map
        assert 0.2 < expected < 0.95
        assert float(got[i]) == pytest.approx(expected, abs=1e-10)


def test_ssim_of_an_image_with_itself_is_one() -> None:
    x = from_pixels(random_pixels((3, 20, 20, 3), seed=7))
    assert ssim_y(x, x.clone(), border=0).tolist() == pytest.approx([1.0] * 3, abs=1e-12)
    y = from_pixels(random_pixels((3, 20, 20, 3), seed=8))
    assert (ssim_y(y, x, border=0) < 0.2).all()


def test_ssim_needs_room_for_its_window() -> None:
    x = torch.zeros(1, 1, 16, 16)
    with pytest.raises(ValueError, match="11x11"):
        ssim_y(x, x, border=3)  # 10 x 10 left


def keys_cubic(x: float, a: float) -> float:
    """Keys' (1981) cubic convolution kernel with parameter ``a``."""
    x = abs(x)
    if x <= 1:
        return (a + 2) * x**3 - (a + 3) * x**2 + 1
    if x < 2:
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
    return 0.0


def test_bicubic_baseline_is_keys_cubic_with_a_minus_half() -> None:
    # The SR papers' baseline is MATLAB's imresize bicubic (a = -0.5), as bicubic_upscale's
    # docstring says. An impulse upsampled x4 shows the kernel: output pixel (i, j) reads input
    # coordinate ((i + 0.5) / 4 - 0.5, (j + 0.5) / 4 - 0.5) (align_corners=False).
    lr = torch.zeros(1, 1, 12, 12)
    lr[..., 6, 6] = 0.5
    up = bicubic_upscale(lr, (48, 48))[0, 0].double()
    coords = [(k + 0.5) / 4 - 0.5 - 6 for k in range(48)]
    expected = 0.5 * torch.tensor(
        [[keys_cubic(u, -0.5) * keys_cubic(v, -0.5) for v in coords] for u in coords]
    )
    torch.testing.assert_close(up, expected.double(), rtol=0, atol=1e-6)


# -- the evaluator ------------------------------------------------------------------------------
class FakeModule:
    """What the evaluator reads of a family: ``translate`` (LR -> SR) and ``device``."""

    device = torch.device("cpu")

    def __init__(self, translate) -> None:
        self.translate = translate


@pytest.fixture(scope="module")
def digits_sr() -> DigitsSuperResolutionDataModule:
    dm = DigitsSuperResolutionDataModule(batch_size=16)
    dm.setup()
    return dm


def sr_metrics(datamodule) -> SuperResolutionMetrics:
    metrics = SuperResolutionMetrics(num_samples=40, feature_network="none", batch_size=16)
    metrics.prepare(datamodule)
    return metrics


def test_bicubic_translator_scores_the_bicubic_baseline(digits_sr) -> None:
    metrics = sr_metrics(digits_sr)
    assert metrics.scale == 4 and metrics.a.shape == (40, 1, 8, 8) and metrics.b.shape == (40, 1, 32, 32)
    r = metrics.evaluate(FakeModule(lambda a: bicubic_upscale(a, (32, 32))))
    assert set(r) == {
        *(f"val/{k}{s}" for k in ("l1", "psnr", "ssim", "psnr_y", "ssim_y") for s in ("", "_bicubic")),
        "val/psnr_y_gain",
    }
    assert r["val/psnr_y"] == r["val/psnr_y_bicubic"] and r["val/psnr_y_gain"] == 0.0
    assert r["val/ssim_y"] == r["val/ssim_y_bicubic"] and r["val/l1"] == r["val/l1_bicubic"]
    # The baseline's numbers are the protocol's: the mean of per-image PSNR_Y with a 4 px crop.
    pairs = list(digits_sr.val_dataloader())
    lr = torch.cat([p[0] for p in pairs])[:40]
    hr = torch.cat([p[1] for p in pairs])[:40]
    bicubic = bicubic_upscale(lr, (32, 32))
    assert r["val/psnr_y_bicubic"] == pytest.approx(float(psnr_y(bicubic, hr, 4).mean()), rel=1e-12)
    assert r["val/ssim_y_bicubic"] == pytest.approx(float(ssim_y(bicubic, hr, 4).mean()), rel=1e-12)
    assert 10 < r["val/psnr_y_bicubic"] < 40 and 0 < r["val/ssim_y_bicubic"] < 1


def test_a_translator_returning_the_hr_images_is_perfect(digits_sr) -> None:
    metrics = sr_metrics(digits_sr)
    pairs = list(digits_sr.val_dataloader())
    lookup = {
        lr.numpy().tobytes(): hr
        for lr, hr in zip(torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs]), strict=True)
    }

    def translate(a: torch.Tensor) -> torch.Tensor:
        return torch.stack([lookup[x.numpy().tobytes()] for x in a])

    bicubic = metrics.evaluate(FakeModule(lambda a: bicubic_upscale(a, (32, 32))))
    r = metrics.evaluate(FakeModule(translate))
    assert math.isinf(r["val/psnr_y"]) and r["val/psnr_y_gain"] > 0
    assert r["val/ssim_y"] == pytest.approx(1.0, abs=1e-12) and r["val/l1"] == 0.0
    # The baseline is computed once and reported beside every evaluation.
    assert r["val/psnr_y_bicubic"] == bicubic["val/psnr_y_bicubic"] < 40


def test_same_size_pairs_are_refused_with_a_pointer_to_translation_metrics() -> None:
    metrics = SuperResolutionMetrics(feature_network="none")
    with pytest.raises(ConfigError) as info:
        metrics.prepare(DigitsEdgesDataModule(batch_size=8))
    message = str(info.value)
    assert "metrics=translation" in message and "'digits_edges'" in message and "32 px -> 32 px" in message


def test_metrics_config_on_same_size_pairs_is_refused(make_cfg) -> None:
    cfg = make_cfg(
        "model=pix2pix",
        "dataset=digits_edges",
        "model.generator.num_downs=5",
        "model.discriminator.input_channels=2",
        "model.discriminator.n_layers=2",
        "metrics=super_resolution",
        "metrics.feature_network=none",
    )
    with pytest.raises(ConfigError, match=r"metrics=translation"):
        build(cfg)


def test_the_srgan_experiment_evaluates_with_the_bicubic_baseline(make_cfg) -> None:
    cfg = make_cfg(
        "experiment=srgan_digits",
        "metrics=super_resolution",  # TINY's metrics=none wins over the experiment's otherwise
        "model.width=8",
        "model.generator.num_blocks=1",
        "model.discriminator.dense=16",
        "metrics.feature_network=none",
        "metrics.num_samples=16",
        "threads=1",
    )
    assert cfg.metrics.evaluator._target_.endswith("SuperResolutionMetrics")
    objs = build(cfg)
    evaluator = objs["evaluation"].evaluator
    r = evaluator.evaluate(objs["model"])
    assert {"val/psnr_y", "val/ssim_y", "val/psnr_y_bicubic", "val/psnr_y_gain"} <= set(r)
    assert r["val/psnr_y_gain"] == pytest.approx(r["val/psnr_y"] - r["val/psnr_y_bicubic"])
