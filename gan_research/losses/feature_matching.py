"""Feature matching and the KL term of an image encoder.

- **Mean feature matching** (Salimans et al. 2016, "Improved Techniques for Training GANs",
  arXiv:1606.03498, sec. 3.1): ‖E_x f(x) − E_z f(G(z))‖²₂ on D's last hidden layer f. The reference
  (openai/improved-gan ``train_cifar_feature_matching.py``: ``T.mean(abs(m1-m2))``) takes the mean
  absolute difference of the batch means; the paper's squared norm is used here, averaged over the
  feature entries (so the weight does not scale with the layer's width).

- **Discriminator feature matching** (Wang et al. 2018, "High-Resolution Image Synthesis and
  Semantic Manipulation with Conditional GANs", arXiv:1711.11585, eq. 4; used by GauGAN, Park
  et al. 2019, sec. 4 with λ 10): the L1 distance between D's intermediate features of the
  synthesised and of the real image, summed over layers, averaged over the D scales. The reference
  (NVlabs/SPADE ``models/pix2pix_model.py``, ``compute_generator_loss``) takes the mean absolute
  error per layer (``nn.L1Loss()``), excludes each scale's last output (the logits) and detaches the
  real features; the same here. pix2pixHD's eq. 4 also divides each layer by its element count N_i,
  which the mean does.
- **KL divergence** of the encoder's q(z | x) = N(μ, σ²) from N(0, I) (Kingma & Welling 2014,
  appendix B): ``-½ Σ (1 + log σ² − μ² − σ²)``, summed over the latent dimensions. The reference
  (``KLDLoss``) also sums over the batch; here it is averaged over the batch, so the weight (GauGAN:
  0.05) means the same at every batch size (identical to the reference at its per-GPU batch of 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def mean_feature_matching(real_features: Tensor, fake_features: Tensor) -> Tensor:
    """mean_k (E f_k(x) − E f_k(G(z)))² over the entries k of D's features (sec. 3.1); the batch
    means are taken in float32 and the real features carry no gradient."""
    real_mean = real_features.detach().flatten(1).float().mean(dim=0)
    fake_mean = fake_features.flatten(1).float().mean(dim=0)
    return (real_mean - fake_mean).pow(2).mean()


def discriminator_feature_matching(
    fake_outputs: Sequence[Sequence[Tensor]], real_outputs: Sequence[Sequence[Tensor]]
) -> Tensor:
    """Σ_layers mean |D_k^(i)(fake) − D_k^(i)(real)|, averaged over the scales k.

    Args:
        fake_outputs, real_outputs: per scale, the list of D's layer outputs, the last being the
            logits (excluded); real features carry no gradient.
    """
    if len(fake_outputs) != len(real_outputs) or not fake_outputs:
        raise ValueError(
            f"need the same number (>= 1) of D scales, got {len(fake_outputs)} and {len(real_outputs)}"
        )
    total = fake_outputs[0][0].new_zeros(())
    for fake_layers, real_layers in zip(fake_outputs, real_outputs, strict=True):
        for fake, real in zip(fake_layers[:-1], real_layers[:-1], strict=True):
            total = total + F.l1_loss(fake, real.detach())
    return total / len(fake_outputs)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) summed over the latent dimensions, averaged over the batch."""
    per_sample = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
    return per_sample.mean()


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    """z = μ + σ ε, ε ~ N(0, I): a sample of q(z | x) with gradients to μ and log σ²."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
