"""The divergence guard: a NaN run stops with status `diverged` and leaves only good checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from gan_research.callbacks.divergence import DivergenceGuard, TrainingDiverged
from gan_research.train import train
from gan_research.utils.jsonl_logger import read_records

# Adam at lr 1e6 on an unbounded WGAN critic turns the losses to Inf/NaN within a few steps.
EXPLODING = [
    "model=mlp",
    "dataset=ring8",
    "loss=wgan",
    "loss.weight_clip=null",
    "schedule.lr_g=1e6",
    "schedule.lr_d=1e6",
    "schedule.n_critic=1",
    "schedule.max_steps=40",
    "callbacks.model_checkpoint.every_n_train_steps=1",
    "callbacks.divergence.check_every_n_steps=1000",
]


def _all_finite(ckpt: Path) -> bool:
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_nan_run_stops_as_diverged_without_a_bad_checkpoint(make_cfg):
    cfg = make_cfg(*EXPLODING)
    with pytest.raises(TrainingDiverged, match=r"non-finite loss (at|between) step"):
        train(cfg)
    run = Path(cfg.paths.output_dir)
    final = read_records(run / "metrics.jsonl")[-1]
    assert final["status"] == "diverged"
    assert "training diverged" in final["reason"]
    assert final["step"] < 40
    ckpts = sorted((run / "checkpoints").glob("*.ckpt"))
    # The check interval (1000) is longer than the run: the checkpoint hook alone stopped it.
    assert ckpts, "the first steps were finite and checkpointed"
    assert all(_all_finite(c) for c in ckpts)


def test_healthy_run_is_not_stopped(make_cfg):
    result = train(make_cfg("model=mlp", "dataset=ring8", "callbacks.divergence.check_every_n_steps=1"))
    assert result["status"] == "finished"


def test_loss_bound(make_cfg):
    cfg = make_cfg(
        "model=mlp",
        "dataset=ring8",
        "loss=wgan",
        "callbacks.divergence.max_abs_loss=1e-12",
        "callbacks.divergence.check_every_n_steps=1",
    )
    with pytest.raises(TrainingDiverged, match=r"\|loss\| > 1e-12 at step 1"):
        train(cfg)


@pytest.mark.parametrize("kwargs", [{"check_every_n_steps": 0}, {"max_abs_loss": -1.0}])
def test_invalid_settings(kwargs):
    with pytest.raises(ValueError, match=r"callbacks\.divergence"):
        DivergenceGuard(**kwargs)


class Poison(pl.Callback):
    """Turns one generator weight into NaN just before step ``at_step``: a blow-up on demand."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, *args) -> None:
        if trainer.global_step + 1 == self.at_step:
            with torch.no_grad():
                next(pl_module.generator.parameters()).view(-1)[0] = float("nan")


def test_rollback_reloads_the_last_checkpoint_with_lower_learning_rates(make_cfg):
    """on_divergence=rollback: a run whose weights turn NaN at step 8 goes back to its last good
    checkpoint (step 5) with halved learning rates and finishes; every checkpoint is finite."""
    cfg = make_cfg(
        "model=mlp",
        "dataset=ring8",
        "schedule.max_steps=12",
        "callbacks.model_checkpoint.every_n_train_steps=5",
        "callbacks.divergence.on_divergence=rollback",
        "callbacks.divergence.lr_factor=0.5",
        "+callbacks.poison._target_=tests.callbacks.test_divergence.Poison",
        "+callbacks.poison.at_step=8",
    )
    result = train(cfg)
    assert result["status"] == "finished"
    assert result["trainer"].global_step == 12
    assert result["metrics"]["train/rollbacks"] == 1
    lr = cfg.schedule.lr_g
    assert result["metrics"]["train/lr_g"] == pytest.approx(lr / 2)
    assert result["metrics"]["train/lr_d"] == pytest.approx(cfg.schedule.lr_d / 2)
    ckpts = sorted((Path(cfg.paths.output_dir) / "checkpoints").glob("*.ckpt"))
    assert [c.name for c in ckpts] == ["last.ckpt", "step_0000005.ckpt", "step_0000010.ckpt"]
    assert all(_all_finite(c) for c in ckpts)


def test_rollback_gives_up_after_max_rollbacks(make_cfg):
    cfg = make_cfg(
        *EXPLODING,
        "callbacks.divergence.on_divergence=rollback",
        "callbacks.divergence.lr_factor=0.5",
        "callbacks.divergence.max_rollbacks=2",
        "callbacks.model_checkpoint.every_n_train_steps=1",
    )
    with pytest.raises(TrainingDiverged):
        train(cfg)
    final = read_records(Path(cfg.paths.output_dir) / "metrics.jsonl")[-1]
    assert final["status"] == "diverged"
