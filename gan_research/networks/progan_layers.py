"""Layers of progressive GANs, shared by ProGAN and StyleGAN/StyleGAN2.

Karras, Aila, Laine & Lehtinen 2018, "Progressive Growing of GANs for Improved Quality,
Stability, and Variation" (arXiv:1710.10196):

- sec. 4.1, equalised learning rate: weights are stored as N(0, 1) and multiplied at
  run time by He's constant ``c = gain / sqrt(fan_in)`` (gain sqrt(2) by default), so
  Adam's scale-invariant updates move every layer at the same relative speed;
- sec. 4.2, pixelwise feature normalisation: each pixel's feature vector is scaled to
  unit mean square;
- sec. 3, minibatch standard deviation: the discriminator sees the standard deviation
  of its features over a group of samples as an extra feature map.

Gain convention (as in the official code, ``networks.py`` of tkarras/progressive_growing_of_gans,
``get_weight(gain=np.sqrt(2), use_wscale=True)``): with the default ``gain = sqrt(2)`` a
unit-variance input gives an output of variance 2, whose (leaky) ReLU has unit second
moment — He's initialisation. Layers followed by no non-linearity (``to_rgb``, the
discriminator's final score) use ``gain=1``, which gives unit output variance directly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gan_research.errors import ConfigError
from gan_research.utils.validation import check_positive_float, check_positive_int

HE_GAIN = math.sqrt(2.0)


class EqualizedLinear(nn.Module):
    """Fully connected layer with the equalised learning rate (Karras et al. 2018, sec. 4.1).

    ``y = x @ (W * gain * lr_multiplier / sqrt(in_features)).T + b * lr_multiplier``.
    With ``lr_multiplier = 1`` the stored weight is N(0, 1). ``lr_multiplier < 1`` slows
    the layer down (StyleGAN's mapping network uses 0.01, Karras et al. 2019, app. C):
    as in the official code (stylegan2-ada-pytorch ``networks.py``, ``FullyConnectedLayer``)
    the stored weight is then N(0, 1/lr_multiplier²) so the effective initial weight is
    still He-scaled; the bias is stored as ``bias_init / lr_multiplier`` so the effective
    initial bias is exactly ``bias_init`` (StyleGAN2's affine layers use 1).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
        gain: float = HE_GAIN,
    ) -> None:
        super().__init__()
        check_positive_int("EqualizedLinear", "in_features", in_features)
        check_positive_int("EqualizedLinear", "out_features", out_features)
        self.lr_multiplier = check_positive_float("EqualizedLinear", "lr_multiplier", lr_multiplier)
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / self.lr_multiplier)
        self.bias = (
            nn.Parameter(torch.full((out_features,), float(bias_init) / self.lr_multiplier)) if bias else None
        )
        self.weight_scale = gain / math.sqrt(in_features) * self.lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_multiplier if self.bias is not None else None
        return F.linear(x, self.weight * self.weight_scale, bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, lr_multiplier={self.lr_multiplier}"
        )


class EqualizedConv2d(nn.Module):
    """2-D convolution with the equalised learning rate (Karras et al. 2018, sec. 4.1).

    Stored weight N(0, 1), multiplied at run time by ``gain / sqrt(in_channels * k * k)``
    (``gain = sqrt(2)`` by default; see the module docstring). Bias starts at zero.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        gain: float = HE_GAIN,
        lr_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        check_positive_int("EqualizedConv2d", "in_channels", in_channels)
        check_positive_int("EqualizedConv2d", "out_channels", out_channels)
        check_positive_int("EqualizedConv2d", "kernel_size", kernel_size)
        check_positive_int("EqualizedConv2d", "stride", stride)
        self.lr_multiplier = check_positive_float("EqualizedConv2d", "lr_multiplier", lr_multiplier)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.weight = nn.Parameter(
            torch.randn(out_channels, in_channels, kernel_size, kernel_size) / self.lr_multiplier
        )
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        fan_in = in_channels * kernel_size * kernel_size
        self.weight_scale = gain / math.sqrt(fan_in) * self.lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_multiplier if self.bias is not None else None
        return F.conv2d(x, self.weight * self.weight_scale, bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"
        )


class PixelNorm(nn.Module):
    """Pixelwise feature normalisation (Karras et al. 2018, sec. 4.2, eq. in the text).

    ``b = a / sqrt(mean_j(a_j²) + eps)`` over the channel dimension (dim 1), so each
    pixel's feature vector has unit mean square. Works on (N, C) latents and (N, C, H, W) maps.
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)


def minibatch_group_size(batch_size: int, group_size: int) -> int:
    """The group size MinibatchStdDev uses for a batch of ``batch_size`` samples.

    The official code (stylegan2-ada-pytorch ``MinibatchStdLayer``) takes
    ``min(group_size, N)`` and requires N to be divisible by it. To accept any batch (an
    uneven last batch, a sample batch of odd size) we take the largest divisor of N that
    is at most ``group_size`` and at least 2; when there is none (N prime and larger than
    ``group_size``) the whole batch forms one group; a batch of one sample is its own group
    (its standard deviation is 0, so the extra channel is sqrt(eps)).
    """
    if batch_size <= 1:
        return 1
    for g in range(min(group_size, batch_size), 1, -1):
        if batch_size % g == 0:
            return g
    return batch_size


class MinibatchStdDev(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018, sec. 3; generalised in StyleGAN2).

    Splits the batch into groups of ``group_size`` samples (see ``minibatch_group_size``
    for batches it does not divide), computes each feature's standard deviation over the
    group, averages it over the features and pixels of each of ``num_channels`` channel
    slices, and appends the result as ``num_channels`` constant feature maps: the output has
    ``C + num_channels`` channels. As in the official code, sample ``i`` belongs to group
    ``i mod (N / G)`` (strided groups).
    """

    def __init__(self, group_size: int = 4, num_channels: int = 1, eps: float = 1e-8) -> None:
        super().__init__()
        self.group_size = check_positive_int("MinibatchStdDev", "group_size", group_size)
        self.num_channels = check_positive_int("MinibatchStdDev", "num_channels", num_channels)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if c % self.num_channels != 0:
            raise ConfigError(
                f"MinibatchStdDev: num_channels={self.num_channels} must divide the {c} input channels."
            )
        g = minibatch_group_size(n, self.group_size)
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)  # [G, N/G, F, C/F, H, W]
        y = y - y.mean(dim=0)
        y = (y.pow(2).mean(dim=0) + self.eps).sqrt()  # [N/G, F, C/F, H, W]
        y = y.mean(dim=(2, 3, 4))  # [N/G, F]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)  # [N, F, H, W]
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"
