"""The ProGAN family: the growth schedule, what D sees per stage, which blocks train, resume,
and the progan_digits experiment through every stage."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from gan_research.errors import ConfigError
from gan_research.families.progan import GrowthSchedule, ProGAN, downsample_reals
from gan_research.train import build, train
from gan_research.utils.jsonl_logger import read_records
from tests.conftest import compose_config

# The experiment with tiny widths; 32x32 digits, stages 4, 8, 16, 32.
TINY = (
    "experiment=progan_digits",
    "model.generator.latent_dim=8",
    "model.generator.fmap_base=32",
    "model.generator.fmap_max=8",
    "model.discriminator.fmap_base=32",
    "model.discriminator.fmap_max=8",
    "dataset.batch_size=8",
    "metrics=none",
)


def tiny(*overrides: str) -> list[str]:
    return [*TINY, *overrides]


def growth_overrides(start: int = 4, phase: int = 2, fade: int = 2) -> list[str]:
    return [
        f"model.growth.start_resolution={start}",
        f"model.growth.steps_per_phase={phase}",
        f"model.growth.fade_steps={fade}",
    ]


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed_prefixes(
    before: dict[str, torch.Tensor], module: torch.nn.Module, prefixes: list[str]
) -> dict[str, bool]:
    now = dict(module.named_parameters())
    return {p: any(not torch.equal(before[k], now[k]) for k in before if k.startswith(p)) for p in prefixes}


def fit(cfg, model, datamodule):
    trainer = instantiate(cfg.trainer, callbacks=[], logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=datamodule)
    return trainer


# ---------------------------------------------------------------- schedule
def test_stage_and_alpha_progress_on_schedule() -> None:
    growth = GrowthSchedule(start_resolution=4, steps_per_phase=10, fade_steps=4)
    at = {step: growth.stage_and_alpha(step, num_stages=4) for step in range(80)}
    assert at[0] == at[9] == (0, 1.0)  # stabilise 4x4
    assert [at[s] for s in range(10, 15)] == [(1, 0.0), (1, 0.25), (1, 0.5), (1, 0.75), (1, 1.0)]
    assert at[23] == (1, 1.0)
    assert at[24] == (2, 0.0) and at[26] == (2, 0.5) and at[28] == (2, 1.0)
    assert at[38] == (3, 0.0) and at[42] == (3, 1.0)
    assert at[79] == (3, 1.0) and growth.stage_and_alpha(10**6, 4) == (3, 1.0)  # the last stays
    assert [growth.phase_start(s) for s in range(4)] == [0, 10, 24, 38]
    # alpha never decreases within a stage and stages never shrink.
    states = [at[s] for s in range(80)]
    assert states == sorted(states)


def test_start_resolution_and_abrupt_growth() -> None:
    growth = GrowthSchedule(start_resolution=8, steps_per_phase=3, fade_steps=0)
    assert [growth.stage_and_alpha(s, 4) for s in (0, 2, 3, 5, 6, 100)] == [
        (1, 1.0),
        (1, 1.0),
        (2, 1.0),
        (2, 1.0),
        (3, 1.0),
        (3, 1.0),
    ]


@pytest.mark.parametrize(
    ("growth", "match"),
    [
        ({"start_resolution": 6}, "start_resolution"),
        ({"steps_per_phase": 0}, "steps_per_phase"),
        ({"fade_steps": -1}, "fade_steps"),
        ({"fade": 3}, "unknown model.growth keys"),
    ],
)
def test_bad_growth_values_are_config_errors(growth, match) -> None:
    with pytest.raises(ConfigError, match=match):
        GrowthSchedule.create(growth)


def test_start_resolution_above_the_image_size_is_a_config_error(make_cfg) -> None:
    cfg = make_cfg(*tiny("model.growth.start_resolution=64"))
    with pytest.raises(ConfigError, match="start_resolution=64"):
        build(cfg)


# ---------------------------------------------------------------- real images
def test_reals_are_average_pooled_and_faded_in() -> None:
    x = torch.randn(2, 1, 32, 32)
    x8 = F.avg_pool2d(x, 4)
    torch.testing.assert_close(downsample_reals(x, stage=1, alpha=1.0), x8)
    up4 = F.interpolate(F.avg_pool2d(x, 8), scale_factor=2, mode="nearest")
    torch.testing.assert_close(downsample_reals(x, stage=1, alpha=0.0), up4)
    torch.testing.assert_close(downsample_reals(x, stage=1, alpha=0.25), 0.75 * up4 + 0.25 * x8)
    torch.testing.assert_close(downsample_reals(x, stage=3, alpha=1.0), x)


# ---------------------------------------------------------------- training
def test_runs_through_every_stage_and_d_sees_the_stage_resolution(make_cfg, monkeypatch) -> None:
    """steps_per_phase 2, fade 2: 4x4 (steps 0-1), 8 fade (2-3), 8 (4-5), ..., 32 from step 12."""
    cfg = make_cfg(*tiny(*growth_overrides(), "schedule.max_steps=14"))
    objs = build(cfg)
    model = objs["model"]
    seen: list[tuple[int, int, float, int, int]] = []
    original_disc, original_fake = ProGAN.discriminate, ProGAN.generate_fake
    fake_sizes: list[int] = []

    def spy_disc(self, x, condition):
        stage, alpha = self.growth_state()
        seen.append((self.global_step, stage, alpha, x.shape[-1], x.shape[-2]))
        return original_disc(self, x, condition)

    def spy_fake(self, z, condition):
        out = original_fake(self, z, condition)
        fake_sizes.append(out.shape[-1])
        return out

    monkeypatch.setattr(ProGAN, "discriminate", spy_disc)
    monkeypatch.setattr(ProGAN, "generate_fake", spy_fake)
    fit(cfg, model, objs["datamodule"])
    per_step = {step: (stage, alpha, size) for step, stage, alpha, size, _ in seen}
    expected_stage = [0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]
    expected_alpha = [1, 1, 0, 0.5, 1, 1, 0, 0.5, 1, 1, 0, 0.5, 1, 1]
    assert [per_step[s][0] for s in range(14)] == expected_stage
    assert [per_step[s][1] for s in range(14)] == expected_alpha
    # D reads images of the current resolution only: reals, fakes and GP interpolates.
    assert all(size == h == 4 * 2**stage for _, stage, _, size, h in seen)
    assert sorted(set(fake_sizes)) == [4, 8, 16, 32]
    # Samples are the current stage's, upsampled to full size.
    assert model.generate(n=3).shape == (3, 1, 32, 32)
    # Loaded without a Trainer (gan-eval), the model still samples at the stage it reached.
    fresh = instantiate(cfg.model)
    assert fresh.growth_state() == (0, 1.0)
    fresh.load_state_dict(model.state_dict())
    assert int(fresh.growth_step) == 14 and fresh.growth_state() == (3, 1.0)
    torch.testing.assert_close(fresh.generate(fresh.fixed_noise[:2]), model.generate(model.fixed_noise[:2]))


@pytest.mark.parametrize(
    ("growth", "steps", "active", "inactive"),
    [
        # Stabilised at 8x8 (start_resolution 8): only the 8x8 path trains.
        (
            growth_overrides(start=8, phase=5),
            1,
            [
                "generator.input",
                "generator.blocks.1.",
                "generator.to_rgb.1.",
                "discriminator.from_rgb.1.",
                "discriminator.blocks.1.",
                "discriminator.output_block",
            ],
            [
                "generator.to_rgb.0.",
                "generator.blocks.2.",
                "generator.blocks.3.",
                "generator.to_rgb.2.",
                "generator.to_rgb.3.",
                "discriminator.from_rgb.0.",
                "discriminator.from_rgb.2.",
                "discriminator.from_rgb.3.",
                "discriminator.blocks.2.",
                "discriminator.blocks.3.",
            ],
        ),
        # Fading 8x8 in (steps 1, 2: alpha 0, 0.5): both 4x4 and 8x8 outputs train.
        (
            growth_overrides(start=4, phase=1, fade=2),
            3,
            [
                "generator.to_rgb.0.",
                "generator.to_rgb.1.",
                "generator.blocks.1.",
                "discriminator.from_rgb.0.",
                "discriminator.from_rgb.1.",
                "discriminator.blocks.1.",
            ],
            [
                "generator.blocks.2.",
                "generator.blocks.3.",
                "generator.to_rgb.2.",
                "generator.to_rgb.3.",
                "discriminator.from_rgb.2.",
                "discriminator.from_rgb.3.",
                "discriminator.blocks.2.",
                "discriminator.blocks.3.",
            ],
        ),
    ],
    ids=["stable_8x8", "fading_8x8"],
)
def test_a_step_updates_only_the_active_blocks(make_cfg, growth, steps, active, inactive) -> None:
    cfg = make_cfg(*tiny(*growth, f"schedule.max_steps={steps}"))
    objs = build(cfg)
    model = objs["model"]
    before = snapshot(model)
    fit(cfg, model, objs["datamodule"])
    assert changed_prefixes(before, model, active) == dict.fromkeys(active, True)
    assert changed_prefixes(before, model, inactive) == dict.fromkeys(inactive, False)


def test_drift_term_is_logged_and_weighted(make_cfg) -> None:
    cfg = make_cfg(*tiny(*growth_overrides(), "schedule.max_steps=1"))
    model = instantiate(cfg.model)
    scores = torch.tensor([2.0, -2.0])
    terms = model.discriminator_extra_losses(scores, None, None, None)
    assert terms.losses["drift"].item() == pytest.approx(0.004)
    model.drift_weight = 0.0
    assert model.discriminator_extra_losses(scores, None, None, None).losses == {}


# ---------------------------------------------------------------- resume, experiment
def alpha_by_step(run_dir: Path) -> dict[int, tuple[float, float]]:
    return {
        r["step"]: (r["train/stage_resolution"], r["train/alpha"])
        for r in read_records(run_dir / "metrics.jsonl")
        if "train/alpha" in r and "status" not in r
    }


def test_resume_mid_fade_continues_the_same_stage_and_alpha(tmp_path) -> None:
    # steps_per_phase 2, fade 4: steps 2..5 fade 8x8 in (alpha 0, .25, .5, .75); stop at step 4.
    common = tiny(*growth_overrides(phase=2, fade=4), "callbacks.model_checkpoint.every_n_train_steps=4")
    full = compose_config([*common, "schedule.max_steps=7"], tmp_path / "full")
    train(full)
    first = compose_config([*common, "schedule.max_steps=4"], tmp_path / "first")
    train(first)
    ckpt = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    resumed = compose_config([*common, "schedule.max_steps=7", f"ckpt_path={ckpt}"], tmp_path / "resumed")
    result = train(resumed)
    assert result["status"] == "finished"
    uninterrupted, after = alpha_by_step(tmp_path / "full"), alpha_by_step(tmp_path / "resumed")
    assert after and min(after) >= 4
    assert after == {step: uninterrupted[step] for step in after}
    assert after[4] == (8.0, 0.5) and after[5] == (8.0, 0.75) and after[6] == (8.0, 1.0)


def test_experiment_composes_and_logs_stage_and_alpha(make_cfg) -> None:
    cfg = make_cfg(*tiny(*growth_overrides(phase=1, fade=1), "schedule.max_steps=7"))
    assert cfg.model._target_ == "gan_research.families.progan.ProGAN"
    assert cfg.schedule.lr_g == 1e-3 and list(cfg.schedule.betas_g) == [0.0, 0.99]
    assert cfg.loss.regularizers.gp.weight == 10.0
    train(cfg)
    run = Path(cfg.paths.output_dir)
    records = read_records(run / "metrics.jsonl")
    assert records[-1]["status"] == "finished"
    logged = alpha_by_step(run)
    assert sorted({res for res, _ in logged.values()}) == [4.0, 8.0, 16.0, 32.0]
    assert logged[max(logged)] == (32.0, 1.0)
    assert all("train/d_drift" in r for r in records if "train/alpha" in r and "status" not in r)
    assert (run / "samples" / "step_0000002.png").is_file()


def test_progan_digits_timeline_is_the_documented_one(make_cfg) -> None:
    """What conf/experiment/progan_digits.yaml and experiments/progan_digits/README.md state:
    32x32 fades in over steps 1000-1199, reaches alpha 1 at step 1200 (not 1400) and trains at
    alpha 1 for the remaining 400 of the 1600 steps."""
    cfg = make_cfg("experiment=progan_digits", tiny=False)  # its own max_steps
    growth = GrowthSchedule.create(cfg.model.growth)
    at = {step: growth.stage_and_alpha(step, num_stages=4) for step in (199, 200, 599, 600, 999, 1000)}
    assert at == {199: (0, 1.0), 200: (1, 0.0), 599: (1, 1.0), 600: (2, 0.0), 999: (2, 1.0), 1000: (3, 0.0)}
    assert growth.stage_and_alpha(1199, 4) == (3, 0.995)
    assert growth.stage_and_alpha(1200, 4) == (3, 1.0) and growth.phase_start(3) == 1000
    assert cfg.schedule.max_steps == 1600
