"""GFP-GAN's degradation (eq. 1, gan_research.data.degradation): each parameter drawn within and
across its range, each operation's effect (blur and downsampling remove detail, the noise has std
δ, JPEG is libjpeg's round trip), reproducibility per key (batch- and RNG-independent) and the
config errors."""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pytest
import torch
from PIL import Image

from gan_research.data.degradation import (
    DegradationRanges,
    degrade,
    draw_parameters,
    gaussian_kernel,
    jpeg_roundtrip,
)
from gan_research.errors import ConfigError

SEED = 1234


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fixed(
    sigma: float = 0.2, scale: float = 1.0, noise: float = 0.0, quality: int = 100, **kw
) -> DegradationRanges:
    """Ranges that pin every parameter: the defaults leave the image (nearly) as it is."""
    return DegradationRanges(
        sigma=(sigma, sigma), scale=(scale, scale), noise=(noise, noise), quality=(quality, quality), **kw
    )


def texture(channels: int = 1, size: int = 64, seed: int = 0) -> torch.Tensor:
    """(1, C, size, size) uint8 white noise: detail at every frequency."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (1, channels, size, size), generator=g, dtype=torch.uint8)


def smooth(channels: int = 3, size: int = 64) -> torch.Tensor:
    """(1, C, size, size) uint8 smooth image (gradients and a slow wave), no 8-pixel structure."""
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    base = 127.5 + 60 * torch.sin(xs / 7.0) * torch.cos(ys / 5.0) + 40 * (xs - ys) / size
    planes = [base + 20 * c for c in range(channels)]
    return torch.stack(planes)[None].round().clamp(0, 255).to(torch.uint8)


def high_frequency(x: torch.Tensor) -> float:
    """Mean squared difference of horizontally and vertically neighbouring pixels."""
    x = x.double()
    return float(((x[..., 1:, :] - x[..., :-1, :]) ** 2).mean() + ((x[..., 1:] - x[..., :-1]) ** 2).mean())


# ---------------------------------------------------------------- parameter ranges


@pytest.mark.parametrize(
    "ranges", [DegradationRanges(), DegradationRanges.reference()], ids=["paper", "reference"]
)
def test_drawn_parameters_lie_in_and_cover_their_ranges(ranges):
    p = draw_parameters(range(4000), SEED, ranges)
    for name, (low, high) in [
        ("sigma", ranges.sigma),
        ("sigma_y", ranges.sigma),
        ("scale", ranges.scale),
        ("noise", ranges.noise),
    ]:
        values = p[name]
        assert values.dtype == torch.float64 and values.shape == (4000,)
        assert low <= values.min() and values.max() <= high, name
        # Uniform draws reach within 1 % of both ends over 4000 keys.
        span = high - low
        assert values.min() < low + 0.01 * span and values.max() > high - 0.01 * span, name
        assert abs(values.mean() - (low + high) / 2) < 0.03 * span, name
    quality = p["quality"]
    assert quality.dtype == torch.int64
    assert quality.min() == ranges.quality[0] and quality.max() == ranges.quality[1]
    assert set(quality.tolist()) == set(range(ranges.quality[0], ranges.quality[1] + 1))
    aniso = p["anisotropic"]
    assert abs(aniso.double().mean() - ranges.anisotropic_prob) < 0.03
    # Isotropic kernels have σ_y = σ and no rotation; anisotropic ones rotate within [-π, π).
    assert torch.equal(p["sigma_y"][~aniso], p["sigma"][~aniso]) and (p["theta"][~aniso] == 0).all()
    if aniso.any():
        theta = p["theta"][aniso]
        assert -math.pi <= theta.min() < -3.0 and 3.0 < theta.max() < math.pi


def test_the_defaults_are_the_papers_ranges_and_reference_the_training_configs():
    paper = DegradationRanges()
    assert (paper.sigma, paper.scale, paper.noise, paper.quality) == ((0.2, 10), (1, 8), (0, 15), (60, 100))
    assert paper.anisotropic_prob == 0.0 and paper.kernel_size == 41 and paper.interpolation == "bilinear"
    ref = DegradationRanges.reference()  # options/train_gfpgan_v1.yml
    assert (ref.sigma, ref.scale, ref.noise, ref.quality) == ((0.1, 10), (0.8, 8), (0, 20), (60, 100))
    assert ref.anisotropic_prob == 0.5 and ref.kernel_size == 41


def test_a_range_with_equal_ends_pins_the_parameter():
    p = draw_parameters(range(50), SEED, fixed(sigma=3.0, scale=2.5, noise=7.0, quality=75))
    assert (p["sigma"] == 3.0).all() and (p["scale"] == 2.5).all()
    assert (p["noise"] == 7.0).all() and (p["quality"] == 75).all()


def test_the_draws_are_pinned_functions_of_seed_and_key():
    # Pure integer hashing (SplitMix64): the same numbers in every process, platform and version.
    p = draw_parameters([0, 1, 2], 0)
    assert p["sigma"].tolist() == pytest.approx([3.1218316612537595, 5.270253393003766, 6.390540660070766])
    assert p["scale"].tolist() == pytest.approx([6.755492637565238, 4.860337456481981, 2.483595859518978])
    assert p["quality"].tolist() == [94, 71, 73]


# ---------------------------------------------------------------- the operations


def test_the_gaussian_kernel_is_basicsrs_bivariate_gaussian():
    iso = gaussian_kernel(2.0, radius=10)
    assert iso.shape == (21, 21) and float(iso.sum()) == pytest.approx(1.0)
    taps = torch.exp(-0.5 * (torch.arange(-10, 11, dtype=torch.float64) / 2.0) ** 2)
    torch.testing.assert_close(iso, torch.outer(taps, taps) / taps.sum() ** 2)  # separable
    # σ_x = 4 along x (columns), σ_y = 1.5 along y; a rotation by π/2 swaps them.
    aniso = gaussian_kernel(4.0, 1.5, 0.0, radius=20)
    offsets = torch.arange(-20, 21, dtype=torch.float64)
    assert float((aniso.sum(0) * offsets**2).sum()) == pytest.approx(4.0**2, rel=0.01)
    assert float((aniso.sum(1) * offsets**2).sum()) == pytest.approx(1.5**2, rel=0.01)
    torch.testing.assert_close(gaussian_kernel(4.0, 1.5, math.pi / 2, radius=20), aniso.T)


def test_a_wider_blur_removes_more_high_frequency_energy():
    image = texture()
    energies = [high_frequency(degrade(image, [0], SEED, fixed(sigma=s))) for s in (0.2, 0.5, 1, 2, 4, 8)]
    assert all(a > b for a, b in itertools.pairwise(energies)), energies
    assert energies[-1] < 0.01 * energies[0]


def test_a_larger_downsampling_factor_removes_more_detail():
    image = texture()
    out = {r: degrade(image, [0], SEED, fixed(scale=r)) for r in (1, 2, 4, 8)}
    energies = [high_frequency(o) for o in out.values()]
    assert all(a > b for a, b in itertools.pairwise(energies)), energies
    assert out[8].shape == image.shape  # resized back up to the original size
    torch.testing.assert_close(out[1], image, atol=1, rtol=0)  # r = 1: only σ = 0.2 and q = 100


def test_bicubic_interpolation_is_an_option():
    image = texture(channels=3)
    bilinear = degrade(image, [0], SEED, fixed(scale=4))
    bicubic = degrade(image, [0], SEED, fixed(scale=4, interpolation="bicubic"))
    assert bicubic.shape == image.shape and not torch.equal(bicubic, bilinear)


@pytest.mark.parametrize("delta", [5.0, 15.0])
def test_the_noise_std_on_a_flat_image_is_delta(delta):
    # Grey: a colour JPEG's 4:2:0 chroma subsampling (the reference's too) averages the chroma
    # part of independent per-channel noise, lowering each channel's std below δ.
    flat = torch.zeros(1, 1, 128, 128)  # 0 in [-1, 1]: mid-grey, 127.5 on the 0-255 scale
    out = degrade(flat, [0], SEED, fixed(noise=delta)) * 127.5
    assert float(out.std()) == pytest.approx(delta, rel=0.05)
    assert abs(float(out.mean())) < 0.5
    # δ = 0: flat stays flat (127.5 rounds to a neighbouring level, half a level away).
    still = degrade(flat, [0], SEED, fixed(noise=0.0)) * 127.5
    assert float(still.max() - still.min()) == 0 and abs(float(still.mean())) == pytest.approx(0.5, abs=1e-4)


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_is_pils_own_round_trip(channels):
    image = smooth(channels)[0]
    array = image[0].numpy() if channels == 1 else image.permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=30)
    expected = np.array(Image.open(io.BytesIO(buffer.getvalue())))
    expected = (
        torch.from_numpy(expected)[None] if channels == 1 else torch.from_numpy(expected).permute(2, 0, 1)
    )
    assert torch.equal(jpeg_roundtrip(image, 30), expected)
    # Through degrade, with the other operations pinned to (near) identity: the same pixels.
    assert torch.equal(degrade(image[None], [0], SEED, fixed(quality=30))[0], expected)


def test_jpeg_at_q100_is_near_identity_and_at_q10_blocky():
    image = smooth()
    error = {
        q: (degrade(image, [0], SEED, fixed(quality=q)).double() - image.double()).abs() for q in (100, 10)
    }
    assert float(error[100].mean()) < 1.0 and float(error[100].max()) <= 8
    assert float(error[10].mean()) > 5 * float(error[100].mean())
    # Blocking: at q = 10 the 8x8 DCT blocks' edges are steps; inside a block the image stays smooth.
    out = degrade(image, [0], SEED, fixed(quality=10)).double()
    steps = (out[..., 1:] - out[..., :-1]).abs().mean(dim=(0, 1, 2))  # step between column j, j+1
    at_edges = steps[7::8].mean()
    inside = torch.cat([steps[j::8] for j in range(7)]).mean()
    assert at_edges > 1.5 * inside


# ---------------------------------------------------------------- reproducibility


def test_the_same_key_gives_the_same_image_and_other_keys_other_images():
    images = texture(channels=3).expand(4, -1, -1, -1).float() / 127.5 - 1
    first = degrade(images, [5, 6, 7, 8], SEED)
    assert torch.equal(first, degrade(images, [5, 6, 7, 8], SEED))
    assert all(not torch.equal(first[i], first[j]) for i in range(4) for j in range(i))
    assert not torch.equal(first, degrade(images, [5, 6, 7, 8], SEED + 1))


def test_a_keys_image_does_not_depend_on_its_batch():
    images = torch.cat([texture(channels=3, seed=s) for s in range(4)])
    keys = [10, 11, 12, 13]
    batch = degrade(images, keys, SEED)
    for i, key in enumerate(keys):
        assert torch.equal(degrade(images[i : i + 1], [key], SEED)[0], batch[i])
    order = [2, 0, 3, 1]
    assert torch.equal(degrade(images[order], [keys[i] for i in order], SEED), batch[order])


def test_the_global_rngs_are_neither_read_nor_moved():
    images = texture(channels=3).float() / 127.5 - 1
    torch.manual_seed(0)
    np.random.seed(0)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    first = degrade(images, [3], SEED, DegradationRanges(noise=(10, 15)))
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state)
    torch.manual_seed(99)
    assert torch.equal(degrade(images, [3], SEED, DegradationRanges(noise=(10, 15))), first)


def test_dtype_and_shape_are_kept():
    images = texture(channels=3, size=32).expand(2, -1, -1, -1)
    as_uint8 = degrade(images, [0, 1], SEED, DegradationRanges.reference())  # anisotropic kernels too
    assert as_uint8.dtype == torch.uint8 and as_uint8.shape == images.shape
    as_float = degrade(images.float() / 127.5 - 1, [0, 1], SEED)
    assert as_float.dtype == torch.float32 and as_float.shape == images.shape
    assert as_float.min() >= -1 and as_float.max() <= 1
    assert torch.equal(((as_float + 1) * 127.5).round(), (as_float + 1) * 127.5)  # the uint8 grid


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"sigma": (5.0, 1.0)}, "sigma"),
        ({"sigma": (0.0, 1.0)}, "sigma"),
        ({"sigma": 3.0}, "sigma"),
        ({"scale": (0, 8)}, "scale"),
        ({"scale": (1, float("nan"))}, "scale"),
        ({"noise": (-1, 15)}, "noise"),
        ({"noise": ("0", 15)}, "noise"),
        ({"quality": (60, 101)}, "quality"),
        ({"quality": (0, 100)}, "quality"),
        ({"quality": (60.5, 100)}, "quality"),
        ({"kernel_size": 40}, "kernel_size"),
        ({"anisotropic_prob": 1.5}, "anisotropic_prob"),
        ({"interpolation": "nearest"}, "interpolation"),
    ],
)
def test_bad_ranges_are_refused_naming_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=rf"^degradation\.{key}\b") as err:
        DegradationRanges(**kwargs)
    assert "\n" not in str(err.value)


def test_lists_from_a_config_are_accepted():
    ranges = DegradationRanges(sigma=[1, 2], quality=[70, 90])
    assert ranges.sigma == (1.0, 2.0) and ranges.quality == (70, 90)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="one key per image"):
        degrade(torch.zeros(2, 3, 8, 8), [0], SEED)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        degrade(torch.zeros(1, 4, 8, 8), [0], SEED)
    with pytest.raises(ValueError, match="non-negative integers"):
        degrade(torch.zeros(1, 3, 8, 8), [-1], SEED)
