"""Perceptual losses: feature reconstruction (content), Gram-matrix style and total variation.

- Content / feature loss: the distance between a fixed network's features of two images
  (Gatys, Ecker & Bethge 2016, "Image Style Transfer Using Convolutional Neural Networks",
  CVPR, eq. 1; Johnson, Alahi & Fei-Fei 2016, "Perceptual Losses for Real-Time Style Transfer
  and Super-Resolution", ECCV, §3.3 "feature reconstruction loss"); SRGAN's VGG loss (Ledig et
  al. 2017, "Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial
  Network", CVPR, §2.2.2 eq. 5) is this loss on VGG19's ``relu5_4`` ("VGG54", §3.4) with the
  feature maps divided by 12.75 (§3.2: "to obtain VGG losses of a scale that is comparable to
  the MSE loss"), :class:`PerceptualLoss` with ``feature_scale=12.75``.
- Style loss: the distance between Gram matrices of the features (Gatys et al. 2016 eq. 3-5;
  Johnson et al. 2016 §3.3 "style reconstruction loss"), :class:`StyleLoss`.
- Total variation: a smoothness prior on the output image (Mahendran & Vedaldi 2015,
  "Understanding Deep Image Representations by Inverting Them", CVPR, eq. 4; used by Johnson
  et al. 2016 §3.4), :func:`total_variation`.

The feature network is an argument, used through its interface only (``layers`` and
``forward(x) -> dict[str, Tensor]``; ``networks/perceptual.py``'s FeatureExtractor and
``metrics/perceptual.py``'s ClassifierFeatures): losses sit below networks in the layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_research.errors import ConfigError

__all__ = ["PerceptualLoss", "StyleLoss", "gram_matrix", "total_variation"]

CRITERIA = ("mse", "l1")


class Features(Protocol):
    """What the losses need of a feature network."""

    layers: tuple[str, ...]

    def __call__(self, x: Tensor) -> dict[str, Tensor]: ...


def gram_matrix(features: Tensor) -> Tensor:
    """Gram matrices (B, C, C) of features (B, C, H, W), normalised by C * H * W.

    ``G_ij = sum_k F_ik F_jk`` over the H * W positions (Gatys et al. 2016 eq. 3), divided by
    ``C * H * W`` as in Johnson et al. 2016 §3.3, so layers of different sizes give values of one
    scale (Gatys et al. fold ``1 / (4 C^2 (HW)^2)`` into the loss instead, eq. 4; the two differ by
    a constant per layer, absorbed in the layer weights). Computed in float32 even under autocast:
    a sum of H * W products overflows half precision.
    """
    if features.ndim != 4:
        raise ValueError(f"gram_matrix expects features (B, C, H, W), got shape {tuple(features.shape)}")
    batch, channels, height, width = features.shape
    with torch.autocast(device_type=features.device.type, enabled=False):
        flat = features.float().reshape(batch, channels, height * width)
        return torch.bmm(flat, flat.transpose(1, 2)) / (channels * height * width)


def total_variation(x: Tensor, squared: bool = False) -> Tensor:
    """Anisotropic total variation of images (B, C, H, W): the mean absolute difference between
    vertical neighbours plus that between horizontal neighbours (a scalar).

    ``squared=False`` is the anisotropic L1 form (sum of |dy| and |dx| terms, each averaged over its
    differences); ``squared=True`` uses squared differences instead, Mahendran & Vedaldi 2015's
    ``R_V^beta`` with beta = 2 (the smooth form Johnson et al. 2016's code minimises). Averaged, not
    summed, so the weight does not depend on the image size.
    """
    if x.ndim != 4:
        raise ValueError(f"total_variation expects images (B, C, H, W), got shape {tuple(x.shape)}")
    dy = x[:, :, 1:, :] - x[:, :, :-1, :]
    dx = x[:, :, :, 1:] - x[:, :, :, :-1]
    if squared:
        return dy.pow(2).mean() + dx.pow(2).mean()
    return dy.abs().mean() + dx.abs().mean()


def _check_layer_weights(
    extractor: Features, layers_weights: Mapping[str, float], owner: str
) -> dict[str, float]:
    available = tuple(getattr(extractor, "layers", ()))
    weights = {str(name): weight for name, weight in dict(layers_weights).items()}
    if not weights:
        raise ConfigError(f"{owner}.layers_weights is empty; name layers of {available}")
    unknown = [name for name in weights if name not in available]
    if unknown:
        raise ConfigError(
            f"{owner}.layers_weights names layer(s) {unknown} the feature network does not return; "
            f"it returns {available} (set its `layers` to include them)"
        )
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise ConfigError(f"{owner}.layers_weights[{name}] must be a number >= 0, got {weight!r}")
    return {name: float(weight) for name, weight in weights.items()}


def feature_network_or_none(perceptual: object, key: str = "model.perceptual") -> nn.Module | None:
    """The ``perceptual`` group's network as a family receives it, or None for ``perceptual=none``.

    ``none`` composes to a node without ``_target_``: empty, or holding keys an experiment sets
    for its usual network (``perceptual.layers``), which Hydra merges in whatever the option.

    Raises:
        ConfigError: anything else (a node Hydra could not make into a network).
    """
    if perceptual is None or isinstance(perceptual, nn.Module):
        return perceptual
    if isinstance(perceptual, Mapping) and "_target_" not in perceptual:
        return None
    raise ConfigError(f"{key} must be a feature network or none, got {perceptual!r}")


class PerceptualLoss(nn.Module):
    """Content (feature reconstruction) loss: ``sum_l w_l * d(phi_l(x) / s, phi_l(y) / s)``.

    ``d`` is the mean squared error (``mse``: Johnson et al. 2016's ``1/(C H W) ||.||^2`` averaged
    over the batch; Gatys et al. 2016 eq. 1 up to a constant) or the mean absolute error (``l1``).
    The target's features carry no gradient: only ``x`` (the generated image) is optimised.

    Args:
        extractor: the feature network (``layers`` and ``forward(x) -> {layer: features}``).
        layers_weights: weight of each layer, e.g. ``{"relu5_4": 1.0}``.
        criterion: ``mse`` or ``l1``.
        feature_scale: features are divided by it before the distance; SRGAN's VGG54 loss uses
            12.75 (Ledig et al. 2017 §3.2; with MSE a factor 1 / 12.75^2 ~ 0.006 on eq. 5).
    """

    def __init__(
        self,
        extractor: Features,
        layers_weights: Mapping[str, float],
        criterion: str = "mse",
        feature_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if criterion not in CRITERIA:
            raise ConfigError(f"perceptual loss criterion {criterion!r} is not one of {list(CRITERIA)}")
        if (
            isinstance(feature_scale, bool)
            or not isinstance(feature_scale, int | float)
            or not feature_scale > 0
        ):
            raise ConfigError(f"perceptual loss feature_scale must be a number > 0, got {feature_scale!r}")
        self.extractor = extractor
        self.layers_weights = _check_layer_weights(extractor, layers_weights, "perceptual loss")
        self.criterion = criterion
        self.feature_scale = float(feature_scale)

    def forward(self, x: Tensor, target: Tensor) -> Tensor:
        """The weighted feature distance of images ``x`` to ``target`` (same shape), a scalar."""
        distance = F.mse_loss if self.criterion == "mse" else F.l1_loss
        features = self.extractor(x)
        with torch.no_grad():
            targets = self.extractor(target)
        total = x.new_zeros(())
        for name, weight in self.layers_weights.items():
            scale = self.feature_scale
            total = total + weight * distance(features[name] / scale, targets[name] / scale)
        return total


class StyleLoss(nn.Module):
    """Style loss: ``sum_l w_l * mean((G_l(x) - A_l)^2)`` with ``G_l`` the Gram matrix of layer l
    (:func:`gram_matrix`) and ``A_l`` the style image's, computed once by :meth:`set_style`.

    Gatys et al. 2016 eq. 4-5 (each layer's mean squared Gram difference, summed with weights),
    Johnson et al. 2016 §3.3 (style reconstruction loss). With a batch of style images the target
    is their mean Gram matrix; it applies to every image of ``x``.

    Args:
        extractor: the feature network (``layers`` and ``forward(x) -> {layer: features}``).
        layers_weights: weight of each layer, e.g. ``{"relu1_1": 1, "relu2_1": 1, ...}``.
    """

    def __init__(self, extractor: Features, layers_weights: Mapping[str, float]) -> None:
        super().__init__()
        self.extractor = extractor
        self.layers_weights = _check_layer_weights(extractor, layers_weights, "style loss")
        self._has_style = False

    @torch.no_grad()
    def set_style(self, style: Tensor) -> None:
        """Compute the target Gram matrices from style image(s) (B, C, H, W) in [-1, 1], once."""
        features = self.extractor(style)
        for name in self.layers_weights:
            # Buffers, so .to() moves them; not persistent: the style is an input, not a learned state.
            self.register_buffer(f"target_{name}", gram_matrix(features[name]).mean(0, keepdim=True), False)
        self._has_style = True

    def forward(self, x: Tensor) -> Tensor:
        """The weighted Gram distance of images ``x`` to the style, a scalar."""
        if not self._has_style:
            raise RuntimeError("StyleLoss.set_style(style_image) must be called before the loss is computed")
        features = self.extractor(x)
        total = x.new_zeros((), dtype=torch.float32)
        for name, weight in self.layers_weights.items():
            target = getattr(self, f"target_{name}")  # the buffer, wherever .to() moved it
            gram = gram_matrix(features[name])
            total = total + weight * F.mse_loss(gram, target.expand_as(gram))
        return total
