"""Style images for neural style transfer, made in code or read from a file.

Gatys, Ecker & Bethge (2016), "Image Style Transfer Using Convolutional Neural Networks", take
the style from a painting. No painting ships with this project and nothing is downloaded, so
:func:`make_style` draws procedural textures whose Gram statistics are clearly different from a
digit's (oriented stripes, a checkerboard, concentric rings, smooth coloured noise, waves);
:func:`load_image` reads any image file instead.

Every style is a pure function of ``(name, size, channels, seed)``: the same arguments give
the same tensor on every machine (the random ones draw from a private ``torch.Generator``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from gan_research.errors import ConfigError, DataError
from gan_research.utils.images import convert_channels

# What PIL raises for unreadable, truncated or hostile files (as data/image_folder.py).
_PIL_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _grid(size: int) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates in [0, 1) as (y, x), each (size, size): styles are defined in
    these units, so a style at 32 and at 256 pixels is the same pattern at two resolutions."""
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    return torch.meshgrid(coords, coords, indexing="ij")


def _palette(generator: torch.Generator, n: int) -> Tensor:
    """``n`` RGB colours in [-1, 1], (n, 3), far enough apart that the pattern stays visible."""
    # Hues spread evenly around the colour wheel from a random start, full saturation: two
    # random colours could be almost equal and the style would be a flat image.
    start = float(torch.rand((), generator=generator))
    hues = (start + torch.arange(n, dtype=torch.float32) / n) % 1.0
    phases = torch.tensor([0.0, 2.0 / 3.0, 1.0 / 3.0]) * 2 * math.pi
    return torch.cos(2 * math.pi * hues[:, None] - phases[None, :]).mul(0.9)


def _mix(weight: Tensor, colours: Tensor) -> Tensor:
    """(3, H, W): ``colours[0]`` where ``weight`` is 0, ``colours[1]`` where it is 1."""
    a, b = colours[0].view(3, 1, 1), colours[1].view(3, 1, 1)
    return a + (b - a) * weight.unsqueeze(0)


def _stripes(size: int, generator: torch.Generator) -> Tensor:
    # Diagonal stripes, 8 periods across: one dominant orientation, the simplest texture a Gram
    # matrix can tell apart from a digit.
    y, x = _grid(size)
    angle = math.pi / 4 + float(torch.rand((), generator=generator)) * math.pi / 8
    u = x * math.cos(angle) + y * math.sin(angle)
    weight = (torch.sin(2 * math.pi * 8 * u) > 0).float()
    return _mix(weight, _palette(generator, 2))


def _checkerboard(size: int, generator: torch.Generator) -> Tensor:
    # 8 x 8 squares in two colours: two orientations at once, sharp corners.
    y, x = _grid(size)
    weight = ((torch.floor(x * 8) + torch.floor(y * 8)) % 2).float()
    return _mix(weight, _palette(generator, 2))


def _rings(size: int, generator: torch.Generator) -> Tensor:
    # Concentric rings around the centre, three colours blended smoothly: every orientation.
    y, x = _grid(size)
    radius = torch.sqrt((x - 0.5) ** 2 + (y - 0.5) ** 2)
    colours = _palette(generator, 3)
    phase = float(torch.rand((), generator=generator)) * 2 * math.pi
    image = torch.zeros(3, size, size)
    for k in range(3):
        # Three phase-shifted cosines: the colours take turns along the radius.
        share = (torch.cos(2 * math.pi * 6 * radius + phase - 2 * math.pi * k / 3) + 1) / 2
        image += colours[k].view(3, 1, 1) * share.unsqueeze(0)
    # The three shares sum to 1.5 and the colours nearly cancel out: stretch back to full range.
    return image * (0.9 / image.abs().amax().clamp_min(1e-6))


def _noise(size: int, generator: torch.Generator) -> Tensor:
    # Coloured noise on a coarse 8 x 8 grid, upsampled smoothly: blobs about size/8 wide, no
    # orientation; the statistics of a texture rather than of a pattern.
    coarse = torch.randn(1, 3, 8, 8, generator=generator)
    smooth = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0]
    smooth = smooth - smooth.mean(dim=(1, 2), keepdim=True)
    # Scaled by the spread, not the extreme value, so one outlier does not grey the whole image
    # (make_style clamps the few pixels beyond [-1, 1]).
    return smooth / (2.0 * smooth.std().clamp_min(1e-6))


def _waves(size: int, generator: torch.Generator) -> Tensor:
    # Horizontal bands bent by a sine along x: curved, mostly horizontal edges.
    y, x = _grid(size)
    amplitude = 0.05 + 0.05 * float(torch.rand((), generator=generator))
    weight = (torch.sin(2 * math.pi * (6 * y + 6 * amplitude * torch.sin(2 * math.pi * 3 * x))) + 1) / 2
    return _mix(weight, _palette(generator, 2))


STYLES: dict[str, Callable[[int, torch.Generator], Tensor]] = {
    "stripes": _stripes,
    "checkerboard": _checkerboard,
    "rings": _rings,
    "noise": _noise,
    "waves": _waves,
}


def style_names() -> list[str]:
    """The names :func:`make_style` draws."""
    return list(STYLES)


def _check_size_channels(size: object, channels: object, what: str) -> tuple[int, int]:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"{what}: size={size!r} is invalid: expected a positive integer (pixels)")
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ConfigError(f"{what}: channels={channels!r} is invalid: expected 1 (grey) or 3 (RGB)")
    return int(size), int(channels)


def make_style(name: str, size: int, channels: int = 3, seed: int = 0) -> Tensor:
    """The procedural style ``name`` as a (channels, size, size) float tensor in [-1, 1].

    ``seed`` picks the colours (and the random field of ``noise``); the same arguments always
    give the same image. ``channels=1`` is the luma of the RGB pattern.

    Raises:
        ConfigError: an unknown name (listing the valid ones), a bad size or channel count.
    """
    if name not in STYLES:
        raise ConfigError(f"style {name!r} is not a procedural style; valid: {', '.join(STYLES)}")
    size, channels = _check_size_channels(size, channels, f"style {name}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"style {name}: seed={seed!r} is invalid: expected an integer")
    generator = torch.Generator().manual_seed(seed)
    image = STYLES[name](size, generator).clamp(-1.0, 1.0)
    return convert_channels(image.unsqueeze(0), channels)[0].contiguous()


def load_image(path: str | Path, size: int, channels: int = 3) -> Tensor:
    """Image file ``path`` (any format PIL reads), centre-cropped to a square and resized to
    ``size``: a (channels, size, size) float tensor in [-1, 1].

    Raises:
        DataError: the file is missing, a directory, or not an image PIL can decode (naming it).
        ConfigError: a bad size or channel count.
    """
    path = Path(path)
    size, channels = _check_size_channels(size, channels, f"image {path}")
    if not path.exists():
        raise DataError(f"image file {path} does not exist")
    if not path.is_file():
        raise DataError(f"image file {path} is not a file")
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            width, height = image.size
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            image = image.crop((left, top, left + side, top + side))
            image = image.resize((size, size), Image.Resampling.BICUBIC)
            pixels = np.asarray(image, dtype=np.uint8).copy()
    except _PIL_ERRORS as err:
        raise DataError(f"cannot read image file {path} ({' '.join(str(err).split())})") from None
    tensor = torch.from_numpy(pixels).view(size, size, channels).permute(2, 0, 1)
    return tensor.to(torch.float32).div_(127.5).sub_(1.0).contiguous()
