"""Stop a run whose losses became non-finite or exploded, or whose optimiser state overflowed,
before it writes a bad checkpoint.

A GAN that diverges produces NaN/Inf losses and, one optimiser step later,
NaN weights; every checkpoint saved after that point is useless and would
replace ``last.ckpt``. Not every blow-up reaches NaN, though: at a learning rate
of 100 or 1e3 the losses sit at a finite 1e13-1e34 while Adam's ``exp_avg_sq``
(the squared gradients) overflows to Inf, which freezes the weights (the update
divides by it) and the run would end "finished". So the guard watches three things:

* a non-finite loss;
* a loss beyond ``max_abs_loss`` in absolute value (finite, but no healthy run gets there);
* non-finite weights or optimiser state (Adam's ``exp_avg``/``exp_avg_sq``, any
  momentum buffer) of the parameters the optimisers update.

The loss flags accumulate on the device every step (no host sync); the weights
and optimiser state are reduced at each check with one ``torch._foreach_norm``
(the max-abs norm: no overflow on huge finite values, NaN/Inf propagate) per
device. A check reads all flags at once every ``check_every_n_steps`` steps and,
unconditionally, just before any checkpoint is saved; on a bad flag it raises
:class:`TrainingDiverged` (``train()`` records status ``diverged`` in
``metrics.jsonl`` and W&B) or rolls back. Lightning runs checkpoint callbacks
after all others, so the step's checkpoint is never written.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from gan_research.callbacks.preemption import PreemptionCheckpoint

log = logging.getLogger(__name__)


ACTIONS = ("stop", "rollback")
# What a check can find, in the order of the flags and of the error message.
NON_FINITE_LOSS, LOSS_BOUND, NON_FINITE_STATE = "non-finite loss", "loss bound", "non-finite state"
KINDS = (NON_FINITE_LOSS, LOSS_BOUND, NON_FINITE_STATE)
_FIX = "Lower the learning rates (schedule.lr_g / schedule.lr_d) or add a gradient penalty"


class TrainingDiverged(RuntimeError):
    """A loss became non-finite or exceeded the configured bound, or the weights/optimiser state did."""


def state_tensors(optimizers: Iterable[torch.optim.Optimizer]) -> list[Tensor]:
    """The parameters the optimisers update and every floating tensor of their state.

    Adam's ``step`` counter is left out: a (CPU) scalar that is never non-finite.
    """
    tensors: list[Tensor] = []
    seen: set[int] = set()
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            for p in group["params"]:
                if id(p) not in seen:
                    seen.add(id(p))
                    tensors.append(p.detach())
        for state in optimizer.state.values():
            for key, value in state.items():
                if key != "step" and isinstance(value, Tensor):
                    tensors.append(value)
    return [t for t in tensors if t.is_floating_point() and t.numel() > 0 and not t.is_sparse]


def non_finite_flag(tensors: list[Tensor], device: torch.device | str) -> Tensor:
    """A 0-d bool tensor on ``device``: whether any of ``tensors`` holds NaN/Inf. No host sync."""
    by_device: dict[torch.device, list[Tensor]] = {}
    for t in tensors:
        by_device.setdefault(t.device, []).append(t)
    flag = torch.zeros((), dtype=torch.bool, device=device)
    for group in by_device.values():
        # inf-norm = max |x|: NaN and Inf propagate, and huge finite values cannot overflow
        # (a 2-norm of finite float16 weights can).
        norms = torch._foreach_norm(group, math.inf)
        bad = ~torch.isfinite(torch.stack([n.float() for n in norms])).all()
        flag = flag | bad.to(device, non_blocking=True)
    return flag


class DivergenceGuard(pl.Callback):
    """Raise :class:`TrainingDiverged` on a NaN/Inf loss, |loss| above ``max_abs_loss``, or NaN/Inf
    weights or optimiser state.

    Args:
        keys: the losses to watch, read from the module's ``last_step_logs`` (every family logs these).
        check_every_n_steps: how often the flags are read (a host sync on GPU) and the weights and
            optimiser state are checked; checkpoints are always checked first, so the interval only
            delays the stop.
        max_abs_loss: also treat |loss| above this as divergence (null: only NaN/Inf).
        on_divergence: ``stop`` (raise; status ``diverged``) or ``rollback``: reload the
            weights and optimiser states of the run's ``last.ckpt`` (written before the
            divergence: bad checkpoints are never saved), multiply every learning rate by
            ``lr_factor`` and go on. The step counter is not rewound. ``rollback`` checks
            every step, so that the rollback precedes that step's checkpoint.
        lr_factor: the learning-rate factor of a rollback.
        max_rollbacks: after this many rollbacks, the next divergence stops the run.
    """

    def __init__(
        self,
        keys: tuple[str, ...] | list[str] = ("train/d_loss", "train/g_loss"),
        check_every_n_steps: int = 25,
        max_abs_loss: float | None = 1e6,
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
        # Device-side (non-finite loss seen, bound exceeded) flags since the last clean check.
        self._bad: Tensor | None = None
        self._last_clean_check = 0  # the step of the last check that found nothing

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        logs = getattr(pl_module, "last_step_logs", {})
        values = [logs[k] for k in self.keys if k in logs]
        if values:
            losses = torch.stack([v.detach().float().reshape(()) for v in values])
            finite = torch.isfinite(losses)
            # Inf counts as non-finite only, so that the message names the right cause.
            bad = torch.stack([~finite.all(), (finite & (losses.abs() > self.max_abs_loss)).any()])
            # Device-side flags, read only at checks: no host sync per step.
            self._bad = bad if self._bad is None else self._bad | bad
        if self.on_divergence == "rollback" or trainer.global_step % self.check_every_n_steps == 0:
            self.check_divergence(trainer, pl_module)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        # Called while a checkpoint is being assembled: raising here keeps the bad one off disk.
        self.check_divergence(trainer, pl_module)

    def _flags(self, trainer: pl.Trainer, pl_module: Any) -> list[bool]:
        """(non-finite loss, loss bound, non-finite state) on this process, read in one host sync."""
        device = self._bad.device if self._bad is not None else pl_module.device
        loss_flags = self._bad if self._bad is not None else torch.zeros(2, dtype=torch.bool, device=device)
        state = non_finite_flag(state_tensors(trainer.optimizers), device)
        return [bool(f) for f in torch.cat([loss_flags, state.reshape(1)]).tolist()]

    def check_divergence(self, trainer: pl.Trainer, pl_module: Any) -> None:
        """Read the flags (every process together under DDP); roll back or raise on a bad one.

        Not named ``check``: ``train()`` calls a callback's ``check(model, datamodule)`` before the run.
        """
        if trainer.global_step == 0 and self._bad is None:
            return  # nothing trained yet
        flags = self._flags(trainer, pl_module)
        if trainer.world_size > 1:
            # Every process must stop together, or the others hang in the next collective. One
            # collective per check; naming the cause costs three more, only when stopping.
            if not trainer.strategy.reduce_boolean_decision(any(flags), all=False):
                flags = [False] * len(flags)
            else:
                flags = [trainer.strategy.reduce_boolean_decision(f, all=False) for f in flags]
        if not any(flags):
            self._last_clean_check = trainer.global_step
            return
        if self._can_roll_back(trainer):
            self._roll_back(trainer, pl_module, [k for k, f in zip(KINDS, flags, strict=True) if f])
            return
        raise TrainingDiverged(self._message(trainer, pl_module, flags))

    def _message(self, trainer: pl.Trainer, pl_module: Any, flags: list[bool]) -> str:
        logs = getattr(pl_module, "last_step_logs", {})
        values = {k: float(logs[k]) for k in self.keys if k in logs}
        now = trainer.global_step
        where = (
            f"at step {now}"
            if now == self._last_clean_check + 1
            else f"between steps {self._last_clean_check + 1} and {now}"
        )
        non_finite_loss, bound, state = flags
        causes = []
        if non_finite_loss:
            causes.append(f"a non-finite loss {where}")
        if bound:
            causes.append(f"|loss| > {self.max_abs_loss:g} {where}")
        if state:
            causes.append(
                "non-finite weights or optimiser state (e.g. Adam's exp_avg_sq overflowed) "
                f"found at step {now}"
            )
        fix = _FIX
        if bound and not (non_finite_loss or state):
            fix += (
                "; if losses this large are expected for this loss, raise callbacks.divergence.max_abs_loss "
                "(null: only NaN/Inf)"
            )
        return (
            f"training diverged: {'; '.join(causes)} (latest values {values}); no checkpoint was written "
            f"after it. {fix}."
        )

    def _can_roll_back(self, trainer: pl.Trainer) -> bool:
        if self.on_divergence != "rollback" or self.rollbacks >= self.max_rollbacks:
            return False
        path = PreemptionCheckpoint.last_checkpoint_path(trainer)
        return path is not None and Path(path).is_file()

    def _roll_back(self, trainer: pl.Trainer, pl_module: Any, causes: list[str]) -> None:
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
            "divergence (%s) at step %d: rolled back to %s (step %s), learning rates x%g (rollback %d of %d)",
            ", ".join(causes),
            trainer.global_step,
            path,
            checkpoint.get("global_step"),
            self.lr_factor,
            self.rollbacks,
            self.max_rollbacks,
        )
