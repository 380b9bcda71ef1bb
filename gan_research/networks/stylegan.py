"""StyleGAN (Karras, Laine & Aila 2019, arXiv:1812.04948) and StyleGAN2 (Karras, Laine, Aittala,
Hellsten, Lehtinen & Aila 2020, arXiv:1912.04958) networks.

Generator = mapping network z → w (8 equalised fully connected layers, lr × 0.01, StyleGAN
sec. 2 and app. C) + synthesis network from a learned constant 4×4 input, one style input w
per layer (``num_ws`` of them, broadcast copies of w unless styles are mixed), per-layer noise
inputs with learned strengths (StyleGAN sec. 2, Fig. 1b; per channel in v1, one scalar per layer
in v2, see :class:`NoiseInput`):

- ``version=1``: AdaIN(x, y) = y_s · (x − μ(x)) / σ(x) + y_b (StyleGAN eq. 1), y = A(w) a learned
  affine map; a single to-RGB layer at the output resolution (no progressive growing).
- ``version=2``: modulated convolution with demodulation (StyleGAN2 sec. 2.2, eq. 1–3):
  w'_ijk = s_i · w_ijk, w''_ijk = w'_ijk / sqrt(Σ_{i,k} w'_ijk² + ε); noise and bias are
  applied outside the style block (Fig. 2c); "skip" generator: every resolution has its own
  (modulated, not demodulated) to-RGB layer whose output is added to the upsampled image
  of the previous resolution (Fig. 7, the official config-e/f generator).

Style index ↔ layer (the official ``num_ws`` bookkeeping, stylegan2-ada-pytorch
``networks.py``): with ``log2(image_size) = L`` there are ``num_ws = 2L − 2`` styles; the 4×4
block uses styles 0 (conv) and 1 (to-RGB), a block of resolution 2^l uses 2l−5 (upsampling
conv), 2l−4 (conv) and 2l−3 (to-RGB; in v2 shared with the next block's first conv). So
resolution 2^l is driven by ``ws[:, 2l−4 : 2l−2]`` (v1: its two AdaINs exactly), which is what
:func:`style_groups` uses to split the styles into coarse, middle and fine.

Truncation (StyleGAN sec. 5.2 / app. B): w' = w̄ + ψ (w − w̄), with w̄ the moving average of the
mapping outputs seen in training (``MappingNetwork.w_avg``, decay ``w_avg_beta`` per call, the
official 0.995).

Simplifications w.r.t. the official code, all documented where they occur: up/downsampling is
bilinear interpolation / average pooling instead of the FIR-filtered (``upfirdn2d``) resampling,
and v1 has no progressive growing (it trains at the final resolution, as StyleGAN2's config-a
baseline does).

Discriminator: StyleGAN2's residual D (Fig. 7c, config-e/f), fromRGB at full resolution, one
residual block per resolution down to 4×4 ((conv3×3 → conv3×3 ↓) + 1×1 conv ↓ skip, summed
and scaled by 1/√2), then minibatch stddev (group 4), conv3×3, fc, fc → score.

Widths (stylegan2-ada-pytorch convention): ``channels(res) = min(fmap_base // res, fmap_max)``;
``fmap_base=32768, fmap_max=512`` is the official config-f (512 channels up to 64², then 256,
128, 64, 32 at 1024²).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.networks.progan_layers import (
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
    PixelNorm,
)
from gan_research.utils.validation import check_image_size, check_positive_int

VERSIONS = (1, 2)
NOISE_MODES = ("random", "const", "none")
MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 1024
SUPPORTED_IMAGE_SIZES: tuple[int, ...] = tuple(2**k for k in range(5, 11))
"""Every ``image_size`` the StyleGAN networks take: 32, 64, 128, 256, 512, 1024."""

# Leaky ReLU slope of every StyleGAN layer (StyleGAN app. C: "leaky ReLU with α = 0.2").
LRELU_SLOPE = 0.2
# StyleGAN2's activation gain: a demodulated conv has unit-variance outputs, the lrelu halves
# their second moment, sqrt(2) restores it (official bias_act ``def_gain``).
LRELU_GAIN = math.sqrt(2.0)


def feature_channels(resolution: int, fmap_base: int, fmap_max: int) -> int:
    """Channels of the feature maps at ``resolution``: min(fmap_base // resolution, fmap_max), at least 1."""
    return max(1, min(fmap_base // resolution, fmap_max))


def num_styles(image_size: int) -> int:
    """Style inputs of a synthesis network at ``image_size``: 2·log2(image_size) − 2 (18 at 1024²)."""
    return 2 * int(math.log2(image_size)) - 2


def style_groups(image_size: int) -> dict[str, slice]:
    """The style indices of the coarse, middle and fine styles (StyleGAN sec. 3.1, Fig. 3).

    The paper's groups at 1024²: coarse = resolutions 4²–8² (ws 0–3), middle = 16²–32²
    (ws 4–7), fine = 64²–1024² (ws 8–17). Resolution 2^l owns ``ws[2l−4 : 2l−2]``. At 32² there
    is no 64² layer, so the groups shift by one resolution: coarse = 4²–8² (ws 0–3),
    middle = 16² (ws 4–5), fine = 32² (ws 6–7).
    """
    n = num_styles(image_size)
    if image_size == 32:
        return {"coarse": slice(0, 4), "middle": slice(4, 6), "fine": slice(6, n)}
    return {"coarse": slice(0, 4), "middle": slice(4, 8), "fine": slice(8, n)}


def truncate(ws: Tensor, w_avg: Tensor, psi: float, cutoff: int | None = None) -> Tensor:
    """The truncation trick (StyleGAN sec. 5.2, app. B): w' = w̄ + ψ (w − w̄).

    ``cutoff``: truncate only the first ``cutoff`` styles (the paper truncates the coarse
    ones only in some figures); None truncates all.
    """
    if psi == 1.0:
        return ws
    truncated = torch.lerp(w_avg.to(ws.dtype), ws, psi)
    if cutoff is None:
        return truncated
    return torch.cat([truncated[:, :cutoff], ws[:, cutoff:]], dim=1)


def mix_styles(ws: Tensor, ws_other: Tensor, crossover: int | Tensor) -> Tensor:
    """Style mixing (StyleGAN sec. 3.1): styles before ``crossover`` from ``ws``, from it on
    from ``ws_other``. ``crossover``: an int for the whole batch or a (B,) tensor per sample."""
    index = torch.arange(ws.shape[1], device=ws.device)
    if isinstance(crossover, Tensor) and crossover.dim() == 1:
        take_other = index[None, :] >= crossover[:, None].to(ws.device)
    else:
        take_other = (index >= crossover)[None, :].expand(ws.shape[0], -1)
    return torch.where(take_other[:, :, None], ws_other, ws)


class MappingNetwork(nn.Module):
    """z → w: pixel norm of z, then ``num_layers`` equalised fully connected layers with leaky
    ReLU and learning rate × ``lr_multiplier`` (StyleGAN sec. 2, Fig. 1b, app. C: 8 layers,
    λ' = 0.01 λ). Tracks ``w_avg``, the moving average of its outputs in training
    (``w_avg ← lerp(mean_batch(w), w_avg, w_avg_beta)``, official ``w_avg_beta`` 0.995).
    """

    def __init__(
        self,
        latent_dim: int = 512,
        w_dim: int = 512,
        num_layers: int = 8,
        lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.995,
    ) -> None:
        super().__init__()
        owner = "MappingNetwork"
        self.latent_dim = check_positive_int(owner, "latent_dim", latent_dim)
        self.w_dim = check_positive_int(owner, "w_dim", w_dim)
        self.num_layers = check_positive_int(owner, "num_layers", num_layers)
        if not 0.0 <= w_avg_beta < 1.0:
            raise ConfigError(f"{owner}: w_avg_beta must be in [0, 1), got {w_avg_beta!r}.")
        self.w_avg_beta = float(w_avg_beta)
        self.normalize = PixelNorm()
        dims = [latent_dim] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            EqualizedLinear(dims[i], dims[i + 1], lr_multiplier=lr_multiplier) for i in range(num_layers)
        )
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: Tensor, update_w_avg: bool | None = None) -> Tensor:
        """(B, latent_dim) → (B, w_dim). ``update_w_avg`` (default: in training mode) moves ``w_avg``."""
        x = self.normalize(z)
        for layer in self.layers:
            x = F.leaky_relu(layer(x), LRELU_SLOPE)
        if update_w_avg if update_w_avg is not None else self.training:
            with torch.no_grad():
                self.w_avg.copy_(
                    torch.lerp(x.detach().mean(dim=0).to(self.w_avg.dtype), self.w_avg, self.w_avg_beta)
                )
        return x


class NoiseInput(nn.Module):
    """Per-pixel Gaussian noise (one map per sample, shared by all channels) scaled by a learned
    strength, initially 0 (StyleGAN app. C: the scaling factors are initialised to zero).

    ``per_channel=True`` (StyleGAN v1): a strength per channel, ``strength`` of shape
    (channels,): B of StyleGAN Fig. 1b, "learned per-feature scaling factors" (sec. 2; official
    stylegan ``training/networks_stylegan.py``, ``apply_noise``: ``weight`` of shape
    ``[x.shape[1]]``). ``per_channel=False`` (StyleGAN2): one scalar per layer, ``strength`` of
    shape () (stylegan2-ada-pytorch ``training/networks.py``, ``SynthesisLayer``:
    ``self.noise_strength = torch.nn.Parameter(torch.zeros([]))``).

    ``noise_mode``: "random" draws new noise each call, "const" uses a fixed buffer (for grids
    in which only the styles change), "none" adds nothing.
    """

    def __init__(self, channels: int, resolution: int, per_channel: bool = True) -> None:
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(channels) if per_channel else torch.zeros(()))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))

    def forward(self, x: Tensor, noise_mode: str = "random") -> Tensor:
        if noise_mode == "none":
            return x
        if noise_mode == "const":
            noise = self.noise_const.to(x.dtype)
        else:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        # (channels,) → (1, C, 1, 1); a scalar stays a scalar.
        strength = self.strength.to(x.dtype)
        return x + noise * (strength.view(1, -1, 1, 1) if strength.dim() else strength)


def _upsample(x: Tensor) -> Tensor:
    # Bilinear 2× stands in for the official FIR-filtered upsampling ([1, 3, 3, 1] kernel); both
    # avoid the aliasing of nearest-neighbour upsampling (StyleGAN app. C, Zhang 2019).
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def _downsample(x: Tensor) -> Tensor:
    # 2×2 average pooling stands in for the official FIR-filtered downsampling.
    return F.avg_pool2d(x, 2)


# --------------------------------------------------------------------------- StyleGAN (v1)
class AdaIN(nn.Module):
    """Adaptive instance normalisation (StyleGAN eq. 1): y_s,i (x_i − μ(x_i)) / σ(x_i) + y_b,i.

    y = (y_s, y_b) = A(w), a learned affine map of w; y_s is parametrised as 1 + A_s(w) (the
    official ``style_mod`` adds 1) so an untrained layer is close to plain instance norm.
    """

    def __init__(self, channels: int, w_dim: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.affine = EqualizedLinear(w_dim, 2 * channels, gain=1.0)
        self.eps = eps

    def style(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """(y_s, y_b), each (B, channels)."""
        y_s, y_b = self.affine(w).chunk(2, dim=1)
        return 1.0 + y_s, y_b

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        x = x - x.mean(dim=(2, 3), keepdim=True)
        x = x * torch.rsqrt(x.pow(2).mean(dim=(2, 3), keepdim=True) + self.eps)
        y_s, y_b = self.style(w)
        return x * y_s[:, :, None, None] + y_b[:, :, None, None]


class StyleLayerV1(nn.Module):
    """One StyleGAN layer: [2× upsample →] conv3×3 → noise → bias → lrelu → AdaIN (Fig. 1b).
    The first layer of the 4×4 block has no conv: it starts from the learned constant."""

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, resolution: int, conv: bool, up: bool
    ) -> None:
        super().__init__()
        self.up = up
        self.conv = EqualizedConv2d(in_channels, out_channels, 3, padding=1, bias=False) if conv else None
        self.noise = NoiseInput(out_channels, resolution, per_channel=True)  # StyleGAN's per-channel B
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.adain = AdaIN(out_channels, w_dim)

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "random") -> Tensor:
        if self.up:
            x = _upsample(x)
        if self.conv is not None:
            x = self.conv(x)
        x = self.noise(x, noise_mode) + self.bias.view(1, -1, 1, 1)
        return self.adain(F.leaky_relu(x, LRELU_SLOPE), w)


# -------------------------------------------------------------------------- StyleGAN2 (v2)
class ModulatedConv2d(nn.Module):
    """Modulated convolution (StyleGAN2 sec. 2.2, eq. 1–3).

    s = A(w) (bias initialised to 1, official ``affine`` with ``bias_init=1``);
    w'_ijk = s_i · w_ijk (eq. 1); with ``demodulate``, w''_ijk = w'_ijk / sqrt(Σ_{i,k} w'_ijk² + ε)
    (eq. 3), which makes each output feature map of a unit-variance (i.i.d.) input have unit
    variance again (eq. 2). :meth:`modulated_weight` is that definition; :meth:`forward` computes
    the same convolution without per-sample weights (the official non-fused path, which it uses
    in training): scale the input channels by s, convolve with the shared weight, scale the
    output channels by the demodulation coefficients; one ordinary batched convolution instead
    of a grouped one, several times faster on a CPU. Weights are stored N(0, 1) and scaled by 1/sqrt(fan_in)
    at run time (equalised learning rate; demodulation makes that scale irrelevant).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        w_dim: int,
        demodulate: bool = True,
        up: bool = False,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.demodulate = demodulate
        self.up = up
        self.eps = eps
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0, gain=1.0)

    def modulated_weight(self, styles: Tensor) -> Tensor:
        """Per-sample weights (B, out, in, k, k) for styles s of shape (B, in): eq. 1 (and 3)."""
        w = self.weight[None] * self.weight_scale * styles[:, None, :, None, None].to(self.weight.dtype)
        if self.demodulate:
            w = w * torch.rsqrt(w.pow(2).sum(dim=(2, 3, 4), keepdim=True) + self.eps)
        return w

    def forward(self, x: Tensor, w: Tensor, styles: Tensor | None = None) -> Tensor:
        """x (B, in, H, W), w (B, w_dim) → (B, out, H', W'); ``styles`` overrides A(w) (tests)."""
        if self.up:
            x = _upsample(x)
        styles = self.affine(w) if styles is None else styles
        styles = styles.to(x.dtype)
        weight = (self.weight * self.weight_scale).to(x.dtype)
        out = F.conv2d(x * styles[:, :, None, None], weight, padding=self.kernel_size // 2)
        if self.demodulate:
            # 1 / sqrt(sum_{i,k} (s_i w_ijk)^2 + eps) per sample and output channel j (eq. 3).
            norms = torch.einsum("bi,oi->bo", styles.float().pow(2), weight.float().pow(2).sum(dim=(2, 3)))
            out = out * torch.rsqrt(norms + self.eps).to(out.dtype)[:, :, None, None]
        return out


class StyleLayerV2(nn.Module):
    """One StyleGAN2 layer (Fig. 2c): modulated/demodulated conv3×3 [2× up] → noise → bias → lrelu·√2."""

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool, demodulate: bool
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, demodulate=demodulate, up=up)
        # One scalar strength per layer, as SynthesisLayer.noise_strength in stylegan2-ada-pytorch.
        self.noise = NoiseInput(out_channels, resolution, per_channel=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "random") -> Tensor:
        x = self.noise(self.conv(x, w), noise_mode) + self.bias.view(1, -1, 1, 1)
        return F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN


class ToRGBV2(nn.Module):
    """Modulated 1×1 conv without demodulation + bias (StyleGAN2 Fig. 7 "tRGB")."""

    def __init__(self, in_channels: int, channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        return self.conv(x, w) + self.bias.view(1, -1, 1, 1)


# ------------------------------------------------------------------------------ generator
class SynthesisNetwork(nn.Module):
    """ws (B, num_ws, w_dim) → image (B, channels, image_size, image_size), StyleGAN v1 or v2.

    Each layer reads the style index given in the module docstring; ``layer_styles`` lists,
    in order of execution, (layer name, style index) so tests and tools can see which w
    drives which layer.
    """

    def __init__(
        self,
        w_dim: int,
        image_size: int,
        channels: int,
        fmap_base: int,
        fmap_max: int,
        version: int,
        demodulate: bool = True,
    ) -> None:
        super().__init__()
        self.version = version
        self.image_size = image_size
        self.num_ws = num_styles(image_size)
        resolutions = [2**k for k in range(2, int(math.log2(image_size)) + 1)]
        width = {r: feature_channels(r, fmap_base, fmap_max) for r in resolutions}
        # The learned constant input: ones in StyleGAN (app. C), N(0, 1) in StyleGAN2's official code.
        const = torch.ones(1, width[4], 4, 4) if version == 1 else torch.randn(1, width[4], 4, 4)
        self.const = nn.Parameter(const)
        self.layers = nn.ModuleDict()
        self.to_rgb = nn.ModuleDict()
        self.layer_styles: list[tuple[str, int]] = []
        for r in resolutions:
            l2 = int(math.log2(r))
            in_ch = width[r // 2] if r > 4 else width[4]
            if version == 1:
                self.layers[f"b{r}_conv0"] = StyleLayerV1(in_ch, width[r], w_dim, r, conv=r > 4, up=r > 4)
                self.layers[f"b{r}_conv1"] = StyleLayerV1(width[r], width[r], w_dim, r, conv=True, up=False)
                self.layer_styles += [(f"b{r}_conv0", 2 * l2 - 4), (f"b{r}_conv1", 2 * l2 - 3)]
            else:
                if r > 4:
                    self.layers[f"b{r}_conv0"] = StyleLayerV2(
                        in_ch, width[r], w_dim, r, up=True, demodulate=demodulate
                    )
                    self.layer_styles.append((f"b{r}_conv0", 2 * l2 - 5))
                self.layers[f"b{r}_conv1"] = StyleLayerV2(
                    width[4] if r == 4 else width[r], width[r], w_dim, r, up=False, demodulate=demodulate
                )
                self.to_rgb[f"b{r}"] = ToRGBV2(width[r], channels, w_dim)
                self.layer_styles += [(f"b{r}_conv1", 2 * l2 - 4), (f"torgb{r}", 2 * l2 - 3)]
        if version == 1:
            # v1's single output layer takes no style (StyleGAN's to-RGB is a plain 1×1 conv).
            self.output = EqualizedConv2d(width[image_size], channels, 1, gain=1.0)

    def forward(self, ws: Tensor, noise_mode: str = "random") -> Tensor:
        if noise_mode not in NOISE_MODES:
            raise ConfigError(f"noise_mode={noise_mode!r} is invalid: expected one of {list(NOISE_MODES)}")
        if ws.dim() != 3 or ws.shape[1] != self.num_ws:
            raise ValueError(f"ws must have shape (B, {self.num_ws}, w_dim), got {tuple(ws.shape)}")
        x = self.const.expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
        if self.version == 1:
            for name, index in self.layer_styles:
                x = self.layers[name](x, ws[:, index], noise_mode)
            return self.output(x)
        image = None
        for name, index in self.layer_styles:
            if name.startswith("torgb"):
                y = self.to_rgb[f"b{name[5:]}"](x, ws[:, index])
                # Skip architecture (StyleGAN2 Fig. 7b): sum of upsampled to-RGB outputs.
                image = y if image is None else _upsample(image) + y
            else:
                x = self.layers[name](x, ws[:, index], noise_mode)
        return image


class StyleGANGenerator(nn.Module):
    """The StyleGAN (``version=1``) or StyleGAN2 (``version=2``) generator.

    Args:
        latent_dim: size of z (512 in both papers).
        w_dim: size of w (512).
        image_size: output side, a power of two from 32 to 1024.
        channels: image channels.
        fmap_base, fmap_max: feature widths, ``min(fmap_base // resolution, fmap_max)``.
        version: 1 (AdaIN) or 2 (modulated convolution, skip to-RGB outputs).
        mapping_layers: depth of the mapping network (8).
        mapping_lr_multiplier: learning-rate multiplier of the mapping network (0.01).
        w_avg_beta: decay of the tracked mean ``w_avg`` (0.995).
        demodulate: v2 only: demodulate the modulated convolutions (StyleGAN2 eq. 3).

    ``forward(z, truncation_psi, truncation_cutoff, noise_mode)``: images; the split API is
    :meth:`mapping` (z → ws (B, num_ws, w_dim)) and :meth:`synthesis` (ws → images), with
    which the family mixes styles and the path-length regulariser differentiates w.r.t. ws.
    """

    def __init__(
        self,
        latent_dim: int = 512,
        w_dim: int = 512,
        image_size: int = 32,
        channels: int = 3,
        fmap_base: int = 32768,
        fmap_max: int = 512,
        version: int = 2,
        mapping_layers: int = 8,
        mapping_lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.995,
        demodulate: bool = True,
    ) -> None:
        super().__init__()
        owner = "StyleGANGenerator"
        check_image_size(owner, image_size, smallest=MIN_IMAGE_SIZE, largest=MAX_IMAGE_SIZE)
        check_positive_int(owner, "channels", channels)
        check_positive_int(owner, "fmap_base", fmap_base)
        check_positive_int(owner, "fmap_max", fmap_max)
        if version not in VERSIONS or isinstance(version, bool):
            raise ConfigError(f"{owner}: version={version!r} is invalid: expected one of {list(VERSIONS)}.")
        self.latent_dim = latent_dim
        self.w_dim = w_dim
        self.version = version
        self.output_shape: tuple[int, ...] = (channels, image_size, image_size)
        self.mapping_network = MappingNetwork(
            latent_dim, w_dim, mapping_layers, mapping_lr_multiplier, w_avg_beta
        )
        self.synthesis_network = SynthesisNetwork(
            w_dim, image_size, channels, fmap_base, fmap_max, version, demodulate
        )
        self.num_ws = self.synthesis_network.num_ws

    @property
    def w_avg(self) -> Tensor:
        """The tracked mean of w, the centre of the truncation trick."""
        return self.mapping_network.w_avg

    def mapping(
        self,
        z: Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool | None = None,
    ) -> Tensor:
        """z (B, latent_dim) → ws (B, num_ws, w_dim): one w broadcast to every layer, truncated."""
        w = self.mapping_network(z, update_w_avg=update_w_avg)
        ws = w[:, None, :].expand(-1, self.num_ws, -1)
        return truncate(ws, self.w_avg, truncation_psi, truncation_cutoff)

    def synthesis(self, ws: Tensor, noise_mode: str = "random") -> Tensor:
        """ws (B, num_ws, w_dim) → images (B, channels, image_size, image_size)."""
        return self.synthesis_network(ws, noise_mode)

    def forward(
        self,
        z: Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "random",
    ) -> Tensor:
        return self.synthesis(self.mapping(z, truncation_psi, truncation_cutoff), noise_mode)


# -------------------------------------------------------------------------- discriminator
class DiscriminatorBlock(nn.Module):
    """StyleGAN2 residual D block (Fig. 7c): (conv3×3 → conv3×3 ↓) + (1×1 conv ↓, no bias), ×1/√2."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = EqualizedConv2d(in_channels, in_channels, 3, padding=1)
        self.conv1 = EqualizedConv2d(in_channels, out_channels, 3, padding=1)
        self.skip = EqualizedConv2d(in_channels, out_channels, 1, bias=False, gain=1.0)

    def forward(self, x: Tensor) -> Tensor:
        y = _downsample(self.skip(x))
        x = F.leaky_relu(self.conv0(x), LRELU_SLOPE)
        x = F.leaky_relu(self.conv1(_downsample(x)), LRELU_SLOPE)
        # 1/sqrt(2) keeps the sum of two unit-variance branches at unit variance (official ``gain``).
        return (x + y) * (1.0 / math.sqrt(2.0))


class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2's residual discriminator with minibatch standard deviation (Karras et al. 2020,
    Fig. 7c and app. B; the epilogue of Karras et al. 2018, sec. 3).

    Args:
        image_size: input side, a power of two from 32 to 1024.
        channels: image channels.
        fmap_base, fmap_max: widths, ``min(fmap_base // resolution, fmap_max)``.
        mbstd_group_size: samples per minibatch-stddev group (4).
        mbstd_num_channels: feature maps the minibatch stddev appends (1).
    """

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        fmap_base: int = 32768,
        fmap_max: int = 512,
        mbstd_group_size: int = 4,
        mbstd_num_channels: int = 1,
    ) -> None:
        super().__init__()
        owner = "StyleGAN2Discriminator"
        check_image_size(owner, image_size, smallest=MIN_IMAGE_SIZE, largest=MAX_IMAGE_SIZE)
        check_positive_int(owner, "channels", channels)
        check_positive_int(owner, "fmap_base", fmap_base)
        check_positive_int(owner, "fmap_max", fmap_max)
        self.input_shape: tuple[int, ...] = (channels, image_size, image_size)
        resolutions = [2**k for k in range(int(math.log2(image_size)), 2, -1)]  # image_size … 8
        width = {r: feature_channels(r, fmap_base, fmap_max) for r in [*resolutions, 4]}
        self.from_rgb = EqualizedConv2d(channels, width[image_size], 1)
        self.blocks = nn.Sequential(*(DiscriminatorBlock(width[r], width[r // 2]) for r in resolutions))
        self.mbstd = MinibatchStdDev(mbstd_group_size, mbstd_num_channels)
        c4 = width[4]
        self.conv = EqualizedConv2d(c4 + mbstd_num_channels, c4, 3, padding=1)
        self.fc = EqualizedLinear(c4 * 16, c4)
        self.out = EqualizedLinear(c4, 1, gain=1.0)

    def forward(self, x: Tensor) -> Tensor:
        x = F.leaky_relu(self.from_rgb(x), LRELU_SLOPE)
        x = self.blocks(x)
        x = F.leaky_relu(self.conv(self.mbstd(x)), LRELU_SLOPE)
        x = F.leaky_relu(self.fc(x.flatten(1)), LRELU_SLOPE)
        return self.out(x).squeeze(1)
