"""Published rows to set beside a sweep's measured ones: the file of ``gan-compare references=<file>``.

A mode-collapse study reports its numbers next to the papers' (e.g. PacGAN's Table 1), so the
report takes a YAML file of published rows::

    # PacGAN paper (Lin et al. 2018) Table 1, 2-D ring, 10 runs
    - name: "GAN (PacGAN Table 1)"
      source: "Lin et al. 2018, Table 1"
      where: {dataset: ring8}        # optional: the measured rows it compares with (config keys)
      metrics: {val/modes_recovered: 6.3, val/high_quality: 98.2, val/kl_uniform: 0.45}

``name`` and ``metrics`` are required, ``source`` and ``where`` optional; nothing else is
accepted. Values are in the units the runs log them: ``val/high_quality`` is a **percentage**
(0-100; ``gan_research/metrics/mixture_modes.py`` logs ``100 * HQ samples / samples``), so a
paper's "98.2%" is written 98.2. The file is read with ``yaml.safe_load`` (data only, no
Python tags), and any problem is one :class:`~gan_research.errors.ConfigError` naming the
file, the row and the key, raised before the report writes anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gan_research.compare.runs import RunRecord, has_param, swept_keys
from gan_research.errors import ConfigError

#: The keys of a row, in the order the error messages list them.
ROW_KEYS = ("name", "source", "where", "metrics")
_REQUIRED = ("name", "metrics")
#: Logged in percent (MixtureModes.compute); a published value must be in the same unit.
PERCENT_METRICS = ("val/high_quality",)
_EXAMPLE = (
    "- name: GAN, source: Lin et al. 2018, where: {dataset: ring8}, metrics: {val/modes_recovered: 6.3}"
)


@dataclass(frozen=True)
class Reference:
    """One published row: its ``name``, the ``metrics`` it reports, where it comes from and applies.

    ``where`` maps config keys to values: the row is compared with measured rows whose runs share
    them (empty: every measured row). ``row`` is its 1-based position in the file, for messages.
    """

    name: str
    metrics: dict[str, float]
    source: str | None = None
    where: dict[str, Any] = field(default_factory=dict)
    row: int = 0


@dataclass(frozen=True)
class References:
    """The rows of one references file, and the file (named in messages and on the report's page)."""

    path: Path
    rows: list[Reference]

    def describe(self, row: Reference) -> str:
        return f"references={self.path}, row {row.row} ({row.name!r})"


def load_references(path: str | Path) -> References:
    """Read and check a references file; every problem is one ConfigError naming file, row and key."""
    path = Path(path)
    where = f"references={path}"
    if not path.exists():
        raise ConfigError(f"{where} does not exist; pass a YAML file of published rows ({_EXAMPLE})")
    if not path.is_file():
        raise ConfigError(f"{where} is not a file; pass a YAML file of published rows ({_EXAMPLE})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{where} cannot be read as text ({err}); pass a YAML file") from err
    try:
        data = yaml.safe_load(text)  # data only: a !!python tag is refused, never run
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        if isinstance(err, yaml.constructor.ConstructorError):
            # A !!python/... tag: safe_load builds plain data only, so it is refused, not run.
            raise ConfigError(
                f"{where} holds a YAML tag, which is refused, never run ({problem}{at}); "
                "write rows of plain values (text, numbers, mappings)"
            ) from None
        raise ConfigError(f"{where} is not valid YAML ({problem}{at})") from None
    if data is None:
        raise ConfigError(f"{where} holds no rows; write a list of rows ({_EXAMPLE})")
    if not isinstance(data, list):
        raise ConfigError(
            f"{where} must hold a list of rows (each starting with '- name: ...'), got a "
            f"{type(data).__name__}; e.g. {_EXAMPLE}"
        )
    if not data:
        raise ConfigError(f"{where} holds no rows; write a list of rows ({_EXAMPLE})")
    rows = [_row(item, i, where) for i, item in enumerate(data, start=1)]
    seen: dict[str, int] = {}
    for row in rows:
        if row.name in seen:
            raise ConfigError(
                f"{where}, row {row.row}: name {row.name!r} is also row {seen[row.name]}'s; "
                "each row needs its own name (the comparison table names beaten rows by it)"
            )
        seen[row.name] = row.row
    return References(path, rows)


def _row(item: Any, index: int, file: str) -> Reference:
    where = f"{file}, row {index}"
    if not isinstance(item, dict):
        raise ConfigError(
            f"{where}: a row must be a mapping with keys {', '.join(ROW_KEYS)}, got {type(item).__name__} "
            f"{item!r}"
        )
    name = item.get("name")
    if isinstance(name, str) and name.strip():
        where = f"{where} ({name!r})"
    unknown = [str(k) for k in item if k not in ROW_KEYS]
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {', '.join(ROW_KEYS)}")
    for key in _REQUIRED:
        if key not in item:
            raise ConfigError(
                f"{where}: missing key {key!r}; each row needs name and metrics (source, where optional)"
            )
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: name must be a non-empty text, got {name!r}")
    source = item.get("source")
    if source is not None and not isinstance(source, str):
        raise ConfigError(
            f"{where}: source must be a text (e.g. 'Lin et al. 2018, Table 1') or absent, got {source!r}"
        )
    return Reference(
        name=name.strip(),
        metrics=_metrics(item["metrics"], where),
        source=source,
        where=_where(item.get("where"), where),
        row=index,
    )


def _metrics(value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, dict) or not value:
        raise ConfigError(
            f"{where}: metrics must be a non-empty mapping of metric names to numbers, e.g. "
            f"{{val/modes_recovered: 6.3}}, got {value!r}"
        )
    metrics: dict[str, float] = {}
    for key, number in value.items():
        if not isinstance(key, str) or "/" not in key:
            raise ConfigError(
                f"{where}: metrics.{key} is not a metric name (metrics are <stage>/<name> as the runs log "
                "them, e.g. val/modes_recovered)"
            )
        # bool is an int to Python, and YAML reads yes/no as bools: neither is a published number.
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise ConfigError(f"{where}: metrics.{key} must be a finite number, got {number!r}")
        if key in PERCENT_METRICS and not 0 <= number <= 100:
            raise ConfigError(
                f"{where}: metrics.{key} = {number!r} is outside 0-100; {key} is a percentage "
                "(write 98.2 for 98.2%)"
            )
        metrics[key] = float(number)
    return metrics


def _where(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(
            f"{where}: where must be a mapping of config keys to values, e.g. {{dataset: ring8}}, "
            f"got {value!r}"
        )
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{where}: where key {key!r} is not a config key such as dataset or loss")
        if item is None or not isinstance(item, (str, int, float, bool)):
            raise ConfigError(f"{where}: where.{key} must be a single value (text or number), got {item!r}")
    return dict(value)


def check_references(references: References, runs: list[RunRecord]) -> list[str]:
    """Refuse ``where`` keys no run has; return warnings (metrics no run logged, a percent as a fraction)."""
    for row in references.rows:
        for key in row.where:
            if not any(has_param(run, key) for run in runs):
                raise ConfigError(
                    f"{references.describe(row)}: where key {key!r} is not a key of any run's overrides or "
                    f"config; swept keys: {swept_keys(runs) or 'none'}"
                )
    warnings = []
    logged = {k for run in runs for k in run.final}
    missing = sorted({m for row in references.rows for m in row.metrics} - logged)
    if missing:
        warnings.append(
            f"references: no run logged {', '.join(repr(m) for m in missing)}; those published values "
            "are shown but compared with nothing"
        )
    for metric in PERCENT_METRICS:
        # Runs logging values above 1 are in percent; a published 0 < value <= 1 then is likely a fraction.
        values = [run.final.get(metric, math.nan) for run in runs]
        if not any(math.isfinite(v) and v > 1 for v in values):
            continue
        for row in references.rows:
            value = row.metrics.get(metric)
            if value is not None and 0 < value <= 1:
                warnings.append(
                    f"{references.describe(row)}: {metric} = {value:g} looks like a fraction, but the runs "
                    f"log {metric} in percent (0-100); write {100 * value:g} if the paper says "
                    f"{100 * value:g}%"
                )
    return warnings
