"""Exact resume: a run killed mid-training (SIGKILL) and started again with the same command
continues from its last checkpoint, under the same W&B run, and on CPU its later losses equal
those of an uninterrupted run. SIGINT/SIGUSR1/SIGTERM save a checkpoint before the run stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException

from gan_research.train import train
from gan_research.utils.jsonl_logger import read_records
from tests.test_train import run_gan_train

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow

STEPS = 150


def _args(run_dir: Path, *extra: str) -> list[str]:
    """The command's arguments: the killed run and the run started again use the same ones."""
    return [
        "model=mlp",
        "dataset=ring8",
        "model.generator.hidden_dim=32",
        "model.discriminator.hidden_dim=32",
        "dataset.batch_size=64",
        # Data small enough that the run crosses several epochs: the data order must resume too.
        "dataset.num_samples=4096",
        "schedule.label_flip_prob=0.1",
        f"schedule.max_steps={STEPS}",
        "callbacks.model_checkpoint.every_n_train_steps=50",
        "callbacks.samples.every_n_steps=100",
        "metrics.every_n_steps=100",
        "metrics.num_samples=500",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
        "logger=wandb",
        "threads=1",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


def _command(run_dir: Path, *extra: str) -> list[str]:
    return [str(BIN / "gan-train"), *_args(run_dir, *extra)]


def _env() -> dict[str, str]:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    # Not this process's wandb-core service (W&B shares it with child processes through this
    # variable): a run killed while attached to it would leave its run id in use there.
    env.pop("WANDB_SERVICE", None)
    return env


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment of _env() for the runs made in process too."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def _losses(run_dir: Path) -> dict[int, tuple[float, float]]:
    """The last logged (d_loss, g_loss) of each step index."""
    out = {}
    for r in read_records(run_dir / "metrics.jsonl"):
        if "train/d_loss" in r and "status" not in r:
            out[r["step"]] = (r["train/d_loss"], r["train/g_loss"])
    return out


def _wait_for_step(run_dir: Path, step: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
        if any(s >= step for s in _losses(run_dir)):
            return
        time.sleep(0.2)
    raise AssertionError(f"step {step} not reached")


def test_sigkill_then_same_command_resumes_exactly(tmp_path, monkeypatch):
    # Only the run that is killed needs a process of its own; the uninterrupted reference and the
    # restart run gan-train's entry point in process (no interpreter start of seconds each).
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert run_gan_train(monkeypatch, *_args(reference)) == 0

    proc = subprocess.Popen(
        _command(killed), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    _wait_for_step(killed, 90, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert (killed / "checkpoints" / "last.ckpt").is_file()
    assert not [r for r in read_records(killed / "metrics.jsonl") if "status" in r]

    assert run_gan_train(monkeypatch, *_args(killed)) == 0
    final = read_records(killed / "metrics.jsonl")[-1]
    assert final["status"] == "finished" and final["step"] == STEPS

    ref, res = _losses(reference), _losses(killed)
    # The resumed process logged every step after its checkpoint, with the uninterrupted run's values.
    resumed_from = max(s for s in range(0, 91, 50))
    later = [s for s in ref if s >= resumed_from]
    assert later and all(res[s] == ref[s] for s in later), [
        (s, res[s], ref[s]) for s in later if res[s] != ref[s]
    ][:3]
    # One W&B run, continued: the same id in both runs' offline run folders.
    run_id = (killed / "wandb_run_id").read_text().strip()
    runs = sorted((killed / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(run_id) for r in runs)


class SignalAt(pl.Callback):
    """Sends this process ``sig`` at the end of step ``at``, as a user's Ctrl-C or a scheduler's
    signal would arrive mid-run: the run's own handlers (callbacks.preemption) receive it."""

    def __init__(self, at: int, sig: str) -> None:
        self.at, self.sig = at, sig

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.at:
            os.kill(os.getpid(), getattr(signal, self.sig))


def _check_stopped_then_resumed(run: Path, sig: signal.Signals, args: list[str], monkeypatch) -> None:
    status = [r for r in read_records(run / "metrics.jsonl") if "status" in r]
    assert status and status[-1]["status"] == "interrupted", status
    assert status[-1]["reason"] == sig.name
    stopped_at = status[-1]["step"]
    assert 40 <= stopped_at < STEPS
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == stopped_at

    # The same command again, in process.
    assert run_gan_train(monkeypatch, *args) == 0
    final = read_records(run / "metrics.jsonl")[-1]
    assert final["status"] == "finished" and final["step"] == STEPS
    first_resumed = min(s for s, _ in _losses_after_status(run))
    assert first_resumed == stopped_at


# SIGINT (Ctrl-C) goes through the same handler as SIGUSR1 (callbacks.preemption.signals), plus its
# own rule (no KeyboardInterrupt from Python's default handler): it stands for both. It is sent to
# this process by the run itself (no interpreter start of ~12 CPU-s); a signal from outside to a
# process of its own is the SIGTERM case, make test-all's (SIGTERM's checkpoint is also checked in
# process by test_sigterm_after_the_callbacks_check_still_saves_a_checkpoint).
def test_ctrl_c_saves_a_checkpoint_and_the_run_resumes(tmp_path, monkeypatch):
    run = tmp_path / "run"
    extra = ("callbacks.model_checkpoint.every_n_train_steps=1000", "logger=none")
    sender = ("+callbacks.zz_signal._target_=tests.test_resume.SignalAt", "+callbacks.zz_signal.at=40")
    args = _args(run, *extra, *sender, "+callbacks.zz_signal.sig=SIGINT")
    assert run_gan_train(monkeypatch, *args) == 0
    # The same command resumes after step 40: the sender does not fire again.
    _check_stopped_then_resumed(run, signal.SIGINT, args, monkeypatch)


@pytest.mark.heavy
def test_sigterm_to_the_process_saves_a_checkpoint_and_the_run_resumes(tmp_path, monkeypatch):
    run = tmp_path / "run"
    extra = ("callbacks.model_checkpoint.every_n_train_steps=1000", "logger=none")
    proc = subprocess.Popen(
        _command(run, *extra), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    _wait_for_step(run, 40, proc)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    _check_stopped_then_resumed(run, signal.SIGTERM, _args(run, *extra), monkeypatch)


def _losses_after_status(run_dir: Path) -> list[tuple[int, tuple[float, float]]]:
    records = read_records(run_dir / "metrics.jsonl")
    first_status = next(i for i, r in enumerate(records) if "status" in r)
    return [
        (r["step"], (r["train/d_loss"], r["train/g_loss"]))
        for r in records[first_status + 1 :]
        if "train/d_loss" in r
    ]


class LateSigterm(pl.Callback):
    """Marks SIGTERM as received after PreemptionCheckpoint's batch-end check of step ``at``: the
    race where Lightning raises SIGTERMException at the end of the step before the callback saw it."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.at:
            trainer._signal_connector.received_sigterm = True


def test_sigterm_after_the_callbacks_check_still_saves_a_checkpoint(make_cfg):
    cfg = make_cfg(
        "model=mlp",
        "dataset=ring8",
        "schedule.max_steps=8",
        "callbacks.model_checkpoint.every_n_train_steps=1000",
        "+callbacks.zz_late_sigterm._target_=tests.test_resume.LateSigterm",
        "+callbacks.zz_late_sigterm.at=5",
    )
    with pytest.raises(SIGTERMException):
        train(cfg)
    run = Path(cfg.paths.output_dir)
    status = [r for r in read_records(run / "metrics.jsonl") if "status" in r]
    assert status[-1]["status"] == "interrupted" and status[-1]["step"] == 5
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 5
