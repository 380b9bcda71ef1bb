"""Frozen feature networks for perceptual losses (the ``perceptual`` config group).

A perceptual loss compares images in the feature space of a fixed network instead of pixels:
content (feature reconstruction) and style (Gram matrix) losses of Gatys, Ecker & Bethge 2016
("Image Style Transfer Using Convolutional Neural Networks", CVPR) and Johnson, Alahi & Fei-Fei
2016 ("Perceptual Losses for Real-Time Style Transfer and Super-Resolution", ECCV), SRGAN's VGG
loss (Ledig et al. 2017). The losses themselves are ``losses/perceptual.py``; this module holds
the networks, all with one interface, :class:`FeatureExtractor`:

- ``layers``: the names of the layers ``forward`` returns;
- ``forward(x) -> dict[str, Tensor]`` for float images in [-1, 1], shape (B, 1 or 3, H, W);
- ``prepare(datamodule)``: binds to the run's data (a no-op unless the network needs it, as the
  domain classifier's features in ``metrics/perceptual.py`` do).

The weights are frozen (no gradients, eval mode for good) but the input is not: a loss
back-propagates through the network into the generator. Their tensors are kept out of training
checkpoints (:func:`~gan_research.utils.weights.keep_out_of_checkpoints`): they come from their
published file or their seed, not from training.

:class:`VGG19Features` is torchvision's ImageNet VGG19 (Simonyan & Zisserman 2015), read from a
local file; :class:`RandomFeatures` is a seeded random network, the fallback when those weights
are not on the machine.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.utils.weights import WeightsFile, keep_out_of_checkpoints

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VGG19_LAYERS",
    "VGG19_WEIGHTS",
    "FeatureExtractor",
    "RandomFeatures",
    "VGG19Features",
    "check_layers",
]

#: ImageNet channel statistics of torchvision's pretrained models (inputs in [0, 1]).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def check_layers(layers: str | Iterable[str], valid: tuple[str, ...], option: str) -> tuple[str, ...]:
    """``layers`` as a tuple in the order asked (repeats dropped); an unknown or empty choice is one
    ConfigError listing ``valid``. A single name (``layers: relu5_4`` in a config) is one layer."""
    names = (layers,) if isinstance(layers, str) else tuple(str(name) for name in layers)
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        got = f"unknown layer(s) {unknown}" if unknown else "no layers"
        raise ConfigError(f"{option}.layers: {got}; valid names: {', '.join(valid)}")
    return tuple(dict.fromkeys(names))


def as_rgb(x: Tensor, owner: str) -> Tensor:
    """Check ``x`` is a float image batch (B, 1 or 3, H, W) and repeat grey to 3 channels."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"{owner} expects images of shape (B, 1 or 3, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(
            f"{owner} expects float images in [-1, 1], got {x.dtype}; convert with x / 127.5 - 1"
        )
    # expand, not repeat: no copy, and the gradient of the three copies sums back into the grey channel.
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class FeatureExtractor(nn.Module):
    """A frozen network returning named intermediate features (see the module docstring).

    Subclasses build their network, set ``layers`` and call :meth:`freeze` at the end of
    ``__init__``; ``forward`` must not run under ``no_grad`` (losses need gradients to the input).
    """

    layers: tuple[str, ...]

    def __init__(self) -> None:
        super().__init__()
        self.layers = ()
        self._frozen = False

    def freeze(self) -> FeatureExtractor:
        """No gradients to the weights, eval mode for good, weights out of checkpoints."""
        self._frozen = True
        self.requires_grad_(False)
        keep_out_of_checkpoints(self)
        return self.train(False)

    def train(self, mode: bool = True) -> FeatureExtractor:
        # Like metrics/classifier/network.py's DomainClassifier.freeze: a parent LightningModule calls
        # train(True) every epoch, and dropout or batch-norm statistics must not move the features.
        return super().train(mode and not self._frozen)

    def prepare(self, datamodule: Any) -> None:
        """Bind to the run's data; nothing to do for a network that does not depend on it."""

    def forward(self, x: Tensor) -> dict[str, Tensor]:  # pragma: no cover - the subclasses' job
        raise NotImplementedError


def _run_sequential(
    net: nn.Sequential, names: tuple[str, ...], wanted: tuple[str, ...], x: Tensor
) -> dict[str, Tensor]:
    """Run ``net`` (whose i-th module's output is named ``names[i]``) until the deepest wanted
    layer; the wanted outputs in the order asked."""
    found: dict[str, Tensor] = {}
    for name, module in zip(names, net, strict=False):
        x = module(x)
        if name in wanted:
            found[name] = x
            if len(found) == len(wanted):
                break
    return {name: found[name] for name in wanted}


# --------------------------------------------------------------------------- VGG19
#: torchvision's VGG19 configuration "E" (torchvision/models/vgg.py ``cfgs["E"]``): conv widths,
#: "M" a 2x2 max-pool.
_VGG19_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)  # fmt: skip


def _vgg19_names() -> tuple[str, ...]:
    names: list[str] = []
    block, conv = 1, 0
    for item in _VGG19_CFG:
        if item == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 0
        else:
            conv += 1
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
    return tuple(names)


#: The name of each module of VGG19's ``features``, by index: conv1_1 (0), relu1_1 (1), ...,
#: relu5_4 (35), pool5 (36).
VGG19_LAYERS: tuple[str, ...] = _vgg19_names()

#: torchvision's ImageNet VGG19 weights (``VGG19_Weights.IMAGENET1K_V1``).
VGG19_WEIGHTS = WeightsFile(
    filename="vgg19-dcbaabe7.pth",
    url="https://download.pytorch.org/models/vgg19-dcbaabe7.pth",
    env="GAN_VGG19_WEIGHTS",
    key="perceptual.weights",
    description="VGG19 ImageNet weights file",
    publisher="torchvision's",
)


def _vgg19_features(depth: int) -> nn.Sequential:
    """The first ``depth`` modules of torchvision's ``vgg19().features``, with the same indices
    (so ``features.N.weight`` loads as ``N.weight``); ReLUs not in place, so a returned conv
    output is not overwritten by the ReLU after it."""
    modules: list[nn.Module] = []
    channels = 3
    for item in _VGG19_CFG:
        if item == "M":
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            modules += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            channels = int(item)
    return nn.Sequential(*modules[:depth])


def _vgg19_shapes() -> dict[str, tuple[int, ...]]:
    """The shape of every tensor of torchvision's VGG19 ``features`` (``features.N.weight/bias``)."""
    # On the meta device: shapes only, no storage and no initialisation.
    with torch.device("meta"):
        net = _vgg19_features(len(VGG19_LAYERS))
    return {f"features.{key}": tuple(value.shape) for key, value in net.state_dict().items()}


class VGG19Features(FeatureExtractor):
    """ImageNet VGG19 features (Simonyan & Zisserman 2015, configuration E) by layer name.

    The network of Gatys et al. 2016 (style: ``relu1_1 ... relu5_1``, content: ``relu4_2``),
    Johnson et al. 2016 (on VGG16) and SRGAN's VGG54 loss (``relu5_4``: the 4th convolution,
    after its activation, before the 5th max-pool; Ledig et al. 2017 §2.2.2). Layer names are
    ``conv<b>_<k>`` (before the ReLU), ``relu<b>_<k>`` (after it) and ``pool<b>``; only the
    modules up to the deepest requested layer are built and run.

    The weights are torchvision's ``vgg19-dcbaabe7.pth`` (its ``features.*`` tensors; the
    classifier's are not read into the network), found by
    :meth:`~gan_research.utils.weights.WeightsFile.resolve` in ``weights`` (the
    ``perceptual.weights`` key), ``$GAN_VGG19_WEIGHTS`` or the torch hub cache, and read with
    ``weights_only=True``. The lookup runs here, so a missing file fails when the config is
    instantiated, before a run directory is written.

    Args:
        weights: path of the weights file, or None to look at the variable and the hub cache.
        layers: the layers ``forward`` returns (in this order).
        normalize: map x from [-1, 1] to [0, 1] and apply the ImageNet mean and std, as the
            weights were trained on; False passes x through unchanged (already normalised).
    """

    def __init__(
        self,
        weights: str | os.PathLike[str] | None = None,
        layers: str | Iterable[str] = ("relu5_4",),
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.layers = check_layers(layers, VGG19_LAYERS, "perceptual (vgg19)")
        self.normalize = bool(normalize)
        depth = max(VGG19_LAYERS.index(name) for name in self.layers) + 1
        self.weights_path = VGG19_WEIGHTS.resolve(weights)
        state = _vgg19_feature_weights(VGG19_WEIGHTS.load(self.weights_path), self.weights_path, depth)
        # Built on the meta device and given empty storage that the strict load below fills
        # entirely: initialising 20M weights about to be replaced would cost time and draw from the
        # caller's RNG stream (the training seed).
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            net = _vgg19_features(depth)
        self.net = net.to_empty(device="cpu")
        VGG19_WEIGHTS.load_into(self.net, state, self.weights_path)
        del state
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._names = VGG19_LAYERS[:depth]
        self.freeze()

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Features ``{layer: (B, C_layer, H_layer, W_layer)}`` of images in [-1, 1]."""
        x = as_rgb(x, "VGG19Features")
        if self.normalize:
            x = ((x + 1) / 2 - self.mean) / self.std
        return _run_sequential(self.net, self._names, self.layers, x)


def _vgg19_feature_weights(
    state: Mapping[str, Tensor], path: os.PathLike[str], depth: int
) -> dict[str, Tensor]:
    """The ``features.N`` tensors of a torchvision VGG19 file, for the first ``depth`` modules,
    renamed ``N.*``. Every conv tensor of the file is checked, so a VGG16 or a batch-normalised
    VGG19 file is named as the wrong file rather than half-loaded."""
    expected = _vgg19_shapes()
    wrong = [key for key, shape in expected.items() if key not in state or tuple(state[key].shape) != shape]
    if wrong:
        raise VGG19_WEIGHTS.bad_file(
            path, f"{len(wrong)} of VGG19's {len(expected)} feature tensors are missing or mis-shaped "
            f"(first: {wrong[0]}); it is not VGG19 configuration E without batch norm"
        )  # fmt: skip
    return {key.removeprefix("features."): state[key] for key in expected if int(key.split(".")[1]) < depth}


# --------------------------------------------------------------------------- random features
class RandomFeatures(FeatureExtractor):
    """A fixed, seeded, randomly initialised multi-scale conv net: texture features without weights.

    Random-weight networks already give usable texture statistics: Ulyanov et al. 2016
    ("Texture Networks", ICML) and, explicitly, He, Wang & Hopcroft 2016 ("A Powerful Generative
    Model Using Random Weights for the Deep Image Representation", NeurIPS) synthesise textures
    and transfer style by matching Gram matrices of untrained conv features. This is the fallback
    for style transfer (``perceptual=random``) on a machine without the VGG19 file.

    Scale k is a 3x3 convolution and a ReLU, preceded for k > 1 by a 2x average pooling:
    ``scale1`` has ``channels[0]`` channels at H x W, ``scale2`` ``channels[1]`` at H/2 x W/2, ...
    Weights are He-normal (std sqrt(2 / fan_in), so activations keep their scale through the
    ReLUs), biases zero, drawn from a local generator seeded with ``seed``: the same network for
    the same seed whatever the global RNG state, and the global stream is not consumed.

    Args:
        seed: the weights' seed.
        channels: output channels of each scale (their number is the number of scales).
        layers: the scales ``forward`` returns, among ``scale1`` ... ``scale<len(channels)>``;
            None: all of them (with the default channels, scale1 ... scale4).
    """

    def __init__(
        self,
        seed: int = 0,
        channels: Iterable[int] = (32, 64, 128, 256),
        layers: str | Iterable[str] | None = None,
    ) -> None:
        super().__init__()
        widths = tuple(channels)
        if not widths or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in widths):
            raise ConfigError(f"perceptual (random).channels must be positive integers, got {list(widths)!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"perceptual (random).seed must be an integer, got {seed!r}")
        self.seed, self.channels = seed, widths
        self._names = tuple(f"scale{k + 1}" for k in range(len(widths)))
        self.layers = check_layers(
            self._names if layers is None else layers, self._names, "perceptual (random)"
        )
        depth = max(self._names.index(name) for name in self.layers) + 1
        modules: list[nn.Module] = []
        generator = torch.Generator().manual_seed(seed)
        # nn.Conv2d's own initialisation draws from the global RNG: done inside fork_rng so the
        # caller's stream is untouched, then overwritten from the local generator.
        with torch.random.fork_rng(devices=[]):
            in_channels = 3
            for k, width in enumerate(widths[:depth]):
                conv = nn.Conv2d(in_channels, width, kernel_size=3, padding=1)
                fan_in = in_channels * 9
                with torch.no_grad():
                    conv.weight.copy_(
                        torch.randn(conv.weight.shape, generator=generator) * math.sqrt(2 / fan_in)
                    )
                    conv.bias.zero_()
                scale = [conv, nn.ReLU()]
                modules.append(nn.Sequential(*([nn.AvgPool2d(2)] if k else []), *scale))
                in_channels = width
        self.net = nn.Sequential(*modules)
        self.freeze()

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Features ``{scale<k>: (B, channels[k-1], H / 2^(k-1), W / 2^(k-1))}`` of images in [-1, 1]."""
        return _run_sequential(self.net, self._names, self.layers, as_rgb(x, "RandomFeatures"))
