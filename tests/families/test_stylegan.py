"""StyleGAN family: style mixing in training, lazy R1 and path-length intervals, EMA sampling,
grids, config errors and the experiments."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from gan_research.errors import ConfigError
from gan_research.families.stylegan import MIXING_SOURCES, TRUNCATION_STEPS, StyleGAN
from gan_research.losses import R1Penalty
from gan_research.train import build, train

TINY_WIDTHS = (
    "model.generator.latent_dim=16",
    "model.generator.w_dim=16",
    "model.generator.fmap_base=128",
    "model.generator.fmap_max=8",
    "model.generator.mapping_layers=2",
    "model.discriminator.fmap_base=128",
    "model.discriminator.fmap_max=8",
    "dataset.batch_size=8",
)
TINY_STYLEGAN2 = ("model=stylegan2", "loss=non_saturating_r1", "schedule=stylegan2", *TINY_WIDTHS)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: with several threads on a shared CPU, thread synchronisation costs more
    than the convolutions themselves (about 10x here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fit(cfg, model, datamodule):
    trainer = instantiate(cfg.trainer, callbacks=[], logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=datamodule)
    return trainer


def test_a_step_updates_both_networks_and_logs_r1_and_path_length(make_cfg):
    cfg = make_cfg(*TINY_STYLEGAN2, "schedule.max_steps=1")
    objs = build(cfg)
    model = objs["model"]
    g0 = {k: v.clone() for k, v in model.generator.named_parameters()}
    d0 = {k: v.clone() for k, v in model.discriminator.named_parameters()}
    fit(cfg, model, objs["datamodule"])
    assert any(not torch.equal(g0[k], v) for k, v in model.generator.named_parameters())
    assert any(not torch.equal(d0[k], v) for k, v in model.discriminator.named_parameters())
    # Step 0 is due for both lazy regularisers.
    logs = model.last_step_logs
    assert {"train/d_loss", "train/g_loss", "train/d_r1", "train/g_pl", "train/pl_mean"} <= set(logs)
    assert float(model.pl_mean) > 0
    # The mapping network's w_avg moved during training.
    assert model.generator.w_avg.abs().sum() > 0


def test_lazy_r1_runs_every_d_reg_every_d_updates(make_cfg, monkeypatch):
    cfg = make_cfg(*TINY_STYLEGAN2, "schedule.d_reg_every=4", "schedule.max_steps=9", "model.pl_weight=0")
    objs = build(cfg)
    calls: list[int] = []
    original = R1Penalty.__call__
    model = objs["model"]

    def count(self, *args, **kwargs):
        calls.append(model.d_update_count())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(R1Penalty, "__call__", count)
    fit(cfg, model, objs["datamodule"])
    assert calls == [0, 4, 8]


@pytest.mark.parametrize(("pl_weight", "expected"), [(2.0, [0, 4, 8]), (0.0, [])])
def test_path_length_regularisation_runs_every_g_reg_every_steps(make_cfg, monkeypatch, pl_weight, expected):
    cfg = make_cfg(
        *TINY_STYLEGAN2, f"model.pl_weight={pl_weight}", "schedule.g_reg_every=4", "schedule.max_steps=10"
    )
    objs = build(cfg)
    model = objs["model"]
    steps: list[int] = []
    original = StyleGAN.path_length_penalty

    def count(self, batch_size):
        steps.append(self.global_step)
        # Half the G batch (pl_batch_shrink=2), as the official code.
        assert batch_size == cfg.dataset.batch_size // 2
        return original(self, batch_size)

    monkeypatch.setattr(StyleGAN, "path_length_penalty", count)
    fit(cfg, model, objs["datamodule"])
    assert steps == expected


def test_path_length_penalty_is_differentiable_and_tracks_the_mean_length(make_cfg):
    model = build(make_cfg(*TINY_STYLEGAN2))["model"]
    torch.manual_seed(0)
    penalty, mean_length = model.path_length_penalty(4)
    assert torch.allclose(model.pl_mean, 0.01 * mean_length)
    penalty.backward()
    grads = [p.grad for p in model.generator.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("mixing_prob", [1.0, 0.0])
def test_style_mixing_in_training_takes_styles_after_the_crossover_from_a_second_latent(
    make_cfg, monkeypatch, mixing_prob
):
    model = build(make_cfg(*TINY_STYLEGAN2, f"model.mixing_prob={mixing_prob}"))["model"]
    g = model.generator
    z1, z2 = torch.randn(4, 16), torch.randn(4, 16)
    latents = iter([z2])
    monkeypatch.setattr(model, "sample_latent", lambda n: next(latents))
    torch.manual_seed(0)
    ws = model.mapping_with_mixing(z1)
    w1, w2 = g.mapping(z1, update_w_avg=False), g.mapping(z2, update_w_avg=False)
    from_first = [bool(torch.allclose(ws[:, i], w1[:, i])) for i in range(g.num_ws)]
    if mixing_prob == 0:
        assert all(from_first)
        return
    k = from_first.index(False)
    assert 1 <= k < g.num_ws and all(from_first[:k])
    assert torch.allclose(ws[:, k:], w2[:, k:])


def test_sampling_uses_the_ema_generator(make_cfg):
    cfg = make_cfg(*TINY_STYLEGAN2, "schedule.max_steps=2", "schedule.ema_decay=0.5")
    objs = build(cfg)
    model = objs["model"]
    fit(cfg, model, objs["datamodule"])
    assert model.sampling_generator is model.generator_ema
    ema = dict(model.generator_ema.named_parameters())
    assert any(not torch.equal(p, ema[k]) for k, p in model.generator.named_parameters())
    z = torch.randn(3, 16)
    torch.manual_seed(0)
    samples = model.generate(z)
    torch.manual_seed(0)
    assert torch.equal(samples, model.generator_ema.eval()(z))
    # The EMA keeps G's tracked mean of w (a buffer), which truncation uses.
    assert torch.equal(model.generator_ema.w_avg, model.generator.w_avg)


def test_grid_samples_are_truncated_and_extra_grids_have_their_layout(make_cfg):
    model = build(make_cfg(*TINY_STYLEGAN2, "model.truncation_psi=0.0"))["model"]
    model.generator_ema.mapping_network.w_avg.normal_()
    images, _ = model.grid_samples()
    assert images.shape == (64, 1, 32, 32)
    # psi = 0: every sample is the image of w_avg (noise aside).
    assert images.std(dim=0).mean() < images.std() * 0.5
    grids = model.extra_grids()
    mixing, nrow = grids["style_mixing"]
    assert nrow == MIXING_SOURCES + 1 and mixing.shape[0] == (1 + 3 * 3) * nrow
    sweep, steps = grids["truncation"]
    assert steps == TRUNCATION_STEPS and sweep.shape[0] == 6 * TRUNCATION_STEPS
    # The psi = 0 column is the same image (that of w_avg) in every row.
    middle = sweep.view(6, TRUNCATION_STEPS, 1, 32, 32)[:, TRUNCATION_STEPS // 2]
    assert torch.allclose(middle, middle[:1].expand_as(middle), atol=1e-5)


def test_style_mixing_grid_changes_only_the_groups_styles(make_cfg):
    """A coarse-group row with identical source and destination reproduces the destination."""
    model = build(make_cfg(*TINY_STYLEGAN2, "model.truncation_psi=1.0"))["model"]
    model.fixed_noise[MIXING_SOURCES] = model.fixed_noise[0]
    mixing, nrow = model.extra_grids()["style_mixing"]
    row = mixing[nrow : 2 * nrow]
    assert torch.allclose(row[0], row[1], atol=1e-5) and torch.allclose(row[1], mixing[1], atol=1e-5)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.mixing_prob=1.5", "mixing_prob=1.5"),
        ("schedule.g_reg_every=0", "g_reg_every=0"),
        ("model.pl_weight=-1", "pl_weight=-1"),
        ("model.generator.image_size=48", "image_size=48"),
        ("model.generator.version=3", "version=3"),
    ],
)
def test_bad_values_are_config_errors(make_cfg, override, message):
    with pytest.raises(ConfigError, match=message):
        build(make_cfg(*TINY_STYLEGAN2, override))


def test_a_non_style_generator_is_refused(make_cfg):
    with pytest.raises(ConfigError, match="style-based generator"):
        build(
            make_cfg(
                *TINY_STYLEGAN2[:3],
                "model.generator._target_=gan_research.networks.dcgan.DCGANGenerator",
                "~model.generator.w_dim",
                "~model.generator.fmap_base",
                "~model.generator.fmap_max",
                "~model.generator.version",
                "~model.generator.mapping_layers",
                "~model.generator.mapping_lr_multiplier",
                "~model.generator.w_avg_beta",
                "~model.generator.demodulate",
                "+model.generator.ngf=8",
                "model.discriminator.fmap_base=128",
                "model.discriminator.fmap_max=8",
            )
        )


@pytest.mark.parametrize("experiment", ["stylegan2_digits", "stylegan_digits"])
def test_experiment_runs_a_few_steps_and_saves_its_grids(make_cfg, experiment):
    cfg = make_cfg(f"experiment={experiment}", *TINY_WIDTHS, "schedule.max_steps=2", "threads=1")
    assert cfg.model.generator.version == (2 if experiment == "stylegan2_digits" else 1)
    assert cfg.schedule.d_reg_every == 16 and cfg.schedule.ema_decay is not None
    assert "r1" in cfg.loss.regularizers
    result = train(cfg)
    assert result["status"] == "finished" and result["trainer"].global_step == 2
    samples = result["run_dir"] / "samples"
    assert (samples / "step_0000002.png").is_file()
    for name in ("style_mixing", "truncation"):
        assert (samples / name / "step_0000002.png").is_file(), name


def test_experiment_defaults_keep_the_papers_mapping_depth(make_cfg):
    cfg = make_cfg("experiment=stylegan2_digits", tiny=False)
    g = cfg.model.generator
    assert g.mapping_layers == 8 and 64 <= g.w_dim <= 128 and g.image_size == 32
