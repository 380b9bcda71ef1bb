"""Weights & Biases logger that never fails a run for lack of network.

``mode: auto`` (the default) logs online when an API key is configured
(``WANDB_API_KEY`` or ``wandb login``'s netrc entry) and offline otherwise;
``wandb sync <run_dir>/wandb/offline-run-*`` uploads an offline run later.
"""

from __future__ import annotations

import netrc
import os
import secrets
import string
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import WandbLogger

from gan_research.errors import ConfigError

MODES = ("auto", "online", "offline", "disabled")
RUN_ID_FILE = "wandb_run_id"


def sweep_group() -> str | None:
    """``<name>/<time>`` of the multirun's sweep directory when running as a multirun job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return "/".join(Path(HydraConfig.get().sweep.dir).parts[-2:])


def run_name(name: str | None) -> str | None:
    """In a multirun, ``<name> [<the job's overrides>]`` (``ring8_gan [schedule.lr_g=1e-4,seed=0]``), so the
    runs of a sweep can be told apart in W&B; a single run keeps ``name``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return name
    swept = HydraConfig.get().job.override_dirname
    return f"{name} [{swept}]" if swept else name


def has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"logger.wandb.mode={mode!r} is invalid; valid modes: {list(MODES)}")
    if mode != "auto":
        return mode
    # An explicit WANDB_MODE from the environment (e.g. a cluster profile) wins over auto-detection.
    env_mode = os.environ.get("WANDB_MODE")
    if env_mode in ("online", "offline", "disabled"):
        return env_mode
    return "online" if has_api_key() else "offline"


def make_wandb_logger(
    project: str,
    save_dir: str,
    name: str | None = None,
    mode: str = "auto",
    group: str | None = None,
    tags: list[str] | None = None,
    entity: str | None = None,
    id: str | None = None,
    log_model: bool = False,
    **kwargs: Any,
) -> WandbLogger:
    """Build Lightning's WandbLogger writing into ``<save_dir>/wandb``.

    The run id is kept in ``<save_dir>/wandb_run_id``: a resumed run (requeued
    job, sweep rerun) continues the same W&B run instead of starting a new one.
    The jobs of a Hydra multirun share a W&B group (the sweep directory) unless
    ``group`` is set.
    """
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    resolved = resolve_mode(mode)
    id_file = Path(save_dir) / RUN_ID_FILE
    # A W&B sweep agent names the run it started in WANDB_RUN_ID; that id must be used.
    id = id or os.environ.get("WANDB_RUN_ID")
    if id is None and id_file.is_file():
        id = id_file.read_text().strip()
    if id is None:
        # W&B's own id format (8 lowercase alphanumerics), without its private helper.
        id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    if not id_file.is_file():
        id_file.write_text(id + "\n")
    return WandbLogger(
        project=project,
        save_dir=save_dir,
        name=run_name(name),
        group=group or sweep_group(),
        job_type="train",
        resume="allow",
        tags=list(tags) if tags else None,
        entity=entity,
        id=id,
        log_model=log_model,
        offline=resolved == "offline",
        mode=resolved,
        **kwargs,
    )
