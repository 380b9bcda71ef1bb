"""The sweep's axes and how runs group on them: axis and panel keys, value order and format, cells.

A report lays every figure out on two swept keys, ``x`` (columns) and ``y`` (rows), with one
panel per value of any other swept key (:func:`panel_keys`); :func:`group_runs` puts the runs
into those cells. Also how a value, a panel and a run's swept values are written
(:func:`fmt`, :func:`panel_title`, :func:`describe_run`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable
from typing import Any

from gan_research.compare.runs import RunRecord, has_param, param, swept_keys
from gan_research.errors import ConfigError

# Keys that are never a panel of their own: heatmap cells average over them.
AVERAGED_KEYS = ("seed",)

Panel = tuple[Hashable, ...]
Labels = dict[str, tuple[str, str]]


def check_axis_key(runs: list[RunRecord], key: str, role: str) -> None:
    """Refuse an axis key that no run has (a typo would otherwise give an empty report)."""
    if not any(has_param(run, key) for run in runs):
        raise ConfigError(
            f"{role}={key!r} is not a key of any run's overrides or config; "
            f"swept keys: {swept_keys(runs) or 'none'}"
        )


def panel_keys(runs: list[RunRecord], x: str | None, y: str | None) -> list[str]:
    """Swept keys besides ``x``, ``y`` and the seed whose value differs between runs."""
    keys = []
    for key in swept_keys(runs):
        if key in (x, y) or key in AVERAGED_KEYS:
            continue
        if len({_hashable(param(run, key)) for run in runs}) > 1:
            keys.append(key)
    return keys


def _hashable(value: Any) -> Hashable:
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return str(value)
    return value


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0.0)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (1, float(value))
    return (2, str(value))


def sorted_values(values: Iterable[Any]) -> list[Any]:
    """Distinct values, numbers in numeric order (so 1e-4 < 2e-4 < 1e-3), then strings."""
    return sorted(set(values), key=_sort_key)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def group_runs(
    runs: list[RunRecord], x: str | None, y: str | None, panel_keys: list[str]
) -> dict[Panel, dict[Any, dict[Any, list[RunRecord]]]]:
    """``{panel values: {y value: {x value: [runs]}}}``; a null axis has the single value None."""
    groups: dict[Panel, dict[Any, dict[Any, list[RunRecord]]]] = {}
    for run in runs:
        panel = tuple(_hashable(param(run, k)) for k in panel_keys)
        xv = _hashable(param(run, x)) if x else None
        yv = _hashable(param(run, y)) if y else None
        groups.setdefault(panel, {}).setdefault(yv, {}).setdefault(xv, []).append(run)
    return {p: groups[p] for p in sorted(groups, key=lambda p: tuple(_sort_key(v) for v in p))}


def panel_title(keys: list[str], panel: Panel) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in zip(keys, panel, strict=True)) or "all runs"


def _short_keys(keys: list[str]) -> dict[str, str]:
    """``schedule.lr_g`` -> ``lr_g`` where the last component is unambiguous."""
    last = Counter(k.rsplit(".", 1)[-1] for k in keys)
    return {k: k.rsplit(".", 1)[-1] if last[k.rsplit(".", 1)[-1]] == 1 else k for k in keys}


def describe_run(run: RunRecord, keys: list[str]) -> str:
    """The run's values of ``keys``, short names, e.g. ``lr_g=0.001 lr_d=0.0004 seed=1``."""
    short = _short_keys(keys)
    return " ".join(f"{short[k]}={fmt(param(run, k))}" for k in keys)
