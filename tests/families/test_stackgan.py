"""StackGAN's family: the matching-aware discriminator loss (a real image with a mismatched caption
counts as fake), G's KL term, stage II on a frozen stage-I run, and the caption | stage I | stage II
grid."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from gan_research.errors import ConfigError
from gan_research.families.stackgan import StackGAN
from gan_research.networks.stackgan import StageIGenerator, kl_divergence
from gan_research.train import build

# Tiny networks, and a text encoder trained for one epoch (it is cached per test directory).
TINY = (
    "model.width=8",
    "model.discriminator.ndf=8",
    "model.text_encoder.epochs=1",
    "dataset.batch_size=8",
    "metrics=none",
    "threads=1",
)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fit(cfg, model, datamodule):
    trainer = instantiate(cfg.trainer, callbacks=[], logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=datamodule)
    return trainer


def test_matching_aware_d_and_the_generators_kl_term(make_cfg, monkeypatch):
    """One step: D's loss counts a real image with a mismatched caption as fake (½ L(real, fake)
    + ½ L(real, wrong), the reference's L_real + (L_fake + L_wrong) / 2), and G's loss is the
    adversarial term plus kl_weight times the conditioning augmentation's KL."""
    cfg = make_cfg("experiment=stackgan_digits", *TINY, "schedule.max_steps=1", "model.kl_weight=3.0")
    objs = build(cfg)
    model: StackGAN = objs["model"]
    calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    seen = {}
    original_scores, original_d, original_g = (
        StackGAN.scores,
        StackGAN.discriminator_update,
        StackGAN.generator_update,
    )

    def spy_scores(self, image, mu):
        out = original_scores(self, image, mu)
        calls.append((image.detach().clone(), mu.detach().clone(), out[0].detach().clone()))
        return out

    def spy_d(self, opt_d, d):
        seen["d_adv"] = d.adversarial.detach().clone()
        return original_d(self, opt_d, d)

    def spy_g(self, opt_g, g):
        seen["g"] = g
        return original_g(self, opt_g, g)

    monkeypatch.setattr(StackGAN, "scores", spy_scores)
    monkeypatch.setattr(StackGAN, "discriminator_update", spy_d)
    monkeypatch.setattr(StackGAN, "generator_update", spy_g)
    fit(cfg, model, objs["datamodule"])
    # D's phase scores (real, mu), (fake, mu), (real, wrong mu), in that order.
    (real_img, mu, real_s), (_fake_img, mu_f, fake_s), (wrong_img, wrong_mu, wrong_s) = calls[:3]
    assert torch.equal(real_img, wrong_img) and torch.equal(mu, mu_f)
    assert not torch.equal(mu, wrong_mu), "the mismatched caption must give D another text"
    loss = model.objective.adversarial
    expected = 0.5 * loss.discriminator_loss(real_s, fake_s) + 0.5 * loss.discriminator_loss(real_s, wrong_s)
    torch.testing.assert_close(seen["d_adv"], expected)
    g = seen["g"]
    torch.testing.assert_close(g.loss, g.terms["adv"] + 3.0 * g.terms["kl"])
    assert float(g.terms["kl"]) > 0


def stage1_run(root: Path) -> tuple[Path, StageIGenerator]:
    """A stage-I run directory as gan-train leaves it: the recorded generator and last.ckpt."""
    node = {
        "_target_": "gan_research.networks.stackgan.StageIGenerator",
        "text_dim": 128,
        "image_size": 16,
        "channels": 1,
        "latent_dim": 100,
        "condition_dim": 128,
        "ngf": 8,
    }
    run = root / "stage1"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    OmegaConf.save(OmegaConf.create({"model": {"generator": node}}), run / ".hydra" / "config.yaml")
    torch.manual_seed(0)
    generator = StageIGenerator(**{k: v for k, v in node.items() if k != "_target_"})
    state = {f"generator.{k}": v for k, v in generator.state_dict().items()}
    torch.save({"state_dict": state}, run / "checkpoints" / "last.ckpt")
    return run, generator


def test_stage2_refines_the_frozen_stage1_of_an_earlier_run(make_cfg, tmp_path):
    run, stage1 = stage1_run(tmp_path)
    cfg = make_cfg("experiment=stackgan_digits_stage2", *TINY, f"needs.stackgan_digits={run}")
    objs = build(cfg)
    model: StackGAN = objs["model"]
    for key, value in stage1.state_dict().items():
        torch.testing.assert_close(model.stage1.state_dict()[key], value)
    assert not any(p.requires_grad for p in model.stage1.parameters())
    _, labels, tokens = objs["datamodule"].first_validation_batch(5)
    images = model.generate_from_captions(tokens, labels)
    assert images["stage1"].shape == (5, 1, 16, 16) and images["stage2"].shape == (5, 1, 32, 32)
    # caption (4 cells) | stage I | stage II, each cell 64 px for legibility.
    model.fixed_captions = (tokens, labels, ["a thick upright seven"] * 5)
    grid, per_row = model.grid_samples()
    assert per_row == 6 and grid.shape == (30, 1, 64, 64)


def test_stage2_refuses_a_stage1_of_another_size(make_cfg, tmp_path):
    run, _ = stage1_run(tmp_path)
    # Stage II configured for 32 px stage-I images (to 64 px); the run's stage I makes 16 px ones.
    cfg = make_cfg(
        "experiment=stackgan_digits_stage2",
        *TINY,
        f"needs.stackgan_digits={run}",
        "dataset.image_size=64",
        "model.generator.stage1_size=32",
    )
    with pytest.raises(ConfigError, match="stage1_size=16"):
        build(cfg, prepare_evaluation=False)


def test_kl_is_zero_only_at_the_prior():
    assert float(kl_divergence(torch.zeros(2, 4), torch.zeros(2, 4))) == 0.0
    assert float(kl_divergence(torch.ones(2, 4), torch.zeros(2, 4))) > 0
