"""SRGAN: the two phases of one run (SRResNet pre-training with D untouched, then adversarial
training), the step learning-rate decay, the content losses, config errors and the sample grid."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from PIL import Image
from torchvision.utils import make_grid

from gan_research.data.super_resolution import bicubic_upsample
from gan_research.errors import ConfigError
from gan_research.families.srgan import SRGAN
from gan_research.train import build, train
from gan_research.utils.jsonl_logger import read_records
from tests.conftest import compose_config

# model=srgan on the embedded x4 digits (8 px -> 32 px) with tiny networks.
SR = (
    "dataset=digits_sr",
    "model=srgan",
    "schedule=srgan",
    "model.width=8",
    "model.generator.num_blocks=2",
    "model.discriminator.dense=16",
    "dataset.batch_size=4",
    "threads=1",
)


@pytest.fixture(autouse=True)
def _one_thread():
    # build() sets torch's threads from the config (threads=1); restore them afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def sr_cfg(tmp_path):
    def _make(*overrides: str):
        return compose_config([*SR, *overrides], tmp_path / "run")

    return _make


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Weights and buffers (batch-norm statistics): everything a D forward or update could move."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def train_records(run_dir) -> list[dict]:
    return [r for r in read_records(run_dir / "metrics.jsonl") if "status" not in r]


def fit(cfg, model, datamodule):
    trainer = instantiate(cfg.trainer, callbacks=[], logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=datamodule)
    return trainer


def test_pretraining_steps_leave_d_untouched_then_adversarial_training_starts(sr_cfg, monkeypatch):
    cfg = sr_cfg(
        "schedule.max_steps=3",
        "schedule.pretrain_steps=2",
        "callbacks.samples.every_n_steps=0",  # the grid at the end only
        "callbacks.model_checkpoint.every_n_train_steps=0",
    )
    assert cfg.schedule.lr_decay == "step"  # schedule=srgan's decay, at int(0.92 * 3) = 2
    seen: list[dict] = []
    original = SRGAN.training_step

    def spy(self, batch, batch_idx):
        d_calls = []
        hook = self.discriminator.register_forward_hook(lambda *_: d_calls.append(1))
        entry = {
            "step": self.global_step,
            "pretraining": self.pretraining,
            "d": state(self.discriminator),
            "g": state(self.generator),
            "d_optimizer_state": len(self.optimizers()[1].optimizer.state),
        }
        try:
            original(self, batch, batch_idx)
        finally:
            hook.remove()
        seen.append({**entry, "d_forwards": len(d_calls)})

    monkeypatch.setattr(SRGAN, "training_step", spy)
    result = train(cfg)
    assert result["status"] == "finished"
    model = result["model"]
    assert [s["step"] for s in seen] == [0, 1, 2]
    assert [s["pretraining"] for s in seen] == [True, True, False]
    # Pre-training: D neither asked nor updated (weights, BN statistics, Adam state) ...
    assert [s["d_forwards"] for s in seen] == [0, 0, 3]  # then real, fake, and G's score
    assert same(seen[0]["d"], seen[1]["d"]) and same(seen[0]["d"], seen[2]["d"])
    assert seen[2]["d_optimizer_state"] == 0
    # ... while G learns from the content loss alone.
    assert not same(seen[0]["g"], seen[1]["g"]) and not same(seen[1]["g"], seen[2]["g"])
    # The adversarial step updates D.
    assert not same(seen[2]["d"], state(model.discriminator))
    assert int(model.d_updates) == 1

    records = train_records(result["run_dir"])
    assert len(records) == 3
    for r in records[:2]:
        assert "train/g_content" in r and "train/d_loss" not in r and "train/g_adv" not in r
        assert r["train/g_loss"] == pytest.approx(r["train/g_content"])
    last = records[2]
    for key in ("train/d_loss", "train/g_adv", "train/g_content", "train/d_real", "train/d_fake"):
        assert key in last and math.isfinite(last[key]), key
    # Eq. 3: content + 1e-3 * adversarial.
    assert last["train/g_loss"] == pytest.approx(
        last["train/g_content"] + 1e-3 * last["train/g_adv"], rel=1e-5
    )

    # The sample grid: rows of LR (nearest) | bicubic | SR | HR, 32 px tiles, 2 px padding.
    grid, nrow = model.grid_samples()
    assert nrow == 4 and grid.shape == (4 * 8, 1, 32, 32)
    a, b = model.fixed_pairs()
    assert a.shape == (8, 1, 8, 8) and b.shape == (8, 1, 32, 32)
    nearest = a.repeat_interleave(4, dim=-1).repeat_interleave(4, dim=-2)
    torch.testing.assert_close(grid[0::4], nearest, rtol=0, atol=0)
    torch.testing.assert_close(grid[1::4], bicubic_upsample(a, 4))
    torch.testing.assert_close(grid[2::4], model.translate(a).cpu())
    torch.testing.assert_close(grid[3::4], b, rtol=0, atol=0)
    png = result["run_dir"] / "samples" / "step_0000003.png"
    expected = make_grid(grid, nrow=nrow, padding=2).shape  # the callback's layout
    with Image.open(png) as image:
        assert image.size == (expected[2], expected[1]) == (4 * (32 + 2) + 2, 8 * (32 + 2) + 2)


def test_step_lr_decay_drops_the_learning_rates_tenfold(sr_cfg, monkeypatch):
    cfg = sr_cfg(
        "schedule.max_steps=4",
        "schedule.pretrain_steps=0",
        "schedule.lr_decay=step",
        "schedule.lr_decay_start=0.5",
        "schedule.lr_decay_factor=0.1",
        "callbacks.samples.every_n_steps=0",
        "callbacks.model_checkpoint.every_n_train_steps=0",
    )
    used: list[float] = []
    original = SRGAN.generator_update

    def spy(self, opt_g, g):
        opt_d = self.optimizers()[1]
        used.extend([opt_g.param_groups[0]["lr"], opt_d.param_groups[0]["lr"]])
        return original(self, opt_g, g)

    monkeypatch.setattr(SRGAN, "generator_update", spy)
    result = train(cfg)
    # The updates before lr_decay_start * max_steps = 2 at 1e-4, those after at 1e-5 (G and D).
    assert used == pytest.approx([1e-4] * 4 + [1e-5] * 4)  # (lr_g, lr_d) per update
    logged = [r["train/lr_g"] for r in train_records(result["run_dir"])]
    assert logged[0] == pytest.approx(1e-4) and logged[-1] == pytest.approx(1e-5)
    assert all(v == pytest.approx(1e-4) or v == pytest.approx(1e-5) for v in logged)
    assert logged == sorted(logged, reverse=True)


def test_a_family_without_a_pretraining_loss_refuses_pretrain_steps(make_cfg):
    with pytest.raises(ConfigError) as info:
        build(
            make_cfg("model=dcgan", "dataset=digits", "schedule.pretrain_steps=1"), prepare_evaluation=False
        )
    message = str(info.value)
    assert "schedule.pretrain_steps=1" in message and "pretrain_steps=0" in message


def test_pretrain_steps_must_not_be_negative(sr_cfg):
    with pytest.raises(ConfigError, match=r"schedule.pretrain_steps=-1"):
        build(sr_cfg("schedule.pretrain_steps=-1"), prepare_evaluation=False)


def test_perceptual_content_loss_needs_a_feature_network(sr_cfg):
    with pytest.raises(ConfigError) as info:
        build(sr_cfg("model.content_loss=perceptual"), prepare_evaluation=False)
    message = str(info.value)
    assert "model.content_loss=perceptual" in message and "perceptual=random" in message


def test_unknown_content_loss_is_refused(sr_cfg):
    with pytest.raises(ConfigError, match=r"model.content_loss='vgg'.*pixel.*perceptual"):
        build(sr_cfg("model.content_loss=vgg"), prepare_evaluation=False)


def test_content_layer_the_network_does_not_return_is_refused(sr_cfg):
    cfg = sr_cfg("model.content_loss=perceptual", "perceptual=random", "model.content_layer=relu5_4")
    with pytest.raises(ConfigError) as info:
        build(cfg, prepare_evaluation=False)
    message = str(info.value)
    assert "model.content_layer='relu5_4'" in message
    assert "['scale1', 'scale2', 'scale3', 'scale4']" in message


def test_perceptual_content_loss_trains_on_feature_maps(sr_cfg):
    cfg = sr_cfg(
        "model.content_loss=perceptual",
        "perceptual=random",
        "model.content_layer=scale2",
        "schedule.max_steps=2",
        "schedule.pretrain_steps=1",
    )
    objs = build(cfg, prepare_evaluation=False)
    model = objs["model"]
    net = model.perceptual
    assert net is not None and "scale2" in net.layers
    # eq. 5: the MSE of the feature maps rescaled by 1/12.75 (the paper's section 3.2), not of the pixels.
    sr, hr = torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 1, 32, 32) * 2 - 1
    expected = F.mse_loss(net(sr)["scale2"] / 12.75, net(hr)["scale2"] / 12.75)
    torch.testing.assert_close(model.content_loss(sr, hr), expected)
    assert not torch.allclose(model.content_loss(sr, hr), F.mse_loss(sr, hr))
    # The frozen network is no part of the checkpointed state or of an optimiser.
    generator_params = {id(p) for p in model.generator.parameters()}
    assert not any(id(p) in generator_params for p in net.parameters())
    state_keys = set(model.state_dict())
    assert state_keys and all(
        k.split(".")[0] in {"generator", "discriminator"} or "." not in k for k in state_keys
    )
    trainer = fit(cfg, model, objs["datamodule"])
    assert trainer.global_step == 2
    logs = model.last_step_logs
    assert "train/g_content" in logs and torch.isfinite(logs["train/g_content"])
    assert "train/d_loss" in logs  # the second step is adversarial
    assert all(not p.requires_grad for p in net.parameters())


def test_pixel_content_loss_is_the_image_mse(sr_cfg):
    model = build(sr_cfg(), prepare_evaluation=False)["model"]
    assert model.perceptual is None and model.adversarial_weight == 1e-3
    sr, hr = torch.zeros(2, 1, 32, 32), torch.full((2, 1, 32, 32), 0.5)
    assert float(model.content_loss(sr, hr)) == pytest.approx(0.25)


def test_pretrain_steps_beyond_max_steps_train_srresnet_alone(sr_cfg):
    cfg = sr_cfg("schedule.max_steps=2", "schedule.pretrain_steps=5")
    objs = build(cfg, prepare_evaluation=False)
    model = objs["model"]
    d0 = state(model.discriminator)
    fit(cfg, model, objs["datamodule"])
    assert same(d0, state(model.discriminator)) and int(model.d_updates) == 0
    assert "train/d_loss" not in model.last_step_logs
