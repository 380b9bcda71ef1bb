"""MSG-GAN's networks: a generator that emits an image at every resolution and a discriminator
that reads them all.

Karnewar & Wang 2020, "MSG-GAN: Multi-Scale Gradients for Generative Adversarial Networks"
(CVPR 2020, arXiv:1903.06048), sec. 3 and Fig. 2, on the ProGAN base the paper calls
MSG-ProGAN: the blocks are ProGAN's (Karras et al. 2018, table 2), built from our ProGAN layers
(:mod:`gan_research.networks.progan_layers`: equalised learning rate, pixel norm, minibatch
stddev), and nothing grows: every block trains from the first step.

- G (sec. 3, ``a_i = g_i(a_{i-1})``, ``o_i = r_i(a_i)``): after every block a 1x1 to-RGB ``r_i``
  turns the block's features into the image at that resolution, so the gradients of D reach
  every block directly instead of only through the blocks above it.
- D: the highest-resolution image enters through from-RGB; at every lower resolution the image
  of that scale is merged into D's features by a combine function ``phi`` (sec. 3, Fig. 2), one
  of ``simple`` ([features; image]), ``lin_cat`` ([features; r'(image)]) or ``cat_lin``
  (r'([features; image])), ``r'`` a 1x1 convolution (see :class:`ScaleCombine`).
- The real images' pyramid is made by average pooling (:func:`image_pyramid`), as the reference
  code does (akanimax/BMSG-GAN, ``sourcecode/MSG_GAN/GAN.py``, ``MSG_GAN.train``:
  ``avg_pool2d(images, 2**i)``).

Reference code: akanimax/BMSG-GAN (``sourcecode/MSG_GAN/GAN.py``, ``CustomLayers.py``: the
authors' PyTorch MSG-ProGAN, whose discriminator uses ``lin_cat``) and akanimax/msg-stylegan-tf
(``training/networks_stylegan.py``, ``D_basic``: MSG-StyleGAN's discriminator, which uses
``cat_lin``). With ``combine="lin_cat"`` our D has the BMSG-GAN discriminator's layer shapes and
parameter count: BMSG-GAN's ``Discriminator(depth, feature_size=F)`` is ours with
``image_size = 4 * 2**(depth - 1)``, ``fmap_base = 16 * F`` and ``fmap_max = F`` (and likewise
for its ``Generator(depth, latent_size=F)``, whose widths are ProGAN's).

Where we follow ProGAN's official code (tkarras/progressive_growing_of_gans, ``networks.py``)
rather than BMSG-GAN, and why:

- pixel norm on z and after every 3x3 conv of G (BMSG-GAN's first block normalises only once, at
  its end, and leaves z as drawn): the ProGAN recipe the paper builds on;
- the dense 4x4 input layer has ProGAN's gain sqrt(2)/4 (BMSG-GAN's 4x4 transposed conv uses
  sqrt(2) with the same fan-in), with one bias per channel like both;
- to-RGB and D's final linear layer have gain 1 (BMSG-GAN: sqrt(2)), ProGAN's convention for
  layers followed by no non-linearity;
- D's from-RGB of the highest scale is followed by a LeakyReLU (ProGAN and MSG-StyleGAN;
  BMSG-GAN's is linear, which makes it and the first 3x3 conv one linear map);
- minibatch stddev over groups of ``mbstd_group_size`` samples (ProGAN's official layer;
  BMSG-GAN takes one standard deviation over the whole batch).

G's output is linear (no tanh), as in both reference codes (``to_rgb`` is a bare 1x1 conv; the
BMSG-GAN samples are shown as ``x / 2 + 0.5``, i.e. trained on data in [-1, 1], ours too);
``tanh=True`` squashes every scale instead.

Scale atlas: the framework's shared GAN step (instance noise, label flips, gradient-penalty
interpolation, R1) acts on one tensor per batch. :func:`pack_scales` lays a pyramid out as one
image, a mip-map: the full-resolution image on the left, the lower scales stacked top-down in a
column of half its width on the right, the rest zero; :func:`unpack_scales` slices it back.
Elementwise operations on the atlas are the same operations on every scale, and an R1 penalty on
the atlas, ``|dD/d atlas|^2``, is the sum of the per-scale penalties, because the atlas holds
each scale's pixels once and its unused area does not reach D.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.networks.progan import feature_maps
from gan_research.networks.progan_layers import (
    HE_GAIN,
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
    PixelNorm,
)
from gan_research.utils.validation import check_fraction, check_image_size, check_positive_int

__all__ = [
    "COMBINE_FUNCTIONS",
    "MSGGANDiscriminator",
    "MSGGANGenerator",
    "ScaleCombine",
    "check_combine",
    "image_pyramid",
    "pack_scales",
    "unpack_scales",
]

COMBINE_FUNCTIONS: tuple[str, ...] = ("simple", "lin_cat", "cat_lin")
"""The combine functions ``phi`` of the paper (sec. 3, Fig. 2), see :class:`ScaleCombine`."""

# The first block of G makes a 4x4 map, as in ProGAN; the smallest image has one block above it,
# so that there is a lower scale to combine (image_size = 4 * 2**k, k >= 1).
_BASE_SIDE = 4
_SMALLEST_IMAGE = 2 * _BASE_SIDE


# -- layers -------------------------------------------------------------------------------------
def _conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    equalized_lr: bool,
    padding: int = 0,
    gain: float = HE_GAIN,
) -> nn.Module:
    """A conv with the equalised learning rate (ProGAN sec. 4.1) or, without it, torch's own with
    its default initialisation, as the reference's ``use_eql=False`` path (``CustomLayers.py``)."""
    if equalized_lr:
        return EqualizedConv2d(in_channels, out_channels, kernel_size, padding=padding, gain=gain)
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding)


def _linear(
    in_features: int, out_features: int, equalized_lr: bool, gain: float, bias: bool = True
) -> nn.Module:
    if equalized_lr:
        return EqualizedLinear(in_features, out_features, bias=bias, gain=gain)
    return nn.Linear(in_features, out_features, bias=bias)


class _LatentTo4x4(nn.Module):
    """z → a 4x4 map: a dense layer to ``16 * channels`` and one bias per channel.

    ProGAN's official first layer (``G_paper``: ``dense(gain=sqrt(2)/4)``, reshape, ``apply_bias``
    per channel); BMSG-GAN's 4x4 transposed conv of z seen as a 1x1 map (``GenInitialBlock``) is
    the same map with the same parameter count. The gain is ProGAN's: the fan-in of each output
    pixel is ``latent_dim``, not ``16 * latent_dim``.
    """

    def __init__(self, latent_dim: int, channels: int, equalized_lr: bool) -> None:
        super().__init__()
        self.channels = channels
        self.dense = _linear(latent_dim, channels * _BASE_SIDE**2, equalized_lr, HE_GAIN / 4, bias=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, z: Tensor) -> Tensor:
        h = self.dense(z).view(z.shape[0], self.channels, _BASE_SIDE, _BASE_SIDE)
        return h + self.bias.view(1, -1, 1, 1)


class ScaleCombine(nn.Module):
    """A combine function ``phi`` of MSG-GAN's discriminator (Karnewar & Wang 2020, sec. 3, Fig. 2).

    Merges D's features ``o`` at one resolution with the image ``x`` of that scale:

    - ``simple``: ``[o; x]``, the image's channels concatenated to the features;
    - ``lin_cat``: ``[o; r'(x)]``, a 1x1 conv of the image first (BMSG-GAN's
      ``rgb_to_features`` + ``th.cat``, ``GAN.py``);
    - ``cat_lin``: ``r'([o; x])``, a 1x1 conv of the concatenation (MSG-StyleGAN's ``combine``,
      ``networks_stylegan.py``).

    ``r'`` is linear (no activation), as in both reference codes. BMSG-GAN puts the image part
    before the features; the order only permutes the channels the next conv reads.

    Args:
        kind: one of :data:`COMBINE_FUNCTIONS`.
        feature_channels: channels of ``o``.
        image_channels: channels of ``x``.
        projected_channels: output channels of ``r'`` (unused by ``simple``).
        equalized_lr: ``r'`` with the equalised learning rate.

    ``out_channels`` is what the combined map has: ``feature + image`` channels (``simple``),
    ``feature + projected`` (``lin_cat``) or ``projected`` (``cat_lin``).
    """

    def __init__(
        self,
        kind: str,
        feature_channels: int,
        image_channels: int,
        projected_channels: int,
        equalized_lr: bool = True,
    ) -> None:
        super().__init__()
        self.kind = check_combine("ScaleCombine", kind)
        self.proj: nn.Module | None
        if kind == "simple":
            self.proj = None
            self.out_channels = feature_channels + image_channels
        elif kind == "lin_cat":
            self.proj = _conv(image_channels, projected_channels, 1, equalized_lr)
            self.out_channels = feature_channels + projected_channels
        else:
            self.proj = _conv(feature_channels + image_channels, projected_channels, 1, equalized_lr)
            self.out_channels = projected_channels

    def forward(self, features: Tensor, image: Tensor) -> Tensor:
        if self.kind == "simple":
            return torch.cat([features, image], dim=1)
        assert self.proj is not None
        if self.kind == "lin_cat":
            return torch.cat([features, self.proj(image)], dim=1)
        return self.proj(torch.cat([features, image], dim=1))

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, out_channels={self.out_channels}"


def check_combine(owner: str, combine: object) -> str:
    """Return ``combine`` if it names a combine function, else raise ConfigError listing them."""
    if not isinstance(combine, str) or combine not in COMBINE_FUNCTIONS:
        raise ConfigError(
            f"{owner}: unknown combine={combine!r}; valid choices (Karnewar & Wang 2020, sec. 3): "
            f"{', '.join(COMBINE_FUNCTIONS)}."
        )
    return combine


def _pyramid_sides(owner: str, image_size: object) -> tuple[int, ...]:
    """(4, 8, ..., image_size) for an image_size of 4 * 2**k, k >= 1; ConfigError otherwise."""
    size = check_image_size(owner, image_size, smallest=_SMALLEST_IMAGE)
    return tuple(_BASE_SIDE * 2**s for s in range(int(math.log2(size // _BASE_SIDE)) + 1))


# -- the generator ------------------------------------------------------------------------------
class MSGGANGenerator(nn.Module):
    """MSG-ProGAN's generator (Karnewar & Wang 2020, sec. 3, Fig. 2; BMSG-GAN ``GAN.py``, ``Generator``).

    z (pixel-normalised) → [dense to 4x4 → conv 3x3] → [upsample 2x (nearest) → conv 3x3 →
    conv 3x3] per further resolution, LeakyReLU and pixel norm after every conv (ProGAN table 2),
    and a linear 1x1 to-RGB after every block: block ``s`` gives the image of side ``4 * 2**s``.

    ``forward_scales(z)`` returns all of them, lowest resolution first, as D reads them;
    ``forward(z)`` only the last, so samplers and metrics see an ordinary generator.

    Args:
        latent_dim: size of z (512 in the paper).
        image_size: the final side, 4 * 2**k with k >= 1 (8, 16, 32, ...).
        channels: image channels.
        fmap_base, fmap_max: channels of the blocks at each resolution, ProGAN's
            ``min(fmap_base / 2**(log2(res) - 1), fmap_max)`` (``progan.feature_maps``);
            ``fmap_max`` is the size knob (``model.width``).
        leaky_slope: LeakyReLU slope (0.2).
        pixel_norm: pixel norm on z and after every conv (ProGAN sec. 4.2).
        equalized_lr: equalised learning rate in every layer (ProGAN sec. 4.1).
        tanh: squash every scale with tanh; the paper's G is linear (False).
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
        equalized_lr: bool = True,
        tanh: bool = False,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.scales = _pyramid_sides(owner, image_size)
        self.latent_dim = check_positive_int(owner, "latent_dim", latent_dim)
        self.channels = check_positive_int(owner, "channels", channels)
        check_positive_int(owner, "fmap_base", fmap_base)
        check_positive_int(owner, "fmap_max", fmap_max)
        slope = check_fraction(owner, "leaky_slope", leaky_slope)
        self.image_size = image_size
        self.output_shape = (channels, image_size, image_size)
        self.tanh = tanh
        nf = [feature_maps(side, fmap_base, fmap_max) for side in self.scales]

        def norm() -> nn.Module:
            return PixelNorm() if pixel_norm else nn.Identity()

        def conv3x3(cin: int, cout: int) -> nn.Module:
            return _conv(cin, cout, 3, equalized_lr, padding=1)

        self.normalize_latent = norm()
        # blocks[s] is g_s of sec. 3: features of stage s-1 (z for s = 0) → features of stage s.
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(
                    _LatentTo4x4(latent_dim, nf[0], equalized_lr),
                    nn.LeakyReLU(slope),
                    norm(),
                    conv3x3(nf[0], nf[0]),
                    nn.LeakyReLU(slope),
                    norm(),
                )
            ]
        )
        for s in range(1, len(self.scales)):
            self.blocks.append(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    conv3x3(nf[s - 1], nf[s]),
                    nn.LeakyReLU(slope),
                    norm(),
                    conv3x3(nf[s], nf[s]),
                    nn.LeakyReLU(slope),
                    norm(),
                )
            )
        # to_rgb[s] is r_s of sec. 3; gain 1: no non-linearity follows (ProGAN's convention).
        self.to_rgb = nn.ModuleList([_conv(n, channels, 1, equalized_lr, gain=1.0) for n in nf])

    def forward_scales(self, z: Tensor) -> list[Tensor]:
        """Images of sides ``self.scales`` (4, 8, ..., image_size), lowest resolution first."""
        h = self.normalize_latent(z)
        outputs = []
        for block, to_rgb in zip(self.blocks, self.to_rgb, strict=True):
            h = block(h)
            image = to_rgb(h)
            outputs.append(torch.tanh(image) if self.tanh else image)
        return outputs

    def forward(self, z: Tensor) -> Tensor:
        """The full-resolution image (B, channels, image_size, image_size)."""
        return self.forward_scales(z)[-1]


# -- the discriminator --------------------------------------------------------------------------
class MSGGANDiscriminator(nn.Module):
    """MSG-ProGAN's discriminator (Karnewar & Wang 2020, sec. 3, Fig. 2; BMSG-GAN ``GAN.py``,
    ``Discriminator``; ``CustomLayers.py``, ``DisGeneralConvBlock`` and ``DisFinalBlock``).

    The full-resolution image → from-RGB (1x1 conv, LeakyReLU) → block; then, at every lower
    resolution, the image of that scale is combined with the features (:class:`ScaleCombine`)
    and, above 4x4, another block follows. A block is conv 3x3 → conv 3x3 → avgpool 2x with
    LeakyReLU after each conv; the final block at 4x4 is minibatch stddev → conv 3x3 → conv 4x4
    → linear score, as in ProGAN.

    Widths: stage ``s`` (side ``4 * 2**s``) has ProGAN's ``nf[s]`` channels (``fmap_base``,
    ``fmap_max``); what a block passes down and what ``phi`` adds follow the reference codes:

    - ``lin_cat`` (BMSG-GAN): the features passed down have ``nf[s] // 2`` channels and ``r'``
      makes the other ``nf[s] - nf[s] // 2`` from the image, so the block reads ``nf[s]``;
    - ``cat_lin`` (MSG-StyleGAN): ``nf[s]`` feature channels, ``r'`` maps ``nf[s] + C`` to
      ``nf[s]``;
    - ``simple``: ``nf[s]`` feature channels and the image's ``C``: the block reads ``nf[s] + C``.

    Every block's first conv maps what it reads to ``nf[s]``, its second to the channels passed
    down. ``forward`` takes the scales lowest first (as :meth:`MSGGANGenerator.forward_scales`
    returns them), a single full-resolution image (then the pyramid is made by
    :func:`image_pyramid`, the reference's real pyramid), or a scale atlas (:func:`pack_scales`).

    Args:
        image_size, channels, fmap_base, fmap_max, leaky_slope, equalized_lr: as for the generator.
        combine: the combine function, one of :data:`COMBINE_FUNCTIONS`.
        mbstd_group_size: minibatch-stddev group size (4, ProGAN's official code).
    """

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        fmap_base: int = 8192,
        fmap_max: int = 512,
        combine: str = "cat_lin",
        mbstd_group_size: int = 4,
        leaky_slope: float = 0.2,
        equalized_lr: bool = True,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.scales = _pyramid_sides(owner, image_size)
        self.channels = check_positive_int(owner, "channels", channels)
        check_positive_int(owner, "fmap_base", fmap_base)
        check_positive_int(owner, "fmap_max", fmap_max)
        self.combine = check_combine(owner, combine)
        slope = check_fraction(owner, "leaky_slope", leaky_slope)
        self.image_size = image_size
        self.input_shape = (channels, image_size, image_size)
        nf = [feature_maps(side, fmap_base, fmap_max) for side in self.scales]
        top = len(self.scales) - 1

        def passed_down(s: int) -> int:
            """Feature channels arriving at stage s from the block above."""
            # max(1, ...): at width 1 lin_cat still passes one feature channel down.
            return max(1, nf[s] // 2) if combine == "lin_cat" else nf[s]

        def conv3x3(cin: int, cout: int) -> nn.Module:
            return _conv(cin, cout, 3, equalized_lr, padding=1)

        self.from_rgb = nn.Sequential(_conv(channels, nf[top], 1, equalized_lr), nn.LeakyReLU(slope))
        # combines[s] merges the scale-s image into the features arriving at stage s (s < top).
        self.combines = nn.ModuleList(
            [
                ScaleCombine(
                    combine,
                    passed_down(s),
                    channels,
                    # lin_cat: r' fills the width up to nf[s]; cat_lin: r' gives the width.
                    max(1, nf[s] - passed_down(s)) if combine == "lin_cat" else nf[s],
                    equalized_lr,
                )
                for s in range(top)
            ]
        )
        reads = [c.out_channels for c in self.combines] + [nf[top]]
        # blocks[s] maps stage-s features to stage s-1 (blocks[0] is unused: the output block).
        self.blocks = nn.ModuleList([nn.Identity()])
        for s in range(1, top + 1):
            self.blocks.append(
                nn.Sequential(
                    conv3x3(reads[s], nf[s]),
                    nn.LeakyReLU(slope),
                    conv3x3(nf[s], passed_down(s - 1)),
                    nn.LeakyReLU(slope),
                    nn.AvgPool2d(2),
                )
            )
        self.output_block = nn.Sequential(
            MinibatchStdDev(mbstd_group_size, 1),
            conv3x3(reads[0] + 1, nf[0]),
            nn.LeakyReLU(slope),
            _conv(nf[0], nf[0], _BASE_SIDE, equalized_lr),
            nn.LeakyReLU(slope),
            nn.Flatten(),
            _linear(nf[0], 1, equalized_lr, gain=1.0),
        )

    def forward(self, scales: Sequence[Tensor] | Tensor) -> Tensor:
        """Scores of shape (B,) for a pyramid (lowest resolution first), a full-resolution image
        or a scale atlas."""
        images = self._as_scales(scales)
        top = len(self.scales) - 1
        h = self.blocks[top](self.from_rgb(images[top]))
        for s in range(top - 1, -1, -1):
            h = self.combines[s](h, images[s])
            if s > 0:
                h = self.blocks[s](h)
        return self.output_block(h).squeeze(1)

    def _as_scales(self, scales: Sequence[Tensor] | Tensor) -> list[Tensor]:
        side = self.image_size
        if isinstance(scales, Tensor):
            if tuple(scales.shape[-2:]) == (side, side):
                return image_pyramid(scales, self.scales)
            if tuple(scales.shape[-2:]) == _atlas_size(side):
                return unpack_scales(scales, self.scales)
            raise ValueError(
                f"MSGGANDiscriminator reads {side}x{side} images or {_atlas_size(side)} scale atlases, "
                f"got a tensor of shape {tuple(scales.shape)}"
            )
        images = list(scales)
        got = [tuple(x.shape[-3:]) for x in images]
        expected = [(self.channels, s, s) for s in self.scales]
        if got != expected:
            raise ValueError(
                f"MSGGANDiscriminator reads {len(expected)} scales (C, H, W) {expected}, lowest first; "
                f"got {got}"
            )
        return images


# -- pyramids and the scale atlas ---------------------------------------------------------------
def image_pyramid(x: Tensor, scales: Sequence[int]) -> list[Tensor]:
    """``x`` average-pooled to each side in ``scales`` (in the order given).

    The reference's real pyramid (BMSG-GAN ``GAN.py``, ``MSG_GAN.train``): ``avg_pool2d`` by the
    factor between the sides, so every pixel of a lower scale is the mean of the block of
    full-resolution pixels it covers. A side equal to ``x``'s returns ``x`` itself.
    """
    side = x.shape[-1]
    if x.shape[-2] != side:
        raise ValueError(f"image_pyramid needs square images, got shape {tuple(x.shape)}")
    pyramid = []
    for s in scales:
        if not 1 <= s <= side or side % s:
            raise ValueError(f"image_pyramid: side {s} does not divide the image side {side}")
        pyramid.append(x if s == side else F.avg_pool2d(x, side // s))
    return pyramid


def _check_sides(sides: Sequence[int]) -> None:
    if not sides or any(b != 2 * a for a, b in itertools.pairwise(sides)):
        raise ValueError(f"scales must be sides doubling from the lowest to the highest, got {list(sides)}")


def _atlas_size(side: int) -> tuple[int, int]:
    """(H, W) of the atlas of a pyramid whose highest scale has ``side``: side x (side + side/2)."""
    return side, side + side // 2


def _atlas_layout(sides: Sequence[int]) -> list[tuple[int, int]]:
    """(top, left) of each scale in the atlas, for ``sides`` lowest first.

    The highest scale at (0, 0); the lower ones in a column from x = side, the next lower (side/2)
    at the top and each smaller one below it. The heights side/2 + side/4 + ... stay under side,
    so the column fits.
    """
    side = sides[-1]
    positions = [(0, 0)]
    row = 0
    for s in reversed(sides[:-1]):
        positions.append((row, side))
        row += s
    return positions[::-1]


def pack_scales(scales: Sequence[Tensor]) -> Tensor:
    """One tensor (B, C, H, W + W/2) holding a pyramid (lowest resolution first): a mip-map.

    The full-resolution image fills the left H x W; the lower scales are stacked top-down, the
    largest first, in the column of width W/2 on its right; the rest is zero. Built from slices
    of a zero tensor, so the gradient of each scale is the atlas gradient's slice, exactly.
    """
    sides = [int(x.shape[-1]) for x in scales]
    _check_sides(sides)
    full = scales[-1]
    for x, s in zip(scales, sides, strict=True):
        if tuple(x.shape[-2:]) != (s, s) or x.shape[:-2] != full.shape[:-2]:
            raise ValueError(
                f"pack_scales: scales must be square with the same batch and channels, got "
                f"{[tuple(x.shape) for x in scales]}"
            )
    atlas = full.new_zeros(*full.shape[:-2], *_atlas_size(sides[-1]))
    for x, s, (top, left) in zip(scales, sides, _atlas_layout(sides), strict=True):
        atlas[..., top : top + s, left : left + s] = x
    return atlas


def unpack_scales(atlas: Tensor, scales: Sequence[int]) -> list[Tensor]:
    """The pyramid (lowest resolution first) of sides ``scales`` held in ``atlas`` (:func:`pack_scales`).

    Views of ``atlas``: gradients with respect to them flow back into the atlas's slices.
    """
    sides = [int(s) for s in scales]
    _check_sides(sides)
    if tuple(atlas.shape[-2:]) != _atlas_size(sides[-1]):
        raise ValueError(
            f"unpack_scales: the atlas of scales {sides} is {_atlas_size(sides[-1])}, "
            f"got shape {tuple(atlas.shape)}"
        )
    return [
        atlas[..., top : top + s, left : left + s]
        for s, (top, left) in zip(sides, _atlas_layout(sides), strict=True)
    ]
