"""Evaluation during training: every ``every_n_steps`` generator steps, at the end of training
and optionally before the first step, the run's evaluator scores the module.

What is measured is the evaluator's business (the ``evaluator`` node of the ``metrics`` config
group, see :mod:`gan_research.metrics.evaluator`): the metric suite of generators
(``conf/metrics/default.yaml``: mode counts, FID/KID/IS..., on the EMA generator when there is
one) or the translation metrics of pix2pix and CycleGAN (``conf/metrics/translation.yaml``).
This callback only decides when, and where the numbers go: every logger (W&B history,
``metrics.jsonl``) and ``trainer.callback_metrics``, which is what ``train()`` returns to
sweeps, with the time taken as ``val/eval_seconds``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytorch_lightning as pl
import torch

from gan_research.callbacks.progress import StepProgress
from gan_research.metrics.evaluator import Evaluator, require_scores

log = logging.getLogger(__name__)


class Evaluation(pl.Callback):
    """Evaluate the module periodically with ``evaluator``.

    Args:
        evaluator: what to measure (:class:`~gan_research.metrics.evaluator.Evaluator`).
        every_n_steps: interval in generator steps (0: only at the end of training).
        eval_at_start: also evaluate before the first step (the untrained baseline).
        stop_on_collapse: stop training when the evaluator flags a collapse (``val/collapse``).
        **settings: the group's other keys (``num_samples``, ``feature_network``, ...). They are
            the evaluator's settings, which its node reads by interpolation (``${..num_samples}``)
            so that ``metrics.<key>=...`` keeps working; this callback does not use them.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        every_n_steps: int = 500,
        eval_at_start: bool = False,
        stop_on_collapse: bool = False,
        **settings: Any,
    ) -> None:
        if every_n_steps < 0:
            raise ValueError(f"metrics.every_n_steps must be >= 0, got {every_n_steps}")
        self.evaluator = evaluator
        self.every_n_steps = every_n_steps
        self.eval_at_start = eval_at_start
        self.stop_on_collapse = stop_on_collapse
        # Shown while evaluating ("evaluating 2500 samples…"); the evaluator reads it from the group.
        self.num_samples = settings.get("num_samples")
        self._prepared = False
        self._last_step = -1
        self.seconds = 0.0  # total evaluation time, for the evaluation-cost benchmark
        self.collapse_reasons: list[str] = []

    def check_model(self, model: Any, fix: str) -> None:
        """Refuse a model whose evaluation output the evaluator does not read (before training)."""
        require_scores(self.evaluator, model, fix)

    def prepare(self, datamodule: Any) -> None:
        """Prepare the evaluator before training, so a missing feature network fails before any work."""
        self.evaluator.prepare(datamodule)
        self._prepared = True

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not self._prepared:
            self.prepare(trainer.datamodule)

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if self.eval_at_start:
            self.evaluate(trainer, pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.evaluate(trainer, pl_module)

    def evaluate(self, trainer: pl.Trainer, pl_module: Any) -> dict[str, float]:
        step = trainer.global_step
        if step == self._last_step:
            return {}
        self._last_step = step
        bar = getattr(trainer, "progress_bar_callback", None)
        if isinstance(bar, StepProgress):
            bar.evaluating(step, self.num_samples)
        started = time.perf_counter()
        # Each process generates its share of the samples; the metrics' states are synced by torchmetrics.
        results = self.evaluator.evaluate(pl_module, world_size=max(1, trainer.world_size))
        elapsed = time.perf_counter() - started
        self.seconds += elapsed
        results["val/eval_seconds"] = elapsed
        for logger in trainer.loggers:
            logger.log_metrics(results, step=step)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in results.items()})
        if isinstance(bar, StepProgress):
            bar.evaluated(step, results, elapsed)
        if results.get("val/collapse"):
            self.collapse_reasons = list(self.evaluator.last_collapse_reasons)
            log.warning("mode collapse at step %d: %s", step, "; ".join(self.collapse_reasons))
            if self.stop_on_collapse:
                trainer.should_stop = True
        return results
