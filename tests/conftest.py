"""Shared fixtures: compose the real configs with tiny, CPU-only, offline overrides."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from omegaconf import DictConfig, open_dict

from gan_research.config import compose_run

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Parallel workers (pytest -n N) share the cores: one thread each, for the workers and for
    # the gan-train subprocesses they start (torch reads OMP_NUM_THREADS), instead of N * cores.
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# Overrides that make any composition a seconds-long CPU run.
TINY = [
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
    "schedule.max_steps=3",
    "callbacks.progress_bar=null",
    "callbacks.model_checkpoint.every_n_train_steps=2",
    "callbacks.samples.every_n_steps=2",
    "logger=none",
    "metrics=none",
]
# The size knob every model config has (model.width, the networks' base width) and a small batch:
# any model option becomes a seconds-long run without a per-model table.
TINY_SIZE = ["model.width=8", "dataset.batch_size=8"]


def compose_config(overrides: list[str], output_dir: Path, *, tiny: bool = True) -> DictConfig:
    """Compose conf/train.yaml as `gan-train` would, with the run directory at ``output_dir``."""
    cfg = compose_run((TINY if tiny else []) + list(overrides), output_dir)
    with open_dict(cfg):
        cfg.paths.data_dir = str(output_dir / "data")
        cfg.name = "test"
    return cfg


@pytest.fixture
def make_cfg(tmp_path: Path):
    """Factory: make_cfg("model=mlp", "dataset=ring8") -> composed tiny config in tmp_path/run."""

    def _make(*overrides: str, tiny: bool = True) -> DictConfig:
        # An experiment keeps its own sizes (tests check them); tests shrink it themselves.
        has_experiment = any(o.startswith("experiment=") for o in overrides)
        extra = TINY_SIZE if tiny and not has_experiment else []
        return compose_config(extra + list(overrides), tmp_path / "run", tiny=tiny)

    return _make


@pytest.fixture(autouse=True)
def _restore_logging_handlers():
    """A command run in-process (gan-compare, gan-eval, the benchmarks) configures logging as the
    command line would, with handlers on the test's captured streams; once the test ends those
    streams close, and a later test logging through them prints "Logging error" to stderr.
    Each test therefore starts and ends with the handlers it found."""
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict))]
    saved = {
        id(lg): (lg, list(lg.handlers), lg.level, lg.propagate)
        for lg in loggers
        if isinstance(lg, logging.Logger)
    }
    yield
    for lg, handlers, level, propagate in saved.values():
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
