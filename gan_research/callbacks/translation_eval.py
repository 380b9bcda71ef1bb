"""Evaluation of image-to-image translation during training (pix2pix, CycleGAN).

Every ``every_n_steps`` generator steps, at the end of training and optionally before
the first step, the module's ``translate`` (A → B; ``translate_back`` too when the family
has one) runs over the validation pairs and
:class:`~gan_research.metrics.translation.TranslationMetrics` scores it: ``val/l1``,
``val/psnr``, ``val/ssim`` on paired data, ``val/cycle_l1`` / ``val/cycle_l1_b`` for
CycleGAN, FID against the target domain (``val/fid`` or ``val/fid_digits``). Like
``callbacks/evaluation.py``, results go to every logger (W&B history, ``metrics.jsonl``)
and to ``trainer.callback_metrics`` (what ``train()`` returns to sweeps), with the time
taken as ``val/eval_seconds``.
"""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch

from gan_research.metrics.translation import TranslationMetrics


class TranslationEvaluation(pl.Callback):
    """Evaluate a translator periodically.

    Args:
        every_n_steps: interval in generator steps (0: only at the end of training).
        eval_at_start: also evaluate before the first step (the untrained baseline).
        **metric_kwargs: the :class:`TranslationMetrics` settings (``metrics=translation``).
    """

    def __init__(self, every_n_steps: int = 500, eval_at_start: bool = False, **metric_kwargs: Any) -> None:
        if every_n_steps < 0:
            raise ValueError(f"metrics.every_n_steps must be >= 0, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.eval_at_start = eval_at_start
        self.metric_kwargs = metric_kwargs
        self.metrics: TranslationMetrics | None = None
        self._last_step = -1
        self.seconds = 0.0  # total evaluation time

    def prepare(self, datamodule: Any) -> None:
        """Read the validation pairs and load the feature network now, so problems fail before training."""
        self.metrics = TranslationMetrics(datamodule, **self.metric_kwargs)
        self.metrics.prepare()

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.metrics is None:
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
        if step == self._last_step or self.metrics is None:
            return {}
        self._last_step = step
        started = time.perf_counter()
        # translate / translate_back run the sampling generators in eval mode without gradients.
        results = self.metrics.evaluate(
            pl_module.translate, getattr(pl_module, "translate_back", None), pl_module.device
        )
        elapsed = time.perf_counter() - started
        self.seconds += elapsed
        results["val/eval_seconds"] = elapsed
        for logger in trainer.loggers:
            logger.log_metrics(results, step=step)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in results.items()})
        return results
