"""Image helpers shared by data modules, families, callbacks and metrics.

They live below all of those packages, so that a family drawing its sample grid does not
import a callback and a metric converting channels does not import a datamodule.
"""

from __future__ import annotations

import colorsys

import torch
import torch.nn.functional as F
from torch import Tensor

# ITU-R 601-2 luma weights, the ones PIL's convert("L") uses, so RGB datasets turned
# grey here match image folders converted by PIL.
_LUMA = (0.299, 0.587, 0.114)


def convert_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert NCHW images between grey (1 channel) and RGB (3 channels)."""
    have = x.shape[1]
    if have == channels:
        return x
    if have == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    if have == 3 and channels == 1:
        weights = torch.tensor(_LUMA, dtype=torch.float32).view(1, 3, 1, 1)
        grey = (x.to(torch.float32) * weights).sum(dim=1, keepdim=True)
        if x.dtype == torch.uint8:
            return grey.round_().clamp_(0, 255).to(torch.uint8)
        return grey
    raise ValueError(f"cannot convert {have}-channel images to {channels} channels")


def label_palette(num_classes: int) -> Tensor:
    """A fixed colour per class, (num_classes, 3) in [-1, 1]: class 0 black, the others evenly
    spaced hues at alternating lightness, so neighbouring class ids stay distinguishable."""
    colours = [(0.0, 0.0, 0.0)]
    for k in range(1, num_classes):
        hue = (k - 1) / max(1, num_classes - 1)
        colours.append(colorsys.hls_to_rgb(hue, 0.45 if k % 2 else 0.65, 0.85))
    return torch.tensor(colours[:num_classes], dtype=torch.float32) * 2 - 1


def colour_label_map(onehot: Tensor) -> Tensor:
    """One-hot label maps (B, K, H, W) as RGB images in [-1, 1], each class in its
    :func:`label_palette` colour; ignored pixels (an all-zero one-hot) grey."""
    palette = label_palette(onehot.shape[1]).to(onehot.device, torch.float32)
    onehot = onehot.to(torch.float32)
    rgb = torch.einsum("bkhw,kc->bchw", onehot, palette)
    ignored = (onehot.sum(1, keepdim=True) == 0).to(torch.float32)
    return rgb * (1 - ignored)  # grey (0 in [-1, 1]) where no class is set


def displayable(x: Tensor) -> Tensor:
    """Images as a grid shows them: grey and RGB as they are; any other channel count is a
    one-hot label map (a semantic layout, the input of GauGAN or pix2pix labels → photo), shown
    in colour by :func:`colour_label_map`."""
    return x if x.shape[1] in (1, 3) else colour_label_map(x)


def grid_rows(*columns: Tensor) -> Tensor:
    """Images of the columns interleaved a row at a time (input | output | target, ...), grey
    repeated to RGB beside RGB and label maps in colour (:func:`displayable`), for a grid of
    ``len(columns)`` images a row."""
    columns = tuple(displayable(c) for c in columns)
    channels = max(c.shape[1] for c in columns)
    columns = tuple(convert_channels(c, channels) for c in columns)
    return torch.stack(columns, dim=1).flatten(0, 1)


def resize_bicubic(x: Tensor, size: tuple[int, int] | int) -> Tensor:
    """Images in [-1, 1] resized to ``size`` with the bicubic kernel of MATLAB's ``imresize`` and
    PIL (Keys' cubic, a = -0.5; widened by the factor when shrinking, i.e. antialiased), clamped
    to [-1, 1] since the kernel overshoots at edges.

    The kernel SR benchmarks make their low-resolution images with and their "bicubic" baseline
    is computed with. ``antialias=True`` selects it in both directions: plain
    ``F.interpolate(mode="bicubic")`` uses OpenCV's a = -0.75.
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    out = F.interpolate(x.float(), size=size, mode="bicubic", align_corners=False, antialias=True)
    return out.clamp(-1.0, 1.0)
