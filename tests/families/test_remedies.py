"""The step's mode-collapse remedies (schedule.packing, unrolled_steps, feature_matching): each one's
defining property, on the GAN family's real step, and the one-line errors where they do not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gan_research.errors import ConfigError
from gan_research.families.gan import GAN
from gan_research.losses.feature_matching import mean_feature_matching
from gan_research.train import build
from tests.families.trainer import fit

RING = ("model=mlp", "dataset=ring8", "dataset.batch_size=8")
CONF = Path(__file__).resolve().parents[2] / "conf"


def _d_inputs(monkeypatch) -> list[torch.Tensor]:
    """Record every input D's forward receives."""
    seen: list[torch.Tensor] = []
    original = GAN.discriminate

    def record(self, x, condition):
        seen.append(x.detach().clone())
        return original(self, x, condition)

    monkeypatch.setattr(GAN, "discriminate", record)
    return seen


@pytest.mark.parametrize("flip", [0.0, 0.4])
def test_packed_d_sees_packs_of_only_real_or_only_fake_samples(make_cfg, monkeypatch, flip):
    cfg = make_cfg(*RING, "remedy=pac4", f"schedule.label_flip_prob={flip}", "schedule.max_steps=3")
    objs = build(cfg)
    model = objs["model"]
    assert model.discriminator.input_shape == (8,)
    # Real samples lie on the unit ring; G's output is pushed far from it, so each 2-D slot of a
    # pack tells whether it came from the data.
    with torch.no_grad():
        model.generator.main[-1].bias.fill_(50.0)
    seen = _d_inputs(monkeypatch)
    fit(model, objs["datamodule"], steps=3)
    assert seen, "D was never called"
    for x in seen:
        # dataset.batch_size counts packs: 8 packs of 4 samples each.
        assert x.shape == (8, 8)
        slots_fake = x.reshape(8, 4, 2).norm(dim=2) > 10
        assert torch.all(slots_fake.all(dim=1) | (~slots_fake).all(dim=1)), "a pack mixed real and fake"


def test_packing_reads_m_times_the_batch_per_d_update(make_cfg, monkeypatch):
    cfg = make_cfg(*RING, "remedy=pac2", "schedule.n_critic=2", "schedule.max_steps=1")
    objs = build(cfg)
    reals: list[int] = []
    original = GAN.discriminator_step

    def record(self, real, opt_d, labels=None):
        reals.append(real.shape[0])
        return original(self, real, opt_d, labels)

    monkeypatch.setattr(GAN, "discriminator_step", record)
    fit(objs["model"], objs["datamodule"], steps=1)
    assert reals == [16, 16]


def test_packing_needs_a_discriminator_built_for_it(make_cfg):
    with pytest.raises(ConfigError, match=r"schedule.packing=2 but model.discriminator.packing=1"):
        build(make_cfg(*RING, "schedule.packing=2", "model.discriminator.packing=1"))
    with pytest.raises(
        ConfigError, match=r"schedule.packing=2: model.discriminator \(.*\) does not take packs"
    ):
        build(make_cfg("model=cgan", "dataset=digits", "schedule.packing=2"))


def _g_step_loss(model: GAN, batch: torch.Tensor, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """G's loss on ``batch`` as the G phase computes it, without stepping (D's weights as they are)."""
    captured: dict[str, torch.Tensor] = {}

    def generator_update(opt_g, g):
        captured["loss"] = g.loss
        g.loss.backward()
        return {}

    model.generator_update = generator_update  # type: ignore[method-assign]
    model.optimizer_phase = lambda opt: torch.enable_grad()  # type: ignore[method-assign]
    torch.manual_seed(seed)
    model.generator_step(batch, None)
    grads = {n: p.grad.clone() for n, p in model.generator.named_parameters() if p.grad is not None}
    model.generator.zero_grad(set_to_none=True)
    return captured["loss"].detach(), grads


def test_unrolled_g_loss_differs_from_the_plain_one_and_leaves_d_untouched(make_cfg):
    base = ("schedule.max_steps=1",)
    plain = build(make_cfg(*RING, *base))["model"]
    unrolled = build(make_cfg(*RING, *base, "remedy=unrolled", "schedule.unrolled_lr=0.5"))["model"]
    unrolled.load_state_dict(plain.state_dict())
    batch = torch.randn(8, 2)
    d_before = {k: v.clone() for k, v in unrolled.discriminator.state_dict().items()}
    loss_plain, grads_plain = _g_step_loss(plain, batch, seed=3)
    loss_unrolled, grads_unrolled = _g_step_loss(unrolled, batch, seed=3)
    assert not torch.isclose(loss_plain, loss_unrolled)
    # D's weights and buffers are as before the G phase, and it got no gradient.
    for k, v in unrolled.discriminator.state_dict().items():
        assert torch.equal(v, d_before[k]), k
    assert all(p.grad is None for p in unrolled.discriminator.parameters())
    assert any(not torch.allclose(grads_plain[k], grads_unrolled[k]) for k in grads_plain)


def test_unrolled_with_zero_step_size_is_the_plain_g_loss(make_cfg):
    plain = build(make_cfg(*RING))["model"]
    zero = build(make_cfg(*RING, "remedy=unrolled", "schedule.unrolled_lr=1e-30"))["model"]
    zero.load_state_dict(plain.state_dict())
    batch = torch.randn(8, 2)
    loss_plain, grads_plain = _g_step_loss(plain, batch, seed=5)
    loss_zero, grads_zero = _g_step_loss(zero, batch, seed=5)
    torch.testing.assert_close(loss_zero, loss_plain)
    for k in grads_plain:
        torch.testing.assert_close(grads_zero[k], grads_plain[k])


def test_second_order_unrolling_changes_g_gradient(make_cfg):
    first = build(make_cfg(*RING, "remedy=unrolled", "schedule.unrolled_second_order=false"))["model"]
    second = build(make_cfg(*RING, "remedy=unrolled"))["model"]
    second.load_state_dict(first.state_dict())
    batch = torch.randn(8, 2)
    loss_first, grads_first = _g_step_loss(first, batch, seed=7)
    loss_second, grads_second = _g_step_loss(second, batch, seed=7)
    # Same unrolled weights, so the same loss; the second-order term only changes G's gradient.
    torch.testing.assert_close(loss_first, loss_second)
    assert any(not torch.allclose(grads_first[k], grads_second[k]) for k in grads_first)


def test_mean_feature_matching_against_a_hand_computation():
    real = torch.tensor([[1.0, 2.0, 0.0], [3.0, 4.0, 2.0]])
    fake = torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 3.0]], requires_grad=True)
    # Batch means: real (2, 3, 1), fake (0, 1, 2); squared differences 4, 4, 1; mean 3.
    loss = mean_feature_matching(real, fake)
    assert loss.item() == pytest.approx(3.0)
    loss.backward()
    # d/dfake_ij of mean_k (r_k - mean_i f_ik)² = -2 (r_j - f̄_j) / (3 · 2).
    expected = torch.tensor([[-2 * 2 / 6, -2 * 2 / 6, -2 * -1 / 6]] * 2)
    torch.testing.assert_close(fake.grad, expected)


def test_feature_matching_only_is_the_weighted_term_alone(make_cfg):
    model = build(make_cfg(*RING, "remedy=feature_matching", "schedule.feature_matching=2.5"))["model"]
    batch = torch.randn(8, 2)
    loss, _ = _g_step_loss(model, batch, seed=11)
    torch.manual_seed(11)
    with torch.no_grad():
        fake = model.generate_fake(model.sample_latent(8), None)
        expected = 2.5 * mean_feature_matching(
            model.discriminator.features(batch), model.discriminator.features(fake)
        )
    torch.testing.assert_close(loss, expected)


def test_remedies_a_family_or_network_cannot_take_are_one_line_errors(make_cfg):
    with pytest.raises(ConfigError, match=r"schedule.unrolled_steps=5: SemiSupervisedGAN"):
        build(make_cfg("model=sgan", "dataset=digits", "remedy=unrolled"))
    with pytest.raises(ConfigError, match=r"schedule.feature_matching=1.0: Pix2Pix"):
        build(make_cfg("experiment=pix2pix_digits_edges", "remedy=feature_matching"))
    with pytest.raises(ConfigError, match=r"schedule.feature_matching_only=True is invalid"):
        build(make_cfg(*RING, "schedule.feature_matching_only=true"))


@pytest.mark.parametrize("remedy", sorted(p.stem for p in (CONF / "remedy").glob("*.yaml")))
def test_every_remedy_option_builds_on_the_pacgan_networks(make_cfg, remedy):
    """Each conf/remedy option composes on top of an experiment and builds the model it describes."""
    cfg = make_cfg("experiment=pacgan_ring", f"remedy={remedy}", "model.width=8")
    model = build(cfg)["model"]
    packing = model.schedule.packing
    assert model.discriminator.input_shape == (2 * packing,)
    if remedy.startswith("pac"):
        assert packing == int(remedy[3:])
    if remedy == "unrolled":
        assert model.schedule.unrolled_steps > 0
    if remedy == "hinge_sn":
        assert any("parametrizations.weight" in n for n, _ in model.discriminator.named_parameters())
    if remedy == "wgan_gp":
        assert model.schedule.n_critic == 5 and "gp" in model.objective.regularizers
