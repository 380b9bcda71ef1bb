"""DDP with manual optimisation on 2 CPU processes (gloo): G and D gradients averaged across
processes; the same weights as one process with the same global batch; rank 0 writes the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gan_research.utils.jsonl_logger import read_records
from tests.test_train import run_gan_train

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow
STEPS = 15


def _args(run_dir: Path, *extra: str) -> list[str]:
    return [
        "model=mlp",
        "dataset=ring8",
        "model.generator.hidden_dim=32",
        "model.discriminator.hidden_dim=32",
        "dataset.num_samples=2048",
        f"schedule.max_steps={STEPS}",
        "callbacks.model_checkpoint.every_n_train_steps=5",
        "callbacks.samples.every_n_steps=5",
        "metrics.every_n_steps=5",
        "metrics.num_samples=512",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
        "trainer.accelerator=cpu",
        "logger=none",
        "threads=1",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


def _train_ddp(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    # A process of its own: Lightning's DDP launcher starts rank 1 by running this command again.
    cmd = [str(BIN / "gan-train"), *_args(run_dir, *extra)]
    env = {**os.environ, "WANDB_MODE": "offline"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=run_dir.parent)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


# WGAN-GP under DDP (the gradient penalty's double backward through the DDP wrapper) costs another
# pair of interpreter starts: `make test-all` runs it, `make test` (CI's 10-minute budget) not.
@pytest.mark.parametrize("recipe", ["non_saturating", pytest.param("wgan_gp", marks=pytest.mark.heavy)])
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, monkeypatch, recipe):
    one, two = tmp_path / "one", tmp_path / "two"
    # The one-process reference runs in process (the same entry point, no interpreter start).
    single = _args(one, f"recipe={recipe}", "dataset.batch_size=64")
    assert run_gan_train(monkeypatch, *single, cwd=tmp_path) == 0
    ddp = _train_ddp(two, f"recipe={recipe}", "trainer=ddp", "trainer.devices=2", "dataset.batch_size=32")
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    a, b = _weights(one), _weights(two)
    assert a.keys() == b.keys()
    nets = [k for k in a if k.startswith(("generator.", "discriminator."))]
    if recipe == "non_saturating":
        # Same data, same latents: equal up to float summation order.
        for k in nets:
            torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    else:
        # WGAN-GP's interpolation weights are drawn per process: the runs agree closely, not exactly.
        diff = max((b[k] - a[k]).abs().max().item() for k in nets)
        scale = max(a[k].abs().max().item() for k in nets)
        assert diff < 0.05 * scale
    # The networks moved between step 5 and the end: the comparison is not between two networks
    # that training left alone (read from the run's own step-5 checkpoint, no extra run).
    earlier = torch.load(one / "checkpoints" / "step_0000005.ckpt", weights_only=True)["state_dict"]
    assert any(not torch.allclose(earlier[k], a[k]) for k in nets)

    # Rank 0 alone writes the run directory: each step logged once, one status line.
    records = read_records(two / "metrics.jsonl")
    steps = [r["step"] for r in records if "train/d_loss" in r and "status" not in r]
    assert len(steps) == len(set(steps)) == STEPS
    assert [r["status"] for r in records if "status" in r] == ["finished"]
    assert sorted(p.name for p in (two / "samples").iterdir()) == [
        "step_0000005.png",
        "step_0000010.png",
        "step_0000015.png",
    ]
