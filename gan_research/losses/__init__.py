"""Adversarial losses (pure functions of D's scores) and D regularisers."""

from gan_research.losses.adversarial import (
    AdversarialLoss,
    HingeLoss,
    LeastSquaresLoss,
    MinimaxLoss,
    NonSaturatingLoss,
    WassersteinLoss,
    supports_label_smoothing,
)
from gan_research.losses.objective import GANObjective
from gan_research.losses.regularizers import GradientPenalty, R1Penalty

__all__ = [
    "AdversarialLoss",
    "GANObjective",
    "GradientPenalty",
    "HingeLoss",
    "LeastSquaresLoss",
    "MinimaxLoss",
    "NonSaturatingLoss",
    "R1Penalty",
    "WassersteinLoss",
    "supports_label_smoothing",
]
