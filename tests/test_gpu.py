"""The CUDA paths: the fast path trains, holds the data on the device and does not synchronise
the host with the device on steps that log nothing. Skipped without a CUDA device."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from gan_research.callbacks.fast_path import FastPath
from gan_research.train import build, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

GPU = ("perf=gpu", "trainer.accelerator=gpu", "trainer.devices=1")
# A gradient penalty needs a per-sample critic norm (Gulrajani et al. 2017, sec. 4).
LAYER_NORM_CRITIC = "model.discriminator.norm=layer"


@pytest.mark.parametrize("recipe", ["non_saturating", "wgan_gp"])
def test_fast_path_trains_with_the_data_on_the_gpu(make_cfg, recipe):
    norm = [LAYER_NORM_CRITIC] if recipe == "wgan_gp" else []
    cfg = make_cfg(*GPU, f"recipe={recipe}", *norm, "schedule.max_steps=6")
    result = train(cfg)
    assert result["status"] == "finished"
    assert result["datamodule"].train_set.x.device.type == "cuda"


@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_mixed_precision_with_a_gradient_penalty_on_gpu(make_cfg, precision):
    cfg = make_cfg(
        *GPU, "recipe=wgan_gp", LAYER_NORM_CRITIC, f"trainer.precision={precision}", "schedule.max_steps=6"
    )
    result = train(cfg)
    assert result["status"] == "finished"
    assert all(torch.isfinite(torch.as_tensor(v)) for v in result["metrics"].values())


class SyncWatch(pl.Callback):
    """Turns CUDA's sync debug mode to "warn" from the start to the end of each step that
    Lightning will not log (and that no periodic callback acts on)."""

    def __init__(self, log_every: int) -> None:
        self.log_every = log_every
        self.watched = 0

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        step = trainer.global_step + 1
        if step > 2 and step % self.log_every and step < trainer.max_steps:
            torch.cuda.set_sync_debug_mode("warn")
            self.watched += 1

    def on_train_batch_end(self, *args: Any) -> None:
        torch.cuda.set_sync_debug_mode("default")


def test_no_host_device_sync_on_steps_that_log_nothing(make_cfg):
    cfg = make_cfg(*GPU, "schedule.max_steps=12", "trainer.log_every_n_steps=10")
    objs = build(cfg)
    watch = SyncWatch(log_every=10)
    fast = FastPath(data_on_device=True, channels_last=True)
    # The watch first: its batch-end hook closes the window before any periodic callback runs.
    trainer = instantiate(cfg.trainer, callbacks=[watch, fast], logger=False, enable_checkpointing=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(objs["model"], datamodule=objs["datamodule"])
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message).lower()]
    assert watch.watched >= 5
    assert syncs == []
