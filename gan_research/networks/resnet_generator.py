"""The ResNet generator of CycleGAN (Zhu et al. 2017, arXiv:1703.10593, sec. 4 and appendix 7.2),
after Johnson et al.'s fast style transfer network (2016, arXiv:1603.08155).

Layer for layer, parameter for parameter, the ``ResnetGenerator`` and ``ResnetBlock`` of the
authors' released code (junyanz/pytorch-CycleGAN-and-pix2pix, models/networks.py), so its
published parameter counts hold (ngf=64, 3 -> 3 channels, instance norm: 11,378,179 with 9
blocks, 7,837,699 with 6) and its state dicts load (keys ``model.1.weight``,
``model.10.conv_block.1.weight``, ..., ``model.26.weight`` for 9 blocks). In the paper's notation
c7s1-64, d128, d256, R256 x n_blocks, u128, u64, c7s1-3:

- stem: ReflectionPad2d(3) -> Conv 7x7 -> norm -> ReLU;
- two downsamplings: Conv 3x3 stride 2 -> norm -> ReLU (64 -> 128 -> 256 channels);
- ``n_blocks`` residual blocks at 4*ngf (9 at 256 px, 6 at 128 px): x + [pad, conv 3x3, norm,
  ReLU, (dropout 0.5), pad, conv 3x3, norm](x);
- two upsamplings: ConvTranspose 3x3 stride 2 (output_padding 1) -> norm -> ReLU;
- head: ReflectionPad2d(3) -> Conv 7x7 (with bias) -> tanh.
"""

from __future__ import annotations

from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.networks.patchgan import NORMS, norm_layer, translation_weights_init
from gan_research.utils.validation import check_positive_int

PADDING_TYPES = ("reflect", "replicate", "zero")
# Two stride-2 convolutions, undone exactly by two stride-2 transposed ones.
N_DOWNSAMPLING = 2


def _padding(padding_type: str) -> tuple[list[nn.Module], int]:
    """The explicit padding layer (if any) and the convolution's own padding, as the reference."""
    if padding_type == "reflect":
        return [nn.ReflectionPad2d(1)], 0
    if padding_type == "replicate":
        return [nn.ReplicationPad2d(1)], 0
    if padding_type == "zero":
        return [], 1
    raise ConfigError(f"unknown padding_type={padding_type!r}; valid choices: {', '.join(PADDING_TYPES)}.")


class ResnetBlock(nn.Module):
    """The reference's residual block: ``x + conv_block(x)`` with two 3x3 convolutions at ``dim``.

    No ReLU after the sum (as the reference and Johnson et al.); ``conv_block`` keeps the
    reference's name so state-dict keys agree.
    """

    def __init__(self, dim: int, padding_type: str, norm: str, use_dropout: bool, use_bias: bool) -> None:
        super().__init__()
        pad, p = _padding(padding_type)
        layers: list[nn.Module] = [
            *pad,
            nn.Conv2d(dim, dim, 3, padding=p, bias=use_bias),
            norm_layer(norm, dim),
            nn.ReLU(True),
        ]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        pad, p = _padding(padding_type)
        layers += [*pad, nn.Conv2d(dim, dim, 3, padding=p, bias=use_bias), norm_layer(norm, dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """The input plus the block's residual."""
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's generator: (B, input_channels, S, S) -> tanh image (B, output_channels, S, S).

    Args:
        input_channels: channels of the source domain's images.
        output_channels: channels of the target domain's images.
        ngf: filters of the stem (64); the residual blocks work at 4*ngf.
        n_blocks: residual blocks (9 for 256 px, 6 for 128 px; 0 allowed, as in the reference).
        norm: ``instance`` (CycleGAN), ``batch`` or ``none``.
        use_dropout: dropout 0.5 between each block's convolutions (CycleGAN: off).
        padding_type: padding inside the residual blocks: ``reflect`` (CycleGAN), ``replicate``
            or ``zero`` (the stem and head always reflect, as the reference).
        image_size: side S of the images; a multiple of 4 (two halvings) and at least 8 (so
            the 7x7 reflection padding and the blocks' padding fit).

    With ``norm="none"`` the convolutions keep their biases (the reference drops them there
    too, leaving the network bias-free; the two agree for ``batch`` and ``instance``).
    """

    def __init__(
        self,
        input_channels: int = 3,
        output_channels: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        norm: str = "instance",
        use_dropout: bool = False,
        padding_type: str = "reflect",
        image_size: int = 256,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        check_positive_int(owner, "input_channels", input_channels)
        check_positive_int(owner, "output_channels", output_channels)
        check_positive_int(owner, "ngf", ngf)
        check_positive_int(owner, "image_size", image_size)
        if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 0:
            raise ConfigError(f"{owner}: n_blocks must be a non-negative integer, got {n_blocks!r}.")
        if norm not in NORMS:
            raise ConfigError(f"{owner}: unknown norm={norm!r}; valid choices: {', '.join(NORMS)}.")
        if padding_type not in PADDING_TYPES:
            raise ConfigError(
                f"{owner}: unknown padding_type={padding_type!r}; valid choices: {', '.join(PADDING_TYPES)}."
            )
        factor = 2**N_DOWNSAMPLING
        if image_size % factor or image_size < 2 * factor:
            raise ConfigError(
                f"{owner}: image_size={image_size} must be a multiple of {factor} (two stride-2 "
                f"downsamplings undone by two upsamplings) and at least {2 * factor}."
            )
        self.input_shape: tuple[int, ...] = (input_channels, image_size, image_size)
        self.output_shape: tuple[int, ...] = (output_channels, image_size, image_size)

        # Convolutions followed by batch norm drop their bias (the norm's shift replaces it).
        use_bias = norm != "batch"
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_channels, ngf, 7, padding=0, bias=use_bias),
            norm_layer(norm, ngf),
            nn.ReLU(True),
        ]
        for i in range(N_DOWNSAMPLING):
            mult = 2**i
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=use_bias),
                norm_layer(norm, ngf * mult * 2),
                nn.ReLU(True),
            ]
        mult = 2**N_DOWNSAMPLING
        layers += [
            ResnetBlock(ngf * mult, padding_type, norm, use_dropout, use_bias) for _ in range(n_blocks)
        ]
        for i in range(N_DOWNSAMPLING):
            mult = 2 ** (N_DOWNSAMPLING - i)
            layers += [
                nn.ConvTranspose2d(
                    ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=use_bias
                ),
                norm_layer(norm, ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_channels, 7, padding=0), nn.Tanh()]
        # `model` as in the reference, so its state-dict keys (model.1.weight, ...) match.
        self.model = nn.Sequential(*layers)
        self.apply(translation_weights_init)

    def forward(self, x: Tensor) -> Tensor:
        """The translated image in [-1, 1]."""
        return self.model(x)
