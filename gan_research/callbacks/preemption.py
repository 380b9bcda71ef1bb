"""Save ``last.ckpt`` when the job is asked to stop (SIGTERM, SIGUSR1), then stop.

Cluster schedulers announce preemption or the end of a time limit with a
signal some seconds before killing the job: SLURM sends SIGTERM (and SIGUSR1
with ``--signal=USR1@90``), submitit asks for SIGUSR2 and requeues the job in
its handler, which runs here after the checkpoint is saved. The step under way is
finished, ``last.ckpt`` is written, and the run ends with status
``interrupted``; started again with the same command (or requeued), it resumes
from that checkpoint (``resume=auto``). Lightning itself turns SIGTERM into a
``SIGTERMException`` at the end of the step, after this callback has saved.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class PreemptionCheckpoint(pl.Callback):
    """Checkpoint and stop at the end of the current step when a stop signal arrives.

    Args:
        signals: names of the signals that request a stop besides SIGTERM, which
            Lightning already catches (``SIGUSR1`` by default).
    """

    def __init__(self, signals: tuple[str, ...] | list[str] = ("SIGUSR1",)) -> None:
        unknown = [s for s in signals if not hasattr(signal, s)]
        if unknown:
            raise ValueError(f"callbacks.preemption.signals: unknown signal(s) {unknown}")
        self.signals = tuple(signals)
        self.received: str | None = None
        self._previous: dict[int, Any] = {}
        self._saved_step: int | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        # Signal handlers can only be installed from the main thread (not in a joblib/loky thread).
        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.signals:
            signum = getattr(signal, name)
            self._previous[signum] = signal.signal(signum, self._handler)

    def _handler(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.received:
            # A second Ctrl-C: the user wants out now, not at the end of the step.
            raise KeyboardInterrupt
        if signum == signal.SIGINT:
            log.warning("Ctrl-C: finishing this step and saving last.ckpt (press Ctrl-C again to abort now)")
        self.received = signal.Signals(signum).name
        self._received_signum = signum

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        requested = self.received or ("SIGTERM" if trainer.received_sigterm else None)
        if requested is None:
            return
        self._save(trainer, requested)
        trainer.should_stop = True
        # A handler that was there before ours (submitit's requeue on SLURM) runs now, after the
        # checkpoint is on disk, instead of killing the step half-way.
        previous = self._previous.get(getattr(self, "_received_signum", -1))
        # Python's own Ctrl-C handler would only raise KeyboardInterrupt, undoing the clean stop.
        if callable(previous) and previous is not signal.default_int_handler:
            previous(self._received_signum, None)

    def on_exception(self, trainer: pl.Trainer, pl_module: Any, exception: BaseException) -> None:
        # A SIGTERM that lands after this callback's batch-end check is raised by Lightning as
        # SIGTERMException at the end of that same (completed) step: save here, before teardown.
        if isinstance(exception, SIGTERMException) and self._saved_step != trainer.global_step:
            self._save(trainer, "SIGTERM")

    def _save(self, trainer: pl.Trainer, requested: str) -> None:
        path = self.last_checkpoint_path(trainer)
        if path is not None:
            # A full checkpoint (optimiser states, callbacks), saved as ModelCheckpoint saves it.
            trainer.save_checkpoint(path, weights_only=False)
            self._saved_step = trainer.global_step
            log.warning("%s received: saved %s at step %d", requested, path, trainer.global_step)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    @staticmethod
    def last_checkpoint_path(trainer: pl.Trainer) -> str | None:
        """Where the run's ModelCheckpoint keeps ``last.ckpt`` (None without one)."""
        for callback in trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(callback, ModelCheckpoint) and callback.dirpath:
                name = f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
                return str(Path(callback.dirpath) / name)
        return None
