"""``gan-train``: a thin Hydra entry point around a pure :func:`train`.

Every check that can fail on bad input (config values, network/data
compatibility, dataset files) runs before any logger, checkpoint or sample is
written, so a bad command leaves nothing that looks like a run.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import InterpolationKeyError
from pytorch_lightning.callbacks import ProgressBar
from pytorch_lightning.utilities.exceptions import SIGTERMException

from gan_research.callbacks.divergence import TrainingDiverged
from gan_research.callbacks.preemption import PreemptionCheckpoint
from gan_research.errors import ConfigError, GanResearchError
from gan_research.families.base import rng_states
from gan_research.utils.jsonl_logger import METRICS_FILE, JsonlLogger, append_record, last_status_record

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
        if "dataset.channels_a" in str(err) or "dataset.channels_b" in str(err):
            raise ConfigError(
                f"model={_choice('model')} translates images between two domains and needs a "
                f"translation dataset, but dataset={_choice('dataset')} has one domain. Use "
                "digits_edges or paired_folder (paired: pix2pix, cyclegan), digits_inverted or "
                "unpaired_folder (unpaired: cyclegan)"
            ) from None
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


RESUME_MODES = ("auto", "never")
# Outcomes a rerun of the same job would only reproduce: a sweep rerun skips them.
ENDED = ("finished", "diverged")


def _resolve_resume(run_dir: Path, cfg: DictConfig) -> str | None:
    """The checkpoint to start from: ``ckpt_path``, or the run directory's own ``last.ckpt``.

    Never trains over another run's checkpoints: with ``resume=never`` an
    occupied run directory is an error; with ``resume=auto`` the run continues
    from its last checkpoint (a requeued cluster job, a sweep rerun).
    """
    resume = cfg.get("resume", "auto")
    if resume not in RESUME_MODES:
        raise ConfigError(f"resume={resume!r} is invalid; valid values: {list(RESUME_MODES)}")
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is not None:
        if not Path(ckpt_path).is_file():
            raise ConfigError(f"ckpt_path={ckpt_path} does not exist")
        return str(ckpt_path)
    ckpt_dir = run_dir / "checkpoints"
    if not (ckpt_dir.is_dir() and any(ckpt_dir.iterdir())):
        return None
    last = ckpt_dir / "last.ckpt"
    if resume == "never" or not last.is_file():
        raise ConfigError(
            f"run directory {run_dir} already holds checkpoints; resume with "
            f"ckpt_path={last} (or resume=auto), or choose another hydra.run.dir"
        )
    log.info("resuming %s from %s", run_dir, last)
    return str(last)


def build(cfg: DictConfig) -> dict[str, Any]:
    """Instantiate and validate everything a run needs; writes nothing to disk."""
    run_dir = Path(cfg.paths.output_dir)
    ckpt_path = _resolve_resume(run_dir, cfg)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
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
    return {
        "datamodule": datamodule,
        "model": model,
        "run_dir": run_dir,
        "evaluation": evaluation,
        "ckpt_path": ckpt_path,
    }


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train one run as configured; return its status, final metrics and objects.

    With ``resume=auto`` a run directory whose run already ended (finished or
    diverged) is not trained again: the result is ``status="skipped"`` with the
    metrics of its final status line, so a rerun sweep reports every job.
    """
    run_dir = Path(cfg.paths.output_dir)
    previous = last_status_record(run_dir / METRICS_FILE)
    auto = cfg.get("resume", "auto") == "auto" and cfg.get("ckpt_path") is None
    if auto and previous is not None and previous["status"] in ENDED:
        log.info("skipping %s: it already %s at step %s", run_dir, previous["status"], previous.get("step"))
        metrics = {k: v for k, v in previous.items() if "/" in k and isinstance(v, (int, float))}
        return {"status": "skipped", "previous_status": previous["status"], "metrics": metrics}
    objects = build(cfg)
    callbacks = [
        _instantiate(c, "a callback") for c in (cfg.get("callbacks") or {}).values() if c is not None
    ]
    for callback in callbacks:
        # Callbacks that depend on the model or the data (the fast path) refuse what cannot work
        # now, before any logger or checkpoint writes a file.
        check = getattr(callback, "check", None)
        if callable(check):
            check(objects["model"], objects["datamodule"])
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

    # Training draws from the RNG state the run has now, after seeding and building: under DDP
    # Lightning re-seeds each process while setting up, which would otherwise change the stream
    # (a resumed run's checkpoint states replace this one).
    objects["model"].rng_at_train_start(rng_states())
    status, reason, started = "failed", None, time.time()
    try:
        trainer.fit(objects["model"], datamodule=objects["datamodule"], ckpt_path=objects["ckpt_path"])
        stopped_early = trainer.max_steps > 0 and trainer.global_step < trainer.max_steps
        signals = [c.received for c in callbacks if isinstance(c, PreemptionCheckpoint) and c.received]
        preempted = signals[0] if signals else None
        status = "interrupted" if trainer.interrupted or (preempted and stopped_early) else "finished"
        if status == "interrupted":
            reason = preempted or "KeyboardInterrupt"
    except SIGTERMException as err:
        # Preempted: PreemptionCheckpoint saved last.ckpt; the same command resumes from it.
        status, reason = "interrupted", "SIGTERM"
        err.status_written = True  # type: ignore[attr-defined]
        raise
    except TrainingDiverged as err:
        status, reason = "diverged", str(err)
        err.status_written = True  # type: ignore[attr-defined]  # by the finally block below
        raise
    except BaseException as err:
        signals = [c.received for c in callbacks if isinstance(c, PreemptionCheckpoint) and c.received]
        if isinstance(err, SystemExit) and signals:
            # The scheduler's own handler (submitit's requeue) exits once our checkpoint is saved:
            # the job is requeued, not failed, and resumes from that checkpoint.
            status, reason = "interrupted", f"{signals[0]} (requeued, exit {err.code})"
        else:
            reason = f"{type(err).__name__}: {err}"
        err.status_written = True  # type: ignore[attr-defined]
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
        _finish_wandb(status, reason)
    return {"status": status, "metrics": metrics, "trainer": trainer, **objects}


def _finish_wandb(status: str, reason: str | None) -> None:
    # The run's outcome in W&B too; a crashed run must not stay attached to the next job of a multirun.
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.run.summary["status"] = status
            if reason:
                wandb.run.summary["reason"] = reason
            wandb.finish(exit_code=0 if status == "finished" else 1)


def _objective(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    key = cfg.get("optimized_metric")
    if not key:
        return None
    if key not in metrics:
        log.warning("optimized_metric=%s was not logged (logged: %s); returning NaN", key, sorted(metrics))
        return math.nan
    return float(metrics[key])


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def compose_run(overrides: list[str], output_dir: Path) -> DictConfig:
    """conf/train.yaml composed as `gan-train` would, with the run directory at ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    # Lets ${hydra:runtime.choices.*} and error messages name the chosen options, as in gan-train.
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
        # ${hydra:runtime.output_dir} only resolves inside a Hydra app: pin the run directory.
        cfg.paths.output_dir = str(output_dir)
    return cfg


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Train; return ``optimized_metric``.

    In a multirun one job's failure must not stop the sweep: the job is
    recorded as failed (or diverged) in its run directory and W&B, the error is
    logged, NaN is returned, and Hydra goes on with the next job.
    """
    try:
        result = train(cfg)
    except (GanResearchError, TrainingDiverged) as err:
        # One clear line for bad input or divergence instead of a traceback.
        log.error("%s", err)
        if _is_multirun():
            _record_failure(cfg, err)
            return math.nan if cfg.get("optimized_metric") else None
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2 if isinstance(err, GanResearchError) else 1)
    except Exception as err:
        if not _is_multirun():
            raise
        log.exception("job failed: %s", err)
        _record_failure(cfg, err)
        return math.nan if cfg.get("optimized_metric") else None
    return _objective(cfg, result["metrics"])


def _record_failure(cfg: DictConfig, err: BaseException) -> None:
    """Make sure a failed multirun job has its status line.

    train() writes it for failures during fit; bad input (and anything else
    raised before fit) fails before that, and a sweep still needs the record.
    """
    if not getattr(err, "status_written", False):
        record = {"status": "failed", "reason": f"{type(err).__name__}: {err}"}
        append_record(Path(cfg.paths.output_dir) / METRICS_FILE, record)


if __name__ == "__main__":
    main()
