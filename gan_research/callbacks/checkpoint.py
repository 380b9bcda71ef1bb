"""Checkpoints a run can trust: the final step saved, atomic writes, safe loads, intact fallbacks.

Lightning's ``ModelCheckpoint`` saves every ``every_n_train_steps`` steps, so a run
whose ``max_steps`` is not a multiple of the interval ended with a ``last.ckpt`` of
an older step (the default job: step 500 of 700), and ``gan-eval checkpoint=last.ckpt``
scored a model the run never finished with. :class:`RunCheckpoint` also saves
``last.ckpt`` when training ends (finished, preempted, or stopped by a callback such
as the collapse alarm).

:class:`AtomicCheckpointIO` is the Lightning ``CheckpointIO`` plugin every run uses:
it writes to a temporary file in the same folder, fsyncs it and renames it over the
target (a killed save leaves the previous checkpoint intact and a ``.*.tmp-*`` file
that :func:`remove_partial_saves` deletes at the next start), and it loads with
``torch.load(weights_only=True)`` whatever the environment says
(``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` only affects loads that leave it unset), so a
planted checkpoint cannot run code on resume.

:func:`resume_candidate` picks the checkpoint to resume from: ``last.ckpt``, or, when
it does not load, the intact checkpoint of the highest step, and says so.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from gan_research.errors import CheckpointError
from gan_research.utils.safe_config import describe_load_error

log = logging.getLogger(__name__)

#: The name a killed save leaves behind: ``.<name>.tmp-<pid>``.
PARTIAL_SAVE_GLOB = ".*.tmp-*"
LAST_NAME = "last.ckpt"


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` always holds the step the run ended at.

    Lightning (2.6) writes ``last.ckpt`` at the end of training only when no checkpoint
    was ever saved; here it is written whenever the final step was not saved yet.
    A diverged run never gets here (the divergence guard raises before), so a bad
    final state is never written.
    """

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.save_last and self._last_global_step_saved != trainer.global_step and trainer.global_step > 0:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        super().on_train_end(trainer, pl_module)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints atomically (temp file, fsync, rename) and load them with ``weights_only=True``."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if "://" in str(path):
            # Remote file systems (s3://, gs://) have no rename-over; keep fsspec's path.
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with tmp.open("wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    def load_checkpoint(
        self,
        path: Any,
        map_location: Any | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        # Always weights_only=True: Lightning passes None unless told, and None defers to the
        # environment (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 turns it into a full unpickler).
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)


def _fsync_dir(path: Path) -> None:
    # The rename itself is durable only once the directory entry is on disk.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_partial_saves(ckpt_dir: Path) -> list[Path]:
    """Delete the temporary files of saves that were killed; return what was deleted."""
    removed = []
    if ckpt_dir.is_dir():
        for tmp in ckpt_dir.glob(PARTIAL_SAVE_GLOB):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def load_checkpoint_safely(path: str | Path, what: str) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` on CPU; anything unreadable is one :class:`CheckpointError`.

    ``what`` names the file in the message (``ckpt_path=...`` or ``checkpoints/last.ckpt``).
    """
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.ckpt"))
        hint = f"; checkpoints in it: {inside}" if inside else ""
        raise CheckpointError(f"{what} is a directory, not a checkpoint file{hint}")
    if not path.is_file():
        raise CheckpointError(f"{what} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} is empty (0 bytes): a save was cut off, or it is not a checkpoint")
    # torch.save writes zip archives (since torch 1.6) and so do Lightning and this project; a
    # file that is not one is cut off (the archive's directory is at its end) or something else.
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{what} is not a readable checkpoint: not in torch.save's zip format "
            "(cut off by a crash, or not a checkpoint)"
        )
    try:
        # mmap: validating a large checkpoint reads only what is touched.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # damaged files fail in many ways (zip, unpickling, EOF, OS errors)
        raise CheckpointError(f"{what} is not a readable checkpoint: {describe_load_error(err)}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{what} is not a Lightning checkpoint of a gan_research run (no state_dict)")
    return checkpoint


def check_fits(checkpoint: dict[str, Any], model: torch.nn.Module, what: str) -> None:
    """Refuse a checkpoint whose weights do not match ``model`` (another family or size)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items() if isinstance(v, torch.Tensor)}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing weights (e.g. {missing[:3]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected weights (e.g. {unexpected[:3]})")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} of another shape (e.g. {k}: {found[k]} in the file, {expected[k]} here)")
    raise CheckpointError(
        f"{what} does not fit this run's model ({'; '.join(parts)}): it is a checkpoint of another "
        "model or size; give a checkpoint of the same model config"
    )


_STEP_RE = re.compile(r"step_(\d+)")


@dataclass
class ResumePoint:
    """The checkpoint a run resumes from, and what was wrong with those skipped on the way."""

    path: Path
    step: int
    skipped: list[str]


def resume_candidate(ckpt_dir: Path, model: torch.nn.Module) -> ResumePoint | None:
    """The checkpoint to resume a run from (None when the folder holds none).

    ``last.ckpt`` first; when it does not load (cut off by a crash, emptied by a full
    disk), the intact checkpoint of the highest step. A checkpoint that loads but does
    not fit the model is an error, not something to skip: it means the run directory
    belongs to another configuration.
    """
    files = [p for p in ckpt_dir.glob("*.ckpt") if p.is_file()] if ckpt_dir.is_dir() else []
    if not files:
        return None

    def order(p: Path) -> tuple[int, int]:
        match = _STEP_RE.search(p.name)
        return (1 if p.name == LAST_NAME else 0, int(match.group(1)) if match else -1)

    skipped: list[str] = []
    intact: list[tuple[int, Path]] = []
    for path in sorted(files, key=order, reverse=True):
        what = f"checkpoints/{path.name}"
        try:
            checkpoint = load_checkpoint_safely(path, what)
        except CheckpointError as err:
            skipped.append(str(err))
            continue
        check_fits(checkpoint, model, f"{ckpt_dir / path.name}")
        intact.append((int(checkpoint.get("global_step", -1)), path))
        if path.name == LAST_NAME:
            break
    if not intact:
        raise CheckpointError(
            f"no checkpoint in {ckpt_dir} loads ({'; '.join(skipped)}); move the folder away to start over, "
            "or give ckpt_path= a good checkpoint"
        )
    # last.ckpt when it loads; otherwise the highest step among the intact ones.
    step, path = intact[0] if intact[0][1].name == LAST_NAME else max(intact, key=lambda t: t[0])
    return ResumePoint(path=path, step=step, skipped=skipped)
