"""GFP-GAN's synthetic degradation of face images (Wang et al. 2021, "Towards Real-World Blind Face
Restoration with Generative Facial Prior", arXiv:2101.04061), applied on the fly, reproducibly.

The paper trains on FFHQ images ``y`` degraded by eq. 1::

    x = [(y ⊛ k_σ)↓_r + n_δ]_JPEG_q

a Gaussian blur of width σ, downsampling by a factor r, additive white Gaussian noise of standard
deviation δ (on the 0-255 scale) and JPEG compression at quality q, with σ, r, δ and q drawn at
random from [0.2, 10], [1, 8], [0, 15] and [60, 100] (Sec. 4.1, "Training datasets").
:func:`degrade` does it step for step as the reference training pipeline does (TencentARC/GFPGAN,
``gfpgan/data/ffhq_degradation_dataset.py``, ``FFHQDegradationDataset.__getitem__``, with
XPixelGroup/BasicSR's ``basicsr/data/degradations.py``):

1. blur: correlation with a normalised, sampled Gaussian kernel (``bivariate_Gaussian``), borders
   mirrored without repeating the edge pixel (``cv2.filter2D``'s ``BORDER_REFLECT_101`` = torch's
   ``"reflect"`` padding);
2. resize to ``(floor(H / r), floor(W / r))`` (``cv2.resize(..., (int(w // scale), int(h // scale)),
   INTER_LINEAR)``: bilinear, half-pixel centres, no antialiasing = ``F.interpolate(mode="bilinear",
   align_corners=False)``);
3. add noise ``n ~ N(0, (δ/255)²)`` independently per pixel and channel, clip to [0, 1]
   (``random_add_gaussian_noise``, ``gray_prob=0``);
4. JPEG: quantise to uint8, encode at quality q and decode (``add_jpg_compression``; here the real
   libjpeg codec through PIL, whose defaults, 4:2:0 chroma subsampling and the standard tables
   scaled by q, are OpenCV's);
5. resize back to ``(H, W)`` with the same interpolation (the reference: "resize to original
   size", so the restoration network sees input and target at one size);
6. round to the uint8 grid (the reference's ``torch.clamp((img_lq * 255.0).round(), 0, 255) / 255.``).

**Ranges** (:class:`DegradationRanges`). The defaults are the paper's. The reference's training
config (``options/train_gfpgan_v1.yml``) differs, and :meth:`DegradationRanges.reference` gives
it: ``blur_sigma: [0.1, 10]`` (paper: 0.2), ``downsample_range: [0.8, 8]`` (paper: 1, i.e. the
reference also slightly *up*-samples), ``noise_range: [0, 20]`` (paper: 15), ``jpeg_range: [60,
100]`` (same), ``blur_kernel_size: 41`` (here ``kernel_size``, the same default) and
``kernel_list: ['iso', 'aniso'], kernel_prob: [0.5, 0.5]``: half of its kernels are anisotropic
Gaussians with σ_x, σ_y drawn independently from ``blur_sigma`` and a rotation uniform in [-π, π]
(here ``anisotropic_prob``, 0 by default: the paper's ``k_σ`` is isotropic). Choices of this
module where the reference differs in small ways:

- the kernel is cut at ``2 * ceil(3σ) + 1`` taps (at most ``kernel_size``, and at most what the
  image can mirror): the reference always builds 41×41, whose taps beyond 3σ along an axis hold
  about 0.5 % of the mass (0.3 % per axis); the isotropic kernel is applied as two separable
  1-D passes (the same kernel: an isotropic Gaussian is the outer product of two 1-D ones);
- q is an integer uniform on ``[low, high]`` inclusive (the reference draws a float from
  ``[low, high)`` and hands it to OpenCV's integer ``IMWRITE_JPEG_QUALITY`` parameter);
- the reference's colour jitter (``color_jitter_prob: 0.3``, ``color_jitter_pt_prob: 0.3``) and
  grey conversion (``gray_prob: 0.01``) of the degraded image are not part of eq. 1 and not done
  here; nor its horizontal flip, which applies to the target as well (the dataset's business).

**Reproducibility.** No generator with state is used: every draw is a pure function of
``(seed, key, stream)`` through the counter-based SplitMix64 hash of
:func:`gan_research.data.translation.jitter.jitter_draws` (one stream per quantity). A uniform
float in [0, 1) is the hash's low 53 bits over 2**53 (float64's mantissa: every value is
representable and the spacing is even). The noise field is ``torch.randn`` of a CPU
``torch.Generator`` seeded with another stream's 63-bit hash, so it is fixed by the key too (its
shape, the downsampled size, follows from the key and the image size). So the degraded image of
key ``k`` is the same in any process, data-loader worker, batch position and batch, and after a
resume, and the global RNGs (torch, numpy, random) are neither read nor moved. Use as key the
sample's draw number (``KeyedRandomSampler``'s), not its dataset index, so that an image gets a
fresh degradation every epoch. All work runs on the CPU (the JPEG codec does anyway; float
results are then bitwise the same wherever the images live) and the result is returned on the
input's device.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from gan_research.data.translation.jitter import jitter_draws
from gan_research.errors import ConfigError
from gan_research.utils.validation import check_positive_int

__all__ = [
    "INTERPOLATIONS",
    "DegradationRanges",
    "degrade",
    "draw_parameters",
    "gaussian_kernel",
    "jpeg_roundtrip",
]

#: Resampling of steps 2 and 5: ``bilinear`` is the reference's ``cv2.INTER_LINEAR`` (no
#: antialiasing); ``bicubic`` is MATLAB's/PIL's antialiased bicubic, the kernel SR benchmarks
#: downsample with (:func:`gan_research.utils.images.resize_bicubic`).
INTERPOLATIONS = ("bilinear", "bicubic")

# Hash streams of the draws (see jitter_draws). Apart from the translation datasets' 0-6 and the
# SR folder's 11-13, so a caller may feed the same (seed, key) to a crop and to the degradation
# without the two being correlated.
_SIGMA, _SIGMA_Y, _THETA, _ANISO, _SCALE, _NOISE, _QUALITY, _NOISE_FIELD = range(31, 39)
_MANTISSA = 1 << 53


@dataclass(frozen=True)
class DegradationRanges:
    """The ranges eq. 1's parameters are drawn from, uniformly, and the reference's options.

    Args:
        sigma: (low, high) of the blur's standard deviation σ in pixels, ``0 < low <= high``
            (paper: (0.2, 10); reference ``blur_sigma``: (0.1, 10)).
        scale: (low, high) of the downsampling factor r, ``0 < low <= high`` (paper: (1, 8);
            reference ``downsample_range``: (0.8, 8); r < 1 upsamples).
        noise: (low, high) of the noise's standard deviation δ on the 0-255 scale,
            ``0 <= low <= high`` (paper: (0, 15); reference ``noise_range``: (0, 20)).
        quality: (low, high) of the JPEG quality q, integers, ``1 <= low <= high <= 100``
            (paper and reference ``jpeg_range``: (60, 100)).
        kernel_size: the largest blur kernel, odd (reference ``blur_kernel_size``: 41).
        anisotropic_prob: probability of an anisotropic kernel (σ_x, σ_y both from ``sigma``,
            rotation uniform in [-π, π]), in [0, 1] (paper: 0; reference ``kernel_prob``: 0.5).
        interpolation: of the down- and the up-sizing, one of :data:`INTERPOLATIONS`
            (reference: ``bilinear``).

    A pair with ``low == high`` fixes the parameter. Lists (a Hydra config's) are accepted and
    stored as tuples. A bad value raises :class:`ConfigError` naming it
    (``degradation.sigma must be ...``).
    """

    sigma: tuple[float, float] = (0.2, 10.0)
    scale: tuple[float, float] = (1.0, 8.0)
    noise: tuple[float, float] = (0.0, 15.0)
    quality: tuple[int, int] = (60, 100)
    kernel_size: int = 41
    anisotropic_prob: float = 0.0
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        # frozen: normalised values are written with object.__setattr__.
        set_ = object.__setattr__
        set_(self, "sigma", _check_range("sigma", self.sigma, "0 < low <= high", positive=True))
        set_(self, "scale", _check_range("scale", self.scale, "0 < low <= high", positive=True))
        set_(self, "noise", _check_range("noise", self.noise, "0 <= low <= high", positive=False))
        set_(self, "quality", _check_quality(self.quality))
        size = check_positive_int("degradation", "kernel_size", self.kernel_size, form="key")
        if size % 2 == 0:
            raise ConfigError(f"degradation.kernel_size must be an odd positive integer, got {size!r}")
        p = self.anisotropic_prob
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ConfigError(f"degradation.anisotropic_prob must be a number in [0, 1], got {p!r}")
        set_(self, "anisotropic_prob", float(p))
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"degradation.interpolation={self.interpolation!r} is invalid: valid choices are "
                f"{', '.join(INTERPOLATIONS)}"
            )

    @classmethod
    def reference(cls) -> DegradationRanges:
        """The reference's training ranges (TencentARC/GFPGAN ``options/train_gfpgan_v1.yml``)."""
        return cls(
            sigma=(0.1, 10.0), scale=(0.8, 8.0), noise=(0.0, 20.0), quality=(60, 100), anisotropic_prob=0.5
        )


def _pair(name: str, value: Any, rule: str) -> tuple[Any, Any]:
    try:
        low, high = value
    except (TypeError, ValueError):
        raise ConfigError(
            f"degradation.{name} must be a (low, high) pair with {rule}, got {value!r}"
        ) from None
    return low, high


def _check_range(name: str, value: Any, rule: str, *, positive: bool) -> tuple[float, float]:
    """``value`` as a float pair ``(low, high)`` satisfying ``rule``, else ConfigError."""
    low, high = _pair(name, value, rule)
    numbers = all(not isinstance(v, bool) and isinstance(v, (int, float)) for v in (low, high))
    # `not (a <= b)` rather than `a > b`, so that NaN is refused; inf is refused as a bound too.
    if (
        not numbers
        or not all(math.isfinite(v) for v in (low, high))
        or not (low > 0 if positive else low >= 0)
        or not low <= high
    ):
        raise ConfigError(f"degradation.{name} must be a (low, high) pair with {rule}, got {tuple(value)!r}")
    return float(low), float(high)


def _check_quality(value: Any) -> tuple[int, int]:
    rule = "integers 1 <= low <= high <= 100"
    low, high = _pair("quality", value, rule)
    if not all(not isinstance(v, bool) and isinstance(v, int) for v in (low, high)) or not (
        1 <= low <= high <= 100
    ):
        raise ConfigError(f"degradation.quality must be a (low, high) pair of {rule}, got {tuple(value)!r}")
    return int(low), int(high)


def _keys(keys: Sequence[int] | Tensor | np.ndarray) -> list[int]:
    """``keys`` as a list of non-negative ints (the hash works on uint64)."""
    flat = keys.tolist() if isinstance(keys, (Tensor, np.ndarray)) else list(keys)
    for key in flat:
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or key < 0:
            raise ValueError(f"degradation keys must be non-negative integers, got {key!r}")
    return [int(k) for k in flat]


def _uniform(seed: int, keys: list[int], stream: int, low: float, high: float) -> Tensor:
    """Floats uniform in ``[low, high)`` (``low`` when equal), float64, one per key."""
    u = jitter_draws(seed, keys, stream, _MANTISSA).double() / _MANTISSA
    return low + u * (high - low)


def draw_parameters(
    keys: Sequence[int] | Tensor, seed: int, ranges: DegradationRanges | None = None
) -> dict[str, Tensor]:
    """The degradation parameters of each key, as :func:`degrade` uses them.

    Returns a dict of (B,) tensors: ``sigma`` (σ, or σ_x of an anisotropic kernel), ``sigma_y``
    (= ``sigma`` when isotropic), ``theta`` (the kernel's rotation in radians, 0 when isotropic),
    ``anisotropic`` (bool), ``scale`` (r), ``noise`` (δ, 0-255 scale), all float64 but the flag,
    and ``quality`` (q, int64). Pure function of ``(keys, seed, ranges)``.
    """
    ranges = ranges if ranges is not None else DegradationRanges()
    keys = _keys(keys)
    sigma = _uniform(seed, keys, _SIGMA, *ranges.sigma)
    aniso = _uniform(seed, keys, _ANISO, 0.0, 1.0) < ranges.anisotropic_prob
    # Drawn for every key, used where anisotropic: a key's draws never depend on another's.
    sigma_y = torch.where(aniso, _uniform(seed, keys, _SIGMA_Y, *ranges.sigma), sigma)
    theta = torch.where(aniso, _uniform(seed, keys, _THETA, -math.pi, math.pi), torch.zeros_like(sigma))
    low_q, high_q = ranges.quality
    return {
        "sigma": sigma,
        "sigma_y": sigma_y,
        "theta": theta,
        "anisotropic": aniso,
        "scale": _uniform(seed, keys, _SCALE, *ranges.scale),
        "noise": _uniform(seed, keys, _NOISE, *ranges.noise),
        "quality": low_q + jitter_draws(seed, keys, _QUALITY, high_q - low_q + 1),
    }


def gaussian_kernel(
    sigma_x: float, sigma_y: float | None = None, theta: float = 0.0, radius: int = 20
) -> Tensor:
    """The normalised (2·radius+1)² Gaussian kernel, float64: BasicSR's ``bivariate_Gaussian``.

    Covariance ``R(θ) diag(σ_x², σ_y²) R(θ)ᵀ`` (``sigma_matrix2``) sampled at integer offsets;
    isotropic with σ_x when ``sigma_y`` is None. Rows run along y, columns along x.
    """
    sigma_y = sigma_x if sigma_y is None else sigma_y
    ax = torch.arange(-radius, radius + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    c, s = math.cos(theta), math.sin(theta)
    # Inverse covariance R diag(1/σx², 1/σy²) Rᵀ, written out.
    a = c * c / sigma_x**2 + s * s / sigma_y**2
    b = c * s * (1 / sigma_x**2 - 1 / sigma_y**2)
    d = s * s / sigma_x**2 + c * c / sigma_y**2
    kernel = torch.exp(-0.5 * (a * xx * xx + 2 * b * xx * yy + d * yy * yy))
    return kernel / kernel.sum()


def _radius(sigma: float, kernel_size: int, height: int, width: int) -> int:
    # 3σ holds 99.7 % of a 1-D Gaussian's mass; reflect padding needs radius < the image's side.
    return max(0, min(math.ceil(3 * sigma), kernel_size // 2, height - 1, width - 1))


def _blur(
    x: Tensor, sigma: float, sigma_y: float, theta: float, anisotropic: bool, kernel_size: int
) -> Tensor:
    """``x`` (1, C, H, W) float32 correlated with the Gaussian kernel, reflected borders."""
    channels, height, width = x.shape[1:]
    radius = _radius(max(sigma, sigma_y), kernel_size, height, width)
    if radius == 0:
        return x
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    if anisotropic:
        kernel = gaussian_kernel(sigma, sigma_y, theta, radius).float()
        return F.conv2d(x, kernel.expand(channels, 1, -1, -1), groups=channels)
    # Isotropic: two 1-D passes (2·(2r+1) taps per pixel instead of (2r+1)²), same kernel.
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float64) / sigma) ** 2)
    taps = (taps / taps.sum()).float()
    x = F.conv2d(x, taps.view(1, 1, -1, 1).expand(channels, 1, -1, -1), groups=channels)
    return F.conv2d(x, taps.view(1, 1, 1, -1).expand(channels, 1, -1, -1), groups=channels)


def _resize(x: Tensor, size: tuple[int, int], interpolation: str) -> Tensor:
    if interpolation == "bilinear":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    # Bicubic overshoots at edges: clip back into [0, 1] as resize_bicubic does.
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0.0, 1.0)


def _to_uint8(x: Tensor) -> Tensor:
    """[0, 1] floats to uint8, rounded to nearest (as OpenCV converts floats for ``imencode``)."""
    return (x * 255.0).round().clamp(0, 255).to(torch.uint8)


def jpeg_roundtrip(image: Tensor, quality: int) -> Tensor:
    """``image`` (C, H, W) uint8, C = 1 (grey) or 3 (RGB), JPEG-encoded at ``quality`` in memory
    with PIL (libjpeg, default settings: 4:2:0 chroma subsampling for RGB) and decoded."""
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(
            "jpeg_roundtrip needs a (C, H, W) uint8 image with C = 1 or 3, "
            f"got {image.dtype} {tuple(image.shape)}"
        )
    array = image.cpu().numpy()
    array = array[0] if array.shape[0] == 1 else np.ascontiguousarray(array.transpose(1, 2, 0))
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        out = torch.from_numpy(np.array(decoded))
    return out[None] if out.ndim == 2 else out.permute(2, 0, 1).contiguous()


def _degrade_one(x: Tensor, p: dict[str, Any], noise_seed: int, ranges: DegradationRanges) -> Tensor:
    """One image (1, C, H, W) float32 in [0, 1] through eq. 1; uint8 (C, H, W) out."""
    height, width = x.shape[-2:]
    x = _blur(x, p["sigma"], p["sigma_y"], p["theta"], p["anisotropic"], ranges.kernel_size)
    # The reference's int(w // scale); at least one pixel.
    small = (max(1, math.floor(height / p["scale"])), max(1, math.floor(width / p["scale"])))
    x = _resize(x, small, ranges.interpolation)
    generator = torch.Generator().manual_seed(noise_seed)
    noise = torch.randn(x.shape, generator=generator, dtype=torch.float32)
    x = (x + noise * (p["noise"] / 255.0)).clamp(0.0, 1.0)
    x = jpeg_roundtrip(_to_uint8(x[0]), p["quality"])[None].float() / 255.0
    x = _resize(x, (height, width), ranges.interpolation)
    return _to_uint8(x[0])


def degrade(
    images: Tensor, keys: Sequence[int] | Tensor, seed: int, ranges: DegradationRanges | None = None
) -> Tensor:
    """The images degraded by eq. 1, each with the parameters and noise of its key.

    Args:
        images: (B, C, H, W), C = 1 or 3: float in [-1, 1] (the repository's convention) or uint8.
        keys: B non-negative integers, one per image (e.g. the sample's draw number).
        seed: the run's seed.
        ranges: the parameter ranges; the paper's when None.

    Returns:
        The degraded images, same shape, dtype and device as ``images``, on the uint8 grid
        (floats ``k / 127.5 - 1``). Row i depends only on ``(images[i], keys[i], seed, ranges)``.
    """
    ranges = ranges if ranges is not None else DegradationRanges()
    keys = _keys(keys)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"degrade needs (B, C, H, W) images with C = 1 or 3, got shape {tuple(images.shape)}"
        )
    if len(keys) != images.shape[0]:
        raise ValueError(f"degrade needs one key per image: {len(keys)} keys for {images.shape[0]} images")
    params = draw_parameters(keys, seed, ranges)
    noise_seeds = jitter_draws(seed, keys, _NOISE_FIELD, 1 << 63).tolist()
    source = images.detach().cpu()
    unit = (
        source.float() / 255.0
        if source.dtype == torch.uint8
        else ((source.float() + 1.0) / 2.0).clamp(0.0, 1.0)
    )
    rows = [
        _degrade_one(
            unit[i : i + 1], {name: value[i].item() for name, value in params.items()}, noise_seeds[i], ranges
        )
        for i in range(len(keys))
    ]
    out = torch.stack(rows) if rows else torch.empty(images.shape, dtype=torch.uint8)
    if images.dtype != torch.uint8:
        out = (out.float() / 127.5 - 1.0).to(images.dtype)
    return out.to(images.device)
