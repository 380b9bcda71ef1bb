"""Records that never lie: the final checkpoint, one configuration per run directory, one process
per run directory, and runs that survive damage (cut-off checkpoints, killed saves, planted files)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from gan_research.callbacks.checkpoint import AtomicCheckpointIO
from gan_research.errors import CheckpointError, ConfigError
from gan_research.train import train
from gan_research.utils.jsonl_logger import read_records
from gan_research.utils.run_dir import RunLock
from tests.conftest import TINY_SIZE, compose_config
from tests.test_safe_loading import Payload

MLP = ("model=mlp", "dataset=ring8")


class StopAt(pl.Callback):
    """Stops training at a step, as the collapse alarm (metrics.stop_on_collapse) does."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def _step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def _drop_status(run: Path) -> None:
    """Make a finished run look killed: no final status line."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(r for r in lines if '"status"' not in r) + "\n")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default tiny run (``make_cfg(*MLP)``), trained once for the tests that only read it."""
    return train(compose_config([*TINY_SIZE, *MLP], tmp_path_factory.mktemp("finished") / "run"))["run_dir"]


def test_last_checkpoint_holds_the_final_step(finished):
    # TINY saves every 2 steps; 3 is not a multiple of it (before: last.ckpt held step 2).
    run = finished
    assert _step(run / "checkpoints" / "last.ckpt") == 3
    assert _step(run / "checkpoints" / "step_0000002.ckpt") == 2


def test_last_checkpoint_of_a_run_stopped_by_a_callback(make_cfg):
    cfg = make_cfg(
        *MLP,
        "schedule.max_steps=10",
        "+callbacks.stop._target_=tests.test_run_records.StopAt",
        "+callbacks.stop.step=5",
    )
    result = train(cfg)
    assert result["status"] == "finished"
    assert _step(result["run_dir"] / "checkpoints" / "last.ckpt") == 5


def test_a_rerun_with_other_settings_is_refused_and_the_record_kept(make_cfg):
    run = train(make_cfg(*MLP))["run_dir"]
    recorded = run / ".hydra" / "config.yaml"
    before = recorded.read_bytes()
    with pytest.raises(ConfigError, match=r"another configuration \(schedule\.lr_g: 0\.0002 -> 0\.001\)"):
        train(make_cfg(*MLP, "schedule.lr_g=1e-3"))
    # Skipped (same settings; keys that cannot change results may differ): the record is untouched.
    again = train(make_cfg(*MLP, "callbacks.samples.every_n_steps=1", "logger=csv"))
    assert again["status"] == "skipped"
    # An interrupted run would resume with its old weights under new settings: refused too.
    _drop_status(run)
    with pytest.raises(ConfigError, match="allow_config_change=true"):
        train(make_cfg(*MLP, "schedule.lr_d=1e-3"))
    assert recorded.read_bytes() == before


def test_allowed_config_change_continues_and_keeps_the_old_record(make_cfg):
    run = train(make_cfg(*MLP))["run_dir"]
    old = (run / ".hydra" / "config.yaml").read_text()
    result = train(make_cfg(*MLP, "schedule.max_steps=5", "allow_config_change=true"))
    assert result["status"] == "finished"
    assert result["ckpt_path"] == str(run / "checkpoints" / "last.ckpt")
    assert _step(run / "checkpoints" / "last.ckpt") == 5
    assert (run / ".hydra" / "config.until_step_0000003.yaml").read_text() == old
    assert OmegaConf.load(run / ".hydra" / "config.yaml").schedule.max_steps == 5


def test_a_dead_process_lock_does_not_block(make_cfg, tmp_path):
    """A process killed while holding the lock (SIGKILL: no cleanup) leaves a lock file, not a lock."""
    cfg = make_cfg(*MLP)
    run = Path(cfg.paths.output_dir)
    code = (
        "import sys, time; from pathlib import Path; from gan_research.utils.run_dir import RunLock; "
        "RunLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert RunLock.holder(run) is not None
        with pytest.raises(ConfigError, match=f"in use by pid {holder.pid}"):
            train(cfg)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run / ".lock").is_file() and RunLock.holder(run) is None
    assert train(make_cfg(*MLP))["status"] == "finished"


def test_resume_falls_back_to_the_newest_intact_checkpoint(make_cfg, caplog):
    run = train(make_cfg(*MLP, "schedule.max_steps=4"))["run_dir"]
    ckpts = run / "checkpoints"
    # Killed during step 4: its checkpoint never appeared and last.ckpt was cut off.
    (ckpts / "step_0000004.ckpt").unlink()
    last = ckpts / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    _drop_status(run)
    # A killed save's temporary file.
    (ckpts / ".step_0000004.ckpt.tmp-999999").write_bytes(b"partial")
    with caplog.at_level("WARNING"):
        result = train(make_cfg(*MLP, "schedule.max_steps=4"))
    assert result["status"] == "finished"
    assert result["ckpt_path"] == str(ckpts / "step_0000002.ckpt")
    assert "last.ckpt is not a readable checkpoint" in caplog.text
    assert _step(last) == 4
    assert not list(ckpts.glob(".*.tmp-*"))


def test_no_intact_checkpoint_is_one_error(make_cfg):
    run = train(make_cfg(*MLP, "schedule.max_steps=2"))["run_dir"]
    for path in (run / "checkpoints").glob("*.ckpt"):
        path.write_bytes(b"")
    _drop_status(run)
    with pytest.raises(CheckpointError, match=r"no checkpoint in .* loads"):
        train(make_cfg(*MLP, "schedule.max_steps=2"))


def test_restart_after_a_cut_off_metrics_line(make_cfg):
    run = train(make_cfg(*MLP, "schedule.max_steps=4"))["run_dir"]
    _drop_status(run)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 4, "time": 17000')  # the process was killed mid-write
    result = train(make_cfg(*MLP, "schedule.max_steps=4"))
    assert result["status"] == "finished"
    assert read_records(run / "metrics.jsonl")[-1]["status"] == "finished"


def test_a_killed_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}, "global_step": 1}, path)

    def dies_half_way(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(2)}, "global_step": 2}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path)["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_resume_never_runs_a_planted_checkpoint(make_cfg, tmp_path, monkeypatch):
    """Even with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, a planted last.ckpt cannot run code on resume."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "PWNED"
    run = train(make_cfg(*MLP, "schedule.max_steps=2"))["run_dir"]
    good = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    for path in (run / "checkpoints").glob("*.ckpt"):
        torch.save({**good, "payload": Payload(marker)}, path)
    _drop_status(run)
    with pytest.raises(CheckpointError, match="refused, never run"):
        train(make_cfg(*MLP, "schedule.max_steps=2"))
    with pytest.raises(Exception):  # noqa: B017 - whatever torch raises, the payload must not run
        AtomicCheckpointIO().load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert not marker.exists()


def test_a_finished_run_has_one_status_line_and_unversioned_checkpoints(finished):
    """The record of a run that was never restarted: one status line, no ``last-v1.ckpt``."""
    run = finished
    statuses = [r for r in read_records(run / "metrics.jsonl") if "status" in r]
    assert [s["status"] for s in statuses] == ["finished"]
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 3
    assert not list((run / "checkpoints").glob("*-v1.ckpt"))


def test_a_moved_class_is_not_a_change_of_configuration():
    """A run recorded before a refactor (Schedule moved from families.base to families.schedule,
    re-exported where it was) resumes: both names are the same object. Only gan_research names
    are looked up, since importing a module named in a file can run code."""
    from gan_research.utils.run_dir import config_differences

    old = OmegaConf.create({"schedule": {"_target_": "gan_research.families.base.Schedule.create"}})
    new = OmegaConf.create({"schedule": {"_target_": "gan_research.families.schedule.Schedule.create"}})
    assert config_differences(old, new) == []
    other = OmegaConf.create({"schedule": {"_target_": "gan_research.families.base.AdversarialModule"}})
    assert [d[0] for d in config_differences(old, other)] == ["schedule._target_"]
    foreign = OmegaConf.create({"schedule": {"_target_": "antigravity.fly"}})
    assert [d[0] for d in config_differences(old, foreign)] == ["schedule._target_"]
