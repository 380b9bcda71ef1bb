"""The report's numbers: the heatmaps' cells (a final metric's mean, the stability labels' counts)
and the runs table, written as runs.csv and runs.json."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from gan_research.compare.report.axes import Labels, Panel, group_runs
from gan_research.compare.runs import RunRecord, param, swept_keys
from gan_research.compare.stability import LABELS

_ABBREV = {"converged": "conv", "oscillating": "osc", "diverged": "div", "collapsed": "coll"}
_ABBREV.update({"undertrained": "under", "failed": "fail", "running": "run"})


def heatmap_table(
    runs: list[RunRecord], x: str | None, y: str | None, metric: str, panel_keys: list[str]
) -> dict[Panel, dict[Any, dict[Any, dict[str, Any]]]]:
    """``{panel: {y: {x: {"mean", "n", "runs", "values"}}}}`` of a final metric.

    ``mean`` averages the finite final values of the cell's runs (seeds and any
    unswept repetition); ``n`` counts them, ``runs`` counts the cell's runs (a run
    that diverged or never evaluated is in ``runs`` but not in ``n``); ``mean`` is
    NaN when ``n`` is 0.
    """
    table: dict[Panel, dict[Any, dict[Any, dict[str, Any]]]] = {}
    for panel, rows in group_runs(runs, x, y, panel_keys).items():
        for yv, cols in rows.items():
            for xv, cell in cols.items():
                values = [run.final.get(metric, math.nan) for run in cell]
                finite = [v for v in values if math.isfinite(v)]
                table.setdefault(panel, {}).setdefault(yv, {})[xv] = {
                    "mean": float(np.mean(finite)) if finite else math.nan,
                    "n": len(finite),
                    "runs": len(cell),
                    "values": values,
                }
    return table


def stability_table(
    runs: list[RunRecord], labels: Labels, x: str | None, y: str | None, panel_keys: list[str]
) -> dict[Panel, dict[Any, dict[Any, dict[str, Any]]]]:
    """``{panel: {y: {x: {"converged": fraction, "counts": Counter of labels, "runs": n}}}}``."""
    table: dict[Panel, dict[Any, dict[Any, dict[str, Any]]]] = {}
    for panel, rows in group_runs(runs, x, y, panel_keys).items():
        for yv, cols in rows.items():
            for xv, cell in cols.items():
                counts = Counter(labels[run.name][0] for run in cell)
                table.setdefault(panel, {}).setdefault(yv, {})[xv] = {
                    "converged": counts["converged"] / len(cell),
                    "counts": counts,
                    "runs": len(cell),
                }
    return table


def _label_counts(cell: dict[str, Any]) -> str:
    return "\n".join(f"{cell['counts'][lab]} {_ABBREV[lab]}" for lab in LABELS if cell["counts"][lab])


def run_rows(
    runs: list[RunRecord], labels: Labels, x: str | None, y: str | None, metrics: list[str]
) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) of the runs table: name, swept keys (and x, y), outcome, final metrics."""
    keys = swept_keys(runs)
    keys += [k for k in (x, y) if k and k not in keys]
    columns = ["name", *keys, "status", "label", "reason", "steps", "seconds", "skipped_lines", *metrics]
    rows = []
    for run in runs:
        label, reason = labels[run.name]
        row: dict[str, Any] = {"name": run.name, **{k: param(run, k) for k in keys}}
        row.update(status=run.status, label=label, reason=reason, steps=run.steps, seconds=run.seconds)
        # How many metrics.jsonl lines could not be read: the label was judged without them.
        row["skipped_lines"] = len(run.skipped_lines)
        row.update({m: run.final.get(m) for m in metrics})
        rows.append(row)
    return columns, rows


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # as metrics.jsonl writes them: JSON has no NaN
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_tables(out_dir: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with (out_dir / "runs.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in columns})
    (out_dir / "runs.json").write_text(json.dumps([_jsonable(r) for r in rows], indent=2) + "\n")
