"""The auxiliary classifier GAN (Odena, Olah & Shlens 2017, arXiv:1610.09585).

G(z, c) draws an image of class c; D sees the image only and outputs both the
real/fake score and class logits from the same body (``AuxiliaryDCGANDiscriminator``).
With L_S the adversarial objective and L_C = E[log P(C = c | X_real)] +
E[log P(C = c | X_fake)] (eq. 2-3), D is trained to maximise L_S + L_C and G to
maximise L_C - L_S. As losses to minimise: D adds ``class_weight`` x (CE on real +
CE on fake) to its adversarial loss and G adds ``class_weight`` x CE on fake, so both
networks make generated images recognisable as their class.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from gan_research.errors import ConfigError
from gan_research.families.cgan import ConditionalGAN
from gan_research.families.gan import LossTerms
from gan_research.utils.validation import check_positive_float


class ACGAN(ConditionalGAN):
    """AC-GAN: G(z, c) → image; D(x) → (score, class logits).

    Args:
        class_weight: weight of the auxiliary classification loss in both networks' losses
            (1 in the paper).
        **kwargs: those of :class:`~gan_research.families.cgan.ConditionalGAN`.
    """

    def __init__(self, *args: Any, class_weight: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.class_weight = check_positive_float("model", "class_weight", class_weight, form="key")

    def check_network_classes(self) -> None:
        have_g = getattr(self.generator, "num_classes", None)
        have_d = getattr(self.discriminator, "num_outputs", None)
        checks = (("generator", have_g, "num_classes"), ("discriminator", have_d, "num_outputs"))
        for name, have, key in checks:
            if have != self.num_classes:
                raise ConfigError(
                    f"model.{name} ({type(getattr(self, name)).__name__}) has {key}={have!r} but "
                    f"model.num_classes={self.num_classes}; AC-GAN needs a class-conditional generator and a "
                    f"discriminator with a class head ({key}: ${{model.num_classes}})"
                )

    def discriminate(self, x: Tensor, condition: Tensor) -> tuple[Tensor, Tensor]:
        # The label does not enter D: it has to recover it (the class logits).
        return self.discriminator(x)

    def discriminator_extra_losses(
        self, real_extra: Tensor, fake_extra: Tensor, real_condition: Tensor, fake_condition: Tensor
    ) -> LossTerms:
        ce = F.cross_entropy(real_extra.float(), real_condition) + F.cross_entropy(
            fake_extra.float(), fake_condition
        )
        return LossTerms({"class": self.class_weight * ce})

    def generator_extra_losses(self, fake: Tensor, fake_extra: Tensor, fake_condition: Tensor) -> LossTerms:
        return LossTerms({"class": self.class_weight * F.cross_entropy(fake_extra.float(), fake_condition)})
