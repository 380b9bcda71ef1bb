"""The divergence guard: a run whose losses turn NaN/Inf or explode, or whose weights or optimiser
state turn NaN/Inf, stops with status `diverged` (or rolls back) and leaves only good checkpoints."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from gan_research.callbacks.divergence import (
    DivergenceGuard,
    TrainingDiverged,
    non_finite_flag,
    state_tensors,
)
from gan_research.train import train
from gan_research.utils.jsonl_logger import read_records

# Adam at lr 1e6 on an unbounded WGAN critic: |loss| ~ 1e24 and Adam's exp_avg_sq at Inf after one step.
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
    """Weights and optimiser states of a checkpoint are all finite."""
    checkpoint = torch.load(ckpt, weights_only=True)
    tensors = list(checkpoint["state_dict"].values())
    for optimizer in checkpoint["optimizer_states"]:
        tensors += [v for state in optimizer["state"].values() for v in state.values()]
    return all(torch.isfinite(v).all() for v in tensors if torch.is_tensor(v) and v.is_floating_point())


def _final(cfg) -> dict:
    return read_records(Path(cfg.paths.output_dir) / "metrics.jsonl")[-1]


class Poison(pl.Callback):
    """Turns one generator weight into NaN just before step ``at_step``: a blow-up on demand."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, *args) -> None:
        if trainer.global_step + 1 == self.at_step:
            with torch.no_grad():
                next(pl_module.generator.parameters()).view(-1)[0] = float("nan")


class PoisonState(pl.Callback):
    """Sets one entry of the last optimiser's ``exp_avg_sq`` to Inf just before step ``at_step``.

    Adam then divides that weight's update by Inf: the weight freezes, the losses stay finite, and
    only the optimiser state shows the damage (what a too-high learning rate does to Adam).
    """

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, *args) -> None:
        if trainer.global_step + 1 == self.at_step:
            state = next(iter(trainer.optimizers[-1].state.values()))
            state["exp_avg_sq"].view(-1)[0] = float("inf")


def test_nan_weights_stop_the_run_at_the_checkpoint_before_it_is_written(make_cfg):
    cfg = make_cfg(
        "model=mlp",
        "dataset=ring8",
        "schedule.max_steps=40",
        "callbacks.model_checkpoint.every_n_train_steps=1",
        "callbacks.divergence.check_every_n_steps=1000",
        "+callbacks.poison._target_=tests.callbacks.test_divergence.Poison",
        "+callbacks.poison.at_step=3",
    )
    with pytest.raises(TrainingDiverged, match=r"a non-finite loss at step 3; non-finite weights") as err:
        train(cfg)
    assert "Lower the learning rates" in str(err.value)
    final = _final(cfg)
    assert final["status"] == "diverged" and "training diverged" in final["reason"]
    ckpts = sorted((Path(cfg.paths.output_dir) / "checkpoints").glob("*.ckpt"))
    # The check interval (1000) is longer than the run: the checkpoint hook alone stopped it.
    assert [c.name for c in ckpts] == ["last.ckpt", "step_0000001.ckpt", "step_0000002.ckpt"]
    assert all(_all_finite(c) for c in ckpts)


def test_a_huge_finite_loss_stops_the_run_by_default(make_cfg):
    """lr_d=1e3: the losses jump to ~1e13 at step 1 and stay finite (Adam's state too, for a while):
    without the default bound this run ended `finished`."""
    cfg = make_cfg("model=mlp", "dataset=ring8", "schedule.lr_d=1e3")
    assert cfg.callbacks.divergence.max_abs_loss == 1e6
    with pytest.raises(TrainingDiverged, match=r"\|loss\| > 1e\+06 (at|between) step") as err:
        train(cfg)
    message = str(err.value)
    assert "non-finite" not in message  # the bound fired, not the NaN/Inf check
    assert "raise callbacks.divergence.max_abs_loss" in message
    final = _final(cfg)
    assert final["status"] == "diverged" and final["step"] <= 2
    assert not list((Path(cfg.paths.output_dir) / "checkpoints").glob("step_*.ckpt"))


@pytest.mark.parametrize("action", ["stop", "rollback"])
def test_non_finite_optimiser_state_is_caught(make_cfg, action):
    cfg = make_cfg(
        "model=mlp",
        "dataset=ring8",
        "schedule.max_steps=7",
        "callbacks.model_checkpoint.every_n_train_steps=2",
        "callbacks.divergence.check_every_n_steps=1",
        f"callbacks.divergence.on_divergence={action}",
        "+callbacks.poison._target_=tests.callbacks.test_divergence.PoisonState",
        "+callbacks.poison.at_step=5",
    )
    if action == "stop":
        with pytest.raises(
            TrainingDiverged, match=r"non-finite weights or optimiser state .* at step 5"
        ) as err:
            train(cfg)
        assert "non-finite loss" not in str(err.value) and "|loss|" not in str(err.value)
        assert _final(cfg)["status"] == "diverged"
    else:
        # Back to step 4's checkpoint (finite state), learning rates halved, on to the end.
        result = train(cfg)
        assert result["status"] == "finished"
        assert result["metrics"]["train/rollbacks"] == 1
    ckpts = list((Path(cfg.paths.output_dir) / "checkpoints").glob("*.ckpt"))
    assert ckpts and all(_all_finite(c) for c in ckpts)


def test_state_check_sees_nan_and_inf_in_weights_and_adam_state_but_not_huge_finite_values():
    layer = torch.nn.Linear(4, 3)
    optimizer = torch.optim.Adam(layer.parameters())
    layer(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    tensors = state_tensors([optimizer])
    # weight, bias, and exp_avg/exp_avg_sq of each (Adam's step counter left out).
    assert len(tensors) == 6
    assert not bool(non_finite_flag(tensors, "cpu"))
    state = optimizer.state[layer.weight]
    state["exp_avg_sq"].fill_(1e38)  # finite: an inf-norm does not overflow where a 2-norm would
    assert not bool(non_finite_flag(state_tensors([optimizer]), "cpu"))
    state["exp_avg_sq"][0, 0] = float("inf")
    assert bool(non_finite_flag(state_tensors([optimizer]), "cpu"))
    state["exp_avg_sq"].fill_(1.0)
    with torch.no_grad():
        layer.bias[1] = float("nan")  # a weight alone, no loss needed
    assert bool(non_finite_flag(state_tensors([optimizer]), "cpu"))
    assert not bool(non_finite_flag([torch.full((10**5,), 60000.0, dtype=torch.float16)], "cpu"))


class _Strategy:
    """The DDP reduction as seen from a process whose own flags are clean while another's are not."""

    def __init__(self, others: list[bool]) -> None:
        self.others = list(others)  # the other process's flags, in the order of the reductions
        self.calls: list[bool] = []

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        assert all is False  # "any process"
        self.calls.append(decision)
        return decision or self.others.pop(0)


def test_ddp_every_process_stops_and_names_the_cause_found_on_another():
    layer = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    module = SimpleNamespace(last_step_logs={"train/d_loss": torch.tensor(0.5)}, device=torch.device("cpu"))
    guard = DivergenceGuard(check_every_n_steps=5)
    # Another process saw |loss| beyond the bound: one "any" reduction, then one per cause.
    strategy = _Strategy(others=[True, False, True, False])
    trainer = SimpleNamespace(global_step=5, world_size=2, strategy=strategy, optimizers=[optimizer])
    with pytest.raises(TrainingDiverged, match=r"\|loss\| > 1e\+06 between steps 1 and 5") as err:
        guard.on_train_batch_end(trainer, module)
    assert "non-finite" not in str(err.value)
    assert strategy.calls == [False] * 4  # this process's own flags were clean
    # A check that is clean everywhere costs one reduction.
    strategy = _Strategy(others=[False])
    trainer = SimpleNamespace(global_step=10, world_size=2, strategy=strategy, optimizers=[optimizer])
    DivergenceGuard(check_every_n_steps=5).on_train_batch_end(trainer, module)
    assert strategy.calls == [False]


def test_healthy_run_is_not_stopped(make_cfg):
    # Every step checked, with the default loss bound and the weight/optimiser-state check.
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
    assert _final(cfg)["status"] == "diverged"
