"""Evaluation during training: every ``every_n_steps`` generator steps (and at
the end), the run's :class:`~gan_research.metrics.suite.MetricSuite` on samples
of the EMA generator when there is one (``sample_for_evaluation``: images, or
``(images, labels)`` from a class-conditional family). Results go to every logger (W&B
history, ``metrics.jsonl``) and to ``trainer.callback_metrics``, which is what
``train()`` returns to sweeps.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytorch_lightning as pl
import torch

from gan_research.metrics.suite import MetricSuite

log = logging.getLogger(__name__)


class Evaluation(pl.Callback):
    """Evaluate the generator periodically.

    Args:
        every_n_steps: interval in generator steps (0: only at the end of training).
        stop_on_collapse: stop training when the collapse detector fires.
        **suite_kwargs: the :class:`MetricSuite` settings (``metrics`` config group).
    """

    def __init__(self, every_n_steps: int = 500, stop_on_collapse: bool = False, **suite_kwargs: Any) -> None:
        if every_n_steps < 0:
            raise ValueError(f"metrics.every_n_steps must be >= 0, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.stop_on_collapse = stop_on_collapse
        self.suite_kwargs = suite_kwargs
        self.suite: MetricSuite | None = None
        self._last_step = -1
        self.seconds = 0.0  # total evaluation time, for the evaluation-cost benchmark
        self.collapse_reasons: list[str] = []

    def prepare(self, datamodule: Any) -> None:
        """Build the suite before training, so a missing feature network fails before any work."""
        self.suite = MetricSuite(datamodule, **self.suite_kwargs)
        self.suite.prepare()

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.suite is None:
            self.prepare(trainer.datamodule)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.evaluate(trainer, pl_module)

    def evaluate(self, trainer: pl.Trainer, pl_module: Any) -> dict[str, float]:
        step = trainer.global_step
        if step == self._last_step or self.suite is None:
            return {}
        self._last_step = step
        started = time.perf_counter()
        world = max(1, trainer.world_size)
        generator = pl_module.sampling_generator
        was_training = generator.training
        generator.eval()
        try:
            # Each process generates its share; the metrics' states are synced by torchmetrics.
            # Conditional families return (samples, labels): class accuracy and intra-FID.
            results = self.suite.evaluate(
                lambda n: pl_module.sample_for_evaluation(max(1, n // world)), pl_module.device
            )
        finally:
            generator.train(was_training)
        self.seconds += time.perf_counter() - started
        results["val/eval_seconds"] = time.perf_counter() - started
        for logger in trainer.loggers:
            logger.log_metrics(results, step=step)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in results.items()})
        if results.get("val/collapse"):
            self.collapse_reasons = list(self.suite.last_collapse_reasons)
            log.warning("mode collapse at step %d: %s", step, "; ".join(self.collapse_reasons))
            if self.stop_on_collapse:
                trainer.should_stop = True
        return results
