"""The relativistic average losses (Jolicoeur-Martineau 2019) against hand-computed values, and
the families handing them D's scores of real data in G's update."""

from __future__ import annotations

import math

import pytest
import torch

from gan_research.losses.relativistic import RelativisticAverageHingeLoss, RelativisticAverageStandardLoss

# Scores chosen so every hinge is either active or not by a clear margin:
# E[C(x_r)] = 1, E[C(x_f)] = 0.
REAL = torch.tensor([2.0, 0.0])
FAKE = torch.tensor([1.0, -1.0])


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_rahinge_discriminator_loss_by_hand():
    # E_r[max(0, 1 − (r − 0))] = (0 + 1)/2; E_f[max(0, 1 + (f − 1))] = (1 + 0)/2.
    assert RelativisticAverageHingeLoss().discriminator_loss(REAL, FAKE).item() == pytest.approx(1.0)


def test_rahinge_generator_loss_by_hand_reads_the_real_scores():
    # E_f[max(0, 1 − (f − 1))] = (1 + 3)/2; E_r[max(0, 1 + (r − 0))] = (3 + 1)/2.
    loss = RelativisticAverageHingeLoss()
    assert loss.generator_loss(FAKE, REAL).item() == pytest.approx(4.0)
    # A real batch that D rates higher makes the same fakes' loss larger.
    assert loss.generator_loss(FAKE, REAL + 1.0).item() > 4.0


def test_rasgan_by_hand():
    loss = RelativisticAverageStandardLoss()
    d = (softplus(-2.0) + softplus(0.0)) / 2 + (softplus(0.0) + softplus(-2.0)) / 2
    g = (softplus(0.0) + softplus(2.0)) / 2 + (softplus(2.0) + softplus(0.0)) / 2
    assert loss.discriminator_loss(REAL, FAKE).item() == pytest.approx(d, rel=1e-6)
    assert loss.generator_loss(FAKE, REAL).item() == pytest.approx(g, rel=1e-6)


@pytest.mark.parametrize("loss", [RelativisticAverageHingeLoss(), RelativisticAverageStandardLoss()])
def test_generator_loss_without_real_scores_is_refused(loss):
    with pytest.raises(ValueError, match="real batch"):
        loss.generator_loss(FAKE)


def test_patch_maps_are_compared_position_by_position():
    # (B, 1, H, W) maps: the average is over the batch at each patch position, so a map whose
    # positions are independent problems gives the mean of the per-position losses.
    real = torch.stack([REAL, REAL + 5.0], dim=-1).view(2, 1, 1, 2)
    fake = torch.stack([FAKE, FAKE + 5.0], dim=-1).view(2, 1, 1, 2)
    loss = RelativisticAverageHingeLoss()
    assert loss.discriminator_loss(real, fake).item() == pytest.approx(1.0)
    assert loss.generator_loss(fake, real).item() == pytest.approx(4.0)


def test_gan_family_passes_real_scores_to_a_relativistic_generator_loss(make_cfg, monkeypatch):
    from gan_research.train import build
    from tests.families.test_gan import fit

    cfg = make_cfg("model=mlp", "dataset=ring8", "loss=relativistic_hinge", "schedule.max_steps=2")
    objs = build(cfg)
    seen: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    original = RelativisticAverageHingeLoss.generator_loss

    def spy(self, fake, real=None):
        seen.append((fake, real))
        return original(self, fake, real)

    monkeypatch.setattr(RelativisticAverageHingeLoss, "generator_loss", spy)
    fit(cfg, objs["model"], objs["datamodule"])
    assert len(seen) == 2
    for fake, real in seen:
        # D's scores of the step's real batch, one per sample, taken without gradient.
        assert real is not None and real.shape == fake.shape and not real.requires_grad
        assert fake.requires_grad
