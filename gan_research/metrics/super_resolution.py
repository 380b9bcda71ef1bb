"""Metrics of single-image super-resolution, with the conventions of SR papers, and the bicubic
baseline beside every number.

The evaluator scores ``module.translate`` (LR → SR) on the datamodule's validation pairs and,
once, the bicubic upsampling of the same LR images:

- ``val/psnr_y``, ``val/ssim_y``: PSNR (dB) and SSIM on the luma channel with ``scale`` pixels
  cropped from every border, the protocol of SRCNN, SRGAN (Ledig et al. 2017, §3.1: "calculated
  on the y-channel of center-cropped, removal of a 4-pixel wide strip from each border images")
  and their evaluation code (e.g. BasicSR's ``calculate_psnr``/``calculate_ssim`` with
  ``test_y_channel=True``). Images are quantised to 8 bits first, as the saved PNGs papers score.
  Luma is ITU-R BT.601 as MATLAB's ``rgb2ycbcr``: Y = 16 + 65.481 R + 128.553 G + 24.966 B
  (R, G, B in [0, 1]; Y in [16, 235]); a grey image is its own luma (its 0–255 values).
  PSNR = 10 log10(255² / MSE) per image, averaged over images. SSIM is Wang et al. 2004 on
  Y in [0, 255]: an 11×11 Gaussian window of σ 1.5, K1 0.01, K2 0.03, 'valid' filtering (no
  padding, as ``ssim_index.m``), the SSIM map averaged per image, then over images.
- ``val/psnr_y_bicubic``, ``val/ssim_y_bicubic`` and ``val/psnr_y_gain`` (SR minus bicubic, dB).
- From :class:`~gan_research.metrics.translation.TranslationMetrics` on the full images:
  ``val/l1``, ``val/psnr``, ``val/ssim`` and FID of the SR images against the validation HR
  images (``val/fid_digits`` with the domain classifier, ``val/fid`` with Inception), and the
  same for the bicubic images (``..._bicubic``): FID and PSNR are the two axes of the
  perception–distortion plane (Blau & Michaeli 2018).
- ``val/lpips`` (and ``val/lpips_bicubic``) when ``perceptual_distance: lpips`` (Zhang et al.
  2018; its backbone weights are a local file, see ``metrics/perceptual.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from gan_research.errors import ConfigError
from gan_research.metrics.evaluator import module_device
from gan_research.metrics.translation import TranslationMetrics
from gan_research.utils.data_spec import DataKind
from gan_research.utils.images import resize_bicubic

PERCEPTUAL_DISTANCES = ("none", "lpips")
# BT.601 luma of MATLAB's rgb2ycbcr, for R, G, B in [0, 1] (Y in [16, 235]).
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0
# Wang et al. 2004: window, sigma and the constants' factors for 8-bit data.
_SSIM_WINDOW, _SSIM_SIGMA, _K1, _K2, _PEAK = 11, 1.5, 0.01, 0.03, 255.0


def to_luma_255(images: Tensor) -> Tensor:
    """Images in [-1, 1] (B, C, H, W), C 1 or 3 → 8-bit-quantised luma in [0, 255], float64 (B, 1, H, W)."""
    pixels = ((images.detach().double().clamp(-1, 1) + 1) * 127.5).round()
    if pixels.shape[1] == 1:
        return pixels
    if pixels.shape[1] != 3:
        raise ValueError(f"expected grey or RGB images, got {pixels.shape[1]} channels")
    weights = torch.tensor(_Y_WEIGHTS, dtype=torch.float64, device=pixels.device).view(1, 3, 1, 1)
    return _Y_OFFSET + (pixels / 255.0 * weights).sum(dim=1, keepdim=True)


def crop_border(images: Tensor, border: int) -> Tensor:
    """``border`` pixels removed from each side (SR papers crop ``scale`` pixels)."""
    if border == 0:
        return images
    if 2 * border >= min(images.shape[-2:]):
        raise ValueError(f"a border of {border} px leaves nothing of {tuple(images.shape[-2:])} images")
    return images[..., border:-border, border:-border]


def psnr_y(sr: Tensor, hr: Tensor, border: int) -> Tensor:
    """PSNR (dB) per image on the luma channel, ``border`` cropped: (B,) float64."""
    x, y = crop_border(to_luma_255(sr), border), crop_border(to_luma_255(hr), border)
    mse = (x - y).square().flatten(1).mean(dim=1)
    return 10.0 * torch.log10(_PEAK**2 / mse)


def _gaussian_window(device: torch.device) -> Tensor:
    coords = torch.arange(_SSIM_WINDOW, dtype=torch.float64, device=device) - (_SSIM_WINDOW - 1) / 2
    g = torch.exp(-(coords**2) / (2 * _SSIM_SIGMA**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, _SSIM_WINDOW, _SSIM_WINDOW)


def ssim_y(sr: Tensor, hr: Tensor, border: int) -> Tensor:
    """SSIM per image on the luma channel, ``border`` cropped (Wang et al. 2004, eq. 13, with the
    Gaussian window and 'valid' filtering of ``ssim_index.m``): (B,) float64."""
    x, y = crop_border(to_luma_255(sr), border), crop_border(to_luma_255(hr), border)
    if min(x.shape[-2:]) < _SSIM_WINDOW:
        raise ValueError(
            f"SSIM's {_SSIM_WINDOW}x{_SSIM_WINDOW} window does not fit {tuple(x.shape[-2:])} cropped images"
        )
    window = _gaussian_window(x.device)
    c1, c2 = (_K1 * _PEAK) ** 2, (_K2 * _PEAK) ** 2
    mu_x, mu_y = F.conv2d(x, window), F.conv2d(y, window)
    sigma_x = F.conv2d(x * x, window) - mu_x**2
    sigma_y = F.conv2d(y * y, window) - mu_y**2
    sigma_xy = F.conv2d(x * y, window) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (sigma_x + sigma_y + c2)
    )
    return ssim_map.flatten(1).mean(dim=1)


def bicubic_upscale(lr: Tensor, size: tuple[int, int]) -> Tensor:
    """The bicubic baseline: ``lr`` resized to ``size`` with MATLAB's ``imresize`` kernel (Keys'
    cubic, a = -0.5; :func:`~gan_research.utils.images.resize_bicubic`), clamped to [-1, 1]."""
    return resize_bicubic(lr, size)


class SuperResolutionMetrics(TranslationMetrics):
    """The evaluator of super-resolution (see the module docstring for every key).

    Args:
        perceptual_distance: ``none`` or ``lpips`` (``val/lpips``; needs the LPIPS backbone's
            weights file).
        lpips_net: LPIPS backbone, ``alex`` (the LPIPS paper's default) or ``vgg``.
        lpips_weights: the backbone's ImageNet weights file (or its environment variable, or
            the torch hub cache; see ``metrics/perceptual.py``).
        The others: those of :class:`~gan_research.metrics.translation.TranslationMetrics`.
    """

    data_kinds: ClassVar[tuple[DataKind, ...]] = (DataKind.PAIRED,)

    def __init__(
        self,
        num_samples: int | None = None,
        feature_network: str = "auto",
        classifier_path: str | None = None,
        train_classifier_if_missing: bool = True,
        inception_weights: str | None = None,
        data_dir: str = "data",
        batch_size: int = 64,
        perceptual_distance: str = "none",
        lpips_net: str = "alex",
        lpips_weights: str | None = None,
    ) -> None:
        # Spelt out (not **kwargs): gan-eval checks settings against this signature.
        super().__init__(
            num_samples=num_samples,
            feature_network=feature_network,
            classifier_path=classifier_path,
            train_classifier_if_missing=train_classifier_if_missing,
            inception_weights=inception_weights,
            data_dir=data_dir,
            batch_size=batch_size,
        )
        if perceptual_distance not in PERCEPTUAL_DISTANCES:
            raise ConfigError(
                f"metrics.perceptual_distance={perceptual_distance!r} is invalid; valid: "
                f"{list(PERCEPTUAL_DISTANCES)}"
            )
        self.perceptual_distance = perceptual_distance
        self.lpips_net = lpips_net
        self.lpips_weights = lpips_weights
        self.lpips: Any = None
        self._bicubic: dict[str, float] | None = None

    def prepare(self, datamodule: Any) -> None:
        """As :meth:`TranslationMetrics.prepare`, for LR → HR pairs (A smaller than B by an integer
        scale); builds LPIPS when asked (its missing weights file fails here, before training)."""
        already = self._built and datamodule is self.datamodule
        super().prepare(datamodule)
        if already:
            return
        spec = self.spec
        size_a, size_b = spec.a_shape[-1], spec.sample_shape[-1]
        if size_a >= size_b or size_b % size_a != 0:
            raise ConfigError(
                f"metrics=super_resolution scores low- to high-resolution pairs, but dataset '{spec.name}' "
                f"has pairs of {size_a} px -> {size_b} px; use metrics=translation for same-size pairs"
            )
        self.scale = size_b // size_a
        if self.perceptual_distance == "lpips" and self.lpips is None:
            from gan_research.metrics.perceptual import LPIPS

            self.lpips = LPIPS(net_type=self.lpips_net, weights=self.lpips_weights)
        self._bicubic = None

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "scale": self.scale, "perceptual_distance": self.perceptual_distance}

    @torch.no_grad()
    def _score(self, upscale: Callable[[Tensor], Tensor], device: torch.device) -> dict[str, float]:
        results = self.evaluate_translator(upscale, None, device)
        psnr, ssim, lpips = [], [], []
        for a, b in zip(self.a.split(self.batch_size), self.b.split(self.batch_size), strict=True):
            a, b = a.to(device), b.to(device)
            out = upscale(a).float()
            psnr.append(psnr_y(out, b, self.scale))
            ssim.append(ssim_y(out, b, self.scale))
            if self.lpips is not None:
                lpips.append(self.lpips.to(device)(out.clamp(-1, 1), b.float()).reshape(-1).double())
        results["val/psnr_y"] = float(torch.cat(psnr).mean())
        results["val/ssim_y"] = float(torch.cat(ssim).mean())
        if lpips:
            results["val/lpips"] = float(torch.cat(lpips).mean())
        return results

    def evaluate(self, module: Any, world_size: int = 1) -> dict[str, float]:
        """The metrics of ``module.translate`` and of the bicubic baseline (computed once)."""
        device = module_device(module)
        results = self._score(module.translate, device)
        if self._bicubic is None:
            size = tuple(self.b.shape[-2:])
            baseline = self._score(lambda a: bicubic_upscale(a, size), device)  # type: ignore[arg-type]
            self._bicubic = {f"{key}_bicubic": value for key, value in baseline.items()}
        results.update(self._bicubic)
        results["val/psnr_y_gain"] = results["val/psnr_y"] - results["val/psnr_y_bicubic"]
        return results
