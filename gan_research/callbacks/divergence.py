"""Stop a run whose losses became non-finite (or exploded) before it writes a bad checkpoint.

A GAN that diverges produces NaN/Inf losses and, one optimiser step later,
NaN weights; every checkpoint saved after that point is useless and would
replace ``last.ckpt``. The guard accumulates a "bad loss seen" flag on the
device every step (no host sync), reads it every ``check_every_n_steps`` steps
and, unconditionally, just before any checkpoint is saved; on a bad loss it
raises :class:`TrainingDiverged`, which ``train()`` records as status
``diverged`` in ``metrics.jsonl`` and W&B. Lightning runs checkpoint callbacks
after all others, so the step's checkpoint is never written.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from gan_research.callbacks.preemption import PreemptionCheckpoint

log = logging.getLogger(__name__)


ACTIONS = ("stop", "rollback")


class TrainingDiverged(RuntimeError):
    """A loss became non-finite or exceeded the configured bound."""


class DivergenceGuard(pl.Callback):
    """Raise :class:`TrainingDiverged` when a watched loss is NaN/Inf or above ``max_abs_loss``.

    Args:
        keys: the losses to watch, read from the module's ``last_step_logs`` (every family logs these).
        check_every_n_steps: how often the device-side flag is read (a host sync on GPU);
            checkpoints are always checked first, so the interval only delays the stop.
        max_abs_loss: also treat |loss| above this as divergence (null: only NaN/Inf).
        on_divergence: ``stop`` (raise; status ``diverged``) or ``rollback``: reload the
            weights and optimiser states of the run's ``last.ckpt`` (written before the
            divergence: bad checkpoints are never saved), multiply every learning rate by
            ``lr_factor`` and go on. The step counter is not rewound. ``rollback`` reads the
            flag every step, so that the rollback precedes that step's checkpoint.
        lr_factor: the learning-rate factor of a rollback.
        max_rollbacks: after this many rollbacks, the next divergence stops the run.
    """

    def __init__(
        self,
        keys: tuple[str, ...] | list[str] = ("train/d_loss", "train/g_loss"),
        check_every_n_steps: int = 25,
        max_abs_loss: float | None = None,
        on_divergence: str = "stop",
        lr_factor: float = 0.5,
        max_rollbacks: int = 3,
    ) -> None:
        if on_divergence not in ACTIONS:
            raise ValueError(
                f"callbacks.divergence.on_divergence={on_divergence!r} is invalid; valid: {list(ACTIONS)}"
            )
        if not 0 < lr_factor < 1:
            raise ValueError(f"callbacks.divergence.lr_factor must be in (0, 1), got {lr_factor}")
        self.on_divergence = on_divergence
        self.lr_factor = lr_factor
        self.max_rollbacks = max_rollbacks
        self.rollbacks = 0
        if check_every_n_steps < 1:
            raise ValueError(
                f"callbacks.divergence.check_every_n_steps must be >= 1, got {check_every_n_steps}"
            )
        if max_abs_loss is not None and not max_abs_loss > 0:
            raise ValueError(f"callbacks.divergence.max_abs_loss must be > 0 or null, got {max_abs_loss}")
        self.keys = tuple(keys)
        self.check_every_n_steps = check_every_n_steps
        self.max_abs_loss = math.inf if max_abs_loss is None else float(max_abs_loss)
        self._bad: Tensor | None = None
        self._last_clean_check = 0  # the step of the last check that found nothing

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        logs = getattr(pl_module, "last_step_logs", {})
        values = [logs[k] for k in self.keys if k in logs]
        if not values:
            return
        losses = torch.stack([v.detach().float().reshape(()) for v in values])
        bad = ~torch.isfinite(losses).all() | (losses.abs() > self.max_abs_loss).any()
        # Device-side flag, read only at checks: no host sync per step.
        self._bad = bad if self._bad is None else self._bad | bad
        if self.on_divergence == "rollback" or trainer.global_step % self.check_every_n_steps == 0:
            self.check(trainer, pl_module)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        # Called while a checkpoint is being assembled: raising here keeps the bad one off disk.
        self.check(trainer, pl_module)

    def check(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if self._bad is None:
            return
        bad = self._bad
        if trainer.world_size > 1:
            # Every process must stop together, or the others hang in the next collective.
            bad = trainer.strategy.reduce_boolean_decision(bool(bad.item()), all=False)
        if not bool(bad):
            self._last_clean_check = trainer.global_step
            return
        if self._can_roll_back(trainer):
            self._roll_back(trainer, pl_module)
            return
        logs = getattr(pl_module, "last_step_logs", {})
        values = {k: float(logs[k]) for k in self.keys if k in logs}
        now = trainer.global_step
        where = (
            f"at step {now}"
            if now == self._last_clean_check + 1
            else (f"between steps {self._last_clean_check + 1} and {now}")
        )
        bound = "" if math.isinf(self.max_abs_loss) else f" or |loss| > {self.max_abs_loss:g}"
        raise TrainingDiverged(
            f"training diverged: a non-finite loss{bound} {where} "
            f"(latest values {values}); no checkpoint was written after it. Lower the learning "
            "rates (schedule.lr_g / schedule.lr_d) or add a gradient penalty."
        )

    def _can_roll_back(self, trainer: pl.Trainer) -> bool:
        path = PreemptionCheckpoint.last_checkpoint_path(trainer)
        return (
            self.on_divergence == "rollback"
            and self.rollbacks < self.max_rollbacks
            and path is not None
            and Path(path).is_file()
        )

    def _roll_back(self, trainer: pl.Trainer, pl_module: Any) -> None:
        path = PreemptionCheckpoint.last_checkpoint_path(trainer)
        assert path is not None
        checkpoint = torch.load(path, map_location=pl_module.device, weights_only=True)
        pl_module.load_state_dict(checkpoint["state_dict"])
        for optimizer, state in zip(trainer.optimizers, checkpoint["optimizer_states"], strict=True):
            # The checkpoint's states carry the rates of that time: scale the current ones, so
            # successive rollbacks compound.
            rates = [group["lr"] * self.lr_factor for group in optimizer.param_groups]
            optimizer.load_state_dict(state)
            for group, lr in zip(optimizer.param_groups, rates, strict=True):
                group["lr"] = lr
        for config in trainer.lr_scheduler_configs:
            # Schedulers recompute the rate from base_lrs every step; scale those too.
            config.scheduler.base_lrs = [lr * self.lr_factor for lr in config.scheduler.base_lrs]
        self.rollbacks += 1
        self._bad = None
        self._last_clean_check = trainer.global_step
        trainer.callback_metrics["train/rollbacks"] = torch.tensor(float(self.rollbacks))
        log.warning(
            "divergence at step %d: rolled back to %s (step %s), learning rates x%g (rollback %d of %d)",
            trainer.global_step,
            path,
            checkpoint.get("global_step"),
            self.lr_factor,
            self.rollbacks,
            self.max_rollbacks,
        )
