"""Progress in the run's own units: generator steps of ``schedule.max_steps``.

Lightning's bars count batches of the dataset's epochs (``Epoch 5/-2 10/10``: an endless run
of epochs, each one pass over the data), which says nothing about how far a GAN run is. This bar
counts generator steps (``trainer.global_step``) against ``trainer.max_steps``, with the run's
elapsed time and ETA, G's and D's last losses and the main evaluation figure once there is one.
Evaluation is a state of its own: "evaluating N samples at step S…", then its duration and figures.

- On a terminal the bar is one line redrawn in place (``\\r``), at most every ``refresh_seconds``.
- Elsewhere (a log file, nohup, SLURM) it prints a plain line every ``every_n_steps`` steps with
  the same fields, and one line per evaluation, so a log shows how the run went.

Reading the losses copies two scalars from the device: only when a line is drawn, never on other
steps.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks.progress.progress_bar import ProgressBar

from gan_research.utils.run_summary import format_seconds
from gan_research.utils.validation import check_positive_int

# Evaluation figures shown in the bar, first found wins: the figure a reader looks at first.
HEADLINE_METRICS = (
    "val/fid_digits",
    "val/fid",
    "val/modes_recovered",
    "val/classes_covered",
    "val/modes_covered",
    "val/psnr_y",
    "val/accuracy",
)
BAR_WIDTH = 20


def parameter_count(module: torch.nn.Module) -> str:
    """Trainable parameters of ``module`` as 1.1 M / 661 K / 980."""
    n = sum(p.numel() for p in module.parameters() if p.requires_grad)
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} M"
    return f"{n / 1e3:.0f} K" if n >= 1000 else str(n)


def headline(metrics: dict[str, float]) -> tuple[str, float] | None:
    """The first of :data:`HEADLINE_METRICS` present in ``metrics`` (the run's main figure)."""
    for key in HEADLINE_METRICS:
        if key in metrics and math.isfinite(metrics[key]):
            return key, metrics[key]
    return None


class StepProgress(ProgressBar):
    """Generator steps of the run, elapsed time and ETA, losses, evaluation state.

    Args:
        every_n_steps: steps between plain lines when the output is not a terminal.
        refresh_seconds: least time between redraws of the terminal bar.
        stream: where to write (default: standard error, where Lightning's bars go).
    """

    def __init__(self, every_n_steps: int = 50, refresh_seconds: float = 0.5, stream: TextIO | None = None):
        super().__init__()
        self.every_n_steps = check_positive_int("callbacks.progress_bar", "every_n_steps", every_n_steps)
        self.refresh_seconds = float(refresh_seconds)
        self._stream = stream
        self._enabled = True
        self._started = 0.0
        self._start_step = 0
        self._last_draw = -math.inf
        self._last_metric: tuple[str, float] | None = None
        self._drawn_inline = False

    # ------------------------------------------------------- ProgressBar API
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    @property
    def interactive(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    # ---------------------------------------------------------------- hooks
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()
        self._start_step = trainer.global_step
        if self._enabled:
            self._write(self.header(trainer, pl_module))

    def header(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> str:
        """``training GAN for 700 steps (from step 0): generator DCGANGenerator 1.1 M parameters, ...``."""
        networks = [
            f"{name} {type(net).__name__} {parameter_count(net)} parameters"
            for name in ("generator", "discriminator")
            if isinstance(net := getattr(pl_module, name, None), torch.nn.Module)
        ]
        total = self._total(trainer)
        goal = f" for {total} steps" if total > 0 else ""
        resumed = f" (resumed at step {trainer.global_step})" if trainer.global_step else ""
        return f"training {type(pl_module).__name__}{goal}{resumed}: " + ", ".join(networks)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if not self._enabled:
            return
        step = trainer.global_step
        if self.interactive:
            now = time.perf_counter()
            if now - self._last_draw >= self.refresh_seconds or step >= self._total(trainer):
                self._last_draw = now
                self._write_inline(self.line(trainer, pl_module))
        elif step % self.every_n_steps == 0:
            self._write(self.line(trainer, pl_module))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._enabled and self.interactive and self._drawn_inline:
            self._write_inline(self.line(trainer, pl_module))
            self.stream.write("\n")
            self.stream.flush()
            self._drawn_inline = False

    # ------------------------------------------------------------ evaluation
    def evaluating(self, step: int, num_samples: int | None) -> None:
        """Called by the evaluation callback before it evaluates (the bar would otherwise freeze)."""
        if not self._enabled:
            return
        what = f"{num_samples} samples" if num_samples else "the model"
        self._end_inline()
        self._write(f"step {step}: evaluating {what}…")

    def evaluated(self, step: int, results: dict[str, float], seconds: float) -> None:
        """Called by the evaluation callback with its results."""
        if not self._enabled:
            return
        self._last_metric = headline(results) or self._last_metric
        shown = [
            f"{key.removeprefix('val/')} {value:.4g}"
            for key, value in results.items()
            if key.startswith("val/")
            and key not in ("val/eval_seconds", "val/collapse")
            and not key.endswith("_std")
        ]
        self._write(f"step {step}: evaluated in {seconds:.1f} s: " + (", ".join(shown[:6]) or "no figures"))

    # ----------------------------------------------------------------- line
    def line(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> str:
        """``step 150/3000 ━──── 5% | 0:41 elapsed, ETA 12:40 | d_loss 1.1 g_loss 2.3 | fid_digits 81.1``."""
        step, total = trainer.global_step, self._total(trainer)
        elapsed = time.perf_counter() - self._started
        done = step - self._start_step
        eta = elapsed / done * (total - step) if done > 0 and total > 0 else math.nan
        fraction = min(1.0, step / total) if total > 0 else 0.0
        filled = round(fraction * BAR_WIDTH)
        bar = "━" * filled + "─" * (BAR_WIDTH - filled)
        parts = [
            f"step {step}/{total if total > 0 else '?'} {bar} {100 * fraction:3.0f}%",
            f"{format_seconds(elapsed)} elapsed, ETA {format_seconds(eta)}",
        ]
        losses = self.losses(pl_module)
        if losses:
            parts.append(" ".join(f"{k} {v:.3g}" for k, v in losses.items()))
        if self._last_metric is not None:
            key, value = self._last_metric
            parts.append(f"{key.removeprefix('val/')} {value:.4g}")
        return " | ".join(parts)

    @staticmethod
    def losses(pl_module: pl.LightningModule) -> dict[str, float]:
        """G's and D's losses of the last step (one device-to-host copy)."""
        logs = getattr(pl_module, "last_step_logs", None) or {}
        shown = {}
        for key in ("train/d_loss", "train/g_loss"):
            value = logs.get(key)
            if value is not None:
                shown[key.removeprefix("train/")] = float(value)
        return shown

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        # Lightning's v_num (the logger's version) means nothing here: the run directory names the run.
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics

    # ---------------------------------------------------------------- output
    @staticmethod
    def _total(trainer: pl.Trainer) -> int:
        return int(trainer.max_steps) if trainer.max_steps and trainer.max_steps > 0 else -1

    def _write(self, text: str) -> None:
        self._end_inline()
        self.stream.write(text + "\n")
        self.stream.flush()

    def _write_inline(self, text: str) -> None:
        self.stream.write("\r\033[K" + text)
        self.stream.flush()
        self._drawn_inline = True

    def _end_inline(self) -> None:
        if self._drawn_inline:
            self.stream.write("\n")
            self._drawn_inline = False
