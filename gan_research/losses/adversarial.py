"""Adversarial losses as pure functions of discriminator outputs.

Every discriminator returns raw scores of shape (B,): logits of P(real) for the
probabilistic losses, unbounded critic values for Wasserstein and hinge. The
losses know nothing of networks or optimisers (stylegan2-ada's split), so a
family calls ``discriminator_loss(real_scores, fake_scores)`` and
``generator_loss(fake_scores, real_scores)`` and nothing else. ``real_scores`` in G's
loss is read only by the relativistic losses (``relativistic = True``,
``gan_research.losses.relativistic``); a family computes them (D on the step's real
batch, no gradient) only when the loss declares it, and passes None otherwise.

All losses are *minimised*; sign conventions below follow from that.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


class AdversarialLoss:
    """Interface of an adversarial loss.

    ``probabilistic`` losses read D's output as the logit of P(real); they
    accept a real-label target below 1 (one-sided label smoothing) and their
    scores are meaningful as probabilities through a sigmoid.
    """

    probabilistic: bool = False
    #: G's loss compares fakes with real data (relativistic losses): the family passes D's
    #: scores of the real batch as ``generator_loss(fake, real)``.
    relativistic: bool = False

    def decision_threshold(self, real: Tensor, fake: Tensor) -> Tensor | float:
        """Score above which D calls a sample real (for the D-accuracy diagnostics).

        Losses with targets have a fixed boundary; a Wasserstein critic has none,
        so it is the midpoint of the batch's mean real and fake scores.
        """
        return 0.5 * (real.mean() + fake.mean())

    def discriminator_loss(self, real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
        raise NotImplementedError

    def generator_loss(self, fake: Tensor, real: Tensor | None = None) -> Tensor:
        """G's loss from D's scores of the fake batch (``real``: of the real batch, read by
        relativistic losses only)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _bce_real(real: Tensor, target: float) -> Tensor:
    # BCE-with-logits against a constant target; softplus forms are exact and
    # stable for large |logits| (log σ(x) = -softplus(-x), log(1-σ(x)) = -softplus(x)).
    if target == 1.0:
        return F.softplus(-real).mean()
    return (target * F.softplus(-real) + (1.0 - target) * F.softplus(real)).mean()


class MinimaxLoss(AdversarialLoss):
    """The original saturating minimax game.

    Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014, eq. (1):
    min_G max_D E_x[log D(x)] + E_z[log(1 - D(G(z)))].
    D minimises -log σ(r) - log(1 - σ(f)); G minimises log(1 - σ(f)) = -softplus(f),
    which saturates (vanishing gradient) when D confidently rejects fakes.
    """

    probabilistic = True

    def decision_threshold(self, real: Tensor, fake: Tensor) -> float:
        return 0.0  # logit 0 ⇔ D(x) = 1/2

    def discriminator_loss(self, real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
        return _bce_real(real, real_target) + F.softplus(fake).mean()

    def generator_loss(self, fake: Tensor, real: Tensor | None = None) -> Tensor:
        return -F.softplus(fake).mean()


class NonSaturatingLoss(MinimaxLoss):
    """The non-saturating heuristic of the same paper.

    Goodfellow et al. 2014, Sec. 3: instead of minimising log(1 - D(G(z))), G
    maximises log D(G(z)), i.e. minimises softplus(-f). D's loss is unchanged.
    """

    def generator_loss(self, fake: Tensor, real: Tensor | None = None) -> Tensor:
        return F.softplus(-fake).mean()


class WassersteinLoss(AdversarialLoss):
    """Wasserstein GAN critic and generator losses.

    Arjovsky, Chintala, Bottou, "Wasserstein GAN", ICML 2017, eq. (3) and
    Algorithm 1: the critic maximises E[f(x)] - E[f(G(z))] (we minimise its
    negation); G minimises -E[f(G(z))]. The Lipschitz constraint comes from
    weight clipping (``GANObjective.weight_clip``, WGAN) or a gradient penalty
    (``GradientPenalty``, WGAN-GP).
    """

    def discriminator_loss(self, real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
        return fake.mean() - real.mean()

    def generator_loss(self, fake: Tensor, real: Tensor | None = None) -> Tensor:
        return -fake.mean()


class LeastSquaresLoss(AdversarialLoss):
    """Least Squares GAN.

    Mao et al., "Least Squares Generative Adversarial Networks", ICCV 2017, eq. (2):
    min_D ½E[(D(x) - b)²] + ½E[(D(G(z)) - a)²],  min_G ½E[(D(G(z)) - c)²],
    with the 0-1 coding a=0, b=c=1 (their eq. 9) by default. D's raw output is
    the regression target (no sigmoid). One-sided label smoothing replaces b.
    """

    probabilistic = False

    def __init__(self, a: float = 0.0, b: float = 1.0, c: float = 1.0) -> None:
        self.a, self.b, self.c = a, b, c

    def decision_threshold(self, real: Tensor, fake: Tensor) -> float:
        return 0.5 * (self.a + self.b)

    def discriminator_loss(self, real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
        # real_target < 1 means "smooth by (1 - real_target)": shrink b towards a by that fraction.
        b = self.b - (1.0 - real_target) * (self.b - self.a)
        return 0.5 * ((real - b) ** 2).mean() + 0.5 * ((fake - self.a) ** 2).mean()

    def generator_loss(self, fake: Tensor, real: Tensor | None = None) -> Tensor:
        return 0.5 * ((fake - self.c) ** 2).mean()

    def __repr__(self) -> str:
        return f"LeastSquaresLoss(a={self.a}, b={self.b}, c={self.c})"


class HingeLoss(AdversarialLoss):
    """Hinge loss.

    Lim & Ye, "Geometric GAN", 2017; in the form of Miyato et al., "Spectral
    Normalization for GANs", ICLR 2018, eqs. (16)-(17):
    L_D = E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))],  L_G = -E[D(G(z))].
    """

    def decision_threshold(self, real: Tensor, fake: Tensor) -> float:
        return 0.0  # the margins sit at +1 (real) and -1 (fake)

    def discriminator_loss(self, real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()

    def generator_loss(self, fake: Tensor, real: Tensor | None = None) -> Tensor:
        return -fake.mean()


def supports_label_smoothing(loss: AdversarialLoss) -> bool:
    """Whether a real-label target below 1 means something for ``loss``."""
    return isinstance(loss, MinimaxLoss | LeastSquaresLoss)


__all__ = [
    "AdversarialLoss",
    "HingeLoss",
    "LeastSquaresLoss",
    "MinimaxLoss",
    "NonSaturatingLoss",
    "WassersteinLoss",
    "supports_label_smoothing",
]
