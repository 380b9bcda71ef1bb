"""GauGAN's generator terms: discriminator feature matching (pix2pixHD eq. 4), the encoder's KL
divergence from N(0, I) and the reparameterised sample."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from gan_research.losses.feature_matching import discriminator_feature_matching, gaussian_kl, reparameterize


def scale(*values: float, logits: float = 0.0) -> list[torch.Tensor]:
    """One D scale's outputs: a (2, 3, 4, 4) feature map per value, then a (2, 1, 3, 3) logit map."""
    return [torch.full((2, 3, 4, 4), v) for v in values] + [torch.full((2, 1, 3, 3), logits)]


# -- feature matching --------------------------------------------------------------------------
def test_identical_features_give_zero() -> None:
    torch.manual_seed(0)
    outputs = [[torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2), torch.randn(2, 1, 2, 2)] for _ in range(2)]
    assert float(discriminator_feature_matching(outputs, outputs)) == 0.0


def test_the_logits_are_not_matched() -> None:
    fake, real = [scale(1.0, 2.0, logits=5.0)], [scale(1.0, 2.0, logits=-5.0)]
    assert float(discriminator_feature_matching(fake, real)) == 0.0


def test_layers_are_summed_as_mean_absolute_errors_and_scales_averaged() -> None:
    # Scale 1: |1 - 0| + |2 - 0.5| = 2.5; scale 2: |0 - 3| = 3. Average over the 2 scales: 2.75.
    fake = [scale(1.0, 2.0), scale(0.0)]
    real = [scale(0.0, 0.5), scale(3.0)]
    assert float(discriminator_feature_matching(fake, real)) == pytest.approx(2.75)
    # A mean per layer: a layer's size does not weigh it (pix2pixHD's 1 / N_i).
    big = [[torch.ones(2, 64, 16, 16), torch.zeros(2, 1, 1, 1)]]
    small = [[torch.zeros(2, 64, 16, 16), torch.zeros(2, 1, 1, 1)]]
    assert float(discriminator_feature_matching(big, small)) == pytest.approx(1.0)


def test_gradient_flows_to_the_fake_features_only() -> None:
    torch.manual_seed(0)
    fake = [[torch.randn(2, 3, 4, 4, requires_grad=True), torch.randn(2, 1, 2, 2, requires_grad=True)]]
    real = [[torch.randn(2, 3, 4, 4, requires_grad=True), torch.randn(2, 1, 2, 2, requires_grad=True)]]
    discriminator_feature_matching(fake, real).backward()
    assert fake[0][0].grad is not None and bool(fake[0][0].grad.abs().sum() > 0)
    # Mean absolute error: each element's gradient is sign(fake - real) / N.
    expected = torch.sign(fake[0][0] - real[0][0]).detach() / fake[0][0].numel()
    torch.testing.assert_close(fake[0][0].grad, expected)
    assert real[0][0].grad is None and real[0][1].grad is None  # real features are detached
    assert fake[0][1].grad is None  # the logits are no part of the term


def test_mismatched_scales_are_refused() -> None:
    with pytest.raises(ValueError, match=r"same number"):
        discriminator_feature_matching([scale(1.0)], [scale(1.0), scale(1.0)])
    with pytest.raises(ValueError, match=r"same number"):
        discriminator_feature_matching([], [])


# -- KL term -----------------------------------------------------------------------------------
def test_kl_of_the_prior_itself_is_zero() -> None:
    assert float(gaussian_kl(torch.zeros(4, 8), torch.zeros(4, 8))) == 0.0


def test_kl_matches_the_closed_form_summed_over_dims_averaged_over_batch() -> None:
    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 16), torch.randn(5, 16)
    q = Normal(mu, torch.exp(0.5 * logvar))
    expected = kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(1).mean()
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected)
    # By hand for one dimension: mu = 1, sigma^2 = e: 0.5 * (e + 1 - 1 - 1) = (e - 1) / 2.
    assert float(gaussian_kl(torch.ones(1, 1), torch.ones(1, 1))) == pytest.approx((math.e - 1) / 2)
    # Averaged over the batch: a batch of two samples is the mean of their KLs.
    one, two = gaussian_kl(mu[:1], logvar[:1]), gaussian_kl(mu[1:2], logvar[1:2])
    torch.testing.assert_close(gaussian_kl(mu[:2], logvar[:2]), (one + two) / 2)


def test_kl_matches_a_monte_carlo_estimate() -> None:
    gen = torch.Generator().manual_seed(0)
    mu, logvar = torch.tensor([[0.5, -1.0, 0.0]]), torch.tensor([[-0.5, 0.3, 1.0]])
    q, p = Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(200_000, 3, generator=gen)
    estimate = (q.log_prob(z) - p.log_prob(z)).sum(1).mean()
    assert float(gaussian_kl(mu, logvar)) == pytest.approx(float(estimate), abs=0.02)


# -- reparameterisation ------------------------------------------------------------------------
def test_reparameterize_samples_the_posterior_with_gradients() -> None:
    torch.manual_seed(0)
    n = 200_000
    mu = torch.tensor([1.0, -2.0, 0.0]).repeat(n, 1).requires_grad_()
    logvar = torch.log(torch.tensor([0.25, 4.0, 1.0])).repeat(n, 1).requires_grad_()
    z = reparameterize(mu, logvar)
    assert z.shape == (n, 3)
    torch.testing.assert_close(z.mean(0), torch.tensor([1.0, -2.0, 0.0]), atol=0.02, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([0.5, 2.0, 1.0]), atol=0.02, rtol=0)
    # z = mu + sigma * eps: dz/dmu = 1, and the noise is fresh per call.
    z.sum().backward()
    assert torch.equal(mu.grad, torch.ones_like(mu))
    assert logvar.grad is not None and bool(logvar.grad.abs().sum() > 0)
    assert not torch.equal(reparameterize(mu, logvar), reparameterize(mu, logvar))
