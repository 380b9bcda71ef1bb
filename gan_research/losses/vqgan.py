"""VQGAN's adaptive weight of the adversarial term (Esser, Rombach & Ommer 2021, "Taming Transformers
for High-Resolution Image Synthesis", arXiv:2012.09841, eq. 7).

The first stage minimises L_VQ + λ L_GAN (eq. 6) with λ chosen at every step so that the
adversarial term's gradient at the decoder's last layer G_L is as large as the reconstruction's:

    λ = ‖∇_{G_L} L_rec‖ / (‖∇_{G_L} L_GAN‖ + δ).

The paper gives δ = 1e-6; the released code (CompVis/taming-transformers,
taming/modules/losses/vqperceptual.py, ``VQLPIPSWithDiscriminator.calculate_adaptive_weight``)
uses 1e-4 and clamps λ to [0, 1e4] before detaching it; the defaults here are the code's. The code
then multiplies λ by ``disc_weight`` (0.8 in its configs) and by a factor that is 0 before
``disc_start``; both belong to the caller.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gan_research.utils.validation import check_positive_float

__all__ = ["adaptive_weight"]


def adaptive_weight(
    rec_loss: Tensor, g_loss: Tensor, last_layer: Tensor, eps: float = 1e-4, max_weight: float = 1e4
) -> Tensor:
    """λ of VQGAN's eq. 7: ‖∇_last rec_loss‖ / (‖∇_last g_loss‖ + eps), clamped to [0, max_weight].

    Args:
        rec_loss: the reconstruction (perceptual + pixel) loss, a scalar that depends on ``last_layer``.
        g_loss: the generator's adversarial loss, a scalar that depends on ``last_layer``.
        last_layer: the decoder's last weight (``VQGANAutoencoder.last_layer``).
        eps: δ, keeping λ finite when the adversarial gradient vanishes (taming: 1e-4; paper: 1e-6).
        max_weight: the upper clamp (taming: 1e4).

    Returns:
        λ as a detached scalar tensor: it scales the adversarial term without being trained through.
        Both gradients are taken with ``retain_graph=True``, so the caller can still backward
        through ``rec_loss + λ·g_loss``.
    """
    eps = check_positive_float("adaptive_weight", "eps", eps)
    max_weight = check_positive_float("adaptive_weight", "max_weight", max_weight)
    if not (rec_loss.requires_grad and g_loss.requires_grad):
        # taming catches the RuntimeError autograd raises here and uses 0 in validation; a caller that
        # wants that says so explicitly instead of having a training bug silently disable the GAN term.
        raise ValueError(
            "adaptive_weight needs rec_loss and g_loss with gradients to last_layer (call it in training, "
            f"under grad mode); got requires_grad={rec_loss.requires_grad} and {g_loss.requires_grad}"
        )
    (rec_grad,) = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)
    (g_grad,) = torch.autograd.grad(g_loss, last_layer, retain_graph=True)
    weight = torch.linalg.vector_norm(rec_grad) / (torch.linalg.vector_norm(g_grad) + eps)
    return weight.clamp(0.0, max_weight).detach()
