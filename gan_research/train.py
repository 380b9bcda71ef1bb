"""``gan-train``: a thin Hydra entry point around a pure :func:`train`.

Every check that can fail on bad input (config values, network/data
compatibility, dataset files) runs before any logger, checkpoint or sample is
written, so a bad command leaves nothing that looks like a run.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationKeyError
from pytorch_lightning.callbacks import ProgressBar

from gan_research.errors import ConfigError, GanResearchError
from gan_research.utils.jsonl_logger import METRICS_FILE, JsonlLogger, append_record

log = logging.getLogger(__name__)

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def _choice(group: str) -> str:
    """The config option chosen for ``group`` (``?`` outside a Hydra app)."""
    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.choices.get(group, "?"))
    return "?"


def _instantiate(node: DictConfig, what: str, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, with our own errors surfaced instead of Hydra's wrapper."""
    try:
        return instantiate(node, **kwargs)
    except InterpolationKeyError as err:
        if "dataset." in str(err):
            raise ConfigError(
                f"model={_choice('model')} reads a key that dataset={_choice('dataset')} does not have "
                f"({err.msg if hasattr(err, 'msg') else err}): an image network cannot train on 2-D data. "
                "Use model=mlp for ring8/grid25, or an image dataset (digits, mnist, fashion_mnist, "
                "cifar10, image_folder) for image networks."
            ) from None
        raise
    except InstantiationException as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, GanResearchError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise ConfigError(f"could not build {what}: {err}") from err


def _check_run_dir(run_dir: Path, ckpt_path: str | None) -> None:
    """Never train over another run's checkpoints unless resuming from one of them."""
    ckpt_dir = run_dir / "checkpoints"
    if ckpt_path is None and ckpt_dir.is_dir() and any(ckpt_dir.iterdir()):
        raise ConfigError(
            f"run directory {run_dir} already holds checkpoints; resume with "
            f"ckpt_path={ckpt_dir / 'last.ckpt'} or choose another hydra.run.dir"
        )
    if ckpt_path is not None and not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={ckpt_path} does not exist")


def build(cfg: DictConfig) -> dict[str, Any]:
    """Instantiate and validate everything a run needs; writes nothing to disk."""
    run_dir = Path(cfg.paths.output_dir)
    _check_run_dir(run_dir, cfg.get("ckpt_path"))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    # The model first: it validates the schedule, so errors name the keys users set (schedule.n_critic).
    model = _instantiate(cfg.model, "the model")
    datamodule = _instantiate(cfg.dataset, "the dataset", batches_per_step=model.schedule.n_critic)
    model.check_data(datamodule)
    # Reads and validates the dataset files now, so missing/corrupt data fails before training.
    datamodule.prepare_data()
    datamodule.setup("fit")
    evaluation = None
    # metrics=none is an empty node; an experiment's interval merged into it must not revive evaluation.
    if cfg.get("metrics") and "_target_" in cfg.metrics:
        evaluation = _instantiate(cfg.metrics, "the metrics")
        # Loads feature networks and the real side now: a missing weights file fails before training.
        evaluation.prepare(datamodule)
    return {"datamodule": datamodule, "model": model, "run_dir": run_dir, "evaluation": evaluation}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train one run as configured; return its final metrics and objects."""
    objects = build(cfg)
    run_dir: Path = objects["run_dir"]
    callbacks = [
        _instantiate(c, "a callback") for c in (cfg.get("callbacks") or {}).values() if c is not None
    ]
    if not cfg.trainer.get("enable_progress_bar", True):
        # enable_progress_bar=false turns the bar off, callback included (Lightning refuses both).
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    if objects["evaluation"] is not None:
        callbacks.append(objects["evaluation"])
    loggers: list[Any] = [JsonlLogger(run_dir)]
    loggers += [_instantiate(c, "a logger") for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer: pl.Trainer = _instantiate(cfg.trainer, "the trainer", callbacks=callbacks, logger=loggers)
    config = OmegaConf.to_container(cfg, resolve=True)
    for lg in trainer.loggers:
        lg.log_hyperparams(config)

    status, reason, started = "failed", None, time.time()
    try:
        trainer.fit(objects["model"], datamodule=objects["datamodule"], ckpt_path=cfg.get("ckpt_path"))
        status = "interrupted" if trainer.interrupted else "finished"
    except BaseException as err:
        reason = f"{type(err).__name__}: {err}"
        raise
    finally:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        if trainer.is_global_zero:
            append_record(
                run_dir / METRICS_FILE,
                {
                    "status": status,
                    "reason": reason,
                    "step": trainer.global_step,
                    "seconds": round(time.time() - started, 3),
                    **{k: v for k, v in metrics.items() if "/" in k},
                },
            )
        _finish_wandb()
    return {"status": status, "metrics": metrics, "trainer": trainer, **objects}


def _finish_wandb() -> None:
    # One crashed run must not leave W&B's process attached to the next run of a multirun.
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        result = train(cfg)
    except GanResearchError as err:
        # One clear line for bad input instead of a traceback.
        log.error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    return result["metrics"].get("train/g_loss")


if __name__ == "__main__":
    main()
