"""Hand-written run directories in the run directory layout of the README, for gan-compare's tests."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image


def run_config(lr_g: float, lr_d: float, seed: int, loss: str) -> dict[str, Any]:
    """A composed config as Hydra saves it: interpolations (hydra's included) left unresolved."""
    return {
        "name": "${hydra:runtime.choices.model}_${hydra:runtime.choices.loss}_ring8",
        "seed": seed,
        "loss": {"_target_": f"gan_research.losses.{loss}"},
        "schedule": {"lr_g": lr_g, "lr_d": lr_d, "beta1": 0.5, "max_steps": 3000},
        "dataset": {"num_modes": 8, "seed": "${seed}"},
        "paths": {"output_dir": "${hydra:runtime.output_dir}"},
    }


def write_run(
    run_dir: Path,
    *,
    overrides: list[str] | None = None,
    config: dict[str, Any] | None = None,
    lines: list[dict[str, Any] | str] | None = None,
    samples: list[int] = (),
) -> Path:
    """A run directory; ``lines`` go to metrics.jsonl verbatim when strings (to write broken ones)."""
    hydra_dir = run_dir / ".hydra"
    hydra_dir.mkdir(parents=True)
    (hydra_dir / "config.yaml").write_text(yaml.safe_dump(config or run_config(1e-4, 1e-4, 0, "hinge")))
    (hydra_dir / "hydra.yaml").write_text(
        yaml.safe_dump(
            {
                "hydra": {
                    "runtime": {"choices": {"model": "mlp", "loss": "hinge"}, "output_dir": str(run_dir)},
                    "job": {"name": "train"},
                }
            }
        )
    )
    if overrides is not None:
        (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if lines is not None:
        text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
        (run_dir / "metrics.jsonl").write_text(text)
    for i, step in enumerate(samples):
        (run_dir / "samples").mkdir(exist_ok=True)
        Image.new("RGB", (18, 18), (40 * i % 255, 100, 200)).save(
            run_dir / "samples" / f"step_{step:07d}.png"
        )
    return run_dir


def training_lines(
    d_loss: list[float], g_loss: list[float], evals: dict[int, dict[str, float]], every: int = 100
) -> list[dict[str, Any]]:
    """metrics.jsonl lines: a train line every ``every`` steps, eval lines at their steps, in step order."""
    lines: list[dict[str, Any]] = []
    for i, (d, g) in enumerate(zip(d_loss, g_loss, strict=True)):
        step = (i + 1) * every
        lines.append({"step": step, "time": 1000.0 + step / 100, "train/d_loss": d, "train/g_loss": g})
        if step in evals:
            lines.append({"step": step, "time": 1000.0 + step / 100, **evals[step]})
    return lines


def smooth_losses(n: int = 30, level: float = 0.7) -> tuple[list[float], list[float]]:
    d = [level + 0.5 * math.exp(-i / 5) for i in range(n)]
    g = [2 * level + 1.0 * math.exp(-i / 5) for i in range(n)]
    return d, g


def status_line(status: str = "finished", step: int = 3000, reason: str | None = None, **final: Any) -> dict:
    return {"status": status, "reason": reason, "step": step, "seconds": 61.2, **final}


def finished_run(
    run_dir: Path, lr_g: float, lr_d: float, seed: int, loss: str, modes: float, samples: bool = True
) -> Path:
    """A finished, steady run of a sweep over lr_g, lr_d, loss and seed that recovered ``modes`` of 8."""
    d, g = smooth_losses()
    # Flat at the end: a quality still rising at the last evaluations would label the run undertrained.
    evals = {
        1000: {"val/modes_recovered": modes, "val/high_quality": 0.8},
        2000: {"val/modes_recovered": modes, "val/high_quality": 0.8},
        3000: {"val/modes_recovered": modes, "val/high_quality": 0.8},
    }
    final = {
        "val/modes_recovered": modes,
        "val/high_quality": 0.8,
        "train/d_loss": d[-1],
        "train/g_loss": g[-1],
    }
    return write_run(
        run_dir,
        overrides=[f"schedule.lr_g={lr_g}", f"schedule.lr_d={lr_d}", f"loss={loss}", f"seed={seed}"],
        config=run_config(lr_g, lr_d, seed, loss),
        lines=[*training_lines(d, g, evals), status_line(**final)],
        samples=[1000, 3000] if samples else [],
    )


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A sweep over lr_g x loss x seed at one lr_d, plus a failed job and a killed one.

    Jobs 0-7 finished; modes recovered are chosen so each (lr_g, loss) cell has a known mean
    over its two seeds. Job 8 failed before logging anything; job 9 was killed mid-line.
    """
    root = tmp_path / "sweep"
    modes = {
        (1e-4, "hinge"): (8, 6),
        (1e-3, "hinge"): (2, 2),
        (1e-4, "wgan_gp"): (7, 8),
        (1e-3, "wgan_gp"): (5, 8),
    }
    job = 0
    for (lr_g, loss), per_seed in modes.items():
        for seed, m in enumerate(per_seed):
            finished_run(root / str(job), lr_g, 1e-4, seed, loss, m, samples=job != 3)
            job += 1
    write_run(
        root / "8",
        overrides=["schedule.lr_g=0.01", "schedule.lr_d=0.0001", "loss=hinge", "seed=0"],
        config=run_config(1e-2, 1e-4, 0, "hinge"),
        lines=[{"status": "failed", "reason": "ConfigError: bad things"}],
    )
    d, g = smooth_losses(12)
    killed = training_lines(d, g, {})
    write_run(
        root / "9",
        overrides=["schedule.lr_g=0.01", "schedule.lr_d=0.0001", "loss=hinge", "seed=1"],
        config=run_config(1e-2, 1e-4, 1, "hinge"),
        lines=[*killed, '{"step": 1300, "time": 1013.0, "train/d_lo'],
        samples=[500],
    )
    # Hydra's multirun.yaml and a stray folder are not runs.
    (root / "multirun.yaml").write_text("hydra: {}\n")
    (root / ".submitit").mkdir()
    return root
