"""``gan-train``: a thin Hydra entry point around a pure :func:`train`.

Every check that can fail on bad input (config values, network/data
compatibility, dataset files) runs before any logger, checkpoint or sample is
written, so a bad command leaves nothing that looks like a run.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, InstantiationException
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException
from pytorch_lightning.callbacks import ProgressBar
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from gan_research.callbacks.checkpoint import (
    AtomicCheckpointIO,
    check_fits,
    load_checkpoint_safely,
    remove_partial_saves,
    resume_candidate,
)
from gan_research.callbacks.divergence import TrainingDiverged
from gan_research.callbacks.preemption import PreemptionCheckpoint
from gan_research.config import (
    CONFIG_DIR,
    dataset_keys_read,
    dataset_options_of,
    group_options,
    metrics_options,
    model_options_for,
    raw_option,
)
from gan_research.errors import ConfigError, GanResearchError, exit_with_error, user_error_in
from gan_research.families.base import rng_states
from gan_research.utils.console import quiet_console
from gan_research.utils.data_spec import DataKindError, DataSpec
from gan_research.utils.hydra_errors import hydra_error_message
from gan_research.utils.jsonl_logger import METRICS_FILE, JsonlLogger, append_record, last_status_record
from gan_research.utils.run_dir import (
    RunDirectoryError,
    RunLock,
    config_differences,
    describe_differences,
    read_recorded_config,
    write_run_config,
)
from gan_research.utils.run_summary import closing_block
from gan_research.utils.wandb_logger import sweep_group
from gan_research.utils.weights import WeightsFileMissing

log = logging.getLogger(__name__)


def _choice(group: str) -> str:
    """The config option chosen for ``group`` (``?`` outside a Hydra app)."""
    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.choices.get(group, "?"))
    return "?"


def _instantiate(node: DictConfig, what: str, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, with our own errors surfaced instead of Hydra's wrapper."""
    try:
        return instantiate(node, **kwargs)
    except MissingMandatoryValue as err:
        key = err.full_key or "a required key"
        group = key.split(".")[0]
        raise ConfigError(
            f"{key} must be set for {group}={_choice(group)} "
            f"(add {key}=...; see conf/{group}/{_choice(group)}.yaml)"
        ) from None
    except InstantiationException as err:
        ours = user_error_in(err)
        if ours is not None:
            raise ours from None
        raise ConfigError(f"could not build {what}: {err}") from err


def check_model_reads_dataset(cfg: DictConfig, spec: DataSpec) -> None:
    """The model's family learns from this kind of data, and its networks read only keys the
    dataset config has (``${dataset.image_size}`` has no value for 2-D points)."""
    family = get_class(cfg.model._target_) if isinstance(cfg.model.get("_target_"), str) else None
    if family is not None and hasattr(family, "check_data_kind"):
        family.check_data_kind(spec, who=f"model={_choice('model')}")
    missing = sorted(dataset_keys_read(cfg.model) - set(cfg.dataset.keys()))
    if missing:
        keys = ", ".join(f"dataset.{k}" for k in missing)
        raise ConfigError(
            f"model={_choice('model')} reads {keys}, which dataset={_choice('dataset')} "
            f"({spec.kind.describe()}) does not have. Valid: " + _fitting_options(cfg, spec, missing)
        )


def _fitting_options(cfg: DictConfig, spec: DataSpec, keys: list[str] | None = None) -> str:
    """The valid choices, from the options' declarations: models that fit this dataset, and
    datasets that have what the model reads (or are of the kinds it learns from)."""
    models = model_options_for(spec.kind, cfg.dataset.keys(), labelled=spec.num_classes is not None)
    parts = [f"models for dataset={_choice('dataset')}: {', '.join(models) or 'none'}"]
    if keys:
        have = [
            name for name in group_options("dataset") if set(keys) <= set(raw_option("dataset", name).keys())
        ]
        parts.append(f"datasets with {', '.join(keys)}: {', '.join(have) or 'none'}")
    return "; ".join(parts)


@contextlib.contextmanager
def _listing_fitting_options(cfg: DictConfig, spec: DataSpec) -> Any:
    """A family's refusal of the data's kind, completed with the options that fit."""
    try:
        yield
    except DataKindError as err:
        datasets = dataset_options_of(err.kinds, reading=dataset_keys_read(cfg.model))
        kinds = " or ".join(k.describe() for k in err.kinds)
        raise ConfigError(
            f"{err}. Valid: datasets of {kinds}: {', '.join(datasets) or 'none'}; "
            + _fitting_options(cfg, spec)
        ) from None


RESUME_MODES = ("auto", "never")
# Outcomes a rerun of the same job would only reproduce: a sweep rerun skips them.
ENDED = ("finished", "diverged")
LOG_FILE = "train.log"


def _check_run_keys(cfg: DictConfig) -> None:
    """Top-level keys of conf/train.yaml, checked before they reach code that would misread them."""
    resume = cfg.get("resume", "auto")
    if resume not in RESUME_MODES:
        raise ConfigError(f"resume={resume!r} is invalid; valid values: {list(RESUME_MODES)}")
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed={seed!r} is invalid: expected an integer in [0, 2**32)")
    threads = cfg.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads={threads!r} is invalid: expected null or an integer >= 1")
    allow = cfg.get("allow_config_change", False)
    if not isinstance(allow, bool):
        raise ConfigError(f"allow_config_change={allow!r} is invalid: expected true or false")
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is not None and not isinstance(ckpt_path, str):
        raise ConfigError(f"ckpt_path={ckpt_path!r} is invalid: expected the path of a .ckpt file")
    # The schedule owns the run's length (LR decay, growth and logs read it); the trainer follows it.
    trainer_steps = OmegaConf.select(cfg, "trainer.max_steps", default=None)
    schedule_steps = OmegaConf.select(cfg, "schedule.max_steps", default=None)
    if trainer_steps != schedule_steps:
        raise ConfigError(
            f"trainer.max_steps={trainer_steps!r} differs from schedule.max_steps={schedule_steps!r}: set "
            f"schedule.max_steps={trainer_steps} instead (trainer.max_steps follows it)"
        )


def _check_run_dir(run_dir: Path) -> None:
    """The run directory can be created and written (checked without creating anything)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"hydra.run.dir={run_dir} is a file, not a directory; choose another hydra.run.dir")
    existing = run_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(
            f"hydra.run.dir={run_dir} cannot be created: {existing} is a file; choose another hydra.run.dir"
        )
    try:
        # os.access says yes to root everywhere (a read-only mount, /proc): try, and leave nothing.
        os.rmdir(tempfile.mkdtemp(prefix=".gan-train-probe-", dir=existing))
    except OSError:
        raise ConfigError(
            f"hydra.run.dir={run_dir} is not writable ({existing} refuses writes); choose another "
            "hydra.run.dir or set GAN_LOG_DIR to a writable folder"
        ) from None


def _has_checkpoints(run_dir: Path) -> bool:
    ckpt_dir = run_dir / "checkpoints"
    return ckpt_dir.is_dir() and any(ckpt_dir.glob("*.ckpt"))


def _holds_a_run(run_dir: Path) -> bool:
    return (run_dir / METRICS_FILE).is_file() or _has_checkpoints(run_dir)


def _resolve_resume(run_dir: Path, cfg: DictConfig, model: torch.nn.Module) -> tuple[str | None, list[str]]:
    """The checkpoint to start from (``ckpt_path``, or the run directory's own), and notes to print.

    Never trains over another run's checkpoints: with ``resume=never`` an occupied run
    directory is an error; with ``resume=auto`` the run continues from ``last.ckpt`` (a
    requeued cluster job, a sweep rerun), or from the newest intact checkpoint when
    ``last.ckpt`` does not load. Every candidate is loaded with ``weights_only=True`` and
    checked against the model's weights here, before anything is written.
    """
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is not None:
        what = f"ckpt_path={ckpt_path}"
        check_fits(load_checkpoint_safely(ckpt_path, what), model, what)
        return str(ckpt_path), []
    ckpt_dir = run_dir / "checkpoints"
    if not _has_checkpoints(run_dir):
        return None, []
    if cfg.get("resume", "auto") == "never":
        raise RunDirectoryError(
            f"run directory {run_dir} already holds checkpoints; resume with "
            f"ckpt_path={ckpt_dir / 'last.ckpt'} (or resume=auto), or choose another hydra.run.dir"
        )
    point = resume_candidate(ckpt_dir, model)
    assert point is not None
    notes = [f"resuming {run_dir} from {point.path} (step {point.step})"]
    if point.skipped:
        notes.insert(0, f"checkpoint(s) that do not load were skipped: {'; '.join(point.skipped)}")
    return str(point.path), notes


def check_needs(cfg: DictConfig) -> None:
    """Each run this one builds on (``needs``: experiment -> run directory) has its final
    checkpoint, or one error naming it and the command that makes it."""
    for experiment, directory in (cfg.get("needs") or {}).items():
        if directory is None:  # an experiment that extends another one without its need (an ablation)
            continue
        last = Path(str(directory)) / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise WeightsFileMissing(
                f"needs.{experiment}: this run builds on a run of experiment={experiment}, and {last} "
                f"does not exist; train it first: gan-train experiment={experiment} "
                f"hydra.run.dir={directory} (or set needs.{experiment}=<its run directory>)"
            )


def build(cfg: DictConfig, prepare_evaluation: bool = True) -> dict[str, Any]:
    """Instantiate and validate everything a run needs; writes nothing to disk.

    ``prepare_evaluation``: also load the evaluation's feature network and real-side
    statistics (which may train and cache the digits classifier under ``paths.data_dir``);
    :func:`prepare` does it last, once every other check has passed.
    """
    run_dir = Path(cfg.paths.output_dir)
    _check_run_keys(cfg)
    check_needs(cfg)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    # The schedule first, so its errors name the keys users set (schedule.n_critic), then the data,
    # whose declaration (datamodule.spec) is checked against the model's before the networks exist.
    schedule = _instantiate(cfg.schedule, "the schedule")
    datamodule = _instantiate(cfg.dataset, "the dataset", batches_per_step=schedule.samples_per_step)
    spec = datamodule.spec
    with _listing_fitting_options(cfg, spec):
        check_model_reads_dataset(cfg, spec)
        model = _instantiate(cfg.model, "the model")
        model.check_data(datamodule)
    ckpt_path, notes = _resolve_resume(run_dir, cfg, model)
    # Reads and validates the dataset files now, so missing/corrupt data fails before training.
    datamodule.prepare_data()
    datamodule.setup("fit")
    evaluation = None
    # metrics=none is an empty node; an experiment's interval merged into it must not revive evaluation.
    if cfg.get("metrics") and "_target_" in cfg.metrics:
        evaluation = _instantiate(cfg.metrics, "the metrics")
        output = getattr(model, "evaluation_output", None)
        fitting = ", ".join(f"metrics={m}" for m in metrics_options(spec.kind, output)) or "metrics=none"
        evaluation.check_model(model, f"use {fitting} (model={_choice('model')})")
        if prepare_evaluation:
            # Loads feature networks and the real side now: a missing weights file fails before training.
            evaluation.prepare(datamodule)
    return {
        "datamodule": datamodule,
        "model": model,
        "run_dir": run_dir,
        "evaluation": evaluation,
        "ckpt_path": ckpt_path,
        "notes": notes,
    }


def prepare(cfg: DictConfig) -> dict[str, Any]:
    """Every check a run can fail on bad input, and everything it trains with; writes nothing.

    Returns ``{"status": "skipped", ...}`` for a run directory whose run already ended
    (finished or diverged) with this configuration and ``resume=auto``; otherwise the
    objects :func:`run` trains with. A run directory that holds a run of another
    configuration is refused (unless ``allow_config_change=true``), and so is one that
    another live process is training into.
    """
    _check_run_keys(cfg)
    quiet_console(bool(cfg.get("verbose", False)))
    run_dir = Path(cfg.paths.output_dir)
    _check_run_dir(run_dir)
    if _launched_rank_zero():
        RunLock.check_free(run_dir)
    recorded = read_recorded_config(run_dir) if _holds_a_run(run_dir) else None
    diffs = config_differences(recorded, cfg) if recorded is not None else []
    if diffs and not cfg.get("allow_config_change", False):
        raise RunDirectoryError(
            f"run directory {run_dir} holds a run of another configuration ({describe_differences(diffs)}). "
            "Choose another hydra.run.dir for these settings, or continue that run with them with "
            "allow_config_change=true (its previous config.yaml is kept beside the new one)"
        )
    previous = last_status_record(run_dir / METRICS_FILE)
    auto = cfg.get("resume", "auto") == "auto" and cfg.get("ckpt_path") is None
    if auto and not diffs and previous is not None and previous["status"] in ENDED:
        metrics = {k: v for k, v in previous.items() if "/" in k and isinstance(v, (int, float))}
        return {
            "status": "skipped",
            "previous_status": previous["status"],
            "previous_step": previous.get("step"),
            "run_dir": run_dir,
            "metrics": metrics,
        }
    objects = build(cfg, prepare_evaluation=False)
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
    # Checkpoints are written atomically and read back with weights_only=True (callbacks.checkpoint).
    plugins = [*(cfg.trainer.get("plugins") or []), AtomicCheckpointIO()]
    # External loggers write files as they are made (W&B's run id): added in run(), once accepted.
    trainer: pl.Trainer = _instantiate(
        cfg.trainer, "the trainer", callbacks=callbacks, logger=[JsonlLogger(run_dir)], plugins=plugins
    )
    if objects["evaluation"] is not None:
        # Last: it may write a cache (the digits classifier under paths.data_dir), so only a command
        # that passed every other check gets that far. A missing weights file still fails here.
        objects["evaluation"].prepare(objects["datamodule"])
    return {
        "status": "ready",
        "trainer": trainer,
        "callbacks": callbacks,
        "diffs": diffs,
        "previous_step": previous.get("step") if previous else None,
        **objects,
    }


def train(cfg: DictConfig, prepared: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one run as configured; return its status, final metrics and objects.

    With ``resume=auto`` a run directory whose run already ended (finished or
    diverged) is not trained again: the result is ``status="skipped"`` with the
    metrics of its final status line, so a rerun sweep reports every job.
    ``prepared``: the result of :func:`prepare` for this ``cfg`` (``gan-train`` checks
    a command before Hydra creates the run directory, and hands its work on).
    """
    prepared = prepared if prepared is not None else prepare(cfg)
    if prepared["status"] == "skipped":
        log.info(
            "skipping %s: it already %s at step %s",
            prepared["run_dir"],
            prepared["previous_status"],
            prepared["previous_step"],
        )
        return {
            "status": "skipped",
            "previous_status": prepared["previous_status"],
            "metrics": prepared["metrics"],
        }
    run_dir: Path = prepared["run_dir"]
    trainer: pl.Trainer = prepared["trainer"]
    callbacks = prepared["callbacks"]
    # Only the process that owns the run writes its record; the other DDP processes (started by
    # Lightning's launcher, or by srun) train into the directory rank 0 holds.
    owner = _launched_rank_zero()
    lock = RunLock(run_dir)
    if owner:
        lock.acquire()
    file_log = _attach_file_log(run_dir) if owner else None
    try:
        if owner:
            removed = remove_partial_saves(run_dir / "checkpoints")
            if removed:
                log.warning(
                    "removed %d partial file(s) of a killed checkpoint save: %s", len(removed), removed
                )
            for note in prepared["notes"]:
                (log.warning if "do not load" in note else log.info)("%s", note)
            _record_config(cfg, run_dir, prepared)
        trainer.loggers = [
            *trainer.loggers,
            *(_instantiate(c, "a logger") for c in (cfg.get("logger") or {}).values() if c is not None),
        ]
        return _fit(cfg, prepared, trainer, callbacks, run_dir)
    finally:
        lock.release()
        if file_log is not None:
            _detach_file_log(file_log)


def _launched_rank_zero() -> bool:
    """Whether this process is rank 0 of its job, from the launch environment (RANK, LOCAL_RANK,
    SLURM_PROCID), before any Trainer exists: Lightning reads the same variables at import."""
    return rank_zero_only.rank == 0


def _record_config(cfg: DictConfig, run_dir: Path, prepared: dict[str, Any]) -> None:
    """``.hydra/`` for a new run, or, after an allowed change, the new config beside the old one."""
    diffs = prepared["diffs"]
    if (run_dir / ".hydra" / "config.yaml").is_file() and not diffs:
        return
    keep = None
    if diffs:
        step = prepared.get("previous_step")
        keep = (
            f"until_step_{int(step):07d}"
            if isinstance(step, int)
            else f"until_{time.strftime('%Y%m%d-%H%M%S')}"
        )
        log.warning("configuration changed (allow_config_change=true): %s", describe_differences(diffs, 50))
    hydra_cfg = HydraConfig.instance().cfg if HydraConfig.initialized() else None
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    write_run_config(run_dir, cfg, hydra_cfg, overrides, keep)


def _attach_file_log(run_dir: Path) -> logging.Handler:
    # Hydra's job logging has no file handler here (conf/hydra/default.yaml), so that a refused
    # command writes nothing: the run's train.log starts once the run is accepted.
    handler = logging.FileHandler(run_dir / LOG_FILE)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def _detach_file_log(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
    handler.close()


def _fit(
    cfg: DictConfig, objects: dict[str, Any], trainer: pl.Trainer, callbacks: list[Any], run_dir: Path
) -> dict[str, Any]:
    config = OmegaConf.to_container(cfg, resolve=True)
    if HydraConfig.initialized():
        # What was chosen, not only what it resolved to: the option of every config group
        # (model=dcgan, loss=...) and the command line's overrides, so runs can be queried by them.
        hydra_cfg = HydraConfig.get()
        config["choices"] = {k: v for k, v in hydra_cfg.runtime.choices.items() if not k.startswith("hydra")}
        config["overrides"] = list(hydra_cfg.overrides.task)
        # The group the W&B run is in (a multirun's sweep directory when `group` is null).
        config["group"] = cfg.get("group") or sweep_group()
    for lg in trainer.loggers:
        lg.log_hyperparams(config)

    # Training draws from the RNG state the run has now, after seeding and building: under DDP
    # Lightning re-seeds each process while setting up, which would otherwise change the stream
    # (a resumed run's checkpoint states replace this one).
    objects["model"].rng_at_train_start(rng_states())
    status, reason, started = "failed", None, time.time()
    try:
        trainer.fit(
            objects["model"],
            datamodule=objects["datamodule"],
            ckpt_path=objects["ckpt_path"],
            weights_only=True,
        )
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
    return {**objects, "status": status, "metrics": metrics, "trainer": trainer}


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


# The work of the command-line check, handed to the Hydra job it ran ahead of (same config).
_PREPARED: dict[str, Any] = {}


def _prepared_key(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def _app(cfg: DictConfig) -> float | None:
    """The Hydra job: train; return ``optimized_metric``.

    In a multirun one job's failure must not stop the sweep: the job is
    recorded as failed (or diverged) in its run directory and W&B, the error is
    logged, NaN is returned, and Hydra goes on with the next job.
    """
    prepared = _PREPARED.pop(_prepared_key(cfg), None)
    try:
        result = train(cfg, prepared)
        if result["status"] != "skipped" and not _is_multirun() and _launched_rank_zero():
            # A multirun's jobs share one console: its jobs' records are read by gan-compare.
            print(closing_block(Path(cfg.paths.output_dir), cfg.schedule.get("max_steps")), flush=True)
    except (GanResearchError, TrainingDiverged) as err:
        if _is_multirun():
            log.error("%s", err)
            _record_failure(cfg, err)
            return math.nan if cfg.get("optimized_metric") else None
        if isinstance(err, GanResearchError):
            _remove_if_empty(Path(cfg.paths.output_dir))
        # One clear line for bad input or divergence instead of a traceback.
        exit_with_error(str(err), 2 if isinstance(err, GanResearchError) else 1)
    except Exception as err:
        if not _is_multirun():
            raise
        log.exception("job failed: %s", err)
        _record_failure(cfg, err)
        return math.nan if cfg.get("optimized_metric") else None
    return _objective(cfg, result["metrics"])


def _remove_if_empty(run_dir: Path) -> None:
    # Hydra makes the run directory before the job starts; a refused job leaves no empty husk.
    with contextlib.suppress(OSError):
        run_dir.rmdir()


def _informational(args: Any) -> bool:
    return bool(
        args.help
        or args.hydra_help
        or args.cfg
        or args.info
        or args.shell_completion
        or args.resolve
        or args.package
        or args.experimental_rerun
        or args.config_path
        or args.config_name
        or args.config_dir
    )


def _compose_command(overrides: list[str]) -> tuple[DictConfig, Path] | None:
    """The task config and run directory ``gan-train`` would use (None for a multirun config)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name="train"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    if str(cfg.hydra.get("mode")) == "RunMode.MULTIRUN":
        return None
    HydraConfig.instance().set_config(cfg)
    run_dir = Path(os.path.abspath(str(OmegaConf.select(cfg, "hydra.run.dir"))))
    with read_write(cfg.hydra.runtime), open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    task_cfg = copy.deepcopy(cfg)
    with open_dict(task_cfg):
        del task_cfg["hydra"]
    return task_cfg, run_dir


def _compose_base() -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name="train"):
        return compose(config_name="train")


def main(argv: list[str] | None = None) -> None:
    """``gan-train``: check the command, then run it as a Hydra app.

    A single run is composed and fully checked (config values, data, checkpoints,
    the run directory's owner and recorded config) before Hydra creates the run
    directory, so bad input prints one ``error:`` line, exits 2 and writes nothing;
    a run that already ended is reported and left untouched. Multiruns check each
    job in its own directory (a failed job is recorded there, so the sweep lists it).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = get_args_parser().parse_args(argv)
    if not (args.multirun or _informational(args)):
        try:
            composed = _compose_command(args.overrides)
            if composed is not None:
                task_cfg, run_dir = composed
                prepared = prepare(task_cfg)
        except GanResearchError as err:
            exit_with_error(str(err))
        except (HydraException, OmegaConfBaseException, ValueError) as err:
            # ValueError: Hydra's own for some malformed overrides ("=3").
            exit_with_error(hydra_error_message(err, args.overrides, _compose_base))
        finally:
            GlobalHydra.instance().clear()
        if composed is not None:
            if prepared["status"] == "skipped":
                print(
                    f"{run_dir} already {prepared['previous_status']} at step {prepared['previous_step']}: "
                    "nothing to do (choose another hydra.run.dir to train again)"
                )
                return
            _PREPARED[_prepared_key(task_cfg)] = prepared
            # The run directory was resolved now (its time stamp included): pin it for Hydra.
            argv = [a for a in argv if not a.startswith("hydra.run.dir=")]
            argv.append("hydra.run.dir=" + _quote_override(str(run_dir)))
    sys.argv = [sys.argv[0], *argv]
    _app()


def _quote_override(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _record_failure(cfg: DictConfig, err: BaseException) -> None:
    """Make sure a failed multirun job has its status line.

    train() writes it for failures during fit; bad input (and anything else
    raised before fit) fails before that, and a sweep still needs the record.
    """
    run_dir = Path(cfg.paths.output_dir)
    # A job refused because its directory is not its own (a run of another configuration, one in
    # use) writes nothing there: that run's record stays as it was.
    if not getattr(err, "status_written", False) and not isinstance(err, RunDirectoryError):
        record = {"status": "failed", "reason": f"{type(err).__name__}: {err}"}
        append_record(run_dir / METRICS_FILE, record)
        if not (run_dir / ".hydra" / "config.yaml").is_file() and HydraConfig.initialized():
            # gan-compare finds a sweep's runs by their recorded config: list the failed job too.
            write_run_config(
                run_dir, cfg, HydraConfig.instance().cfg, list(HydraConfig.get().overrides.task), None
            )


if __name__ == "__main__":
    main()
