"""Embedded semantic scenes: label maps of shapes on a background and the images they render to,
made in code (no download), for semantic image synthesis (GauGAN/SPADE, pix2pix) on a CPU.

Each scene is a ``image_size`` px label map of six classes: ``background`` and five shape classes
(``disc``, ``square``, ``triangle``, ``bar``, ``ellipse``), 2 to 4 shapes at random places and
sizes, later shapes covering earlier ones. Its image paints every class in its own colour and
texture, the texture a function of a pixel's depth inside its region (outlines, bands), so the
layout determines the image up to a per-scene style and the background's speckle:

========== ================ ===================================================
class      colour (RGB)     texture
========== ================ ===================================================
background slate            per-pixel speckle noise (random: the one part of an
                            image its layout does not determine)
disc       yellow           flat
square     brick red        a dark outline 2 px wide
triangle   green            concentric bands 2 px wide, from its edge inwards
bar        blue             a light outline 1 px wide
ellipse    off-white        a dark outline 1 px wide
========== ================ ===================================================

Per scene, a brightness factor (uniform in [0.75, 1.15]) and a small colour tint (normal, σ 0.04
per channel) scale the whole image, and Gaussian pixel noise (σ 0.02) is added: the style a
multimodal generator (SPADE's VAE variant) can vary while the layout stays fixed. The ground truth
is exact: the segmentation of every real image is its label map.

Training scenes are drawn at ``load_size`` (then randomly cropped to ``image_size`` and flipped,
as every translation dataset), validation scenes at ``image_size``, from independent seeds
(``scene_seed``), so the two splits share no scene. Textures are drawn at each split's own
resolution (not resized), so a training crop looks like a validation scene.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from gan_research.data.semantic import LabelMapDataModule
from gan_research.errors import ConfigError
from gan_research.utils.validation import check_int_at_least, check_positive_int

#: Class names, in id order.
CLASSES = ("background", "disc", "square", "triangle", "bar", "ellipse")
#: Base colours in [0, 1], in id order.
COLOURS = (
    (0.30, 0.34, 0.40),
    (0.95, 0.80, 0.20),
    (0.75, 0.25, 0.20),
    (0.20, 0.65, 0.30),
    (0.20, 0.40, 0.90),
    (0.90, 0.90, 0.92),
)
_MIN_SHAPES, _MAX_SHAPES = 2, 4
#: Brightness of a pixel of each class as a function of its depth d in its region (1: the
#: outermost ring); None: flat. Local functions of the layout, so a convolutional generator can
#: learn them (a texture with a fixed phase in image coordinates could not be derived from the map).
#: With the depth they need to see (deeper pixels get the capped depth: the interior).
_TEXTURES = (
    None,  # background: a speckle drawn per scene in make_scenes
    None,
    (lambda d: torch.where(d <= 2, 0.55, 1.0), 3),
    (lambda d: torch.where(((d - 1) // 2) % 2 == 1, 0.7, 1.0), 9),
    (lambda d: torch.where(d <= 1, 1.35, 1.0), 2),
    (lambda d: torch.where(d <= 1, 0.5, 1.0), 2),
)


def _shape_masks(
    cls: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, r: torch.Tensor, size: int
) -> torch.Tensor:
    """(N, size, size) masks of one shape per scene: class ``cls`` (1..5) centred at (cy, cx) with
    size ``r`` (pixels)."""
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    y, x = coords[None, :, None], coords[None, None, :]
    out = torch.zeros(len(cls), size, size, dtype=torch.bool)
    # Each scene's mask is computed for its own class only (a fifth of the work of evaluating
    # every shape everywhere; the same arithmetic per element, so the same masks).
    for k in range(1, 6):
        index = (cls == k).nonzero()[:, 0]
        if len(index) == 0:
            continue
        dy, dx = y - cy[index, None, None], x - cx[index, None, None]
        rk = r[index, None, None]
        if k == 1:
            mask = dy**2 + dx**2 <= rk**2
        elif k == 2:
            mask = (dy.abs() <= rk) & (dx.abs() <= rk)
        elif k == 3:
            # Isosceles, apex up: the half-width grows from 0 at the top to r at the base.
            mask = (dy >= -rk) & (dy <= rk) & (dx.abs() <= (dy + rk) / 2)
        elif k == 4:
            mask = (dx.abs() <= rk / 2.5) & (dy.abs() <= rk * 1.4)
        else:
            mask = (dx / (1.3 * rk)) ** 2 + (dy / (0.8 * rk)) ** 2 <= 1
        out[index] = mask
    return out


def _erode(m: torch.Tensor) -> torch.Tensor:
    """3x3 erosion of a boolean mask (N, s, s), pixels beyond the border counting as inside."""
    p = F.pad(m, (1, 1, 1, 1), value=True)
    rows = p[:, :-2] & p[:, 1:-1] & p[:, 2:]
    return rows[:, :, :-2] & rows[:, :, 1:-1] & rows[:, :, 2:]


def _depth(mask: torch.Tensor, max_depth: int) -> torch.Tensor:
    """(N, s, s) Chebyshev distance in pixels from each pixel of ``mask`` to the outside of its region
    (1 on the region's outermost ring), capped at ``max_depth``; 0 outside. The image border does
    not count as outside, so a shape cut by the border has no outline along it."""
    m = mask
    depth = torch.zeros(mask.shape, dtype=torch.uint8)
    for _ in range(max_depth):
        depth += m
        m = _erode(m)
    return depth.to(torch.int64)


def _patterns(labels: torch.Tensor) -> torch.Tensor:
    """(N, s, s) brightness factor of every pixel: its class's texture (the table above), a function
    of the pixel's depth inside its region, so the label map determines it locally."""
    pattern = torch.ones(labels.shape, dtype=torch.float32)
    for k, texture in enumerate(_TEXTURES):
        if texture is not None:
            shade, max_depth = texture
            pattern = torch.where(labels == k, shade(_depth(labels == k, max_depth)), pattern)
    return pattern


def make_scenes(num_scenes: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_scenes`` scenes at ``size`` px from ``seed``: (label ids int16 (N, 1, s, s), images
    uint8 (N, 3, s, s)). Deterministic: the same arguments give the same scenes on every machine.

    Drawn once per process and copied on later calls (a few seconds for the 4000 training scenes:
    a run builds its datamodule more than once, for training and for ``gan-eval``, and so do tests).
    """
    labels, images = _make_scenes(num_scenes, size, seed)
    return labels.clone(), images.clone()


@functools.lru_cache(maxsize=4)
def _make_scenes(num_scenes: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    n = num_scenes
    labels = torch.zeros(n, size, size, dtype=torch.int64)
    count = torch.randint(_MIN_SHAPES, _MAX_SHAPES + 1, (n,), generator=gen)
    for slot in range(_MAX_SHAPES):
        cls = torch.randint(1, len(CLASSES), (n,), generator=gen)
        cy, cx = (torch.rand(2, n, generator=gen) * 0.7 + 0.15) * size
        r = (torch.rand(n, generator=gen) * 0.18 + 0.12) * size
        mask = _shape_masks(cls, cy, cx, r, size) & (slot < count)[:, None, None]
        labels = torch.where(mask, cls[:, None, None], labels)
    speckle = 1 + torch.randn(n, size, size, generator=gen) * 0.05
    pattern = torch.where(labels == 0, speckle, _patterns(labels))
    colour = torch.tensor(COLOURS)[labels].permute(0, 3, 1, 2)  # (N, 3, s, s)
    image = colour * pattern[:, None]  # in [0, ~1]
    brightness = torch.rand(n, 1, 1, 1, generator=gen) * 0.4 + 0.75
    tint = 1 + torch.randn(n, 3, 1, 1, generator=gen) * 0.04
    image = image * brightness * tint + torch.randn(image.shape, generator=gen) * 0.02
    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    return labels[:, None].to(torch.int16), pixels


class ScenesDataModule(LabelMapDataModule):
    """The embedded scenes (module docstring): one-hot label maps ``a`` (6 classes), RGB images ``b``.

    Args:
        image_size: side of the training crops and of the validation scenes (32).
        load_size: side of the training scenes before the random crop (36; equal: no crop).
        flip: random horizontal mirroring (the scenes have no preferred side).
        num_train, num_val: scenes per split (4000, 256).
        scene_seed: seed of the scenes, apart from the run's ``seed`` (data order, jitter), so runs
            of every seed see and are scored on the same scenes.
        num_classes, channels_a, channels_b: accepted for the configs (models read
            ``${dataset.channels_a}``), must be 6, 6 and 3.
    """

    name = "scenes"

    def __init__(
        self,
        image_size: int = 32,
        load_size: int = 36,
        flip: bool = True,
        num_train: int = 4000,
        num_val: int = 256,
        scene_seed: int = 0,
        batch_size: int = 16,
        num_workers: int = 0,
        batches_per_step: int = 1,
        seed: int = 0,
        num_classes: int = len(CLASSES),
        channels_a: int = len(CLASSES),
        channels_b: int = 3,
    ) -> None:
        for key, given, valid in (
            ("num_classes", num_classes, len(CLASSES)),
            ("channels_a", channels_a, len(CLASSES)),
            ("channels_b", channels_b, 3),
        ):
            if given != valid or isinstance(given, bool):
                raise ConfigError(
                    f"{self.name}: dataset.{key}={given!r} is invalid; the scenes have {len(CLASSES)} "
                    f"classes ({', '.join(CLASSES)}) and RGB images: valid: {valid}"
                )
        super().__init__(
            num_classes=len(CLASSES),
            crop_size=image_size,
            load_size=load_size,
            flip=flip,
            channels_b=3,
            batch_size=batch_size,
            num_workers=num_workers,
            batches_per_step=batches_per_step,
            seed=seed,
            crop_key="image_size",
        )
        self.num_train = check_positive_int("dataset", "num_train", num_train, form="key")
        self.num_val = check_int_at_least("dataset", "num_val", num_val, 2, form="key")
        if isinstance(scene_seed, bool) or not isinstance(scene_seed, int):
            raise ConfigError(f"{self.name}: dataset.scene_seed must be an integer, got {scene_seed!r}")
        self.scene_seed = scene_seed

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASSES

    def _load_splits(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        # Independent streams per split: 2 * scene_seed for training, 2 * scene_seed + 1 for validation.
        train_a, train_b = make_scenes(self.num_train, self.load_size, 2 * self.scene_seed)
        val_a, val_b = make_scenes(self.num_val, self.crop_size, 2 * self.scene_seed + 1)
        return train_a, train_b, val_a, val_b
