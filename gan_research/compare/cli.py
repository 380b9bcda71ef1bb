"""``gan-compare``: the comparison report of a sweep's runs (local directory or W&B group).

A Hydra app like ``gan-train``, so every setting is a ``key=value`` override
(``conf/compare.yaml``); it writes nothing but the report folder, so it can be
pointed at a sweep that is still running.

The command is composed and checked before anything runs: a bad option, key or
value, a missing or empty sweep directory, an unknown axis key each print one
``error: ...`` line naming the bad value and the valid ones, exit 2 and write
nothing. So does a malformed ``references`` file (one line naming the file, the row and the key).
Informational flags (``--help``, ``--cfg job``, ...) go to Hydra.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from hydra.main import get_args_parser
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from gan_research.compare.references import References, check_references, load_references
from gan_research.compare.report.page import skipped_lines_note, write_report
from gan_research.compare.report.tradeoff import Tradeoff
from gan_research.compare.runs import RunRecord, load_runs, load_wandb_runs
from gan_research.compare.stability import StabilityRules
from gan_research.config import CONFIG_DIR
from gan_research.errors import ConfigError, GanResearchError, exit_with_error, one_line

CONFIG_NAME = "compare"
SOURCES = ("local", "wandb")
# The metrics a warning lists when a requested one was never logged.
_MAX_LISTED = 20


def _as_list(cfg: DictConfig, key: str) -> list[str]:
    value = cfg.get(key)
    if value is None:
        return []
    if isinstance(value, str):  # final_metrics=val/fid_digits on the command line
        return [value]
    if not OmegaConf.is_list(value):
        raise ConfigError(f"{key} must be a list of metric names, e.g. {key}=[val/fid], got {value!r}")
    return [str(v) for v in value]


def _optional_key(cfg: DictConfig, name: str) -> str | None:
    value = cfg.get(name)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{name} must be a config key such as schedule.lr_g, or null; got {value!r}")
    return value or None


def _mapping(cfg: DictConfig, key: str) -> dict[str, Any]:
    """A block of keys (``tradeoff:``); null is an empty one."""
    value = cfg.get(key)
    if value is None:
        return {}
    if not OmegaConf.is_dict(value):
        raise ConfigError(f"{key} must be a block of keys ({key}.x=..., {key}.y=...) or null, got {value!r}")
    return OmegaConf.to_container(value, resolve=True)  # type: ignore[return-value]


def _smooth(cfg: DictConfig) -> int:
    value = cfg.get("smooth", 5)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"smooth must be an integer >= 1 (points of the moving average), got {value!r}")
    return value


def _group_by(cfg: DictConfig) -> list[str] | None:
    """``group_by``: None (one row per run), or the config keys whose values make a group."""
    value = cfg.get("group_by")
    if value is None:
        return None
    if isinstance(value, str):  # group_by=dataset on the command line
        value = [value]
    elif not OmegaConf.is_list(value):
        raise ConfigError(
            f"group_by must be a list of config keys, e.g. group_by=[dataset,remedy], or null, got {value!r}"
        )
    keys = list(value)
    bad = [k for k in keys if not isinstance(k, str) or not k]
    if bad:
        raise ConfigError(
            f"group_by: {bad[0]!r} is not a config key; group_by takes keys such as dataset or "
            "schedule.lr_g, e.g. group_by=[dataset,remedy]"
        )
    return list(dict.fromkeys(keys))


def _references(cfg: DictConfig) -> References | None:
    value = cfg.get("references")
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"references must be the path of a YAML file of published rows, or null; got {value!r}"
        )
    return load_references(Path(value))


def _check_metric_names(runs: list[RunRecord], metrics: list[str], curves: list[str]) -> list[str]:
    """Refuse names that cannot be metrics; return warnings for metrics that no run logged."""
    logged = sorted({k for run in runs for k in (*run.history, *run.final)})
    listed = ", ".join(logged[:_MAX_LISTED]) + (", ..." if len(logged) > _MAX_LISTED else "")
    warnings = []
    for role, keys in (("final_metrics", metrics), ("curves", curves)):
        for key in keys:
            if "/" not in key:
                # Metrics are logged as <stage>/<name>; a bare name is a typo (or a config key).
                raise ConfigError(
                    f"{role}: {key!r} is not a metric name (metrics are <stage>/<name>, e.g. "
                    f"val/modes_recovered); metrics the runs logged: {listed or 'none'}"
                )
        # Not an error: a sweep that has not evaluated yet lacks every val/ metric.
        missing = [key for key in keys if key not in logged]
        if missing:
            names = ", ".join(repr(key) for key in missing)
            warnings.append(f"{role}: no run logged {names}; metrics the runs logged: {listed or 'none'}")
    return warnings


def compare(cfg: DictConfig, warn: Callable[[str], Any] | None = None) -> Path:
    """Load the runs ``cfg`` names and write their report; return report.md's path.

    ``warn`` receives one line per finding that does not stop the report (unreadable
    metrics.jsonl lines, metrics no run logged); ``None`` prints them to stderr.
    """
    warn = warn or (lambda line: print(f"warning: {line}", file=sys.stderr))
    source = cfg.get("source", "local")
    if source not in SOURCES:
        raise ConfigError(f"source={source!r} is invalid; valid sources: {list(SOURCES)}")
    rules = StabilityRules.from_mapping(OmegaConf.to_container(cfg.get("rules") or {}, resolve=True))
    tradeoff = Tradeoff.from_mapping(_mapping(cfg, "tradeoff"))
    x, y = _optional_key(cfg, "x"), _optional_key(cfg, "y")
    metrics, curves, smooth = _as_list(cfg, "final_metrics"), _as_list(cfg, "curves"), _smooth(cfg)
    group_by, references = _group_by(cfg), _references(cfg)
    runs: list[RunRecord]
    if source == "local":
        try:
            sweep_dir = Path(cfg.sweep_dir)
        except MissingMandatoryValue as err:
            raise ConfigError(
                "sweep_dir is required: gan-compare sweep_dir=outputs/multiruns/<name>/<time> "
                "(or source=wandb wandb.path=<entity/project> wandb.group=<group>)"
            ) from err
        runs = load_runs(sweep_dir)
        label = str(sweep_dir)
        out = Path(cfg.out) if cfg.get("out") else sweep_dir / "report"
    else:
        path, group = cfg.wandb.get("path"), cfg.wandb.get("group")
        if not path:
            raise ConfigError("source=wandb needs wandb.path=<entity/project> (and usually wandb.group=...)")
        runs = load_wandb_runs(path, group, samples=cfg.wandb.get("samples"))
        label = f"wandb:{path}" + (f" group {group}" if group else "")
        default = re.sub(r"[^A-Za-z0-9._-]+", "_", group or path)
        out = Path(cfg.out) if cfg.get("out") else Path("reports") / default
    findings = _check_metric_names(runs, metrics, curves)
    if references is not None:
        findings += check_references(references, runs)
    report = write_report(
        runs,
        out,
        x=x,
        y=y,
        metrics=metrics,
        curves=curves,
        rules=rules,
        source=label,
        smooth=smooth,
        tradeoff=tradeoff,
        group_by=group_by,
        references=references,
    )
    for run in runs:
        if run.skipped_lines:
            findings.append(
                f"run {run.name}: skipped unreadable {skipped_lines_note(run)} of metrics.jsonl "
                "(cut off when the run was killed, or corrupt); judged on the rest"
            )
    for line in findings:
        warn(line)
    return report


# ----------------------------------------------------------------------------- command line


def _base_config() -> DictConfig:
    """conf/compare.yaml as the app sees it without overrides (its own keys only)."""
    cfg = OmegaConf.load(Path(CONFIG_DIR) / f"{CONFIG_NAME}.yaml")
    for key in ("defaults", "hydra"):
        cfg.pop(key, None)
    return cfg


def _keys(node: DictConfig) -> list[str]:
    # Not `key in node`: that is False for a key whose value is missing (sweep_dir: ???).
    return [str(k) for k in node.keys()]  # noqa: SIM118


def _check_overrides(overrides: list[str]) -> None:
    """Refuse overrides of keys gan-compare does not have, before Hydra composes them.

    conf/ is shared with gan-train, so Hydra would accept ``model=mlp`` or ``metrics=[...]``
    as a config-group choice that nothing reads.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    base = _base_config()
    parser = OverridesParser.create()
    for line in overrides:
        try:
            override = parser.parse_override(line)
        except (HydraException, ValueError) as err:
            message = one_line(str(err)).split(" See ")[0]
            raise ConfigError(f"cannot parse the override {line!r}: {message}") from err
        key = override.key_or_group
        top = key.split(".")[0]
        if top == "hydra" or key.startswith("hydra/"):
            continue
        if top not in _keys(base):
            hint = " (the final metrics of the report are final_metrics=[...])" if top == "metrics" else ""
            raise ConfigError(
                f"gan-compare has no option {top!r} (in {line!r}){hint}; "
                f"its options: {', '.join(_keys(base))}"
            )
        if override.is_add() or override.is_force_add():
            continue  # +rules.key=...: the value's own check names it
        node: Any = base
        for i, part in enumerate(parts := key.split(".")):
            parent = ".".join(parts[:i])
            if not isinstance(node, DictConfig):
                raise ConfigError(
                    f"unknown key {key!r} (in {line!r}): {parent} is a value, not a group of keys"
                )
            if part not in _keys(node):
                valid = ", ".join(_keys(node))
                raise ConfigError(f"unknown key {key!r} (in {line!r}); valid keys of {parent}: {valid}")
            node = OmegaConf.select(base, ".".join(parts[: i + 1]), throw_on_missing=False)


def _compose(overrides: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name="gan-compare"):
            return compose(config_name=CONFIG_NAME, overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=CONFIG_NAME)
def _app(cfg: DictConfig) -> None:
    # Reached only for Hydra's informational flags (--help, --cfg job, ...), which return before it.
    print(compare(cfg))


def _informational(args: Any) -> bool:
    flags = ("help", "hydra_help", "cfg", "info", "shell_completion", "resolve", "package")
    flags += ("experimental_rerun", "config_path", "config_name", "config_dir")
    return any(getattr(args, flag, None) for flag in flags)


def main(argv: list[str] | None = None) -> None:
    """``gan-compare key=value ...``: compose and check the command, then write the report.

    A plain command runs without Hydra's job machinery (no run directory, log file or
    ``.hydra/``): the report is the only output, and a refusal leaves nothing behind.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = get_args_parser().parse_args(argv)
    if args.multirun:
        # Hydra's multirun would make sweep folders; one report per command is the contract.
        exit_with_error("gan-compare writes one report per command: run it once per setting, without -m")
    if _informational(args):
        sys.argv = [sys.argv[0], *argv]
        _app()
        return
    try:
        _check_overrides(args.overrides)
        cfg = _compose(args.overrides)
        report = compare(cfg)
    except GanResearchError as err:
        exit_with_error(str(err))
    except (HydraException, OmegaConfBaseException) as err:
        exit_with_error(str(err))
    print(report)


if __name__ == "__main__":
    main()
