"""Discriminator regularisers: gradient penalties.

Each regulariser is a callable ``(score_fn, real, fake) -> weighted penalty``
where ``score_fn`` maps a batch of samples to D's scores. Passing a closure
rather than the network lets conditional families bind labels without the
regulariser knowing about them. How often a penalty is applied (lazy
regularisation) is a schedule setting (``schedule.d_reg_every``), not part of
the regulariser.

Both penalties constrain each sample's own input gradient ∇_x D(x), so they need a
critic whose score of a sample depends on that sample alone: no batch norm, whose
batch statistics couple the samples (Gulrajani et al. 2017, sec. 4: "no critic batch
normalization"; layer norm instead). A regulariser says so with
``needs_per_sample_critic = True``, and the model refuses to build with a batch-normalised
discriminator (``AdversarialModule.check_critic_normalisation``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

ScoreFn = Callable[[Tensor], Tensor]


def _input_gradients(score_fn: ScoreFn, x: Tensor, grad_scale: Tensor | float | None = None) -> Tensor:
    """∇_x D(x) per sample, flattened.

    ``grad_scale`` (the fp16 GradScaler's current scale): the scores are multiplied by it
    before differentiating and the gradients divided by it after, so small input gradients
    do not underflow in fp16 (PyTorch's AMP recipe for gradient penalties).
    """
    x = x.detach().requires_grad_(True)
    scores = score_fn(x).sum()
    if grad_scale is not None:
        scores = scores * grad_scale
    # create_graph: the penalty is itself differentiated w.r.t. D's weights.
    (grad,) = torch.autograd.grad(scores, x, create_graph=True)
    if grad_scale is not None:
        grad = grad / grad_scale
    return grad.flatten(1)


class GradientPenalty:
    """WGAN-GP two-sided gradient penalty: ``weight · E_x̂[(‖∇_x̂ D(x̂)‖₂ − target)²]``.

    Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017,
    eq. (3): λ E_x̂[(‖∇_x̂ D(x̂)‖₂ - 1)²] with x̂ = εx + (1-ε)x̃, ε ~ U[0, 1]
    drawn per sample, λ = 10 (``weight``, ``target`` 1: ``conf/loss/wgan_gp.yaml``).

    ``target`` generalises the 1 to a target norm γ, and ``weight`` multiplies the squared
    deviation as it is: nothing is divided by γ². ProGAN (Karras et al. 2018, arXiv:1710.10196)
    scales its penalty as λ·(‖∇‖ − γ)²/γ² (official code, tkarras/progressive_growing_of_gans
    ``loss.py``: ``gradient_penalty * (wgan_lambda / wgan_target**2)``), with λ = 10 and γ = 1,
    i.e. exactly eq. (3), in its main runs (``config.py``: ``iwass_target=1.0``) and γ = 750
    only in its CIFAR-10 runs (sec. 6.5; ``config.py``: ``iwass_target=750.0``). That variant is
    ``GradientPenalty(weight=10 / 750**2, target=750)``; ``experiment=progan_digits`` uses
    ``loss=wgan_gp`` (λ = 10, γ = 1), where both forms agree.
    """

    needs_per_sample_critic: bool = True

    def __init__(self, weight: float = 10.0, target: float = 1.0) -> None:
        if weight < 0:
            raise ValueError(f"GradientPenalty weight must be >= 0, got {weight}")
        self.weight = weight
        self.target = target

    def __call__(
        self, score_fn: ScoreFn, real: Tensor, fake: Tensor, grad_scale: Tensor | float | None = None
    ) -> Tensor:
        shape = (real.shape[0],) + (1,) * (real.dim() - 1)
        eps = torch.rand(shape, device=real.device, dtype=real.dtype)
        x_hat = eps * real.detach() + (1.0 - eps) * fake.detach()
        norms = _input_gradients(score_fn, x_hat, grad_scale).float().norm(2, dim=1)
        return self.weight * ((norms - self.target) ** 2).mean()

    def __repr__(self) -> str:
        return f"GradientPenalty(weight={self.weight}, target={self.target})"


class R1Penalty:
    """R1 zero-centred gradient penalty on real data.

    Mescheder, Geiger, Nowozin, "Which Training Methods for GANs do actually
    Converge?", ICML 2018, eq. (9): (γ/2) E_x[‖∇_x D(x)‖²].
    """

    needs_per_sample_critic: bool = True

    def __init__(self, gamma: float = 10.0) -> None:
        if gamma < 0:
            raise ValueError(f"R1Penalty gamma must be >= 0, got {gamma}")
        self.gamma = gamma

    def __call__(
        self, score_fn: ScoreFn, real: Tensor, fake: Tensor, grad_scale: Tensor | float | None = None
    ) -> Tensor:
        grad = _input_gradients(score_fn, real, grad_scale).float()
        return 0.5 * self.gamma * grad.pow(2).sum(dim=1).mean()

    def __repr__(self) -> str:
        return f"R1Penalty(gamma={self.gamma})"
