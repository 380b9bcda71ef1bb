"""The U-Net generator of pix2pix (Isola et al. 2017, arXiv:1611.07004, sec. 3.2.1 and
appendix 6.1.1): an encoder-decoder whose layer i is skip-connected to layer n - i.

Layer for layer, parameter for parameter, the ``UnetGenerator`` and ``UnetSkipConnectionBlock``
of the authors' released code (junyanz/pytorch-CycleGAN-and-pix2pix, models/networks.py), so its
published parameter count holds (unet_256 with ngf=64, 3 -> 3 channels, batch norm: 54,413,955)
and its state dicts load (keys ``model.model.0.weight``, ``model.model.1.model.1.weight``, ...).

The network is built from the inside out as nested blocks. Every block but the outermost
returns ``cat([x, up(sub(down(x)))])``, doubling the channels its parent's up-convolution sees:

- down: LeakyReLU(0.2) -> Conv 4x4 stride 2 -> norm (no activation on the outermost block's
  input, no norm on the innermost's 1x1 bottleneck);
- up: ReLU -> ConvTranspose 4x4 stride 2 -> norm (outermost: -> tanh, with a bias, no norm);
- dropout 0.5 after the up path of the ``num_downs - 5`` 8*ngf blocks between the innermost
  block and the three fixed ones (the paper's "dropout in the first layers of the decoder",
  which pix2pix keeps on at test time as its only noise; here it follows train/eval mode).

Widths: ngf, 2ngf, 4ngf, then 8ngf for every further level (encoder C64-C128-C256-C512-C512-...).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.networks.patchgan import NORMS, norm_layer, translation_weights_init
from gan_research.utils.validation import check_positive_int

# The reference's fixed levels: outermost (ngf), 2ngf, 4ngf, 8ngf, and the innermost 8ngf block.
MIN_NUM_DOWNS = 5


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: ``x -> cat([x, up(submodule(down(x)))])`` (outermost: no concatenation).

    The reference's block of the same name, with the same ``model`` Sequential so state-dict
    keys agree. ``outer_channels`` is what the level receives from / returns to its parent
    (before the skip concatenation), ``inner_channels`` what its down-convolution produces.
    """

    def __init__(
        self,
        outer_channels: int,
        inner_channels: int,
        input_channels: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        norm: str = "batch",
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        # Convolutions followed by batch norm drop their bias (the norm's shift replaces it);
        # the reference keeps it before instance norm, which has no affine parameters.
        use_bias = norm != "batch"
        if input_channels is None:
            input_channels = outer_channels
        downconv = nn.Conv2d(input_channels, inner_channels, 4, 2, 1, bias=use_bias)
        # In place, as the reference: this LeakyReLU overwrites the block's input x, so the skip
        # connection cat([x, ...]) carries the activated features. Out of place would change the
        # function the reference's weights compute.
        downrelu = nn.LeakyReLU(0.2, True)
        uprelu = nn.ReLU(True)
        layers: list[nn.Module]
        if outermost:
            if submodule is None:
                raise ConfigError("UnetSkipConnectionBlock: the outermost block needs a submodule.")
            upconv = nn.ConvTranspose2d(inner_channels * 2, outer_channels, 4, 2, 1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_channels, outer_channels, 4, 2, 1, bias=use_bias)
            layers = [downrelu, downconv, uprelu, upconv, norm_layer(norm, outer_channels)]
        else:
            if submodule is None:
                raise ConfigError("UnetSkipConnectionBlock: an intermediate block needs a submodule.")
            upconv = nn.ConvTranspose2d(inner_channels * 2, outer_channels, 4, 2, 1, bias=use_bias)
            layers = [
                downrelu,
                downconv,
                norm_layer(norm, inner_channels),
                submodule,
                uprelu,
                upconv,
                norm_layer(norm, outer_channels),
            ]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Outermost: the output image; otherwise the input and the level's output, channel-stacked."""
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UNetGenerator(nn.Module):
    """pix2pix's U-Net: (B, input_channels, S, S) -> tanh image (B, output_channels, S, S).

    Args:
        input_channels: channels of the source image (domain A).
        output_channels: channels of the translated image (domain B).
        num_downs: stride-2 downsamplings; the bottleneck is S / 2**num_downs pixels wide
            (unet_256: 8, unet_128: 7; at least 5, the reference's fixed levels).
        ngf: filters of the outermost level (64); deeper levels use 2, 4 and 8 times as many.
        norm: ``batch`` (pix2pix), ``instance`` or ``none``.
        use_dropout: dropout 0.5 in the decoder's 8*ngf levels below the bottleneck (pix2pix:
            on; the reference's ``--no_dropout`` turns it off).
        image_size: side S of the images; must be divisible by 2**num_downs.

    With ``norm="none"`` the convolutions keep their biases (the reference drops them there
    too, leaving the network bias-free; the two agree for ``batch`` and ``instance``).
    """

    def __init__(
        self,
        input_channels: int = 3,
        output_channels: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        norm: str = "batch",
        use_dropout: bool = True,
        image_size: int = 256,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        check_positive_int(owner, "input_channels", input_channels)
        check_positive_int(owner, "output_channels", output_channels)
        check_positive_int(owner, "num_downs", num_downs)
        check_positive_int(owner, "ngf", ngf)
        check_positive_int(owner, "image_size", image_size)
        if norm not in NORMS:
            raise ConfigError(f"{owner}: unknown norm={norm!r}; valid choices: {', '.join(NORMS)}.")
        if num_downs < MIN_NUM_DOWNS:
            raise ConfigError(
                f"{owner}: num_downs={num_downs} is below {MIN_NUM_DOWNS}, the reference U-Net's fixed "
                f"levels; use num_downs >= {MIN_NUM_DOWNS} (unet_128: 7, unet_256: 8)."
            )
        if image_size % 2**num_downs:
            allowed = _max_num_downs(image_size)
            fix = f"num_downs <= {allowed} or " if allowed >= MIN_NUM_DOWNS else ""
            raise ConfigError(
                f"{owner}: image_size={image_size} is not divisible by 2**num_downs={2**num_downs} "
                f"(num_downs={num_downs}); use {fix}an image size that is a multiple of {2**num_downs}."
            )
        self.input_shape: tuple[int, ...] = (input_channels, image_size, image_size)
        self.output_shape: tuple[int, ...] = (output_channels, image_size, image_size)

        # Built from the bottleneck outwards, exactly as the reference.
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, norm=norm, innermost=True)
        for _ in range(num_downs - MIN_NUM_DOWNS):
            block = UnetSkipConnectionBlock(
                ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout
            )
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(
            output_channels, ngf, input_channels=input_channels, submodule=block, outermost=True, norm=norm
        )
        self.apply(translation_weights_init)

    def forward(self, x: Tensor) -> Tensor:
        """The translated image in [-1, 1]."""
        return self.model(x)


def _max_num_downs(image_size: int) -> int:
    """The largest number of halvings ``image_size`` allows (its power-of-two factor)."""
    return (image_size & -image_size).bit_length() - 1
