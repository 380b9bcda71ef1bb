"""Progressively grown generator and discriminator (ProGAN).

Karras, Aila, Laine & Lehtinen 2018, "Progressive Growing of GANs for Improved Quality,
Stability, and Variation" (arXiv:1710.10196), sec. 2, fig. 2 and table 2; layer for layer the
``G_paper`` / ``D_paper`` of the official code (tkarras/progressive_growing_of_gans,
``networks.py``), with every resolution block built up front.

Stages: stage ``s`` outputs (G) / reads (D) images of ``4 * 2**s`` pixels, from stage 0 (4x4)
to ``num_stages - 1`` (``image_size``). ``forward(..., stage, alpha)`` runs the blocks up to
``stage``; while a stage is faded in (``alpha < 1``) its new block is mixed with the previous
resolution (fig. 2b):

- G: ``(1 - alpha) * upsample(to_rgb[s-1](h)) + alpha * to_rgb[s](block[s](h))``;
- D (the mirror): ``(1 - alpha) * from_rgb[s-1](avgpool(x)) + alpha * block[s](from_rgb[s](x))``,
  fed to the blocks of the lower resolutions.

``stage=None`` is the last stage (full resolution). Blocks above ``stage`` are not run, so they
get no gradient and an optimiser leaves them unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_research.networks.progan_layers import (
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
    PixelNorm,
)
from gan_research.utils.validation import check_fraction, check_image_size, check_positive_int


def stage_resolution(stage: int) -> int:
    """Image size of ``stage``: 4 * 2**stage."""
    return 4 * 2**stage


def resolution_stage(resolution: int) -> int:
    """Inverse of :func:`stage_resolution`."""
    return int(math.log2(resolution)) - 2


def feature_maps(resolution: int, fmap_base: int, fmap_max: int) -> int:
    """Channels of the blocks at ``resolution``: ``min(fmap_base / 2**(log2(res) - 1), fmap_max)``
    (official ``nf(stage)`` with ``fmap_decay = 1``; 512 up to 32x32 and then halving, table 2)."""
    return max(1, min(fmap_base // 2 ** (int(math.log2(resolution)) - 1), fmap_max))


class _Growing(nn.Module):
    """What G and D share: the stage bookkeeping and the checks of ``stage`` / ``alpha``."""

    def _init_sizes(self, owner: str, image_size: int, channels: int, fmap_base: int, fmap_max: int) -> None:
        self.image_size = check_image_size(owner, image_size, smallest=4)
        self.channels = check_positive_int(owner, "channels", channels)
        check_positive_int(owner, "fmap_base", fmap_base)
        check_positive_int(owner, "fmap_max", fmap_max)
        self.num_stages = resolution_stage(image_size) + 1
        self.resolutions = [stage_resolution(s) for s in range(self.num_stages)]

    def resolve_stage(self, stage: int | None, alpha: float) -> int:
        if stage is None:
            stage = self.num_stages - 1
        if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage < self.num_stages:
            raise ValueError(
                f"{type(self).__name__}: stage must be an int in [0, {self.num_stages - 1}] "
                f"(resolutions {self.resolutions}), got {stage!r}"
            )
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"{type(self).__name__}: alpha must be in [0, 1], got {alpha!r}")
        return stage


class ProGANGenerator(_Growing):
    """ProGAN generator (Karras et al. 2018, table 2 top; official ``G_paper``).

    z (pixel-normalised, sec. 4.2) → dense to 4x4 → conv 3x3 → [upsample 2x → conv 3x3 → conv 3x3]
    per further resolution; LeakyReLU(0.2) and pixel norm after every conv; a linear 1x1
    ``to_rgb`` per resolution (gain 1). Every layer uses the equalised learning rate (sec. 4.1).

    Args:
        latent_dim: size of z (512 in the paper).
        image_size: final resolution (power of two >= 4).
        channels: image channels.
        fmap_base, fmap_max: channels per resolution, see :func:`feature_maps`.
        leaky_slope: LeakyReLU slope (0.2).
        pixel_norm: pixel norm on z and after each conv (sec. 4.2; the paper uses it).
        tanh: squash the output with tanh (the paper's G is linear: False).
    """

    def __init__(
        self,
        latent_dim: int = 512,
        image_size: int = 32,
        channels: int = 3,
        fmap_base: int = 8192,
        fmap_max: int = 512,
        leaky_slope: float = 0.2,
        pixel_norm: bool = True,
        tanh: bool = False,
    ) -> None:
        super().__init__()
        self._init_sizes("ProGANGenerator", image_size, channels, fmap_base, fmap_max)
        self.latent_dim = check_positive_int("ProGANGenerator", "latent_dim", latent_dim)
        slope = check_fraction("ProGANGenerator", "leaky_slope", leaky_slope)
        self.output_shape = (channels, image_size, image_size)
        self.tanh = tanh
        nf = [feature_maps(r, fmap_base, fmap_max) for r in self.resolutions]
        self.normalize_latent = PixelNorm() if pixel_norm else nn.Identity()

        def norm() -> nn.Module:
            return PixelNorm() if pixel_norm else nn.Identity()

        # The official dense layer of the 4x4 block has gain sqrt(2)/4: it is a 4x4 "deconvolution"
        # of a 1x1 input, whose fan-in per output pixel is latent_dim, not 16 * latent_dim.
        self.input_layer = EqualizedLinear(latent_dim, nf[0] * 16, gain=math.sqrt(2.0) / 4)
        self.input_block = nn.Sequential(
            nn.LeakyReLU(slope),
            norm(),
            EqualizedConv2d(nf[0], nf[0], 3, padding=1),
            nn.LeakyReLU(slope),
            norm(),
        )
        # blocks[s] maps the features of stage s-1 to stage s (blocks[0] is unused: the input block).
        self.blocks = nn.ModuleList([nn.Identity()])
        for s in range(1, self.num_stages):
            self.blocks.append(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    EqualizedConv2d(nf[s - 1], nf[s], 3, padding=1),
                    nn.LeakyReLU(slope),
                    norm(),
                    EqualizedConv2d(nf[s], nf[s], 3, padding=1),
                    nn.LeakyReLU(slope),
                    norm(),
                )
            )
        self.to_rgb = nn.ModuleList([EqualizedConv2d(n, channels, 1, gain=1.0) for n in nf])

    def forward(self, z: Tensor, stage: int | None = None, alpha: float = 1.0) -> Tensor:
        """Images of ``stage_resolution(stage)`` pixels (``image_size`` for ``stage=None``)."""
        stage = self.resolve_stage(stage, alpha)
        h = self.input_layer(self.normalize_latent(z)).view(z.shape[0], -1, 4, 4)
        h = self.input_block(h)
        for s in range(1, stage):
            h = self.blocks[s](h)
        if stage == 0:
            out = self.to_rgb[0](h)
        else:
            new = self.to_rgb[stage](self.blocks[stage](h))
            if alpha < 1.0:
                previous = F.interpolate(self.to_rgb[stage - 1](h), scale_factor=2, mode="nearest")
                out = torch.lerp(previous, new, alpha)
            else:
                out = new
        return torch.tanh(out) if self.tanh else out


class ProGANDiscriminator(_Growing):
    """ProGAN discriminator (Karras et al. 2018, table 2 bottom; official ``D_paper``).

    ``from_rgb`` (1x1 conv) per resolution → [conv 3x3 → conv 3x3 → avgpool 2x] per resolution
    above 4x4 → minibatch stddev (sec. 3) → conv 3x3 → conv 4x4 (a dense layer over the 4x4
    map) → linear score (gain 1). LeakyReLU(0.2), equalised learning rate, no normalisation.

    Args:
        image_size, channels, fmap_base, fmap_max, leaky_slope: as for the generator.
        mbstd_group_size: minibatch-stddev group size (4 in the paper's official code).
        mbstd_num_channels: stddev feature maps appended (1 in ProGAN).
    """

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        fmap_base: int = 8192,
        fmap_max: int = 512,
        leaky_slope: float = 0.2,
        mbstd_group_size: int = 4,
        mbstd_num_channels: int = 1,
    ) -> None:
        super().__init__()
        self._init_sizes("ProGANDiscriminator", image_size, channels, fmap_base, fmap_max)
        slope = check_fraction("ProGANDiscriminator", "leaky_slope", leaky_slope)
        self.input_shape = (channels, image_size, image_size)
        nf = [feature_maps(r, fmap_base, fmap_max) for r in self.resolutions]
        self.from_rgb = nn.ModuleList(
            [nn.Sequential(EqualizedConv2d(channels, n, 1), nn.LeakyReLU(slope)) for n in nf]
        )
        # blocks[s] maps stage-s features to stage s-1 (blocks[0] is unused: the output block).
        self.blocks = nn.ModuleList([nn.Identity()])
        for s in range(1, self.num_stages):
            self.blocks.append(
                nn.Sequential(
                    EqualizedConv2d(nf[s], nf[s], 3, padding=1),
                    nn.LeakyReLU(slope),
                    EqualizedConv2d(nf[s], nf[s - 1], 3, padding=1),
                    nn.LeakyReLU(slope),
                    nn.AvgPool2d(2),
                )
            )
        self.output_block = nn.Sequential(
            MinibatchStdDev(mbstd_group_size, mbstd_num_channels),
            EqualizedConv2d(nf[0] + mbstd_num_channels, nf[0], 3, padding=1),
            nn.LeakyReLU(slope),
            EqualizedConv2d(nf[0], nf[0], 4),
            nn.LeakyReLU(slope),
            nn.Flatten(),
            EqualizedLinear(nf[0], 1, gain=1.0),
        )

    def forward(self, x: Tensor, stage: int | None = None, alpha: float = 1.0) -> Tensor:
        """Scores of shape (B,) for images of ``stage_resolution(stage)`` pixels."""
        stage = self.resolve_stage(stage, alpha)
        expected = stage_resolution(stage)
        if x.shape[-2:] != (expected, expected):
            raise ValueError(
                f"ProGANDiscriminator at stage {stage} reads {expected}x{expected} images, "
                f"got {tuple(x.shape[-2:])}"
            )
        h = self.from_rgb[stage](x)
        if stage > 0:
            h = self.blocks[stage](h)
            if alpha < 1.0:
                previous = self.from_rgb[stage - 1](F.avg_pool2d(x, 2))
                h = torch.lerp(previous, h, alpha)
        for s in range(stage - 1, 0, -1):
            h = self.blocks[s](h)
        return self.output_block(h).squeeze(1)
