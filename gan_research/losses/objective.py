"""The ``loss`` config group's object: an adversarial loss plus its regularisers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from torch import Tensor

from gan_research.errors import ConfigError
from gan_research.losses.adversarial import AdversarialLoss

Regularizer = Callable[[Callable[[Tensor], Tensor], Tensor, Tensor], Tensor]


@dataclass
class GANObjective:
    """What a family optimises.

    adversarial: the adversarial loss (``gan_research.losses.adversarial``).
    regularizers: named D regularisers added to D's loss, e.g. ``{"gp": GradientPenalty}``;
        each is logged as ``train/d_<name>``.
    weight_clip: clip every D parameter to [-c, c] after each D step
        (Arjovsky et al. 2017, Algorithm 1, c = 0.01); ``None`` disables it.
    """

    adversarial: AdversarialLoss
    regularizers: Mapping[str, Regularizer] = field(default_factory=dict)
    weight_clip: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.adversarial, AdversarialLoss):
            raise ConfigError(
                f"loss.adversarial must be an AdversarialLoss, got {type(self.adversarial).__name__}; "
                "see gan_research/losses/adversarial.py for the available losses"
            )
        if self.weight_clip is not None and self.weight_clip <= 0:
            raise ConfigError(f"loss.weight_clip must be positive or null, got {self.weight_clip}")
        # Hydra hands over a DictConfig; a plain dict keeps the objective picklable.
        self.regularizers = dict(self.regularizers or {})
