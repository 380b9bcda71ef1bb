"""Relativistic average adversarial losses.

Jolicoeur-Martineau, "The relativistic discriminator: a key element missing from standard GAN",
ICLR 2019 (arXiv:1807.00734), sec. 4.2 (relativistic average GANs, eqs. 13-14 for the standard
loss) and appendix A (the hinge form). D's raw output C(x) is compared with the *average* score
of the other kind of sample: a real sample should look more real than the average fake, and a
fake less real than the average real. Because G's loss then reads D's scores of real data too
(the generator is rewarded for making real data look less real), these losses declare
``relativistic = True`` and every family passes D's scores of the real batch of the step to
``generator_loss(fake, real)``.

MSG-GAN (Karnewar & Wang 2020, sec. 4) trains with the hinge form (RaHinge) at every resolution.

Averages are taken over the batch dimension only, so a patch discriminator's map of scores
(B, 1, H, W) is compared patch position by patch position (a (B,) score: the batch mean).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from gan_research.losses.adversarial import AdversarialLoss


def _relative(scores: Tensor, others: Tensor) -> Tensor:
    """C(x) − E_{other}[C(x')], the average taken over the other batch's samples."""
    return scores - others.mean(dim=0, keepdim=True)


def _require_real(real: Tensor | None, name: str) -> Tensor:
    if real is None:
        raise ValueError(
            f"{name}.generator_loss needs D's scores of the real batch (relativistic loss); "
            "the family must pass generator_loss(fake_scores, real_scores)"
        )
    return real


class RelativisticAverageHingeLoss(AdversarialLoss):
    """RaHinge (Jolicoeur-Martineau 2019, appendix A; MSG-GAN's loss):

    L_D = E_r[max(0, 1 − (C(x_r) − E_f C(x_f)))] + E_f[max(0, 1 + (C(x_f) − E_r C(x_r)))],
    L_G = E_f[max(0, 1 − (C(x_f) − E_r C(x_r)))] + E_r[max(0, 1 + (C(x_r) − E_f C(x_f)))].
    """

    relativistic = True

    def decision_threshold(self, real: Tensor, fake: Tensor) -> Tensor | float:
        # D calls a sample real when it scores above the other kind's average: with both
        # averages in play, the midpoint of the two batch means is that boundary.
        return 0.5 * (real.mean() + fake.mean())

    def discriminator_loss(self, real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
        return F.relu(1.0 - _relative(real, fake)).mean() + F.relu(1.0 + _relative(fake, real)).mean()

    def generator_loss(self, fake: Tensor, real: Tensor | None = None) -> Tensor:
        real = _require_real(real, type(self).__name__)
        return F.relu(1.0 - _relative(fake, real)).mean() + F.relu(1.0 + _relative(real, fake)).mean()


class RelativisticAverageStandardLoss(AdversarialLoss):
    """RaSGAN (Jolicoeur-Martineau 2019, eqs. 13-14), with D̃(x_r) = σ(C(x_r) − E_f C(x_f)) and
    D̃(x_f) = σ(C(x_f) − E_r C(x_r)):

    L_D = −E_r[log D̃(x_r)] − E_f[log(1 − D̃(x_f))],
    L_G = −E_f[log D̃(x_f)] − E_r[log(1 − D̃(x_r))],

    in softplus form (−log σ(t) = softplus(−t), −log(1 − σ(t)) = softplus(t)), exact for large |t|.
    """

    relativistic = True

    def decision_threshold(self, real: Tensor, fake: Tensor) -> Tensor | float:
        return 0.5 * (real.mean() + fake.mean())

    def discriminator_loss(self, real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
        return F.softplus(-_relative(real, fake)).mean() + F.softplus(_relative(fake, real)).mean()

    def generator_loss(self, fake: Tensor, real: Tensor | None = None) -> Tensor:
        real = _require_real(real, type(self).__name__)
        return F.softplus(-_relative(fake, real)).mean() + F.softplus(_relative(real, fake)).mean()


__all__ = ["RelativisticAverageHingeLoss", "RelativisticAverageStandardLoss"]
