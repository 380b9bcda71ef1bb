"""``gan-compare``: the comparison report of a sweep's runs (local directory or W&B group).

A Hydra app like ``gan-train``, so every setting is a ``key=value`` override
(``conf/compare.yaml``); it writes nothing but the report folder, so it can be
pointed at a sweep that is still running.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from gan_research.compare.report import write_report
from gan_research.compare.runs import RunRecord, load_runs, load_wandb_runs
from gan_research.compare.stability import StabilityRules
from gan_research.errors import ConfigError, GanResearchError
from gan_research.train import CONFIG_DIR

SOURCES = ("local", "wandb")


def _as_list(cfg: DictConfig, key: str) -> list[str]:
    value = cfg.get(key)
    if value is None:
        return []
    if isinstance(value, str):  # final_metrics=val/fid_digits on the command line
        return [value]
    return [str(v) for v in value]


def compare(cfg: DictConfig) -> Path:
    """Load the runs ``cfg`` names and write their report; return report.md's path."""
    source = cfg.get("source", "local")
    if source not in SOURCES:
        raise ConfigError(f"source={source!r} is invalid; valid sources: {list(SOURCES)}")
    rules = StabilityRules.from_mapping(OmegaConf.to_container(cfg.get("rules") or {}, resolve=True))
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
    smooth = int(cfg.get("smooth", 5))
    return write_report(
        runs,
        out,
        x=cfg.get("x"),
        y=cfg.get("y"),
        metrics=_as_list(cfg, "final_metrics"),
        curves=_as_list(cfg, "curves"),
        rules=rules,
        source=label,
        smooth=smooth,
    )


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="compare")
def main(cfg: DictConfig) -> None:
    try:
        report = compare(cfg)
    except GanResearchError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(report)


if __name__ == "__main__":
    main()
