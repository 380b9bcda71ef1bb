"""Sweeps end to end, through the real command lines: Hydra multirun with the study's joblib
launcher, failure tolerance, rerun skipping, Optuna, the W&B agent's command and submitit.

``gan-train`` itself runs in process (its entry point with sys.argv, see
tests/test_train.run_gan_train): importing torch and Lightning costs seconds per process. The
processes a sweep starts are real: the joblib launcher's workers, submitit's controller and tasks
(the task is signalled, as a cluster would)."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from gan_research.utils.jsonl_logger import read_records
from tests.test_train import run_gan_train

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# Seconds-long jobs: the study's config with tiny budgets.
SHORT = [
    "study.max_steps.non_saturating=20",
    "study.max_steps.wgan_gp=20",
    "metrics.every_n_steps=10",
    "metrics.num_samples=500",
    "model.generator.hidden_dim=16",
    "model.discriminator.hidden_dim=16",
    "logger=csv",
]

pytestmark = pytest.mark.slow


@pytest.fixture
def gan_train(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture, tmp_path: Path):
    """``gan_train(*args, **env)`` -> (exit code, stdout, stderr): ``gan-train *args`` run in
    process from tmp_path, with the environment the command would get (runs logged under tmp_path,
    W&B offline) plus ``env``. capfd also sees what the launcher's worker processes print."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("GAN_LOG_DIR", str(tmp_path))

    def run(*args: str, **env: str) -> tuple[int, str, str]:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        capfd.readouterr()
        code = run_gan_train(monkeypatch, *args, cwd=tmp_path)
        out, err = capfd.readouterr()
        return code, out, err

    yield run
    # The joblib launcher's workers (loky's reusable executor) would outlive the test, bound to
    # its environment, working directory and captured output: stop them with it.
    from joblib.externals.loky import reusable_executor

    executor = getattr(reusable_executor, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True)


def _status_lines(run_dir: Path) -> list[dict]:
    return [r for r in read_records(run_dir / "metrics.jsonl") if "status" in r]


def _job_dirs(sweep_dir: Path) -> dict[str, Path]:
    """Run directories by their lr_d value (the swept key of these tests)."""
    dirs = {}
    for cfg in sweep_dir.glob("*/.hydra/config.yaml"):
        dirs[str(yaml.safe_load(cfg.read_text())["schedule"]["lr_d"])] = cfg.parent.parent
    return dirs


# n_jobs=1: joblib runs the jobs one after another in this process; the study's own 2 (loky worker
# processes, each importing torch and Lightning: ~25 CPU-s) is make test-all's.
@pytest.mark.parametrize("n_jobs", [1, pytest.param(2, marks=pytest.mark.heavy)])
def test_study_multirun_records_failures_goes_on_and_skips_finished_runs(gan_train, tmp_path, n_jobs):
    """3 jobs of the study's sweep: one trains, one diverges (lr 1e6), one fails (lr NaN).
    The sweep finishes every job and exits 0; each outcome is in its metrics.jsonl.
    Rerun: the finished and diverged runs are skipped, the crashed one is tried again."""
    cmd = [
        "-m",
        "experiment=lr_balance_ring8",
        f"hydra.launcher.n_jobs={n_jobs}",
        *SHORT,
        "recipe=wgan_gp",
        "seed=0",
        "schedule.lr_g=1e-3",
        "schedule.lr_d=1e-3,1e6,nan",
    ]
    code, _out, err = gan_train(*cmd)
    assert code == 0, err[-3000:]
    sweep = tmp_path / "sweeps" / "lr_balance_ring8"
    jobs = _job_dirs(sweep)
    assert set(jobs) == {"0.001", "1000000.0", "nan"}
    outcome = {lr: _status_lines(d)[-1] for lr, d in jobs.items()}
    assert outcome["0.001"]["status"] == "finished" and outcome["0.001"]["step"] == 20
    assert outcome["0.001"]["val/modes_recovered"] >= 0
    diverged = outcome["1000000.0"]
    assert diverged["status"] == "diverged" and "non-finite loss" in diverged["reason"]
    # NaN is refused by the schedule's validation before any work: recorded as failed all the same.
    assert outcome["nan"]["status"] == "failed" and "schedule.lr_d=nan is invalid" in outcome["nan"]["reason"]
    # The run directory is named by the overrides, and the study's W&B group/tags are in the config.
    config = yaml.safe_load((jobs["0.001"] / ".hydra" / "config.yaml").read_text())
    assert config["tags"] == ["lr_balance_ring8"] and config["group"] == "lr_balance_ring8"
    assert "recipe=wgan_gp" in jobs["0.001"].name

    finished_ckpt = (jobs["0.001"] / "checkpoints" / "last.ckpt").read_bytes()
    # The same command again (with n_jobs=2 the launcher reuses its worker processes, as within a
    # long sweep).
    code, out, err = gan_train(*cmd)
    assert code == 0, err[-3000:]
    assert out.count("skipping") + err.count("skipping") == 2
    assert len(_status_lines(jobs["0.001"])) == 1
    assert len(_status_lines(jobs["1000000.0"])) == 1
    assert [s["status"] for s in _status_lines(jobs["nan"])] == ["failed", "failed"]
    assert (jobs["0.001"] / "checkpoints" / "last.ckpt").read_bytes() == finished_ckpt


def test_optuna_search_two_trials(gan_train, tmp_path):
    code, _out, err = gan_train(
        "-m",
        "experiment=ring8_gan",
        "hparams_search=ring8_optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=1",
        "schedule.max_steps=20",
        "metrics.every_n_steps=0",
        "metrics.num_samples=500",
        "model.generator.hidden_dim=16",
        "model.discriminator.hidden_dim=16",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "hydra.sweep.dir=optuna",
    )
    assert code == 0, err[-3000:]
    result = yaml.safe_load((tmp_path / "optuna" / "optimization_results.yaml").read_text())
    assert result["name"] == "optuna"
    assert set(result["best_params"]) == {"schedule.lr_g", "schedule.lr_d"}
    # best_value is what train() returned: the run's final val/modes_recovered.
    finals = []
    for job in ("0", "1"):
        status = _status_lines(tmp_path / "optuna" / job)[-1]
        assert status["status"] == "finished"
        overrides = yaml.safe_load((tmp_path / "optuna" / job / ".hydra" / "overrides.yaml").read_text())
        assert any(o.startswith("schedule.lr_g=") for o in overrides)
        finals.append(status["val/modes_recovered"])
    assert result["best_value"] == max(finals)


def _agent_command(sweep: dict, params: dict) -> list[str]:
    """The command line `wandb agent` runs for one parameter set: wandb's own macro expansion
    (wandb_agent.Agent._command_run) applied to the sweep's `command`."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    template = sweep_utils.create_sweep_command(list(sweep["command"]))
    variables = sweep_utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    variables["env"] = ["/usr/bin/env"]
    variables["interpreter"] = ["python"]
    command: list[str] = []
    for chunk in map(str, template):
        if chunk.startswith("${") and chunk.endswith("}"):
            command += variables.get(chunk[2:-1]) or []
        else:
            command.append(chunk)
    return command


def test_wandb_agent_command_runs(gan_train, tmp_path):
    sweep = yaml.safe_load((REPO / "experiments" / "lr_balance_ring8" / "sweep.yaml").read_text())
    # One parameter set of the grid, exactly as the agent would pass it.
    params = {"recipe": "non_saturating", "schedule.lr_g": 0.001, "schedule.lr_d": 0.003, "seed": 1}
    assert all(v in sweep["parameters"][k]["values"] for k, v in params.items())
    command = _agent_command(sweep, params)
    assert command[:3] == ["/usr/bin/env", "gan-train", "experiment=lr_balance_ring8"]
    assert command[-4:] == ["recipe=non_saturating", "schedule.lr_g=0.001", "schedule.lr_d=0.003", "seed=1"]
    # The agent runs in its own environment; here the venv's gan-train must be the one on PATH:
    # `env` finds the console script of gan_research.train:main, which then runs in process.
    path = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    assert Path(command[0]).is_file() and os.access(command[0], os.X_OK)
    script = Path(shutil.which(command[1], path=path) or "")
    assert script == BIN / "gan-train"
    assert "from gan_research.train import main" in script.read_text()
    # A shorter budget through the study's own key, since the full job takes a minute.
    code, _out, err = gan_train(
        *command[2:], "study.max_steps.non_saturating=20", "metrics=none", WANDB_RUN_ID="abcd1234"
    )
    assert code == 0, err[-3000:]
    run_dir = tmp_path / "outputs" / "sweeps" / "lr_balance_ring8_wandb" / "abcd1234"
    assert _status_lines(run_dir)[-1]["status"] == "finished"
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert config["schedule"]["lr_d"] == 0.003 and config["seed"] == 1
    assert config["group"] == "lr_balance_ring8" and config["logger"]["wandb"]["group"] == "${group}"
    # The W&B run is the agent's run, in the study's group.
    assert (run_dir / "wandb_run_id").read_text().strip() == "abcd1234"
    offline = list((run_dir / "wandb").glob("offline-run-*-abcd1234"))
    assert offline, list((run_dir / "wandb").iterdir())
    assert config["tags"] == ["lr_balance_ring8"]


def _submitit_task_pid(cwd: Path) -> int | None:
    """The pid of the job's task process (what submitit's controller signals at its time limit)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            here = os.readlink(entry / "cwd")
        except OSError:
            continue
        if b"SUBMITIT_LOCAL_GLOBALID=0" in environ and here == str(cwd):
            return int(entry.name)
    return None


# Two interpreter starts of the job's task (~25 CPU-s) and submitit's controller: make test-all's
# (CI's make test has a 10-minute budget on 2 cores); the requeue's pieces (the preemption
# checkpoint on a signal, resume=auto in the same directory) are make test's in test_resume.
@pytest.mark.heavy
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the task process through /proc")
def test_submitit_local_job_requeued_on_its_time_limit_signal_resumes_and_finishes(gan_train, tmp_path):
    """The cluster path (hydra-submitit-launcher through submitit's local executor) and its
    preemption: submitit's time-limit signal (SIGUSR2, sent by the local
    executor's controller as by SLURM) makes the job save last.ckpt, submitit requeues it, and
    the requeued job resumes from that checkpoint under resume=auto and finishes."""
    cmd = [
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        "experiment=ring8_gan",
        "schedule.max_steps=300",
        "metrics=none",
        "trainer.log_every_n_steps=20",
        "callbacks.samples.every_n_steps=0",
        "model.generator.hidden_dim=16",
        "model.discriminator.hidden_dim=16",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "hydra.sweep.dir=cluster",
    ]
    run_dir = tmp_path / "cluster" / "0"
    signalled: list[int] = []

    def send_the_time_limit_signal() -> None:
        # Wait until the job trains (a logged step), then send what the controller sends at the limit.
        deadline = time.time() + 240
        while time.time() < deadline:
            if (run_dir / "metrics.jsonl").exists() and read_records(run_dir / "metrics.jsonl"):
                pid = _submitit_task_pid(tmp_path)
                if pid is not None:
                    os.kill(pid, signal.SIGUSR2)
                    signalled.append(pid)
                    return
            time.sleep(0.2)

    # gan-train (the launcher, which waits for its job) runs here; submitit's controller and the
    # task it starts are processes of their own. Without the signal the job trains to the end.
    signaller = threading.Thread(target=send_the_time_limit_signal, daemon=True)
    signaller.start()
    code, _out, err = gan_train(*cmd)
    signaller.join(timeout=10)
    assert signalled, "the submitit task never started training"
    assert code == 0, err[-3000:]
    statuses = _status_lines(run_dir)
    assert [s["status"] for s in statuses] == ["interrupted", "finished"], statuses
    interrupted_at = statuses[0]["step"]
    assert 0 < interrupted_at < 300 and statuses[1]["step"] == 300
    # The requeued task started again and went on from the checkpoint, not from step 0.
    steps = [r["step"] for r in read_records(run_dir / "metrics.jsonl") if "status" not in r and "step" in r]
    after = steps[steps.index(max(s for s in steps if s <= interrupted_at)) + 1 :]
    assert after and min(after) > interrupted_at
    logs = "".join(p.read_text() for p in (tmp_path / "cluster" / ".submitit").rglob("*.err"))
    assert "Caught signal SIGUSR2" in logs and "Restored all states from the checkpoint" in logs
    assert "requeued" in statuses[0]["reason"]
    # (A rerun of a finished job skipping it is test_study_multirun_records_failures_goes_on_and_
    # skips_finished_runs's, through the basic launcher: the skip is the job's own, whatever
    # launcher started it, and each submitit job costs a fresh interpreter start.)
