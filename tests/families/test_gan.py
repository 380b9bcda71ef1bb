"""The unconditional family's training step, run through the real Trainer on tiny configs."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from gan_research.errors import ConfigError
from gan_research.families.gan import GAN
from gan_research.train import build, train
from gan_research.utils.jsonl_logger import read_records

RING = ("model=mlp", "dataset=ring8")


def params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.named_parameters())


def fit(cfg, model, datamodule, **trainer_kwargs):
    trainer = instantiate(
        cfg.trainer, callbacks=[], logger=False, enable_checkpointing=False, **trainer_kwargs
    )
    trainer.fit(model, datamodule=datamodule)
    return trainer


def test_one_step_changes_g_and_d_and_d_is_frozen_during_g_update(make_cfg, monkeypatch):
    cfg = make_cfg("schedule.max_steps=1")
    objs = build(cfg)
    model = objs["model"]
    g0, d0 = params(model.generator), params(model.discriminator)
    seen = {}
    original = GAN.generator_step

    def spy(self, real, opt_g, labels=None):
        d_before, g_before = params(self.discriminator), params(self.generator)
        out = original(self, real, opt_g, labels)
        seen["d_changed_in_g_step"] = changed(d_before, self.discriminator)
        seen["g_changed_in_g_step"] = changed(g_before, self.generator)
        seen["d_requires_grad_after"] = all(p.requires_grad for p in self.discriminator.parameters())
        return out

    monkeypatch.setattr(GAN, "generator_step", spy)
    fit(cfg, model, objs["datamodule"])
    assert changed(g0, model.generator) and changed(d0, model.discriminator)
    assert seen == {"d_changed_in_g_step": False, "g_changed_in_g_step": True, "d_requires_grad_after": True}


@pytest.mark.parametrize("n_critic", [1, 3])
def test_n_critic_d_updates_per_g_update_on_distinct_batches(make_cfg, monkeypatch, n_critic):
    cfg = make_cfg(*RING, f"schedule.n_critic={n_critic}", "schedule.max_steps=2")
    objs = build(cfg)
    calls: list[str] = []
    reals: list[torch.Tensor] = []
    original_step, original_d = GAN.backward_and_step, GAN.discriminator_step

    def count(self, optimizer, loss, *, counts_as_step):
        calls.append("g" if counts_as_step else "d")
        return original_step(self, optimizer, loss, counts_as_step=counts_as_step)

    def record(self, real, opt_d, labels=None):
        reals.append(real.clone())
        return original_d(self, real, opt_d, labels)

    monkeypatch.setattr(GAN, "backward_and_step", count)
    monkeypatch.setattr(GAN, "discriminator_step", record)
    trainer = fit(cfg, objs["model"], objs["datamodule"])
    assert calls == (["d"] * n_critic + ["g"]) * 2
    # global_step counts generator updates only.
    assert trainer.global_step == 2
    assert all(r.shape[0] == cfg.dataset.batch_size for r in reals)
    assert len({tuple(r[0].tolist()) for r in reals}) == len(reals)
    assert int(objs["model"].d_updates) == 2 * n_critic


def test_resume_continues_at_the_same_step(make_cfg):
    cfg = make_cfg(*RING, "schedule.max_steps=4", "callbacks.model_checkpoint.every_n_train_steps=2")
    first = train(cfg)
    assert first["trainer"].global_step == 4
    run_dir = first["run_dir"]
    last = run_dir / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4
    assert len(ckpt["optimizer_states"]) == 2

    starts: list[int] = []

    class RecordStart(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            starts.append(trainer.global_step)

    cfg2 = make_cfg(*RING, "schedule.max_steps=6", f"ckpt_path={last}")
    objs = build(cfg2)
    model = objs["model"]
    trainer = instantiate(cfg2.trainer, callbacks=[RecordStart()], logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=objs["datamodule"], ckpt_path=str(last))
    assert starts == [4]
    assert trainer.global_step == 6
    # Adam's per-parameter step counter continued from the checkpoint: 4 G updates + 2 more.
    opt_g = trainer.optimizers[0]
    assert max(int(s["step"]) for s in opt_g.state.values()) == 6


def test_resume_through_train_appends_to_metrics(make_cfg):
    cfg = make_cfg(*RING, "schedule.max_steps=2")
    first = train(cfg)
    last = first["run_dir"] / "checkpoints" / "last.ckpt"
    # More steps in the same run directory is a change of configuration: said explicitly.
    second = train(make_cfg(*RING, "schedule.max_steps=4", f"ckpt_path={last}", "allow_config_change=true"))
    assert second["trainer"].global_step == 4
    records = read_records(first["run_dir"] / "metrics.jsonl")
    # Lightning logs a step's metrics under the step index before its update (0-based), W&B alike.
    steps = [r["step"] for r in records if "train/g_loss" in r and "status" not in r]
    assert steps == [0, 1, 2, 3]
    assert [r["status"] for r in records if "status" in r] == ["finished", "finished"]


def test_ema_generator_tracks_generator(make_cfg):
    cfg = make_cfg(*RING, "schedule.ema_decay=0.5", "schedule.max_steps=2")
    objs = build(cfg)
    model = objs["model"]
    assert model.generator_ema is not None
    ema0 = params(model.generator_ema)
    fit(cfg, model, objs["datamodule"])
    assert changed(ema0, model.generator_ema)
    assert all(not p.requires_grad for p in model.generator_ema.parameters())
    # An EMA lags: it is strictly between its start and G's current weights.
    for k, p in model.generator_ema.named_parameters():
        g = dict(model.generator.named_parameters())[k]
        assert not torch.equal(p, g)
    assert model.sampling_generator is model.generator_ema


def test_d_skip_threshold_skips_d_updates(make_cfg):
    cfg = make_cfg(*RING, "schedule.d_skip_threshold=1000.0", "schedule.max_steps=2")
    objs = build(cfg)
    d0 = params(objs["model"].discriminator)
    fit(cfg, objs["model"], objs["datamodule"])
    assert not changed(d0, objs["model"].discriminator)
    assert int(objs["model"].d_updates) == 0


def test_weight_clipping_bounds_critic(make_cfg):
    cfg = make_cfg(*RING, "loss=wgan", "schedule=wgan", "schedule.max_steps=2")
    objs = build(cfg)
    fit(cfg, objs["model"], objs["datamodule"])
    assert all(p.abs().max() <= 0.01 + 1e-7 for p in objs["model"].discriminator.parameters())


def test_gradient_penalty_is_lazy_and_logged(make_cfg, monkeypatch):
    from gan_research.losses import GradientPenalty

    calls = []
    original = GradientPenalty.__call__

    def spy(self, score_fn, real, fake, **kwargs):
        calls.append(1)
        return original(self, score_fn, real, fake, **kwargs)

    monkeypatch.setattr(GradientPenalty, "__call__", spy)
    cfg = make_cfg(
        *RING, "loss=wgan_gp", "schedule.n_critic=1", "schedule.d_reg_every=2", "schedule.max_steps=4"
    )
    result = train(cfg)
    # D updates 0..3, penalty due at updates 0 and 2.
    assert len(calls) == 2
    records = read_records(result["run_dir"] / "metrics.jsonl")
    assert any("train/d_gp" in r for r in records)


def test_instance_noise_anneals_linearly(make_cfg, monkeypatch):
    cfg = make_cfg(*RING, "schedule.instance_noise=0.4", "schedule.instance_noise_anneal_steps=4")
    model = build(cfg)["model"]
    assert model.instance_noise_std() == pytest.approx(0.4)  # step 0, no trainer attached
    for step, std in [(1, 0.3), (2, 0.2), (4, 0.0), (10, 0.0)]:
        monkeypatch.setattr(type(model), "global_step", property(lambda self, s=step: s))
        assert model.instance_noise_std() == pytest.approx(std)


def test_label_flip_swaps_pairs(make_cfg):
    cfg = make_cfg(*RING, "schedule.label_flip_prob=0.49")
    model = build(cfg)["model"]
    torch.manual_seed(0)
    real, fake = torch.zeros(1000, 2), torch.ones(1000, 2)
    r, f = model.flip_labels(real, fake)
    flipped = r[:, 0] == 1
    assert 0.4 < flipped.float().mean() < 0.58
    assert torch.equal(f[:, 0] == 0, flipped)


def test_label_smoothing_needs_a_target_loss(make_cfg):
    with pytest.raises(ConfigError, match="label_smoothing"):
        build(make_cfg(*RING, "loss=wgan_gp", "schedule.label_smoothing=0.1"))


@pytest.mark.parametrize(
    ("overrides", "key", "fix"),
    [
        # model=dcgan (the default) with WGAN-GP, cGAN with R1, pix2pix's PatchGAN (no layer norm).
        (["recipe=wgan_gp"], "model.discriminator.norm", "layer"),
        (["model=cgan", "loss=non_saturating_r1"], "model.discriminator.norm", "layer"),
        (["experiment=pix2pix_digits_edges", "loss=wgan_gp"], "model.discriminator.norm", "instance"),
        (
            ["experiment=cyclegan_digits_inverted", "loss=wgan_gp", "model.discriminator.d_a.norm=batch"],
            "model.discriminator.d_a.norm",
            "instance",
        ),
    ],
)
def test_gradient_penalty_with_a_batch_norm_critic_is_one_config_error(make_cfg, overrides, key, fix):
    """A gradient penalty / R1 penalises per-sample input gradients, which batch statistics couple
    (Gulrajani et al. 2017, sec. 4): refused when the model is built, naming the key and the fix."""
    with pytest.raises(ConfigError) as err:
        build(make_cfg(*overrides), prepare_evaluation=False)
    message = str(err.value)
    assert message.startswith(f"{key}=batch with a gradient penalty")
    assert f"Set {key}={fix}" in message and "Gulrajani" in message
    assert "\n" not in message


def test_gradient_penalty_with_a_layer_norm_critic_builds(make_cfg):
    model = build(make_cfg("recipe=wgan_gp", "model.discriminator.norm=layer"), prepare_evaluation=False)[
        "model"
    ]
    assert model.discriminator.norm == "layer"
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.discriminator.modules())


def test_lr_decay_linear_reaches_zero(make_cfg):
    cfg = make_cfg(*RING, "schedule.lr_decay=linear", "schedule.lr_decay_start=0.0", "schedule.max_steps=4")
    objs = build(cfg)
    trainer = fit(cfg, objs["model"], objs["datamodule"])
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0)
    assert trainer.optimizers[1].param_groups[0]["lr"] == pytest.approx(0.0)


def test_balance_diagnostics_on_known_scores(make_cfg):
    model = build(make_cfg(*RING))["model"]
    real, fake = torch.tensor([2.0, 3.0, -0.5, 1.0]), torch.tensor([-1.0, 1.0, -2.0, -3.0])
    logs = model.balance_diagnostics(real, fake, torch.tensor(0.0))
    assert logs["train/d_acc_real"].item() == pytest.approx(0.75)  # logit > 0
    assert logs["train/d_acc_fake"].item() == pytest.approx(0.75)  # logit <= 0
    assert logs["train/d_gap"].item() == pytest.approx(1.375 - (-1.25))
    assert "train/wasserstein_estimate" not in logs


def test_wgan_gp_logs_wasserstein_estimate_and_grad_norms(make_cfg):
    result = train(make_cfg(*RING, "loss=wgan_gp", "schedule=wgan_gp", "schedule.max_steps=2"))
    records = [r for r in read_records(result["run_dir"] / "metrics.jsonl") if "status" not in r]
    keys = set().union(*records)
    for key in (
        "train/wasserstein_estimate",
        "train/d_grad_norm",
        "train/g_grad_norm",
        "train/grad_norm_ratio",
        "train/d_acc_real",
        "train/d_acc_fake",
        "train/d_gap",
    ):
        assert key in keys, key
    r = records[-1]
    assert r["train/grad_norm_ratio"] == pytest.approx(
        r["train/g_grad_norm"] / r["train/d_grad_norm"], rel=1e-5
    )
    assert r["train/d_grad_norm"] > 0 and r["train/g_grad_norm"] > 0
