"""``gan-eval``: the metrics of one checkpoint of a run, as JSON.

The run is rebuilt from its own ``.hydra/config.yaml`` (tools read
the run directory, never private state); the checkpoint is loaded with
``weights_only=True``; the metrics are those of the evaluator the run trained with: the
``metrics.evaluator`` node of its recorded config, instantiated as the evaluation callback
instantiated it (the metric suite of generators, the translation metrics of pix2pix and
CycleGAN), with the ``metrics.<key>=...`` settings of the command applied on top. Choosing a
``metrics=<option>`` on the command line scores with that option's evaluator instead, and so does
a run that recorded none (``metrics=none``, or a run recorded before evaluators were). The
evaluator protocol is in :mod:`gan_research.metrics.evaluator`. For a class-conditional model
the JSON also holds ``per_class``: the per-class class accuracy and intra-FID behind
``metrics``' ``val/class_accuracy_*`` and ``val/intra_fid_*``.

:func:`evaluate_run` is the same evaluation as a function (nothing written).

Issue 13: the run directory is data of unknown origin, so only allow-listed ``_target_``s
of its config are instantiated (:mod:`gan_research.utils.safe_config`) and no file in it
is unpickled beyond tensors (item 4); every bad input is one ``error: ...`` line on
stderr, exit code 2, and nothing is created: Hydra writes no output directory or log
file (``conf/eval.yaml``), and only a successful evaluation writes its JSON (item 5).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import (
    HydraException,
    InstantiationException,
)
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from gan_research.config import CONFIG_DIR, metrics_options
from gan_research.errors import CheckpointError, ConfigError, GanResearchError, exit_with_error, user_error_in
from gan_research.metrics.evaluator import Evaluator, describe, require_scores, spec_of
from gan_research.utils.data_spec import DataKind
from gan_research.utils.devices import resolve_device
from gan_research.utils.hydra_errors import hydra_error_message
from gan_research.utils.safe_config import (
    ALLOWED_TARGET_PREFIXES,
    check_targets,
    checked_node,
    load_weights_only,
    one_line,
)
from gan_research.utils.weights import restoring_a_checkpoint

log = logging.getLogger(__name__)

CONFIG_NAME = "eval"
_USAGE = "gan-eval run_dir=outputs/runs/<name>/<time> [checkpoint=last.ckpt] [metrics=default]"
_ABSENT = object()


def _metric_options(kind: DataKind | None = None) -> str:
    return ", ".join(f"metrics={m}" for m in metrics_options(kind))


# --------------------------------------------------------------------------- the request


def _as_text(value: Any, key: str, example: str) -> str:
    """A path-like option given on the command line (Hydra parses ``run_dir=2024`` as an int)."""
    if value is None or isinstance(value, (bool, DictConfig, ListConfig, list, dict)) or str(value) == "":
        raise ConfigError(f"{key}={value!r} is invalid: expected a path, e.g. {key}={example}")
    return str(value)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed!r} is invalid: expected an integer, e.g. seed=0")
    return seed


def checkpoint_path(run_dir: Path, checkpoint: Any) -> Path:
    """The checkpoint file: ``checkpoint`` itself when absolute, else ``<run_dir>/checkpoints/<checkpoint>``.

    Raises:
        CheckpointError: no such file, listing the run's checkpoints.
    """
    name = _as_text(checkpoint, "checkpoint", "last.ckpt")
    path = Path(name) if Path(name).is_absolute() else run_dir / "checkpoints" / name
    if not path.is_file():
        available = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt") if p.is_file())
        problem = "is a directory, not a checkpoint file" if path.is_dir() else "does not exist"
        raise CheckpointError(
            f"checkpoint={name}: {path} {problem}; available in {run_dir / 'checkpoints'}: "
            f"{', '.join(available) or 'none'}"
        )
    return path


def load_run_config(run_dir: Path, allowed_targets: Sequence[str] = ALLOWED_TARGET_PREFIXES) -> DictConfig:
    """The run's own ``.hydra/config.yaml``, its ``_target_``s checked against ``allowed_targets``.

    Raises:
        ConfigError: ``run_dir`` is missing, not a run directory, or its config is unreadable
            or names a ``_target_`` outside :data:`~gan_research.utils.safe_config.ALLOWED_TARGET_PREFIXES`.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        problem = "is a file, not a run directory" if run_dir.exists() else "does not exist"
        raise ConfigError(f"run_dir={run_dir} {problem}; {_USAGE}")
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        raise ConfigError(
            f"run_dir={run_dir} is not a run directory: {path} is missing (gan-train writes it into "
            f"every run); {_USAGE}"
        )
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # YAML errors, unreadable files, undecodable bytes
        raise ConfigError(
            f"run_dir={run_dir}: {path} is not a readable config ({one_line(str(err))})"
        ) from None
    if not isinstance(cfg, DictConfig) or not isinstance(cfg.get("model"), DictConfig):
        raise ConfigError(f"run_dir={run_dir}: {path} is not a gan-train run config (it has no model)")
    # Names only: importing every callback's and logger's module (wandb...) would cost seconds, and
    # the nodes gan-eval instantiates are checked in full by checked_node, resolved, right before.
    check_targets(cfg, str(path), prefixes=allowed_targets, locate=False)
    with open_dict(cfg):
        # ${hydra:...} only resolves inside the run's own app; pin what it meant.
        cfg.paths = cfg.get("paths") or {}
        cfg.paths.output_dir = str(run_dir)
        cfg.name = run_dir.name
    return cfg


def _output_path(run_dir: Path, checkpoint: Path, out: Any) -> Path:
    """Where the JSON goes; refused now (not after a long evaluation) when it cannot be written."""
    path = (
        Path(_as_text(out, "out", "result.json"))
        if out is not None
        else run_dir / "eval" / f"{checkpoint.stem}.json"
    )
    if path.is_dir():
        raise ConfigError(f"out={path} is a directory; name a file, e.g. out={path / 'result.json'}")
    existing = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"out={path} cannot be written ({existing} is not a writable directory); choose out=..."
        )
    return path


def check_request(cfg: DictConfig, allowed_targets: Sequence[str] = ALLOWED_TARGET_PREFIXES) -> None:
    """Every cheap check of a ``gan-eval`` command, before Hydra runs or anything is loaded."""
    if OmegaConf.is_missing(cfg, "run_dir"):
        raise ConfigError(f"run_dir is required: {_USAGE}")
    run_dir = Path(_as_text(cfg.run_dir, "run_dir", "outputs/runs/<name>/<time>"))
    resolve_device(cfg.device)
    _check_seed(cfg.seed)
    if not cfg.get("metrics"):
        raise ConfigError(f"metrics=none evaluates nothing; choose one of {_metric_options()}")
    load_run_config(run_dir, allowed_targets)
    ckpt = checkpoint_path(run_dir, cfg.checkpoint)
    _output_path(run_dir, ckpt, cfg.get("out"))


# --------------------------------------------------------------------------- evaluation


def _instantiate(node: DictConfig, what: str, source: str, allowed: Sequence[str]) -> Any:
    """Instantiate an allow-listed node of the run config; errors as one line naming ``what``."""
    # Resolved and checked here, right before use: the whole-file check saw ${...} unresolved.
    safe = checked_node(node, source, what, prefixes=allowed)
    try:
        return instantiate(safe)
    except InstantiationException as err:
        ours = user_error_in(err)
        if ours is not None:
            raise ours from None
        raise ConfigError(f"{source}: could not rebuild the run's {what} ({one_line(str(err))})") from None


def _expected_types(param: inspect.Parameter) -> tuple[type, ...] | None:
    """The types a metrics setting accepts, from its default or its annotation; None: unchecked."""
    default = param.default
    if isinstance(default, bool):
        return (bool,)
    if isinstance(default, int):
        return (int,)
    if isinstance(default, float):
        return (int, float)
    if isinstance(default, str):
        return (str,)
    names = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "None": (type(None),)}
    parts = [p.strip() for p in str(param.annotation).split("|")]
    if param.annotation is inspect.Parameter.empty or not all(p in names for p in parts):
        return None
    return tuple(t for p in parts for t in names[p])


def _has_evaluator(metrics: Any) -> bool:
    return isinstance(metrics, DictConfig) and isinstance(metrics.get("evaluator"), DictConfig)


def _setting_names(evaluator: DictConfig) -> dict[str, str]:
    """How users spell each evaluator setting: ``metrics.<key>`` when the node reads the group's
    key by interpolation (``${..key}``), else ``metrics.evaluator.<key>``."""
    raw = OmegaConf.to_container(evaluator, resolve=False)
    names = {}
    for key, value in raw.items():
        match = re.fullmatch(r"\$\{\.\.([\w.]+)\}", value) if isinstance(value, str) else None
        names[str(key)] = f"metrics.{match.group(1)}" if match else f"metrics.evaluator.{key}"
    return names


def check_settings(cls: type, settings: Mapping[str, Any], names: Mapping[str, str] | None = None) -> None:
    """Refuse evaluator settings ``cls`` does not take, naming the key as users set it
    (``names``: setting -> its config key) and what it expects."""
    names = names or {}
    params = dict(inspect.signature(cls.__init__).parameters)
    for key, value in settings.items():
        name = names.get(key, f"metrics.{key}")
        param = params.get(key)
        if param is None:
            valid = [p for p in params if p not in ("self", "args", "kwargs")]
            raise ConfigError(f"{name} is not a setting of {cls.__name__}; valid: {', '.join(valid)}")
        expected = _expected_types(param)
        if expected is None:
            continue
        wrong_bool = isinstance(value, bool) and bool not in expected
        if wrong_bool or not isinstance(value, expected):
            types = " or ".join("null" if t is type(None) else t.__name__ for t in expected)
            raise ConfigError(f"{name}={value!r} is invalid: expected {types}")


def _metrics_node(
    cfg: DictConfig, metrics: DictConfig | None, settings: Mapping[str, Any], run_dir: Path
) -> DictConfig:
    """The metrics node to score with: ``metrics``, or the run's recorded one with ``settings``
    (``metrics.<key>`` values of the command) applied on top."""
    if metrics is not None:
        if not _has_evaluator(metrics):
            raise ConfigError(
                "the metrics config has no evaluator node (metrics.evaluator); "
                f"choose one of {_metric_options()}"
            )
        return metrics
    node = cfg.get("metrics")
    if not _has_evaluator(node):
        raise ConfigError(
            f"run_dir={run_dir} recorded no evaluator (trained with metrics=none, or recorded before "
            f"evaluators were); choose one of {_metric_options()}"
        )
    for key, value in settings.items():
        if OmegaConf.select(node, key, default=_ABSENT) is _ABSENT:
            valid = [str(k) for k in node if k not in ("_target_", "evaluator")]
            raise ConfigError(
                f"metrics.{key} is not a setting of the metrics run_dir={run_dir} recorded; valid: "
                f"{', '.join(valid)}"
            )
        OmegaConf.update(node, key, value, merge=False)
    return node


def build_evaluator(
    metrics: DictConfig,
    datamodule: Any,
    source: str,
    *,
    run: str = "the run",
    model: str = "",
    allowed_targets: Sequence[str] = ALLOWED_TARGET_PREFIXES,
) -> Evaluator:
    """Instantiate ``metrics.evaluator`` (allow-listed, its settings checked) for ``datamodule``.

    ``run`` (``run_dir=...``) and ``model`` (its family) name the run in the refusal of data
    the evaluator does not score.

    Raises:
        ConfigError: a bad setting, a target outside the allow-list, data the evaluator does not score.
    """
    safe = checked_node(metrics.evaluator, source, "metrics.evaluator", prefixes=allowed_targets)
    try:
        cls = get_class(str(safe["_target_"]))
    except Exception as err:  # Hydra raises plain errors for names it cannot import
        raise ConfigError(f"{source}: metrics.evaluator._target_ {one_line(str(err))}") from None
    kinds: tuple[DataKind, ...] = getattr(cls, "data_kinds", ())
    spec = spec_of(datamodule)
    if spec.kind not in kinds:
        what = "an image-translation run" if spec.translation else f"a {model or 'generator'} run"
        raise ConfigError(
            f"{run} is {what} on dataset {describe(spec)}, which {cls.__name__} does not score (it scores "
            f"{', '.join(k.describe() for k in kinds) or 'nothing'}); use {_metric_options(spec.kind)}"
        )
    settings = {str(k): v for k, v in safe.items() if k != "_target_"}
    check_settings(cls, OmegaConf.to_container(OmegaConf.create(settings)), _setting_names(metrics.evaluator))
    try:
        evaluator = instantiate(safe)
    except InstantiationException as err:
        ours = user_error_in(err)
        if ours is not None:
            raise ours from None
        raise ConfigError(f"{source}: could not build the metrics evaluator ({one_line(str(err))})") from None
    return evaluator


def _load_state(ckpt_path: Path, model: Any) -> dict[str, Any]:
    state = load_weights_only(
        ckpt_path, what="checkpoint", fix="gan-eval reads checkpoints written by gan-train"
    )
    weights = state.get("state_dict") if isinstance(state, dict) else None
    if not isinstance(weights, Mapping):
        raise CheckpointError(f"checkpoint {ckpt_path} is not a gan-train checkpoint (no state_dict)")
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        raise CheckpointError(
            f"checkpoint {ckpt_path} does not fit the run's model: {one_line(str(err), 240)}"
        ) from None
    return state


def evaluate_checkpoint(
    run_dir: str | Path,
    checkpoint: str,
    metrics: DictConfig | None = None,
    device: str = "auto",
    seed: int = 0,
    *,
    settings: Mapping[str, Any] | None = None,
    allowed_targets: Sequence[str] = ALLOWED_TARGET_PREFIXES,
) -> dict[str, Any]:
    """Rebuild a run's model and data, load ``checkpoint`` and score it with an evaluator.

    ``metrics``: a ``metrics`` group node (with an ``evaluator``) to score with; None: the
    run's own recorded one, with ``settings`` (``{"num_samples": 64}``, dotted keys under
    ``metrics``) applied on top. ``allowed_targets``: the packages whose classes the run config
    may instantiate (tests that build runs of their own classes extend it).

    Raises:
        ConfigError, CheckpointError, DataError: one line naming the bad input; nothing written.
    """
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    seed = _check_seed(seed)
    if metrics is not None and not metrics:
        raise ConfigError(f"metrics=none evaluates nothing; choose one of {_metric_options()}")
    cfg = load_run_config(run_dir, allowed_targets)
    source = str(run_dir / ".hydra" / "config.yaml")
    ckpt_path = checkpoint_path(run_dir, checkpoint)
    pl.seed_everything(seed, verbose=False)
    # Every weight comes from the checkpoint: initialisation-only files (a prior run) are not read.
    with restoring_a_checkpoint():
        model = _instantiate(cfg.model, "model", source, allowed=allowed_targets)
    state = _load_state(ckpt_path, model)
    datamodule = _instantiate(cfg.dataset, "dataset", source, allowed=allowed_targets)
    # As in training: the model checked against its data, and what it holds that reads the data
    # (a perceptual network's domain classifier) bound to it, before anything is scored.
    check_data = getattr(model, "check_data", None)
    if check_data is not None:
        check_data(datamodule)
    node = _metrics_node(cfg, metrics, settings or {}, run_dir)
    model_name = str(cfg.model.get("_target_", type(model).__name__)).rsplit(".", 1)[-1]
    evaluator = build_evaluator(
        node,
        datamodule,
        source,
        run=f"run_dir={run_dir}",
        model=model_name,
        allowed_targets=allowed_targets,
    )
    output = getattr(model, "evaluation_output", None)
    fitting = ", ".join(f"metrics={m}" for m in metrics_options(spec_of(datamodule).kind, output))
    require_scores(evaluator, model, f"use {fitting or 'another model'}")
    evaluator.prepare(datamodule)
    model.to(dev)
    started = time.perf_counter()
    results = evaluator.evaluate(model)
    summary = dict(evaluator.summary())
    per_class = summary.pop("per_class", None)
    return {
        "run_dir": str(run_dir),
        "checkpoint": str(ckpt_path),
        "step": int(state.get("global_step", -1)),
        "generator": "ema" if getattr(model, "generator_ema", None) is not None else "generator",
        **summary,
        "seconds": round(time.perf_counter() - started, 3),
        "metrics": results,
        **({"per_class": per_class} if per_class else {}),
    }


def _metrics_settings(cfg: DictConfig, overrides: Sequence[str]) -> dict[str, Any]:
    """The ``metrics.<key>=...`` settings of a command, as composed (typed by Hydra)."""
    settings = {}
    for override in overrides:
        key = _override_key(override)
        if key.startswith("metrics.") and not override.startswith("~"):
            value = OmegaConf.select(cfg, key)
            if isinstance(value, (DictConfig, ListConfig)):
                value = OmegaConf.to_container(value, resolve=True)
            settings[key.removeprefix("metrics.")] = value
    return settings


def evaluate_request(
    cfg: DictConfig, overrides: Sequence[str], *, allowed_targets: Sequence[str] = ALLOWED_TARGET_PREFIXES
) -> dict[str, Any]:
    """The result of a checked ``gan-eval`` command (``cfg`` composed from ``overrides``).

    The run's recorded evaluator, with the command's ``metrics.<key>`` settings, unless the
    command chose a ``metrics=<option>`` or the run recorded no evaluator: then the composed
    ``metrics`` option (``default`` unless chosen).
    """
    run_dir = Path(str(cfg.run_dir))  # as text: Hydra parses run_dir=2024 as a number
    chosen = "metrics" in {_override_key(o) for o in overrides}
    recorded = load_run_config(run_dir, allowed_targets).get("metrics")
    if chosen or not _has_evaluator(recorded):
        metrics, settings = cfg.metrics, None
    else:
        metrics, settings = None, _metrics_settings(cfg, overrides)
    return evaluate_checkpoint(
        run_dir,
        str(cfg.checkpoint),
        metrics,
        cfg.device,
        cfg.seed,
        settings=settings,
        allowed_targets=allowed_targets,
    )


def evaluate_run(
    run: str | Path,
    overrides: Sequence[str] = (),
    *,
    allowed_targets: Sequence[str] = ALLOWED_TARGET_PREFIXES,
) -> dict[str, float]:
    """``gan-eval`` as a function: the metrics of a run, nothing written.

    ``run`` is a run directory (its ``checkpoint``, ``last.ckpt`` unless an override says) or a
    checkpoint file inside one (``<run>/checkpoints/<name>.ckpt``); ``overrides`` are gan-eval's
    (``metrics.num_samples=64``, ``device=cpu``, ``metrics=translation``...).

    Raises:
        ConfigError, CheckpointError, DataError: what ``gan-eval`` would print as its error line.
    """
    path = Path(run)
    overrides = list(overrides)
    try:
        cfg = _compose(overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(composition_error(err, overrides)) from None
    with open_dict(cfg):
        if path.is_file():
            cfg.run_dir, cfg.checkpoint = str(path.parent.parent), str(path.resolve())
        else:
            cfg.run_dir = str(path)
    check_request(cfg, allowed_targets)
    return evaluate_request(cfg, overrides, allowed_targets=allowed_targets)["metrics"]


# --------------------------------------------------------------------------- command line


def _hydra_flags_only(args: Any) -> bool:
    """Hydra's informational flags and modes, which evaluate nothing: left to Hydra as they are."""
    return bool(
        args.help
        or args.hydra_help
        or args.shell_completion
        or args.experimental_rerun
        or args.multirun
        or args.config_path
        or args.config_name
        or args.config_dir
    )


def _compose(overrides: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(config_name=CONFIG_NAME, overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


def _override_key(override: str) -> str:
    return re.split(r"[=@]", override.lstrip("+~"), maxsplit=1)[0]


def composition_error(err: Exception, overrides: list[str]) -> str:
    """One line for an error of Hydra's composition (shared with gan-train: ``utils/hydra_errors``).

    The valid keys beside an unknown one are listed from the config composed with every other
    override, so ``metrics=translation metrics.foo=1`` lists the translation metrics' keys.
    """
    unknown = re.search(r"Could not override '([^']+)'", str(err))
    kept = [o for o in overrides if unknown is None or _override_key(o) != unknown.group(1)]
    return hydra_error_message(err, overrides, compose_base=lambda: _compose(kept))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=CONFIG_NAME)
def _hydra_main(cfg: DictConfig) -> None:
    try:
        check_request(cfg)
        # As text: Hydra parses run_dir=2024 or checkpoint=500 as numbers.
        run_dir = Path(str(cfg.run_dir))
        result = evaluate_request(cfg, list(HydraConfig.get().overrides.task))
        out = _output_path(run_dir, Path(result["checkpoint"]), cfg.get("out"))
        write_result(out, result)
    except GanResearchError as err:
        exit_with_error(err)
    print(json.dumps(result["metrics"], indent=2))
    log.info("wrote %s", out)


def write_result(out: Path, result: dict[str, Any]) -> None:
    """Write the JSON whole or not at all: a half-written file would look like a result.

    Raises:
        ConfigError: ``out`` cannot be written (naming the OS error).
    """
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, out)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"out={out} could not be written ({one_line(str(err))}); choose out=...") from None


def main() -> None:
    """The ``gan-eval`` console script (one clear error on bad input, nothing written).

    The command line is composed and checked first (Hydra's unknown options and keys,
    a missing ``run_dir``, a directory that is not a run, a missing checkpoint), each
    refusal one ``error: ...`` line and exit code 2 before Hydra's app starts; then the
    Hydra app runs, so ``--help``, ``--cfg``, ``--info`` and ``-m`` behave as in any Hydra app.
    """
    args, _unknown = get_args_parser().parse_known_args(sys.argv[1:])
    if not _hydra_flags_only(args):
        overrides = list(args.overrides)
        try:
            cfg = _compose(overrides)
            if not (args.cfg or args.info):
                check_request(cfg)
        except (HydraException, OmegaConfBaseException) as err:
            exit_with_error(composition_error(err, overrides))
        except GanResearchError as err:
            exit_with_error(err)
    _hydra_main()


if __name__ == "__main__":
    main()
