"""SRGAN's networks (Ledig et al. 2017, "Photo-Realistic Single Image Super-Resolution Using a
Generative Adversarial Network", arXiv:1609.04802, Figure 4).

Generator (SRResNet): a 9×9 convolution with PReLU; B residual blocks (3×3 conv, BN, PReLU,
3×3 conv, BN, plus the block's input); a 3×3 convolution with BN added to the output of the
first layer (the long skip); log2(scale) upsampling blocks (3×3 conv to 4× the channels,
PixelShuffle ×2 — the sub-pixel convolution of Shi et al. 2016 — PReLU); a 9×9 output
convolution. The paper's B = 16 and 64 channels (k9n64s1, k3n64s1, k3n256s1).
Input and output are images in [-1, 1] (the framework's convention; the paper scales LR inputs
to [0, 1] and HR to [-1, 1]); the output passes a tanh, as the common ports do (e.g.
tensorlayer/srgan), so it stays in the image range. Weights keep PyTorch's default init.

Discriminator: eight 3×3 convolutions, 64 → 512 filters doubling every two layers, strides
alternating 1, 2 (k3n64s1, k3n64s2, k3n128s1, k3n128s2, … k3n512s2), batch norm on all but
the first, LeakyReLU(0.2); then dense 1024, LeakyReLU, dense 1. The paper ends with a sigmoid;
here D returns the logit, since the losses (``losses/adversarial.py``) take logits.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.networks.layers import apply_spectral_norm
from gan_research.utils.validation import check_positive_int

#: Scale factors the generator can make: one ×2 sub-pixel block per factor of 2.
SCALES = (2, 4, 8)
# The discriminator halves the image four times (its stride-2 layers).
_D_DOWNSAMPLING = 16


def check_scale(scale: object, owner: str = "model.generator") -> int:
    """The super-resolution factor, one of :data:`SCALES` (×2 sub-pixel blocks only)."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in SCALES:
        raise ConfigError(
            f"{owner}.scale={scale!r} is invalid: the generator upsamples with ×2 sub-pixel "
            f"blocks, so valid scales are {', '.join(map(str, SCALES))}"
        )
    return scale


class ResidualBlock(nn.Module):
    """conv3×3 → BN → PReLU → conv3×3 → BN, plus the input (Figure 4's residual block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class SubPixelUpsample(nn.Sequential):
    """conv3×3 to 4·C channels → PixelShuffle(2) → PReLU: ×2 in each direction (Shi et al. 2016)."""

    def __init__(self, channels: int) -> None:
        super().__init__(
            nn.Conv2d(channels, 4 * channels, 3, padding=1),
            nn.PixelShuffle(2),
            nn.PReLU(channels),
        )


class SRResNetGenerator(nn.Module):
    """SRResNet: (B, C, s, s) low-resolution images → (B, C, scale·s, scale·s).

    Args:
        channels: image channels (3 RGB, 1 grey), the same for input and output.
        image_size: side of the high-resolution output (``dataset.image_size``).
        scale: upsampling factor, 2, 4 or 8; the input side is ``image_size / scale``.
        ngf: channels of the body (64).
        num_blocks: residual blocks (16).

    Attributes ``input_shape`` / ``output_shape`` are the image-to-image networks' contract.
    """

    def __init__(
        self,
        channels: int = 3,
        image_size: int = 96,
        scale: int = 4,
        ngf: int = 64,
        num_blocks: int = 16,
    ) -> None:
        super().__init__()
        owner = "model.generator"
        self.scale = check_scale(scale, owner)
        channels = check_positive_int(owner, "channels", channels)
        image_size = check_positive_int(owner, "image_size", image_size)
        ngf = check_positive_int(owner, "ngf", ngf)
        num_blocks = check_positive_int(owner, "num_blocks", num_blocks)
        if image_size % self.scale != 0:
            raise ConfigError(
                f"{owner}.image_size={image_size} is not a multiple of scale={self.scale}: the low-"
                f"resolution input would be {image_size / self.scale:g} px; use a multiple of {self.scale}"
            )
        low = image_size // self.scale
        self.input_shape = (channels, low, low)
        self.output_shape = (channels, image_size, image_size)
        self.head = nn.Sequential(nn.Conv2d(channels, ngf, 9, padding=4), nn.PReLU(ngf))
        self.blocks = nn.Sequential(*(ResidualBlock(ngf) for _ in range(num_blocks)))
        self.trunk_tail = nn.Sequential(nn.Conv2d(ngf, ngf, 3, padding=1), nn.BatchNorm2d(ngf))
        self.upsample = nn.Sequential(*(SubPixelUpsample(ngf) for _ in range(int(math.log2(self.scale)))))
        self.tail = nn.Conv2d(ngf, channels, 9, padding=4)

    def forward(self, x: Tensor) -> Tensor:
        head = self.head(x)
        # The long skip: the body learns the residual over the first layer's features.
        features = head + self.trunk_tail(self.blocks(head))
        return self.tail(self.upsample(features)).tanh()


class SRGANDiscriminator(nn.Module):
    """The paper's VGG-style D: (B, C, H, W) high-resolution images → logits (B, 1).

    Args:
        channels: image channels.
        image_size: side of the images D judges (a multiple of 16: four stride-2 layers;
            the dense layer's input is 8·ndf · (image_size/16)²).
        ndf: filters of the first two layers (64), doubled every two layers up to 8·ndf.
        dense: units of the hidden dense layer (1024).
        spectral_norm: spectral normalisation on every conv/linear layer (not in the paper).
    """

    def __init__(
        self,
        channels: int = 3,
        image_size: int = 96,
        ndf: int = 64,
        dense: int = 1024,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        owner = "model.discriminator"
        channels = check_positive_int(owner, "channels", channels)
        image_size = check_positive_int(owner, "image_size", image_size)
        ndf = check_positive_int(owner, "ndf", ndf)
        dense = check_positive_int(owner, "dense", dense)
        if image_size % _D_DOWNSAMPLING != 0:
            raise ConfigError(
                f"{owner}.image_size={image_size} is invalid: SRGAN's D halves its input four times, "
                f"so the side must be a multiple of {_D_DOWNSAMPLING} (e.g. 32, 96)"
            )
        self.input_shape = (channels, image_size, image_size)
        self.norm = "batch"
        widths = [ndf, ndf, 2 * ndf, 2 * ndf, 4 * ndf, 4 * ndf, 8 * ndf, 8 * ndf]
        layers: list[nn.Module] = [nn.Conv2d(channels, ndf, 3, padding=1), nn.LeakyReLU(0.2)]
        for i in range(1, len(widths)):
            stride = 2 if i % 2 == 1 else 1
            layers += [
                nn.Conv2d(widths[i - 1], widths[i], 3, stride=stride, padding=1),
                nn.BatchNorm2d(widths[i]),
                nn.LeakyReLU(0.2),
            ]
        side = image_size // _D_DOWNSAMPLING
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(widths[-1] * side * side, dense),
            nn.LeakyReLU(0.2),
            nn.Linear(dense, 1),
        )
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
