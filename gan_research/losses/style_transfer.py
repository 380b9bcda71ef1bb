"""Optimisation-based neural style transfer: Gatys, Ecker & Bethge (2016), "Image Style Transfer
Using Convolutional Neural Networks" (CVPR), sec. 2-3.

The image itself is the only parameter. Starting from white noise (the paper) or from the content
image, it is optimised so that its features at one layer match the content image's (eq. 1) and the
Gram matrices of its features at several layers match the style image's (eqs. 3-5), with the
total loss ``alpha * L_content + beta * L_style`` (eq. 7), plus an optional total-variation term
(not in the paper; Mahendran & Vedaldi 2015, used by most later implementations against
high-frequency noise). The paper uses VGG-19 (content ``conv4_2``, style ``conv1_1`` ... ``conv5_1``
with weights 1/5, L-BFGS; in Caffe, where the ReLUs run in place, those names denote the rectified
responses, ``relu4_2`` and ``relu1_1`` ... ``relu5_1`` in torchvision's naming, which
``networks.perceptual.VGG19Features`` uses). :func:`stylize` takes any feature extractor with the
``networks.perceptual.FeatureExtractor`` interface (a module with ``layers`` and
``forward(x) -> {layer: features}``), passed in, so this module imports no network.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.losses.perceptual import gram_matrix, total_variation
from gan_research.utils.validation import check_positive_int

OPTIMIZERS = ("adam", "lbfgs")
INITS = ("noise", "content")

# (step, image, losses): called with the iterate after ``step`` steps (0: the initial image),
# before it is changed again; the image is the optimised tensor itself, detached: clone it to keep it.
Callback = Callable[[int, Tensor, Mapping[str, float]], None]

# L-BFGS: curvature pairs kept. The paper gives no value; 100 (PyTorch's default) is plenty for
# one image and costs 2 x 100 image-sized buffers.
_LBFGS_HISTORY = 100
# Loss evaluations one L-BFGS step may spend (its line search's own cap, torch's max_ls, is 25).
_LBFGS_MAX_EVALS = 25


class StylizeResult(NamedTuple):
    """The stylised image and its losses.

    ``image``: (C, H, W) in [-1, 1], C and size as the content image's. ``history``: one entry per
    iterate (``steps + 1``: the initial image, then after each step), each with ``step``, the
    unweighted ``content``, ``style`` and ``tv`` losses, and the weighted ``total``.
    """

    image: Tensor
    history: list[dict[str, float]]


def _as_batch(x: Tensor, name: str) -> Tensor:
    """(C, H, W) or (1, C, H, W) float image as (1, C, H, W)."""
    if not isinstance(x, Tensor) or x.dim() not in (3, 4) or (x.dim() == 4 and x.shape[0] != 1):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ConfigError(f"the {name} image must be one (C, H, W) tensor, got {shape}")
    if x.shape[-3] not in (1, 3):
        raise ConfigError(f"the {name} image must have 1 or 3 channels, got {x.shape[-3]}")
    return (x if x.dim() == 4 else x.unsqueeze(0)).detach().to(torch.float32)


def _check_number(name: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name}={value!r} is invalid: expected a finite number")
    if value < 0 or (positive and value == 0):
        raise ConfigError(f"{name}={value!r} is invalid: expected a number {'>' if positive else '>='} 0")
    return float(value)


def check_layers(
    extractor: nn.Module, content_layer: str, style_layers_weights: Mapping[str, float]
) -> dict[str, float]:
    """The style layers' weights as floats, after checking every layer is one ``extractor`` returns.

    Raises:
        ConfigError: a layer the extractor does not compute (listing those it does), a negative
            weight, or no style layer with a positive weight.
    """
    available = tuple(getattr(extractor, "layers", ()))
    name = type(extractor).__name__
    if content_layer not in available:
        raise ConfigError(
            f"content_layer={content_layer!r} is not a layer {name} computes; "
            f"its layers: {', '.join(available)}"
        )
    if not isinstance(style_layers_weights, Mapping) or not style_layers_weights:
        raise ConfigError(
            f"style_layers={style_layers_weights!r} is invalid: expected {{layer: weight}} with at least "
            f"one of {name}'s layers: {', '.join(available)}"
        )
    weights = {}
    for layer, weight in style_layers_weights.items():
        if layer not in available:
            raise ConfigError(
                f"style_layers: {layer!r} is not a layer {name} computes; its layers: {', '.join(available)}"
            )
        weights[str(layer)] = _check_number(f"style_layers.{layer}", weight)
    if not any(weights.values()):
        raise ConfigError("style_layers: every weight is 0; give at least one layer a positive weight")
    return weights


class StyleTransferObjective(nn.Module):
    """Gatys et al.'s loss of an image, with the content features and style Grams fixed at build.

    - content, eq. (1): ``L_content = 1/2 Σ_ij (F^l_ij - P^l_ij)²`` at ``content_layer``, here
      averaged over the N_l × M_l entries instead of summed (``1/2 mean``), so that ``alpha``
      means the same at every image size and layer width;
    - Gram matrix, eq. (3): ``G^l_ij = Σ_k F^l_ik F^l_jk`` (inner products of the N_l feature
      maps over the M_l positions), from :func:`~gan_research.losses.perceptual.gram_matrix`,
      which divides it by N_l M_l;
    - style, eqs. (4)-(5): ``E_l = 1/(4 N_l² M_l²) Σ_ij (G^l_ij - A^l_ij)²`` and
      ``L_style = Σ_l w_l E_l``: exactly the paper's normalisation, which is the sum of the
      squared differences of the normalised Grams over 4, independent of the image size.
      (``losses.perceptual.StyleLoss`` takes their mean instead, which divides each layer by
      N_l² more: it weights wide layers less than the paper does.)
    - total, eq. (7): ``alpha L_content + beta L_style``, plus ``tv_weight`` times the total
      variation of the image (not in the paper).

    The target features are computed once here, so each evaluation costs one forward pass of
    the extractor (the reusable ``PerceptualLoss``/``StyleLoss`` recompute their target's).
    """

    def __init__(
        self,
        extractor: nn.Module,
        content: Tensor,
        style: Tensor,
        content_layer: str,
        style_layers_weights: Mapping[str, float],
        alpha: float = 1.0,
        beta: float = 1.0,
        tv_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.style_weights = check_layers(extractor, content_layer, style_layers_weights)
        self.content_layer = content_layer
        self.alpha = _check_number("alpha", alpha)
        self.beta = _check_number("beta", beta)
        self.tv_weight = _check_number("tv_weight", tv_weight)
        if self.alpha == 0 and self.beta == 0:
            raise ConfigError("alpha=0 and beta=0 leave nothing to optimise; give one a positive weight")
        self.extractor = extractor
        content, style = _as_batch(content, "content"), _as_batch(style, "style")
        with torch.no_grad():
            target = extractor(content)[content_layer]
            style_features = extractor(style.to(content.device))
        for layer in self.style_weights:
            if style_features[layer].dim() != 4:
                # A Gram matrix correlates feature maps over positions; a vector has no positions.
                maps = [name for name, f in style_features.items() if f.dim() == 4]
                raise ConfigError(
                    f"style_layers: {layer!r} gives {tuple(style_features[layer].shape)} features, not "
                    "feature maps (B, C, H, W), so it has no Gram matrix; layers with maps: "
                    f"{', '.join(maps) or 'none'}"
                )
        grams = {layer: gram_matrix(style_features[layer]) for layer in self.style_weights}
        # Buffers: they follow .to(device) and are never optimised.
        self.register_buffer("content", content)
        self.register_buffer("content_target", target.detach())
        for i, layer in enumerate(self.style_weights):
            self.register_buffer(f"style_target_{i}", grams[layer].detach())

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        """The losses of ``image`` (1, C, H, W): ``content``, ``style``, ``tv`` (unweighted) and ``total``."""
        features = self.extractor(image)
        content = 0.5 * (features[self.content_layer] - self.content_target).pow(2).mean()
        style = image.new_zeros(())
        for i, (layer, weight) in enumerate(self.style_weights.items()):
            if weight == 0:
                continue
            difference = gram_matrix(features[layer]) - getattr(self, f"style_target_{i}")
            # gram_matrix divides eq. (3)'s G by N_l M_l, so eq. (4)'s
            # Σ (G - A)² / (4 N_l² M_l²) is Σ (g - a)² / 4 of the normalised Grams g, a.
            style = style + weight * difference.pow(2).sum() / 4
        tv = total_variation(image) if self.tv_weight else image.new_zeros(())
        total = self.alpha * content + self.beta * style + self.tv_weight * tv
        return {"content": content, "style": style, "tv": tv, "total": total}


def _initial_image(init: str, content: Tensor, seed: int) -> Tensor:
    if init == "content":
        return content.clone()
    # The paper starts from white noise; uniform over the whole pixel range, drawn from a private
    # generator so the global RNG (and so the caller's other draws) is left alone.
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(content.shape, generator=generator) * 2 - 1
    return noise.to(content.device)


def _make_optimizer(name: str, image: Tensor, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam([image], lr=lr)
    # One L-BFGS iteration per step (max_iter=1; the curvature history persists between calls),
    # so a step is one update for the progress bar, the callback and the clamp, as with Adam. The
    # strong-Wolfe line search makes lr=1 a safe default (the paper's optimiser). max_eval must be
    # given: its default, max_iter * 5 // 4, is 1 here, which cuts the line search off after one
    # evaluation and returns a zero step from the second iteration on (the image never changes).
    return torch.optim.LBFGS(
        [image],
        lr=lr,
        max_iter=1,
        max_eval=_LBFGS_MAX_EVALS,
        history_size=_LBFGS_HISTORY,
        line_search_fn="strong_wolfe",
    )


def optimize_image(
    objective: StyleTransferObjective,
    steps: int = 200,
    optimizer: str = "lbfgs",
    lr: float = 1.0,
    init: str = "noise",
    seed: int = 0,
    callback: Callback | None = None,
) -> StylizeResult:
    """Minimise ``objective`` over the image: the optimisation of :func:`stylize`, for a caller that
    built (and so checked) the objective first, as ``gan-stylize`` does before writing anything.

    ``init``: ``noise`` (the paper's white noise, uniform over [-1, 1], drawn with ``seed`` from a
    private generator) or ``content``. The image is clamped to [-1, 1] after every step.

    Raises:
        ConfigError: an unknown optimiser or init, a non-positive ``steps`` or ``lr``, or a loss that
            became NaN/infinite (naming the step: lower ``lr``).
    """
    steps, lr, seed = check_schedule(steps, optimizer, lr, init, seed)
    image = _initial_image(init, objective.content, seed).requires_grad_(True)
    opt = _make_optimizer(optimizer, image, lr)
    history: list[dict[str, float]] = []

    def record(step: int, losses: Mapping[str, Tensor]) -> None:
        values = {key: float(value.detach()) for key, value in losses.items()}
        if not all(math.isfinite(v) for v in values.values()):
            raise ConfigError(
                f"the loss became {values['total']} at step {step} (optimizer={optimizer}, lr={lr}); lower lr"
            )
        history.append({"step": step, **values})
        if callback is not None:
            callback(step, image.detach(), history[-1])

    for step in range(steps):
        evaluated = False

        def closure(step: int = step) -> Tensor:
            nonlocal evaluated
            opt.zero_grad(set_to_none=True)
            losses = objective(image)
            losses["total"].backward()
            # L-BFGS evaluates again along its line search; only the first evaluation is at the
            # iterate itself, so only it enters the history.
            if not evaluated:
                evaluated = True
                record(step, losses)
            return losses["total"]

        opt.step(closure)
        with torch.no_grad():
            # Pixels outside the image range are not an image. The paper's optimisation is
            # unconstrained, and unclamped L-BFGS drives pixels to about [-4, 5] (digits at 64 px,
            # perceptual=random), an image that is worse once clamped for display than one
            # clamped at every step. The clamp is a projection L-BFGS does not know of, so once
            # it has converged its loss may creep up by about 1% (experiments/style_transfer).
            image.clamp_(-1.0, 1.0)
    with torch.no_grad():
        record(steps, objective(image))
    return StylizeResult(image.detach()[0], history)


def stylize(
    content: Tensor,
    style: Tensor,
    extractor: nn.Module,
    content_layer: str,
    style_layers_weights: Mapping[str, float],
    alpha: float = 1.0,
    beta: float = 10.0,
    tv_weight: float = 0.0,
    steps: int = 200,
    optimizer: str = "lbfgs",
    lr: float = 1.0,
    init: str = "noise",
    seed: int = 0,
    callback: Callback | None = None,
) -> StylizeResult:
    """Gatys et al. (2016): the image whose ``content_layer`` features match ``content`` and whose
    Grams at ``style_layers_weights``' layers match ``style``'s, after ``steps`` optimiser steps.

    ``content``/``style``: (C, H, W) or (1, C, H, W) in [-1, 1] (the style may differ in size and
    channels; the result has the content's). ``extractor``: a frozen feature network computing
    every named layer (``networks.perceptual``), on the content's device. ``alpha``/``beta``:
    content and style weights (eq. 7; their ratio is what matters, and it depends on the network's
    feature scale). ``tv_weight``: total variation. ``optimizer``: ``lbfgs`` (the paper's) or
    ``adam``, with ``lr`` (L-BFGS: 1, its line search picks the step; Adam: about 0.05 for pixels
    in [-1, 1]). ``init``: ``noise`` (the paper's white noise, drawn with ``seed``) or ``content``.
    ``callback(step, image, losses)``: see :data:`Callback`.

    Raises:
        ConfigError: an unknown layer, optimiser or init, a non-positive ``steps`` or ``lr``, a
            negative weight, a style layer without feature maps, or a loss that became NaN/infinite.
    """
    check_schedule(steps, optimizer, lr, init, seed)
    objective = StyleTransferObjective(
        extractor, content, style, content_layer, style_layers_weights, alpha, beta, tv_weight
    )
    return optimize_image(objective, steps, optimizer, lr, init, seed, callback)


def check_schedule(
    steps: object, optimizer: object, lr: object, init: object, seed: object
) -> tuple[int, float, int]:
    """``(steps, lr, seed)`` checked, with the optimiser and init names.

    Raises:
        ConfigError: naming the bad value and the valid ones.
    """
    check_positive_int("", "steps", steps, form="override")
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer={optimizer!r} is invalid; valid: {', '.join(OPTIMIZERS)}")
    if init not in INITS:
        raise ConfigError(f"init={init!r} is invalid; valid: {', '.join(INITS)}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed!r} is invalid: expected an integer")
    return steps, _check_number("lr", lr, positive=True), seed
