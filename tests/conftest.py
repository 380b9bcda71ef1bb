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


def _cache_config_files() -> None:
    """Hydra reads and parses every YAML file of the tree again at each composition (~6 ms a
    file, ~30 files: most of a compose's 0.25 s), and the suite composes about a thousand times
    in its workers. Parsed files are kept for the test session, keyed by path and modification
    time, and each composition gets its own deep copy (Hydra merges into what it loads)."""
    import copy

    from hydra._internal.core_plugins.file_config_source import FileConfigSource
    from hydra._internal.core_plugins.importlib_resources_config_source import (
        ImportlibResourcesConfigSource,
    )

    def cached(load):
        cache: dict = {}

        def load_config(self, config_path: str):
            key = (self.path, config_path)
            if isinstance(self, FileConfigSource):
                full = os.path.join(self.path.split("://", 1)[-1], self._normalize_file_name(config_path))
                try:
                    stat = os.stat(full)
                except OSError:
                    return load(self, config_path)  # Hydra's own error for a missing file
                key += (stat.st_mtime_ns, stat.st_size)
            if key not in cache:
                cache[key] = load(self, config_path)
            return copy.deepcopy(cache[key])

        return load_config

    FileConfigSource.load_config = cached(FileConfigSource.load_config)
    ImportlibResourcesConfigSource.load_config = cached(ImportlibResourcesConfigSource.load_config)


_cache_config_files()

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests (end-to-end runs, commands in a process of their own) first, the rest in their
    usual order. With `make test`'s one-test-at-a-time scheduling (--maxschedchunk 1) that is
    longest-first scheduling: the minute-long runs overlap the many short tests instead of being
    left to one worker at the end while the other idles. Stable, so every worker collects the
    same order (pytest-xdist requires it)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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


def session_shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory every worker of this test session sees (pytest-xdist gives each worker its own
    base directory, <session root>/popen-gwN; the root is common to all). What is written there
    is guarded by file locks (``filelock``), so it is built once for the session."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def digits_classifier_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits domain classifier as a run trains it when its data directory has none
    (``metrics.evaluator.domain_classifier``, the defaults of ``gan-classifier dataset=digits``),
    trained once per test session: parallel workers share it through a lock in pytest's common
    base directory, so the ~9 CPU-seconds of training are not paid by every module that scores
    digits. Tests that need training itself (accuracy, the command) still train."""
    from filelock import FileLock

    from gan_research.data.digits import DigitsDataModule
    from gan_research.metrics.classifier import default_classifier_path
    from gan_research.metrics.evaluator import domain_classifier

    data_dir = session_shared_dir(tmp_path_factory) / "shared-data"
    path = default_classifier_path(data_dir, "digits", 32)
    data_dir.mkdir(exist_ok=True)
    with FileLock(str(data_dir / "digits-classifier.lock")):
        if not path.is_file():
            spec = DigitsDataModule(image_size=32).spec
            domain_classifier(spec.domain, 32, data_dir=data_dir)
    assert path.is_file()
    return path


@pytest.fixture(scope="session")
def seed_digits_classifier(digits_classifier_file: Path):
    """``seed_digits_classifier(data_dir)`` puts the session's digits classifier where a run with
    ``paths.data_dir=data_dir`` looks for it, as if an earlier run had trained it there."""
    import shutil

    from gan_research.metrics.classifier import default_classifier_path

    def seed(data_dir: Path) -> Path:
        target = default_classifier_path(data_dir, "digits", 32)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(digits_classifier_file, target)
        return target

    return seed
