"""Each loss against values computed by hand with math.log/exp (not with the code under test)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gan_research.losses import (
    GradientPenalty,
    HingeLoss,
    LeastSquaresLoss,
    MinimaxLoss,
    NonSaturatingLoss,
    R1Penalty,
    WassersteinLoss,
)

REAL = torch.tensor([0.0, 2.0])
FAKE = torch.tensor([-1.0, 3.0])


def softplus(x: float) -> float:
    return math.log(1.0 + math.exp(x))


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def test_minimax_matches_goodfellow_eq1():
    # D minimises -log σ(r) - log(1 - σ(f)); -log σ(x) = log(1 + e^-x), -log(1-σ(x)) = log(1 + e^x)
    d = mean([softplus(-0.0), softplus(-2.0)]) + mean([softplus(-1.0), softplus(3.0)])
    g = -mean([softplus(-1.0), softplus(3.0)])  # log(1 - σ(f))
    loss = MinimaxLoss()
    assert loss.discriminator_loss(REAL, FAKE).item() == pytest.approx(d, rel=1e-6)
    assert loss.generator_loss(FAKE).item() == pytest.approx(g, rel=1e-6)
    assert d == pytest.approx(2.0909621, rel=1e-6)


def test_non_saturating_generator_and_shared_discriminator():
    loss = NonSaturatingLoss()
    g = mean([softplus(1.0), softplus(-3.0)])  # -log σ(f)
    assert loss.generator_loss(FAKE).item() == pytest.approx(g, rel=1e-6)
    assert loss.generator_loss(FAKE).item() == pytest.approx(0.6809245, rel=1e-6)
    assert loss.discriminator_loss(REAL, FAKE).item() == pytest.approx(
        MinimaxLoss().discriminator_loss(REAL, FAKE).item()
    )


def test_bce_losses_equal_torch_bce_and_smoothing():
    bce = nn.BCEWithLogitsLoss()
    loss = NonSaturatingLoss()
    expected = bce(REAL, torch.full_like(REAL, 0.9)) + bce(FAKE, torch.zeros_like(FAKE))
    assert loss.discriminator_loss(REAL, FAKE, real_target=0.9).item() == pytest.approx(
        expected.item(), rel=1e-6
    )
    # one-sided by hand: -(0.9 log σ(r) + 0.1 log(1-σ(r)))
    by_hand = mean([0.9 * softplus(-r) + 0.1 * softplus(r) for r in (0.0, 2.0)])
    by_hand += mean([softplus(-1.0), softplus(3.0)])
    assert loss.discriminator_loss(REAL, FAKE, real_target=0.9).item() == pytest.approx(by_hand, rel=1e-6)


def test_bce_losses_stay_finite_for_confident_discriminators():
    loss = MinimaxLoss()
    big = torch.tensor([200.0]), torch.tensor([-200.0])
    assert torch.isfinite(loss.discriminator_loss(*big))
    assert loss.discriminator_loss(*big).item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(NonSaturatingLoss().generator_loss(torch.tensor([-200.0])))


def test_wasserstein():
    loss = WassersteinLoss()
    assert loss.discriminator_loss(REAL, FAKE).item() == pytest.approx(mean([-1.0, 3.0]) - mean([0.0, 2.0]))
    assert loss.generator_loss(FAKE).item() == pytest.approx(-1.0)


def test_least_squares_mao_eq2():
    loss = LeastSquaresLoss()
    d = 0.5 * mean([(0 - 1) ** 2, (2 - 1) ** 2]) + 0.5 * mean([1.0, 9.0])
    g = 0.5 * mean([(-1 - 1) ** 2, (3 - 1) ** 2])
    assert loss.discriminator_loss(REAL, FAKE).item() == pytest.approx(d)
    assert loss.generator_loss(FAKE).item() == pytest.approx(g)
    custom = LeastSquaresLoss(a=-1.0, b=1.0, c=0.0)
    d2 = 0.5 * mean([(0 - 1) ** 2, (2 - 1) ** 2]) + 0.5 * mean([0.0, 16.0])
    assert custom.discriminator_loss(REAL, FAKE).item() == pytest.approx(d2)
    assert custom.generator_loss(FAKE).item() == pytest.approx(0.5 * mean([1.0, 9.0]))


def test_hinge_miyato_eq16_17():
    loss = HingeLoss()
    d = mean([max(0, 1 - 0.0), max(0, 1 - 2.0)]) + mean([max(0, 1 - 1.0), max(0, 1 + 3.0)])
    assert loss.discriminator_loss(REAL, FAKE).item() == pytest.approx(d)
    assert loss.generator_loss(FAKE).item() == pytest.approx(-1.0)


class Linear(nn.Module):
    """D(x) = w·x: its input gradient is w everywhere, so penalties have closed forms."""

    def __init__(self, w: list[float]) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w


def test_gradient_penalty_closed_form_and_differentiable():
    d = Linear([3.0, 4.0])  # ‖w‖ = 5
    real, fake = torch.randn(16, 2), torch.randn(16, 2)
    gp = GradientPenalty(weight=10.0)(d, real, fake)
    assert gp.item() == pytest.approx(10.0 * (5.0 - 1.0) ** 2)
    gp.backward()
    # d/dw λ(‖w‖-1)² = 2λ(‖w‖-1) w/‖w‖
    assert torch.allclose(d.w.grad, 2 * 10.0 * 4.0 * torch.tensor([3.0, 4.0]) / 5.0)


def test_gradient_penalty_zero_at_unit_norm():
    d = Linear([0.6, 0.8])
    assert GradientPenalty()(d, torch.randn(8, 2), torch.randn(8, 2)).item() == pytest.approx(0.0, abs=1e-10)


def test_r1_closed_form():
    d = Linear([3.0, 4.0])
    assert R1Penalty(gamma=10.0)(d, torch.randn(4, 2), torch.randn(4, 2)).item() == pytest.approx(
        0.5 * 10.0 * 25.0
    )


def test_gradient_penalty_interpolates_per_sample_for_images():
    torch.manual_seed(0)
    d = nn.Sequential(nn.Flatten(), nn.Linear(12, 1), nn.Flatten(0))
    real, fake = torch.randn(5, 3, 2, 2), torch.randn(5, 3, 2, 2)
    gp = GradientPenalty(weight=1.0)(d, real, fake)
    w_norm = d[1].weight.norm().item()
    assert gp.item() == pytest.approx((w_norm - 1.0) ** 2, rel=1e-5)


@pytest.mark.parametrize("penalty", [GradientPenalty(weight=10.0), R1Penalty(gamma=10.0)])
def test_penalties_under_a_loss_scale_equal_the_unscaled_ones(penalty):
    """fp16 recipe: scores scaled before differentiating, gradients unscaled after; same value."""
    torch.manual_seed(0)
    d = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    torch.manual_seed(1)
    plain = penalty(d, real, fake)
    torch.manual_seed(1)
    scaled = penalty(d, real, fake, grad_scale=65536.0)
    assert plain.item() > 0
    torch.testing.assert_close(scaled, plain, rtol=1e-5, atol=0)
    # ... and its gradient w.r.t. D's weights, which the D update uses.
    # (The last bias does not change input gradients: no gradient for it.)
    g_plain = torch.autograd.grad(plain, list(d.parameters()), allow_unused=True)
    g_scaled = torch.autograd.grad(scaled, list(d.parameters()), allow_unused=True)
    assert sum(g is not None for g in g_plain) == 3
    for a, b in zip(g_plain, g_scaled, strict=True):
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-7)
