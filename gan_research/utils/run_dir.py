"""A run directory belongs to one configuration and one process at a time.

- :func:`config_differences` compares the configuration a command asks for with the one
  recorded in ``.hydra/config.yaml``, ignoring :data:`IGNORED_KEYS` (keys that cannot
  change what is trained: loggers, progress bar, sample and checkpoint intervals,
  evaluation interval, paths, threads, tags); ``train`` refuses a difference unless
  ``allow_config_change=true``.
- :func:`write_run_config` records ``.hydra/config.yaml``, ``hydra.yaml`` and
  ``overrides.yaml`` (what Hydra itself writes, with ``hydra.output_subdir: null`` in
  ``conf/hydra/default.yaml`` so that a refused command writes nothing) atomically, and
  only for a new run or an explicitly allowed change, whose previous record is kept.
- :class:`RunLock` is an advisory ``flock`` on ``<run_dir>/.lock``, held for the life
  of the run: a second process on the same directory is refused. The kernel releases
  the lock when its process dies, however it dies, so a lock left by a killed process
  never blocks (the file stays and names its last owner).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import socket
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from gan_research.errors import ConfigError

LOCK_FILE = ".lock"
CONFIG_FILE = Path(".hydra") / "config.yaml"

#: Dotted key prefixes that cannot change the weights or the metrics a run produces.
IGNORED_KEYS: tuple[str, ...] = (
    "name",
    "paths",
    "resume",
    "ckpt_path",
    "allow_config_change",
    "threads",
    "verbose",
    "tags",
    "group",
    "optimized_metric",
    "logger",
    "callbacks.progress_bar",
    "callbacks.samples",
    "callbacks.model_checkpoint",
    "callbacks.preemption",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "metrics.every_n_steps",
)


def _ignored(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in IGNORED_KEYS)


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        if not node and prefix:
            out[prefix] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: node}


def config_differences(recorded: DictConfig, requested: DictConfig) -> list[tuple[str, Any, Any]]:
    """``(key, recorded value, requested value)`` for every key that differs and matters.

    Values are compared as written (an interpolation is the same setting whatever it
    resolves to on this machine, ``${oc.env:...}``); values written differently are the
    same setting when both resolve to the same value.
    """
    old = _flatten(OmegaConf.to_container(recorded, resolve=False))
    new = _flatten(OmegaConf.to_container(requested, resolve=False))
    missing = "(absent)"
    diffs = []
    for key in sorted(set(old) | set(new)):
        if _ignored(key):
            continue
        a, b = old.get(key, missing), new.get(key, missing)
        if _same(a, b) or _same_target(key, a, b):
            continue
        if not _same(_resolved(recorded, key), _resolved(requested, key)):
            diffs.append((key, a, b))
    return diffs


def _same_target(key: str, a: Any, b: Any) -> bool:
    """Two names of the same object of this package (a class moved, re-exported where it was).

    Only ``gan_research`` names are looked up: importing a module named in a file can run code.
    """
    if not (key == "_target_" or key.endswith("._target_")):
        return False
    if not (isinstance(a, str) and isinstance(b, str)):
        return False
    if not (a.startswith("gan_research.") and b.startswith("gan_research.")):
        return False
    from hydra._internal.utils import _locate

    try:
        # ==, not is: a classmethod (Schedule.create) is a new bound method at every lookup.
        return bool(_locate(a) == _locate(b))
    except Exception:
        return False


def _same(a: Any, b: Any) -> bool:
    # NaN is a value a sweep can set (schedule.lr_d=nan): the same setting as itself.
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


class _Unresolvable:
    """Stands for a value that does not resolve here; equal to nothing, itself included."""

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = None  # type: ignore[assignment]


def _resolved(cfg: DictConfig, key: str) -> Any:
    # Written one way and read another (a launcher may resolve ${hydra:...} before the job sees
    # it): the same setting if both resolve to the same value here.
    try:
        value = OmegaConf.select(cfg, key, throw_on_resolution_failure=True, throw_on_missing=True)
    except Exception:
        return _Unresolvable()
    if isinstance(value, (DictConfig, ListConfig)):
        try:
            return OmegaConf.to_container(value, resolve=True)
        except Exception:
            return _Unresolvable()
    return value


def read_recorded_config(run_dir: Path) -> DictConfig | None:
    """The run's recorded ``.hydra/config.yaml`` (None when absent); a corrupt one is an error."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        # OmegaConf.load parses YAML safely (no object tags) and instantiates nothing.
        cfg = OmegaConf.load(path)
    except Exception as err:
        raise ConfigError(
            f"{path} is not readable YAML ({type(err).__name__}); the run directory's record is damaged: "
            "choose another hydra.run.dir"
        ) from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path} does not hold a config mapping; choose another hydra.run.dir")
    return cfg


def describe_differences(diffs: list[tuple[str, Any, Any]], limit: int = 8) -> str:
    shown = "; ".join(
        f"{k}: {json.dumps(a, default=str)} -> {json.dumps(b, default=str)}" for k, a, b in diffs[:limit]
    )
    more = f"; and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return shown + more


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_run_config(
    run_dir: Path,
    cfg: DictConfig,
    hydra_cfg: DictConfig | None,
    overrides: list[str],
    keep_previous_as: str | None,
) -> None:
    """Record the run's config as Hydra would (``.hydra/{config,hydra,overrides}.yaml``).

    ``keep_previous_as``: when an allowed config change replaces the record, the old
    ``config.yaml`` (and ``overrides.yaml``) are kept under this suffix, e.g.
    ``config.until_step_0000700.yaml``, so the record of what was trained is never lost.
    """
    hydra_dir = run_dir / ".hydra"
    if keep_previous_as:
        for name in ("config", "overrides"):
            old = hydra_dir / f"{name}.yaml"
            if old.is_file():
                os.replace(old, hydra_dir / f"{name}.{keep_previous_as}.yaml")
    _atomic_write(hydra_dir / "config.yaml", OmegaConf.to_yaml(cfg))
    if hydra_cfg is not None:
        _atomic_write(hydra_dir / "hydra.yaml", OmegaConf.to_yaml(hydra_cfg))
    _atomic_write(hydra_dir / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(list(overrides))))


class RunDirectoryError(ConfigError):
    """The run directory belongs to something else: another configuration, another process, or
    checkpoints a command must not touch. Nothing is written into it, not even a failure record."""


class RunLockedError(RunDirectoryError):
    """Another live process holds the run directory."""


class RunLock:
    """An exclusive advisory lock on a run directory, held until :meth:`release` or process exit."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    @staticmethod
    def holder(run_dir: Path) -> str | None:
        """Who holds the lock now (None when nobody does). Writes nothing."""
        path = Path(run_dir) / LOCK_FILE
        if not path.is_file():
            return None
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                owner = path.read_text().strip() or "another process"
            except OSError:
                owner = "another process"
            return owner
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(
                self._busy_message(self.path.parent, self.holder(self.path.parent))
            ) from None
        # Who holds it, for the message another process prints (the lock itself is the flock).
        os.ftruncate(fd, 0)
        os.write(
            fd,
            f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%F %T')}".encode(),
        )
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @staticmethod
    def _busy_message(run_dir: Path, owner: str | None) -> str:
        return (
            f"run directory {run_dir} is in use by {owner or 'another process'}: two processes must not "
            "train into one directory; wait for it to end, or choose another hydra.run.dir"
        )

    @classmethod
    def check_free(cls, run_dir: Path) -> None:
        """Raise :class:`RunLockedError` when a live process holds ``run_dir``. Writes nothing."""
        owner = cls.holder(run_dir)
        if owner is not None:
            raise RunLockedError(cls._busy_message(Path(run_dir), owner))
