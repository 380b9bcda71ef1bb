"""The divergence guard: a NaN run stops with status `diverged` and leaves only good checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
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
    with pytest.raises(TrainingDiverged, match="non-finite loss at step"):
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
