"""The comparison table: measured rows (one per run, or per ``group_by`` group) beside published ones.

A measured row of a group is the mean ± sample std (ddof 1) of each metric's finite final values
over the group's runs (its seeds), with the run count n and, for ``val/modes_recovered``, how many
of its runs recovered every mode ("all modes in k/n runs"; the total from
:func:`~gan_research.compare.stability.modes_total`). A measured row *beats* a published row
(:class:`~gan_research.compare.references.Reference`) that applies to it (its ``where`` matches
the runs' values, or it has none) when its mean is strictly better on every metric both rows
have, "better" being the tradeoff plane's rule (:func:`~.tradeoff.higher_is_better`). Written as
``table.csv`` / ``table.json`` and as a section of the page.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gan_research.compare.references import References
from gan_research.compare.report.axes import check_axis_key, describe_run, fmt, group_runs, panel_title
from gan_research.compare.report.tables import _jsonable
from gan_research.compare.report.tradeoff import higher_is_better
from gan_research.compare.runs import RunRecord, has_param, param
from gan_research.compare.stability import LABELS, modes_total

if TYPE_CHECKING:
    from gan_research.compare.report.axes import Labels
    from gan_research.compare.report.page import _Page

TABLE_FILES = ("table.csv", "table.json")
MODES_METRIC = "val/modes_recovered"
# Display formats by the metric name's last component: counts of modes with 1 decimal (a mean over
# seeds is fractional), percentages as logged, fractions in [0, 1] as percent, KL with 3 decimals.
_COUNTS = ("modes_recovered", "modes_covered", "classes_covered", "num_classes", "modes_total")
# Logged in percent already (gan_research/metrics/mixture_modes.py: 100 * HQ samples / samples).
_PERCENT = ("high_quality",)
_FRACTIONS = ("coverage", "precision", "recall", "accuracy", "agreement")


@dataclass(frozen=True)
class Stat:
    """A metric over a row's runs: mean and sample std of the ``n`` finite values (std NaN below 2)."""

    mean: float
    std: float
    n: int


@dataclass
class MeasuredRow:
    """One row of measured results: a run, or a group of runs sharing their ``group_by`` values."""

    title: str
    keys: dict[str, Any]
    runs: list[RunRecord]
    stats: dict[str, Stat]
    all_modes: int | None
    labels: Counter[str]
    applicable: list[str] = field(default_factory=list)
    beats: list[str] = field(default_factory=list)


@dataclass
class Comparison:
    """The table: its metric columns, group keys, published and measured rows."""

    metrics: list[str]
    group_by: list[str] | None
    references: References | None
    measured: list[MeasuredRow]

    @property
    def has_modes(self) -> bool:
        return any(row.all_modes is not None for row in self.measured)


def metric_stat(runs: list[RunRecord], metric: str) -> Stat:
    """Mean and sample std of the runs' finite final values of ``metric``."""
    values = [v for run in runs if math.isfinite(v := run.final.get(metric, math.nan))]
    mean = float(np.mean(values)) if values else math.nan
    std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    return Stat(mean, std, len(values))


def all_modes_count(runs: list[RunRecord]) -> int | None:
    """How many ``runs`` recovered every mode; None when no run has both a mode count and a total."""
    judged, count = False, 0
    for run in runs:
        total, recovered = modes_total(run), run.final.get(MODES_METRIC, math.nan)
        if total and math.isfinite(recovered):
            judged = True
            count += recovered >= total
    return count if judged else None


def better(metric: str, value: float, reference: float) -> bool:
    """Whether ``value`` is strictly better than ``reference`` (direction from the metric's name)."""
    return value > reference if higher_is_better(metric) else value < reference


def beats(stats: dict[str, Stat], reference: dict[str, float]) -> bool:
    """Better on every metric both rows have (at least one); a metric without a finite mean is not had."""
    shared = [m for m in reference if m in stats and math.isfinite(stats[m].mean)]
    return bool(shared) and all(better(m, stats[m].mean, reference[m]) for m in shared)


def _same(a: Any, b: Any) -> bool:
    """Config values equal as the user means them: 1e-4 written in YAML (a string) equals 0.0001."""

    def norm(value: Any) -> Any:
        if isinstance(value, bool) or value is None:
            return value
        try:
            return float(value)
        except (TypeError, ValueError):
            return str(value)

    x, y = norm(a), norm(b)
    if isinstance(x, float) and isinstance(y, float):
        return math.isclose(x, y, rel_tol=1e-9, abs_tol=0.0)
    return x == y


def applies(where: dict[str, Any], runs: list[RunRecord]) -> bool:
    """Whether every run has each ``where`` key at its value (an empty ``where`` applies to all)."""
    return all(
        has_param(run, key) and _same(param(run, key), value) for key, value in where.items() for run in runs
    )


def check_group_by(runs: list[RunRecord], group_by: list[str] | None) -> None:
    """Refuse a group key that no run has, naming the swept keys (as an unknown axis is)."""
    for key in group_by or []:
        check_axis_key(runs, key, "group_by")


def comparison_table(
    runs: list[RunRecord],
    labels: Labels,
    *,
    metrics: list[str],
    group_by: list[str] | None,
    references: References | None,
    varying: list[str],
) -> Comparison:
    """The measured rows (per run when ``group_by`` is None, else per group) and what each beats."""
    refs = references.rows if references else []
    columns = list(dict.fromkeys([*metrics, *(m for ref in refs for m in ref.metrics)]))
    if group_by is None:
        groups = [
            (run.name + (f" ({d})" if (d := describe_run(run, varying)) else ""), {}, [run]) for run in runs
        ]
    else:
        groups = [
            (panel_title(group_by, panel), dict(zip(group_by, panel, strict=True)), grouped[None][None])
            for panel, grouped in group_runs(runs, None, None, group_by).items()
        ]
    measured = []
    for title, keys, members in groups:
        stats = {m: metric_stat(members, m) for m in columns}
        row = MeasuredRow(
            title=title,
            keys=keys,
            runs=members,
            stats=stats,
            all_modes=all_modes_count(members),
            labels=Counter(labels[run.name][0] for run in members),
        )
        row.applicable = [ref.name for ref in refs if applies(ref.where, members)]
        row.beats = [ref.name for ref in refs if ref.name in row.applicable and beats(stats, ref.metrics)]
        measured.append(row)
    return Comparison(columns, group_by, references, measured)


# ----------------------------------------------------------------------------- formatting


def _style(metric: str) -> tuple[float, str, str]:
    """(scale, format spec, unit) of ``metric``'s cells."""
    name = metric.rsplit("/", 1)[-1].lower()
    if any(token in name for token in _COUNTS):
        return 1.0, ".1f", ""
    if any(token in name for token in _PERCENT):
        return 1.0, ".1f", "%"
    if any(token in name for token in _FRACTIONS):
        return 100.0, ".1f", "%"
    if name.startswith("kl"):
        return 1.0, ".3f", ""
    return 1.0, ".4g", ""


def format_value(metric: str, value: float | None) -> str:
    """A published or single value: ``6.3`` modes, ``98.2%``, ``0.450`` KL, else 4 significant digits."""
    if value is None:
        return ""
    if not math.isfinite(value):
        return str(value)
    scale, spec, unit = _style(metric)
    return f"{scale * value:{spec}}{unit}"


def format_stat(metric: str, stat: Stat, runs: int) -> str:
    """``7.0 ± 1.4`` (``98.2 ± 0.4%``); a single value alone; ``(k/n)`` when only k runs had a value."""
    if stat.n == 0:
        return "n/a"
    scale, spec, unit = _style(metric)
    text = f"{scale * stat.mean:{spec}}"
    text += f" ± {scale * stat.std:{spec}}{unit}" if stat.n > 1 else unit
    return text + (f" ({stat.n}/{runs} runs)" if stat.n < runs else "")


def _where_text(where: dict[str, Any]) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in where.items())


def _labels_text(counts: Counter[str]) -> str:
    return ", ".join(f"{counts[lab]} {lab}" for lab in LABELS if counts[lab])


def _beats_text(row: MeasuredRow) -> str:
    if not row.applicable:
        return "n/a"
    return ", ".join(row.beats) or "none"


def page_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """The table as the page shows it: published rows first, then the measured ones."""
    refs = comparison.references.rows if comparison.references else []
    columns = ["", "row", "source", "n", *comparison.metrics]
    columns += ["all modes"] if comparison.has_modes else []
    columns += ["labels"] + (["beats"] if refs else [])
    rows = []
    for ref in refs:
        source = "; ".join(filter(None, [ref.source, f"for {_where_text(ref.where)}" if ref.where else ""]))
        row = [
            "published",
            ref.name,
            source,
            "",
            *(format_value(m, ref.metrics.get(m)) for m in comparison.metrics),
        ]
        row += [""] if comparison.has_modes else []
        rows.append(row + [""] + ([""] if refs else []))
    for measured in comparison.measured:
        n = len(measured.runs)
        row = ["measured", measured.title, "this sweep", str(n)]
        row += [format_stat(m, measured.stats[m], n) for m in comparison.metrics]
        if comparison.has_modes:
            row.append("" if measured.all_modes is None else f"all modes in {measured.all_modes}/{n} runs")
        row.append(_labels_text(measured.labels))
        rows.append(row + ([_beats_text(measured)] if refs else []))
    return columns, rows


def write_comparison(out_dir: Path, comparison: Comparison) -> None:
    """``table.csv`` (flat: one column per metric, its ``_std`` and ``_n``) and ``table.json`` (nested)."""
    refs = comparison.references.rows if comparison.references else []
    keys = comparison.group_by or []
    columns = ["kind", "name", "source", "where", *keys, "n"]
    for m in comparison.metrics:
        columns += [m, f"{m}_std", f"{m}_n"]
    columns += ["all_modes", "labels", "beats"]
    flat: list[dict[str, Any]] = []
    nested: list[dict[str, Any]] = []
    for ref in refs:
        row: dict[str, Any] = {"kind": "published", "name": ref.name, "source": ref.source}
        row["where"] = _where_text(ref.where)
        row.update({k: ref.where.get(k) for k in keys})
        row.update({m: ref.metrics.get(m) for m in comparison.metrics})
        flat.append(row)
        nested.append(
            {
                "kind": "published",
                "name": ref.name,
                "source": ref.source,
                "where": ref.where,
                "metrics": ref.metrics,
            }
        )
    for measured in comparison.measured:
        row = {"kind": "measured", "name": measured.title, "source": "this sweep", **measured.keys}
        row["n"] = len(measured.runs)
        for m, stat in measured.stats.items():
            row.update({m: stat.mean, f"{m}_std": stat.std, f"{m}_n": stat.n})
        row.update(all_modes=measured.all_modes, labels=_labels_text(measured.labels))
        row["beats"] = "; ".join(measured.beats)
        flat.append(row)
        nested.append(
            {
                "kind": "measured",
                "name": measured.title,
                "keys": measured.keys,
                "runs": [run.name for run in measured.runs],
                "n": len(measured.runs),
                "metrics": {m: {"mean": s.mean, "std": s.std, "n": s.n} for m, s in measured.stats.items()},
                "all_modes": measured.all_modes,
                "labels": dict(measured.labels),
                "compared_with": measured.applicable,
                "beats": measured.beats,
            }
        )
    with (out_dir / TABLE_FILES[0]).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in flat:
            writer.writerow({k: _csv_cell(row.get(k)) for k in columns})
    (out_dir / TABLE_FILES[1]).write_text(json.dumps(_jsonable(nested), indent=2) + "\n")


def _csv_cell(value: Any) -> Any:
    # Blank, not "nan", for a std of one run or a metric no run of the group logged.
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def add_comparison_section(page: _Page, comparison: Comparison) -> None:
    refs = comparison.references
    page.add("h2", "Comparison with published results" if refs else "Results by group")
    if comparison.group_by is None:
        what = "one measured row per run (its final values)"
    elif comparison.group_by:
        keys = ", ".join(f"`{k}`" for k in comparison.group_by)
        what = f"one measured row per value of {keys}: mean ± sample std over its runs (seeds), n runs"
    else:
        what = "one measured row of all runs: mean ± sample std, n runs"
    text = f"{what[0].upper()}{what[1:]}; a metric only some runs logged says how many (k/n runs)."
    if comparison.has_modes:
        text += f" **All modes**: runs whose final `{MODES_METRIC}` equals the data's number of modes."
    if refs:
        ups = [m for m in comparison.metrics if higher_is_better(m)]
        downs = [m for m in comparison.metrics if not higher_is_better(m)]
        direction = "; ".join(
            filter(
                None,
                [
                    f"higher is better for {', '.join(f'`{m}`' for m in ups)}" if ups else "",
                    f"lower for {', '.join(f'`{m}`' for m in downs)}" if downs else "",
                ],
            )
        )
        text += (
            f" Published rows from `{refs.path}`. A measured row **beats** a published row that applies to "
            "it (its `where` matches the row's runs, or it has none) when its mean is better on every "
            f"metric both rows have ({direction}); n/a: no published row applies."
        )
    if "val/high_quality" in comparison.metrics:
        text += " `val/high_quality` is in percent."
    page.add("p", text + " Also as [table.csv](table.csv) and [table.json](table.json).")
    page.add("table", page_rows(comparison))
