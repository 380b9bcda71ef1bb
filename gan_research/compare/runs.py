"""The runs of a sweep, read into :class:`RunRecord` s that the report and the stability labels share.

Two sources, one record: a local sweep directory (the run directory layout of the
README: ``.hydra/config.yaml``, ``.hydra/overrides.yaml``, ``metrics.jsonl``,
``samples/``) and, for sweeps that ran elsewhere, a W&B group read through the
public API. Everything a run may lack (it crashed before writing, it was killed
mid-line) is tolerated: such a run is still listed with what is known about it, and
the ``metrics.jsonl`` lines that could not be read are counted in ``skipped_lines``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from gan_research.errors import ConfigError
from gan_research.utils.jsonl_logger import METRICS_FILE, STATUSES, read_records_checked

# A run whose metrics.jsonl does not end with a status line is still running, or was killed.
RUNNING = "running"
# The bookkeeping keys of metrics.jsonl lines; every other key holding '/' is a metric.
_BOOKKEEPING = ("step", "time", "status", "reason", "seconds")
_SAMPLE = re.compile(r"step_(\d+)\.png$")
# Keys of a W&B config that differ between runs without being a swept choice.
_NOT_SWEPT = ("paths.", "logger.", "hydra.", "name", "tags", "ckpt_path", "_wandb")
_MISSING = object()


@dataclass
class RunRecord:
    """What is known about one run.

    ``status`` is the last status line's (finished, failed, diverged, interrupted),
    or ``running`` when the run wrote none (still running, or killed).
    ``final`` holds the last value of each metric, the status line's values winning;
    values are floats, NaN/Inf included (a diverged run's last loss is a finding).
    ``choices`` are the run's config-group options (Hydra's ``runtime.choices``, e.g.
    ``{"model": "mlp"}``): the value of a group key that was not an override.
    ``skipped_lines`` are the 1-based numbers of the ``metrics.jsonl`` lines that could not
    be read (cut off when the run was killed, or corrupt): the run is judged without them.
    """

    path: Path
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    config: DictConfig | dict[str, Any] = field(default_factory=dict)
    status: str = RUNNING
    reason: str | None = None
    steps: int | None = None
    seconds: float | None = None
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)
    last_sample: Path | None = None
    choices: dict[str, Any] = field(default_factory=dict)
    skipped_lines: list[int] = field(default_factory=list)


def find_run_dirs(sweep_dir: Path, max_depth: int = 2) -> list[Path]:
    """Directories at most ``max_depth`` below ``sweep_dir`` holding ``.hydra/config.yaml``."""
    found: list[Path] = []
    level = [sweep_dir]
    for _ in range(max_depth + 1):
        found += [d for d in level if (d / ".hydra" / "config.yaml").is_file()]
        # A run directory's own subfolders (samples/, wandb/) are never runs.
        level = [
            c
            for d in level
            if not (d / ".hydra" / "config.yaml").is_file()
            for c in sorted(d.iterdir())
            if c.is_dir() and not c.name.startswith(".")
        ]
    return sorted(found)


def load_runs(sweep_dir: str | Path) -> list[RunRecord]:
    """Every run of a local sweep (or a single run directory), sorted by path."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.exists():
        raise ConfigError(
            f"sweep_dir={sweep_dir} does not exist; pass a gan-train -m sweep directory such as "
            "outputs/multiruns/<name>/<time>, or one run directory"
        )
    if not sweep_dir.is_dir():
        raise ConfigError(f"sweep_dir={sweep_dir} is a file, not a directory; pass the sweep's directory")
    run_dirs = find_run_dirs(sweep_dir)
    if not run_dirs:
        raise ConfigError(
            f"sweep_dir={sweep_dir} holds no run directories (directories with .hydra/config.yaml, "
            "at most 2 levels down); pass a gan-train -m sweep directory such as "
            "outputs/multiruns/<name>/<time>"
        )
    return [load_run(d, sweep_dir) for d in run_dirs]


def load_run(run_dir: str | Path, sweep_dir: str | Path | None = None) -> RunRecord:
    """One run directory; ``name`` is its path relative to ``sweep_dir``."""
    run_dir = Path(run_dir)
    name = run_dir.name
    if sweep_dir is not None:
        rel = run_dir.relative_to(sweep_dir).as_posix()
        name = rel if rel != "." else run_dir.name
    record = RunRecord(path=run_dir, name=name)
    record.overrides = _read_overrides(run_dir / ".hydra" / "overrides.yaml")
    hydra_node = _read_hydra_node(run_dir / ".hydra")
    record.config = _read_config(run_dir / ".hydra", hydra_node)
    choices = _lookup(hydra_node, "runtime.choices", {})
    record.choices = dict(choices) if isinstance(choices, Mapping) else {}
    _read_metrics(record, run_dir / METRICS_FILE)
    samples = [
        (int(m.group(1)), p)
        for p in (run_dir / "samples").glob("step_*.png")
        if (m := _SAMPLE.search(p.name))
    ]
    record.last_sample = max(samples)[1] if samples else None
    return record


def parse_overrides(lines: Iterable[str]) -> dict[str, Any]:
    """``key=value`` strings as Hydra parses them (``1e-3`` is a float, ``loss=wgan_gp`` a string).

    Deletions (``~key``) are not values and are left out; ``+key``/``++key`` count as ``key``.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    result: dict[str, Any] = {}
    for line in lines:
        line = str(line)
        try:
            override = parser.parse_override(line)
        except HydraException:
            # Not Hydra's grammar (hand-written file): fall back to YAML typing of the value.
            key, _, value = line.lstrip("+~").partition("=")
            result[key] = yaml.safe_load(value) if value else None
            continue
        if override.type == OverrideType.DEL:
            continue
        result[override.key_or_group] = override.value()
    return result


def _read_overrides(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        lines = yaml.safe_load(path.read_text()) or []
    except yaml.YAMLError:
        return {}
    return parse_overrides(lines) if isinstance(lines, list) else {}


def _read_hydra_node(hydra_dir: Path) -> Any:
    """The ``hydra:`` node of the run's ``.hydra/hydra.yaml`` ({} when absent or unreadable)."""
    try:
        node = (yaml.safe_load((hydra_dir / "hydra.yaml").read_text()) or {}).get("hydra", {})
    except (OSError, yaml.YAMLError, AttributeError):
        return {}
    return node if isinstance(node, Mapping) else {}


def _read_config(hydra_dir: Path, hydra_node: Any) -> DictConfig | dict[str, Any]:
    """The run's composed config, with its ``${hydra:...}`` interpolations pinned to the run's own values.

    Left as they are, they would resolve against *this* app's Hydra config (or fail outside one).
    """
    try:
        raw = yaml.safe_load((hydra_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(raw, dict):
        return {}

    def pin(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: pin(v) for k, v in value.items()}
        if isinstance(value, list):
            return [pin(v) for v in value]
        if isinstance(value, str) and "${hydra:" in value:
            return re.sub(r"\$\{hydra:([^}]*)\}", lambda m: str(_lookup(hydra_node, m.group(1), "?")), value)
        return value

    try:
        return OmegaConf.create(pin(raw))
    except Exception:  # an odd config still leaves the run listable
        return pin(raw)


def _to_float(value: Any) -> float | None:
    """A metric value: numbers, and the strings "nan"/"inf"/"-inf" the jsonl logger writes."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _read_metrics(record: RunRecord, path: Path) -> None:
    if not path.is_file():
        return
    # Lines cut short when the run was killed (or otherwise unreadable) are skipped, and counted.
    records, record.skipped_lines = read_records_checked(path)
    step, first_time, last_time = 0, None, None
    for obj in records:
        metrics = {k: v for k, v in obj.items() if "/" in k and k not in _BOOKKEEPING}
        if "status" in obj:
            # The status line's values win over those logged before it (not over a resumed run's later ones).
            record.final.update({k: f for k, v in metrics.items() if (f := _to_float(v)) is not None})
            continue
        if isinstance(obj.get("step"), int):
            step = obj["step"]
        if isinstance(obj.get("time"), (int, float)):
            first_time = obj["time"] if first_time is None else first_time
            last_time = obj["time"]
        for key, value in metrics.items():
            f = _to_float(value)
            if f is not None:
                record.history.setdefault(key, []).append((step, f))
                record.final[key] = f
    last = records[-1] if records else {}
    if "status" in last:
        record.status = str(last["status"]) if last["status"] in STATUSES else "failed"
        record.reason = last.get("reason")
        record.steps = last.get("step") if isinstance(last.get("step"), int) else None
        record.seconds = _to_float(last.get("seconds"))
    if record.steps is None:
        steps = [s for values in record.history.values() for s, _ in values]
        record.steps = max(steps) if steps else None
    if record.seconds is None and first_time is not None and last_time is not None:
        record.seconds = round(last_time - first_time, 3)


def _lookup(node: Any, key: str, default: Any = _MISSING) -> Any:
    """A dotted key in a nested dict, also accepting flat ``a.b`` or ``a/b`` keys at any level."""
    if isinstance(node, Mapping):
        for flat in (key, key.replace(".", "/")):
            if flat in node:
                return node[flat]
        head, _, rest = key.partition(".")
        if rest and head in node:
            return _lookup(node[head], rest, default)
    return default


def _plain(value: Any) -> Any:
    if isinstance(value, DictConfig) or OmegaConf.is_list(value):
        return OmegaConf.to_container(value, resolve=False)
    if isinstance(value, Mapping) and set(value) == {"value"}:  # older W&B API: {"value": v}
        return value["value"]
    return value


def param(run: RunRecord, key: str, default: Any = None) -> Any:
    """The value of a dotted config key for ``run``: its override when swept, else its config-group
    option (``model`` -> ``mlp``, not the whole model config), else the composed config."""
    if key in run.overrides:
        return run.overrides[key]
    group = key.replace(".", "/")  # Hydra names nested groups model/generator
    if group in run.choices:
        return run.choices[group]
    value = _config_value(run, key)
    return default if value is _MISSING else value


def has_param(run: RunRecord, key: str) -> bool:
    """Whether ``key`` is among the run's overrides, config-group options or config."""
    return (
        key in run.overrides
        or key.replace(".", "/") in run.choices
        or _config_value(run, key) is not _MISSING
    )


def _config_value(run: RunRecord, key: str) -> Any:
    if isinstance(run.config, DictConfig):
        value = OmegaConf.select(run.config, key, default=_MISSING, throw_on_resolution_failure=False)
        return _plain(value)
    return _plain(_lookup(run.config, key))


def swept_keys(runs: list[RunRecord]) -> list[str]:
    """Override keys of the runs, in order of first appearance."""
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run.overrides))
    return list(keys)


# ----------------------------------------------------------------------------- W&B


def load_wandb_runs(
    path: str, group: str | None = None, api: Any = None, samples: int | None = 2000
) -> list[RunRecord]:
    """The runs of a W&B project (``entity/project``), optionally one group (a sweep), as records.

    ``api`` defaults to ``wandb.Api()``; tests pass a fake. W&B keeps no overrides list,
    so a run's ``overrides`` are the flattened config keys whose values differ between
    the runs loaded (what the sweep varied). ``samples`` bounds the history points
    fetched per run (``run.history``); ``None`` reads all of it (``run.scan_history``, slow).
    """
    if api is None:
        import wandb

        api = wandb.Api()
    filters = {"group": group} if group else None
    try:
        fetched = list(api.runs(path, filters=filters))
    except Exception as err:  # network, auth, bad path: all one line for the user
        raise ConfigError(f"could not list W&B runs of wandb.path={path!r} (group {group!r}): {err}") from err
    if not fetched:
        raise ConfigError(f"W&B project {path!r} has no runs in group {group!r}")
    records = [_wandb_record(run, path, samples) for run in fetched]
    # gan-train names runs <model>_<loss>_<dataset>: a sweep's runs share a name, their ids differ.
    names = Counter(r.name for r in records)
    for record in records:
        if names[record.name] > 1:
            record.name = f"{record.name}-{record.path.name}"
    _set_varying_overrides(records)
    return sorted(records, key=lambda r: r.name)


_WANDB_STATES = {"finished": "finished", "crashed": "failed", "failed": "failed", "killed": "interrupted"}


def _wandb_record(run: Any, path: str, samples: int | None) -> RunRecord:
    config = {
        k: _plain(v) for k, v in dict(getattr(run, "config", {}) or {}).items() if not k.startswith("_")
    }
    summary = dict(getattr(run, "summary", {}) or {})
    run_id = str(getattr(run, "id", None) or getattr(run, "name", "run"))
    record = RunRecord(
        path=Path(path) / run_id, name=str(getattr(run, "name", None) or run_id), config=config
    )
    status = summary.get("status")
    state = str(getattr(run, "state", "") or "")
    record.status = status if status in STATUSES else _WANDB_STATES.get(state, RUNNING)
    record.reason = summary.get("reason")
    rows = list(run.scan_history()) if samples is None else list(run.history(samples=samples, pandas=False))
    for row in rows:
        # Lightning's WandbLogger logs the trainer's step as a metric; _step is W&B's own counter.
        step = row.get("trainer/global_step", row.get("_step"))
        step = int(step) if isinstance(step, (int, float)) and math.isfinite(step) else 0
        for key, value in row.items():
            if "/" in key and key != "trainer/global_step" and (f := _to_float(value)) is not None:
                record.history.setdefault(key, []).append((step, f))
    for values in record.history.values():
        values.sort(key=lambda p: p[0])
    record.final = {k: v[-1][1] for k, v in record.history.items() if v}
    record.final.update(
        {
            k: f
            for k, v in summary.items()
            if "/" in k and k != "trainer/global_step" and (f := _to_float(v)) is not None
        }
    )
    steps = [s for values in record.history.values() for s, _ in values]
    step = _to_float(summary.get("trainer/global_step"))
    record.steps = int(step) if step is not None and math.isfinite(step) else (max(steps) if steps else None)
    record.seconds = _to_float(summary.get("_runtime"))
    return record


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def _set_varying_overrides(records: list[RunRecord]) -> None:
    flat = [_flatten(r.config) for r in records]
    keys = sorted({k for f in flat for k in f}, key=lambda k: (k.count("."), k))
    kept: dict[str, tuple[str, ...]] = {}
    for key in keys:
        if any(key == p or key.startswith(p) for p in _NOT_SWEPT):
            continue
        column = tuple(repr(f.get(key)) for f in flat)
        # dataset.seed: ${seed} varies exactly as seed does; keep the shorter key only.
        if len(set(column)) > 1 and column not in kept.values():
            kept[key] = column
    for record, f in zip(records, flat, strict=True):
        record.overrides = {k: f.get(k) for k in kept}
